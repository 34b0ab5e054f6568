"""The fingerprint of a data set: what the planning rules need to know about it, read in one pass.

Cheap facts come from every sample (image sizes from the file headers, volume counts); everything that needs
the pixels (intensities, objects, modality) from a seeded subset of at most :data:`STAT_SAMPLES` images or
:data:`STAT_VOLUMES` volumes, so that ``plan`` on DSB2018's 664 images stays well under 30 s on a 2-core CPU.

Modality of 2-D images (:func:`image_modality`), from the pixels and the mask, per image, then the most
common: grey on a light background -> ``brightfield``; grey, dark background, objects brighter than it ->
``fluorescence``; grey, dark background, objects darker (hypoechoic lesions) -> ``ultrasound``; colour with dark
corners (the round field of view of a fundus camera) -> ``fundus``; colour on a light background -> ``stained``
(H&E); other colour -> ``endoscopy``.  Volumes take ``dataset.json``'s ``modality`` (CT, MRI), else ``unknown``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

#: Images / volumes whose pixels are read for the statistics (a seeded choice when there are more).
STAT_SAMPLES = 24
STAT_VOLUMES = 8
#: Above this many images, near-duplicates are searched among a seeded subset of this many.
HASH_SAMPLES = 700
#: Image extensions that are volumes, for the mixed 2-D / 3-D check.
VOLUME_KINDS = ("nifti", "nifti_axis0", "nifti_axis1", "dicom")


@dataclass
class Fingerprint:
    """What :func:`fingerprint` measured.  Sizes are ``(H, W)`` (2-D) or ``(D, H, W)`` (3-D) in pixels/voxels."""

    root: str
    dims: int
    n_samples: int
    n_measured: int                       # samples whose pixels were read
    size_median: list
    size_min: list
    size_max: list
    size_spread: float                    # largest / smallest image area (1.0: all the same size)
    spacing_median: list | None           # mm per pixel / voxel where the format stores it
    channels: int
    modality: str
    modality_source: str                  # "dataset.json", "header" or "intensities"
    modality_shares: dict = field(default_factory=dict)
    intensity: dict = field(default_factory=dict)   # mean, std, p0.5, p99.5 of the raw values (measured subset)
    mask_kind: str = "binary"             # "binary", "classes", "instances" or "typed instances" (+ class maps)
    n_classes: int = 2                    # including background
    foreground_share: float = 0.0         # mean share of labelled pixels per image (class balance)
    objects_per_image: float = 0.0        # median count of objects (instances, else connected components)
    object_area_median: float = 0.0       # median object area in pixels (voxels)
    touching_share: float = 0.0           # share of objects that touch another object (4-neighbours)
    n_groups: int = 0                     # groups (patients, volumes, near-duplicate clusters) with >= 2 samples
    grouped_samples: int = 0              # samples inside such groups
    near_duplicate_samples: int = 0       # samples with a near-duplicate (perceptual hash)
    hashed: int = 0                       # samples hashed for near-duplicates
    layout_split: dict = field(default_factory=dict)  # {"train": n, "val": n, "test": n} the layout's own split
    layout_note: str = ""                 # what the layout says about its split (e.g. an unlabelled imagesTs/)
    roi_samples: int = 0                  # samples that ship a region-of-interest mask (DRIVE field of view)
    object_types: int = 0                 # typed instances: object (nucleus) types T, ids 1..T in the class maps
    stuff_classes: int = 0                # typed instances: stuff (tissue) classes S, ids T+1..T+S
    class_names: list = field(default_factory=list)   # typed instances: names of the T types then the S stuff
    type_shares: dict = field(default_factory=dict)   # typed instances: share of the measured objects per type
    types_source: str = ""                # "classes.json" or "class maps" (ids seen inside / outside objects)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- per-image measurements
def image_modality(image: np.ndarray, mask: np.ndarray | None = None) -> str:
    """The imaging modality of one 2-D image ``(H, W[, C])``, by the rules in the module docstring."""
    from Functions.data.imaging import is_grayscale
    from Functions.data.preprocessing import has_bright_background

    img = np.asarray(image, np.float32)
    colour = img.ndim == 3 and img.shape[-1] >= 3 and not is_grayscale(img[..., :3])
    if colour:
        gray = img[..., :3].mean(axis=-1)
        lo, hi = float(gray.min()), float(gray.max())
        k = max(1, min(gray.shape) // 10)
        corners = np.concatenate([gray[:k, :k].ravel(), gray[:k, -k:].ravel(), gray[-k:, :k].ravel(),
                                  gray[-k:, -k:].ravel()])
        if hi > lo and float(corners.mean()) < lo + 0.1 * (hi - lo):
            return "fundus"
        return "stained" if has_bright_background(img) else "endoscopy"
    if has_bright_background(img):
        return "brightfield"
    gray = img.mean(axis=-1) if img.ndim == 3 else img
    fg = None if mask is None else np.asarray(mask).reshape(gray.shape) > 0
    if fg is not None and 0 < fg.mean() < 1 and gray[fg].mean() < gray[~fg].mean():
        return "ultrasound"
    return "fluorescence"


def touching_objects(labels: np.ndarray) -> tuple[int, int]:
    """``(objects, objects touching another)`` of a label map ``(H, W)`` or ``(D, H, W)``: two objects touch
    when a pixel of one is a face neighbour (4-connected in 2-D) of a pixel of the other."""
    lab = np.asarray(labels)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    touching: set = set()
    for axis in range(lab.ndim):
        a = np.moveaxis(lab, axis, 0)
        x, y = a[:-1], a[1:]
        meet = (x != y) & (x > 0) & (y > 0)
        touching.update(np.unique(x[meet]).tolist())
        touching.update(np.unique(y[meet]).tolist())
    return int(len(ids)), int(len(touching))


def object_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count of each object (label > 0) of a label map."""
    counts = np.bincount(np.asarray(labels, np.int64).ravel())
    return counts[1:][counts[1:] > 0]


def _subset(n: int, k: int, seed: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, k, replace=False).tolist())


def _intensity(values: list[np.ndarray]) -> dict:
    if not values:
        return {}
    x = np.concatenate([np.asarray(v, np.float64).ravel()[::max(1, v.size // 20000)] for v in values])
    return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            "p0_5": round(float(np.percentile(x, 0.5)), 4), "p99_5": round(float(np.percentile(x, 99.5)), 4)}


def check_not_mixed(root) -> None:
    """UserError naming one file of each when the image folders under ``root`` (``images/``, ``imagesTr/``...)
    hold both 2-D pictures and volumes (NIfTI): a plan is 2-D or 3-D, not both."""
    from Functions.data.imaging import is_image_file
    from Functions.data.samples import IMAGE_DIR_NAMES

    root = Path(root).expanduser()
    if not root.is_dir():
        return
    flat = volume = None
    names = {n.lower() for n in IMAGE_DIR_NAMES} | {"imagestr", "imagests"}
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and p.name.lower() in names)]:
        if folder == root and not any(p.is_dir() and p.name.lower() in names for p in root.iterdir()):
            continue
        for path in folder.iterdir():
            if path.name.lower().endswith((".nii", ".nii.gz")):
                volume = volume or path
            elif is_image_file(path):
                flat = flat or path
        if flat and volume:
            raise UserError(f"{root} mixes 2-D images ({flat}) with volumes ({volume}); give a folder of one kind "
                            "(2-D images, or volumes with --dims 3)")


# ----------------------------------------------------------------------------- 2-D
def fingerprint_images(samples, root: str, seed: int = 0, near_duplicates: bool = True) -> Fingerprint:
    """The fingerprint of a list of 2-D :class:`~Functions.data.samples.Sample` (see the module docstring)."""
    from Functions.data.discovery import load_sample
    from Functions.data.imaging import read_image
    from Functions.data.instances import components, read_instances
    from Functions.data.native import native_shape

    t0 = time.time()
    samples = list(samples)
    if not samples:
        raise UserError(f"no images with masks found in {root}; see `python -m Functions train --help` for layouts")
    shapes = [native_shape(s, 1.0) for s in samples]
    pick = _subset(len(samples), STAT_SAMPLES, seed)
    measured_shapes, modalities, raw, fg_shares, counts, areas = [], [], [], [], [], []
    n_obj = n_touch = 0
    instances = classes = False
    channels = 1
    n_classes = 2
    for i in pick:
        s = samples[i]
        per_object = s.kind == "image" and (s.instances is not None or len(s.masks) > 1)
        try:
            if per_object:              # one read of the mask files: the label map, its union the mask
                image = read_image(s.image)
                labels = read_instances(s, image.shape[:2])
                mask = (labels > 0).astype(np.uint8)
            else:
                image, mask = load_sample(s)
                labels = None
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreadable file: one line naming it
            raise UserError(f"cannot read {s.image} ({type(exc).__name__}: {exc}); fix or remove the file") from None
        image = np.asarray(image)
        channels = max(channels, 1 if image.ndim == 2 else int(image.shape[-1]))
        measured_shapes.append(image.shape[:2])
        raw.append(image)
        values = np.unique(mask)
        if values.size > 2:
            classes = True
            n_classes = max(n_classes, int(values.max()) + 1)
        fg = np.asarray(mask) > 0
        fg_shares.append(float(fg.mean()))
        modalities.append(image_modality(image, fg))
        instances = instances or per_object
        if labels is None:
            labels = components(fg)
        a = object_areas(labels)
        counts.append(len(a))
        areas.extend(a.tolist())
        o, t = touching_objects(labels)
        n_obj, n_touch = n_obj + o, n_touch + t
    known = [sh for sh in shapes if sh is not None]
    sizes = np.array(known if len(known) == len(samples) else measured_shapes + known, dtype=np.int64)
    area = sizes[:, 0] * sizes[:, 1]
    spacings = [s.spacing for s in samples if s.spacing]
    shares = {m: round(modalities.count(m) / len(modalities), 3) for m in sorted(set(modalities))}
    groups = [s.group for s in samples]
    fp = Fingerprint(
        root=str(root), dims=2, n_samples=len(samples), n_measured=len(pick),
        size_median=[int(v) for v in np.median(sizes, axis=0)], size_min=[int(v) for v in sizes.min(axis=0)],
        size_max=[int(v) for v in sizes.max(axis=0)], size_spread=round(float(area.max() / area.min()), 3),
        spacing_median=[round(float(v), 6) for v in np.median(np.array(spacings), axis=0)] if spacings else None,
        channels=channels, modality=max(shares, key=lambda m: (shares[m], m)),
        modality_source="header" if any(s.kind in VOLUME_KINDS for s in samples) else "intensities",
        modality_shares=shares, intensity=_intensity(raw),
        mask_kind="instances" if instances else ("classes" if classes else "binary"),
        n_classes=n_classes, foreground_share=round(float(np.mean(fg_shares)), 4),
        objects_per_image=float(np.median(counts)), object_area_median=float(np.median(areas)) if areas else 0.0,
        touching_share=round(n_touch / n_obj, 4) if n_obj else 0.0)
    if instances:
        _object_types(fp, [samples[i] for i in pick])
    _count_groups(fp, groups)
    if near_duplicates:
        _near_duplicates(fp, samples, seed)
    fp.layout_split = split_counts([getattr(s, "split", None) for s in samples])
    fp.roi_samples = sum(getattr(s, "roi", None) is not None for s in samples)
    fp.seconds = round(time.time() - t0, 2)
    return fp


def has_class_maps(sample) -> bool:
    """Whether a sample's instance map (``instances/<stem>``) has a class map of the same stem in ``classes/``
    beside it: the PNG-pair layout of typed objects (:mod:`Functions.data.panoptic_io`; CoNSeP, PanNuke and
    CoNIC are converted to it)."""
    from Functions.data.imaging import is_image_file
    from Functions.data.panoptic_io import CLASS_DIR

    inst = getattr(sample, "instances", None)
    if inst is None:
        return False
    folder = Path(inst).parent.parent / CLASS_DIR
    return folder.is_dir() and any(is_image_file(p) for p in folder.glob(Path(inst).stem + ".*"))


def _panoptic_maps(sample) -> tuple[np.ndarray, np.ndarray]:
    """``(instance map, class map)`` of one sample; a map the readers cannot decode is one line naming it."""
    from Functions.data.panoptic_io import sample_panoptic_maps

    try:
        return sample_panoptic_maps(sample)
    except UserError:                             # already names the file and the fix
        raise
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the instance or class map of {sample.image} ({type(exc).__name__}: {exc}); "
                        "fix or remove the file") from None


def _object_types(fp: Fingerprint, measured) -> None:
    """Typed instances: the object types and stuff classes (``classes.json``, else the ids the measured class
    maps hold inside and outside objects) and each type's share of the measured objects."""
    from collections import Counter

    from Functions.data.panoptic_io import infer_panoptic_classes, majority_types, panoptic_class_info

    typed = [s for s in measured if has_class_maps(s)]
    if not typed or len(typed) < len(measured):
        return
    maps = [_panoptic_maps(s) for s in typed]
    info = panoptic_class_info(Path(typed[0].instances).parent.parent)
    if info:
        t, s, names, source = info["num_classes"], info["stuff_classes"], info["class_names"] or [], "classes.json"
    else:
        try:
            t, s = infer_panoptic_classes(maps)
        except UserError:                         # a subset need not show every type: the largest id inside objects
            t = max((int(c[i > 0].max()) for i, c in maps if (i > 0).any()), default=0)
            s = len({int(v) for i, c in maps for v in np.unique(c[i == 0]) if v > t})
        names, source = [], "class maps"
    votes: Counter = Counter()
    for inst, cls in maps:                        # each object's type: its pixels' majority (HoVer-Net's rule)
        ids, first = np.unique(inst.ravel(), return_index=True)
        votes.update(majority_types(inst, cls, t).ravel()[first[ids > 0]].tolist())
    total = sum(votes.values())
    label = (lambda k: names[k - 1] if k - 1 < len(names) else f"type {k}")
    fp.mask_kind, fp.object_types, fp.stuff_classes, fp.types_source = "typed instances", int(t), int(s), source
    fp.class_names = list(names)
    fp.type_shares = {label(k): round(votes[k] / total, 3) for k in range(1, t + 1)} if total else {}


def _count_groups(fp: Fingerprint, groups) -> None:
    from collections import Counter

    sizes = Counter(str(g) for g in groups if g not in (None, ""))
    fp.n_groups = sum(1 for v in sizes.values() if v > 1)
    fp.grouped_samples = sum(v for v in sizes.values() if v > 1)


def small_gray(path) -> np.ndarray | None:
    """A plain image file decoded grey at half size and shrunk to 32 x 32 (what the perceptual hashes read)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if image is None:
        return None
    return cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


def _near_duplicates(fp: Fingerprint, samples, seed: int) -> None:
    """Near-duplicates by :mod:`Functions.data.duplicates`' hashes, taken from a 32 x 32 grey copy of each plain
    image file (other kinds are skipped: ``hashed`` counts the images hashed)."""
    from concurrent.futures import ThreadPoolExecutor

    from Functions.data.duplicates import MAX_DISTANCE, duplicate_clusters, image_hashes

    pick = [i for i in _subset(len(samples), HASH_SAMPLES, seed) if samples[i].kind == "image"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        small = list(pool.map(lambda i: small_gray(samples[i].image), pick))
    known = [image_hashes(x) for x in small if x is not None]
    fp.hashed = len(known)
    if len(known) < 2:
        return
    clusters = duplicate_clusters(known, MAX_DISTANCE)
    sizes = np.bincount(clusters)
    fp.near_duplicate_samples = int(sum(sizes[c] > 1 for c in clusters))


# ----------------------------------------------------------------------------- 3-D
def fingerprint_volumes(dataset, seed: int = 0) -> Fingerprint:
    """The fingerprint of a :class:`~Functions.data.volumes.VolumeDataset` (labelled cases)."""
    from Functions.data.instances import components
    from Functions.data.volumes import read_case

    t0 = time.time()
    cases = dataset.labelled
    if not cases:
        raise UserError(f"no labelled volumes in {dataset.root}; training needs image and label volumes")
    pick = _subset(len(cases), STAT_VOLUMES, seed)
    multi = dataset.channels > 1
    shapes, spacings, raw, fg, counts, areas, labels_seen = [], [], [], [], [], [], set()
    n_obj = n_touch = 0
    for i in pick:
        image, label = read_case(cases[i].image, cases[i].label, channels=multi)
        shapes.append(image.shape)
        spacings.append(image.spacing)
        raw.append(image.array)
        lab = np.asarray(label.array)[..., 0]
        labels_seen |= set(np.unique(lab).tolist())
        fg.append(float((lab > 0).mean()))
        comp = components(lab > 0) if lab.ndim == 2 else _components3d(lab > 0)
        a = object_areas(comp)
        counts.append(len(a))
        areas.extend(a.tolist())
        o, t = touching_objects(comp)
        n_obj, n_touch = n_obj + o, n_touch + t
    sizes = np.array(shapes)
    vol = sizes.prod(axis=1)
    modality = str(dataset.modality.get(0) if dataset.modality else "") or "unknown"
    n_labels = max(len(dataset.labels or {}), max(labels_seen) + 1)
    fp = Fingerprint(
        root=str(dataset.root), dims=3, n_samples=len(cases), n_measured=len(pick),
        size_median=[int(v) for v in np.median(sizes, axis=0)], size_min=[int(v) for v in sizes.min(axis=0)],
        size_max=[int(v) for v in sizes.max(axis=0)], size_spread=round(float(vol.max() / vol.min()), 3),
        spacing_median=[round(float(v), 6) for v in np.median(np.array(spacings), axis=0)],
        channels=dataset.channels, modality=modality,
        modality_source="dataset.json" if dataset.modality else "intensities", modality_shares={modality: 1.0},
        intensity=_intensity(raw), mask_kind="classes" if n_labels > 2 else "binary", n_classes=int(n_labels),
        foreground_share=round(float(np.mean(fg)), 4), objects_per_image=float(np.median(counts)),
        object_area_median=float(np.median(areas)) if areas else 0.0,
        touching_share=round(n_touch / n_obj, 4) if n_obj else 0.0)
    fp.layout_split, fp.layout_note = split_counts([c.split for c in cases]), dataset.split_note
    fp.seconds = round(time.time() - t0, 2)
    return fp


def split_counts(tags) -> dict:
    """``{"train": n, "val": n, "test": n}`` of the layout's split tags when it names a validation or test part,
    else ``{}`` (no split from the layout)."""
    from Functions.data.splits import has_layout_split, layout_parts

    return {k: len(v) for k, v in layout_parts(tags).items()} if has_layout_split(tags) else {}


def _components3d(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.label(mask)[0]


# ----------------------------------------------------------------------------- entry point
def fingerprint(data: str | None = None, dataset: str | None = None, data_dir: str | None = None, *,
                dims: int | None = None, seed: int = 0, near_duplicates: bool = True) -> Fingerprint:
    """The fingerprint of ``--data DIR`` / ``--dataset NAME`` (default: the offline nuclei sample).

    ``dims``: 3 reads volumes, 2 images; None decides as ``train`` does (Decathlon folders and ``msd-*`` data
    sets are volumes).  UserError (one line naming the folder or file) for unreadable or mixed data.
    """
    from Functions.data.volumes import find_volumes, is_decathlon_root

    if dims is None:
        if dataset:
            dims = 3 if str(dataset).lower().replace("_", "-").startswith(("msd-", "task0", "task1")) else 2
        elif data and Path(data).expanduser().is_dir() and is_decathlon_root(Path(data).expanduser()):
            dims = 3
        else:
            dims = 2
    if dims == 3:
        if dataset:
            from Functions.data import datasets

            root = datasets.locate(dataset, data_dir)
            if root is None:
                raise UserError(f"dataset {dataset} is not installed; run `python -m Functions download {dataset}` "
                                "first (or give --data-dir where it is)")
        else:
            from Functions.base.paths import sample_dir

            root = Path(data).expanduser() if data else sample_dir("volumes")
        return fingerprint_volumes(find_volumes(root), seed=seed)
    from Functions.base.paths import sample_dir
    from Functions.data.sources import resolve_samples

    if data:
        check_not_mixed(data)
    samples = resolve_samples(data, dataset, data_dir, sample="nuclei")
    root = data or dataset or str(sample_dir("nuclei"))
    return fingerprint_images(samples, root, seed=seed, near_duplicates=near_duplicates)
