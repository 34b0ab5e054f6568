"""Planning: a data set's fingerprint and the written rules that turn it into a training configuration.

:mod:`~Functions.planning.fingerprint` reads a data set once (sizes and spacings of all samples, statistics on a
seeded subset); :mod:`~Functions.planning.rules` maps the fingerprint to settings, each with its reason
(``docs/planning.md`` lists the rules and the measurements behind them); :mod:`~Functions.planning.plan` runs both
and writes ``plan.json``; :mod:`~Functions.planning.recipes` reads and writes recipe files (TOML);
:mod:`~Functions.planning.references` holds the figure each public data set's recipe reached (or its published
anchor) and checks a real-data run against it.
Layer: above :mod:`Functions.data` (it reads data), below :mod:`Functions.engine` (``train`` uses it).
"""
