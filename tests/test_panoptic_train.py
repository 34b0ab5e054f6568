"""``train --task panoptic`` targets, decoding, and a tiny run predicted in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.cli import main
from Functions.data.instance_targets import panoptic_target
from Functions.data.panoptic_io import infer_panoptic_classes, read_panoptic_folder
from Functions.inference.panoptic import decode_panoptic

REPO = Path(__file__).resolve().parents[1]


def test_panoptic_target_channels():
    inst = np.zeros((8, 10), int)
    inst[1:6, 1:6] = 3                      # a type-2 object, 5x5: rim boundary, 3x3 interior
    cls = np.full((8, 10), 4)               # stuff (class 4 with T = 2) everywhere else
    cls[:, 8:] = 0                          # unlabelled background on the right
    cls[inst == 3] = 2
    t = panoptic_target(inst, cls, num_types=2)
    assert t[3, 3] == 3 and t[1, 1] == 1 and t[1, 3] == 1          # interior = type + 1; rim = boundary (1)
    assert (t[2:5, 2:5] == 3).all() and (t[inst == 3] != 3).sum() == 16
    assert t[7, 0] == 5 and t[0, 9] == 0                           # stuff 4 -> channel 5; background 0
    cls[3, 3] = 0
    with pytest.raises(ValueError, match="type"):
        panoptic_target(inst, cls, num_types=2)


def test_decode_panoptic_majority_type_and_stuff():
    h, w, T, S = 12, 16, 2, 1
    p = np.zeros((h, w, 2 + T + S), np.float32)
    p[..., 4] = 0.9                          # stuff (class 3) on the left
    p[..., 0] = 0.1
    p[:, 9:, 0], p[:, 9:, 4] = 0.8, 0.2      # background on the right
    for r0, c0 in ((2, 2), (6, 10)):         # two 4x4 objects: interior mostly type 1, some type-2 pixels
        p[r0:r0 + 4, c0:c0 + 4] = 0
        p[r0:r0 + 4, c0:c0 + 4, 2] = 0.7
        p[r0:r0 + 4, c0:c0 + 4, 3] = 0.3
    p[6:8, 10:14, 2], p[6:8, 10:14, 3] = 0.2, 0.8   # object 2: 8 of 16 pixels type 2 ...
    p[8, 10:14, 2], p[8, 10:14, 3] = 0.1, 0.9       # ... 12 of 16 now: majority type 2
    inst, cls = decode_panoptic(p, T, S, {"min_size": 1, "min_marker_size": 1})
    assert len(np.unique(inst)) == 3
    a, b = inst[3, 3], inst[7, 11]
    assert a and b and a != b
    assert (cls[inst == a] == 1).all() and (cls[inst == b] == 2).all()
    assert cls[0, 0] == 3 and cls[0, 15] == 0
    with pytest.raises(ValueError, match="5 channels"):
        decode_panoptic(p[..., :4], T, S)


def test_infer_panoptic_classes():
    inst = np.array([[1, 0, 0], [2, 0, 0]])
    cls = np.array([[1, 3, 4], [2, 0, 4]])
    assert infer_panoptic_classes([(inst, cls)]) == (2, 2)
    with pytest.raises(UserError, match="classes.json"):
        infer_panoptic_classes([(inst, np.array([[1, 5, 4], [2, 0, 4]]))])


TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--model-option", "base_filters=4",
        "--model-option", "depth=2", "--progress-every", "0", "--verbose", "0", "--lr-schedule", "constant"]


def test_train_panoptic_then_predict_in_a_new_process_and_evaluate(tmp_path, capsys):
    from Functions.data.synthetic import write_panoptic_sample

    write_panoptic_sample(tmp_path, n=8, size=64, seed=2)
    data = tmp_path / "panoptic"
    run = tmp_path / "run"
    assert main(["train", "--task", "panoptic", "--data", str(data), "--out", str(run), "--loss", "cce_dice",
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "bPQ" in out and "mPQ+" in out and "3 object type(s)" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "panoptic" and cfg["num_classes"] == 7 and cfg["object_types"] == 3
    assert cfg["stuff_classes"] == 2 and cfg["panoptic_names"][0] == "lymphocyte"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("mpq_plus", "mean_stuff_iou"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["per_class"]) == {"lymphocyte", "epithelial", "spindle"}
    # predict in a fresh interpreter: model.keras loads in safe mode there, task read from config.json
    pred = tmp_path / "pred"
    env = dict(os.environ, PYTHONPATH=str(REPO / "Code"))
    proc = subprocess.run([sys.executable, "-m", "Functions", "predict", "--model", str(run), "--images",
                           str(data / "images"), "--out", str(pred), "--overlay"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    maps = read_panoptic_folder(pred)
    assert sorted(maps) == [f"panoptic_{i:03d}" for i in range(8)]
    inst_png = cv2.imread(str(pred / "instances" / "panoptic_000.png"), cv2.IMREAD_UNCHANGED)
    assert inst_png.dtype == np.uint16 and inst_png.shape == (64, 64)
    for inst, cls in maps.values():
        assert cls.max() <= 5 and not ((inst > 0) & ((cls < 1) | (cls > 3))).any()   # objects carry a type
        assert not ((inst == 0) & (cls >= 1) & (cls <= 3)).any()                      # types only on objects
    overlay = cv2.imread(str(pred / "overlays" / "panoptic_000.png"))
    assert overlay.shape[1] == 64 and overlay.shape[0] > 64            # the legend strip below the image
    assert json.loads((pred / "classes.json").read_text())["class_names"][3] == "stroma"
    # the predictions score against the truth with evaluate --task panoptic
    ev = tmp_path / "ev"
    assert main(["evaluate", "--task", "panoptic", "--masks", str(data), "--predictions", str(pred),
                 "--num-classes", "3", "--stuff-classes", "2", "--out", str(ev)]) == 0
    summary = json.loads((ev / "summary.json").read_text())
    assert summary["n_images"] == 8 and 0.0 <= summary["mpq_plus"] <= 1.0


def test_predict_task_panoptic_refuses_another_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "instance"}))
    import keras

    inp = keras.Input((16, 16, 3))
    keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp)).save(run / "model.keras")
    img = tmp_path / "imgs"
    img.mkdir()
    cv2.imwrite(str(img / "a.png"), np.zeros((16, 16, 3), np.uint8))
    assert main(["predict", "--task", "panoptic", "--model", str(run), "--images", str(img), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train --task panoptic" in err[0]


def test_train_panoptic_refuses_a_class_above_classes_json(tmp_path, capsys):
    from Functions.data.synthetic import write_panoptic_sample

    write_panoptic_sample(tmp_path, n=4, size=64, seed=2)
    data = tmp_path / "panoptic"
    (data / "classes.json").write_text(json.dumps({"num_classes": 3, "stuff_classes": 1}))
    assert main(["train", "--task", "panoptic", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds class 5" in err[0] and "classes.json" in err[0], err
    assert not (tmp_path / "run" / "model.keras").exists()
