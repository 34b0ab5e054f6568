"""Detectors and readers for public data sets whose folders no generic layout reads.

* **DRIVE** (:func:`detect_drive`): ``training/images/NN_training.tif`` is
  labelled by ``training/1st_manual/NN_manual1.gif``, matched by the number
  ``NN``; the ``mask/`` folder beside them holds field-of-view masks, which
  the generic paired-folder layout would wrongly take as labels.
* **Figshare brain tumour MRI** (:func:`detect_brain_tumor`): MATLAB ``.mat``
  slices holding image, tumour mask and tumour type together.

They are listed, in a deliberate order, in the layout table of
:mod:`Functions.data.discovery`; nothing registers itself on import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.paths import walk_folders
from Functions.data.imaging import is_image_file
from Functions.data.samples import Sample


def child_dir(folder: Path, name: str) -> Path | None:
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


# ----------------------------------------------------------------------------- DRIVE
_DRIVE_NUMBER = re.compile(r"^(\d+)_")
_DRIVE_IMAGE = re.compile(r"^\d+_(training|test)$", re.IGNORECASE)


def _drive_number(stem: str) -> str | None:
    m = _DRIVE_NUMBER.match(stem)
    return m.group(1) if m else None


#: DRIVE's split folders (``training/``; ``test/`` in the official archive, ``testing/`` in some copies).
_DRIVE_SPLITS = {"training": "train", "train": "train", "test": "test", "testing": "test"}


def _numbered(folder: Path | None) -> dict[str, Path]:
    """``{NN: file}`` for the image files ``NN_*`` of ``folder`` (first one per number); ``{}`` without it."""
    out: dict[str, Path] = {}
    if folder is None:
        return out
    for p in sorted(folder.iterdir()):
        num = _drive_number(p.stem)
        if num is not None and p.is_file() and is_image_file(p):
            out.setdefault(num, p)
    return out


def detect_drive(root: Path) -> list[Sample] | None:
    """DRIVE detector (tried by :func:`Functions.data.discovery.find_samples`, see its layout table).

    A split folder (``training``/``test``) with ``images/`` and ``1st_manual/``
    pairs ``NN_training.tif`` with ``NN_manual1.gif`` by the number ``NN``.
    ``mask/`` (the field-of-view masks) is never a label: ``NN_training_mask.gif`` / ``NN_test_mask.gif`` becomes
    the sample's ``roi`` (training loss and test scores count only the pixels inside the field of view, as DRIVE
    papers score), and the split folder its ``split`` (the official 20 training / 20 test images).  A split without
    ``1st_manual/`` (the test split of some distributions) is skipped; a tree
    holding only such splits is refused rather than trained on FOV masks.
    """
    splits, fov_only = [], []
    for dirpath, dirnames, _ in walk_folders(root):
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
            images = child_dir(d, "images")
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
        manual, fov = _numbered(child_dir(split, "1st_manual")), _numbered(child_dir(split, "mask"))
        for img in sorted(child_dir(split, "images").iterdir()):
            if not (img.is_file() and is_image_file(img)):
                continue
            num = _drive_number(img.stem)
            if num in manual:
                samples.append(Sample(id=img.stem, image=img, masks=(manual[num],), roi=fov.get(num),
                                      split=_DRIVE_SPLITS.get(split.name.lower())))
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


def read_brain_tumor_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    image, mask, _ = read_brain_tumor_mat(sample.image)
    return image, mask


def detect_brain_tumor(root: Path) -> list[Sample] | None:
    """Detector for folders (at any depth) of figshare ``N.mat`` slices; other ``.mat`` files are ignored.

    Each sample has ``kind="brain_tumor_mat"``, ``label`` the tumour type name and ``group``
    ``"patient:<PID>"`` from ``cjdata.PID`` (233 patients for 3,064 slices), so splits keep a patient together.
    """
    mats = []
    for dirpath, dirnames, filenames in walk_folders(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__MACOSX"))]
        mats += [Path(dirpath) / f for f in filenames if f.lower().endswith(".mat") and not f.startswith(".")]
    samples = []
    for path in sorted(mats):
        fields = _mat_fields(path, ("label", "PID"))
        if fields is None or "label" not in fields:
            continue
        value = int(np.asarray(fields["label"]).ravel()[0])
        pid = mat_string(fields["PID"]) if "PID" in fields else ""
        samples.append(Sample(id=path.stem, image=path, masks=(path,), kind="brain_tumor_mat",
                              label=BRAIN_TUMOR_LABELS.get(value, str(value)),
                              group=f"patient:{pid}" if pid else None))
    return samples or None


def mat_string(value) -> str:
    """A MATLAB char array as read by h5py (uint16 character codes) or SciPy (a str) -> ``str``, stripped."""
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return "".join(str(v) for v in arr.ravel()).strip()
    if arr.dtype.kind in "ui" and arr.size:
        return "".join(chr(int(c)) for c in arr.ravel() if int(c) > 0).strip()
    return str(value).strip()


#: kind -> reader of one :class:`Sample`, listed in :data:`Functions.data.discovery.READERS`.
SAMPLE_READERS = {"brain_tumor_mat": read_brain_tumor_sample}
