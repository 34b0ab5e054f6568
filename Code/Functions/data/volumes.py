"""Volumes: NIfTI files and DICOM series as ``(D, H, W, C)`` arrays with spacing and orientation.

A :class:`Volume` is an array plus where its voxels are in the patient:

* ``array``: ``(D, H, W, C)`` - float32 for images, integer for label volumes
  (``C == 1`` then);
* ``spacing``: the voxel size ``(z, y, x)`` in millimetres, one entry per
  array axis ``D, H, W``;
* ``affine``: the 4x4 NIfTI voxel-to-world matrix (RAS+ world, millimetres)
  of the *NIfTI-ordered* voxel index ``(i, j, k) = (W, H, D)``.  In other
  words ``array[d, h, w]`` is the voxel ``(i, j, k) = (w, h, d)`` of a NIfTI
  file, and its centre is at ``affine @ (w, h, d, 1)``;
* ``source``: the grid of the file it came from (``shape`` in NIfTI order,
  ``affine``, ``header``, ``path``), kept through every operation here so a
  prediction can be written back onto the original voxels
  (:func:`write_prediction`).

Reading: :func:`read_volume` (``.nii``/``.nii.gz`` file or a DICOM series
folder), :func:`read_nifti_volume`, :func:`read_dicom_series`;
:func:`read_case` reads an image with its label volume and checks that they
share one voxel grid.  Every bad input is one :class:`UserError` naming the
file: a 4-D NIfTI where a 3-D volume is expected, a DICOM folder mixing
series, a label of another shape or affine than its image.

Geometry: :func:`to_canonical` reorients to RAS (nibabel's
``as_closest_canonical``: array axis ``W`` runs Right, ``H`` Anterior, ``D``
Superior); :func:`resample` to a target spacing (trilinear for images,
nearest for labels, through :func:`to_grid`); :func:`crop_foreground`.
Every one returns a new :class:`Volume` with its affine updated, so
:func:`to_grid` can map any array on one grid onto another by world
coordinates - that is how a prediction made on a canonical, resampled, cropped
volume goes back to the file's voxels.

Intensities: :func:`normalize_ct` (a Hounsfield-unit window to [0, 1]) and
:func:`normalize_mri` (percentile clipping, then z-score or [0, 1]).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError
from Functions.data.medical_io import (DEFAULT_CT_WINDOW, apply_window, dicom_file_group, dicom_group, load_nifti,
                                       resolve_window)

log = logging.getLogger("Functions")

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Affines closer than this (mm) count as the same voxel grid (as in medical_io: float32 headers, MSD labels).
AFFINE_TOLERANCE = 1e-2
#: Largest automatic patch ``(D, H, W)``: fits a CPU; pass ``patch_size`` for bigger ones on a GPU.
MAX_AUTO_PATCH = (48, 96, 96)


# ----------------------------------------------------------------------------- the Volume type
@dataclass(frozen=True)
class Source:
    """The voxel grid of the file a volume was read from (NIfTI index order ``(i, j, k)``)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    header: object = None          # the nibabel header of a NIfTI file; None for DICOM
    path: Path | None = None


@dataclass(frozen=True)
class Volume:
    """A ``(D, H, W, C)`` array with its voxel spacing (z, y, x) in mm and NIfTI affine; see the module doc."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source: Source

    @property
    def shape(self) -> tuple[int, int, int]:
        """The spatial shape ``(D, H, W)``."""
        return tuple(int(s) for s in self.array.shape[:3])

    @property
    def channels(self) -> int:
        return int(self.array.shape[3])

    @property
    def path(self) -> Path | None:
        return self.source.path

    @property
    def orientation(self) -> str:
        """Axis codes of the NIfTI axes ``(i, j, k) = (W, H, D)``, e.g. ``"RAS"`` or ``"LPS"``."""
        return orientation_codes(self.affine)

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same grid holding ``array`` (``(D, H, W)`` or ``(D, H, W, C)``)."""
        array = np.asarray(array)
        if array.ndim == 3:
            array = array[..., None]
        if array.shape[:3] != self.shape:
            raise ValueError(f"array of shape {array.shape} does not fit a volume of shape {self.shape}")
        return replace(self, array=array)


def _nib():
    try:
        import nibabel
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        raise UserError("reading volumes needs nibabel; install it with `pip install nibabel`") from None
    return nibabel


def orientation_codes(affine: np.ndarray) -> str:
    """``"RAS"``, ``"LPS"``, ... for a NIfTI affine (the world direction of axes i, j, k)."""
    nib = _nib()
    return "".join(nib.aff2axcodes(np.asarray(affine, float)))


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size ``(z, y, x)`` = lengths of the affine's k, j, i columns, in mm."""
    lengths = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
    return float(lengths[2]), float(lengths[1]), float(lengths[0])


def _to_dhw(data: np.ndarray) -> np.ndarray:
    """NIfTI ``(i, j, k[, c])`` -> ``(D, H, W, C)`` = ``(k, j, i, c)``."""
    if data.ndim == 3:
        data = data[..., None]
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0, 3)))


def _to_ijk(array: np.ndarray) -> np.ndarray:
    """``(D, H, W[, C])`` -> NIfTI ``(i, j, k[, C])``."""
    if array.ndim == 3:
        return np.transpose(array, (2, 1, 0))
    return np.transpose(array, (2, 1, 0, 3))


# ----------------------------------------------------------------------------- NIfTI
def is_nifti_path(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(NIFTI_SUFFIXES)


def volume_stem(path) -> str:
    """``case_001.nii.gz`` -> ``case_001``; a DICOM folder keeps its name; a :class:`SeriesRef` its ``name``."""
    if isinstance(path, SeriesRef):
        return path.name
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _spatial_data(img, path: Path, *, channels: bool, what: str) -> np.ndarray:
    """The data as ``(i, j, k[, c])``: 3-D always; 4-D only when ``channels`` (the 4th axis = channels)."""
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 4 and channels:
        pass
    elif len(shape) != 3:
        extra = (" - give each channel or time point its own file, or read it with channels=True"
                 if len(shape) == 4 else "")
        raise UserError(f"{path} holds a {len(shape)}-D array {shape} but a 3-D {what} volume is expected{extra}")
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read the voxels of {path} ({type(exc).__name__}: {exc}); the file is damaged "
                        "or truncated") from None
    return data


def read_nifti_volume(path: str | os.PathLike, *, label: bool = False, channels: bool = False) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file as a :class:`Volume` in the file's own voxel order.

    ``label=True``: integer labels (rounded; ``uint8`` when they fit, else
    ``int32``), always 3-D.  Otherwise float32 with the header's scaling
    applied.  ``channels=True`` accepts a 4-D image whose 4th axis is the
    channels (MSD BrainTumour's four MRI sequences); without it a 4-D file is
    a :class:`UserError` naming the file.  Output ``array``: ``(D, H, W, C)``.
    """
    path = Path(path)
    img = load_nifti(path)
    data = _spatial_data(img, path, channels=channels and not label, what="label" if label else "image")
    array = _to_dhw(_as_labels(data, path) if label else np.asarray(data, np.float32))
    affine = np.asarray(img.affine, float)
    src = Source(shape=tuple(int(s) for s in data.shape[:3]), affine=affine.copy(), header=img.header.copy(),
                 path=path)
    return Volume(array=array, spacing=spacing_of(affine), affine=affine, source=src)


def _as_labels(data: np.ndarray, path: Path) -> np.ndarray:
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)):
            raise UserError(f"label volume {path} contains NaN or infinite values; labels must be whole numbers")
        data = np.rint(data)
    if data.size and data.min() < 0:
        raise UserError(f"label volume {path} has negative values ({data.min()}); labels must be 0, 1, 2, ...")
    top = data.max(initial=0)
    return data.astype(np.uint8 if top < 256 else np.int32)


# ----------------------------------------------------------------------------- DICOM series
def _pydicom():
    try:
        import pydicom
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        raise UserError("reading DICOM needs pydicom; install it with `pip install pydicom`") from None
    return pydicom


def _dicom_headers(folder: Path) -> list:
    pydicom = _pydicom()
    headers = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: a README, a thumbnail ... skipped
            continue
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        headers.append((p, ds))
    return headers


@dataclass(frozen=True)
class SeriesRef:
    """One series (``SeriesInstanceUID`` ``uid``) of a DICOM folder that holds several: a volume of its own.

    ``number`` (1, 2 ...) orders the folder's series by ``SeriesNumber``, then UID; ``name`` is
    ``<folder>_series<number>``.  :func:`read_volume` reads it like a folder of one series.
    """

    folder: Path
    uid: str
    number: int

    @property
    def name(self) -> str:
        return f"{self.folder.name}_series{self.number}"


def dicom_series_in(folder: str | os.PathLike) -> list[SeriesRef]:
    """The series of the DICOM slices in ``folder`` (one :class:`SeriesRef` each; empty without slices).

    A study exported into one folder holds several series (localiser, T1, T2 ...), each with its own
    geometry: read them one by one, never merged.
    """
    folder = Path(folder)
    numbers: dict[str, float] = {}
    for _, ds in _dicom_headers(folder):
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        try:
            number = float(getattr(ds, "SeriesNumber", None))
        except (TypeError, ValueError):
            number = float("inf")
        numbers[uid] = min(numbers.get(uid, number), number)
    order = sorted(numbers, key=lambda u: (numbers[u], u))
    return [SeriesRef(folder=folder, uid=uid, number=n + 1) for n, uid in enumerate(order)]


def volume_group(path) -> str | None:
    """The split group of a volume: for a DICOM series (folder or :class:`SeriesRef`) the
    :func:`~Functions.data.medical_io.dicom_group` of its first slice - the patient, else the study, else
    the series; None for a NIfTI file (no header names a patient: a group of its own)."""
    if isinstance(path, SeriesRef):
        headers = [ds for _, ds in _dicom_headers(path.folder) if str(getattr(ds, "SeriesInstanceUID", "") or "")
                   == path.uid]
        return dicom_group(headers[0]) if headers else None
    path = Path(path)
    if not path.is_dir():
        return None
    for p in sorted(path.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR":
            group = dicom_file_group(p)
            if group is not None:
                return group
    return None


def read_dicom_series(folder: str | os.PathLike, series: str | None = None) -> Volume:
    """Read a folder holding the slices of one DICOM series as a :class:`Volume`.

    Slices are sorted by their position (``ImagePositionPatient``) along the
    slice normal (cross product of the ``ImageOrientationPatient`` row and
    column directions); the in-plane spacing comes from ``PixelSpacing``, the
    slice spacing from the positions (not ``SliceThickness``, which may
    differ).  Pixels pass through ``RescaleSlope``/``RescaleIntercept`` per
    slice (Hounsfield units for CT).  The affine converts DICOM's LPS patient
    coordinates to NIfTI's RAS.  ``array``: ``(D, H, W, 1)`` float32, ``D``
    the slices in position order, ``H`` the rows, ``W`` the columns.

    UserError naming the folder: no DICOM slices with a position, slices of
    more than one series (``SeriesInstanceUID``; pass ``series`` = the UID
    of one, or see :func:`dicom_series_in`), differing orientations or
    sizes, two slices at one position.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"DICOM series folder {folder} does not exist or is not a folder; give the folder that "
                        "holds the slice files")
    headers = _dicom_headers(folder)
    if series is not None:
        headers = [(p, ds) for p, ds in headers if str(getattr(ds, "SeriesInstanceUID", "") or "") == series]
    if not headers:
        raise UserError(f"{folder} holds no DICOM image slices with ImagePositionPatient; give a folder with "
                        "the .dcm files of one series")
    series = Counter(str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in headers)
    if len(series) > 1:
        parts = ", ".join(f"{uid or '(none)'}: {n} file(s)" for uid, n in series.most_common())
        raise UserError(f"DICOM folder {folder} mixes {len(series)} series ({parts}); put each series "
                        "(SeriesInstanceUID) in its own folder")
    orient = np.array([float(v) for v in headers[0][1].ImageOrientationPatient], float)
    for p, ds in headers:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orient, atol=1e-4):
            raise UserError(f"DICOM slice {p} has another ImageOrientationPatient than {headers[0][0].name}; "
                            "a series must have one orientation")
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    headers = [headers[i] for i in order]
    positions, along = positions[order], along[order]
    if len(along) > 1 and np.min(np.diff(along)) < 1e-4:
        k = int(np.argmin(np.diff(along)))
        raise UserError(f"DICOM slices {headers[k][0].name} and {headers[k + 1][0].name} in {folder} lie at the "
                        "same position; the folder holds duplicates or two acquisitions")
    first = headers[0][1]
    if not getattr(first, "PixelSpacing", None):
        raise UserError(f"DICOM slice {headers[0][0]} has no PixelSpacing; the series cannot be placed in space")
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    if len(along) > 1:
        steps = np.diff(along)
        slice_spacing = float(np.median(steps))
        if np.max(np.abs(steps - slice_spacing)) > 0.05 * slice_spacing + 1e-3:
            log.warning("DICOM series %s: uneven slice spacing (%.3g to %.3g mm); using the median %.3g mm",
                        folder, steps.min(), steps.max(), slice_spacing)
    else:
        slice_spacing = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 1) or 1)
    pydicom = _pydicom()
    slices = []
    for p, _ in headers:
        ds = pydicom.dcmread(str(p))
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot decode the pixels of DICOM slice {p} ({type(exc).__name__}: {exc})") from None
        if pixels.ndim != 2:
            raise UserError(f"DICOM slice {p} holds a {pixels.ndim}-D pixel array; a series folder must hold "
                            "single-frame grayscale slices")
        if slices and pixels.shape != slices[0].shape:
            raise UserError(f"DICOM slice {p} is {pixels.shape} but {headers[0][0].name} is {slices[0].shape}; "
                            "a series must have one slice size")
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append(pixels * np.float32(slope) + np.float32(intercept))
    array = np.stack(slices)[..., None]                            # (D, H, W, 1): slice, row, column
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing                             # i = column index
    lps[:3, 1] = col_dir * row_spacing                             # j = row index
    lps[:3, 2] = normal * slice_spacing                            # k = slice index
    lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps                 # LPS -> RAS
    src = Source(shape=(array.shape[2], array.shape[1], array.shape[0]), affine=affine.copy(), header=None,
                 path=folder)
    return Volume(array=array, spacing=(slice_spacing, row_spacing, col_spacing), affine=affine, source=src)


# ----------------------------------------------------------------------------- one entry point
def read_volume(path: str | os.PathLike, *, label: bool = False, channels: bool = False,
                canonical: bool = True, spacing=None) -> Volume:
    """Read a NIfTI file, a DICOM series folder or one :class:`SeriesRef`; optionally reorient to RAS and resample.

    ``canonical=True`` applies :func:`to_canonical`; ``spacing=(z, y, x)`` mm
    applies :func:`resample` (nearest neighbour for ``label=True``).
    Returns ``(D, H, W, C)``.
    """
    if isinstance(path, SeriesRef):
        vol = read_dicom_series(path.folder, series=path.uid)
        vol = to_canonical(vol) if canonical else vol
        return resample(vol, spacing, order=0 if label else 1) if spacing is not None else vol
    path = Path(path)
    if path.is_dir():
        if label:
            raise UserError(f"{path} is a folder; label volumes must be NIfTI files (.nii or .nii.gz)")
        vol = read_dicom_series(path)
    elif is_nifti_path(path) or (path.name.lower().endswith(NIFTI_SUFFIXES) and path.exists()):
        vol = read_nifti_volume(path, label=label, channels=channels)
    elif not path.exists():
        raise UserError(f"volume {path} does not exist; give a .nii/.nii.gz file or a DICOM series folder")
    else:
        raise UserError(f"{path} is not a volume; give a .nii/.nii.gz file or a folder with one DICOM series")
    if canonical:
        vol = to_canonical(vol)
    if spacing is not None:
        vol = resample(vol, spacing, order=0 if label else 1)
    return vol


def check_same_grid(image: Volume, label: Volume, *, label_path=None) -> None:
    """UserError naming the label file unless ``label`` lies on ``image``'s voxel grid (shape and affine)."""
    name = label_path or label.path
    if image.shape != label.shape:
        raise UserError(f"label {name} has shape {label.shape} (D, H, W) but image {image.path} has "
                        f"{image.shape}; the label volume must be aligned voxel for voxel with its image")
    if not np.allclose(image.affine, label.affine, atol=AFFINE_TOLERANCE):
        raise UserError(f"label {name} and image {image.path} have different voxel-to-world affines "
                        f"(orientation {label.orientation} vs {image.orientation}); resample the label onto the "
                        "image grid first")


def read_case(image_path, label_path=None, *, channels: bool = False, canonical: bool = True,
              spacing=None) -> tuple[Volume, Volume | None]:
    """An image volume and its label volume on one grid: ``(image, label or None)``.

    The label must have the image's shape and affine in the files
    (:func:`check_same_grid`, UserError naming the label file); both then go
    through the same reorientation and resampling (labels nearest-neighbour).
    """
    image = read_volume(image_path, channels=channels, canonical=False)
    label = None
    if label_path is not None:
        label = read_volume(label_path, label=True, canonical=False)
        check_same_grid(image, label, label_path=label_path)
    if canonical:
        image = to_canonical(image)
        label = to_canonical(label) if label is not None else None
    if spacing is not None:
        image = resample(image, spacing, order=1)
        label = resample(label, spacing, order=0) if label is not None else None
    return image, label


# ----------------------------------------------------------------------------- geometry
def to_canonical(vol: Volume) -> Volume:
    """Reorient to RAS (nibabel ``as_closest_canonical``): flips and axis swaps only, voxels unchanged.

    ``W`` then runs Right, ``H`` Anterior, ``D`` Superior (axial slices along
    ``D``).  Undo it with :func:`to_grid` / :func:`write_prediction`.
    """
    nib = _nib()
    ornt = nib.orientations.io_orientation(vol.affine)
    target = nib.orientations.axcodes2ornt(("R", "A", "S"))
    if np.array_equal(ornt, target):
        return vol
    transform = nib.orientations.ornt_transform(ornt, target)
    ijk = _to_ijk(vol.array)
    moved = nib.orientations.apply_orientation(ijk, transform)
    shape_ijk = ijk.shape[:3]
    affine = vol.affine @ nib.orientations.inv_ornt_aff(transform, shape_ijk)
    return replace(vol, array=_to_dhw(np.ascontiguousarray(moved)), affine=affine, spacing=spacing_of(affine))


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in (spacing if np.ndim(spacing) else (spacing,) * 3))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise UserError(f"spacing must be three positive numbers (z, y, x) in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def resample(vol: Volume, spacing, *, order: int | None = None) -> Volume:
    """Resample to the voxel size ``spacing`` = ``(z, y, x)`` mm (or one number for all three).

    ``order=1`` trilinear (images), ``0`` nearest (labels; the default for
    integer arrays).  The new shape is ``round(shape * old / new)``; voxel
    boxes keep their outer edges aligned (the new grid spans the old box), and the affine is
    updated to match.  ``(D, H, W, C) -> (D', H', W', C)``.
    """
    target = _check_spacing(spacing)
    shape = vol.shape
    new_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, vol.spacing, target))
    if order is None:
        order = 0 if np.issubdtype(vol.array.dtype, np.integer) else 1
    return resample_to_shape(vol, new_shape, order=order)


def resample_to_shape(vol: Volume, shape, *, order: int = 1) -> Volume:
    """Resample ``vol`` to the spatial ``shape`` ``(D, H, W)`` covering the same box; affine updated.

    Values come from :func:`to_grid` (the one grid-mapping rule: every new voxel centre lies in the old box,
    the half-voxel rim takes the nearest edge value).
    """
    shape = tuple(int(s) for s in shape)
    if shape == vol.shape:
        return vol
    # voxel d' covers [d' * s, (d' + 1) * s) of the old grid, s = old/new: centre at (d' + 0.5) s - 0.5
    scale_dhw = np.array([o / n for o, n in zip(vol.shape, shape)])
    scale_ijk = scale_dhw[::-1]
    step = np.eye(4)
    step[:3, :3] = np.diag(scale_ijk)
    step[:3, 3] = (scale_ijk - 1.0) / 2.0
    affine = vol.affine @ step
    new = to_grid(vol.array, vol.affine, affine, shape, order=order)   # the one grid-mapping rule
    return replace(vol, array=new, affine=affine, spacing=spacing_of(affine))


def crop(vol: Volume, start, stop) -> Volume:
    """The sub-volume ``array[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]`` with its affine."""
    start = [max(0, int(s)) for s in start]
    stop = [min(n, int(e)) for n, e in zip(vol.shape, stop)]
    array = vol.array[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    shift = np.eye(4)
    shift[:3, 3] = start[::-1]                                     # (d, h, w) -> (i, j, k) = (w, h, d)
    return replace(vol, array=np.ascontiguousarray(array), affine=vol.affine @ shift)


def foreground_box(array: np.ndarray, *, threshold: float | None = None, margin: int = 0):
    """``(start, stop)`` of the box holding the voxels above ``threshold`` (default: the minimum) in ``(D, H, W[, C])``.

    ``margin`` voxels are added on every side (clipped to the volume).  A
    volume with no foreground gives the whole volume.
    """
    a = np.asarray(array)
    a = a.max(axis=-1) if a.ndim == 4 else a
    thr = a.min() if threshold is None else threshold
    fg = a > thr
    if not fg.any():
        return (0, 0, 0), tuple(int(s) for s in a.shape)
    idx = np.nonzero(fg)
    start = tuple(max(0, int(i.min()) - margin) for i in idx)
    stop = tuple(min(n, int(i.max()) + 1 + margin) for i, n in zip(idx, a.shape))
    return start, stop


def crop_foreground(image: Volume, label: Volume | None = None, *, threshold: float | None = None,
                    margin: int = 2) -> tuple[Volume, Volume | None]:
    """Crop ``image`` (and ``label``, same box) to the box where the image exceeds ``threshold``.

    ``threshold`` defaults to the image minimum (air around a CT, zeros around
    a skull-stripped MRI).  Returns ``(image, label or None)``; the affines
    move with the crop, so :func:`to_grid` still maps back to the file.
    """
    start, stop = foreground_box(image.array, threshold=threshold, margin=margin)
    return crop(image, start, stop), (crop(label, start, stop) if label is not None else None)


def to_grid(array: np.ndarray, from_affine: np.ndarray, to_affine: np.ndarray, to_shape, *, order: int = 0,
            fill: float = 0.0) -> np.ndarray:
    """Map ``array`` ``(D, H, W[, C])`` on the grid ``from_affine`` onto the grid ``(to_affine, to_shape)``.

    ``to_shape`` is ``(D, H, W)``.  Each target voxel centre is located in
    world coordinates and looked up in ``array`` (``order=0`` nearest for
    labels, ``1`` linear for probabilities).  The one rule for every grid
    change here (:func:`resample` too): a target centre inside the source
    *box* - the box bounded by the source voxels' outer faces, half a voxel
    beyond the first and last centres - takes a value, the nearest edge value
    in that half-voxel rim; only centres outside the box get ``fill``.  So a
    volume resampled to another spacing and mapped back keeps its border
    voxels.  Flips, axis swaps and whole-voxel shifts are exact.  Returns
    ``(*to_shape[, C])``.
    """
    array = np.asarray(array)
    squeeze = array.ndim == 3
    a4 = array[..., None] if squeeze else array
    to_shape = tuple(int(s) for s in to_shape)
    m = np.linalg.inv(np.asarray(from_affine, float)) @ np.asarray(to_affine, float)   # target ijk -> source ijk
    rounded = np.rint(m[:3, :3])
    out = []
    if np.allclose(m[:3, :3], rounded, atol=1e-6) and np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=1e-4) and \
            all(np.count_nonzero(rounded[r]) == 1 for r in range(3)):
        # a permutation with flips and an integer shift: index directly (exact, fast)
        for c in range(a4.shape[3]):
            out.append(_index_map(_to_ijk(a4[..., c]), rounded, np.rint(m[:3, 3]), to_shape[::-1], fill))
    else:
        outside = _outside_box(m, to_shape[::-1], a4.shape[2::-1])
        for c in range(a4.shape[3]):
            src = _to_ijk(a4[..., c])
            src = src.astype(np.float32) if order > 0 and not np.issubdtype(src.dtype, np.floating) else src
            # mode="nearest": coordinates in the half-voxel rim take the edge value; the box test sets the fill
            res = ndimage.affine_transform(src, m[:3, :3], m[:3, 3], output_shape=to_shape[::-1], order=order,
                                           mode="nearest", prefilter=False)
            if outside is not None:
                res[outside] = fill
            out.append(res)
    result = np.stack([_to_dhw(o)[..., 0] for o in out], axis=-1).astype(array.dtype if order == 0 else np.float32,
                                                                          copy=False)
    return result[..., 0] if squeeze else result


#: How far (in voxels) a target centre may lie beyond the source box and still count as inside it: float32
#: headers put a centre that lies on a face a hair outside.
BOX_TOLERANCE = 1e-3


def _outside_box(m: np.ndarray, out_shape, src_shape) -> np.ndarray | None:
    """Boolean ``out_shape`` (ijk) mask of the target voxels whose centre (source index ``m @ ijk``) lies
    outside the source box ``[-0.5, n - 0.5]`` per axis; None when every one is inside (checked at the
    8 corners: the map is affine)."""
    lo, hi = -0.5 - BOX_TOLERANCE, np.asarray(src_shape, float) - 0.5 + BOX_TOLERANCE
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in out_shape], indexing="ij")).reshape(3, -1)
    coords = m[:3, :3] @ corners + m[:3, 3:4]
    if np.all((coords >= lo) & (coords <= hi[:, None])):
        return None
    outside = np.zeros(out_shape, bool)
    j = np.arange(out_shape[1])[:, None]
    k = np.arange(out_shape[2])[None, :]
    for i in range(out_shape[0]):                       # one slab at a time: no full coordinate arrays in memory
        for r in range(3):
            x = m[r, 0] * i + m[r, 1] * j + m[r, 2] * k + m[r, 3]
            outside[i] |= (x < lo) | (x > hi[r])
    return outside


def _index_map(src: np.ndarray, rot: np.ndarray, shift: np.ndarray, out_shape, fill) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij", sparse=True)
    coords = [sum(int(rot[r, c]) * grids[c] for c in range(3) if rot[r, c]) + int(shift[r]) for r in range(3)]
    coords = [np.broadcast_to(c, out_shape) for c in coords]
    inside = np.ones(out_shape, bool)
    for r in range(3):
        inside &= (coords[r] >= 0) & (coords[r] < src.shape[r])
    out = np.full(out_shape, fill, dtype=src.dtype)
    out[inside] = src[tuple(c[inside] for c in coords)]
    return out


def to_source(array: np.ndarray, vol: Volume, *, order: int = 0) -> np.ndarray:
    """Map ``array`` on ``vol``'s grid back onto the grid of the file ``vol`` was read from: ``(D0, H0, W0[, C])``."""
    return to_grid(array, vol.affine, vol.source.affine, vol.source.shape[::-1], order=order)


# ----------------------------------------------------------------------------- intensities
def normalize_ct(array: np.ndarray, window=None) -> np.ndarray:
    """Hounsfield units to [0, 1] through a display window ``(center, width)`` or a preset name.

    Default (None): :data:`~Functions.data.medical_io.DEFAULT_CT_WINDOW`, the
    standard soft-tissue window, center 40 HU and width 400 HU.  Same shape, float32.
    """
    center, width = resolve_window(DEFAULT_CT_WINDOW if window is None else window)
    return apply_window(array, center, width)


def normalize_mri(array: np.ndarray, *, low: float = 0.5, high: float = 99.5, mode: str = "zscore",
                  mask: np.ndarray | None = None) -> np.ndarray:
    """MRI intensities (arbitrary units) made comparable between scans.

    Clip to the ``low``/``high`` percentiles of the voxels in ``mask``
    (default: voxels above the minimum, i.e. not the background), then
    ``mode="zscore"`` subtracts their mean and divides by their standard
    deviation, ``"minmax"`` maps the clip range to [0, 1].  Per channel when
    the last axis is channels of a ``(D, H, W, C)`` array.  Same shape, float32.
    """
    if mode not in ("zscore", "minmax"):
        raise UserError(f"mode must be 'zscore' or 'minmax', got {mode!r}")
    if not 0 <= low < high <= 100:
        raise UserError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    a = np.asarray(array, np.float32)
    if a.ndim == 4:
        return np.stack([normalize_mri(a[..., c], low=low, high=high, mode=mode, mask=mask)
                         for c in range(a.shape[-1])], axis=-1)
    sel = a[mask.astype(bool)] if mask is not None else a[a > a.min()]
    if sel.size == 0:
        sel = a.ravel()
    lo, hi = np.percentile(sel, [low, high])
    out = np.clip(a, lo, hi)
    if mode == "minmax":
        return ((out - lo) / max(float(hi - lo), 1e-8)).astype(np.float32)
    inside = np.clip(sel, lo, hi)
    return ((out - inside.mean()) / max(float(inside.std()), 1e-8)).astype(np.float32)


# ----------------------------------------------------------------------------- writing
def _dtype_for(labels: np.ndarray):
    if np.issubdtype(labels.dtype, np.floating):
        return np.float32
    top = int(labels.max(initial=0))
    return np.uint8 if labels.min(initial=0) >= 0 and top < 256 else np.int16 if top < 32768 else np.int32


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, header=None) -> Path:
    """Write ``array`` ``(D, H, W[, C])`` as NIfTI with ``affine`` (and ``header`` when given).

    The header's sform and qform are set from ``affine`` with the codes of
    ``header`` (scanner/aligned), so viewers place it exactly where the image
    is.  Refuses to overwrite an existing file.  Returns the path.
    """
    nib = _nib()
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} already exists; choose another output name or remove the file first")
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise UserError(f"{path} must end in .nii or .nii.gz")
    array = np.asarray(array)
    data = _to_ijk(array if array.ndim != 4 or array.shape[3] != 1 else array[..., 0])
    dtype = _dtype_for(array)
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.ascontiguousarray(data).astype(dtype), np.asarray(affine, float), header=hdr)
    img.set_data_dtype(dtype)
    affine = np.asarray(affine, float)
    if hdr is not None and int(hdr["sform_code"]) > 0 and np.allclose(hdr.get_sform(), affine, atol=1e-4):
        img.set_sform(hdr.get_sform(), code=int(hdr["sform_code"]))       # the source's own sform and qform,
    else:                                                                   # so every viewer's rule agrees
        img.set_sform(affine, code=int(hdr["sform_code"]) if hdr is not None and int(hdr["sform_code"]) > 0 else 1)
    if hdr is not None and int(hdr["qform_code"]) > 0 and (int(hdr["sform_code"]) > 0 or np.allclose(
            hdr.get_qform(), affine, atol=1e-4)):
        img.set_qform(hdr.get_qform(), code=int(hdr["qform_code"]))
    else:
        img.set_qform(affine, code=int(hdr["qform_code"]) if hdr is not None and int(hdr["qform_code"]) > 0 else 1)
    img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan     # labels are stored unscaled
    if hdr is None or img.header.get_xyzt_units()[0] == "unknown":
        img.header.set_xyzt_units("mm", "sec")
    if dtype != np.float32:
        img.header["cal_min"], img.header["cal_max"] = 0, float(array.max(initial=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{''.join(path.suffixes[-2:])}")
    nib.save(img, str(tmp))
    os.replace(tmp, path)
    return path


def write_prediction(path: str | os.PathLike, labels: np.ndarray, vol: Volume, *, order: int = 0) -> Path:
    """Write ``labels`` ``(D, H, W)`` made on ``vol``'s grid as NIfTI on the grid of ``vol``'s source file.

    The array is mapped back through every reorientation, resampling and crop
    (:func:`to_source`), then written with the source file's affine and
    header (a fresh header for DICOM series), so it opens aligned over the
    original image in any viewer (ITK-SNAP, 3D Slicer, FSLeyes).
    """
    labels = np.asarray(labels)
    if labels.shape[:3] != vol.shape:
        raise UserError(f"prediction of shape {labels.shape} does not match the volume grid {vol.shape}; predict "
                        "on the volume the prediction is written for")
    back = to_source(labels, vol, order=order)
    return write_nifti(path, back, vol.source.affine, vol.source.header)


# ----------------------------------------------------------------------------- data sets of volumes
@dataclass(frozen=True)
class VolumeCase:
    """One volume of a data set: ``id``, the image (NIfTI file or DICOM folder) and its label file (or None)."""

    id: str
    image: Path
    label: Path | None = None
    #: the part of the data set's own split (``"train"``/``"test"``): set when the layout gives a labelled test
    #: part (Decathlon ``imagesTs/`` with ``labelsTs/``); ``None``: no split from the layout.
    split: str | None = None


@dataclass(frozen=True)
class VolumeDataset:
    """A folder of volumes: the cases, label names ``{0: "background", 1: ...}``, modalities ``{0: "CT"}``."""

    root: Path
    cases: tuple[VolumeCase, ...]
    labels: dict
    modality: dict
    name: str = ""
    test: tuple[VolumeCase, ...] = ()
    #: one line on the layout's own split (printed by ``train``): a labelled ``imagesTs/`` is the test set, an
    #: unlabelled one (MSD's own) is not.
    split_note: str = ""

    @property
    def num_classes(self) -> int:
        """Output channels a model needs: 1 (sigmoid) for background + one structure, else one per label."""
        n = len(self.labels) if self.labels else 2
        return 1 if n <= 2 else n

    @property
    def channels(self) -> int:
        return max(1, len(self.modality))

    @property
    def labelled(self) -> list[VolumeCase]:
        """Every case with a label: the training cases, then the test cases labelled in ``labelsTs/``."""
        return [c for c in (*self.cases, *self.test) if c.label is not None]


def is_decathlon_root(folder: Path) -> bool:
    """True for a Medical Segmentation Decathlon task folder: ``dataset.json`` beside ``imagesTr/``."""
    folder = Path(folder)
    return (folder / "dataset.json").is_file() and (folder / "imagesTr").is_dir()


def _relative(root: Path, entry: str, what: str, listing: Path) -> Path:
    path = (root / str(entry)).resolve()
    if root.resolve() not in path.parents:
        raise UserError(f"{listing} lists {what} {entry!r} outside {root}; the paths must stay inside the task folder")
    return path


def read_decathlon(root: str | os.PathLike) -> VolumeDataset:
    """Read a Medical Segmentation Decathlon task folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``,
    ``imagesTs/``).

    Cases, label names and modalities come from ``dataset.json`` (keys
    ``training``, ``test``, ``labels``, ``modality``); macOS resource-fork
    files (``._hippocampus_001.nii.gz``, shipped inside the MSD tars) are
    ignored.  UserError naming the file when ``dataset.json`` is unreadable
    or lists a file that is missing.
    """
    import json

    root = Path(root)
    listing = root / "dataset.json"
    if not listing.is_file():
        raise UserError(f"{root} has no dataset.json; give a Medical Segmentation Decathlon task folder "
                        "(Task04_Hippocampus/ with dataset.json, imagesTr/, labelsTr/)")
    try:
        meta = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {listing} ({type(exc).__name__}: {exc}); the file is damaged") from None
    cases, missing = [], []
    for item in meta.get("training", []):
        image = _relative(root, item["image"], "image", listing)
        label = _relative(root, item["label"], "label", listing) if item.get("label") else None
        if Path(image).name.startswith("._"):
            continue
        for p in (image, label):
            if p is not None and not p.exists():
                missing.append(str(p.relative_to(root.resolve())))
        cases.append(VolumeCase(volume_stem(image), image, label))
    test = []
    labels_ts = root / "labelsTs"
    for item in meta.get("test", []):
        entry = item if isinstance(item, str) else item.get("image")
        image = _relative(root, entry, "image", listing)
        if not Path(image).name.startswith("._") and image.exists():
            label = labels_ts / Path(image).name
            test.append(VolumeCase(volume_stem(image), image, label if label.is_file() else None,
                                   split="test" if label.is_file() else None))
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise UserError(f"{listing} lists {len(missing)} file(s) that do not exist: {shown}; the download is "
                        "incomplete - install it again")
    if not cases:
        cases = list(_pair_folder(root))
    labelled = [c for c in test if c.label is not None]
    if labelled:
        cases = [replace(c, split="train") for c in cases]
        note = (f"imagesTs/ has labels in labelsTs/ for {len(labelled)} of {len(test)} volumes: they are the test "
                "set (official split, from the layout)")
    elif test or meta.get("test"):
        shipped = len(test) or len(meta.get("test", []))
        where = "" if test else " (listed in dataset.json, not on disk)"
        note = (f"imagesTs/ holds {shipped} volumes without labels{where} (no labelsTs/; the Decathlon's own test "
                "set is unlabelled): it is not a test set - the test split is drawn from imagesTr/")
    else:
        note = ""
    labels = {int(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    modality = {int(k): str(v) for k, v in (meta.get("modality") or {}).items()}
    return VolumeDataset(root=root, cases=tuple(cases), labels=labels, modality=modality,
                         name=str(meta.get("name", root.name)), test=tuple(test), split_note=note)


def _pair_folder(root: Path):
    images = root / "imagesTr"
    labels = root / "labelsTr"
    for p in sorted(images.iterdir()):
        if is_nifti_path(p):
            lab = labels / p.name
            yield VolumeCase(volume_stem(p), p, lab if lab.exists() else None)


def find_volumes(root: str | os.PathLike) -> VolumeDataset:
    """The volumes under ``root``: a Decathlon task folder, or ``images/`` (``imagesTr/``) + ``labels/`` folders.

    In the second layout an image ``case1.nii.gz`` pairs with the label of the
    same name; a DICOM series is a sub-folder of ``images/`` (``images/case1/``)
    whose label is ``labels/case1.nii.gz``.  Hidden and ``._*`` files are
    ignored.  UserError listing images without labels and labels without images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; give a folder of volumes")
    if is_decathlon_root(root):
        return read_decathlon(root)
    found = [d for d in sorted(root.iterdir()) if d.is_dir() and is_decathlon_root(d)]
    if len(found) == 1:
        return read_decathlon(found[0])
    names = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    img_dir = next((names[n] for n in ("imagestr", "images", "image", "imgs") if n in names), None)
    lab_dir = next((names[n] for n in ("labelstr", "labels", "label", "masks", "mask") if n in names), None)
    if img_dir is None or lab_dir is None:
        raise UserError(f"{root} holds no volumes in a known layout; use images/ + labels/ folders of .nii.gz "
                        "files (or DICOM series sub-folders), or a Decathlon task folder with dataset.json")
    labels = {volume_stem(p): p for p in lab_dir.iterdir() if is_nifti_path(p)}
    cases, lonely = [], []
    for p in sorted(img_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if not (is_nifti_path(p) or p.is_dir()):
            continue
        stem = volume_stem(p)
        if stem not in labels:
            lonely.append(f"image {p.name}")
            continue
        cases.append(VolumeCase(stem, p, labels.pop(stem)))
    lonely += [f"label {p.name}" for p in labels.values()]
    if lonely:
        raise UserError(f"{len(lonely)} volume(s) under {root} without a partner: {', '.join(lonely[:8])}; give each "
                        "image a label with the same name")
    if not cases:
        raise UserError(f"{img_dir} holds no .nii/.nii.gz volumes or DICOM series folders")
    return VolumeDataset(root=root, cases=tuple(cases), labels={}, modality={}, name=root.name)


def auto_patch(shapes, depth: int = 3, cap=MAX_AUTO_PATCH) -> tuple[int, int, int]:
    """The training patch and sliding-window tile of ``train --dims 3`` when none is given: the median volume
    shape of ``shapes`` ``[(D, H, W), ...]``, capped at ``cap``, rounded down to multiples of ``2**depth`` (at
    least one); the planner estimates memory on the same patch."""
    factor = 2 ** depth
    median = np.median(np.array(shapes), axis=0)
    return tuple(int(max(factor, (min(m, c) // factor) * factor)) for m, c in zip(median, cap))
