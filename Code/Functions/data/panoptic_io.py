"""Panoptic maps on disk: an instance map and a class map per image, in two layouts.

A panoptic map of one image is the pair ``(instance map, class map)``, both
``(H, W)`` integers (see :mod:`Functions.metrics.panoptic` for what the
values mean).  :func:`read_panoptic_folder` reads a folder (or file) in
either layout; :func:`write_panoptic` writes the first.

1. **PNG pairs** - ``DIR/instances/<stem>.png`` and ``DIR/classes/<stem>.png``
   (16-bit grey PNG or TIFF, values kept), paired by stem.
2. **NumPy** (CoNIC's layout) - ``.npy`` files directly in ``DIR``, each
   ``(H, W, 2)`` (one image, named by the file's stem) or ``(N, H, W, 2)``
   (``N`` images named ``<stem>_0000``...); ``[..., 0]`` instance,
   ``[..., 1]`` class.  A single ``.npy`` file may be passed instead of a folder.

Every fault (a ``.npy`` with the wrong channel count, instance and class
maps of different sizes, an instance map without its class map) raises one
:class:`UserError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.data.imaging import is_image_file
from Functions.data.instances import read_label_map, write_label_map

#: Sub-folder names of the PNG-pair layout.
INSTANCE_DIR = "instances"
CLASS_DIR = "classes"


def _check_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim not in (3, 4) or arr.shape[-1] != 2:
        raise UserError(f"{path} has shape {arr.shape}; a panoptic .npy is (H, W, 2) or (N, H, W, 2) with "
                        "channel 0 the instance map and channel 1 the class map")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.round(arr)):
            raise UserError(f"{path} holds fractional values; instance ids and classes must be integers")
    if arr.size and arr.min() < 0:
        raise UserError(f"{path} holds negative values; instance ids and classes must be >= 0")
    return arr.astype(np.int32)


def read_panoptic_npy(path: str | os.PathLike) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, instance map, class map)]`` from one ``.npy`` file ((H, W, 2) or (N, H, W, 2))."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as a NumPy array ({exc}); save it with numpy.save") from None
    arr = _check_array(arr, path)
    if arr.ndim == 3:
        return [(path.stem, arr[..., 0], arr[..., 1])]
    return [(f"{path.stem}_{i:04d}", a[..., 0], a[..., 1]) for i, a in enumerate(arr)]


def read_panoptic_folder(folder: str | os.PathLike, flag: str = "folder",
                         sources: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (instance map, class map)}`` from a folder in either layout, or one ``.npy`` file.

    ``sources``: a dict filled with ``{name: the file (class map or .npy) it came from}``, for messages.
    """
    folder = Path(folder)
    sources = {} if sources is None else sources
    if folder.is_file() and folder.suffix.lower() == ".npy":
        items = read_panoptic_npy(folder)
        sources.update({n: folder for n, _, _ in items})
        return {n: (i, c) for n, i, c in items}
    if not folder.is_dir():
        raise UserError(f"{flag} {folder} is neither a folder nor a .npy file; pass a folder holding "
                        f"{INSTANCE_DIR}/ and {CLASS_DIR}/ (16-bit PNGs) or .npy files (H, W, 2)")
    inst_dir, cls_dir = folder / INSTANCE_DIR, folder / CLASS_DIR
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if inst_dir.is_dir() or cls_dir.is_dir():
        if not (inst_dir.is_dir() and cls_dir.is_dir()):
            raise UserError(f"{flag} {folder} has only one of {INSTANCE_DIR}/ and {CLASS_DIR}/; the PNG layout "
                            "needs both (instance ids and classes, paired by file name)")
        insts = _stems(inst_dir)
        classes = _stems(cls_dir)
        for stem, ipath in sorted(insts.items()):
            if stem not in classes:
                raise UserError(f"instance map {ipath} has no class map {cls_dir / (stem + '.png')}; "
                                "write both files for every image")
            cpath = classes[stem]
            inst, cls = read_label_map(ipath), read_label_map(cpath)
            if inst.shape != cls.shape:
                raise UserError(f"instance map {ipath} is {inst.shape[1]}x{inst.shape[0]} but class map {cpath} "
                                f"is {cls.shape[1]}x{cls.shape[0]} (width x height); both must have one size")
            out[stem] = (inst, cls)
            sources[stem] = cpath
        extra = sorted(set(classes) - set(insts))
        if extra:
            raise UserError(f"class map {classes[extra[0]]} has no instance map in {inst_dir}; write both files "
                            "for every image")
    for path in sorted(folder.glob("*.npy")):
        for name, inst, cls in read_panoptic_npy(path):
            if name in out:
                raise UserError(f"{flag} {folder}: image {name} appears twice ({path}); keep one copy")
            out[name] = (inst, cls)
            sources[name] = path
    if not out:
        raise UserError(f"{flag} {folder} holds no panoptic maps: expected {INSTANCE_DIR}/ + {CLASS_DIR}/ "
                        "16-bit PNGs or .npy files of shape (H, W, 2) / (N, H, W, 2)")
    return out


def _stems(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and is_image_file(path):
            if path.stem in found:
                raise UserError(f"{folder} holds two files named {path.stem}; keep one")
            found[path.stem] = path
    return found


def write_panoptic(folder: str | os.PathLike, stem: str, instances: np.ndarray, classes: np.ndarray) -> None:
    """Write ``folder/instances/<stem>.png`` and ``folder/classes/<stem>.png`` (16-bit)."""
    folder = Path(folder)
    if np.shape(instances) != np.shape(classes):
        raise ValueError(f"instance map {np.shape(instances)} and class map {np.shape(classes)} differ in shape")
    write_label_map(folder / INSTANCE_DIR / f"{stem}.png", instances)
    write_label_map(folder / CLASS_DIR / f"{stem}.png", classes)
