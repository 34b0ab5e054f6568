"""Finding image/mask pairs on disk, in the layouts public datasets use.

:func:`find_samples` walks a folder recursively and recognises:

1. **Paired folders** - an ``images/`` folder beside a ``masks/`` folder
   (also ``image``/``img``/``imgs`` beside ``mask``/``label``/``labels``/
   ``gt``/``ground_truth``), files matched by stem with any extensions
   (``images/a.jpg`` + ``masks/a.png``).  A mask stem may also carry a
   ``_mask``/``_seg``/``_label``/``_gt`` suffix.
2. **Suffix masks** - ``name.ext`` beside ``name_mask.ext`` in one folder;
   extra masks ``name_mask_1.ext``, ``name_mask_2.ext`` are merged into the
   first.  Class subfolders (BUSI keeps ``benign/``, ``malignant/``,
   ``normal/``) give each sample its ``label``.
3. **One folder per sample** - ``<id>/images/<id>.png`` with a ``<id>/masks/``
   folder of instance masks, merged into one mask (the DSB2018 layout).

Other layouts (DRIVE, MATLAB ``.mat`` slices, DICOM, NIfTI) register a
detector in :data:`LAYOUTS` and a reader in :data:`READERS` from the modules
that know them (:mod:`Functions.datasets`, :mod:`Functions.medical_io`).

Every image without a mask and every mask without an image is listed in one
:class:`~Functions.errors.UserError`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from Functions.base.errors import UserError
from Functions.data.imaging import is_image_file, read_image, read_mask

IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "gt", "ground_truth", "groundtruth")
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_gt", "_segmentation")
_SUFFIX_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One image with its mask file(s).

    ``masks`` holds one path, or several to be merged (instance masks, BUSI's
    ``_mask_1``).  ``kind`` names the reader in :data:`READERS`; ``index`` is
    a slice or frame number for volume formats; ``spacing`` the pixel size
    (row, column) in physical units when the format stores it.
    """

    id: str
    image: Path
    masks: tuple[Path, ...] = ()
    label: str | None = None
    kind: str = "image"
    index: int | None = None
    spacing: tuple[float, float] | None = field(default=None, compare=False)


# ----------------------------------------------------------------------------- readers
def _read_image_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(sample.image)
    mask = None
    for path in sample.masks:
        m = read_mask(path)
        if m.shape != image.shape[:2]:
            raise UserError(
                f"mask {path} is {m.shape[1]}x{m.shape[0]} but image {sample.image} is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size"
            )
        mask = m if mask is None else np.maximum(mask, m)
    if mask is None:
        mask = np.zeros(image.shape[:2], np.uint8)
    return image, mask


#: kind -> function(sample) -> (image (H, W, C), mask (H, W) integer)
READERS: dict[str, Callable[[Sample], tuple[np.ndarray, np.ndarray]]] = {"image": _read_image_sample}


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decode one sample: image ``(H, W, C)`` as stored and mask ``(H, W)`` (0/1 or labels)."""
    try:
        reader = READERS[sample.kind]
    except KeyError:
        raise UserError(f"no reader for samples of kind {sample.kind!r} ({sample.image})") from None
    return reader(sample)


# ----------------------------------------------------------------------------- layouts
def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _mask_key(stem: str) -> str:
    low = stem.lower()
    for suf in MASK_SUFFIXES:
        if low.endswith(suf):
            return stem[: -len(suf)]
    return stem


def _per_sample_folders(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 3: <id>/images/<one image> + <id>/masks/<instance masks>."""
    samples, lonely_images, lonely_masks = [], [], []
    for img_dir in sorted(root.rglob("images")):
        if not img_dir.is_dir() or img_dir in claimed:
            continue
        parent = img_dir.parent
        files = _files(img_dir)
        mask_dir = parent / "masks"
        if len(files) != 1:
            continue  # many images: the paired-folder layout handles it
        claimed.add(img_dir)
        if mask_dir.is_dir():
            claimed.add(mask_dir)
            masks = tuple(_files(mask_dir))
            if masks:
                samples.append(Sample(id=parent.name, image=files[0], masks=masks))
            else:
                lonely_images.append(files[0])
        else:
            lonely_images.append(files[0])
    return samples, lonely_images, lonely_masks


def _paired_folders(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 1: images/ beside masks/ (or the other accepted names), matched by stem."""
    samples, lonely_images, lonely_masks = [], [], []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        names = {n.lower(): n for n in dirnames}
        img_name = next((names[n] for n in IMAGE_DIR_NAMES if n in names), None)
        mask_name = next((names[n] for n in MASK_DIR_NAMES if n in names), None)
        if not img_name or not mask_name:
            continue
        img_dir, mask_dir = d / img_name, d / mask_name
        if img_dir in claimed or mask_dir in claimed:
            continue
        claimed.update({img_dir, mask_dir})
        masks_by_key: dict[str, list[Path]] = defaultdict(list)
        for m in _files(mask_dir):
            masks_by_key[_mask_key(m.stem)].append(m)
        used = set()
        for img in _files(img_dir):
            key = img.stem if img.stem in masks_by_key else _mask_key(img.stem)
            if key in masks_by_key:
                used.add(key)
                rel = img.relative_to(root).parent.parent
                label = None if rel == Path(".") else rel.as_posix()
                samples.append(Sample(id=img.stem, image=img, masks=tuple(masks_by_key[key]), label=label))
            else:
                lonely_images.append(img)
        lonely_masks += [m for k, ms in masks_by_key.items() if k not in used for m in ms]
    return samples, lonely_images, lonely_masks


def _suffix_masks(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 2: name.ext + name_mask.ext (+ name_mask_1.ext ...) in one folder."""
    samples, lonely_images, lonely_masks = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d in claimed or any(p in claimed for p in d.parents):
            dirnames[:] = []
            continue
        files = [d / f for f in sorted(filenames) if is_image_file(f)]
        masks: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        images = []
        for f in files:
            m = _SUFFIX_MASK.match(f.stem)
            if m:
                masks[m.group("stem")].append((int(m.group("k") or 0), f))
            else:
                images.append(f)
        if not masks:
            continue  # a folder without any *_mask file is not this layout
        rel = d.relative_to(root)
        label = None if rel == Path(".") else rel.as_posix()
        used = set()
        for img in images:
            if img.stem in masks:
                used.add(img.stem)
                ordered = tuple(p for _, p in sorted(masks[img.stem]))
                samples.append(Sample(id=img.stem, image=img, masks=ordered, label=label))
            else:
                lonely_images.append(img)
        lonely_masks += [p for k, ps in masks.items() if k not in used for _, p in ps]
    return samples, lonely_images, lonely_masks


#: Extra layout detectors: function(root) -> list[Sample] or None when the layout does not apply.
#: Tried in order before the generic layouts; registered by modules that know special datasets.
LAYOUTS: list[Callable[[Path], list[Sample] | None]] = []


def _register_known_layouts() -> None:
    # Importing these modules registers their detectors and readers (no-op if absent).
    import importlib

    for name in ("Functions.data.datasets", "Functions.data.medical_io"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def find_samples(root: str | os.PathLike) -> list[Sample]:
    """All samples under ``root`` (recursively), sorted by image path.

    Raises :class:`UserError` when ``root`` is missing, holds no pairs, or
    holds images without masks / masks without images (all listed at once).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass --data with a folder of images and masks")
    _register_known_layouts()
    for detect in LAYOUTS:
        found = detect(root)
        if found:
            return sorted(found, key=lambda s: (str(s.image), s.index or 0))
    claimed: set[Path] = set()
    samples, lonely_i, lonely_m = [], [], []
    for layout in (_per_sample_folders, _paired_folders, _suffix_masks):
        s, i, m = layout(root, claimed)
        samples += s
        lonely_i += i
        lonely_m += m
    if lonely_i or lonely_m:
        names = [f"image {p.relative_to(root)}" for p in lonely_i] + [f"mask {p.relative_to(root)}" for p in lonely_m]
        shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        raise UserError(
            f"{len(lonely_i)} image(s) without a mask and {len(lonely_m)} mask(s) without an image under {root}: "
            f"{shown}; give each image a mask with the same file stem (images/x.png + masks/x.png, or x.png + x_mask.png) "
            "or move the unpaired files out of the folder"
        )
    if not samples:
        raise UserError(
            f"no image/mask pairs found under {root}; expected images/ + masks/ folders, name.png + name_mask.png files, "
            "or <id>/images/<id>.png with <id>/masks/ (see Data/README.md)"
        )
    return sorted(samples, key=lambda s: str(s.image))
