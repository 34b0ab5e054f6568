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
