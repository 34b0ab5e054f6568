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

Other layouts (DICOM, NIfTI, DRIVE, MATLAB ``.mat`` slices) have detectors
in the modules that know them (:mod:`Functions.data.medical_io`,
:mod:`Functions.data.public_layouts`), listed explicitly, in a documented
order, in :data:`LAYOUTS`; their readers are listed in :data:`READERS`.
:class:`Sample` itself lives in :mod:`Functions.data.samples`.

Folders reached through symbolic links (a Drive mount, a shared data folder)
are followed, each real folder once, so a link loop cannot hang the search
(:func:`Functions.base.paths.walk_folders`).

Every image without a mask and every mask without an image is listed in one
:class:`~Functions.errors.UserError`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from Functions.base.errors import UserError
from Functions.base.paths import walk_folders
from Functions.data import medical_io, panoptic_published, public_layouts
from Functions.data.imaging import is_image_file, read_image, read_mask
from Functions.data.samples import (IMAGE_DIR_NAMES, INSTANCE_DIR_NAMES, MASK_DIR_NAMES, Sample, layout_split,
                                    mask_key, merge_masks)

_SUFFIX_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)


# ----------------------------------------------------------------------------- readers
def _read_image_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(sample.image)
    return image, merge_masks(sample, image, read_mask)


#: kind -> function(sample) -> (image (H, W, C), mask (H, W) integer).  The one table of readers: a
#: format module exports its readers and they are listed here (nothing registers itself on import).
READERS: dict[str, Callable[[Sample], tuple[np.ndarray, np.ndarray]]] = {
    "image": _read_image_sample,
    **medical_io.SAMPLE_READERS,          # "dicom", "nifti", "nifti_axis0", "nifti_axis1"
    **public_layouts.SAMPLE_READERS,      # "brain_tumor_mat"
}


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decode one sample: image ``(H, W, C)`` as stored and mask ``(H, W)`` (0/1 or labels)."""
    try:
        reader = READERS[sample.kind]
    except KeyError:
        raise UserError(f"no reader for samples of kind {sample.kind!r} ({sample.image})") from None
    return reader(sample)


def load_roi(sample: Sample, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The sample's region of interest (``Sample.roi``, e.g. DRIVE's field-of-view mask) as a boolean ``(H, W)``
    array (non-zero = inside), or ``None`` when it has none.  ``shape``: the image's ``(H, W)``, checked."""
    if getattr(sample, "roi", None) is None:
        return None
    roi = np.asarray(read_mask(sample.roi))
    roi = roi[..., 0] if roi.ndim == 3 else roi
    if shape is not None and roi.shape != tuple(shape[:2]):
        raise UserError(f"region-of-interest mask {sample.roi} is {roi.shape[1]}x{roi.shape[0]} but image "
                        f"{sample.image} is {shape[1]}x{shape[0]}; the field-of-view mask must have its image's size")
    return roi > 0


def with_layout_splits(samples: list[Sample], root: Path) -> list[Sample]:
    """``samples`` with ``split`` filled from their folders (``training/``, ``testing/``, ``val/``...; see
    :func:`Functions.data.samples.layout_split`) where a reader has not set it."""
    from dataclasses import replace

    return [s if s.split is not None else replace(s, split=layout_split(s.image, root)) for s in samples]


# ----------------------------------------------------------------------------- layouts
def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _per_sample_folders(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 3: <id>/images/<one image> + <id>/masks/<instance masks>."""
    samples, lonely_images, lonely_masks = [], [], []
    found = sorted(Path(d) / "images" for d, dirnames, _ in walk_folders(root) if "images" in dirnames)
    for img_dir in found:
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


def _instance_file(folder: Path, stem: str) -> Path | None:
    """``folder/instances/<stem>.png`` (or .tif) when it exists."""
    for name in INSTANCE_DIR_NAMES:
        for ext in (".png", ".tif", ".tiff"):
            cand = folder / name / f"{stem}{ext}"
            if cand.is_file():
                return cand
    return None


def _paired_folders(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 1: images/ beside masks/ (or the other accepted names), matched by stem."""
    samples, lonely_images, lonely_masks = [], [], []
    for dirpath, dirnames, _ in walk_folders(root):
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
            masks_by_key[mask_key(m.stem)].append(m)
        used = set()
        for img in _files(img_dir):
            key = img.stem if img.stem in masks_by_key else mask_key(img.stem)
            if key in masks_by_key:
                used.add(key)
                rel = img.relative_to(root).parent.parent
                label = None if rel == Path(".") else rel.as_posix()
                samples.append(Sample(id=img.stem, image=img, masks=tuple(masks_by_key[key]), label=label,
                                      instances=_instance_file(d, img.stem)))
            else:
                lonely_images.append(img)
        lonely_masks += [m for k, ms in masks_by_key.items() if k not in used for m in ms]
    return samples, lonely_images, lonely_masks


def _suffix_masks(root: Path, claimed: set[Path]) -> tuple[list[Sample], list[Path], list[Path]]:
    """Layout 2: name.ext + name_mask.ext (+ name_mask_1.ext ...) in one folder."""
    samples, lonely_images, lonely_masks = [], [], []
    for dirpath, dirnames, filenames in walk_folders(root):
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


@dataclass(frozen=True)
class Layout:
    """A layout detector: ``detect(root)`` returns the samples of a tree in this layout, ``None`` when
    the tree is not in it, or raises :class:`UserError` when it is but is incomplete."""

    name: str
    detect: Callable[[Path], list[Sample] | None]


#: The layout detectors :func:`find_samples` tries, in this order, before the generic layouts; the first
#: that returns samples wins.  Each claims a tree only by a signature that no generic layout reads
#: correctly, which is why they come first:
#:
#: 1. ``medical`` - DICOM/NIfTI files in paired folders.  Their file types are not images to the
#:    generic layouts, which would report every mask beside them as unpaired.
#: 2. ``drive`` - a ``1st_manual/`` folder beside ``images/`` (or DRIVE-named images beside ``mask/``).
#:    The generic paired-folder layout would pair DRIVE images with the field-of-view masks in ``mask/``
#:    (``21_training_mask.gif`` matches ``21_training.tif``) and train on the wrong labels.
#: 3. ``brain-tumor`` - MATLAB ``.mat`` files holding ``cjdata.label``.  No generic layout reads ``.mat``.
#: 4. ``panoptic`` - CoNSeP (``Train/Labels/*.mat``), PanNuke (``Fold N/masks/foldN/masks.npy``) and CoNIC
#:    (``images.npy`` + ``labels.npy``) as published, converted once to PNGs
#:    (:mod:`Functions.data.panoptic_published`).  No generic layout reads them.
#:
#: A folder of ordinary images (PNG, JPEG, TIFF) with none of these signatures is returned ``None`` by
#: all of them and read by the generic layouts (per-sample folders, paired folders, suffix masks).  To try
#: a layout of your own, pass ``find_samples(root, layouts=(my_layout, *LAYOUTS))``.
LAYOUTS: tuple[Layout, ...] = (
    Layout("medical", medical_io.detect_medical),
    Layout("drive", public_layouts.detect_drive),
    Layout("brain-tumor", public_layouts.detect_brain_tumor),
    Layout("panoptic", panoptic_published.detect_published_panoptic),
)


def find_samples(root: str | os.PathLike, layouts: tuple[Layout, ...] = LAYOUTS) -> list[Sample]:
    """All samples under ``root`` (recursively), sorted by image path.

    The detectors in ``layouts`` (default :data:`LAYOUTS`) are tried first, in order; when none claims
    the tree, the generic layouts read it.

    Raises :class:`UserError` when ``root`` is missing, holds no pairs, or
    holds images without masks / masks without images (all listed at once).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass --data with a folder of images and masks")
    for layout in layouts:
        found = layout.detect(root)
        if found:
            return sorted(with_layout_splits(found, root), key=lambda s: (str(s.image), s.index or 0))
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
    return sorted(with_layout_splits(samples, root), key=lambda s: str(s.image))
