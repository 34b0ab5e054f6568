"""The synthetic generators and the offline sample they produced (``Data/sample``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from Functions.data import synthetic as S
from Functions.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "Data"
SAMPLE = DATA / "sample"


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _hashes(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _us_stems(label: str) -> list:
    return sorted(p.stem for p in (SAMPLE / "ultrasound" / label).glob("*.png") if "_mask" not in p.name)


# ----------------------------------------------------------------------------- determinism


def test_write_sample_is_byte_for_byte_deterministic(tmp_path):
    for name in ("a", "b"):
        S.write_sample(tmp_path / name, n=3, size=96, seed=5)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert a == b
    # 3 nuclei (image + mask + instance label map each), 3 cases per ultrasound class (image + >= 1 mask
    # each) and 3 tissue images (image + class mask each)
    assert sum(k.startswith("nuclei/") for k in a) == 9
    assert sum(k.startswith("tissue/") for k in a) == 6
    assert sum(k.startswith("ultrasound/") for k in a) >= 18
    S.write_sample(tmp_path / "c", n=3, size=96, seed=6)
    c = _hashes(tmp_path / "c")
    assert c["nuclei/images/nuclei_000.png"] != a["nuclei/images/nuclei_000.png"]


def test_image_i_does_not_depend_on_n():
    first = S.make_nuclei(1, size=64, seed=3)[0]
    third = S.make_nuclei(3, size=64, seed=3)
    np.testing.assert_array_equal(first[0], third[0][0])
    np.testing.assert_array_equal(first[1], third[0][1])
    np.testing.assert_array_equal(S.make_nucleus_image(2, size=64, seed=3)[0], third[2][0])
    us = S.make_ultrasound(2, size=64, seed=3)
    assert [c.label for c in us] == ["benign", "benign", "malignant", "malignant", "normal", "normal"]
    np.testing.assert_array_equal(S.make_ultrasound_image("malignant", 1, size=64, seed=3).image, us[3].image)


@pytest.mark.parametrize(
    "kind, index",
    [("nuclei", 0), ("nuclei", 1), ("nuclei", 57), ("nuclei", 99),
     ("benign", 0), ("benign", 22), ("malignant", 0), ("malignant", 39), ("normal", 0)],
)
def test_committed_sample_matches_the_generator(kind, index):
    """Data/sample is what `python -m Functions make-sample` (seed 0, 256 px) writes.

    Pixels are compared after decoding (PNG bytes depend on the zlib build).  A
    different CPU may round a transcendental function differently in the last
    bit, so a handful of pixels may differ by a grey level or two; anything
    more means the sample and the generator have drifted apart.
    """
    if kind == "nuclei":
        name = f"nuclei_{index:03d}.png"
        image, labels = S.make_nucleus_image(index, size=S.DEFAULT_SIZE, seed=S.DEFAULT_SEED)
        masks = [np.where(labels > 0, 255, 0).astype(np.uint8)]
        disk_image = _read(SAMPLE / "nuclei" / "images" / name)
        disk_masks = [_read(SAMPLE / "nuclei" / "masks" / name)]
    else:
        case = S.make_ultrasound_image(kind, index, size=S.DEFAULT_SIZE, seed=S.DEFAULT_SEED)
        image, masks = case.image, case.masks
        folder, stem = SAMPLE / "ultrasound" / kind, f"{kind} ({index + 1})"
        disk_image = _read(folder / f"{stem}.png")
        disk_masks = [_read(folder / (f"{stem}_mask.png" if j == 0 else f"{stem}_mask_{j}.png"))
                      for j in range(len(masks))]
        assert not (folder / f"{stem}_mask_{len(masks)}.png").exists()
    assert disk_image.shape == image.shape == (256, 256) and disk_image.dtype == np.uint8
    diff = np.abs(disk_image.astype(int) - image.astype(int))
    assert np.mean(diff > 0) < 1e-3 and diff.max() <= 2
    for disk_mask, mask in zip(disk_masks, masks):
        assert np.mean(disk_mask != mask) < 1e-3


# ----------------------------------------------------------------------------- the committed sample


def test_sample_file_counts_and_names():
    images = sorted((SAMPLE / "nuclei" / "images").glob("*.png"))
    masks = sorted((SAMPLE / "nuclei" / "masks").glob("*.png"))
    assert len(images) == S.DEFAULT_N_NUCLEI
    assert [p.name for p in images] == [p.name for p in masks]
    assert all(S.NUCLEI_NAME_RE.match(p.name) for p in images)
    for label in S.ULTRASOUND_CLASSES:
        folder = SAMPLE / "ultrasound" / label
        files = sorted(p.name for p in folder.iterdir())
        matches = [S.BUSI_NAME_RE.match(f) for f in files]
        assert all(matches), [f for f, m in zip(files, matches) if not m]
        assert all(m.group(1) == label for m in matches)
        stems = _us_stems(label)
        assert sorted(int(s.split("(")[1][:-1]) for s in stems) == list(range(1, S.DEFAULT_N_PER_CLASS + 1))
        for stem in stems:
            assert f"{stem}_mask.png" in files
        for f in files:  # a second mask only comes with a first one
            if f.endswith("_mask_1.png"):
                assert f.replace("_mask_1", "_mask") in files
    assert S.BUSI_NAME_RE.match("benign (12)_mask_1.png")
    assert not S.BUSI_NAME_RE.match("benign(12).png") and not S.BUSI_NAME_RE.match("benign (12)_mask1.png")


def test_some_lesion_images_have_two_masks():
    second = list((SAMPLE / "ultrasound").glob("*/*_mask_1.png"))
    assert 2 <= len(second) <= 16  # about 10% of the 80 lesion images
    assert not list((SAMPLE / "ultrasound" / "normal").glob("*_mask_1.png"))


def test_masks_are_binary_and_match_their_class():
    for path in (SAMPLE / "nuclei" / "masks").glob("*.png"):
        mask = _read(path)
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}, path
    for label in S.ULTRASOUND_CLASSES:
        for path in (SAMPLE / "ultrasound" / label).glob("*_mask*.png"):
            mask = _read(path)
            assert mask.shape == (256, 256) and mask.dtype == np.uint8
            values = set(np.unique(mask).tolist())
            if label == "normal":
                assert values == {0}, path
            else:
                assert values == {0, 255}, path


def test_nuclei_are_brighter_than_the_background():
    for path in sorted((SAMPLE / "nuclei" / "images").glob("*.png"))[:40]:
        image = _read(path).astype(float)
        mask = _read(SAMPLE / "nuclei" / "masks" / path.name) > 0
        assert 0.02 < mask.mean() < 0.6
        assert image[mask].mean() > image[~mask].mean() + 10, path


def test_lesions_are_hypoechoic():
    """Inside a lesion is darker than a 10-pixel ring of tissue around it."""
    ratios = []
    for label in ("benign", "malignant"):
        for stem in _us_stems(label):
            folder = SAMPLE / "ultrasound" / label
            image = _read(folder / f"{stem}.png").astype(float)
            mask = _read(folder / f"{stem}_mask.png") > 0
            ring = ndimage.binary_dilation(mask, iterations=10) & ~ndimage.binary_dilation(mask, iterations=3)
            ring &= image > 0  # stay inside the scanned field
            ratios.append(image[mask].mean() / image[ring].mean())
    ratios = np.array(ratios)
    assert len(ratios) == 2 * S.DEFAULT_N_PER_CLASS
    assert ratios.mean() < 0.6
    assert np.all(ratios < 0.9)


def test_nuclei_are_not_trivially_thresholded():
    """One global threshold for the whole set should not solve it (uneven light, dim nuclei),
    but it should get a fair part of the way (the task is learnable)."""
    paths = sorted((SAMPLE / "nuclei" / "images").glob("*.png"))
    images = np.stack([_read(p) for p in paths])
    masks = np.stack([_read(SAMPLE / "nuclei" / "masks" / p.name) > 0 for p in paths])
    best = 0.0
    for t in range(5, 150, 2):
        pred = images > t
        best = max(best, 2 * np.sum(pred & masks) / (pred.sum() + masks.sum()))
    assert 0.6 < best < 0.95


def test_data_folder_is_small():
    total = sum(p.stat().st_size for p in DATA.rglob("*")
                if p.is_file() and "datasets" not in p.relative_to(DATA).parts)
    assert total < 20 * 1024 * 1024


# ----------------------------------------------------------------------------- generator properties


def test_generator_shapes_and_label_maps():
    image, labels = S.make_nucleus_image(4, size=128, seed=11)
    assert image.shape == (128, 128) and image.dtype == np.uint8
    assert labels.shape == (128, 128) and labels.dtype == np.int32 and labels.max() >= 1
    # Every id present is a connected-ish blob of reasonable size (not a stray pixel).
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert counts.min() >= 5
    case = S.make_ultrasound_image("normal", 0, size=128, seed=11)
    assert case.label == "normal" and len(case.masks) == 1 and case.masks[0].max() == 0
    with pytest.raises(ValueError):
        S.make_ultrasound_image("cyst", 0)
    with pytest.raises(ValueError):
        S.make_nuclei(0)


# ----------------------------------------------------------------------------- command line


def test_make_sample_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "sample"
    assert cli_main(["make-sample", "--out", str(out), "--kind", "nuclei", "--n", "2", "--size", "64"]) == 0
    assert sorted(p.name for p in (out / "nuclei" / "images").iterdir()) == ["nuclei_000.png", "nuclei_001.png"]
    keep = out / "nuclei" / "notes.txt"
    keep.write_text("mine")
    capsys.readouterr()
    assert cli_main(["make-sample", "--out", str(out), "--kind", "nuclei", "--n", "1", "--size", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--overwrite" in err and "\n" not in err
    assert len(list((out / "nuclei" / "images").iterdir())) == 2  # nothing touched
    # --overwrite replaces the generator's own files (stale ones included) and nothing else.
    assert cli_main(["make-sample", "--out", str(out), "--kind", "nuclei", "--n", "1", "--size", "64",
                     "--overwrite"]) == 0
    assert [p.name for p in (out / "nuclei" / "images").iterdir()] == ["nuclei_000.png"]
    assert keep.read_text() == "mine"


def test_make_sample_ultrasound_layout(tmp_path):
    out = tmp_path / "s"
    assert cli_main(["make-sample", "--out", str(out), "--kind", "ultrasound", "--n", "2", "--size", "64",
                     "--seed", "1"]) == 0
    for label in S.ULTRASOUND_CLASSES:
        names = sorted(p.name for p in (out / "ultrasound" / label).iterdir())
        assert f"{label} (1).png" in names and f"{label} (2)_mask.png" in names
    assert not (out / "nuclei").exists()
    assert cli_main(["make-sample", "--out", str(out), "--n", "0"]) == 2
