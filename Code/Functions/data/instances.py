"""Instance label maps: reading, writing and building them from the layouts data sets use.

An *instance label map* is an integer array ``(H, W)``: 0 is background and
every other value is one object (``int32`` in memory, 16-bit PNG on disk).
The merged semantic mask is ``label_map > 0``.

Where a sample's instances come from (:func:`instance_sources`, in order):

1. ``Sample.instances`` - a label-map file found by discovery in an
   ``instances/`` folder beside ``images/`` and ``masks/`` (the offline
   nuclei sample: ``Data/sample/nuclei/instances/<name>.png``, 16-bit).
2. Several mask files (``Sample.masks``) - one object per file: DSB2018's
   ``<id>/masks/*.png`` (one PNG per nucleus) and ``name_mask.png`` +
   ``name_mask_1.png`` ... .  File ``k`` (sorted order, from 0) becomes label
   ``k + 1``; where two files overlap the later file wins.  A file that
   itself holds several label values keeps them apart (offset so labels stay
   unique).
3. One mask file - read as a label map: a file with two values (0 and one
   foreground value, e.g. 0/255) is a binary mask and its 8-connected
   components become the objects; a file with several foreground values
   (an 8- or 16-bit label map) keeps its values as the objects.

Every size disagreement raises a one-line :class:`UserError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError

from Functions.data.discovery import INSTANCE_DIR_NAMES  # noqa: F401  (re-exported)


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read a label-map file as stored, ``(H, W)`` ``int32`` (0 = background).

    8- and 16-bit grey PNG/TIFF keep their values.  A colour file whose
    channels differ is read as colour-coded instances: each distinct colour
    (black excepted) becomes one label, numbered in order of first appearance
    in raster order.
    """
    from Functions.data.imaging import read_image

    arr = read_image(path)
    if arr.shape[-1] == 1:
        out = arr[..., 0]
    elif np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        out = arr[..., 0]
    else:
        code = (arr[..., 0].astype(np.int64) << 32) | (arr[..., 1].astype(np.int64) << 16) | arr[..., 2]
        flat = code.ravel()
        colours, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
        rank = np.zeros(len(colours), np.int64)
        keep = colours != 0
        order = np.argsort(first[keep], kind="stable")
        rank[np.flatnonzero(keep)[order]] = np.arange(1, keep.sum() + 1)
        out = rank[inverse.ravel()].reshape(code.shape)
    if np.issubdtype(out.dtype, np.floating):
        if not np.array_equal(out, np.round(out)):
            raise UserError(f"label map {path} holds fractional values; save instance labels as integers "
                            "(8- or 16-bit PNG)")
    return np.asarray(out).astype(np.int32)


def write_label_map(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write an instance label map ``(H, W)`` as a 16-bit PNG (values kept; at most 65535 objects)."""
    import cv2

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"a label map is (H, W), got shape {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() > 65535):
        raise UserError(f"label map for {path} has labels outside 0..65535; relabel it "
                        "(skimage.segmentation.relabel_sequential) before writing")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), lab.astype(np.uint16)):
        raise UserError(f"could not write {path}; check that the folder exists and is writable")


def components(mask: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Connected components of ``mask > 0`` as an ``int32`` label map (8-connected by default)."""
    m = np.asarray(mask) > 0
    labels, _ = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, connectivity))
    return labels.astype(np.int32)


def label_map_from_file(path: str | os.PathLike) -> np.ndarray:
    """One mask file as instances: binary -> connected components, label map -> its values."""
    lab = read_label_map(path)
    values = np.unique(lab)
    fg = values[values != 0]
    if len(fg) <= 1:
        return components(lab)
    return lab


def label_map_from_files(paths, shape: tuple[int, int] | None = None) -> np.ndarray:
    """One object per file (DSB2018 ``masks/*.png``, ``name_mask_N``): ``(H, W)`` ``int32``.

    ``shape``: the image's ``(H, W)``; every file must have it (else a
    :class:`UserError` naming the file).  Later files win where objects overlap.
    """
    paths = [Path(p) for p in paths]
    out = None
    next_label = 1
    for path in paths:
        lab = read_label_map(path)
        if shape is None:
            shape = lab.shape
        if lab.shape != tuple(shape):
            raise UserError(
                f"instance mask {path} is {lab.shape[1]}x{lab.shape[0]} but its image is {shape[1]}x{shape[0]}; "
                "every instance mask of a sample must have the image's size"
            )
        if out is None:
            out = np.zeros(shape, np.int32)
        values = np.unique(lab)
        fg = values[values != 0]
        if len(fg) <= 1:
            if len(fg):
                out[lab != 0] = next_label
                next_label += 1
        else:
            for v in fg:
                out[lab == v] = next_label
                next_label += 1
    if out is None:
        out = np.zeros(shape if shape is not None else (0, 0), np.int32)
    return out


def instance_sources(sample) -> tuple[str, tuple[Path, ...]]:
    """Where ``sample``'s instances come from: ``("label_map", (path,))``,
    ``("per_object", paths)`` or ``("mask", (path,))`` (see the module docstring)."""
    inst = getattr(sample, "instances", None)
    if inst is not None:
        return "label_map", (Path(inst),)
    masks = tuple(Path(p) for p in sample.masks)
    if not masks:
        raise UserError(f"sample {sample.id} ({sample.image}) has no mask files to read instances from")
    if len(masks) > 1:
        return "per_object", masks
    return "mask", masks


def read_instances(sample, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The instance label map of a :class:`~Functions.data.discovery.Sample`, ``(H, W)`` ``int32``.

    ``shape``: the image's ``(H, W)`` to check against (read from the image when omitted).
    """
    if getattr(sample, "kind", "image") != "image":
        raise UserError(f"instances are read from image files; sample {sample.id} is of kind {sample.kind!r}")
    if shape is None:
        from Functions.data.imaging import read_image

        shape = read_image(sample.image).shape[:2]
    how, paths = instance_sources(sample)
    if how == "per_object":
        return label_map_from_files(paths, shape)
    lab = read_label_map(paths[0]) if how == "label_map" else label_map_from_file(paths[0])
    if lab.shape != tuple(shape):
        raise UserError(
            f"instance mask {paths[0]} is {lab.shape[1]}x{lab.shape[0]} but image {sample.image} is "
            f"{shape[1]}x{shape[0]}; a label map must have its image's size"
        )
    return lab


def load_instance_sample(sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (H, W, C), semantic mask (H, W) uint8 0/1, instance label map (H, W) int32)``."""
    from Functions.data.discovery import load_sample

    image, _ = load_sample(sample)
    labels = read_instances(sample, image.shape[:2])
    return image, (labels > 0).astype(np.uint8), labels
