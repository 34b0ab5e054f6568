"""Keras callbacks for the ``train`` main job: logging, best model, NaN guard, progress figure, resume state.

Every file a callback writes is first written under a temporary name and
then renamed over the old one (``os.replace`` is atomic), so a run killed at
any instant - Ctrl-C, a lost connection, ``SIGKILL`` - leaves either the old
or the new version of each file, never half of one.

* :class:`EpochLog` writes ``history.csv``: one row per finished epoch
  (``epoch``, the Keras logs, the ``learning_rate`` of the epoch's last step -
  read before any plateau reduction at its end - and its wall-clock
  ``seconds``).
* :class:`BestModel` saves ``model.keras`` whenever the monitored value
  improves; its best-so-far value can be handed in when a run resumes.
* :class:`AveragedWeights` (``--ema``) swaps the optimizer's moving average
  of the weights into the model for validation and for the end of every
  epoch, so the metrics, ``model.keras`` and the resume state hold it.
* :class:`NaNGuard` stops training as soon as the loss is NaN or infinite and
  remembers the epoch, so the caller can report it.
* :class:`ProgressFigure` draws predictions on fixed validation images every
  ``every`` epochs (``progress.png``).
* :class:`TrainingState` commits, at the end of every epoch, everything a
  resumed run needs: model and optimizer weights (learning rate and step
  count included), the epoch count, the history rows and the state of the
  other callbacks (best value, early-stopping and learning-rate-plateau
  counters, the learning-rate schedule's plan).  It must be the last callback in the list, so that it records
  what the others did in the same epoch.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from Functions.base.runs import STATE_FILE, WEIGHTS_PATTERN, atomic_write_text, write_history_csv





def _plain(value):
    """A JSON-friendly number: NumPy/backend scalars to float, NaN kept as ``None``-free float."""
    try:
        return float(keras.ops.convert_to_numpy(value))
    except Exception:  # noqa: BLE001 - non-numeric log entries are kept as text
        return str(value)


def current_learning_rate(model) -> float:
    """The optimizer's learning rate now (a float)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))




class EpochLog(keras.callbacks.Callback):
    """``history.csv``, rewritten atomically after every epoch.

    ``rows``: rows already logged (a resumed run passes the completed epochs).
    """

    def __init__(self, path: str | os.PathLike, rows: list[dict] | None = None):
        super().__init__()
        self.path = Path(path)
        self.rows = [dict(r) for r in (rows or [])]
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch)}
        row.update({k: _plain(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        row["learning_rate"] = current_learning_rate(self.model)   # this callback runs before ReduceLROnPlateau
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        write_history_csv(self.path, self.rows)


class BestModel(keras.callbacks.Callback):
    """Save the whole model to ``path`` (``.keras``) when ``monitor`` improves.

    ``mode``: ``"max"`` (Dice, IoU) or ``"min"`` (losses).  ``best``: the best
    value seen so far, ``None`` for a new run.  An epoch whose value is NaN is
    never an improvement.  ``keep="last"`` saves after every epoch whose loss
    is finite instead (the best value and epoch are still tracked, for the
    report).  The file is written next to the target and renamed over it, so
    a kill during saving leaves the previously saved model intact.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_dice", mode: str = "max",
                 best: float | None = None, verbose: int = 0, keep: str = "best"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.path = Path(path)
        self.monitor, self.mode, self.best, self.verbose, self.keep = monitor, mode, best, verbose, keep
        self.best_epoch: int | None = None

    def improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(keras.ops.convert_to_numpy(loss))):
            return                                     # NaN weights are never the best model
        if self.monitor not in logs:
            from Functions.base.errors import UserError

            raise UserError(f"--monitor {self.monitor} is not logged by this model; choose one of "
                            f"{', '.join(sorted(k for k in logs if k != 'learning_rate'))}")
        value = float(keras.ops.convert_to_numpy(logs[self.monitor]))
        improved = self.improved(value)
        if improved:
            self.best, self.best_epoch = value, int(epoch)
        if not (improved or self.keep == "last"):
            return
        if self.verbose:
            print(f"epoch {epoch + 1}: {self.monitor} {value:.4f}"
                  + (" (best so far)" if improved else "") + f"; saving {self.path.name}", flush=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, self.path)

    def get_state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state: dict) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)``, resumable.

    With an optimizer built with ``use_ema=True``, the averaged weights are in
    the model while the validation set is scored and from the end of an
    epoch to the start of the next, so every callback after this one (history,
    :class:`BestModel`, :class:`TrainingState`) sees and saves them; the raw
    weights train.  The resume state is therefore written with the averages in
    the model and the raw weights in the optimizer's slots, and
    ``resumed=True`` makes the first epoch of the resumed run swap them back
    before it trains, so a resumed run continues exactly where it stopped.
    """

    def __init__(self, resumed: bool = False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


class NaNGuard(keras.callbacks.Callback):
    """Stop training after an epoch whose loss is NaN or infinite; ``nan_epoch`` says which (0-based), else ``None``.

    Unlike ``keras.callbacks.TerminateOnNaN`` it lets the caller report the
    problem and its usual cure (a lower learning rate) instead of stopping
    silently.  It looks at the epoch's mean loss, which a single NaN batch
    already poisons, rather than at every batch: a per-batch check would copy
    the loss from the device after every step and stall the step pipeline.
    """

    def __init__(self):
        super().__init__()
        self.nan_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.nan_epoch is not None:
            return
        if not math.isfinite(float(keras.ops.convert_to_numpy(loss))):
            self.nan_epoch = int(epoch)
            self.model.stop_training = True

    def message(self, learning_rate: float) -> str:
        lower = min(learning_rate / 10, 1e-4)
        text = f"{lower:.0e}".replace("e-0", "e-")
        return (f"loss became NaN at epoch {self.nan_epoch + 1}; try a lower learning rate, e.g. --lr {text} "
                f"(this run used {learning_rate:g})")


class ProgressFigure(keras.callbacks.Callback):
    """Every ``every`` epochs (and after the last), predictions on fixed validation images to ``path``.

    ``images`` ``(n, H, W, C)`` float and ``masks`` ``(n, H, W, 1)`` are the
    same few validation samples every time, so the figures show the model
    learning.  ``every <= 0`` turns the figure off.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, path: str | os.PathLike, every: int = 5,
                 threshold: float = 0.5, total_epochs: int | None = None):
        super().__init__()
        self.images, self.masks = images, masks
        self.path, self.every, self.threshold, self.total_epochs = Path(path), int(every), threshold, total_epochs
        self.drawn_epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        last = self.total_epochs is not None and epoch + 1 == self.total_epochs
        if self.every <= 0 or not ((epoch + 1) % self.every == 0 or last or self.model.stop_training):
            return
        import matplotlib.pyplot as plt

        from Functions.inference.tta import predict_probabilities, probabilities_to_masks
        from Functions.metrics.segmentation import dice
        from Functions.viz.plotting import plot_predictions

        probs = predict_probabilities(self.model, self.images, batch_size=len(self.images))
        preds = probabilities_to_masks(probs, self.threshold)
        scores = [dice(m[..., 0], p) for m, p in zip(self.masks, preds)]
        fig = plot_predictions(self.images, self.masks, preds, n=len(self.images), scores=scores)
        fig.suptitle(f"validation images after epoch {epoch + 1}", y=1.02)
        tmp = self.path.with_name(f".{self.path.stem}.tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, self.path)
        self.drawn_epochs.append(int(epoch))


class TrainingState(keras.callbacks.Callback):
    """Everything needed to resume, committed atomically at the end of every epoch.

    ``backup_dir`` receives ``epoch-XXXX.weights.h5`` (model and optimizer
    weights, which include the learning rate and the step counter) and
    ``state.json``::

        {"epochs_done": k, "weights": "epoch-000k.weights.h5", "finished": false,
         "history": [...rows...], "callbacks": {"best_model": {...}, ...}}

    ``state.json`` is renamed into place only after the weights file is
    complete, so it always names a whole weights file; older weights are
    deleted afterwards.  ``history`` is the :class:`EpochLog` rows,
    ``stateful`` maps names to callbacks whose state is kept: objects with
    ``get_state``/``set_state`` or Keras ``EarlyStopping``/
    ``ReduceLROnPlateau`` (their counters and best values).  An epoch in which
    ``nan_guard`` fired is not committed.  ``finished`` is true once training
    has ended (all epochs, or early stopping).
    """

    KERAS_ATTRS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")

    def __init__(self, backup_dir: str | os.PathLike, epoch_log: EpochLog, stateful: dict | None = None,
                 nan_guard: NaNGuard | None = None, total_epochs: int | None = None, restore: dict | None = None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.epoch_log, self.stateful, self.nan_guard = epoch_log, dict(stateful or {}), nan_guard
        self.total_epochs = total_epochs
        self._restore = restore

    # ------------------------------------------------------------------ saving
    def _callback_state(self, cb) -> dict:
        if hasattr(cb, "get_state"):
            return cb.get_state()
        return {a: _json_number(getattr(cb, a)) for a in self.KERAS_ATTRS if hasattr(cb, a)}

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard is not None and self.nan_guard.nan_epoch is not None:
            return
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        done = int(epoch) + 1
        name = WEIGHTS_PATTERN.format(done)
        tmp = self.backup_dir / f".{name}.tmp.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.backup_dir / name)
        finished = bool(self.model.stop_training) or (self.total_epochs is not None and done >= self.total_epochs)
        state = {
            "epochs_done": done,
            "weights": name,
            "finished": finished,
            "history": self.epoch_log.rows,
            "callbacks": {k: self._callback_state(cb) for k, cb in self.stateful.items()},
        }
        atomic_write_text(self.backup_dir / STATE_FILE, json.dumps(state, indent=1, default=_json_number))
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    # ------------------------------------------------------------------ restoring
    def on_train_begin(self, logs=None):
        # Runs after the other callbacks' on_train_begin (this one is last), which reset their counters.
        if not self._restore:
            return
        for key, values in self._restore.get("callbacks", {}).items():
            cb = self.stateful.get(key)
            if cb is None:
                continue
            if hasattr(cb, "set_state"):
                cb.set_state(values)
            else:
                for attr, value in values.items():
                    setattr(cb, attr, value)


def _json_number(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    try:
        return float(np.asarray(v))
    except Exception:  # noqa: BLE001
        return None




