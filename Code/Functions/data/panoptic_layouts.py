"""Readers for the public panoptic nucleus data sets, in the layouts their publishers ship.

Every reader yields ``(name, image (H, W, 3) uint8, instance map (H, W)
int32, class map (H, W) int32)``: instance 0 = no nucleus, class 0 =
background, ``1..T`` the data set's nucleus types (:data:`CLASS_NAMES`).
Each nucleus carries one type.  Large arrays are opened memory-mapped and
read one image at a time.

CoNSeP (Graham et al. 2019, HoVer-Net)
    ``CoNSeP/{Train,Test}/Images/<name>.png`` (RGBA or RGB; alpha dropped)
    with ``CoNSeP/{Train,Test}/Labels/<name>.mat`` holding ``inst_map``
    (H x W), ``type_map`` (H x W, types 1..7), ``inst_type`` (N x 1, the type
    of instance ``k`` in row ``k - 1``) and ``inst_centroid`` (N x 2, x y).
    The seven types are 1 other, 2 inflammatory, 3 healthy epithelial, 4
    dysplastic/malignant epithelial, 5 fibroblast, 6 muscle, 7 endothelial;
    ``merge=True`` (the default) applies HoVer-Net's merge used in its paper
    and ``dataset.py``: 3 and 4 -> 3 (epithelial), 5, 6 and 7 -> 4
    (spindle-shaped), giving 4 types.  The class map is built from
    ``inst_type`` (each nucleus one type) when present, else from ``type_map``.
    Patch-cut copies (HoVer-Net's ``extract_patches.py``): ``.npy`` files of
    shape ``(H, W, 5)`` = RGB, instance, type (:func:`read_hovernet_patches`).
PanNuke (Gamper et al. 2019/2020)
    ``Fold N/images/foldN/images.npy`` (N x 256 x 256 x 3, float),
    ``Fold N/images/foldN/types.npy`` (tissue name per image) and
    ``Fold N/masks/foldN/masks.npy`` (N x 256 x 256 x 6): channels 0-4 hold
    the instance ids of the neoplastic, inflammatory, connective/soft tissue,
    dead and epithelial nuclei, channel 5 the background.  Channel ``j``
    becomes type ``j + 1``; ids are renumbered per (channel, id) so that two
    channels reusing an id stay two nuclei.
CoNIC / Lizard patches (Graham et al. 2021)
    ``images.npy`` (N x 256 x 256 x 3 uint8), ``labels.npy`` (N x 256 x 256 x 2:
    instance, class 1..6 = neutrophil, epithelial, lymphocyte, plasma,
    eosinophil, connective) and ``counts.csv`` (nuclei per class per patch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from Functions.base.errors import UserError

#: Type names per data set (index k-1 = class k).
CLASS_NAMES = {
    "consep": ("other", "inflammatory", "epithelial", "spindle-shaped"),
    "consep-7": ("other", "inflammatory", "healthy epithelial", "malignant epithelial", "fibroblast", "muscle",
                 "endothelial"),
    "pannuke": ("neoplastic", "inflammatory", "connective", "dead", "epithelial"),
    "conic": ("neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective"),
}

#: HoVer-Net's CoNSeP merge: original type -> merged type (0 stays 0).
CONSEP_MERGE = np.array([0, 1, 2, 3, 3, 4, 4, 4], np.int32)

Item = tuple[str, np.ndarray, np.ndarray, np.ndarray]


def _rgb(image: np.ndarray, path) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise UserError(f"{path}: image of shape {a.shape} is not H x W x 3 (RGB) or x 4 (RGBA)")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return a


def _check_sizes(path, image, inst, cls) -> None:
    if inst.shape != cls.shape or inst.shape != image.shape[:2]:
        raise UserError(f"{path}: image {image.shape[:2]}, instance map {inst.shape} and class map {cls.shape} "
                        "differ in size; the file is damaged or from another release")


# ----------------------------------------------------------------------------- CoNSeP
def read_consep_mat(path: str | os.PathLike, merge: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(instance map, class map)`` of one CoNSeP ``Labels/*.mat`` (HoVer-Net merge when ``merge``)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise UserError(f"cannot read {path} as a MATLAB file ({exc})") from None
    if "inst_map" not in mat:
        raise UserError(f"{path} has no inst_map; a CoNSeP label file holds inst_map, type_map, inst_type")
    inst = np.asarray(mat["inst_map"]).astype(np.int32)
    if "inst_type" in mat:
        types = np.asarray(mat["inst_type"]).reshape(-1).astype(np.int32)
        if inst.max(initial=0) > len(types):
            raise UserError(f"{path}: inst_map has instance {int(inst.max())} but inst_type lists {len(types)} "
                            "types; the file is damaged")
        lut = np.concatenate([[0], types]).astype(np.int32)
        cls = lut[inst]
    elif "type_map" in mat:
        cls = np.asarray(mat["type_map"]).astype(np.int32) * (inst > 0)
    else:
        raise UserError(f"{path} has neither inst_type nor type_map; it holds no nucleus types")
    if cls.max(initial=0) > 7 or cls.min(initial=0) < 0:
        raise UserError(f"{path}: types outside 0..7 ({int(cls.min())}..{int(cls.max())}); not a CoNSeP file")
    if merge:
        cls = CONSEP_MERGE[cls]
    return inst, cls.astype(np.int32)


def read_consep(root: str | os.PathLike, split: str = "Train", merge: bool = True) -> Iterator[Item]:
    """CoNSeP images of one split (``Train`` or ``Test``) with their merged instance/class maps."""
    from Functions.data.imaging import read_image
    from Functions.data.public_layouts import child_dir

    root = Path(root)
    split_dir = child_dir(root, split)
    images = child_dir(split_dir, "Images") if split_dir else None
    labels = child_dir(split_dir, "Labels") if split_dir else None
    if images is None or labels is None:
        raise UserError(f"{root} is not a CoNSeP folder: expected {split}/Images/*.png and {split}/Labels/*.mat")
    for img_path in sorted(p for p in images.iterdir() if p.suffix.lower() == ".png"):
        mat = labels / f"{img_path.stem}.mat"
        if not mat.is_file():
            raise UserError(f"CoNSeP image {img_path} has no label file {mat}")
        image = _rgb(read_image(img_path), img_path)
        inst, cls = read_consep_mat(mat, merge)
        _check_sizes(mat, image, inst, cls)
        yield img_path.stem, image, inst, cls


def read_hovernet_patches(folder: str | os.PathLike) -> Iterator[Item]:
    """HoVer-Net patch files ``*.npy`` of shape ``(H, W, 5)``: RGB, instance, type."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise UserError(f"{folder} holds no .npy patches (H x W x 5: RGB, instance, type)")
    for path in files:
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 3 or arr.shape[-1] != 5:
            raise UserError(f"{path} has shape {arr.shape}; a HoVer-Net patch is H x W x 5 (RGB, instance, type)")
        yield path.stem, _rgb(arr[..., :3], path), arr[..., 3].astype(np.int32), arr[..., 4].astype(np.int32)


# ----------------------------------------------------------------------------- PanNuke
def pannuke_maps(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One PanNuke mask ``(H, W, 6)`` -> ``(instance map, class map)`` (channel j -> type j + 1)."""
    m = np.asarray(masks)
    if m.ndim != 3 or m.shape[-1] != 6:
        raise ValueError(f"a PanNuke mask is H x W x 6, got {m.shape}")
    inst = np.zeros(m.shape[:2], np.int32)
    cls = np.zeros(m.shape[:2], np.int32)
    nxt = 1
    for j in range(5):
        ch = np.asarray(m[..., j]).astype(np.int64)
        ids = np.unique(ch)
        ids = ids[ids > 0]
        for v in ids:
            sel = ch == v
            inst[sel] = nxt
            cls[sel] = j + 1
            nxt += 1
    return inst, cls


def _fold_files(fold: Path) -> tuple[Path, Path, Path | None]:
    imgs = sorted(fold.glob("images/*/images.npy")) or sorted(fold.glob("**/images.npy"))
    masks = sorted(fold.glob("masks/*/masks.npy")) or sorted(fold.glob("**/masks.npy"))
    if not imgs or not masks:
        raise UserError(f"{fold} is not a PanNuke fold: expected images/foldN/images.npy and masks/foldN/masks.npy")
    types = sorted(imgs[0].parent.glob("types.npy")) or sorted(fold.glob("**/types.npy"))
    return imgs[0], masks[0], (types[0] if types else None)


def read_pannuke_fold(fold: str | os.PathLike) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, str]]:
    """Images of one PanNuke fold folder (``Fold 1``): ``(name, image, instances, classes, tissue)``."""
    fold = Path(fold)
    img_path, mask_path, types_path = _fold_files(fold)
    images = np.load(img_path, mmap_mode="r", allow_pickle=False)
    masks = np.load(mask_path, mmap_mode="r", allow_pickle=False)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"{img_path} has shape {images.shape}; PanNuke images are N x H x W x 3")
    if masks.ndim != 4 or masks.shape[-1] != 6:
        raise UserError(f"{mask_path} has shape {masks.shape}; PanNuke masks are N x H x W x 6 (five nucleus "
                        "types + background)")
    if masks.shape[:3] != images.shape[:3]:
        raise UserError(f"{mask_path} {masks.shape[:3]} and {img_path} {images.shape[:3]} differ in count or size")
    tissues = np.load(types_path, allow_pickle=False) if types_path else None
    if tissues is not None and len(tissues) != len(images):
        raise UserError(f"{types_path} lists {len(tissues)} tissue types for {len(images)} images")
    stem = fold.name.replace(" ", "").lower()
    for i in range(len(images)):
        inst, cls = pannuke_maps(masks[i])
        tissue = str(tissues[i]) if tissues is not None else ""
        yield f"{stem}_{i:04d}", _rgb(images[i], img_path), inst, cls, tissue


# ----------------------------------------------------------------------------- CoNIC / Lizard
def read_conic(root: str | os.PathLike) -> Iterator[Item]:
    """CoNIC patches: ``images.npy`` (N, H, W, 3) with ``labels.npy`` (N, H, W, 2) in ``root``."""
    root = Path(root)
    img_path, lab_path = root / "images.npy", root / "labels.npy"
    if not img_path.is_file() or not lab_path.is_file():
        raise UserError(f"{root} is not a CoNIC folder: expected images.npy and labels.npy (+ counts.csv)")
    images = np.load(img_path, mmap_mode="r", allow_pickle=False)
    labels = np.load(lab_path, mmap_mode="r", allow_pickle=False)
    if labels.ndim != 4 or labels.shape[-1] != 2:
        raise UserError(f"{lab_path} has shape {labels.shape}; CoNIC labels are N x H x W x 2 (instance, class)")
    if images.ndim != 4 or images.shape[:3] != labels.shape[:3]:
        raise UserError(f"{img_path} {images.shape} and {lab_path} {labels.shape} differ in count or size")
    for i in range(len(images)):
        lab = np.asarray(labels[i]).astype(np.int32)
        if lab[..., 1].max(initial=0) > len(CLASS_NAMES["conic"]):
            raise UserError(f"{lab_path} patch {i} has class {int(lab[..., 1].max())}; CoNIC classes are 0..6")
        yield f"conic_{i:05d}", _rgb(images[i], img_path), lab[..., 0], lab[..., 1]


def conic_counts(root: str | os.PathLike):
    """``counts.csv`` of a CoNIC folder as a DataFrame (one row per patch, one column per class)."""
    import pandas as pd

    path = Path(root) / "counts.csv"
    if not path.is_file():
        raise UserError(f"{path} does not exist; CoNIC ships counts.csv beside images.npy")
    return pd.read_csv(path)


# ----------------------------------------------------------------------------- detection
def panoptic_layout(root: str | os.PathLike) -> str | None:
    """Which layout ``root`` shows: ``"consep"``, ``"pannuke"``, ``"conic"``, ``"hovernet-patches"`` or None."""
    root = Path(root)
    if (root / "images.npy").is_file() and (root / "labels.npy").is_file():
        return "conic"
    if any(root.glob("masks/*/masks.npy")) or any(root.glob("*/masks/*/masks.npy")):
        return "pannuke"
    from Functions.data.public_layouts import child_dir

    for split in ("Train", "Test"):              # Labels/ of .mat files: a train/labels/ of PNG masks is not CoNSeP
        labels = child_dir(split_dir, "Labels") if (split_dir := child_dir(root, split)) is not None else None
        if labels is not None and any(labels.glob("*.mat")):
            return "consep"
    for path in list(root.glob("*.npy"))[:1]:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        if len(shape) == 3 and shape[-1] == 5:
            return "hovernet-patches"
    return None


def read_panoptic_dataset(root: str | os.PathLike, split: str = "Train") -> Iterator[Item]:
    """Any of the layouts above, found by :func:`panoptic_layout` (PanNuke: every fold below ``root``)."""
    root = Path(root)
    kind = panoptic_layout(root)
    if kind == "conic":
        yield from read_conic(root)
    elif kind == "consep":
        yield from read_consep(root, split)
    elif kind == "hovernet-patches":
        yield from read_hovernet_patches(root)
    elif kind == "pannuke":
        folds = [root] if any(root.glob("masks/*/masks.npy")) else sorted(
            p.parents[2] for p in root.glob("*/masks/*/masks.npy"))
        for fold in folds:
            for name, image, inst, cls, _ in read_pannuke_fold(fold):
                yield name, image, inst, cls
    else:
        raise UserError(f"{root} shows none of the panoptic layouts (CoNSeP Train/Images + Train/Labels, PanNuke "
                        "Fold N/masks/foldN/masks.npy, CoNIC images.npy + labels.npy, HoVer-Net H x W x 5 .npy)")
