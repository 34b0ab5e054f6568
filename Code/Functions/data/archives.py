"""Unpacking downloaded archives without letting them write outside their folder.

A dataset archive is untrusted input: a ZIP or TAR member may be named
``/etc/x``, ``../../x`` or ``C:\\x``, and a TAR may carry a symbolic or hard
link that points outside the extraction folder (a later member then writes
*through* the link).  :func:`safe_extract` therefore

1. reads the whole member list first and refuses the archive - before a
   single byte is written - if any member has an absolute path, a drive
   letter, a ``..`` component, resolves outside the destination, is a link
   pointing outside it, or is a device/FIFO;
2. refuses an archive whose unpacked size exceeds the free disk space;
3. extracts with the standard library, TAR members through Python's
   ``filter="data"`` where available (Python >= 3.11.4 / 3.12) as a second
   line of defence.

:func:`Functions.datasets.install` extracts into a temporary folder inside
the data directory and moves it into place only when everything succeeded,
so a refused or broken archive leaves nothing half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from Functions.base.errors import UserError

_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe, or ``None`` when it is a plain relative path."""
    if not name:
        return "an empty name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "an absolute path"
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        return "a '..' component"
    if "\x00" in name:
        return "a NUL character"
    return None


def _inside(dest: Path, name: str) -> bool:
    target = (dest / name).resolve()
    return target == dest or dest in target.parents


def _refuse(archive: Path, member: str, why: str) -> UserError:
    return UserError(
        f"refusing to unpack {archive}: member {member!r} has {why}, which would write outside the target "
        "folder; nothing was extracted - get the archive from the dataset's official page"
    )


def archive_format(path: Path) -> str:
    """``"zip"`` or ``"tar"`` (plain or compressed), by content rather than by file name."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise UserError(f"{path} is not a ZIP or TAR archive; pass the archive file exactly as downloaded")


def check_members(archive: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Validate every member of ``archive`` for extraction into ``dest``; return the unpacked size in bytes.

    Raises :class:`UserError` naming the first offending member.  Nothing is written.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    total = 0
    if archive_format(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                why = _unsafe_name(info.filename)
                if why is None and not _inside(dest, info.filename):
                    why = "a path that resolves outside the target"
                mode = info.external_attr >> 16
                if why is None and stat.S_ISLNK(mode):
                    why = "a symbolic link (links are not expected in dataset archives)"
                if why:
                    raise _refuse(archive, info.filename, why)
                total += info.file_size
        return total
    with tarfile.open(archive, "r:*") as tf:
        for m in tf.getmembers():
            why = _unsafe_name(m.name)
            if why is None and not _inside(dest, m.name):
                why = "a path that resolves outside the target"
            if why is None and (m.issym() or m.islnk()):
                link = m.linkname
                if m.issym():  # relative to the link's own folder
                    resolved = str(PurePosixPath(m.name).parent / link)
                else:  # hard links name another member
                    resolved = link
                if _unsafe_name(link) == "an absolute path" or not _inside(dest, resolved):
                    why = f"a link to {link!r} outside the target"
            if why is None and (m.isdev() or m.isfifo()):
                why = "a device or FIFO entry"
            if why:
                raise _refuse(archive, m.name, why)
            total += max(m.size, 0)
    return total


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract ``archive`` (ZIP, TAR, TAR.GZ/BZ2/XZ) into ``dest`` after :func:`check_members`.

    ``dest`` is created if needed.  Raises :class:`UserError` for an unsafe or
    unreadable archive, or when the disk cannot hold the unpacked files.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise UserError(f"archive {archive} does not exist; check the path given to --archive")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        size = check_members(archive, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise UserError(f"{archive} is damaged or incomplete ({exc}); download it again") from None
    free = shutil.disk_usage(dest).free
    if size > free:
        raise UserError(
            f"{archive} unpacks to {size / 1e9:.1f} GB but {dest} has only {free / 1e9:.1f} GB free; "
            "free some space or choose another --data-dir"
        )
    try:
        if archive_format(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were validated above
                    tf.extractall(dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise UserError(f"{archive} is damaged or incomplete ({exc}); download it again") from None
