"""Pair discovery in the three generic layouts, merging, and the errors for unpaired files."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from Functions.data.discovery import find_samples, load_sample
from Functions.base.errors import UserError


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _square(top, left, size=4, shape=(16, 16)):
    m = np.zeros(shape, np.uint8)
    m[top:top + size, left:left + size] = 255
    return m


def test_images_masks_folders_any_extension_pair(tmp_path):
    img = np.full((16, 16, 3), 90, np.uint8)
    _write(tmp_path / "images" / "a.jpg", img)
    _write(tmp_path / "masks" / "a.png", _square(2, 2))
    _write(tmp_path / "images" / "b.png", img)
    _write(tmp_path / "masks" / "b_mask.png", _square(8, 8))
    samples = find_samples(tmp_path)
    assert [s.id for s in samples] == ["a", "b"]
    image, mask = load_sample(samples[1])
    assert image.shape == (16, 16, 3) and mask.sum() == 16 and mask[8, 8] == 1


def test_suffix_masks_merge_extra_masks_and_class_labels(tmp_path):
    for cls in ("benign", "malignant"):
        _write(tmp_path / cls / f"{cls} (1).png", np.full((16, 16), 50, np.uint8))
        _write(tmp_path / cls / f"{cls} (1)_mask.png", _square(0, 0))
    _write(tmp_path / "benign" / "benign (1)_mask_1.png", _square(10, 10))
    samples = find_samples(tmp_path)
    assert {(s.id, s.label) for s in samples} == {("benign (1)", "benign"), ("malignant (1)", "malignant")}
    benign = next(s for s in samples if s.label == "benign")
    assert [p.name for p in benign.masks] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    _, mask = load_sample(benign)
    assert mask.sum() == 32 and mask[0, 0] == 1 and mask[12, 12] == 1


def test_per_sample_folders_merge_instances(tmp_path):
    for sid in ("s1", "s2"):
        _write(tmp_path / sid / "images" / f"{sid}.png", np.zeros((16, 16, 4), np.uint8))
        _write(tmp_path / sid / "masks" / "n1.png", _square(0, 0))
        _write(tmp_path / sid / "masks" / "n2.png", _square(6, 6))
        _write(tmp_path / sid / "masks" / "n3.png", _square(12, 12))
    samples = find_samples(tmp_path)
    assert [s.id for s in samples] == ["s1", "s2"]
    image, mask = load_sample(samples[0])
    assert image.shape == (16, 16, 3)
    assert mask.sum() == 48


def test_unpaired_files_listed_in_one_error(tmp_path):
    _write(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "images" / "lonely.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "masks" / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "masks" / "orphan.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError) as err:
        find_samples(tmp_path)
    text = str(err.value)
    assert "lonely.png" in text and "orphan.png" in text and "\n" not in text


def test_size_mismatch_names_the_pair(tmp_path):
    _write(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "masks" / "a.png", np.zeros((9, 8), np.uint8))
    (sample,) = find_samples(tmp_path)
    with pytest.raises(UserError, match=r"masks.a\.png.*images.a\.png"):
        load_sample(sample)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        find_samples(tmp_path / "nope")
    with pytest.raises(UserError, match="no image/mask pairs"):
        find_samples(tmp_path)


@pytest.mark.realdata
def test_real_dsb2018_layout(dsb_root):
    samples = find_samples(dsb_root)
    assert len(samples) == 664
    image, mask = load_sample(samples[0])
    assert image.shape[2] == 3 and mask.shape == image.shape[:2] and set(np.unique(mask)) == {0, 1}
    assert len(samples[0].masks) > 1


# ----------------------------------------------------------------------------- layout table and its order
def _drive_tree(root: Path) -> Path:
    """DRIVE's training split in miniature: images/, 1st_manual/ (vessel labels) and mask/ (field of view)."""
    fov = np.zeros((16, 16), np.uint8)
    fov[2:14, 2:14] = 255
    for n in (21, 22):
        _write(root / "training" / "images" / f"{n}_training.tif", np.full((16, 16, 3), 80, np.uint8))
        _write(root / "training" / "mask" / f"{n}_training_mask.png", fov)
        vessel = np.zeros((16, 16), np.uint8)
        vessel[:, n % 5] = 255
        _write(root / "training" / "1st_manual" / f"{n}_manual1.png", vessel)
    return root


def test_layout_table_is_explicit_and_in_the_documented_order():
    from Functions.data import discovery

    assert [layout.name for layout in discovery.LAYOUTS] == ["medical", "drive", "brain-tumor", "panoptic"]
    assert isinstance(discovery.LAYOUTS, tuple)  # a table, not a list modules append to
    # importing the format modules registers nothing
    import Functions.data.datasets  # noqa: F401
    import Functions.data.medical_io  # noqa: F401

    assert [layout.name for layout in discovery.LAYOUTS] == ["medical", "drive", "brain-tumor", "panoptic"]
    assert sorted(discovery.READERS) == ["brain_tumor_mat", "dicom", "image", "nifti", "nifti_axis0", "nifti_axis1"]


def test_ordinary_folder_is_claimed_by_no_special_detector(tmp_path):
    from Functions.data.discovery import LAYOUTS

    for stem in ("a", "c"):
        _write(tmp_path / "images" / f"{stem}.png", np.full((16, 16), 90, np.uint8))
        _write(tmp_path / "masks" / f"{stem}.png", _square(2, 2))
    _write(tmp_path / "mask" / "b_mask.png", _square(2, 2))   # a folder named like DRIVE's mask/
    _write(tmp_path / "mask" / "b.png", np.full((16, 16), 90, np.uint8))
    assert [layout.detect(tmp_path) for layout in LAYOUTS] == [None, None, None, None]
    assert [s.id for s in find_samples(tmp_path)] == ["a", "c", "b"]   # read by the generic layouts


def test_drive_detector_runs_before_generic_layouts_that_would_take_fov_masks(tmp_path):
    root = _drive_tree(tmp_path / "DRIVE")
    samples = find_samples(root)
    assert [s.id for s in samples] == ["21_training", "22_training"]
    assert [s.masks[0].parent.name for s in samples] == ["1st_manual", "1st_manual"]
    _, mask = load_sample(samples[0])
    assert mask.sum() == 16 and mask[:, 21 % 5].all()          # the vessel label, one column
    # Why the order matters: the generic layouts alone pair DRIVE images with the field-of-view masks.
    generic = find_samples(root, layouts=())
    assert [s.masks[0].parent.name for s in generic] == ["mask", "mask"]


def test_a_custom_layout_can_be_tried_first(tmp_path):
    from Functions.data.discovery import LAYOUTS, Layout
    from Functions.data.samples import Sample

    _write(tmp_path / "scan.png", np.full((16, 16), 90, np.uint8))
    mine = Layout("mine", lambda root: [Sample(id="x", image=root / "scan.png", masks=(root / "scan.png",))])
    assert [s.id for s in find_samples(tmp_path, layouts=(mine, *LAYOUTS))] == ["x"]


# ----------------------------------------------------------------------------- linked folders
def _pairs(root: Path) -> None:
    _write(root / "images" / "a.png", np.full((16, 16), 90, np.uint8))
    _write(root / "masks" / "a.png", _square(2, 2))
    _write(root / "images" / "b.png", np.full((16, 16), 40, np.uint8))
    _write(root / "masks" / "b.png", _square(8, 8))


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target, target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")


def test_linked_data_folder_and_linked_folders_inside_it(tmp_path):
    _pairs(tmp_path / "elsewhere" / "set")
    _link(tmp_path / "linked", tmp_path / "elsewhere" / "set")            # --data is itself a link
    assert [s.id for s in find_samples(tmp_path / "linked")] == ["a", "b"]
    _link(tmp_path / "drive" / "MyDrive" / "data", tmp_path / "elsewhere" / "set")   # a link below --data
    samples = find_samples(tmp_path / "drive")
    assert [s.image.relative_to(tmp_path / "drive").as_posix() for s in samples] == [
        "MyDrive/data/images/a.png", "MyDrive/data/images/b.png"]
    assert load_sample(samples[1])[1][8, 8] == 1
    # a DSB2018-style tree whose sample folders are links
    for sid in ("s1", "s2"):
        _write(tmp_path / "store" / sid / "images" / f"{sid}.png", np.zeros((16, 16, 3), np.uint8))
        _write(tmp_path / "store" / sid / "masks" / "n1.png", _square(0, 0))
        _link(tmp_path / "dsb" / sid, tmp_path / "store" / sid)
    assert [s.id for s in find_samples(tmp_path / "dsb")] == ["s1", "s2"]


def test_images_and_masks_folders_that_are_links(tmp_path):
    _pairs(tmp_path / "store")
    _link(tmp_path / "data" / "images", tmp_path / "store" / "images")
    _link(tmp_path / "data" / "masks", tmp_path / "store" / "masks")
    samples = find_samples(tmp_path / "data")
    assert [s.image.relative_to(tmp_path / "data").as_posix() for s in samples] == ["images/a.png", "images/b.png"]
    assert [m.name for m in samples[0].masks] == ["a.png"]


def test_link_loop_does_not_hang_and_pairs_are_found_once(tmp_path):
    _pairs(tmp_path / "data" / "set")
    _link(tmp_path / "data" / "set" / "up", tmp_path / "data")            # set/up -> its own parent
    _link(tmp_path / "data" / "again", tmp_path / "data" / "set")         # the same folder by a second path
    samples = find_samples(tmp_path / "data")
    assert [s.image.relative_to(tmp_path / "data").as_posix() for s in samples] == [
        "again/images/a.png", "again/images/b.png"]
