"""DICOM and NIfTI: reading pixels in physical units and pairing them with masks.

DICOM (pydicom)
    :func:`read_dicom` returns the stored pixels passed through the
    modality transform (``RescaleSlope`` / ``RescaleIntercept``, also from
    the functional groups of enhanced multi-frame files), so CT comes out in
    Hounsfield units (HU), as ``float32`` of shape ``(H, W)`` or
    ``(frames, H, W)`` (``(..., 3)`` for colour).  ``window=`` maps HU to
    [0, 1] with :func:`apply_window`: a ``(center, width)`` pair or one of
    the presets in :data:`WINDOWS`.
NIfTI (nibabel)
    :func:`read_nifti` returns a 3-D volume with the slicing axis first,
    ``(slices, H, W)``; :func:`nifti_slices` turns an image volume and its
    aligned mask volume into one :class:`~Functions.data.samples.Sample` per
    slice.

Spacing: every reader returns the in-plane pixel size ``(row, column)`` in
millimetres (``None`` when the file does not store it).  It travels in
:attr:`Sample.spacing <Functions.data.samples.Sample>` so the distance metrics
(:func:`Functions.metrics.hd95` and friends, ``spacing=``) report
millimetres.  Note that resizing an image changes its pixel size by the
resize factor.

Discovery: :func:`detect_medical` is the first detector in
:data:`Functions.data.discovery.LAYOUTS`, so :func:`~Functions.data.discovery.find_samples`
pairs ``images/case1.nii.gz`` with ``masks/case1.nii.gz`` (one sample per
slice), ``images/x.dcm`` with ``masks/x.png`` or ``masks/x.dcm`` (one sample
per frame for multi-frame files), also with the Medical Segmentation
Decathlon folder names ``imagesTr``/``labelsTr``.  The readers in
:data:`SAMPLE_READERS` are listed in :data:`Functions.data.discovery.READERS` under the kinds ``"dicom"``, ``"nifti"``
(slices along axis 2), ``"nifti_axis0"`` and ``"nifti_axis1"``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from Functions.base.errors import UserError
from Functions.base.paths import walk_folders
from Functions.data.imaging import is_image_file, read_mask
from Functions.data.samples import IMAGE_DIR_NAMES, MASK_DIR_NAMES, Sample, mask_key, merge_masks

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dicom")
MEDICAL_SUFFIXES = NIFTI_SUFFIXES + DICOM_SUFFIXES

#: Common CT display windows in HU as ``(center, width)``; teaching presets -
#: radiology departments use slightly different values.
WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "abdomen": (40.0, 400.0),
}

#: The one default CT window, ``(center, width)`` HU, wherever none is given (3-D training and prediction,
#: :func:`Functions.data.volumes.normalize_ct`): the standard soft-tissue window, center 40 HU and width
#: 400 HU (-160 to 240 HU: fat, fluid, muscle and organs apart; bone and contrast white, air black).
DEFAULT_CT_WINDOW: tuple[float, float] = WINDOWS["abdomen"]

_AXIS_KIND = {0: "nifti_axis0", 1: "nifti_axis1", 2: "nifti"}
_AXIS_LETTER = {0: "x", 1: "y", 2: "z"}


class MedicalImage(NamedTuple):
    """Pixels plus the in-plane pixel size ``(row, column)`` in mm (``None`` if unknown)."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None


# ----------------------------------------------------------------------------- names
def file_stem(path: str | os.PathLike) -> str:
    """The name without its (double) extension: ``a.nii.gz`` -> ``a``, ``x.dcm`` -> ``x``, ``y.png`` -> ``y``."""
    name = Path(path).name
    low = name.lower()
    for suffix in MEDICAL_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_medical_file(path: str | os.PathLike) -> bool:
    """True for ``.dcm``/``.dicom``/``.nii``/``.nii.gz`` files (hidden ``._*`` files excluded)."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(MEDICAL_SUFFIXES)


def is_nifti(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def is_dicom(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(DICOM_SUFFIXES)


# ----------------------------------------------------------------------------- windowing
def apply_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values to [0, 1]: ``center - width/2`` and below -> 0, ``center + width/2`` and above -> 1.

    ``hu``: any shape; returns ``float32`` of the same shape.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    return np.clip((np.asarray(hu, np.float32) - low) / float(width), 0.0, 1.0).astype(np.float32)


def resolve_window(window: str | tuple[float, float] | None) -> tuple[float, float] | None:
    """``None``, a preset name from :data:`WINDOWS`, or ``(center, width)`` -> ``(center, width)`` or ``None``."""
    if window is None:
        return None
    if isinstance(window, str):
        try:
            return WINDOWS[window.lower()]
        except KeyError:
            raise ValueError(f"unknown window {window!r}; use one of {sorted(WINDOWS)} or (center, width)") from None
    center, width = window
    return float(center), float(width)


# ----------------------------------------------------------------------------- DICOM
def _pydicom():
    try:
        import pydicom
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        raise UserError("reading DICOM needs pydicom; install it with `pip install pydicom`") from None
    return pydicom


def _dcmread(path: Path, header_only: bool = False):
    pydicom = _pydicom()
    if not path.is_file():
        raise UserError(f"DICOM file {path} does not exist; check the path")
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=header_only)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the same user error
        raise UserError(f"cannot read DICOM file {path} ({type(exc).__name__}: {exc}); the file is damaged "
                        "or not DICOM") from None


def _first_item(ds, *path):
    """``ds.Seq[0].Seq[0]...`` or ``None`` when any level is missing."""
    item = ds
    for name in path:
        seq = getattr(item, name, None)
        if not seq:
            return None
        item = seq[0]
    return item


#: The DICOM tags that name a sample's split group, in order: the patient, else the study, else the series.
GROUP_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")


def dicom_group(ds) -> str | None:
    """The split group of a DICOM header: ``patient:<PatientID>``, else ``study:<StudyInstanceUID>``, else
    ``series:<SeriesInstanceUID>`` (blank or missing tags skipped); None when all three are blank.

    The one rule for every DICOM sample (2-D slices and frames, 3-D series folders): an anonymiser that blanks
    ``PatientID`` still leaves the slices of one scan together; one that writes the same ID for everyone
    makes one big group, which :func:`Functions.data.splits.split_indices` warns about.
    """
    for tag, kind in zip(GROUP_TAGS, ("patient", "study", "series")):
        value = str(getattr(ds, tag, "") or "").strip()
        if value:
            return f"{kind}:{value}"
    return None


def dicom_file_group(path: str | os.PathLike) -> str | None:
    """:func:`dicom_group` of the DICOM file at ``path`` (header only); None when it is not readable DICOM."""
    try:
        ds = _pydicom().dcmread(str(path), stop_before_pixels=True, specific_tags=list(GROUP_TAGS))
    except Exception:  # noqa: BLE001 - not DICOM or damaged: no group known
        return None
    return dicom_group(ds)


def _dicom_spacing(ds) -> tuple[float, float] | None:
    for source in (ds, _first_item(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence"),
                   _first_item(ds, "PerFrameFunctionalGroupsSequence", "PixelMeasuresSequence")):
        if source is not None and getattr(source, "PixelSpacing", None):
            row, col = (float(v) for v in source.PixelSpacing)
            return row, col
    if getattr(ds, "ImagerPixelSpacing", None):
        row, col = (float(v) for v in ds.ImagerPixelSpacing)
        return row, col
    return None


def _rescale(ds, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept per frame (arrays of length ``n_frames``)."""
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope, inter = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
        return np.full(n_frames, slope), np.full(n_frames, inter)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence", "PixelValueTransformationSequence")
    if shared is not None:
        slope, inter = float(getattr(shared, "RescaleSlope", 1)), float(getattr(shared, "RescaleIntercept", 0))
        return np.full(n_frames, slope), np.full(n_frames, inter)
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame and len(per_frame) == n_frames:
        slopes, inters = np.ones(n_frames), np.zeros(n_frames)
        for i, item in enumerate(per_frame):
            pvt = _first_item(item, "PixelValueTransformationSequence")
            if pvt is not None:
                slopes[i] = float(getattr(pvt, "RescaleSlope", 1))
                inters[i] = float(getattr(pvt, "RescaleIntercept", 0))
        return slopes, inters
    return np.ones(n_frames), np.zeros(n_frames)


def dicom_frames(path: str | os.PathLike) -> int:
    """Number of frames in a DICOM file (1 for single-frame), from the header only."""
    ds = _dcmread(Path(path), header_only=True)
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def read_dicom(path: str | os.PathLike, window: str | tuple[float, float] | None = None,
               frame: int | None = None) -> MedicalImage:
    """Read a DICOM image in physical units.

    Returns :class:`MedicalImage` with ``pixels`` ``float32``: ``(H, W)`` for
    one frame, ``(frames, H, W)`` for multi-frame files (``frame=k`` picks
    one), colour files ``(..., H, W, 3)`` unchanged.  Grayscale pixels go
    through the modality transform (HU for CT); ``MONOCHROME1`` images
    (bright = low value) are inverted so that bright is high everywhere.
    ``window`` (preset name or ``(center, width)``) then maps to [0, 1].
    ``spacing`` is ``(row, column)`` in mm or ``None``.
    """
    path = Path(path)
    ds = _dcmread(path)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder, no pixel data, ...
        raise UserError(f"cannot decode the pixels of {path} ({type(exc).__name__}: {exc}); for compressed "
                        "DICOM install a decoder (`pip install pylibjpeg pylibjpeg-libjpeg` or gdcm)") from None
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1
    if n_frames == 1:
        arr = arr[None]
    if colour:
        pixels = arr.astype(np.float32)
    else:
        if "ModalityLUTSequence" in ds:
            try:
                from pydicom.pixels import apply_modality_lut
            except ImportError:  # pydicom 2.x
                from pydicom.pixel_data_handlers.util import apply_modality_lut
            pixels = np.asarray(apply_modality_lut(arr, ds), np.float32)
        else:
            slopes, inters = _rescale(ds, n_frames)
            pixels = arr.astype(np.float32) * slopes[:, None, None].astype(np.float32) \
                + inters[:, None, None].astype(np.float32)
        if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            pixels = pixels.max() + pixels.min() - pixels
    if frame is not None:
        if not 0 <= frame < n_frames:
            raise UserError(f"{path} has {n_frames} frame(s); frame {frame} does not exist")
        pixels = pixels[frame]
    elif n_frames == 1:
        pixels = pixels[0]
    win = resolve_window(window)
    if win is not None:
        pixels = apply_window(pixels, *win)
    return MedicalImage(np.ascontiguousarray(pixels, dtype=np.float32), _dicom_spacing(ds))


def _read_dicom_mask(path: Path, frame: int | None) -> np.ndarray:
    ds = _dcmread(path)
    arr = np.asarray(ds.pixel_array)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n_frames > 1:
        if frame is None or frame >= n_frames:
            raise UserError(f"mask {path} has {n_frames} frames but its image has a different frame count; "
                            "give the mask one frame per image frame")
        arr = arr[frame]
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return arr.astype(np.uint8) if arr.max(initial=0) < 256 else arr.astype(np.int32)


def _read_dicom_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    image = read_dicom(sample.image, frame=sample.index).pixels
    image = image[..., None] if image.ndim == 2 else image
    return image, merge_masks(sample, image, lambda p: _read_dicom_mask(p, sample.index) if is_dicom(p)
                              else read_mask(p))


# ----------------------------------------------------------------------------- NIfTI
def _nibabel():
    try:
        import nibabel
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        raise UserError("reading NIfTI needs nibabel; install it with `pip install nibabel`") from None
    return nibabel


def load_nifti(path: Path):
    """The nibabel image of a NIfTI file (header read, pixels on demand); :class:`UserError` when missing or damaged."""
    nib = _nibabel()
    if not path.is_file():
        raise UserError(f"NIfTI file {path} does not exist; check the path")
    try:
        return nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read NIfTI file {path} ({type(exc).__name__}: {exc}); the file is damaged "
                        "or not NIfTI") from None


def _volume_shape(img, path: Path) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3:
        raise UserError(f"{path} holds a {len(shape)}-D array {shape}; only 3-D volumes (or 2-D images) are "
                        "supported - split multi-channel or time series volumes into one file per channel")
    return shape  # type: ignore[return-value]


_CACHE: OrderedDict[tuple[str, float], np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _load_volume(path: Path) -> np.ndarray:
    """The whole 3-D array (scaled by the header's slope/intercept), cached for slice-by-slice reading."""
    key = (str(path), path.stat().st_mtime)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        img = load_nifti(path)
        shape = _volume_shape(img, path)
        data = np.asanyarray(img.dataobj).reshape(shape)
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return data


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return axis


def _nifti_spacing(img, axis: int) -> tuple[float, float]:
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    row, col = (zooms[a] for a in range(3) if a != axis)
    return row, col


def read_nifti(path: str | os.PathLike, axis: int = 2) -> MedicalImage:
    """Read a NIfTI volume with the slicing ``axis`` moved first.

    Returns :class:`MedicalImage`: ``pixels`` ``float32`` ``(slices, H, W)``
    in the file's voxel order (no reorientation), ``spacing`` the voxel size
    ``(row, column)`` of each slice in mm.  A 2-D image becomes one slice.
    """
    axis = _check_axis(axis)
    path = Path(path)
    img = load_nifti(path)
    data = _load_volume(path)
    return MedicalImage(np.ascontiguousarray(np.moveaxis(data, axis, 0), np.float32), _nifti_spacing(img, axis))


def nifti_slices(image_path: str | os.PathLike, mask_path: str | os.PathLike | None, axis: int = 2,
                 skip_empty: bool = False) -> list[Sample]:
    """One :class:`Sample` per slice of an image volume and its mask volume.

    The mask must have the image's shape and voxel grid (same affine within
    0.01 mm), otherwise :class:`UserError`.  ``skip_empty=True`` drops
    slices whose mask is all background (this reads the mask volume).
    Samples have ``kind`` ``"nifti"`` (axis 2) or ``"nifti_axis0/1"``,
    ``index`` the slice number, ``id`` like ``case1_z012``, ``spacing``, and ``group``
    ``"volume:<stem>"`` so that the slices of one volume stay in one split.
    """
    axis = _check_axis(axis)
    image_path = Path(image_path)
    img = load_nifti(image_path)
    shape = _volume_shape(img, image_path)
    masks: tuple[Path, ...] = ()
    if mask_path is not None:
        mask_path = Path(mask_path)
        mimg = load_nifti(mask_path)
        mshape = _volume_shape(mimg, mask_path)
        if mshape != shape:
            raise UserError(f"mask {mask_path} has shape {mshape} but image {image_path} has {shape}; "
                            "the mask volume must be aligned voxel for voxel with its image")
        if not np.allclose(img.affine, mimg.affine, atol=1e-2):
            raise UserError(f"mask {mask_path} and image {image_path} have different voxel-to-world affines; "
                            "resample the mask onto the image grid first")
        masks = (mask_path,)
    spacing = _nifti_spacing(img, axis)
    keep = range(shape[axis])
    if skip_empty and masks:
        m = _load_volume(masks[0])
        other = tuple(a for a in range(3) if a != axis)
        keep = [int(k) for k in np.flatnonzero(np.any(m != 0, axis=other))]
    stem = file_stem(image_path)
    return [Sample(id=f"{stem}_{_AXIS_LETTER[axis]}{k:03d}", image=image_path, masks=masks,
                   kind=_AXIS_KIND[axis], index=int(k), spacing=spacing, group=f"volume:{stem}") for k in keep]


def _nifti_reader(axis: int):
    def read(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        volume = _load_volume(Path(sample.image))
        image = np.take(volume, sample.index, axis=axis).astype(np.float32)[..., None]

        def read_slice(path: Path) -> np.ndarray:
            if not is_nifti(path):
                return read_mask(path)
            m = np.rint(np.take(_load_volume(Path(path)), sample.index, axis=axis))
            return m.astype(np.uint8) if 0 <= m.min(initial=0) and m.max(initial=0) < 256 else m.astype(np.int32)

        return image, merge_masks(sample, image, read_slice)

    read.__name__ = f"read_nifti_axis{axis}"
    return read


# ----------------------------------------------------------------------------- discovery
_IMAGE_DIRS = IMAGE_DIR_NAMES + ("imagestr",)
_MASK_DIRS = MASK_DIR_NAMES + ("labelstr",)


def _dicom_samples(image: Path, masks: tuple[Path, ...]) -> list[Sample]:
    ds = _dcmread(image, header_only=True)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spacing = _dicom_spacing(ds)
    stem = file_stem(image)
    group = dicom_group(ds) or (f"volume:{stem}" if n_frames > 1 else None)
    if n_frames == 1:
        return [Sample(id=stem, image=image, masks=masks, kind="dicom", spacing=spacing, group=group)]
    for m in masks:
        if not is_dicom(m) or dicom_frames(m) != n_frames:
            raise UserError(f"image {image} has {n_frames} frames but mask {m} does not; give a multi-frame "
                            "image a multi-frame DICOM mask with the same number of frames")
    return [Sample(id=f"{stem}_f{k:03d}", image=image, masks=masks, kind="dicom", index=k, spacing=spacing,
                   group=group) for k in range(n_frames)]


def detect_medical(root: Path) -> list[Sample] | None:
    """Layout detector (first in :data:`Functions.data.discovery.LAYOUTS`): paired folders holding DICOM/NIfTI images.

    Returns ``None`` when no image folder under ``root`` holds a medical file.
    """
    root = Path(root)
    samples: list[Sample] = []
    lonely_images: list[Path] = []
    lonely_masks: list[Path] = []
    for dirpath, dirnames, _ in walk_folders(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        names = {n.lower(): n for n in dirnames}
        img_name = next((names[n] for n in _IMAGE_DIRS if n in names), None)
        mask_name = next((names[n] for n in _MASK_DIRS if n in names), None)
        if not img_name or not mask_name:
            continue
        img_dir, mask_dir = Path(dirpath) / img_name, Path(dirpath) / mask_name
        images = sorted(p for p in img_dir.iterdir() if p.is_file() and is_medical_file(p))
        if not images:
            continue
        by_key: dict[str, list[Path]] = defaultdict(list)
        for m in sorted(mask_dir.iterdir()):
            if m.is_file() and (is_medical_file(m) or is_image_file(m)):
                by_key[mask_key(file_stem(m))].append(m)
        used = set()
        for image in images:
            stem = file_stem(image)
            key = stem if stem in by_key else mask_key(stem)
            if key not in by_key:
                lonely_images.append(image)
                continue
            used.add(key)
            masks = tuple(by_key[key])
            if is_nifti(image):
                if not (len(masks) == 1 and is_nifti(masks[0])):
                    raise UserError(f"NIfTI image {image} needs exactly one NIfTI mask volume; found "
                                    f"{', '.join(m.name for m in masks)}")
                samples += nifti_slices(image, masks[0])
            else:
                samples += _dicom_samples(image, masks)
        lonely_masks += [m for k, ms in by_key.items() if k not in used for m in ms]
    if not samples and not lonely_images:
        return None
    if lonely_images or lonely_masks:
        names = [f"image {p.relative_to(root)}" for p in lonely_images] + \
                [f"mask {p.relative_to(root)}" for p in lonely_masks]
        shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        raise UserError(f"{len(lonely_images)} image(s) without a mask and {len(lonely_masks)} mask(s) without an "
                        f"image under {root}: {shown}; give each volume a mask with the same name "
                        "(images/case1.nii.gz + masks/case1.nii.gz, images/x.dcm + masks/x.png)")
    return samples


#: kind -> reader of one :class:`Sample`, listed in :data:`Functions.data.discovery.READERS`.
SAMPLE_READERS = {"dicom": _read_dicom_sample, **{kind: _nifti_reader(axis) for axis, kind in _AXIS_KIND.items()}}
