"""What a sample is: :class:`Sample` (one image and its mask files) and the folder names that pair them.

The lowest module of sample discovery, so that the format modules
(:mod:`Functions.data.medical_io`, :mod:`Functions.data.public_layouts`) and
:mod:`Functions.data.discovery`, which tries their detectors, all import it
without importing each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "gt", "ground_truth", "groundtruth")
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_gt", "_segmentation")
#: Folders beside ``images/`` holding one instance label map per image (same stem).
INSTANCE_DIR_NAMES = ("instances", "instance", "label_maps")


@dataclass(frozen=True)
class Sample:
    """One image with its mask file(s).

    ``masks`` holds one path, or several to be merged (instance masks, BUSI's
    ``_mask_1``).  ``kind`` names the reader in
    :data:`Functions.data.discovery.READERS`; ``index`` is a slice or frame
    number for volume formats; ``spacing`` the pixel size (row, column) in
    physical units when the format stores it.
    """

    id: str
    image: Path
    masks: tuple[Path, ...] = ()
    label: str | None = None
    kind: str = "image"
    index: int | None = None
    spacing: tuple[float, float] | None = field(default=None, compare=False)
    #: what must stay in one split (patient ID, volume, source image); ``None``: the sample is its own group.
    #: Filled by readers that know it; see :func:`Functions.data.splits.sample_groups`.
    group: str | None = field(default=None, compare=False)
    #: an instance label-map file (``instances/<stem>.png`` beside ``images/``), read by
    #: :func:`Functions.data.instances.read_instances`; None: instances come from ``masks``.
    instances: Path | None = field(default=None, compare=False)
    #: the part of the data set's own split the sample came from (``"train"``, ``"val"`` or ``"test"``): read from
    #: the layout's folder names (:func:`layout_split`: DRIVE's training/test, train/val/test folders), or set by
    #: the typed-nuclei readers (CoNSeP's Train/Test, PanNuke's folds); ``None``: the layout has no split.
    split: str | None = field(default=None, compare=False)
    #: a region-of-interest mask file (DRIVE's field-of-view ``mask/``): training loss and test scores count only
    #: the pixels inside it; ``None``: every pixel counts.
    roi: Path | None = field(default=None, compare=False)


#: Folder names (compared in lower case) that name a part of a data set's own split.
LAYOUT_SPLITS = {"training": "train", "train": "train", "validation": "val", "val": "val", "valid": "val",
                 "testing": "test", "test": "test"}
#: How reports, metrics.json and the plan say that samples with a region of interest (DRIVE's field-of-view
#: masks) were scored on the pixels inside it only.
ROI_NOTE = "scored inside the field-of-view mask"
#: Mask value of the pixels outside a sample's region of interest in patch-training targets (weight 0 in the loss).
IGNORE = 255


def layout_split(path: Path, root: Path) -> str | None:
    """The split a file under ``root`` belongs to by its folders (:data:`LAYOUT_SPLITS`, case-insensitive): the
    folder nearest ``root`` that names one; ``None`` when no folder between ``root`` and the file does."""
    try:
        parts = Path(path).relative_to(root).parts[:-1]
    except ValueError:
        return None
    return next((LAYOUT_SPLITS[p.lower()] for p in parts if p.lower() in LAYOUT_SPLITS), None)


def mask_key(stem: str) -> str:
    """The image stem a mask file stem belongs to: ``"a_mask"`` -> ``"a"`` (any of :data:`MASK_SUFFIXES`)."""
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def merge_masks(sample: Sample, image: np.ndarray, read: Callable[[Path], np.ndarray]) -> np.ndarray:
    """The union of ``sample.masks``, each read with ``read(path) -> (H, W)`` and checked against ``image``.

    ``image`` is ``(H, W[, C])``; returns an ``(H, W)`` mask (element-wise maximum, so instance masks
    and BUSI's extra ``_mask_1`` files merge), all zeros when the sample has no mask file.  A mask of
    another size raises :class:`UserError` naming both files.
    """
    mask = None
    for path in sample.masks:
        m = read(path)
        if m.shape != image.shape[:2]:
            raise UserError(
                f"mask {path} is {m.shape[1]}x{m.shape[0]} but image {sample.image} is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size (aligned with it)"
            )
        mask = m if mask is None else np.maximum(mask, m)
    return np.zeros(image.shape[:2], np.uint8) if mask is None else mask
