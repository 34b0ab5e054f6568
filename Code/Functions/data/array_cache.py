"""A write-once, locked, content-keyed disk cache of decoded arrays (``.npy`` files read as memory maps).

:func:`Functions.data.native.load_native` keeps decoded training data here when
it exceeds ``--max-memory``.  Three rules keep a run from reading stale or
torn data:

* **content-keyed** - :func:`files_key` hashes the *bytes* of every image and
  mask file (BLAKE2b; a few hundred MB take seconds), with the settings that
  change the decoded arrays.  A corrected annotation changes the key even when
  its size and modification time are the same, so the old masks are never
  served for it.
* **atomic, write-once** - an entry ``<root>/<prefix>-<key[:16]>/`` is built
  in a temporary folder (``<prefix>-<key[:16]>.tmp-<pid>-<random>``) and renamed into place
  only when every array and its ``manifest.json`` (the key, and each file's
  size) are written.  A complete entry is never deleted or rewritten, so a
  run that maps its files is never pulled from under; a folder without a
  matching manifest, or with a file of the wrong size, is *torn*: it is never
  read, and it is set aside and rebuilt.
* **locked** - while an entry is built its writer holds an exclusive lock
  (``fcntl.flock`` on ``<root>/.<prefix>-<key[:16]>.lock``), so of two runs
  started together on one key one builds and the other waits and reuses the
  entry; leftover temporary folders of crashed runs are removed under the
  lock.  Where file locks are unavailable (Windows, some network file
  systems) both runs may build, each in its own temporary folder; the first
  rename wins and the other run discards its copy and reads the winner's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("Functions")

MANIFEST = "manifest.json"


def file_digest(path: str | os.PathLike, memo: dict | None = None) -> str:
    """BLAKE2b (128-bit, hex) of the bytes of ``path``; ``"missing"`` when it is not a file.

    ``memo`` (a dict) remembers digests by path within one key (slices of one volume share a file).
    """
    key = str(path)
    if memo is not None and key in memo:
        return memo[key]
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        digest = "missing"
    if memo is not None:
        memo[key] = digest
    return digest


def files_key(items: Iterable[tuple[object, Iterable[str | os.PathLike]]], settings: dict) -> str:
    """SHA-256 (hex) of ``settings`` and of each item's description and the contents of its files.

    ``items``: ``(description, files)`` pairs, e.g. a sample's paths and slice index with its image
    and mask files; the description is JSON-encoded (``str`` for what JSON cannot hold).
    """
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    memo: dict[str, str] = {}
    for description, files in items:
        h.update(json.dumps(description, sort_keys=True, default=str).encode())
        for f in files:
            h.update(f"|{file_digest(f, memo)}".encode())
    return h.hexdigest()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive ``fcntl.flock`` on the file ``path`` (created when missing) for the ``with`` block.

    Yields True when the lock is held, False where file locks are unavailable (Windows, a file
    system that refuses them): the block then runs unlocked.
    """
    try:
        import fcntl
    except ImportError:                               # Windows: no flock; renames keep entries whole
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another run that is writing the cache entry %s", path.name)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:                               # a file system without locks
            locked = False
        else:
            locked = True
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def entry_files(n: int) -> list[str]:
    """The array files of an entry of ``n`` items: ``image-00000.npy``, ``mask-00000.npy``, ..."""
    return [f"{kind}-{i:05d}.npy" for i in range(n) for kind in ("image", "mask")]


def read_complete(entry: Path, key: str) -> dict | None:
    """The manifest of ``entry`` when it is a complete entry for ``key`` (every file there, of its
    recorded size), else ``None`` (missing or torn: never read)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("key") != key or not isinstance(manifest.get("sizes"), dict):
        return None
    n = manifest.get("n")
    if not isinstance(n, int) or sorted(manifest["sizes"]) != sorted(entry_files(n)):
        return None
    for name, size in manifest["sizes"].items():
        try:
            if (entry / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return manifest


def _set_aside(folder: Path) -> None:
    """Rename ``folder`` out of the way and delete it (what cannot be deleted now is left to a later run)."""
    trash = folder.with_name(f"{folder.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        folder.rename(trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def cached_entry(root: str | os.PathLike, key: str, n: int, build: Callable[[Path], dict | None],
                 prefix: str = "native") -> tuple[Path, bool]:
    """The folder of the complete entry for ``key`` under ``root``, built when missing -> ``(folder, reused)``.

    ``build(folder)`` writes the ``n`` items' arrays (:func:`entry_files`) into the temporary
    ``folder`` and may return more fields for the manifest.  See the module docstring for the rules.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}-{key[:16]}"
    entry = root / name
    if read_complete(entry, key) is not None:         # complete entries never change: no lock needed to read
        return entry, True
    with exclusive_lock(root / f".{name}.lock") as locked:
        if read_complete(entry, key) is not None:     # another run built it while this one waited
            return entry, True
        if locked:                                    # leftovers of crashed runs: only a lock holder writes
            for old in root.glob(f"{name}.tmp-*"):
                shutil.rmtree(old, ignore_errors=True)
            for old in root.glob(f"{name}.stale-*"):
                shutil.rmtree(old, ignore_errors=True)
        if entry.exists():                            # torn (no manifest, wrong key or size): never read
            log.info("cache entry %s is incomplete; rebuilding it", entry)
            _set_aside(entry)
        tmp = root / f"{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            extra = build(tmp) or {}
            sizes = {f: (tmp / f).stat().st_size for f in entry_files(n)}
            manifest = {**extra, "key": key, "n": n, "sizes": sizes}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            try:
                os.rename(tmp, entry)                 # atomic: the entry appears whole or not at all
            except OSError:
                if read_complete(entry, key) is None:  # not another run's finished entry: a real error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # unlocked race lost: read the winner's entry
                return entry, True
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry, False
