"""The training callbacks on a tiny dense model: history rows, best model, NaN stop, resume state, progress figure."""

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest

from Functions.base.runs import read_state, write_history_csv
from Functions.engine.callbacks import BestModel, EpochLog, NaNGuard, ProgressFigure, TrainingState


def tiny_model(lr=0.05, loss="binary_crossentropy"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, jit_compile=False)
    return model


def tiny_data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    return x, y


class ScriptedLogs(keras.callbacks.Callback):
    """Replaces the epoch logs with scripted values (so the tests know what 'best' must be)."""

    def __init__(self, values, key="val_score"):
        super().__init__()
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def test_write_history_csv_orders_columns_and_replaces_atomically(tmp_path):
    path = tmp_path / "history.csv"
    write_history_csv(path, [{"epoch": 0, "loss": 1.0, "dice": 0.1}, {"epoch": 1, "loss": 0.5, "dice": 0.4}])
    table = pd.read_csv(path)
    assert list(table.columns) == ["epoch", "dice", "loss"]
    assert table["loss"].tolist() == [1.0, 0.5]
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]     # no temporary file left behind


@pytest.mark.backend
def test_epoch_log_best_model_and_state_follow_scripted_values(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    scores = [0.2, 0.5, 0.4, 0.7, 0.6]
    log = EpochLog(tmp_path / "history.csv")
    best = BestModel(tmp_path / "model.keras", monitor="val_score", mode="max")
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_score", mode="max", patience=1, factor=0.5,
                                                min_delta=0)
    state = TrainingState(tmp_path / "backup", log, stateful={"best_model": best, "reduce_lr": plateau},
                          total_epochs=5)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, shuffle=False,
              callbacks=[ScriptedLogs(scores), log, best, plateau, state])

    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert hist["val_score"].tolist() == scores
    # the learning rate is the one used during each epoch: halved after epochs 3 and 5 (0-based 2 and 4) plateau
    assert hist["learning_rate"].tolist() == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025])
    assert (hist["seconds"] >= 0).all()
    assert best.best == 0.7 and best.best_epoch == 3
    assert (tmp_path / "model.keras").is_file()

    saved = read_state(tmp_path / "backup")
    assert saved["epochs_done"] == 5 and saved["finished"] is True
    assert [r["epoch"] for r in saved["history"]] == [0, 1, 2, 3, 4]
    assert saved["callbacks"]["best_model"] == {"best": 0.7, "best_epoch": 3}
    assert saved["callbacks"]["reduce_lr"]["best"] == 0.7 and saved["callbacks"]["reduce_lr"]["wait"] == 0
    # exactly one weights file: the committed one, holding model and optimizer (learning rate, step count)
    weights = sorted(p.name for p in (tmp_path / "backup").glob("*.weights.h5"))
    assert weights == ["epoch-0005.weights.h5"]
    fresh = tiny_model(lr=1.0)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(saved["weights_path"])
    assert float(keras.ops.convert_to_numpy(fresh.optimizer.learning_rate)) == pytest.approx(0.0125)
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations)) == 5 * 4
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.backend
def test_best_model_starts_from_a_restored_best_and_ignores_nan(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    best = BestModel(tmp_path / "model.keras", monitor="val_score", mode="max", best=0.9)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[ScriptedLogs([0.5, float("nan"), 0.8]), best])
    assert not (tmp_path / "model.keras").exists()       # nothing beat the value carried over from before
    assert best.best == 0.9
    low = BestModel(tmp_path / "low.keras", monitor="val_score", mode="min")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[ScriptedLogs([0.5, float("nan"), 0.8]), low])
    assert low.best == 0.5 and low.best_epoch == 0


@pytest.mark.backend
def test_training_state_restores_callback_counters_after_their_reset(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    stop = keras.callbacks.EarlyStopping(monitor="val_score", mode="max", patience=3)
    restore = {"callbacks": {"early_stopping": {"wait": 2, "best": 0.8, "best_epoch": 1, "stopped_epoch": 0}}}
    log = EpochLog(tmp_path / "history.csv", rows=[{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.9}])
    state = TrainingState(tmp_path / "backup", log, stateful={"early_stopping": stop}, restore=restore,
                          total_epochs=10)
    # epochs 2.. continue the counters: one more epoch without improvement makes 3 -> stop after epoch 2
    model.fit(x, y, epochs=10, initial_epoch=2, batch_size=8, verbose=0,
              callbacks=[ScriptedLogs({2: 0.5, 3: 0.5, 4: 0.5}), log, stop, state])
    assert stop.stopped_epoch == 2
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["epoch"].tolist() == [0, 1, 2]
    saved = read_state(tmp_path / "backup")
    assert saved["epochs_done"] == 3 and saved["finished"] is True


@pytest.mark.backend
def test_nan_guard_stops_and_blocks_the_commit(tmp_path):
    model = tiny_model(loss="mse")                       # (PyTorch's cross-entropy refuses NaN outright)
    x, y = tiny_data()
    x[5, 0] = np.nan                                     # a NaN input poisons the loss in the first epoch
    guard = NaNGuard()
    log = EpochLog(tmp_path / "history.csv")
    state = TrainingState(tmp_path / "backup", log, nan_guard=guard)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, shuffle=False, callbacks=[guard, log, state])
    assert guard.nan_epoch == 0
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1  # stopped in the first epoch
    assert read_state(tmp_path / "backup") is None          # NaN weights are never committed
    msg = guard.message(2e-3)
    assert msg.startswith("loss became NaN at epoch 1; try a lower learning rate, e.g. --lr 1e-4")
    assert "--lr 1e-5" in NaNGuard.message(guard, 1e-4)


def test_progress_figure_draws_every_n_epochs_and_the_last(tmp_path):
    from Functions.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(16, 16, 1), base_filters=2, depth=1)
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    fig = ProgressFigure(x[:2], y[:2].astype("uint8"), tmp_path / "progress.png", every=2, total_epochs=5)
    model.fit(x, y, epochs=5, batch_size=4, verbose=0, callbacks=[fig])
    assert fig.drawn_epochs == [1, 3, 4]
    assert (tmp_path / "progress.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.png"]


def test_state_json_is_plain_json(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    log = EpochLog(tmp_path / "history.csv")
    state = TrainingState(tmp_path / "backup", log, total_epochs=1)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[log, state])
    raw = json.loads((tmp_path / "backup" / "state.json").read_text())
    assert raw["epochs_done"] == 1 and raw["weights"] == "epoch-0001.weights.h5"
    assert math.isfinite(raw["history"][0]["loss"])


class WeightsAfterEachEpoch(keras.callbacks.Callback):
    """Copies of the model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.model.get_weights()])


@pytest.mark.backend
@pytest.mark.parametrize("keep, saved_epoch", [("best", 1), ("last", 3)])
def test_best_model_keep_last_saves_the_final_epoch_and_still_tracks_the_best(tmp_path, keep, saved_epoch):
    model = tiny_model()
    x, y = tiny_data()
    snapshots = WeightsAfterEachEpoch()
    best = BestModel(tmp_path / "model.keras", monitor="val_score", mode="max", keep=keep)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, shuffle=False,
              callbacks=[ScriptedLogs([0.2, 0.9, 0.4, 0.5]), snapshots, best])
    assert best.best == 0.9 and best.best_epoch == 1             # the report's "best" whichever model is kept
    saved = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True).get_weights()
    for a, b in zip(saved, snapshots.weights[saved_epoch]):
        np.testing.assert_array_equal(a, b)
    other = 3 if saved_epoch == 1 else 1                          # the weights did change between the two epochs
    assert not all(np.array_equal(a, b) for a, b in zip(saved, snapshots.weights[other]))


def test_best_model_rejects_an_unknown_keep(tmp_path):
    with pytest.raises(ValueError, match="keep must be 'best' or 'last'"):
        BestModel(tmp_path / "model.keras", keep="worst")


@pytest.mark.parametrize("keep, kept", [("best", 2), ("last", 4)])
def test_best_epoch_reports_which_epoch_was_kept(keep, kept):
    from Functions.engine.finish import best_epoch

    hist = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_dice": [0.3, 0.8, 0.6, 0.7], "val_loss": [0.9, 0.5, 0.4, 0.6],
                         "learning_rate": [1e-3, 1e-3, 5e-4, 1e-5]})
    out = best_epoch(hist, "val_dice", keep)
    assert out == {"monitor": "val_dice", "best_epoch": 2, "best_value": 0.8, "keep": keep, "kept_epoch": kept,
                   "final_learning_rate": 1e-5}
    assert best_epoch(hist, "val_loss", keep)["best_epoch"] == 3            # losses are minimised
    assert best_epoch(hist, "val_iou", keep) == {"monitor": "val_iou", "keep": keep}


def test_report_says_which_epoch_was_kept(tmp_path):
    from Functions.viz.reports import write_report

    common = {"dice": 0.9, "iou": 0.8, "n_images": 5, "epochs_trained": 26, "monitor": "val_dice",
              "best_value": 0.6739, "best_epoch": 6}
    text = write_report(tmp_path, {"model": "unet"}, metrics={**common, "keep": "last", "kept_epoch": 26}).read_text()
    assert "last epoch kept (26 of 26, --keep last; best val_dice 0.6739 at epoch 6)" in text
    text = write_report(tmp_path, {"model": "unet"}, metrics={**common, "keep": "best", "kept_epoch": 6}).read_text()
    assert "best epoch 6 of 26 by val_dice (0.6739)" in text


def test_config_rejects_an_unknown_keep_naming_the_field():
    from Functions.base.errors import UserError
    from Functions.engine.segmentation import TrainConfig

    TrainConfig(keep="last").validate()
    with pytest.raises(UserError, match="must be best or last, got 'worst'") as info:
        TrainConfig(keep="worst").validate()
    assert info.value.field == "keep"


class RawAndAveraged(keras.callbacks.Callback):
    """The weights after every training step (raw: what trains) and at every epoch's end (what is kept)."""

    def __init__(self):
        super().__init__()
        self.steps, self.epoch_ends = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([w.copy() for w in self.model.get_weights()])

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append([w.copy() for w in self.model.get_weights()])


@pytest.mark.backend
def test_averaged_weights_are_validated_and_saved_while_the_raw_weights_train(tmp_path):
    from Functions.engine.callbacks import AveragedWeights

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    momentum = 0.8
    model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=momentum),
                  loss="binary_crossentropy", jit_compile=False)
    x, y = tiny_data()
    seen = RawAndAveraged()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False, validation_data=(x[:16], y[:16]),
                        callbacks=[AveragedWeights(), seen,
                                   BestModel(tmp_path / "model.keras", monitor="val_loss", mode="min", keep="last")])
    assert len(seen.steps) == 8                                   # 2 epochs of 4 steps
    # Keras' rule: the average starts at the first step's weights, then avg <- m * avg + (1 - m) * w
    expected = [w.astype(np.float64) for w in seen.steps[0]]
    for step in seen.steps[1:]:
        expected = [momentum * e + (1 - momentum) * w for e, w in zip(expected, step)]
    saved = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    for a, b, c in zip(saved.get_weights(), expected, seen.epoch_ends[-1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(c, b, atol=1e-5)               # later callbacks see the average
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(saved.get_weights(), seen.steps[-1]))
    # training went on from the raw weights, not from the average swapped in at the end of epoch 1
    first, last_raw, avg = seen.steps[4][0], seen.steps[3][0], seen.epoch_ends[0][0]
    assert np.abs(first - last_raw).max() < np.abs(first - avg).max()
    # the validation loss was computed with the averaged weights
    val = saved.evaluate(x[:16], y[:16], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val, abs=1e-5)


def test_config_rejects_an_ema_momentum_of_one_or_more():
    from Functions.base.errors import UserError
    from Functions.engine.segmentation import TrainConfig

    TrainConfig(ema=0.99).validate()
    for bad in (1.0, -0.1):
        with pytest.raises(UserError, match="must be 0 \\(off\\) or a momentum below 1") as info:
            TrainConfig(ema=bad).validate()
        assert info.value.field == "ema"


def test_report_says_the_averaged_weights_were_kept(tmp_path):
    from Functions.viz.reports import write_report

    metrics = {"dice": 0.9, "iou": 0.8, "n_images": 5}
    text = write_report(tmp_path, {"model": "unet", "ema": 0.99}, metrics=metrics).read_text()
    assert "the weights' moving average was validated and kept (--ema 0.99)" in text
    assert "moving average" not in write_report(tmp_path, {"model": "unet", "ema": 0.0}, metrics=metrics).read_text()
