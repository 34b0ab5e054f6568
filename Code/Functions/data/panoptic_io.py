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


def majority_types(instances, pixel_classes, num_classes: int) -> np.ndarray:
    """Class map where each object takes the majority type of its pixels (HoVer-Net's rule).

    ``instances`` ``(H, W)`` object ids, ``pixel_classes`` ``(H, W)`` per-pixel
    classes (0 background, ``1..num_classes`` object types, above: stuff).
    Votes count only object-type pixels (ties: the lower type; an object
    with no typed pixel takes type 1).  Pixels outside objects keep their
    class unless it is an object type, which becomes 0 (object types exist
    only inside objects).
    """
    inst = np.asarray(instances).astype(np.int64)
    cls = np.asarray(pixel_classes).astype(np.int64)
    out = np.where((inst == 0) & (cls > num_classes), cls, 0)
    ids, index = np.unique(inst.ravel(), return_inverse=True)
    typed = (cls.ravel() >= 1) & (cls.ravel() <= num_classes)
    votes = np.zeros((len(ids), num_classes + 1), np.int64)
    np.add.at(votes, (index[typed], cls.ravel()[typed]), 1)
    best = np.argmax(votes[:, 1:], axis=1) + 1
    lut = np.where(ids == 0, 0, best)
    objects = lut[index].reshape(inst.shape)
    return np.where(inst > 0, objects, out).astype(np.int32)


def sample_panoptic_maps(sample, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """``(instance map, class map)`` of a discovered sample: ``instances/<stem>`` (``Sample.instances``) and the
    class map of the same stem in the ``classes/`` folder beside it; checked against the image's ``shape``."""
    inst_path = getattr(sample, "instances", None)
    if inst_path is None:
        raise UserError(f"{sample.image} has no instance map; --task panoptic needs {INSTANCE_DIR}/<name>.png "
                        f"and {CLASS_DIR}/<name>.png beside images/ (see make-sample --kind panoptic)")
    inst_path = Path(inst_path)
    cls_dir = inst_path.parent.parent / CLASS_DIR
    found = sorted(p for p in cls_dir.glob(inst_path.stem + ".*") if is_image_file(p)) if cls_dir.is_dir() else []
    if not found:
        raise UserError(f"instance map {inst_path} has no class map {cls_dir / (inst_path.stem + '.png')}; "
                        f"--task panoptic reads object types and stuff classes from {CLASS_DIR}/")
    inst, cls = read_label_map(inst_path), read_label_map(found[0])
    if inst.shape != cls.shape:
        raise UserError(f"instance map {inst_path} is {inst.shape[1]}x{inst.shape[0]} but class map {found[0]} is "
                        f"{cls.shape[1]}x{cls.shape[0]}; both must have the image's size")
    if shape is not None and tuple(inst.shape) != tuple(shape[:2]):
        raise UserError(f"instance map {inst_path} is {inst.shape[1]}x{inst.shape[0]} but its image "
                        f"{sample.image} is {shape[1]}x{shape[0]}")
    return inst, cls


def panoptic_class_info(folder) -> dict | None:
    """``classes.json`` of a panoptic folder (``num_classes`` object types, ``stuff_classes``, ``class_names``)."""
    import json

    path = Path(folder) / "classes.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        return {"num_classes": int(info["num_classes"]), "stuff_classes": int(info.get("stuff_classes", 0)),
                "class_names": [str(n) for n in info.get("class_names", [])] or None}
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a classes.json with num_classes (object types), stuff_classes and "
                        "class_names; repair or remove it") from None


def infer_panoptic_classes(maps) -> tuple[int, int]:
    """``(object types T, stuff classes S)`` from ``(instance, class)`` maps: the ids seen inside objects are
    the types ``1..T``, the other ids seen outside objects the stuff ``T+1..T+S``."""
    inside, outside = set(), set()
    for inst, cls in maps:
        inside |= set(np.unique(cls[inst > 0]).tolist())
        outside |= set(np.unique(cls[inst == 0]).tolist())
    inside.discard(0)
    stuff = sorted((outside - inside) - {0})
    t = max(inside, default=0)
    if not inside or sorted(inside) != list(range(1, t + 1)) or stuff != list(range(t + 1, t + 1 + len(stuff))):
        raise UserError(f"object classes {sorted(inside)} and stuff classes {stuff} are not numbered 1..T and "
                        "T+1..T+S; write a classes.json beside instances/ (num_classes, stuff_classes, class_names)")
    return t, len(stuff)
