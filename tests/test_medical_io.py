"""DICOM (pydicom test files) and NIfTI (written here with nibabel): values, spacing, pairing, discovery."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from Functions.data import medical_io as mio  # noqa: E402
from Functions.data.discovery import find_samples, load_sample  # noqa: E402
from Functions.base.errors import UserError  # noqa: E402
from Functions.metrics.segmentation import hausdorff_distance  # noqa: E402


def _ct_small():
    return pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))


def _multiframe_ct(path: Path, offsets=(0, 1, 2), shared_rescale=None) -> np.ndarray:
    """CT_small turned into an n-frame file (frame k = stored + offsets[k]); returns the stored frames."""
    ds = _ct_small()
    frames = np.stack([ds.pixel_array + o for o in offsets]).astype(ds.pixel_array.dtype)
    ds.NumberOfFrames = len(offsets)
    ds.PixelData = frames.tobytes()
    if shared_rescale is not None:
        del ds.RescaleSlope, ds.RescaleIntercept
        pvt, pm, group = Dataset(), Dataset(), Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = shared_rescale
        pm.PixelSpacing = [0.5, 0.25]
        del ds.PixelSpacing
        group.PixelValueTransformationSequence = Sequence([pvt])
        group.PixelMeasuresSequence = Sequence([pm])
        ds.SharedFunctionalGroupsSequence = Sequence([group])
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return frames


# ----------------------------------------------------------------------------- windowing
def test_apply_window_hand_computed():
    hu = np.array([-1000.0, 0.0, 40.0, 60.0, 80.0, 3000.0])
    out = mio.apply_window(hu, center=40, width=80)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    assert out.dtype == np.float32
    assert mio.resolve_window("lung") == (-600.0, 1500.0)
    assert mio.resolve_window((50, 350)) == (50.0, 350.0)
    with pytest.raises(ValueError, match="unknown window"):
        mio.resolve_window("liverish")
    with pytest.raises(ValueError, match="positive"):
        mio.apply_window(hu, 0, 0)


def test_file_stem_handles_double_extensions():
    assert mio.file_stem("a/case1.nii.gz") == "case1"
    assert mio.file_stem("x.NII") == "x"
    assert mio.file_stem("ct.dcm") == "ct"
    assert mio.file_stem("m.png") == "m"
    assert mio.is_medical_file("v.nii.gz") and not mio.is_medical_file("._v.nii.gz")


# ----------------------------------------------------------------------------- DICOM
def test_read_dicom_ct_small_in_hounsfield_units():
    ds = _ct_small()
    hu, spacing = mio.read_dicom(get_testdata_file("CT_small.dcm", download=False))
    assert hu.shape == (128, 128) and hu.dtype == np.float32
    np.testing.assert_array_equal(hu, ds.pixel_array.astype(np.float32) - 1024.0)  # slope 1, intercept -1024
    assert spacing == pytest.approx((0.661468, 0.661468))
    windowed, _ = mio.read_dicom(get_testdata_file("CT_small.dcm", download=False), window="brain")
    np.testing.assert_allclose(windowed, mio.apply_window(hu, 40, 80))
    assert windowed.min() >= 0 and windowed.max() <= 1


def test_read_dicom_multiframe_and_functional_group_rescale(tmp_path):
    stored = _multiframe_ct(tmp_path / "mf.dcm")
    hu, spacing = mio.read_dicom(tmp_path / "mf.dcm")
    assert hu.shape == (3, 128, 128)
    np.testing.assert_array_equal(hu[2], stored[2].astype(np.float32) - 1024)
    np.testing.assert_array_equal(mio.read_dicom(tmp_path / "mf.dcm", frame=1).pixels, hu[1])
    assert mio.dicom_frames(tmp_path / "mf.dcm") == 3
    with pytest.raises(UserError, match="frame 3"):
        mio.read_dicom(tmp_path / "mf.dcm", frame=3)
    # enhanced-style: rescale and spacing only in the shared functional groups
    stored = _multiframe_ct(tmp_path / "enh.dcm", shared_rescale=(2.0, -1000.0))
    hu, spacing = mio.read_dicom(tmp_path / "enh.dcm")
    np.testing.assert_array_equal(hu[0], stored[0].astype(np.float32) * 2 - 1000)
    assert spacing == (0.5, 0.25)


def test_read_dicom_shipped_multiframe_and_monochrome1(tmp_path):
    dose, spacing = mio.read_dicom(get_testdata_file("rtdose.dcm", download=False))
    assert dose.shape == (15, 10, 10) and spacing == (10.0, 10.0)
    ds = _ct_small()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    inv, _ = mio.read_dicom(tmp_path / "m1.dcm")
    hu = ds.pixel_array.astype(np.float32) - 1024
    np.testing.assert_array_equal(inv, hu.max() + hu.min() - hu)


def test_read_dicom_errors_are_user_errors(tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(UserError, match="bad.dcm"):
        mio.read_dicom(tmp_path / "bad.dcm")
    with pytest.raises(UserError, match="does not exist"):
        mio.read_dicom(tmp_path / "missing.dcm")


def test_find_samples_pairs_dicom_with_png_and_multiframe_dicom_masks(tmp_path):
    ds = _ct_small()
    (tmp_path / "images").mkdir()
    ds.save_as(tmp_path / "images" / "ct.dcm")
    png = np.zeros((128, 128), np.uint8)
    png[10:20, 30:50] = 255
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "ct.png"), png)
    _multiframe_ct(tmp_path / "images" / "mf.dcm")
    # a 3-frame mask DICOM: frame k marks rows k*10 .. k*10+4
    m = _ct_small()
    frames = np.zeros((3, 128, 128), np.int16)
    for k in range(3):
        frames[k, k * 10:k * 10 + 5, :] = 1
    m.NumberOfFrames = 3
    m.PixelData = frames.tobytes()
    m.save_as(tmp_path / "masks" / "mf.dcm")

    samples = find_samples(tmp_path)
    assert [(s.id, s.kind, s.index) for s in samples] == [
        ("ct", "dicom", None), ("mf_f000", "dicom", 0), ("mf_f001", "dicom", 1), ("mf_f002", "dicom", 2)]
    assert samples[0].spacing == pytest.approx((0.661468, 0.661468))
    image, mask = load_sample(samples[0])
    assert image.shape == (128, 128, 1) and image.dtype == np.float32
    assert image.min() < 0  # Hounsfield units, not stored values
    assert mask.sum() == 200 and mask[15, 40] == 1
    _, mask2 = load_sample(samples[3])
    assert mask2[20:25].all() and mask2.sum() == 5 * 128


def test_multiframe_image_with_single_png_mask_is_refused(tmp_path):
    _multiframe_ct(tmp_path / "images" / "mf.dcm")
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "mf.png"), np.zeros((128, 128), np.uint8))
    with pytest.raises(UserError, match="3 frames"):
        find_samples(tmp_path)


# ----------------------------------------------------------------------------- NIfTI
def _write_nifti(path: Path, data: np.ndarray, zooms=(0.8, 0.9, 2.5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag(list(zooms) + [1.0])), str(path))


def _volume_pair():
    vol = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) - 50
    seg = np.zeros((6, 5, 4), np.uint8)
    seg[1:3, 1:4, 1] = 1
    seg[2:5, 0:2, 3] = 2
    return vol, seg


def test_read_nifti_axis_and_spacing(tmp_path):
    vol, _ = _volume_pair()
    _write_nifti(tmp_path / "v.nii.gz", vol)
    pixels, spacing = mio.read_nifti(tmp_path / "v.nii.gz")
    assert pixels.shape == (4, 6, 5) and spacing == pytest.approx((0.8, 0.9))
    np.testing.assert_array_equal(pixels[3], vol[:, :, 3])
    pixels0, spacing0 = mio.read_nifti(tmp_path / "v.nii.gz", axis=0)
    assert pixels0.shape == (6, 5, 4) and spacing0 == pytest.approx((0.9, 2.5))
    with pytest.raises(ValueError, match="axis"):
        mio.read_nifti(tmp_path / "v.nii.gz", axis=3)


def test_nifti_slices_spacing_skip_empty_and_alignment(tmp_path):
    vol, seg = _volume_pair()
    _write_nifti(tmp_path / "img.nii.gz", vol)
    _write_nifti(tmp_path / "seg.nii.gz", seg)
    samples = mio.nifti_slices(tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz")
    assert [s.index for s in samples] == [0, 1, 2, 3]
    assert samples[1].id == "img_z001" and samples[1].kind == "nifti"
    assert samples[1].spacing == pytest.approx((0.8, 0.9))
    kept = mio.nifti_slices(tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz", skip_empty=True)
    assert [s.index for s in kept] == [1, 3]
    image, mask = load_sample(kept[1])
    np.testing.assert_array_equal(image[..., 0], vol[:, :, 3])
    np.testing.assert_array_equal(mask, seg[:, :, 3])  # label values kept (2)
    along0 = mio.nifti_slices(tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz", axis=0)
    assert len(along0) == 6 and along0[2].kind == "nifti_axis0" and along0[2].spacing == pytest.approx((0.9, 2.5))
    np.testing.assert_array_equal(load_sample(along0[2])[1], seg[2])
    _write_nifti(tmp_path / "small.nii.gz", seg[:, :, :3])
    with pytest.raises(UserError, match="aligned"):
        mio.nifti_slices(tmp_path / "img.nii.gz", tmp_path / "small.nii.gz")
    _write_nifti(tmp_path / "shifted.nii.gz", seg, zooms=(1.0, 1.0, 1.0))
    with pytest.raises(UserError, match="affine"):
        mio.nifti_slices(tmp_path / "img.nii.gz", tmp_path / "shifted.nii.gz")


def test_find_samples_pairs_nifti_volumes_one_sample_per_slice(tmp_path):
    vol, seg = _volume_pair()
    _write_nifti(tmp_path / "images" / "case1.nii.gz", vol)
    _write_nifti(tmp_path / "masks" / "case1.nii.gz", seg)
    _write_nifti(tmp_path / "images" / "case2.nii", vol[:, :, :2])
    _write_nifti(tmp_path / "masks" / "case2_seg.nii", seg[:, :, :2])
    samples = find_samples(tmp_path)
    assert [s.id for s in samples] == ["case1_z000", "case1_z001", "case1_z002", "case1_z003",
                                       "case2_z000", "case2_z001"]
    assert all(s.spacing == pytest.approx((0.8, 0.9)) for s in samples)
    # Medical Segmentation Decathlon names, with the macOS '._' companions that ship in its tarballs
    msd = tmp_path / "msd"
    _write_nifti(msd / "imagesTr" / "liver_0.nii.gz", vol)
    _write_nifti(msd / "labelsTr" / "liver_0.nii.gz", seg)
    (msd / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\x00")
    assert len(find_samples(msd)) == 4


def test_unpaired_volume_is_listed(tmp_path):
    vol, seg = _volume_pair()
    _write_nifti(tmp_path / "images" / "a.nii.gz", vol)
    _write_nifti(tmp_path / "images" / "b.nii.gz", vol)
    _write_nifti(tmp_path / "masks" / "a.nii.gz", seg)
    with pytest.raises(UserError, match=r"images/b\.nii\.gz"):
        find_samples(tmp_path)


def test_spacing_reaches_the_distance_metrics(tmp_path):
    vol, _ = _volume_pair()
    _write_nifti(tmp_path / "img.nii.gz", vol, zooms=(2.0, 0.5, 3.0))
    sample = mio.nifti_slices(tmp_path / "img.nii.gz", None)[0]
    truth = np.zeros((6, 5), bool)
    truth[1:3, 1:4] = True
    shifted = np.roll(truth, 1, axis=0)  # one row down = 2.0 mm with this spacing
    assert sample.spacing == (2.0, 0.5)
    assert hausdorff_distance(truth, shifted, spacing=sample.spacing) == pytest.approx(2.0)
    assert hausdorff_distance(truth, np.roll(truth, 1, axis=1), spacing=sample.spacing) == pytest.approx(0.5)


def test_nifti_slices_go_through_the_pipeline(tmp_path):
    from Functions.data.pipeline import load_arrays

    vol, seg = _volume_pair()
    _write_nifti(tmp_path / "images" / "c.nii.gz", vol)
    _write_nifti(tmp_path / "masks" / "c.nii.gz", seg)
    x, y = load_arrays(find_samples(tmp_path), image_size=8, channels=1, workers=2)
    assert x.shape == (4, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (4, 8, 8, 1) and set(np.unique(y)) <= {0, 1} and y[3].sum() > 0 and y[0].sum() == 0
