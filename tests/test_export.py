"""Export (ONNX, LiteRT float32 / int8), the exported runtimes in `predict`, and video prediction.

The converters are the optional ``[deploy]`` extra; without it these tests skip.  One tiny UNeXt run
(64x64, random weights, one training step) is exported once per module and shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from helpers import cli_fails, write_blob_pairs

from Functions.cli import main
from Functions.inference.predictor import load_predictor

SIZE = 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder (model.keras + config.json) of a tiny UNeXt and a folder of blob images."""
    from Functions.models import build_model

    root = tmp_path_factory.mktemp("export")
    write_blob_pairs(root / "data", n=4, size=SIZE)
    keras.utils.set_random_seed(0)
    model = build_model("unext", (SIZE, SIZE, 1), 1, filters=(4, 8, 16, 20, 24))
    x = np.random.default_rng(0).random((2, SIZE, SIZE, 1)).astype("float32")
    model.compile(optimizer="adam", loss="binary_crossentropy", run_eagerly=True)
    model.train_on_batch(x, (x > 0.5).astype("float32"))
    (root / "run").mkdir()
    model.save(root / "run" / "model.keras")
    (root / "run" / "config.json").write_text(json.dumps({"normalization": "minmax", "threshold": 0.5,
                                                          "image_size": SIZE, "channels": 1,
                                                          "data": str(root / "data"), "model": "unext"}))
    files = [str(p) for p in sorted((root / "data" / "images").iterdir())]
    (root / "run" / "split.json").write_text(json.dumps({"train": files[:2], "val": [], "test": files[2:]}))
    return root


@pytest.fixture(scope="module")
def onnx_export(run_dir):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from Functions.apps.export import export_run

    return export_run(run_dir / "run", "onnx", images=run_dir / "data" / "images")


def test_onnx_export_matches_keras_and_is_never_overwritten(onnx_export, run_dir, capsys):
    report = onnx_export
    target = run_dir / "run" / "export" / "model.onnx"
    assert target.is_file() and report["bytes"] == target.stat().st_size
    assert json.loads(Path(f"{target}.check.json").read_text()) == report
    assert report["images"] == 4 and report["max_abs_diff"] < 1e-4 and report["dice"] == 1.0
    before = target.read_bytes()
    cli_fails(capsys, ["export", str(run_dir / "run"), "--format", "onnx", "--images",
                       str(run_dir / "data" / "images")], "model.onnx already exists", "never overwritten")
    assert target.read_bytes() == before


def test_predict_runtime_onnx_agrees_with_keras(onnx_export, run_dir):
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[..., None]
              for p in sorted((run_dir / "data" / "images").iterdir())]
    images.append(np.random.default_rng(3).integers(0, 255, (50, 90, 1)).astype(np.uint8))  # another size
    keras_probs = load_predictor(run_dir / "run").probabilities(images)
    onnx = load_predictor(run_dir / "run", runtime="onnx")
    assert onnx.model.runtime == "onnx"
    onnx_probs = onnx.probabilities(images)
    for a, b in zip(keras_probs, onnx_probs):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-4)
    # A model whose probabilities differ would be caught: the check is not trivially met.
    assert max(float(np.abs(p - 0.5).max()) for p in keras_probs) > 1e-3


def test_runtime_that_does_not_match_the_file_is_one_line(onnx_export, run_dir, capsys, tmp_path):
    run = run_dir / "run"
    images = str(run_dir / "data" / "images")
    cli_fails(capsys, ["predict", "--model", str(run / "model.keras"), "--images", images, "--out",
                       str(tmp_path / "a"), "--runtime", "onnx"], "--runtime onnx runs .onnx files",
              "use --runtime keras")
    cli_fails(capsys, ["predict", "--model", str(run / "export" / "model.onnx"), "--images", images, "--out",
                       str(tmp_path / "b")], "exported onnx file", "--runtime onnx")
    cli_fails(capsys, ["predict", "--model", str(run), "--images", images, "--out", str(tmp_path / "c"),
                       "--runtime", "litert"], "export/model.tflite", "--format litert")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_export_arguments_are_checked_before_any_work(run_dir, capsys):
    run = str(run_dir / "run")
    cli_fails(capsys, ["export", run, "--format", "onnx", "--quantize", "int8"], "applies to --format litert")
    cli_fails(capsys, ["export", run, "--format", "litert", "--quantize", "int8"], "needs --calibration")
    cli_fails(capsys, ["export", run, "--format", "litert"], "--images")


def test_missing_converter_names_the_extra(run_dir, monkeypatch, tmp_path):
    import sys

    from Functions.apps.export import export_run
    from Functions.base.errors import UserError

    monkeypatch.setitem(sys.modules, "tf2onnx", None)          # as if not installed: import raises ImportError
    with pytest.raises(UserError, match=r"needs the package tf2onnx; .*pip install -e \.\[deploy\]"):
        export_run(run_dir / "run", "onnx", images=run_dir / "data" / "images")


@pytest.mark.slow
def test_saved_model_matches_keras_in_a_new_process(run_dir):
    """The SavedModel export checks itself, and a new process running only TensorFlow gets the same numbers."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    from Functions.apps.export import export_run

    report = export_run(run_dir / "run", "saved_model", images=run_dir / "data" / "images")
    target = run_dir / "run" / "export" / "saved_model"
    assert (target / "saved_model.pb").is_file() and report["file"] == "saved_model"
    assert report["max_abs_diff"] < 1e-4 and report["dice"] == 1.0
    x = np.random.default_rng(5).random((1, SIZE, SIZE, 1)).astype("float32")
    np.save(run_dir / "x.npy", x)
    code = ("import sys, numpy as np, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
            "y = m.serve(tf.constant(np.load(sys.argv[2]))); "
            "y = list(y.values())[-1] if isinstance(y, dict) else y; np.save(sys.argv[3], np.asarray(y))")
    subprocess.run([sys.executable, "-c", code, str(target), str(run_dir / "x.npy"), str(run_dir / "y.npy")],
                   check=True)
    expected = keras.saving.load_model(run_dir / "run" / "model.keras", safe_mode=True).predict(x, verbose=0)
    got = np.load(run_dir / "y.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert float(np.abs(expected - 0.5).max()) > 1e-3          # not a constant output that any file would match


@pytest.mark.slow
def test_litert_float16_is_half_the_size_and_close(run_dir):
    pytest.importorskip("ai_edge_litert")
    from Functions.apps.export import export_file, export_run

    images = run_dir / "data" / "images"
    full_file = export_file(run_dir / "run", "litert")
    full = (json.loads(Path(f"{full_file}.check.json").read_text()) if full_file.exists()
            else export_run(run_dir / "run", "litert", images=images))
    half = export_run(run_dir / "run", "litert", quantize="float16", images=images)
    assert half["file"] == "model-float16.tflite"
    params = keras.saving.load_model(run_dir / "run" / "model.keras").count_params()
    # float32 -> float16 saves 2 bytes a weight; at least 1 byte a parameter on average (norms may stay float32)
    assert full["bytes"] - half["bytes"] > params
    assert half["max_abs_diff"] < 1e-2 and half["dice"] > 0.95


@pytest.mark.slow
def test_litert_float32_and_int8(run_dir):
    pytest.importorskip("ai_edge_litert")
    from Functions.apps.export import export_run

    images = run_dir / "data" / "images"
    full = export_run(run_dir / "run", "litert", images=images)
    assert full["max_abs_diff"] < 1e-4 and full["dice"] == 1.0
    int8 = export_run(run_dir / "run", "litert", quantize="int8", calibration=images)
    assert int8["file"] == "model-int8.tflite" and int8["bytes"] < full["bytes"]
    assert 1e-4 < int8["max_abs_diff"] < 0.2           # quantised: close, not identical


def test_video_overlay_smoothing_and_bad_video(run_dir, tmp_path, capsys):
    from Functions.data.synthetic_video import make_clip, write_video
    from Functions.inference.video import predict_video

    frames, masks = make_clip(6, (80, 96), seed=1)
    assert frames.shape == (6, 80, 96) and masks.shape == frames.shape and set(np.unique(masks)) == {0, 1}
    assert frames[masks == 1].mean() < frames[masks == 0].mean() - 30     # the lesion is dark
    assert not np.array_equal(masks[0], masks[-1])                          # and it moves
    clip = write_video(tmp_path / "clip.avi", frames)
    stats = predict_video(run_dir / "run", clip, tmp_path / "out.avi", smooth=0.5)
    assert stats["frames"] == 6 and (stats["width"], stats["height"]) == (96, 80) and stats["fps"] > 0
    capture = cv2.VideoCapture(str(tmp_path / "out.avi"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 6
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    cli_fails(capsys, ["predict", "--model", str(run_dir / "run"), "--video", str(bad), "--out",
                       str(tmp_path / "o.mp4")], "broken.mp4 could not be decoded")
    cli_fails(capsys, ["predict", "--model", str(run_dir / "run"), "--video", str(clip), "--out",
                       str(tmp_path / "out.avi")], "already exists")
    cli_fails(capsys, ["predict", "--model", str(run_dir / "run"), "--video", str(clip), "--out",
                       str(tmp_path / "p.mp4"), "--smooth", "1.5"], "--smooth")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "p.mp4").exists()


def test_smoothing_is_an_exponential_moving_average(run_dir, tmp_path, monkeypatch):
    """Frames alternate between two probability maps; with alpha the mask follows the EMA, not the last frame."""
    from Functions.inference import predictor as predictor_module
    from Functions.inference.video import predict_video

    frames = np.zeros((4, 64, 64), np.uint8)
    clip = tmp_path / "c.avi"
    from Functions.data.synthetic_video import write_video

    write_video(clip, frames)
    values = iter([0.9, 0.1, 0.9, 0.1])
    seen = []

    def fake(self, images, batch_size=8, tta=False):
        return [np.full((64, 64, 1), next(values), np.float32)]

    import Functions.inference.tta as tta

    real_masks = tta.probabilities_to_masks

    def spy(probs, threshold=0.5):
        seen.append(float(probs.mean()))
        return real_masks(probs, threshold)

    monkeypatch.setattr(predictor_module.Predictor, "probabilities", fake)
    monkeypatch.setattr(tta, "probabilities_to_masks", spy)
    predict_video(run_dir / "run", clip, tmp_path / "o.avi", smooth=0.5)
    np.testing.assert_allclose(seen, [0.9, 0.5, 0.7, 0.4], atol=1e-6)


def test_latency_rows_and_plot(onnx_export, run_dir, tmp_path):
    """Keras and ONNX rows of one run: same test Dice (parity), Dice as computed by hand, a plot file."""
    from Functions.apps.latency import accuracy_speed_plot, latency_table, run_latency
    from Functions.metrics.segmentation import dice

    rows = run_latency(run_dir / "run", variants=(("keras", "float32"), ("onnx", "float32")), warmup=1, repeats=3,
                       log=lambda m: None)
    assert [(r["runtime"], r["precision"]) for r in rows] == [("keras", "float32"), ("onnx", "float32")]
    assert all(r["test_images"] == 2 and 0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert rows[0]["gflops"] == rows[1]["gflops"] > 0
    assert rows[1]["mb"] == pytest.approx((run_dir / "run" / "export" / "model.onnx").stat().st_size / 1e6)
    predictor = load_predictor(run_dir / "run")
    tests = sorted((run_dir / "data" / "images").iterdir())[2:]
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[..., None] for p in tests]
    truths = [cv2.imread(str(run_dir / "data" / "masks" / p.name), cv2.IMREAD_GRAYSCALE) > 0 for p in tests]
    by_hand = np.mean([dice(t, m > 0) for t, m in zip(truths, predictor.predict(images))])
    assert rows[0]["dice"] == pytest.approx(by_hand) and rows[1]["dice"] == pytest.approx(by_hand, abs=1e-6)
    assert "| unext | onnx | float32 |" in latency_table(rows)
    assert accuracy_speed_plot(rows, tmp_path / "plot.png").stat().st_size > 1000


def test_make_sample_video(tmp_path, capsys):
    assert main(["make-sample", "--out", str(tmp_path), "--kind", "video", "--n", "5"]) == 0
    capture = cv2.VideoCapture(str(tmp_path / "video" / "clip.mp4"))
    shapes = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        shapes.append(frame.shape)
    assert shapes == [(240, 320, 3)] * 5
    assert sorted(p.name for p in (tmp_path / "video" / "masks").iterdir()) == [f"frame_00{i}.png" for i in range(5)]
    cli_fails(capsys, ["make-sample", "--out", str(tmp_path), "--kind", "video"], "not empty", "--overwrite")
