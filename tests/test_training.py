"""The main job end to end on a tiny synthetic set: files, metrics, falling loss, no overwrite."""

import json
import subprocess
import sys

import keras
import pandas as pd
import pytest

from Functions.base.errors import UserError
from Functions.engine.segmentation import TrainConfig
from Functions.engine.tasks import train

# XLA compilation costs more than it saves on these tiny runs, except on JAX (whose non-jit mode is eager)
JIT = keras.backend.backend() == "jax"


@pytest.mark.backend
def test_train_writes_every_file_and_loss_falls(tiny_pairs_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=4, batch_size=4, out=str(out),
                      model_options={"base_filters": 8, "depth": 2}, learning_rate=5e-3, verbose=0)
    result = train(cfg)
    for name in ("model.keras", "history.csv", "metrics.json", "curves.png", "predictions.png", "report.md",
                 "config.json", "split.json", "test_metrics.csv"):
        assert (out / name).is_file(), name
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [0, 1, 2, 3]
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["dice"] <= 1 and 0 <= metrics["iou"] <= metrics["dice"] + 1e-9
    per_image = pd.read_csv(out / "test_metrics.csv")
    assert len(per_image) == metrics["n_images"] == 2
    assert metrics["dice"] == pytest.approx(per_image["dice"].mean())
    assert "![Training curves](curves.png)" in (out / "report.md").read_text()
    # the finish step (engine/finish.py) writes what the per-task copies before it wrote: these keys, columns
    # and report sections were read from a run of the code before issue 36
    assert set(metrics) == {"dice", "iou", "precision", "recall", "specificity", "pixel_accuracy", "boundary_f1",
                            "hd95", "assd", "dice_resized", "iou_resized", "scored_at", "resized_to", "split",
                            "n_images", "epochs_trained", "train_seconds", "parameters", "peak_rss_mb", "monitor",
                            "best_epoch", "best_value", "keep", "kept_epoch", "final_learning_rate", "summary"}
    assert list(per_image.columns) == ["image", "dice", "iou", "precision", "recall", "specificity", "pixel_accuracy",
                                       "boundary_f1", "hd95", "assd", "width", "height", "unit", "dice_resized"]
    assert [line for line in (out / "report.md").read_text().splitlines() if line.startswith("## ")] == [
        "## Settings", "## Data", "## Metrics", "## Figures"]
    # the same folder again: refused, and the first run is untouched
    before = (out / "model.keras").read_bytes()
    with pytest.raises(UserError, match="already holds files"):
        train(cfg)
    assert (out / "model.keras").read_bytes() == before


def test_cli_bad_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "Functions", "train", "--data", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: data folder") and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_config_validation():
    with pytest.raises(UserError, match="^epochs must be at least 1") as info:
        TrainConfig(epochs=0).validate()
    assert info.value.field == "epochs"
    with pytest.raises(UserError, match="not both"):
        TrainConfig(data="a", dataset="b").validate()


def test_keep_last_tests_the_final_epoch_and_says_so(tiny_pairs_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=3, batch_size=4, out=str(out), keep="last",
                      model_options={"base_filters": 4, "depth": 2}, jit_compile=JIT, verbose=0, seed=3)
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["keep"] == "last" and metrics["kept_epoch"] == metrics["epochs_trained"] == 3
    report = (out / "report.md").read_text()
    assert "last epoch kept (3 of 3, --keep last;" in report and "--keep last" in report.split("```bash")[1]


def test_report_and_history_have_the_new_sections(tiny_pairs_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=2, batch_size=4, out=str(out),
                      model_options={"base_filters": 4, "depth": 2}, jit_compile=JIT, verbose=0, progress_every=1,
                      seed=3)
    train(cfg)
    hist = pd.read_csv(out / "history.csv")
    assert {"learning_rate", "seconds", "val_dice"} <= set(hist.columns)
    assert ((hist["learning_rate"] > 0) & (hist["learning_rate"] <= 2e-3 * (1 + 1e-6))).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["monitor"] == "val_dice"
    assert metrics["best_value"] == pytest.approx(hist["val_dice"].max())
    assert metrics["best_epoch"] == int(hist["val_dice"].idxmax()) + 1
    assert metrics["keep"] == "best" and metrics["kept_epoch"] == metrics["best_epoch"]
    report = (out / "report.md").read_text()
    assert f"Dice {metrics['dice']:.4f}" in report
    # the flags in the config's section order: data, optimisation, output, images, segmentation
    assert (f"python -m Functions train --data {tiny_pairs_dir.resolve()} --channels 1 --epochs 2 --batch-size 4 "
            f"--seed 3 {'--jit' if JIT else '--no-jit'} --image-size 32 --normalization minmax") in report
    assert "--seed 3" in report and "--model-option base_filters=4 --model-option depth=2" in report
    assert "![Validation predictions during training](progress.png)" in report
    assert (out / "progress.png").is_file() and not (out / "backup").exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["channels"] == 1 and saved["data"] == str(tiny_pairs_dir.resolve())


@pytest.mark.backend
def test_nan_loss_stops_with_a_learning_rate_hint(tiny_pairs_dir, tmp_path):
    out = tmp_path / "nan"
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=3, batch_size=4, out=str(out),
                      learning_rate=1e30, model_options={"base_filters": 4, "depth": 2}, jit_compile=JIT,
                      verbose=0, progress_every=0)
    with pytest.raises(UserError, match=r"loss became NaN at epoch 1; try a lower learning rate, e\.g\. --lr 1e-4"):
        train(cfg)
    assert len(pd.read_csv(out / "history.csv")) == 1         # stopped in the first epoch, not after three
    assert not (out / "model.keras").exists()


@pytest.mark.backend
def test_mixed_precision_trains_and_restores_the_policy(tiny_pairs_dir, tmp_path):
    import keras

    before = keras.mixed_precision.global_policy().name
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=1, batch_size=4, out=str(tmp_path / "mp"),
                      model_options={"base_filters": 4, "depth": 2}, jit_compile=JIT, verbose=0,
                      progress_every=0, mixed_precision=True)
    result = train(cfg)
    assert keras.mixed_precision.global_policy().name == before
    assert result["model"].layers[1].dtype_policy.name.startswith("mixed_")
    assert result["model"].outputs[0].dtype == "float32"
    assert 0 <= result["metrics"]["dice"] <= 1


def test_subset_is_a_seeded_choice_and_run_eagerly_compiles_eagerly(tiny_pairs_dir):
    from Functions.models import build_model
    from Functions.engine.segmentation import compile_model, prepare_data

    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, subset=6, seed=3)
    first, again = prepare_data(cfg), prepare_data(cfg)
    chosen = sorted(str(s.image) for k in ("train", "val", "test") for s in first[k][2])
    assert first["n_samples"] == 6 and len(set(chosen)) == 6
    assert chosen == sorted(str(s.image) for k in ("train", "val", "test") for s in again[k][2])
    other = prepare_data(TrainConfig(data=str(tiny_pairs_dir), image_size=32, subset=6, seed=4))
    assert chosen != sorted(str(s.image) for k in ("train", "val", "test") for s in other[k][2])
    assert prepare_data(TrainConfig(data=str(tiny_pairs_dir), image_size=32, subset=50))["n_samples"] == 12
    with pytest.raises(UserError, match="^subset must be at least 3"):
        TrainConfig(subset=2).validate()
    model = compile_model(build_model("unet", (32, 32, 1), depth=2, base_filters=4),
                          TrainConfig(run_eagerly=True, jit_compile=True))
    assert model.run_eagerly and not model.jit_compile
