"""``train --task panoptic --data DIR`` on CoNSeP, PanNuke and CoNIC folders as published: no preparation,
the data set's own split kept, large images trained on patches and predicted at their own size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_fails, consep_tree, pannuke_fold

from Functions.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--model-option", "base_filters=4",
        "--model-option", "depth=2", "--progress-every", "0", "--verbose", "0", "--lr-schedule", "constant"]


def _split(run):
    split = json.loads((run / "split.json").read_text())
    return {k: sorted(Path(p).stem for p in split[k]) for k in ("train", "val", "test")}


def test_consep_folder_trains_on_patches_keeps_test_and_evaluates_the_run(tmp_path):
    consep_tree(tmp_path / "CoNSeP", n=3, shape=(60, 75))          # 75 px > --image-size 32: patch training
    run, env = tmp_path / "run", dict(os.environ, PYTHONPATH=str(REPO / "Code"), MIP_DATA_DIR=str(tmp_path / "d"))
    proc = subprocess.run([sys.executable, "-m", "Functions", "train", "--task", "panoptic", "--data",
                           str(tmp_path / "CoNSeP"), "--out", str(run), *TINY], env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "random 32x32 patches at native resolution (4 per image and epoch)" in proc.stdout
    assert "Test/ tests" in proc.stdout
    assert "official split (from the layout)" in proc.stdout
    assert "Test (test, 3 images, original resolution, sliding window 32x32)" in proc.stdout
    split = _split(run)
    assert split["test"] == ["test_1", "test_2", "test_3"]                      # CoNSeP's Test/ is the test split
    assert sorted(split["train"] + split["val"]) == ["train_1", "train_2", "train_3"] and split["val"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["patch_size"] == 32 and cfg["patches_per_image"] == 4 and cfg["object_types"] == 4
    assert cfg["panoptic_names"] == ["other", "inflammatory", "epithelial", "spindle-shaped"]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("bpq", "mpq", "mpq_plus"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["split"] == "test" and metrics["n_images"] == 3 and metrics["scored_at"] == "original resolution"
    assert "sliding window" in metrics["prediction"]
    # evaluate --task panoptic --run: the same test split, scored again at each image's own 75x60 size
    proc = subprocess.run([sys.executable, "-m", "Functions", "evaluate", "--task", "panoptic", "--run", str(run)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "evaluation-panoptic-test" / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["split"] == "test"
    for key in ("bpq", "mpq", "mpq_plus"):
        assert summary[key] == pytest.approx(metrics[key], abs=1e-6), key
    images = (run / "evaluation-panoptic-test" / "per_image.csv").read_text()
    assert "test_1" in images and "train_1" not in images


def test_pannuke_folds_train_validate_test(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "d"))
    for k in (3, 1, 2):
        pannuke_fold(tmp_path / "PanNuke", n=3, k=k)
    run = tmp_path / "run"
    assert main(["train", "--task", "panoptic", "--data", str(tmp_path / "PanNuke"), "--out", str(run), *TINY]) == 0
    assert _split(run) == {"train": ["fold1_0000", "fold1_0001", "fold1_0002"],
                           "val": ["fold2_0000", "fold2_0001", "fold2_0002"],
                           "test": ["fold3_0000", "fold3_0001", "fold3_0002"]}
    out = capsys.readouterr().out
    assert "fold 1 trains, fold 2 validates, fold 3 tests" in out
    assert "5 object type(s) neoplastic, inflammatory, connective, dead, epithelial" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"bpq", "mpq", "mpq_plus"} <= set(metrics) and metrics["split"] == "test"
    assert set(metrics["per_class"]) == {"neoplastic", "inflammatory", "connective", "dead", "epithelial"}
    # a masks.npy with the wrong channel count: one line naming the file
    np.save(tmp_path / "PanNuke" / "Fold 2" / "masks" / "fold2" / "masks.npy", np.zeros((3, 16, 16, 5)))
    err = cli_fails(capsys, ["train", "--task", "panoptic", "--data", str(tmp_path / "PanNuke"), "--out",
                             str(tmp_path / "run2"), *TINY], "masks.npy has shape (3, 16, 16, 5)")
    assert "Fold 2" in err


def _conic(root, n=8, top=6):
    rng = np.random.default_rng(3)
    labels = np.zeros((n, 16, 16, 2), np.int32)
    for i in range(n):
        labels[i, 2:7, 2:7] = (1, 1 + i % top)
        labels[i, 9:14, 8:13] = (2, 1 + (i + 2) % top)
    root.mkdir(parents=True)
    np.save(root / "images.npy", rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8))
    np.save(root / "labels.npy", labels)
    (root / "counts.csv").write_text("neutrophil,epithelial,lymphocyte,plasma,eosinophil,connective\n"
                                     + "0,0,0,0,0,0\n" * n)
    (root / "patch_info.csv").write_text("patch_info\n" + "".join(f"src{i // 2}-{i % 2:04d}\n" for i in range(n)))
    return labels


def test_conic_splits_by_source_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "d"))
    labels = _conic(tmp_path / "conic")
    run = tmp_path / "run"
    assert main(["train", "--task", "panoptic", "--data", str(tmp_path / "conic"), "--out", str(run),
                 "--val-fraction", "0.25", "--test-fraction", "0.25", *TINY]) == 0
    split = _split(run)
    source = {f"conic_{i:05d}": f"src{i // 2}" for i in range(8)}
    parts = [{source[n] for n in split[k]} for k in ("train", "val", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(len(split[k]) for k in split) == 8
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"bpq", "mpq", "mpq_plus"} <= set(metrics) and metrics["object_types"] == 6
    # a type id above the class count: one line naming the file
    labels[5, 2:7, 2:7, 1] = 9
    np.save(tmp_path / "conic" / "labels.npy", labels)
    cli_fails(capsys, ["train", "--task", "panoptic", "--data", str(tmp_path / "conic"), "--out",
                       str(tmp_path / "run2"), *TINY], "labels.npy patch 5 has class 9")


def test_consep_instance_and_type_maps_of_different_sizes_named(tmp_path, monkeypatch, capsys):
    from scipy.io import loadmat, savemat

    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "d"))
    consep_tree(tmp_path / "CoNSeP")
    path = tmp_path / "CoNSeP" / "Test" / "Labels" / "test_2.mat"
    mat = loadmat(path)
    savemat(path, {"inst_map": mat["inst_map"][:, :-3], "inst_type": mat["inst_type"]})
    cli_fails(capsys, ["train", "--task", "panoptic", "--data", str(tmp_path / "CoNSeP"), "--out",
                       str(tmp_path / "run"), *TINY], "test_2.mat", "differ in size")


def test_sliding_window_panoptic_prediction_keeps_size_and_position():
    """A 300x260 image predicted by 64x64 tiles: the decoded nucleus lies where the image shows it."""
    import keras

    from Functions.inference.panoptic import predict_panoptic
    from Functions.inference.predictor import Predictor

    inp = keras.Input((64, 64, 3))
    conv = keras.layers.Conv2D(4, 1, activation="softmax")     # background, boundary, type 1, type 2
    model = keras.Model(inp, conv(inp))
    w = np.zeros((1, 1, 3, 4), np.float32)
    w[0, 0, 0] = (-10, 0, 10, 0)                               # red: type-1 interior; else background
    conv.set_weights([w, np.array([5, -10, -5, -10], np.float32)])
    image = np.zeros((260, 300, 3), np.uint8)
    image[101:141, 203:240, 0] = 255                           # a 40 x 37 nucleus straddling tile borders
    predictor = Predictor(model=model, channels=3, input_size=(64, 64), patch_size=64, overlap=0.5)
    (inst, cls), = predict_panoptic(predictor, [image], 2, 0)
    assert inst.shape == cls.shape == (260, 300)
    assert len(np.unique(inst)) == 2
    rows, cols = np.nonzero(inst)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (101, 140, 203, 239)
    assert (cls[inst > 0] == 1).all() and (cls[inst == 0] == 0).all()


def test_a_generic_train_labels_folder_is_not_taken_for_consep(tmp_path, monkeypatch):
    """train/images + train/labels of PNG masks stays a generic paired-folder data set (nothing converted)."""
    import cv2

    from Functions.data.discovery import find_samples
    from Functions.data.splits import has_layout_split

    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "d"))
    for sub in ("images", "labels"):
        (tmp_path / "ds" / "Train" / sub).mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "ds" / "Train" / "images" / f"a{i}.png"), np.full((8, 8, 3), 50, np.uint8))
        cv2.imwrite(str(tmp_path / "ds" / "Train" / "labels" / f"a{i}.png"), np.zeros((8, 8), np.uint8))
    samples = find_samples(tmp_path / "ds")
    assert [s.id for s in samples] == ["a0", "a1", "a2"]
    assert {s.split for s in samples} == {"train"} and not has_layout_split([s.split for s in samples])  # a Train/ folder alone is no split
    assert not (tmp_path / "d").exists()
