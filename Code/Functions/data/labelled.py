"""Labelled images for classification: finding them, loading them, weighting the classes.

Layout.  :func:`find_labelled_images` reads the common "one folder per class"
layout::

    data/
      benign/      benign (1).png, benign (1)_mask.png, ...
      malignant/   ...
      normal/      ...

* every visible subfolder of ``data`` is a class, named after the folder;
  classes are sorted alphabetically, so class ``k`` is the ``k``-th name;
* images are collected recursively inside each class folder;
* files whose name contains ``_mask`` (BUSI's ``x_mask.png`` and
  ``x_mask_1.png``) are segmentation masks and are skipped, so the BUSI set
  in its original layout needs no preparation;
* a chain of single wrapper folders (``download/Dataset_BUSI_with_GT/...``)
  is walked down first;
* split folders (``train/``, ``val/``, ``test/`` each holding the same class
  folders) are merged by class name: the split is made again, stratified.

Each image becomes a :class:`~Functions.discovery.Sample` with ``label`` set
to its class name and no masks, so the loaders of :mod:`Functions.pipeline`
serve classification as they serve segmentation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from Functions.data.discovery import IMAGE_DIR_NAMES, MASK_DIR_NAMES, Sample
from Functions.base.errors import UserError
from Functions.base.paths import walk_folders
from Functions.data.imaging import IMAGE_EXTENSIONS, is_image_file

#: Folder names taken for predefined splits rather than classes.
SPLIT_DIR_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")
#: Folders never taken as classes (archive debris, hidden folders are skipped as well).
IGNORED_DIR_NAMES = ("__macosx",)


def is_mask_name(path: str | os.PathLike) -> bool:
    """True for segmentation-mask file names such as ``benign (3)_mask.png`` or ``x_mask_1.png``."""
    return "_mask" in Path(path).stem.lower()


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name.lower() not in IGNORED_DIR_NAMES)


def _images_in(folder: Path, recursive: bool = True) -> list[Path]:
    files = (Path(d) / f for d, _, names in walk_folders(folder) for f in names) if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and is_image_file(p) and not is_mask_name(p)
                  and not any(part.startswith(".") or part.lower() in IGNORED_DIR_NAMES
                              for part in p.relative_to(folder).parts[:-1]))


def find_labelled_images(root: str | os.PathLike) -> tuple[list[Sample], list[str]]:
    """All images under ``root`` in the class-per-subfolder layout.

    Returns ``(samples, classes)``: samples sorted by path, each with
    ``label`` = its class name; ``classes`` the sorted class names.

    Raises :class:`UserError` when ``root`` is missing, looks like a
    segmentation layout (``images/`` beside ``masks/``), has fewer than two
    class folders, or has a class folder without images (named in the message).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass --data with one subfolder of images per class")
    top = root
    while not _images_in(top, recursive=False):
        subs = _subfolders(top)
        if len(subs) != 1:
            break
        top = subs[0]  # a wrapper folder such as Dataset_BUSI_with_GT/
    subs = _subfolders(top)
    names = {p.name.lower() for p in subs}
    if names & set(IMAGE_DIR_NAMES) and names & set(MASK_DIR_NAMES):
        raise UserError(
            f"{top} holds images/ and masks/ folders, a segmentation layout; classification needs one "
            "subfolder of images per class (e.g. benign/, malignant/, normal/)"
        )
    if subs and names <= set(SPLIT_DIR_NAMES) and all(_subfolders(s) for s in subs):
        class_dirs = [c for s in subs for c in _subfolders(s)]  # train/a, train/b, test/a, ...
    else:
        class_dirs = subs
    by_class: dict[str, list[Path]] = {}
    for folder in class_dirs:
        images = _images_in(folder)
        if not images:
            raise UserError(
                f"class folder {folder} holds no images ({'/'.join(IMAGE_EXTENSIONS)} files other than "
                "*_mask* files); add images or move the folder out of the data folder"
            )
        by_class.setdefault(folder.name, []).extend(images)
    classes = sorted(by_class)
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise UserError(
            f"{top} has {found}; classification needs at least two subfolders of images, one per class "
            "(e.g. benign/, malignant/, normal/)"
        )
    samples = [
        Sample(id=path.stem, image=path, label=name)
        for name in classes for path in by_class[name]
    ]
    return sorted(samples, key=lambda s: str(s.image)), classes



def labelled_samples(samples: Sequence[Sample], where: str = "the dataset") -> tuple[list[Sample], list[str]]:
    """Classification view of samples from any loader: masks dropped, ``label`` required.

    Returns ``(samples, classes)`` with ``classes`` sorted; UserError when a
    sample has no label or fewer than two classes occur.
    """
    samples = list(samples)
    unlabelled = [s for s in samples if s.label is None]
    if unlabelled:
        raise UserError(
            f"{len(unlabelled)} image(s) in {where} have no class label (e.g. {unlabelled[0].image}); "
            "classification needs one subfolder per class or a dataset with labels"
        )
    classes = sorted({str(s.label) for s in samples})
    if len(classes) < 2:
        raise UserError(f"{where} has {len(classes)} class(es) {classes}; classification needs at least two")
    return [dataclasses.replace(s, masks=(), label=str(s.label)) for s in samples], classes


def load_images(samples: Sequence[Sample], image_size: int | tuple[int, int] = 128, channels: int | None = None,
                normalization: str = "minmax", use_clahe: bool = False, workers: int = 4) -> np.ndarray:
    """Decode and preprocess the images of ``samples``: ``(N, H, W, C) float32``.

    The same recipe as segmentation (:func:`Functions.pipeline.load_arrays`):
    channels -> (CLAHE) -> resize -> normalise.  Masks are not read.
    """
    from Functions.data.pipeline import load_arrays

    bare = [dataclasses.replace(s, masks=()) if s.masks else s for s in samples]
    images, _ = load_arrays(bare, image_size, channels, normalization, use_clahe, workers=workers)
    return images


def encode_labels(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Class names -> integer indices into ``classes`` (``(N,) int64``)."""
    index = {c: k for k, c in enumerate(classes)}
    try:
        return np.array([index[str(lab)] for lab in labels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} is not one of the classes {list(classes)}") from None


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N,)`` integer labels -> ``(N, num_classes) float32`` one-hot rows."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]


def balanced_class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights ``n / (K * n_k)`` that give every class the same total weight (absent classes get 1).

    With these weights the loss counts each class as if the classes were
    equally frequent; ``{k: 1.0}`` for a balanced set.
    """
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes)
    n = float(len(y))
    return {k: (n / (num_classes * counts[k]) if counts[k] else 1.0) for k in range(num_classes)}


def class_counts(y: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    """``{class name: number of items}`` for integer labels ``y``."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))
    return {c: int(counts[k]) for k, c in enumerate(classes)}
