"""Volumes: NIfTI and DICOM series geometry, canonical orientation, resampling, round trips, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from Functions.base.errors import UserError  # noqa: E402
from Functions.data import volumes as V  # noqa: E402
from Functions.metrics.segmentation import dice  # noqa: E402

# A non-canonical affine: i runs Left (x flipped), j runs Superior, k runs Anterior (axes swapped),
# anisotropic voxels 0.8 x 3.0 x 1.5 mm, and an offset.
LSA_AFFINE = np.array([
    [-0.8, 0.0, 0.0, 40.0],
    [0.0, 0.0, 1.5, -20.0],
    [0.0, 3.0, 0.0, 10.0],
    [0.0, 0.0, 0.0, 1.0],
])


def _ellipsoid_ijk(shape=(20, 12, 16), centre=(9.0, 5.0, 7.0), radii=(6.0, 3.5, 5.0)) -> np.ndarray:
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r = sum(((g - c) / rr) ** 2 for g, c, rr in zip((i, j, k), centre, radii))
    return (r <= 1.0).astype(np.uint8)


def _write_nifti(path: Path, data: np.ndarray, affine=LSA_AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture
def lsa_case(tmp_path):
    """Image (float, ellipsoid bright + a gradient along i) and its label, written in LSA orientation."""
    label = _ellipsoid_ijk()
    i = np.arange(label.shape[0])[:, None, None]
    image = (100.0 + 2.0 * i + 300.0 * label).astype(np.float32)
    return (_write_nifti(tmp_path / "case.nii.gz", image), _write_nifti(tmp_path / "case_label.nii.gz", label),
            image, label)


# ----------------------------------------------------------------------------- NIfTI
def test_read_nifti_volume_axes_spacing_and_values(lsa_case):
    img_path, _, image, _ = lsa_case
    vol = V.read_nifti_volume(img_path)
    assert vol.array.shape == (16, 12, 20, 1) and vol.array.dtype == np.float32      # (D, H, W, C) = (k, j, i)
    assert vol.spacing == pytest.approx((1.5, 3.0, 0.8))                               # (z, y, x) = k, j, i sizes
    assert vol.orientation == "LSA"
    np.testing.assert_array_equal(vol.array[4, 3, 7, 0], image[7, 3, 4])
    np.testing.assert_allclose(vol.affine, LSA_AFFINE)


def test_to_canonical_keeps_every_voxel_at_its_world_position(lsa_case):
    img_path, _, image, _ = lsa_case
    raw = V.read_nifti_volume(img_path)
    can = V.to_canonical(raw)
    assert can.orientation == "RAS"
    assert can.shape == (12, 16, 20)                  # D = S (from j), H = A (from k), W = R (from i)
    assert can.spacing == pytest.approx((3.0, 1.5, 0.8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, h, w = (int(rng.integers(n)) for n in can.shape)
        world = can.affine @ [w, h, d, 1]
        ijk = np.rint(np.linalg.inv(LSA_AFFINE) @ world).astype(int)[:3]
        assert can.array[d, h, w, 0] == image[tuple(ijk)]
    # R increases along W, S along D
    assert can.affine[0, 0] > 0 and can.affine[2, 2] > 0 and can.affine[1, 1] > 0


def test_prediction_round_trip_lands_on_the_input_voxels(lsa_case, tmp_path):
    img_path, _, image, _ = lsa_case
    vol = V.read_volume(img_path)                                       # canonical
    pred = (vol.array[..., 0] > 250).astype(np.uint8)                   # a "prediction" made in RAS
    out = V.write_prediction(tmp_path / "pred.nii.gz", pred, vol)
    back = nib.load(str(out))
    np.testing.assert_array_equal(back.affine, nib.load(str(img_path)).affine)
    assert back.shape == image.shape
    np.testing.assert_array_equal(np.asarray(back.dataobj), (image > 250).astype(np.uint8))
    assert back.get_data_dtype() == np.uint8
    assert int(back.header["sform_code"]) > 0 and int(back.header["qform_code"]) > 0
    with pytest.raises(UserError, match="already exists"):
        V.write_prediction(tmp_path / "pred.nii.gz", pred, vol)


def test_round_trip_through_resampling_and_cropping(lsa_case, tmp_path):
    img_path, lab_path, _, label = lsa_case
    image, lab = V.read_case(img_path, lab_path, spacing=(1.0, 1.0, 1.0))
    assert image.spacing == pytest.approx((1.0, 1.0, 1.0), rel=0.06)
    assert lab.array.dtype == np.uint8 and set(np.unique(lab.array)) == {0, 1}
    # physical size is kept: 12 slices x 3 mm -> 36, 16 x 1.5 -> 24, 20 x 0.8 -> 16
    assert image.shape == (36, 24, 16) and lab.shape == image.shape
    image_c, lab_c = V.crop_foreground(image, lab, threshold=250, margin=1)
    assert lab_c.shape < lab.shape and lab_c.array.sum() == lab.array.sum()
    out = V.write_prediction(tmp_path / "pred.nii.gz", lab_c.array[..., 0], lab_c)
    back = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(nib.load(str(out)).affine, nib.load(str(img_path)).affine)
    assert back.shape == label.shape
    assert dice(label, back) > 0.95                           # nearest-neighbour twice: a few edge voxels move


def test_resample_hand_computed_affine_and_values():
    arr = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * np.ones((4, 2, 2, 1), np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])                    # z spacing 2 mm (k = D axis)
    src = V.Source(shape=(2, 2, 4), affine=affine)
    vol = V.Volume(arr, V.spacing_of(affine), affine, src)
    up = V.resample(vol, (1.0, 1.0, 1.0))
    assert up.shape == (8, 2, 2)
    # grid_mode: new voxel centres at old coordinates -0.25, 0.25, 0.75, ... (edge-clamped at the ends)
    np.testing.assert_allclose(up.array[:, 0, 0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
    assert up.spacing == pytest.approx((1.0, 1.0, 1.0))
    np.testing.assert_allclose(up.affine @ [0, 0, 0, 1], [0, 0, -0.5, 1])      # centre of the first new voxel
    lab = V.resample(vol.with_array(arr.astype(np.uint8)), (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(lab.array[:, 0, 0, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    assert lab.array.dtype == np.uint8
    with pytest.raises(UserError, match="spacing"):
        V.resample(vol, (1.0, 0.0, 1.0))


def test_to_grid_is_exact_for_flips_and_fills_outside():
    a = np.arange(24).reshape(2, 3, 4)
    flip_w = np.array([[-1.0, 0, 0, 3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    out = V.to_grid(a, flip_w, np.eye(4), (2, 3, 4))
    np.testing.assert_array_equal(out, a[:, :, ::-1])
    shifted = V.to_grid(a, np.eye(4), np.diag([1.0, 1, 1, 1]) @ _translate(1, 0, 0), (2, 3, 4))
    np.testing.assert_array_equal(shifted[:, :, :3], a[:, :, 1:])
    np.testing.assert_array_equal(shifted[:, :, 3], 0)


def _translate(x, y, z):
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def test_intensity_normalisation_hand_computed():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_allclose(V.normalize_ct(hu), [0.0, 0.0, 0.5, 1.0, 1.0])          # abdomen 40 / 400
    np.testing.assert_allclose(V.normalize_ct(hu, "lung")[1], (-160 + 1350) / 1500)
    mri = np.concatenate([np.zeros(10), np.arange(1, 101, dtype=float)])
    mm = V.normalize_mri(mri, low=0, high=100, mode="minmax")
    assert mm[0] == 0 and mm[-1] == 1 and mm[10] == 0
    z = V.normalize_mri(mri, low=0, high=100)
    fg = z[10:]
    assert abs(fg.mean()) < 1e-5 and abs(fg.std() - 1) < 1e-5
    clipped = V.normalize_mri(mri, low=10, high=90, mode="minmax")
    np.testing.assert_allclose(clipped[[10, 11, -1]], [0, 0, 1])


def test_one_ct_window_default_and_one_convention_center_width():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from Functions.inference.volumes import normalize
    from Functions.viz.volumes import plot_planes

    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]).reshape(5, 1, 1, 1)
    # training and prediction (inference.normalize) use the same soft-tissue default as normalize_ct: 40 / 400
    np.testing.assert_allclose(normalize(hu, "ct").ravel(), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(normalize(hu, "ct", (40, 400)), normalize(hu, "ct"))
    # plot_planes reads window as (center, width) too: 50 / 500 shows -200 HU black and 300 HU white
    volume = np.linspace(-1000, 1000, 6 * 7 * 8).reshape(6, 7, 8)
    fig = plot_planes(volume, window=(50, 500))
    assert all(ax.images[0].get_clim() == (-200, 300) for ax in fig.axes[:3])
    plt.close(fig)
    fig = plot_planes(volume, window="brain")                           # a preset: center 40, width 80
    assert fig.axes[0].images[0].get_clim() == (0, 80)
    plt.close(fig)


def test_four_d_nifti_is_one_clear_error(tmp_path):
    path = _write_nifti(tmp_path / "fourd.nii.gz", np.zeros((4, 5, 6, 2), np.float32), np.eye(4))
    with pytest.raises(UserError, match=r"fourd\.nii\.gz holds a 4-D array") as err:
        V.read_volume(path)
    assert "\n" not in str(err.value)
    vol = V.read_volume(path, channels=True)
    assert vol.array.shape == (6, 5, 4, 2)
    with pytest.raises(UserError, match="4-D"):
        V.read_volume(path, label=True, channels=True)


def test_label_with_other_shape_or_affine_names_the_label(tmp_path, lsa_case):
    img_path, _, image, label = lsa_case
    bad_shape = _write_nifti(tmp_path / "short_label.nii.gz", label[:, :, :-1])
    with pytest.raises(UserError, match=r"short_label\.nii\.gz has shape"):
        V.read_case(img_path, bad_shape)
    bad_affine = _write_nifti(tmp_path / "moved_label.nii.gz", label, LSA_AFFINE @ _translate(0, 0, 2))
    with pytest.raises(UserError, match=r"moved_label\.nii\.gz and image .* different voxel-to-world"):
        V.read_case(img_path, bad_affine)
    with pytest.raises(UserError, match="does not exist"):
        V.read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="broken.nii.gz"):
        V.read_volume(tmp_path / "broken.nii.gz")


# ----------------------------------------------------------------------------- DICOM series
def _write_series(folder: Path, stored: np.ndarray, *, z0=-50.0, dz=2.5, spacing=(0.7, 0.9), slope=2.0,
                  intercept=-1024.0, orientation=(1, 0, 0, 0, 1, 0), series_uid=None, order=None,
                  tags=None) -> list[Path]:
    """One DICOM file per slice of ``stored`` ``(D, H, W)`` uint16, positions z0 + d*dz along the normal.

    Files are written in ``order`` (default reversed) with unrelated names, so sorting by name is wrong.
    ``tags``: header values to set (None: delete the tag), e.g. a blank ``PatientID``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    uid = series_uid or generate_uid()
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    paths = []
    order = list(range(len(stored)))[::-1] if order is None else order
    for n, d in enumerate(order):
        ds = template.copy()
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(stored[d]).astype(np.uint16).tobytes()
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in (np.array([10.0, -20.0, 0.0]) + normal * (z0 + d * dz))]
        ds.SliceThickness = 5.0                                    # deliberately not the spacing
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        for tag, value in (tags or {}).items():             # None deletes the tag
            if value is None:
                if tag in ds:
                    delattr(ds, tag)
            else:
                setattr(ds, tag, value)
        p = folder / f"IM{n * 7 % 13:04d}"
        ds.save_as(p)
        paths.append(p)
    return paths


def test_dicom_series_sorted_by_position_with_spacing_rescale_and_affine(tmp_path):
    stored = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5) * 10
    _write_series(tmp_path / "ct", stored)
    (tmp_path / "ct" / "._IM0000").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    (tmp_path / "ct" / "notes.txt").write_text("not dicom")
    vol = V.read_dicom_series(tmp_path / "ct")
    assert vol.array.shape == (4, 3, 5, 1)
    np.testing.assert_array_equal(vol.array[..., 0], stored.astype(np.float32) * 2 - 1024)
    assert vol.spacing == pytest.approx((2.5, 0.7, 0.9))            # slice spacing from positions, not thickness
    # voxel (d, h, w) = (1, 2, 3): LPS = IPP0 + 3 * 0.9 * row + 2 * 0.7 * col + 1 * 2.5 * normal; RAS flips x, y
    lps = np.array([10.0, -20.0, -50.0]) + [3 * 0.9, 2 * 0.7, 2.5]
    np.testing.assert_allclose(vol.affine @ [3, 2, 1, 1], [-lps[0], -lps[1], lps[2], 1.0])
    assert vol.orientation == "LPS"
    can = V.read_volume(tmp_path / "ct")
    assert can.orientation == "RAS"


def test_dicom_series_prediction_written_as_aligned_nifti(tmp_path):
    stored = np.zeros((5, 6, 4), np.uint16)
    stored[2, 1, 3] = 1000                                          # one bright voxel
    # oblique-free sagittal series: rows along y, columns along -z; normal = x
    _write_series(tmp_path / "sag", stored, orientation=(0, 1, 0, 0, 0, -1), slope=1.0, intercept=0.0,
                  order=[3, 0, 4, 1, 2])
    vol = V.read_volume(tmp_path / "sag")
    pred = (vol.array[..., 0] > 500).astype(np.uint8)
    assert pred.sum() == 1
    out = V.write_prediction(tmp_path / "sag_pred.nii.gz", pred, vol)
    img = nib.load(str(out))
    data = np.asarray(img.dataobj)
    (i, j, k), = np.argwhere(data == 1)
    assert (k, j, i) == (2, 1, 3)                                   # same voxel as in the DICOM series
    world = img.affine @ [i, j, k, 1]
    ds = pydicom.dcmread(sorted((tmp_path / "sag").iterdir())[0])   # any slice: same orientation
    row, col = np.array([0, 1.0, 0]), np.array([0, 0, -1.0])
    normal = np.cross(row, col)
    lps = np.array([10.0, -20.0, 0.0]) + normal * (-50.0 + 2 * 2.5) + 3 * 0.9 * row + 1 * 0.7 * col
    np.testing.assert_allclose(world[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)
    assert ds.Modality == "CT"


def test_dicom_folder_mixing_two_series_is_one_clear_error(tmp_path):
    stored = np.ones((3, 4, 4), np.uint16)
    _write_series(tmp_path / "mixed", stored[:2], series_uid="1.2.3.4")
    _write_series(tmp_path / "other", stored[:1], series_uid="1.2.3.5", z0=0.0)
    for p in (tmp_path / "other").iterdir():
        p.rename(tmp_path / "mixed" / f"X{p.name}")
    with pytest.raises(UserError, match=r"mixed mixes 2 series \(1\.2\.3\.4: 2 file\(s\), 1\.2\.3\.5: 1") as err:
        V.read_volume(tmp_path / "mixed")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no DICOM image slices"):
        V.read_volume(tmp_path / "empty")


# ----------------------------------------------------------------------------- DICOM groups and several series
def test_dicom_group_is_patient_else_study_else_series():
    from pydicom.dataset import Dataset

    from Functions.data.medical_io import dicom_group

    ds = Dataset()
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P7", "1.2.9", "1.2.9.1"
    assert dicom_group(ds) == "patient:P7"
    ds.PatientID = "  "                                      # blank (anonymised): the study
    assert dicom_group(ds) == "study:1.2.9"
    del ds.PatientID
    ds.StudyInstanceUID = ""
    assert dicom_group(ds) == "series:1.2.9.1"
    del ds.SeriesInstanceUID
    assert dicom_group(ds) is None


def test_dicom_slices_with_blank_patient_id_stay_together_by_series(tmp_path):
    from Functions.data.discovery import find_samples
    from Functions.data.imaging import write_mask

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stored = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    for scan in ("a", "b"):                                 # two scans, PatientID blanked, no StudyInstanceUID
        files = _write_series(tmp_path / scan, stored, tags={"PatientID": "", "StudyInstanceUID": None})
        for n, f in enumerate(files):
            f.rename(root / "images" / f"{scan}{n}.dcm")
            write_mask(root / "masks" / f"{scan}{n}.png", (np.eye(8) * 255).astype(np.uint8))
    samples = find_samples(root)
    groups = {s.id: s.group for s in samples}
    assert len(samples) == 8 and all(g and g.startswith("series:") for g in groups.values())
    assert len({groups[f"a{n}"] for n in range(4)}) == 1 and len({groups[f"b{n}"] for n in range(4)}) == 1
    assert groups["a0"] != groups["b0"]                     # before: no group at all, slices split one by one


def test_volume_groups_fall_back_and_one_dominant_group_is_named(tmp_path, caplog):
    import logging

    from Functions.data.splits import split_indices

    stored = np.ones((4, 8, 8), np.uint16)
    blank = _write_series(tmp_path / "blank", stored, tags={"PatientID": "", "StudyInstanceUID": "1.2.3.77"})
    assert V.volume_group(tmp_path / "blank") == "study:1.2.3.77" and blank
    _write_series(tmp_path / "bare", stored, series_uid="1.2.3.88", tags={"PatientID": None, "StudyInstanceUID": None})
    assert V.volume_group(tmp_path / "bare") == "series:1.2.3.88"
    assert V.volume_group(tmp_path / "nowhere.nii.gz") is None
    # an anonymiser's constant ID across studies: one group; the split warns and names it
    for k in range(5):
        _write_series(tmp_path / f"anon{k}", stored, tags={"PatientID": "ANON", "StudyInstanceUID": f"1.2.{k}"})
    groups = [V.volume_group(tmp_path / f"anon{k}") for k in range(5)] + ["volume:x", "volume:y"]
    assert groups[:5] == ["patient:ANON"] * 5
    with caplog.at_level(logging.WARNING, logger="Functions"):
        train, val, test = split_indices(7, 0.2, 0.2, seed=0, groups=groups)
    assert "one group (patient:ANON) holds 5 of 7 samples" in caplog.text
    assert set(range(5)) <= set(train) or set(range(5)) <= set(val) or set(range(5)) <= set(test)


def test_a_folder_holding_several_series_is_read_series_by_series(tmp_path):
    from Functions.inference.volumes import list_volumes, output_name

    study = tmp_path / "study"
    _write_series(study, np.full((4, 8, 8), 100, np.uint16), series_uid="1.2.3.2", dz=2.5, spacing=(0.7, 0.7),
                  tags={"SeriesNumber": 2})
    _write_series(tmp_path / "t2", np.full((3, 6, 5), 300, np.uint16), series_uid="1.2.3.1", dz=4.0, z0=-10.0,
                  spacing=(0.9, 1.1), orientation=(0, 1, 0, 0, 0, -1), tags={"SeriesNumber": 1})
    for p in (tmp_path / "t2").iterdir():
        p.rename(study / f"T2_{p.name}")
    refs = list_volumes(study)
    assert [(r.uid, r.name) for r in refs] == [("1.2.3.1", "study_series1"), ("1.2.3.2", "study_series2")]
    assert [output_name(r) for r in refs] == ["study_series1.nii.gz", "study_series2.nii.gz"]
    first, second = (V.read_volume(r, canonical=False) for r in refs)
    assert first.shape == (3, 6, 5) and first.spacing == pytest.approx((4.0, 0.9, 1.1)) and first.orientation != "LPS"
    assert second.shape == (4, 8, 8) and second.spacing == pytest.approx((2.5, 0.7, 0.7))
    assert np.all(first.array == 300 * 2 - 1024) and np.all(second.array == 100 * 2 - 1024)   # nothing merged
    assert V.volume_group(refs[0]) == V.volume_group(refs[1]) == "patient:" + str(
        pydicom.dcmread(next(study.iterdir())).PatientID)                                       # one patient
    outer = tmp_path / "two"                                # sub-folders: one volume each, as before
    (study).rename(tmp_path / "two_study")
    outer.mkdir()
    (tmp_path / "two_study").rename(outer / "s")
    assert [getattr(v, "name", None) for v in list_volumes(outer)] == ["s_series1", "s_series2"]


# ----------------------------------------------------------------------------- Decathlon layout and registry
def _make_msd(root: Path, task="Task04_Hippocampus", n=3) -> Path:
    """A tiny copy of an MSD task folder: dataset.json, imagesTr/labelsTr/imagesTs, and macOS ._ files."""
    import json

    task_dir = root / task
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task_dir / sub).mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    training = []
    for i in range(n):
        name = f"hippocampus_{i + 1:03d}.nii.gz"
        lab = np.zeros((8, 10, 6), np.uint8)
        lab[2:5, 3:7, 1:4] = 1
        lab[5:7, 3:7, 1:4] = 2
        _write_nifti(task_dir / "imagesTr" / name, (50 + 40 * lab + i).astype(np.float32), affine)
        _write_nifti(task_dir / "labelsTr" / name, lab, affine)
        for sub in ("imagesTr", "labelsTr"):
            (task_dir / sub / f"._{name}").write_bytes(b"\x00\x05\x16\x07Mac OS X resource fork")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    _write_nifti(task_dir / "imagesTs" / "hippocampus_100.nii.gz", np.ones((8, 10, 6), np.float32), affine)
    (task_dir / "imagesTs" / "._hippocampus_100.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    meta = {"name": "Hippocampus", "tensorImageSize": "3D", "modality": {"0": "MRI"},
            "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "numTraining": n, "numTest": 1,
            "training": training, "test": ["./imagesTs/hippocampus_100.nii.gz"]}
    (task_dir / "dataset.json").write_text(json.dumps(meta))
    (root / f"._{task}").write_bytes(b"\x00\x05\x16\x07")
    return task_dir


def test_read_decathlon_labels_modality_and_resource_forks(tmp_path):
    task = _make_msd(tmp_path)
    ds = V.read_decathlon(task)
    assert [c.id for c in ds.cases] == ["hippocampus_001", "hippocampus_002", "hippocampus_003"]
    assert ds.labels == {0: "background", 1: "Anterior", 2: "Posterior"} and ds.modality == {0: "MRI"}
    assert ds.num_classes == 3 and ds.channels == 1
    assert [c.id for c in ds.test] == ["hippocampus_100"]
    assert all(not c.image.name.startswith("._") for c in ds.cases + ds.test)
    assert V.find_volumes(tmp_path).root == task                      # found one level down
    (task / "labelsTr" / "hippocampus_002.nii.gz").unlink()
    with pytest.raises(UserError, match=r"dataset\.json lists 1 file\(s\) that do not exist: labelsTr/hippo"):
        V.read_decathlon(task)


def test_msd_registry_entries_install_from_the_tar(tmp_path):
    import tarfile

    from Functions.data import datasets

    for name, folder in (("msd-hippocampus", "Task04_Hippocampus"), ("msd-spleen", "Task09_Spleen")):
        info = datasets.get(name)
        (remote,) = info.files
        assert remote.url == f"https://msd-for-monai.s3-us-west-2.amazonaws.com/{folder}.tar"
        assert len(remote.md5) == 32 and info.automatic
    assert datasets.get("Task04_Hippocampus").name == "msd-hippocampus"
    src = tmp_path / "src"
    _make_msd(src)
    tar = tmp_path / "Task04_Hippocampus.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(src / "Task04_Hippocampus", arcname="Task04_Hippocampus")
        tf.add(src / "._Task04_Hippocampus", arcname="._Task04_Hippocampus")
    data = tmp_path / "data"
    datasets.install("msd-hippocampus", archives=[tar], data_dir=data, log=lambda m: None)
    root = datasets.locate("msd-hippocampus", data)
    assert root.name == "Task04_Hippocampus"
    ds = V.find_volumes(root)
    assert len(ds.cases) == 3 and ds.modality == {0: "MRI"}
    assert len(datasets.load("msd-hippocampus", data_dir=data)) == 3 * 6      # 2-D: one sample per slice


def test_prediction_keeps_a_source_whose_qform_differs_from_its_sform(tmp_path):
    """Viewers differ in which of the two they use: the written file must carry both as the scan had them."""
    data = np.zeros((6, 5, 4), np.float32)
    data[1, 2, 3] = 1
    img = nib.Nifti1Image(data, LSA_AFFINE)
    qform = LSA_AFFINE.copy()
    qform[:3, 3] += (0.5, 0, 0)                          # a stale qform, as some converters leave
    img.set_qform(qform, code=1)
    img.set_sform(LSA_AFFINE, code=2)
    nib.save(img, str(tmp_path / "two.nii.gz"))
    vol = V.read_volume(tmp_path / "two.nii.gz")
    out = nib.load(str(V.write_prediction(tmp_path / "p.nii.gz", (vol.array[..., 0] > 0).astype(np.uint8), vol)))
    src = nib.load(str(tmp_path / "two.nii.gz"))
    np.testing.assert_allclose(out.header.get_sform(), src.header.get_sform())
    np.testing.assert_allclose(out.header.get_qform(), src.header.get_qform())
    assert int(out.header["sform_code"]) == 2 and int(out.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.argwhere(np.asarray(out.dataobj) == 1), [[1, 2, 3]])


# ----------------------------------------------------------------------------- the grid-mapping rule
def _volume(array_dhw: np.ndarray, affine: np.ndarray) -> V.Volume:
    src = V.Source(shape=array_dhw.shape[::-1], affine=affine.copy())
    return V.Volume(array=array_dhw[..., None], spacing=V.spacing_of(affine), affine=affine, source=src)


def _affine(spacing_zyx, orientation: str) -> np.ndarray:
    """A voxel-to-world affine with ``spacing_zyx`` (per array axis D, H, W) and axis codes ``orientation``
    for (i, j, k) = (W, H, D): e.g. RAS, LPS (DICOM), or permuted axes such as SLA / PIR."""
    world = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, (code, size) in enumerate(zip(orientation, spacing_zyx[::-1])):
        row, sign = world[code]
        affine[row, axis] = sign * size
    affine[:3, 3] = [12.3, -45.6, 7.8]
    return affine


def _faces_labels(shape) -> np.ndarray:
    """Labels 1 and 2 fill the volume, both touching five of its six faces; the one internal boundary lies
    across H."""
    lab = np.ones(shape, np.uint8)
    lab[:, shape[1] // 2:, :] = 2
    return lab


ROUND_TRIPS = [                       # (source spacing z y x, target spacing)
    ((2.5, 0.98, 0.98), (1.0, 1.0, 1.0)),
    ((2.5, 0.98, 0.98), (2.0, 2.0, 2.0)),
    ((0.98, 0.98, 0.98), (1.0, 1.0, 1.0)),
    ((0.98, 0.98, 0.98), (2.0, 2.0, 2.0)),
    ((3.0, 0.7, 1.3), (1.7, 1.1, 0.9)),         # anisotropic, up in some axes and down in others
]


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "SLA", "PIR"])
@pytest.mark.parametrize("spacing,target", ROUND_TRIPS)
def test_resampled_labels_map_back_without_losing_the_border(spacing, target, orientation):
    shape = (30, 40, 40)
    lab = _faces_labels(shape)
    vol = _volume(lab, _affine(spacing, orientation))
    moved = V.resample(V.to_canonical(vol), target, order=0)
    back = V.to_grid(moved.array, moved.affine, vol.source.affine, shape, order=0, fill=255)[..., 0]
    assert not np.any(back == 255), "a voxel centre inside the resampled box was treated as outside"
    # away from the one internal boundary (more than one coarse voxel), every voxel keeps its label,
    # including every voxel on the six faces (the old constant-mode lookup lost up to 13% of them)
    from scipy import ndimage

    reach = max(max(spacing), max(target))
    for value in (1, 2):
        far = ndimage.distance_transform_edt(lab == value, sampling=spacing) > reach + 1e-6
        assert np.array_equal(back[far], lab[far]), f"label {value} lost {np.count_nonzero(back[far] != value)}"
    assert np.count_nonzero(back == 1) > 0.4 * lab.size and np.count_nonzero(back == 2) > 0.4 * lab.size
    probs = V.to_grid(moved.array.astype(np.float32), moved.affine, vol.source.affine, shape, order=1, fill=-1.0)
    assert probs.min() >= 1.0                  # linear (probabilities): the rim takes the edge value, never the fill


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "SLA"])
@pytest.mark.parametrize("spacing,target", [((2.5, 0.98, 0.98), (0.9, 0.5, 0.5)), ((2.0, 2.0, 2.0), (1.0, 1.0, 1.0)),
                                            ((1.3, 0.9, 3.1), (0.85, 0.45, 0.7))])
def test_upsampled_random_labels_round_trip_exactly(spacing, target, orientation):
    # every target voxel is smaller than a source voxel along every axis (whatever the reorientation), so the
    # resampled voxel nearest a source centre lies inside that source voxel: the nearest-neighbour round trip
    # must give back the very same labels
    lab = np.random.default_rng(7).integers(0, 4, (9, 11, 10)).astype(np.uint8)
    vol = _volume(lab, _affine(spacing, orientation))
    moved = V.resample(V.to_canonical(vol), target, order=0)
    assert moved.array.size > lab.size
    np.testing.assert_array_equal(V.to_source(moved.array, moved, order=0)[..., 0], lab)


def test_downsampled_random_labels_fill_nothing_inside_the_box():
    lab = np.random.default_rng(3).integers(1, 5, (30, 40, 40)).astype(np.uint8)
    vol = _volume(lab, _affine((0.98, 0.98, 0.98), "LPS"))
    moved = V.resample(V.to_canonical(vol), 2.0, order=0)
    back = V.to_grid(moved.array, moved.affine, vol.affine, lab.shape, order=0, fill=0)[..., 0]
    assert np.all(back > 0)                    # labels 1..4 everywhere: no voxel became the fill
    counts = np.bincount(back.ravel(), minlength=5)[1:]
    assert np.all(counts > 0.1 * lab.size)


@pytest.mark.parametrize("shift,expected", [
    (0.3, [10, 20, 30, 40, 50]),              # last centre at 4.3: in the rim, nearest edge
    (0.45, [10, 20, 30, 40, 50]),             # last centre at 4.45: in the rim
    (0.55, [20, 30, 40, 50, -1]),             # last centre at 4.55: just outside the box (> 4.5): fill
    (-0.45, [10, 20, 30, 40, 50]),            # first centre at -0.45: in the rim
    (0.7, [20, 30, 40, 50, -1]),              # last centre at 4.7: outside the box (> 4.5): fill
    (-0.7, [-1, 10, 20, 30, 40]),             # first centre at -0.7: outside: fill
])
def test_off_grid_shift_keeps_the_rim_and_fills_only_outside(shift, expected):
    values = np.array([10, 20, 30, 40, 50], np.float32)
    src = np.broadcast_to(values[None, None, :], (3, 4, 5)).copy()           # varies along W (= i)
    src_affine = np.diag([0.8, 1.2, 2.0, 1.0])
    to_affine = src_affine.copy()
    to_affine[0, 3] = shift * 0.8                                             # shift along i, in mm
    for order in (0, 1):
        out = V.to_grid(src, src_affine, to_affine, src.shape, order=order, fill=-1)
        if order == 0:
            np.testing.assert_array_equal(out[1, 2], expected)
        else:                                  # linear: inside the centres interpolated, the rim the edge value
            lin = np.interp(np.arange(5) + shift, np.arange(5), values)
            lin[np.array(expected) == -1] = -1
            np.testing.assert_allclose(out[1, 2], lin, atol=1e-5)
