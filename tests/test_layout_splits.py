"""The data set's own split and region-of-interest masks, in the layouts public data sets ship (issue: DRIVE
merged into a random split, its field-of-view masks ignored).

Fixtures are the exact published layouts in miniature: DRIVE (``training/`` and ``test/`` each with
``images/NN_training.tif`` / ``NN_test.tif``, ``1st_manual/NN_manual1.gif``, ``mask/NN_training_mask.gif`` /
``NN_test_mask.gif``), generic ``train/``/``val/``/``test/`` folders and a Decathlon task with and without
``labelsTs/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from Functions.base.errors import UserError
from Functions.data.discovery import find_samples, load_roi
from Functions.data.splits import OFFICIAL, split_samples
from helpers import SIDE, write_drive
from helpers import drive_fov as _fov


def test_drive_keeps_its_official_split_and_field_of_view(tmp_path):
    root = write_drive(tmp_path / "DRIVE")
    samples = find_samples(root)
    assert len(samples) == 10
    by_id = {s.id: s for s in samples}
    assert by_id["21_training"].split == "train" and by_id["01_test"].split == "test"
    assert by_id["21_training"].roi.name == "21_training_mask.gif"       # the FOV is the ROI, not the label
    assert by_id["01_test"].masks[0].name == "01_manual1.gif" and by_id["01_test"].roi.name == "01_test_mask.gif"
    roi = load_roi(by_id["01_test"], (SIDE, SIDE))
    assert roi.dtype == bool and roi.sum() == int((_fov() > 0).sum()) and not roi[0, 0]

    (tr, va, te), _, line = split_samples(samples, val_fraction=0.34, test_fraction=0.15, seed=0)
    assert OFFICIAL in line and "drawn from the official training part" in line
    assert sorted(samples[i].id for i in te) == ["01_test", "02_test", "03_test", "04_test"]
    assert len(va) == 2 and len(tr) == 4                                  # 0.34 of the six training images
    assert all(samples[i].split == "train" for i in (*tr, *va))
    # the same seed draws the same validation images; another seed others, the test part never moves
    assert list(split_samples(samples, 0.34, 0.15, seed=0)[0][1]) == list(va)
    others = [tuple(split_samples(samples, 0.34, 0.15, seed=s)[0][1]) for s in range(1, 6)]
    assert any(o != tuple(va) for o in others)
    assert all(tuple(split_samples(samples, 0.34, 0.15, seed=s)[0][2]) == tuple(te) for s in range(3))

    (tr2, va2, te2), _, line2 = split_samples(samples, 0.2, 0.3, seed=0, split="random")
    assert OFFICIAL not in line2 and len(te2) == 3                        # random: 0.3 of all ten
    random_tests = [split_samples(samples, 0.2, 0.3, seed=s, split="random")[0][2] for s in range(4)]
    assert any(samples[i].split == "train" for te_r in random_tests for i in te_r)   # the official test is ignored


def test_drive_testing_folder_name_is_also_the_official_test(tmp_path):
    samples = find_samples(write_drive(tmp_path / "DRIVE", test_folder="testing"))
    assert sorted(s.id for s in samples if s.split == "test") == ["01_test", "02_test", "03_test", "04_test"]


@pytest.mark.parametrize("names", [("train", "val", "test"), ("Training", "Valid", "Testing"),
                                   ("train", "validation", "test")])
def test_train_val_test_folders_keep_their_parts(tmp_path, names):
    from helpers import write_blob_pairs

    counts = {}
    for name, n, seed in zip(names, (6, 3, 2), (0, 1, 2)):
        write_blob_pairs(tmp_path / name, n=n, size=16, seed=seed, names=[f"{name}_{i}" for i in range(n)])
        counts[name] = n
    samples = find_samples(tmp_path)
    (tr, va, te), _, line = split_samples(samples, 0.15, 0.15, seed=3)
    assert OFFICIAL in line and "drawn" not in line                       # nothing drawn: every part is given
    assert sorted(samples[i].id for i in va) == sorted(f"{names[1]}_{i}" for i in range(3))
    assert sorted(samples[i].id for i in te) == sorted(f"{names[2]}_{i}" for i in range(2))
    assert len(tr) == 6


def test_train_and_val_folders_without_test_draw_test_from_training(tmp_path):
    from helpers import write_blob_pairs

    write_blob_pairs(tmp_path / "train", n=10, size=16, seed=0, names=[f"t{i}" for i in range(10)])
    write_blob_pairs(tmp_path / "val", n=2, size=16, seed=1, names=["v0", "v1"])
    samples = find_samples(tmp_path)
    (tr, va, te), _, line = split_samples(samples, 0.15, 0.2, seed=0)
    assert sorted(samples[i].id for i in va) == ["v0", "v1"]
    assert len(te) == 2 and all(samples[i].id.startswith("t") for i in te) and "the layout has none" in line


def test_official_split_is_refused_without_one_and_random_data_is_unchanged(tmp_path):
    from Functions.data.splits import split_indices
    from helpers import write_blob_pairs

    write_blob_pairs(tmp_path / "train", n=8, size=16)                    # a train/ folder alone is no split
    samples = find_samples(tmp_path)
    assert {s.split for s in samples} == {"train"}
    idx, _, line = split_samples(samples, 0.25, 0.25, seed=1)
    assert OFFICIAL not in line
    assert [list(a) for a in idx] == [list(a) for a in split_indices(8, 0.25, 0.25, 1)]
    with pytest.raises(UserError, match="--split official"):
        split_samples(samples, 0.25, 0.25, seed=1, split="official")


# ----------------------------------------------------------------------------- Decathlon
def _decathlon(root: Path, labels_ts: bool) -> Path:
    import nibabel as nib

    for sub in ("imagesTr", "labelsTr", "imagesTs") + (("labelsTs",) if labels_ts else ()):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    training, test = [], []
    for i in range(5):
        name = f"spleen_{i}.nii.gz"
        folder = "Tr" if i < 3 else "Ts"
        img = rng.normal(size=(8, 8, 4)).astype(np.float32)
        lab = np.zeros((8, 8, 4), np.uint8)
        lab[2:5, 2:5, 1:3] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / f"images{folder}" / name)
        if folder == "Tr":
            nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            if labels_ts:
                nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTs" / name)
            test.append(f"./imagesTs/{name}")
    (root / "dataset.json").write_text(json.dumps({"name": "Spleen", "modality": {"0": "CT"},
                                                   "labels": {"0": "background", "1": "spleen"},
                                                   "training": training, "test": test}))
    return root


def test_decathlon_labelled_imagests_is_the_test_set(tmp_path):
    from Functions.data.splits import official_split
    from Functions.data.volumes import find_volumes

    ds = find_volumes(_decathlon(tmp_path / "Task09_Spleen", labels_ts=True))
    assert [c.split for c in ds.test] == ["test", "test"] and all(c.label is not None for c in ds.test)
    assert "they are the test set" in ds.split_note
    cases = [*ds.cases, *ds.test]
    (tr, va, te), how = official_split([c.split for c in cases], 0.34, 0.2, seed=0)
    assert sorted(cases[i].id for i in te) == ["spleen_3", "spleen_4"] and len(va) == 1 and len(tr) == 2


def test_decathlon_unlabelled_imagests_is_not_a_test_set(tmp_path):
    from Functions.data.splits import has_layout_split
    from Functions.data.volumes import find_volumes
    from Functions.planning.fingerprint import fingerprint_volumes
    from Functions.planning.rules import layout_rules

    ds = find_volumes(_decathlon(tmp_path / "Task09_Spleen", labels_ts=False))
    assert all(c.label is None for c in ds.test) and not has_layout_split([c.split for c in ds.cases])
    assert "not a test set" in ds.split_note and "unlabelled" in ds.split_note
    choice = layout_rules(fingerprint_volumes(ds))[0]
    assert choice.field == "split" and choice.value == "auto" and "not a test set" in choice.reason


# ----------------------------------------------------------------------------- region of interest
def test_scores_count_only_pixels_inside_the_region_of_interest():
    from Functions.metrics.segmentation import binary_metrics, per_image_metrics

    truth = np.zeros((6, 6), np.uint8)
    truth[2:4, 2:4] = 1
    roi = np.zeros((6, 6), bool)
    roi[1:5, 1:5] = True
    pred = truth.copy()
    pred[0, :] = 1                                   # wrong, but only outside the ROI
    pred[5, 5] = 1
    inside = binary_metrics(truth, pred, roi=roi)
    assert inside["dice"] == 1.0 and inside["iou"] == 1.0 and inside["pixel_accuracy"] == 1.0
    assert inside["precision"] == 1.0 and inside["hd95"] == 0.0
    everywhere = binary_metrics(truth, pred)
    assert everywhere["dice"] == pytest.approx(8 / (8 + 7))       # 2tp / (2tp + fp): 7 false pixels
    pred[1, 1] = 1                                   # one wrong pixel inside: 16 pixels in the ROI
    table = per_image_metrics([truth], [pred], rois=[roi])
    assert table["dice"][0] == pytest.approx(8 / 9) and table["pixel_accuracy"][0] == pytest.approx(15 / 16)
    assert table["specificity"][0] == pytest.approx(11 / 12)      # 12 background pixels inside, one wrong


def test_patch_weights_are_zero_outside_the_field_of_view_and_the_loss_ignores_those_pixels(tmp_path):
    import keras

    from Functions.data.native import load_native
    from Functions.data.patches import patch_dataset
    from Functions.data.samples import IGNORE
    from Functions.losses import get_loss

    samples = [s for s in find_samples(write_drive(tmp_path / "DRIVE")) if s.split == "train"][:2]
    native = load_native(samples, 3, "minmax", workers=1)
    fov = _fov() > 0
    assert np.array_equal(native.masks[0] == IGNORE, ~fov)            # outside the FOV: the ignore value
    truth = load_roi(samples[0]) & (np.asarray(Image.open(samples[0].masks[0])) > 0)
    assert np.array_equal(native.masks[0] == 1, truth)
    ds = patch_dataset(native.images, native.masks, SIDE, batch_size=2, patches_per_epoch=2, seed=0,
                       ignore=IGNORE, foreground_probability=0.0)
    x, y, w = ds[0]
    assert w.shape == y.shape == (2, SIDE, SIDE, 1) and set(np.unique(w)) == {0.0, 1.0}
    assert np.array_equal(w[0, ..., 0] == 0, ~fov) and np.array_equal(w[1, ..., 0] == 0, ~fov)
    assert y.max() == 1.0 and not y[w == 0].any()                     # targets 0 (not 255) outside
    for name in ("bce_dice", "bce", "dice", "focal"):
        loss = get_loss(name)
        pred = np.where(y > 0, 0.8, 0.2).astype(np.float32)
        wild = pred.copy()
        wild[w == 0] = np.random.default_rng(1).uniform(0.01, 0.99, int((w == 0).sum()))
        base = float(loss(y, pred, sample_weight=w))
        assert float(loss(y, wild, sample_weight=w)) == pytest.approx(base, rel=1e-5), name
        assert float(loss(y, wild)) != pytest.approx(base, rel=1e-3), name   # without weights they count
        changed = pred.copy()
        changed[w == 1] = 0.5                                          # inside the FOV they do count
        assert float(loss(y, changed, sample_weight=w)) != pytest.approx(base, rel=1e-3), name
    assert keras.ops.convert_to_numpy(w).sum() == 2 * fov.sum()


def test_volume_training_keeps_the_labelled_imagests_as_its_test_split(tmp_path):
    from Functions.data.volumes import find_volumes
    from Functions.engine.volumes import VolumeConfig, prepare_volumes

    root = _decathlon(tmp_path / "Task09_Spleen", labels_ts=True)
    data = prepare_volumes(VolumeConfig(data=str(root), val_fraction=0.34, seed=0), find_volumes(root))
    assert sorted(c.id for c in data["test"][2]) == ["spleen_3", "spleen_4"]
    assert len(data["val"][2]) == 1 and len(data["train"][2]) == 2
    assert data["split_message"].startswith(f"Split: {OFFICIAL}") and "they are the test set" in data["split_message"]
    random = prepare_volumes(VolumeConfig(data=str(root), val_fraction=0.2, test_fraction=0.2, seed=0, split="random"),
                             find_volumes(root))
    assert OFFICIAL not in random["split_message"] and len(random["test"][2]) == 1
