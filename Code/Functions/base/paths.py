"""Where things live: the repository, the offline sample, the data dir and run folders.

No absolute path is written anywhere in the package.  Locations come from
arguments, from the ``MIP_DATA_DIR`` environment variable, or from the
repository this package was installed from (``pip install -e .``).
"""

from __future__ import annotations

import os
from pathlib import Path

from Functions.base.errors import UserError

#: Environment variable that overrides the default data directory.
DATA_DIR_ENV = "MIP_DATA_DIR"


def package_dir() -> Path:
    """The ``Functions`` package folder (``Code/Functions`` in a checkout)."""
    return Path(__file__).resolve().parent.parent


def repo_root() -> Path | None:
    """The repository root when running from a checkout (``Code/Functions``), else ``None``."""
    root = package_dir().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "Data").is_dir() else None


def sample_dir(name: str = "nuclei") -> Path:
    """The offline sample shipped in ``Data/sample/<name>`` (``nuclei`` or ``ultrasound``)."""
    root = repo_root()
    if root is None:
        raise UserError(
            "the offline sample lives in the repository's Data/ folder, which this installation "
            "cannot see; clone the repository and run `pip install -e .`, or pass --data DIR"
        )
    path = root / "Data" / "sample" / name
    if not path.is_dir():
        raise UserError(f"sample folder {path} is missing; restore it with `git checkout -- Data/`")
    return path


def default_data_dir() -> Path:
    """Where datasets are downloaded: ``$MIP_DATA_DIR``, else ``<repo>/Data/datasets``, else ``~/mip_data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if root is not None and os.access(root / "Data", os.W_OK):
        return root / "Data" / "datasets"
    return Path.home() / "mip_data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """An explicit ``data_dir`` argument wins over the environment and the default."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def new_run_dir(out: str | os.PathLike | None, prefix: str = "run") -> Path:
    """A fresh run folder.

    ``out`` given: it must not already hold a run (any file in it) - an existing
    run is never overwritten.  ``out`` omitted: ``runs/<prefix>-YYYYmmdd-HHMMSS``
    (with a numeric suffix if that exists).
    """
    import time

    if out is not None:
        path = Path(out).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} is a file, not a folder; choose a new folder name")
        if path.is_dir() and any(path.iterdir()):
            raise UserError(
                f"--out {path} already holds files; pass a new folder (or --resume {path} to continue that run)"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path("runs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{prefix}-{stamp}"
    k = 1
    while path.exists():
        path = base / f"{prefix}-{stamp}-{k}"
        k += 1
    path.mkdir(parents=True)
    return path


def walk_folders(root: str | os.PathLike):
    """:func:`os.walk` of ``root`` that follows linked folders, entering each real folder once.

    Yields ``(dirpath, dirnames, filenames)`` top-down, names sorted; prune by
    editing ``dirnames`` in place, as with :func:`os.walk`.  Symbolic links to
    folders are followed (Colab's Drive mounts and shared data folders arrive
    as links), and a folder whose real path (:func:`os.path.realpath`) was
    already walked is skipped with everything below it: a link to a parent
    cannot loop, and a folder reached by two paths is read once (by the first
    path in sorted order).
    """
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        filenames.sort()
        yield dirpath, dirnames, filenames
