"""Multi-class masks: reading class maps, the value -> class mapping, and the checks around them.

A *class map* is an integer array ``(H, W)`` with values ``0 .. K-1`` (0 =
background).  Files store classes in one of three ways:

* grey values equal to the class index (``0, 1, 2``; the offline
  ``Data/sample/tissue`` masks);
* grey values spread over the 8-bit range (``0, 128, 255`` or
  ``0, 85, 170, 255``), mapped to classes by a **class map**
  ``{value: class}``: given by the user (``--class-map 0:0,128:1,255:2``) or
  inferred from the values found in the training masks, in increasing order
  (:func:`infer_class_map`);
* a palette ("P" mode) PNG, whose palette *indices* are the classes (read
  with Pillow so the colours do not get in the way).

Inference rule (:func:`infer_class_map`): the distinct values of all the
given mask files are counted.  Two common values (``0/255``, ``0/1``) mean a
binary task (``None`` is returned); 3 to :data:`MAX_INFERRED_CLASSES` common
values become classes ``0..K-1`` in increasing order of value; rare values
(anti-aliasing) next to several common ones are refused as ambiguous; many
values (an instance label map) stay binary as before.  Lossy JPEG masks are
always binary.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

#: Most distinct mask values taken as classes when inferring a class map.
MAX_INFERRED_CLASSES = 16


def read_raw_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file's stored values ``(H, W)`` int64: palette indices for palette PNGs, else the grey
    value (the brightest channel for colour files)."""
    p = Path(path)
    if p.suffix.lower() in (".png", ".gif", ".bmp", ".tif", ".tiff"):
        try:
            from PIL import Image

            with Image.open(p) as im:
                if im.mode == "P":
                    return np.array(im).astype(np.int64)
        except Exception:  # noqa: BLE001 - fall back to the generic reader, which raises a UserError
            pass
    from Functions.data.imaging import read_image

    arr = read_image(p)
    return (arr.max(axis=-1) if arr.shape[-1] > 1 else arr[..., 0]).astype(np.int64)


def parse_class_map(text: str | dict | None) -> dict[int, int] | None:
    """``"0:0,128:1,255:2"`` (or a dict) -> ``{0: 0, 128: 1, 255: 2}``; checks classes are 0..K-1."""
    if text is None or text == "":
        return None
    if isinstance(text, dict):
        items = [(int(k), int(v)) for k, v in text.items()]
    else:
        items = []
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            try:
                value, cls = part.split(":")
                items.append((int(value), int(cls)))
            except ValueError:
                raise UserError(f"--class-map {text!r}: each entry is VALUE:CLASS, e.g. 0:0,128:1,255:2") from None
    mapping = dict(items)
    if len(mapping) != len(items):
        raise UserError(f"--class-map {text!r} lists a mask value twice; give each value one class")
    classes = sorted(set(mapping.values()))
    if not mapping or classes != list(range(len(classes))) or 0 not in mapping.values():
        raise UserError(f"--class-map {text!r} must map values to the classes 0..K-1 with none missing "
                        "(0 = background), e.g. 0:0,128:1,255:2")
    return mapping


def mask_values(paths, limit: int | None = None) -> list[int]:
    """Sorted distinct stored values over the mask files ``paths`` (the first ``limit`` files if given)."""
    return sorted(value_counts(paths, limit))


def value_counts(paths, limit: int | None = None) -> dict[int, int]:
    """``{stored value: pixels}`` over the mask files ``paths`` (the first ``limit`` files if given)."""
    counts: dict[int, int] = {}
    for path in list(paths)[:limit] if limit else paths:
        values, n = np.unique(read_raw_mask(path), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[v] = counts.get(v, 0) + c
    return counts


#: A mask value holding less than this share of all mask pixels is noise (anti-aliasing, JPEG), not a class.
RARE_VALUE_SHARE = 1e-4


def infer_class_map(paths, limit: int | None = None) -> dict[int, int] | None:
    """The value -> class mapping the masks imply; ``None`` = binary (foreground = non-zero, as before).

    Values holding less than :data:`RARE_VALUE_SHARE` of the pixels are noise.
    At most two common values: binary.  3 to :data:`MAX_INFERRED_CLASSES`
    common values and no rare ones: classes ``0..K-1`` in increasing order of
    value (0 is always class 0).  Common values plus rare ones: ambiguous, a
    :class:`UserError` asks for ``--class-map`` or ``--num-classes 1``.  More
    common values (an instance label map): binary, with a log note.
    """
    paths = [Path(p) for p in paths]
    if not paths or any(p.suffix.lower() in (".jpg", ".jpeg") for p in paths):
        return None
    counts = value_counts(paths, limit)
    total = sum(counts.values())
    common = sorted(v for v, c in counts.items() if c >= RARE_VALUE_SHARE * total)
    rare = sorted(v for v in counts if v not in common)
    if len(common) <= 2:
        return None
    if len(common) > MAX_INFERRED_CLASSES:
        import logging

        logging.getLogger("Functions").info(
            "note: the masks hold %d distinct values - read as binary (non-zero = foreground); use --task instance "
            "for instance label maps or --class-map for classes", len(common))
        return None
    if rare:
        shown = ", ".join(map(str, rare[:6])) + (", ..." if len(rare) > 6 else "")
        raise UserError(
            f"the training masks hold the values {', '.join(map(str, common))} and rarely {shown}; pass "
            "--class-map VALUE:CLASS,... to say which are classes, or --num-classes 1 for binary masks"
        )
    values = common if common[0] == 0 else [0] + common  # background is always class 0
    return {v: i for i, v in enumerate(values)}


def apply_class_map(raw: np.ndarray, mapping: dict[int, int] | None, path, num_classes: int) -> np.ndarray:
    """Stored values ``(H, W)`` -> class map ``(H, W)`` uint8, checked against ``num_classes``.

    ``mapping`` None: values are the classes.  A value missing from the
    mapping, or a class ``>= num_classes``, raises a one-line
    :class:`UserError` naming the file.
    """
    raw = np.asarray(raw, np.int64)
    if mapping is None:
        out = raw
    else:
        values = np.unique(raw)
        unknown = [int(v) for v in values if int(v) not in mapping]
        if unknown:
            raise UserError(
                f"mask {path} holds value(s) {', '.join(map(str, unknown[:5]))} not in the class map "
                f"{format_class_map(mapping)}; add them to --class-map or fix the mask"
            )
        lut = np.zeros(int(values.max(initial=0)) + 1, np.int64)
        for v, c in mapping.items():
            if v < len(lut):
                lut[v] = c
        out = lut[raw]
    top = int(out.max(initial=0))
    if top >= num_classes or int(out.min(initial=0)) < 0:
        raise UserError(
            f"mask {path} holds class {top} but the model has {num_classes} classes (0..{num_classes - 1}); "
            f"pass --num-classes {top + 1} or a --class-map that maps every value to a class below {num_classes}"
        )
    return out.astype(np.uint8 if num_classes <= 256 else np.int32)


def read_class_mask(path, mapping: dict[int, int] | None, num_classes: int) -> np.ndarray:
    """Read a class mask file as ``(H, W)`` classes ``0..num_classes-1`` (see :func:`apply_class_map`)."""
    return apply_class_map(read_raw_mask(path), mapping, path, num_classes)


def check_binary_mask(raw: np.ndarray, path) -> None:
    """Refuse a label map (3+ common values) where a binary mask is expected: one-line :class:`UserError`."""
    values, counts = np.unique(np.asarray(raw), return_counts=True)
    values = values[counts >= RARE_VALUE_SHARE * counts.sum()]   # anti-aliasing specks are not labels
    if len(values) > 2 and Path(str(path)).suffix.lower() not in (".jpg", ".jpeg"):
        shown = ", ".join(str(int(v)) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise UserError(
            f"mask {path} holds {len(values)} values ({shown}), a label map, where a binary mask is expected; "
            f"train it as classes with --num-classes {len(values)} (or --class-map), as instances with "
            "--task instance, or save it as a 0/255 mask"
        )


def format_class_map(mapping: dict[int, int] | None) -> str:
    """``{0: 0, 128: 1}`` -> ``"0:0,128:1"`` (``"identity"`` for None)."""
    if mapping is None:
        return "identity"
    return ",".join(f"{v}:{c}" for v, c in sorted(mapping.items()))


def class_pixel_counts(masks, num_classes: int) -> np.ndarray:
    """Pixels of each class over class maps ``masks`` (iterable of ``(H, W)``): ``(K,)`` int64."""
    total = np.zeros(num_classes, np.int64)
    for m in masks:
        total += np.bincount(np.asarray(m, np.int64).ravel(), minlength=num_classes)[:num_classes]
    return total


def balanced_class_weights(counts) -> list[float]:
    """Inverse-frequency weights ``N / (K * n_c)`` (sklearn's "balanced"); a class with no pixels gets 0."""
    counts = np.asarray(counts, np.float64)
    k = len(counts)
    total = counts.sum()
    return [float(total / (k * c)) if c > 0 else 0.0 for c in counts]
