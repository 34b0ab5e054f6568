"""``train`` end to end on the JAX and PyTorch backends (each in a fresh subprocess).

The rest of the suite runs on TensorFlow; CI also reruns the tests marked
``backend`` (models, losses, metrics, pipeline, one training) under JAX and
PyTorch.  Here the whole command runs under each other backend: a tiny U-Net,
two epochs on 32x32 blobs.  The run folder must be complete, and the model it
saved must load in this (TensorFlow) process and reproduce the test Dice the
run reported: a ``.keras`` file is portable between backends.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["jax", "torch"]


def _env(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    env.pop("XLA_FLAGS", None)
    return env


def _needs(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'jax[cpu]' / torch==2.13.0)")


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    """16 blob image/mask pairs at 32x32 (PNG)."""
    from helpers import write_blob_pairs

    return write_blob_pairs(tmp_path_factory.mktemp("backends") / "data", n=16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_command_on_backend(backend, blobs, tmp_path):
    _needs(backend)
    out = tmp_path / f"run_{backend}"
    cmd = [sys.executable, "-m", "Functions", "train", "--data", str(blobs), "--image-size", "32", "--epochs", "2",
           "--batch-size", "4", "--model-option", "base_filters=4", "--model-option", "depth=2",
           "--val-fraction", "0.25", "--test-fraction", "0.25", "--progress-every", "1", "--workers", "1",
           "--verbose", "2", "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(backend), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"backend {backend}" in proc.stdout

    for name in ("config.json", "split.json", "model.keras", "history.csv", "metrics.json", "test_metrics.csv",
                 "curves.png", "predictions.png", "progress.png", "report.md"):
        assert (out / name).is_file(), f"{name} missing from the {backend} run"
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [0, 1]
    for col in ("loss", "val_loss", "dice", "val_dice", "iou", "mean_dice"):
        assert np.isfinite(hist[col]).all(), col
    assert (hist[["dice", "val_dice", "iou"]].to_numpy() >= 0).all()
    assert (hist[["dice", "val_dice", "iou"]].to_numpy() <= 1).all()
    metrics = json.loads((out / "metrics.json").read_text())
    split = json.loads((out / "split.json").read_text())
    assert metrics["n_images"] == len(split["test"]) == 4
    assert metrics["epochs_trained"] == 2
    assert 0.0 <= metrics["dice"] <= 1.0

    # The saved model loads here (TensorFlow) and gives the Dice the run reported on its test split.
    from Functions.data.discovery import find_samples
    from Functions.evaluation.evaluate import score_masks
    from Functions.inference.tta import predict_probabilities, probabilities_to_masks
    from Functions.data.pipeline import load_arrays
    from Functions.inference.predictor import load_model_file

    model, _ = load_model_file(out / "model.keras")
    assert model.count_params() == metrics["parameters"]
    test = [s for s in find_samples(blobs) if str(s.image) in set(split["test"])]
    x, y = load_arrays(test, 32, 1, "minmax")
    table = score_masks(y, probabilities_to_masks(predict_probabilities(model, x), 0.5))
    assert abs(float(table["dice"].mean()) - metrics["dice"]) < 0.01


def test_distribute_on_torch_is_a_clear_error(blobs, tmp_path):
    _needs("torch")
    cmd = [sys.executable, "-m", "Functions", "train", "--data", str(blobs), "--image-size", "32", "--epochs", "1",
           "--distribute", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=_env("torch"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith("error: --distribute is not supported on the torch backend")
    assert "KERAS_BACKEND=jax" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()                 # nothing written before the error


# Every registered architecture, built small, two training steps and a prediction, in one subprocess per
# backend.  Prints one JSON line per model.  Slow: about 1 CPU-minute on PyTorch, 5 on JAX (XLA compiles
# the ImageNet backbones), so CI's JAX/PyTorch passes keep to the subset marked `backend` in test_models.py,
# chosen to hold every layer type; on TensorFlow test_models.py builds, trains, saves and reloads every model
# in CI (the two full-width encoder U-Nets through unet_mobilenetv2's path).  This matrix is a duplicate of
# those paths, run with --run-slow before a release.
ALL_MODELS_SCRIPT = r"""
import json, sys, time
import numpy as np, keras
from Functions.models import available_models, build_model
from Functions.models.registry import default_options, get_spec, offline_options

TINY = {"base_filters": 8, "depth": 2, "decoder_filters": (16, 8, 8, 8, 8), "alpha": 0.35}
segmentation = set(available_models("segmentation"))
x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
jit = keras.backend.backend() == "jax"       # XLA compiles of the big backbones would dominate on TensorFlow
for name in available_models():
    start = time.time()
    accepted = default_options(get_spec(name).builder)
    options = {**{k: v for k, v in TINY.items() if k in accepted}, **offline_options(name)}
    keras.utils.set_random_seed(0)
    if name in segmentation:
        model = build_model(name, (32, 32, 1), 1, **options)
        n = len(model.outputs)
        y = (x > 0.5).astype("float32")
        model.compile(optimizer="adam", loss=["binary_crossentropy"] * n if n > 1 else "binary_crossentropy",
                      jit_compile=jit)
        y = tuple([y] * n) if n > 1 else y
    else:
        model = build_model(name, (32, 32, 1), 2, **options)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=jit)
        y = np.array([0, 1])
    first = float(np.ravel(model.train_on_batch(x, y))[0])
    last = float(np.ravel(model.train_on_batch(x, y))[0])
    pred = model.predict(x, verbose=0)
    pred = pred[-1] if isinstance(pred, (list, tuple)) else pred
    print(json.dumps({"model": name, "first": first, "last": last, "shape": list(pred.shape),
                      "seconds": round(time.time() - start, 1)}), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", *BACKENDS])
def test_every_architecture_trains_on_backend(backend):
    _needs(backend)
    from Functions.models import available_models

    proc = subprocess.run([sys.executable, "-c", ALL_MODELS_SCRIPT], env=_env(backend), cwd=REPO,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == available_models()
    classification = set(available_models("classification"))
    for r in rows:
        assert np.isfinite([r["first"], r["last"]]).all(), r
        assert r["shape"] == ([2, 2] if r["model"] in classification else [2, 32, 32, 1]), r
