"""The benchmark's code paths with tiny settings (no timing is asserted: the machine may be shared)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from Functions.apps.benchmark import (REQUIRED_KEYS, BenchmarkSettings, markdown_table,
                                 matmul_gflops, peak_rss_mb, pipeline_images_per_second, plain_unet,
                                 run_benchmark, synthetic_data)
from Functions.base.errors import UserError

TINY = dict(image_size=32, batch_size=2, steps=2, repeats=1, predict_batches=1, pipeline_epochs=1,
            roofline_size=64, model_options={"base_filters": 4, "depth": 2})


@pytest.mark.parametrize("options", [{}, {"base_filters": 8, "depth": 2}, {"depth": 3, "batch_norm": False}])
def test_plain_unet_matches_our_unet_layer_for_layer(options):
    from Functions.models import build_unet

    ours = build_unet((32, 32, 1), **options)
    plain = plain_unet((32, 32, 1), **options)
    assert plain.count_params() == ours.count_params()
    conv = lambda m: sorted(tuple(w.shape) for w in m.weights if len(w.shape) == 4)  # noqa: E731
    assert conv(plain) == conv(ours)
    if not options:
        assert plain.count_params() == 1_945_233       # the figure in build_unet's docstring


def test_synthetic_data_shapes_and_values():
    x, y = synthetic_data(3, image_size=24, channels=3, seed=1)
    assert x.shape == (3, 24, 24, 3) and x.dtype == np.float32
    assert y.shape == (3, 24, 24, 1) and y.dtype == np.uint8
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) <= {0, 1} and y.any()
    # foreground is brighter than background on average (discs on a dark field)
    assert x[..., 0][y[..., 0] == 1].mean() > x[..., 0][y[..., 0] == 0].mean() + 0.3
    x2, y2 = synthetic_data(3, image_size=24, channels=3, seed=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_matmul_gflops_and_rss():
    rate = matmul_gflops(size=64, repeats=1, library="numpy")
    assert math.isfinite(rate) and rate > 0
    assert matmul_gflops(size=32, repeats=1, library="backend") > 0
    with pytest.raises(ValueError, match="numpy"):
        matmul_gflops(size=8, library="cuda")
    assert peak_rss_mb() > 10                     # a Python process with numpy holds more than 10 MiB


def test_pipeline_counts_every_image():
    class Batches:
        def __init__(self):
            self.calls, self.epochs = 0, 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            self.calls += 1
            n = 2 if i < 2 else 1                      # 5 images per pass
            return np.zeros((n, 4, 4, 1)), np.zeros((n, 4, 4, 1))

        def on_epoch_end(self):
            self.epochs += 1

    b = Batches()
    rate = pipeline_images_per_second(b, epochs=2, workers=2, min_seconds=0.0)
    assert rate > 0 and b.calls == 6 and b.epochs == 2


def test_settings_are_checked():
    with pytest.raises(UserError, match="--steps"):
        BenchmarkSettings(steps=1).validate()
    with pytest.raises(UserError, match="--channels"):
        BenchmarkSettings(channels=2).validate()
    with pytest.raises(UserError, match="segmentation model"):
        run_benchmark(["resnet18"], BenchmarkSettings(**TINY))
    with pytest.raises(UserError, match="segmentation model"):
        run_benchmark(["no_such_net"], BenchmarkSettings(**TINY))


@pytest.mark.backend
def test_cli_json_reports_consistent_figures_and_writes_the_table(tmp_path, capsys, monkeypatch):
    """One tiny run through the CLI: every figure present, positive and consistent with the others."""
    import keras

    from Functions.cli import main

    from Functions.engine import jit

    monkeypatch.setenv("MIP_JIT_CACHE", str(tmp_path / "jit.json"))      # never the user's cache
    monkeypatch.delenv("MIP_JIT_PROBE", raising=False)
    # the probe's wiring, not its timing: a fake measurement (seconds per step) that prefers the plain graph
    monkeypatch.setattr(jit, "measure_step_seconds", lambda model, fn, batch, flag, **k: 0.3 if flag else 0.1)
    from Functions.models import build_model
    from Functions.models.flops import count_flops

    out = tmp_path / "bench.md"
    rc = main(["benchmark", "--model", "unet", "--image-size", "32", "--batch-size", "2", "--steps", "2",
               "--repeats", "1", "--roofline-size", "64", "--model-option", "base_filters=4",
               "--model-option", "depth=2", "--json", "--out", str(out)])
    assert rc == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert set(REQUIRED_KEYS) <= set(r) and r["model"] == "unet"
    reference = build_model("unet", input_shape=(32, 32, 1), num_classes=1, base_filters=4, depth=2)
    assert r["parameters"] == reference.count_params()
    assert r["gflop_per_image"] == pytest.approx(count_flops(reference) / 1e9)
    for key in ("train_images_per_second", "predict_images_per_second", "pipeline_images_per_second",
                "pipeline_plain_images_per_second", "roofline_gflops", "baseline_train_images_per_second",
                "baseline_predict_images_per_second"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert r["train_gflops"] == pytest.approx(3 * r["gflop_per_image"] * r["train_images_per_second"])
    assert r["roofline_fraction"] == pytest.approx(r["train_gflops"] / r["roofline_gflops"])
    assert r["speedup_vs_baseline"] == pytest.approx(r["train_images_per_second"]
                                                     / r["baseline_train_images_per_second"])
    assert r["roofline_gflops"] == max(r["roofline_numpy_gflops"], r["roofline_backend_gflops"])
    assert len(r["train_samples"]) == 1 and r["peak_rss_mb"] > 0
    assert r["predict_vs_baseline"] == pytest.approx(r["predict_images_per_second"]
                                                     / r["baseline_predict_images_per_second"])
    assert r["predict_vs_keras"] == pytest.approx(r["predict_images_per_second"]
                                                  / r["keras_predict_images_per_second"])
    assert r["versions"]["keras"] == keras.__version__ and r["versions"]["numpy"] == np.__version__
    assert r["device"] and r["backend"] == keras.backend.backend()
    if keras.backend.backend() == "tensorflow":                         # the XLA probe ran, its choice was used
        probe = r["jit_probe"]
        assert probe["cached"] is False and probe["xla_seconds"] == 0.3 and probe["graph_seconds"] == 0.1
        assert r["jit_compile"] is False and probe["jit"] is False
        assert list(json.loads((tmp_path / "jit.json").read_text()).values())[0]["jit"] is False   # cached
    else:
        assert r["jit_probe"] is None
    text = out.read_text()
    assert "| unet | 7,637 |" in text and "--image-size 32" in text     # 7,637 = the tiny U-Net's parameters
    table = markdown_table([r, {**r, "model": "second", "baseline_train_images_per_second": None}])
    rows = table.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| unet |") and rows[3].startswith("| second |")
    assert all(row.count("|") == rows[0].count("|") for row in rows)
    assert "| - |" in rows[3]                                              # a missing figure prints as '-'


def test_cli_rejects_a_classifier(capsys):
    from Functions.cli import main

    assert main(["benchmark", "--model", "resnet18", "--image-size", "32"]) == 2
    assert "segmentation model" in capsys.readouterr().err


@pytest.mark.backend
def test_default_report_goes_to_runs_and_tracked_files_stay_untouched(tmp_path, capsys, monkeypatch):
    """No --out: the table goes to a new file under runs/ (ignored by git); `git status` is the same after."""
    import shutil
    import subprocess
    from pathlib import Path

    from Functions.base.paths import repo_root
    from Functions.cli import main

    root = repo_root()
    if root is None or shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs the git checkout")
    monkeypatch.setenv("MIP_JIT_PROBE", "0")
    status = lambda: subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,  # noqa: E731
                                    text=True, check=True).stdout
    before = status()
    rc = main(["benchmark", "--model", "unet", "--image-size", "32", "--batch-size", "2", "--steps", "2",
               "--repeats", "1", "--roofline-size", "64", "--no-baseline", "--model-option", "base_filters=4",
               "--model-option", "depth=2"])
    assert rc == 0
    written = Path(capsys.readouterr().out.strip().splitlines()[-1].split("table written to ", 1)[1])
    try:
        assert written.parent == root / "runs" and written.name.startswith("benchmark-") and written.suffix == ".md"
        assert "| unet | 7,637 |" in written.read_text()
        assert status() == before
    finally:
        written.unlink(missing_ok=True)
