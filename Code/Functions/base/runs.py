"""Run folders on disk: atomic JSON/CSV/text writes, reading a run's settings, the resume state file.

A run folder (made by :func:`Functions.base.paths.new_run_dir`) holds
``config.json``, ``split.json``, ``history.csv``, ``metrics.json``,
``report.md`` and, while training runs, ``backup/state.json``.  Every write
here goes to a temporary file that is then renamed over the target
(``os.replace`` is atomic), so a run killed at any instant leaves the old or
the new version of a file, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from Functions.base.errors import UserError

#: File names inside a run folder's ``backup/`` (resume state) folder.
STATE_FILE = "state.json"
WEIGHTS_PATTERN = "epoch-{:04d}.weights.h5"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON (paths and other objects as text), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def summary_json(summary) -> dict:
    """A metrics summary table (rows: statistics, columns: metrics) as ``{metric: {statistic: value}}`` for
    ``metrics.json``: floats, with NaN (no finite value) as ``None``."""
    def number(v):
        v = float(v)
        return None if v != v else v

    return {k: {s: number(summary.loc[s, k]) for s in summary.index} for k in summary.columns}


def write_history_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """``rows`` (dicts with an ``epoch`` key) as a CSV: ``epoch`` first, then the other columns sorted."""
    import pandas as pd

    columns = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    atomic_write_text(path, pd.DataFrame(rows, columns=columns).to_csv(index=False))


def read_run_settings(run_dir: str | os.PathLike, flag: str = "--run") -> dict:
    """The settings saved in ``run_dir/config.json`` as a dict; one clear error when it is not a run folder."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{flag} {run_dir} is not a folder; pass the run folder printed when training started")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{flag} {run_dir} has no config.json, so it is not a run folder made by `train`; "
                        "pass the folder printed when training started")
    try:
        values = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        values = None
    if not isinstance(values, dict):
        raise UserError(f"{cfg_path} is not a valid run configuration; restore it from a backup or start "
                        "a new run")
    return values


def read_state(backup_dir: str | os.PathLike) -> dict | None:
    """The last committed resume state in ``backup_dir`` (``None`` when there is none)."""
    path = Path(backup_dir) / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    state["weights_path"] = str(Path(backup_dir) / state["weights"])
    return state


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished when it wrote ``metrics.json`` and has no resume state left."""
    run_dir = Path(run_dir)
    return (run_dir / "metrics.json").is_file() and not (run_dir / "backup" / STATE_FILE).is_file()


def remove_backup(run_dir: str | os.PathLike) -> None:
    """Delete ``backup/``: first its state file (one atomic step that marks the run finished), then the rest."""
    import shutil

    run_dir = Path(run_dir)
    (run_dir / "backup" / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)


def check_same_split(run_dir: str | os.PathLike, split: dict) -> None:
    """Refuse to resume when the files of the split differ from those ``split.json`` recorded."""
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())

    def files(d):
        return {k: sorted(v if isinstance(v, str) else v.get("image", str(v)) for v in vals)
                for k, vals in d.items() if k in ("train", "val", "test")}

    if files(saved) != files(split):
        raise UserError(f"the data of run {run_dir} changed since it started (its files no longer match "
                        f"{path}); restore the data or start a new run")


def clean_partial_files(backup_dir: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Remove temporary files a killed run may have left (``.*.tmp*``) in the run and backup folders."""
    for folder in (Path(run_dir), Path(backup_dir)):
        if folder.is_dir():
            for p in folder.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- settings <-> command line
#: Config fields whose command-line flag is not ``--`` + the field name with dashes. The one table the
#: command line uses to name flags in error messages and the reproduce command.
FLAG_NAMES = {"learning_rate": "--lr"}

#: Fields never written into a reproduce command (they do not change the result).
NOT_REPRODUCED = ("out", "verbose", "workers", "model_options")


def flag_for(field: str) -> str:
    """The command-line flag of a config field: ``learning_rate`` -> ``--lr``, ``image_size`` -> ``--image-size``."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def reproduce_command(command: str, config, default) -> str:
    """The ``python -m Functions <command>`` line that repeats a run: the settings of the dataclass
    ``config`` that differ from those of ``default`` (an instance with the defaults)."""
    from dataclasses import fields

    parts = [f"python -m Functions {command}"]
    for f in fields(config):
        name = f.name
        value, base = getattr(config, name), getattr(default, name, None)
        if name == "augment" and value is None and base is not None:
            parts.append("--augment none")                 # the default augments: say that this run did not
            continue
        if name in NOT_REPRODUCED or value == base or value is None:
            continue
        flag = flag_for(name)
        if name == "jit_compile":
            parts.append("--jit" if value is True else "--no-jit" if value is False else f"--jit {value}")
        elif isinstance(value, bool):
            if value:
                parts.append(flag)
            elif base:
                parts.append(flag.replace("--", "--no-", 1))
        elif isinstance(value, dict):
            parts += [f"{flag} {k}={v}" for k, v in sorted(value.items())]
        else:
            parts.append(f"{flag} {value}")
    parts += [f"--model-option {k}={v}" for k, v in sorted(getattr(config, "model_options", {}).items())]
    return " ".join(parts)
