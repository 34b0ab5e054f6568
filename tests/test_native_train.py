"""train --patch-size (native resolution), group-aware splits in train, the memory budget, and bad input."""

import json

import cv2
import numpy as np
import pytest

from Functions.cli import main
from helpers import blob_pair, cli_fails


def fails(capsys, argv, *needles):
    return cli_fails(capsys, argv, *needles)


def mixed_sizes(root, n=10, sizes=(40, 56, 72, 30)):
    """images/ + masks/ blob pairs of different sizes."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = blob_pair(sizes[i % len(sizes)], seed=i)
        cv2.imwrite(str(root / "images" / f"c{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask * 255)
    return root


def volumes(root, n=6, slices=4):
    nib = pytest.importorskip("nibabel")
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for v in range(n):
        vol = np.zeros((24, 24, slices), np.float32)
        seg = np.zeros((24, 24, slices), np.uint8)
        for k in range(slices):
            image, mask = blob_pair(24, seed=10 * v + k)
            vol[..., k], seg[..., k] = image, mask
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(root / "images" / f"case{v}.nii.gz"))
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(root / "masks" / f"case{v}.nii.gz"))
    return root


# ----------------------------------------------------------------------------- bad input, one line each
def test_bad_native_settings(tmp_path, capsys):
    data = mixed_sizes(tmp_path / "d")
    base = ["train", "--data", str(data), "--epochs", "1"]
    fails(capsys, base + ["--patch-size", "32", "--overlap", "1", "--out", str(tmp_path / "o1")],
          "--overlap must be in [0, 1)")
    fails(capsys, base + ["--patch-size", "32", "--spacing", "0", "--out", str(tmp_path / "o2")],
          "--spacing must be a positive pixel size")
    fails(capsys, base + ["--no-plan", "--scale", "0.5", "--out", str(tmp_path / "o3")], "--scale", "--patch-size P")
    fails(capsys, base + ["--patch-size", "32", "--max-memory", "lots", "--out", str(tmp_path / "o4")],
          "--max-memory must be a size")
    fails(capsys, base + ["--patch-size", "128", "--no-pad-patches", "--out", str(tmp_path / "o5")],
          "--patch-size 128x128 is larger than every image", "padding is off")
    fails(capsys, base + ["--patch-size", "8", "--out", str(tmp_path / "o6")], "--patch-size must be at least 16")
    fails(capsys, base + ["--patch-size", "32", "32", "--out", str(tmp_path / "o7")], "one side for 2-D")
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 8))


def test_image_split_refused_on_grouped_data(tmp_path, capsys):
    data = volumes(tmp_path / "v")
    fails(capsys, ["train", "--data", str(data), "--epochs", "1", "--split-by", "image", "--out",
                   str(tmp_path / "o")], "--split-by image", "6 groups", "--allow-shared-groups")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- data preparation
def test_prepare_data_keeps_volumes_together_and_records_groups(tmp_path):
    from Functions.data.splits import shared_groups
    from Functions.engine.segmentation import SEGMENTATION, TrainConfig, prepare_data

    config = TrainConfig(data=str(volumes(tmp_path / "v")), image_size=16, val_fraction=0.2, test_fraction=0.2)
    data = prepare_data(config)
    groups = data["groups"]
    assert {k: len(set(v)) for k, v in groups.items()} == {"train": 4, "val": 1, "test": 1}
    assert data["split_message"] == "Split by group, groups: train 4, val 1, test 1 (6 groups for 24 samples)"
    everything = groups["train"] + groups["val"] + groups["test"]
    idx = np.cumsum([0, len(groups["train"]), len(groups["val"]), len(groups["test"])])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert shared_groups(everything, range(idx[a], idx[a + 1]), range(idx[b], idx[b + 1])) == []
    record = SEGMENTATION.split_record(data)
    assert record["groups"] == groups and len(record["train"]) == 16


def test_prepare_patch_data_over_budget_uses_memory_maps(tmp_path):
    from Functions.engine.segmentation import TrainConfig, prepare_data

    config = TrainConfig(data=str(mixed_sizes(tmp_path / "d")), patch_size=32, max_memory="1K",
                         out=str(tmp_path / "runs" / "r1"))
    data = prepare_data(config)
    images, masks, samples = data["train"]
    assert all(isinstance(a, np.memmap) for a in images) and len(images) == len(samples) == 7
    assert {im.shape[0] for im in images} == {30, 40, 56, 72}               # every image at its own size
    assert "memory maps" in data["native"][0] and str(tmp_path / "runs" / ".cache") in data["native"][0]
    assert data["test"][0] is None and len(data["test"][2]) == 2
    x, y = data["preview"]
    assert x.shape[1:] == (32, 32, 1) and y.shape[1:] == (32, 32, 1)
    in_ram = prepare_data(TrainConfig(data=config.data, patch_size=32))
    assert "held in memory" in in_ram["native"][0]
    for a, b in zip(in_ram["train"][0], images):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- end to end
def test_patch_training_end_to_end_scores_at_native_size(tmp_path, capsys):
    """The native-resolution run, end to end: train on patches, score the test images at their own sizes, and
    `evaluate --run` the saved model to the same figures (one epoch of a 4-filter U-Net: the path, not the fit)."""
    data = mixed_sizes(tmp_path / "d")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--patch-size", "32", "--epochs", "1", "--batch-size", "4",
                 "--model-option", "base_filters=4", "--model-option", "depth=2", "--out", str(run),
                 "--progress-every", "1", "--lr-schedule", "constant"]) == 0
    out = capsys.readouterr().out
    assert "Training unet on 7 images at native resolution" in out and "original resolution): Dice" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scored_at"] == "original resolution" and metrics["patch_size"] == 32
    table = __import__("pandas").read_csv(run / "test_metrics.csv")
    split = json.loads((run / "split.json").read_text())
    sizes = [cv2.imread(p, cv2.IMREAD_UNCHANGED).shape for p in split["test"]]
    assert sorted(zip(table["height"], table["width"])) == sorted(sizes)
    assert "original resolution" in (run / "report.md").read_text()
    # evaluate --run predicts the same way (sliding window) and gets the same figures
    assert main(["evaluate", "--run", str(run)]) == 0
    again = __import__("pandas").read_csv(run / "evaluation-test" / "metrics.csv")
    np.testing.assert_allclose(sorted(again["dice"]), sorted(table["dice"]), atol=1e-6)
    assert main(["check-split", str(run), "--no-duplicates"]) == 0
