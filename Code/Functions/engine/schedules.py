"""Learning-rate schedules for ``train``: warm-up then cosine decay, optionally fitted to a time budget.

:func:`cosine_learning_rate` is the pure formula; :class:`CosineSchedule`
is the Keras callback that sets the optimizer's learning rate before every
training batch.  A callback (rather than a ``keras.optimizers.schedules``
object) lets the schedule follow a *time* budget: after every epoch it
re-plans how many epochs still fit in the budget, anneals to the end of
that plan, and stops training when the next epoch would not fit.

The learning rate depends only on the epoch, the batch index and the plan;
the plan (the epochs fitted to the budget, the warm-up, the time spent and
the measured epoch times) is part of the resume state
(:meth:`CosineSchedule.get_state`, kept by
:class:`~Functions.engine.callbacks.TrainingState`), so a resumed run
(``train --resume``) continues the same curve rather than re-planning from
the full ``--epochs`` (which would put it back near the peak rate).
"""

from __future__ import annotations

import logging

import math
import time

import keras


def cosine_learning_rate(step: float, total_steps: float, base: float, *, warmup_steps: float = 0.0,
                         final_fraction: float = 0.01) -> float:
    """Learning rate at ``step`` (0-based, may be fractional) of ``total_steps``.

    Linear warm-up from ``final_fraction * base`` to ``base`` over
    ``warmup_steps``, then half a cosine from ``base`` down to
    ``final_fraction * base`` at ``total_steps`` (held there afterwards).
    """
    floor = final_fraction * base
    if warmup_steps > 0 and step < warmup_steps:
        return floor + (base - floor) * step / warmup_steps
    span = max(total_steps - warmup_steps, 1e-12)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineSchedule(keras.callbacks.Callback):
    """Warm-up + cosine learning rate per batch, over ``epochs`` or over what fits in ``time_budget`` seconds.

    Args:
        base_lr: peak learning rate (after warm-up).
        epochs: the most epochs to train (the plan without a budget).
        steps_per_epoch: training batches per epoch.
        warmup_epochs: length of the linear warm-up, in epochs (fractions allowed).
        final_fraction: the learning rate at the end, as a fraction of ``base_lr``.
        time_budget: seconds of training (including validation and the first
            epoch's compilation) allowed in total; ``None`` for no limit.
        elapsed: seconds already spent (when resuming a run).
    """

    def __init__(self, base_lr: float, epochs: int, steps_per_epoch: int, *, warmup_epochs: float = 1.0,
                 final_fraction: float = 0.01, time_budget: float | None = None, elapsed: float = 0.0):
        super().__init__()
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(f"epochs and steps_per_epoch must be at least 1, got {epochs} and {steps_per_epoch}")
        self.base_lr = float(base_lr)
        self.max_epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(min(warmup_epochs, 0.1 * epochs))
        self.final_fraction = float(final_fraction)
        self.time_budget = None if time_budget is None else float(time_budget)
        self.elapsed = float(elapsed)
        self.planned_epochs = self.max_epochs
        self.epoch_seconds: list[float] = []
        self.paces: list[float] = []               # estimated seconds per epoch, one per finished epoch
        self.measured: list[bool] = []             # per pace: False for the first epoch of a fit (compilation)
        self._epoch = 0
        self._t_epoch = None
        self._t_first_batch = None
        self._first_of_fit = True

    def get_state(self) -> dict:
        """The plan, for the resume state: ``planned_epochs``, ``warmup_epochs``, ``elapsed`` and the
        measured epoch times (``epoch_seconds``, ``paces``, ``measured``)."""
        return {"planned_epochs": self.planned_epochs, "warmup_epochs": self.warmup_epochs,
                "elapsed": self.elapsed, "epoch_seconds": list(self.epoch_seconds), "paces": list(self.paces),
                "measured": list(self.measured)}

    def set_state(self, state: dict) -> None:
        """Continue the plan saved by :meth:`get_state` (a resumed run)."""
        self.planned_epochs = max(1, min(self.max_epochs, int(state.get("planned_epochs", self.planned_epochs))))
        self.warmup_epochs = float(state.get("warmup_epochs", self.warmup_epochs))
        self.elapsed = float(state.get("elapsed", self.elapsed))
        self.epoch_seconds = [float(v) for v in state.get("epoch_seconds", [])]
        self.paces = [float(v) for v in state.get("paces", [])]
        self.measured = [bool(v) for v in state.get("measured", [i > 0 for i in range(len(self.paces))])]

    def learning_rate(self, epoch: int, batch: int = 0) -> float:
        """The learning rate for ``batch`` of ``epoch`` under the current plan."""
        return cosine_learning_rate(epoch * self.steps_per_epoch + batch, self.planned_epochs * self.steps_per_epoch,
                                    self.base_lr, warmup_steps=self.warmup_epochs * self.steps_per_epoch,
                                    final_fraction=self.final_fraction)

    def _set(self, value: float) -> None:
        self.model.optimizer.learning_rate.assign(value)

    def on_train_begin(self, logs=None):
        self._first_of_fit = True
        self._set(self.learning_rate(self._epoch))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._t_epoch = time.perf_counter()
        self._t_first_batch = None
        self._set(self.learning_rate(self._epoch))

    def on_train_batch_end(self, batch, logs=None):
        if self._t_first_batch is None:
            self._t_first_batch = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._set(self.learning_rate(self._epoch, batch))

    def on_epoch_end(self, epoch, logs=None):
        if self._t_epoch is not None:
            now = time.perf_counter()
            seconds = now - self._t_epoch
            pace = seconds
            if self._first_of_fit and self._t_first_batch is not None and self.steps_per_epoch > 1:
                # the first batch of a fit (a resumed one too) also traces/compiles the step: time the others
                # and scale up
                pace = (now - self._t_first_batch) * self.steps_per_epoch / (self.steps_per_epoch - 1)
            self.epoch_seconds.append(seconds)
            self.paces.append(pace)
            self.measured.append(not self._first_of_fit)
            self.elapsed += seconds
        self._first_of_fit = False
        done = int(epoch) + 1
        if self.time_budget is not None and self.paces:
            # a fit's first epoch gives an estimate only: prefer the measured ones
            recent = [p for p, m in zip(self.paces, self.measured) if m] or self.paces
            per_epoch = sorted(recent)[len(recent) // 2]
            fit = int((self.time_budget - self.elapsed) // max(1.05 * per_epoch, 1e-9))   # 5 % margin
            self.planned_epochs = max(done, min(self.max_epochs, done + fit))
            if fit < 1:
                self.model.stop_training = True
                logging.getLogger("Functions").info(
                    "time budget: stopping after epoch %d (%.1f of %.1f minutes used; an epoch takes %.0f s)",
                    done, self.elapsed / 60, self.time_budget / 60, per_epoch)
        self._epoch = done
        self._set(self.learning_rate(done))          # what the next epoch starts with (and what logs read)
