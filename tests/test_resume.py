"""Reproducibility and resume: same seed -> same run; an interrupted run resumes to the uninterrupted result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from Functions.base.errors import UserError
from Functions.engine.segmentation import TrainConfig, resume_config
from Functions.engine.tasks import train
from helpers import kill_after_epochs

# XLA compilation costs more than it saves on these tiny runs, except on JAX (whose non-jit mode is eager)
JIT = keras.backend.backend() == "jax"

EPOCHS = 3
METRIC_COLUMNS = ["loss", "dice", "iou", "val_loss", "val_dice", "val_iou", "learning_rate"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from helpers import write_blob_pairs

    return write_blob_pairs(tmp_path_factory.mktemp("resume_data"))


def config(data_dir, out, **kw):
    values = dict(data=str(data_dir), image_size=32, epochs=EPOCHS, batch_size=2, out=str(out),
                  model_options={"base_filters": 4, "depth": 2}, learning_rate=5e-3, augment="default",
                  reduce_lr_patience=1, patience=5, progress_every=0, jit_compile=JIT, verbose=0, seed=7)
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reference"
    train(config(data_dir, out))
    return out


def assert_same_run(a: Path, b: Path, tol=1e-6):
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    assert ha["epoch"].tolist() == hb["epoch"].tolist() == list(range(EPOCHS))
    for col in METRIC_COLUMNS:
        np.testing.assert_allclose(hb[col], ha[col], atol=tol, rtol=0, err_msg=col)
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    for key in ("dice", "iou", "precision", "recall", "boundary_f1"):
        assert mb[key] == pytest.approx(ma[key], abs=tol), key
    ta, tb = pd.read_csv(a / "test_metrics.csv"), pd.read_csv(b / "test_metrics.csv")
    np.testing.assert_allclose(tb["dice"], ta["dice"], atol=tol)


@pytest.mark.backend
def test_same_seed_same_split_and_metrics(data_dir, reference_run, tmp_path):
    again = tmp_path / "again"
    train(config(data_dir, again))
    assert (again / "split.json").read_text() == (reference_run / "split.json").read_text()
    assert_same_run(reference_run, again)


class InterruptAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) in the middle of ``epoch``."""

    def __init__(self, epoch: int, batch: int = 1):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


@pytest.mark.backend
def test_interrupted_run_resumes_to_the_uninterrupted_result(data_dir, reference_run, tmp_path):
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(config(data_dir, out), callbacks=[InterruptAt(epoch=1)])
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0]
    assert json.loads((out / "backup" / "state.json").read_text())["epochs_done"] == 1
    best_before = (out / "model.keras").read_bytes()

    # a row the backup does not cover (a kill between the two writes) is dropped on resume
    hist = pd.read_csv(out / "history.csv")
    pd.concat([hist, hist.assign(epoch=1)]).to_csv(out / "history.csv", index=False)

    cfg = resume_config(out)
    assert cfg.epochs == EPOCHS and cfg.seed == 7 and cfg.out == str(out)
    result = train(cfg, resume=True)
    assert result["history"]["epoch"].tolist() == list(range(EPOCHS))
    assert_same_run(reference_run, out)
    assert not (out / "backup").exists()
    hist = pd.read_csv(out / "history.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_value"] == pytest.approx(hist["val_dice"].max())
    best_epoch = int(hist["val_dice"].idxmax())
    assert metrics["best_epoch"] == best_epoch + 1
    # model.keras is the epoch-0 file only if epoch 0 stayed the best, i.e. the restored best value was honoured
    assert ((out / "model.keras").read_bytes() == best_before) == (best_epoch == 0)
    keras.saving.load_model(out / "model.keras")
    with pytest.raises(UserError, match="already finished"):
        resume_config(out)


@pytest.mark.backend
def test_interrupted_ema_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    """--ema: the resume state holds the averaged weights in the model and the raw ones in the optimizer;
    the resumed run must swap them back before it trains, or it would train on from the average."""
    reference, out = tmp_path / "reference", tmp_path / "interrupted"
    train(config(data_dir, reference, ema=0.7, keep="last"))
    with pytest.raises(KeyboardInterrupt):
        train(config(data_dir, out, ema=0.7, keep="last"), callbacks=[InterruptAt(epoch=1)])
    train(resume_config(out), resume=True)
    assert_same_run(reference, out, tol=1e-5)
    a = keras.saving.load_model(reference / "model.keras", safe_mode=True).get_weights()
    b = keras.saving.load_model(out / "model.keras", safe_mode=True).get_weights()
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wb, wa, atol=1e-5)
    assert "moving average was validated and kept (--ema 0.7)" in (out / "report.md").read_text()


class FakeClock:
    """``time`` for the schedule module: every ``perf_counter()`` call advances 10 s (3 calls per epoch: its
    start, the end of its first batch, its end), so each epoch takes 20 s whatever the machine does."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 10.0
        return self.t


def test_resumed_time_budget_run_continues_the_same_learning_rate_curve(data_dir, tmp_path, monkeypatch):
    """--time-budget fits the cosine schedule to fewer epochs than --epochs; that plan is part of the resume
    state, so a run interrupted and resumed has, epoch by epoch, the learning rates of the uninterrupted run
    (before, the resumed run re-planned from all --epochs and jumped back up the curve)."""
    from Functions.engine import schedules
    from Functions.engine.schedules import cosine_learning_rate

    monkeypatch.setattr(schedules, "time", FakeClock())
    # 5 epochs at most, 70 s.  8 training images in batches of 2: 4 steps an epoch; warm-up min(1, 0.1 x 5)
    # = 0.5 epoch.  The first epoch's pace is estimated from its last 3 batches (10 s -> 13.3 s an epoch),
    # later ones are measured (20 s); the plan keeps a 5 % margin.  After epoch 0: 20 s used, 50 // 14 = 3
    # more fit -> 4 epochs; after epoch 1: 40 s used, 30 // 21 = 1 more -> 3; after epoch 2: 10 // 21 = 0 -> stop.
    # The learning rate logged for an epoch is that of its last step under the plan of its time:
    total = [5, 4, 3]                          # the plan while epochs 0, 1, 2 trained
    uninterrupted = [cosine_learning_rate(4 * e + 3, 4 * total[e], 1e-2, warmup_steps=2, final_fraction=0.01)
                     for e in range(3)]
    kw = dict(epochs=5, time_budget=70 / 60, lr_schedule="cosine", reduce_lr_patience=0, patience=0,
              learning_rate=1e-2, augment=None)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(config(data_dir, out, **kw), callbacks=[InterruptAt(epoch=2)])
    saved = json.loads((out / "backup" / "state.json").read_text())
    assert saved["epochs_done"] == 2 and saved["callbacks"]["schedule"]["planned_epochs"] == 3
    train(resume_config(out), resume=True)
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [0, 1, 2]                  # the budget still stops after the third epoch
    # a resume that re-planned from all 5 epochs logs cosine(step 11 of 20) = 0.0050 for epoch 2, not 0.00034
    np.testing.assert_allclose(hist["learning_rate"], uninterrupted, atol=1e-7, rtol=0)


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        resume_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        resume_config(tmp_path / "empty")


def test_sigkill_mid_training_then_resume_from_the_command_line(data_dir, tmp_path):
    """The real thing: SIGKILL a `python -m Functions train` process mid-run, resume, check every epoch once."""
    out = tmp_path / "killed"
    epochs = 5
    cmd = [sys.executable, "-m", "Functions", "train", "--data", str(data_dir), "--image-size", "32",
           "--epochs", str(epochs), "--batch-size", "1", "--out", str(out), "--model-option", "base_filters=4",
           "--model-option", "depth=2", "--verbose", "0", "--progress-every", "0", "--augment"]
    cmd += [] if JIT else ["--no-jit"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    history = out / "history.csv"
    kill_after_epochs(cmd, history, env, epochs_done=1)          # epoch 1 done: killed in epoch 2
    done_before = len(pd.read_csv(history)) if history.is_file() else 0
    assert done_before < epochs
    for name in ("recipe.toml", "plan.json"):     # written with config.json; a folder made before them resumes too
        assert (out / name).is_file()
        (out / name).unlink()

    resumed = subprocess.run([sys.executable, "-m", "Functions", "train", "--resume", str(out), "--verbose", "0"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout
    assert pd.read_csv(history)["epoch"].tolist() == list(range(epochs))
    assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == epochs
    assert (out / "report.md").is_file() and not (out / "backup").exists()
    from Functions.inference.predictor import load_model_file     # imports the custom layers/losses, then loads

    model, _ = load_model_file(out / "model.keras")
    assert tuple(model.inputs[0].shape[1:]) == (32, 32, 1)
