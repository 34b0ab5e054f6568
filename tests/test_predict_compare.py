"""predict (mixed sizes, the run's preprocessing), evaluate --run (per-image CSV, TTA, worst cases) and compare."""

import json

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from Functions.cli import main
from Functions.metrics.segmentation import METRIC_COLUMNS
from Functions.engine.segmentation import TrainConfig
from Functions.engine.tasks import train

# XLA compilation costs more than it saves on these tiny runs, except on JAX (whose non-jit mode is eager)
JIT = keras.backend.backend() == "jax"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from helpers import write_blob_pairs

    return write_blob_pairs(tmp_path_factory.mktemp("pc_data"), seed=100, names=[f"img_{i:02d}" for i in range(12)])


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pc_runs") / "run"
    train(TrainConfig(data=str(data_dir), image_size=32, epochs=3, batch_size=4, out=str(out), learning_rate=1e-2,
                      model_options={"base_filters": 4, "depth": 2}, jit_compile=JIT, verbose=0, progress_every=0))
    return out


@pytest.fixture
def mixed_images(tmp_path):
    """Four images of different sizes, channels and formats, each with a bright disc."""
    folder = tmp_path / "new_images"
    folder.mkdir()
    specs = {"gray.png": (50, 70, 1, np.uint8), "colour.jpg": (123, 97, 3, np.uint8),
             "deep.tif": (300, 200, 1, np.uint16), "alpha.png": (40, 41, 4, np.uint8)}
    for name, (h, w, c, dtype) in specs.items():
        yy, xx = np.mgrid[:h, :w]
        disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 4) ** 2
        top = 60000 if dtype == np.uint16 else 220
        img = np.where(disc, top, top // 6).astype(dtype)
        img = np.repeat(img[..., None], c, axis=-1) if c > 1 else img
        if c == 4:
            img[..., 3] = 255
        cv2.imwrite(str(folder / name), img)
    return folder, {n: s[:2] for n, s in specs.items()}


@pytest.mark.backend
def test_predict_keeps_every_image_size_and_name(run_dir, mixed_images, tmp_path, capsys):
    folder, sizes = mixed_images
    out = tmp_path / "masks"
    assert main(["predict", "--model", str(run_dir / "model.keras"), "--images", str(folder), "--out", str(out),
                 "--overlay"]) == 0
    assert "4 mask(s)" in capsys.readouterr().out
    for name, (h, w) in sizes.items():
        stem = name.rsplit(".", 1)[0]
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w), name
        assert set(np.unique(mask)) <= {0, 255}
        overlay = cv2.imread(str(out / "overlays" / f"{stem}.png"))
        assert overlay.shape == (h, w, 3)
    table = pd.read_csv(out / "predictions.csv")
    assert sorted(table["mask"]) == sorted(n.rsplit(".", 1)[0] + ".png" for n in sizes)
    assert {(r.height, r.width) for r in table.itertuples()} == set(sizes.values())


@pytest.mark.backend
def test_predict_one_file_uses_the_run_settings(run_dir, mixed_images, tmp_path):
    from Functions.inference.predictor import load_predictor, run_settings

    folder, _ = mixed_images
    out = tmp_path / "one"
    assert main(["predict", "--model", str(run_dir), "--images", str(folder / "colour.jpg"), "--out", str(out),
                 "--threshold", "0.3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["colour.png", "predictions.csv"]
    settings = run_settings(run_dir / "model.keras")
    saved = json.loads((run_dir / "config.json").read_text())
    assert settings["normalization"] == saved["normalization"] == "minmax"
    assert settings["channels"] == saved["channels"] == 1
    predictor = load_predictor(run_dir / "model.keras")
    assert predictor.channels == 1 and predictor.input_size == (32, 32)
    x = predictor.prepare(cv2.imread(str(folder / "colour.jpg"))[..., ::-1])
    assert x.shape == (32, 32, 1) and x.dtype == np.float32
    assert x.min() == pytest.approx(0.0) and x.max() == pytest.approx(1.0)     # minmax, as in training


@pytest.mark.backend
def test_evaluate_run_matches_the_runs_own_test_metrics_and_reports_tta(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    out = run_dir / "evaluation-test"
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns) == ["image"] + METRIC_COLUMNS
    own = pd.read_csv(run_dir / "test_metrics.csv")
    # 32x32 images at --image-size 32: nothing is resized, so the numbers are the run's own test metrics
    assert table["image"].tolist() == own["image"].tolist()
    np.testing.assert_allclose(table["dice"], own["dice"], atol=1e-6)
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert summary.loc["mean", "dice"] == pytest.approx(table["dice"].mean())
    assert (out / "worst.png").stat().st_size > 1000 and (out / "report.md").is_file()

    assert main(["evaluate", "--run", str(run_dir), "--tta"]) == 0
    printed = capsys.readouterr().out
    assert "TTA effect on mean dice:" in printed
    tta = pd.read_csv(run_dir / "evaluation-test-tta" / "metrics.csv")
    plain_mean = table["dice"].mean()
    line = next(s for s in printed.splitlines() if s.startswith("TTA effect on mean dice"))
    assert f"{plain_mean:.4f} -> {tta['dice'].mean():.4f}" in line
    # a second evaluation never overwrites the first
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    assert (run_dir / "evaluation-test-1" / "metrics.csv").is_file()


@pytest.mark.backend
def test_evaluate_run_on_other_data_uses_all_images(run_dir, data_dir, tmp_path):
    out = tmp_path / "eval_all"
    assert main(["evaluate", "--run", str(run_dir), "--data", str(data_dir), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "metrics.csv")) == 12
    out2 = tmp_path / "eval_val"
    assert main(["evaluate", "--run", str(run_dir), "--split", "val", "--out", str(out2)]) == 0
    val = json.loads((run_dir / "split.json").read_text())["val"]
    assert len(pd.read_csv(out2 / "metrics.csv")) == len(val)


def test_compare_two_models_on_one_split(data_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "unet,resunet", "--data", str(data_dir), "--epochs", "1",
                 "--image-size", "32", "--batch-size", "4", "--model-option", "base_filters=4",
                 "--model-option", "depth=2", "--out", str(out), "--verbose", "0"] + ([] if JIT else ["--no-jit"])) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table["model"].tolist() == ["unet", "resunet"]
    for col in ("dice", "iou", "hd95", "parameters", "seconds_per_epoch", "inference_ms_per_image"):
        assert table[col].notna().all(), col
    assert (table["parameters"] > 0).all() and table["parameters"].nunique() == 2
    for name in ("unet", "resunet"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        row = table[table["model"] == name].iloc[0]
        assert row["dice"] == pytest.approx(metrics["dice"]) and row["parameters"] == metrics["parameters"]
        assert (out / name / "report.md").is_file()
    assert (out / "unet" / "split.json").read_text() == (out / "resunet" / "split.json").read_text()
    md = (out / "comparison.md").read_text()
    assert "| unet |" in md and "| resunet |" in md and "![Comparison](comparison.png)" in md
    assert (out / "comparison.png").stat().st_size > 1000
