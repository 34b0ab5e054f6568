"""Recipe files: every setting of a run in one TOML file (``train --config FILE``; YAML too when PyYAML is
installed), and ``recipe.toml``, the full resolved recipe every ``train`` run folder holds.

Keys are config field names (``epochs``, ``patch_size``, ``class_weights``...), flat or grouped in tables,
except ``[model_options]``, whose keys are the architecture's options.  A table named after a config section
(``[data]``, ``[optimisation]``, ``[patches]``... :mod:`Functions.engine.config`) holds that section's keys;
any other table only groups (``[model] epochs = 3`` is ``epochs = 3``).  TOML has no null: the settings left unset (``None``: decided from
the data) are listed in ``unset = ["channels", ...]``.  :func:`write_recipe` is a tiny TOML writer for
exactly these values (booleans, numbers, strings, lists of them, one level of tables), so
``train --config runs/X/recipe.toml`` repeats run X.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable
from pathlib import Path

from Functions.base.errors import UserError

#: The key that lists settings left unset (None) in a recipe.
UNSET = "unset"
#: The key holding the architecture options (a table, not a section).
TABLES = ("model_options",)


def _load(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserError(f"--config {path} is YAML, which needs PyYAML (pip install pyyaml); or write the "
                            "recipe as TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"--config {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
        if data is None:
            data = {}
    else:
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"--config {path} is not valid TOML ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold key = value settings, got a {type(data).__name__}")
    return data


def read_recipe(path: str | Path, known: Iterable[str], sections: dict | None = None) -> dict:
    """The settings of the recipe file ``path`` as ``{field: value}`` (tables flattened, ``unset`` keys None).

    ``known``: the keys a recipe may hold; ``sections``: ``{section name: keys}``, the keys a table of that name
    may hold.  One :class:`UserError` naming the file and the key for a key that does not exist (with the
    closest known key) or sits in another section's table, and for a file that is missing or not valid
    TOML/YAML.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--config {path} does not exist; give a recipe file (.toml), e.g. a run folder's "
                        "recipe.toml")
    known, sections = set(known), sections or {}
    flat: dict = {}
    for key, value in _load(path).items():
        key = str(key).replace("-", "_")
        if isinstance(value, dict) and key not in TABLES:
            for k, v in value.items():
                k = str(k).replace("-", "_")
                if key in sections and k not in sections[key] and k != UNSET:
                    home = [name for name, keys in sections.items() if k in keys]
                    where = f"; it belongs in [{home[0]}]" if home else _hint(k, sections[key] | known)
                    raise UserError(f"--config {path}: [{key}] has no key {k!r}{where}")
                flat[k] = v
        else:
            flat[key] = value
    unset = flat.pop(UNSET, [])
    if not isinstance(unset, list):
        raise UserError(f"--config {path}: {UNSET} must be a list of setting names, got {unset!r}")
    for key in unset:
        flat[str(key).replace("-", "_")] = None
    for key in flat:
        if key not in known:
            raise UserError(f"--config {path}: unknown key {key!r}{_hint(key, known)}")
    return flat


def _hint(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else "; see `python -m Functions train --help-all`"


def toml_value(value) -> str:
    """One value as TOML (booleans, integers, floats, strings, paths, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)    # a TOML basic string: JSON's escapes are TOML's
    raise UserError(f"cannot write {value!r} ({type(value).__name__}) to a recipe file")


def recipe_text(values: dict, header: Iterable[str] = (), sections: dict | None = None) -> str:
    """The TOML text of ``values``: comment lines, plain keys, ``unset = [...]``, then the tables.

    ``sections``: ``{section name: keys}``; the keys of each are written as a ``[section]`` table (in that
    order), the others as plain keys.
    """
    lines = [f"# {h}" if h else "#" for h in header]
    if lines:
        lines.append("")
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    unset = [k for k, v in values.items() if v is None]
    grouped = {k for keys in (sections or {}).values() for k in keys}
    for key, value in values.items():
        if value is not None and key not in tables and key not in grouped:
            lines.append(f"{key} = {toml_value(value)}")
    if unset:
        lines.append(f"{UNSET} = {toml_value(unset)}")
    for name, keys in (sections or {}).items():
        body = [f"{k} = {toml_value(values[k])}" for k in keys
                if k in values and values[k] is not None and k not in tables]
        if body:
            lines += ["", f"[{name}]"] + body
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_recipe(path: str | Path, values: dict, header: Iterable[str] = (), sections: dict | None = None) -> Path:
    """Write ``values`` as a recipe file (atomically), ``sections`` as tables (:func:`recipe_text`); returns
    the path."""
    from Functions.base.runs import atomic_write_text

    path = Path(path)
    atomic_write_text(path, recipe_text(values, header, sections))
    return path
