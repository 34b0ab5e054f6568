"""Warm-up + cosine learning rate and the time budget that re-plans it."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from Functions.engine import schedules
from Functions.engine.schedules import CosineSchedule, cosine_learning_rate


def test_cosine_learning_rate_by_hand():
    base, floor = 1e-2, 1e-4                       # final_fraction 0.01
    lr = lambda s: cosine_learning_rate(s, 100, base, warmup_steps=10, final_fraction=0.01)  # noqa: E731
    assert lr(0) == pytest.approx(floor)
    assert lr(5) == pytest.approx(floor + (base - floor) * 0.5)          # half way up the warm-up
    assert lr(10) == pytest.approx(base)
    assert lr(55) == pytest.approx(floor + (base - floor) * 0.5)         # cosine midpoint: cos(pi/2) = 0
    assert lr(100) == pytest.approx(floor) and lr(500) == pytest.approx(floor)
    q = floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * 0.25))
    assert lr(32.5) == pytest.approx(q)
    values = [lr(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))               # decreasing after the warm-up
    assert cosine_learning_rate(0, 10, 0.5) == pytest.approx(0.5)         # no warm-up: starts at the peak


class _Optimizer:
    def __init__(self):
        self.learning_rate = keras.Variable(0.0)


class _Model:
    def __init__(self):
        self.optimizer = _Optimizer()
        self.stop_training = False


def _lr(model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_schedule_sets_every_batch_and_follows_the_epoch_plan():
    cb = CosineSchedule(0.1, epochs=4, steps_per_epoch=5, warmup_epochs=0.0, final_fraction=0.0)
    model = _Model()
    cb.set_model(model)
    cb.on_train_begin()
    assert _lr(model) == pytest.approx(0.1)
    cb.on_epoch_begin(2)                                                  # e.g. resumed at epoch 2
    cb.on_train_batch_begin(0)
    assert _lr(model) == pytest.approx(0.05)                              # step 10 of 20: cosine midpoint
    cb.on_train_batch_begin(3)
    assert _lr(model) == pytest.approx(cb.learning_rate(2, 3))
    assert cb.learning_rate(2, 3) == pytest.approx(0.05 * (1 + math.cos(math.pi * 13 / 20)))
    cb.on_epoch_end(2)
    assert _lr(model) == pytest.approx(cb.learning_rate(3, 0)) and not model.stop_training


def test_time_budget_replans_and_stops(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(schedules.time, "perf_counter", lambda: clock["t"])
    # 100 s budget; the first epoch takes 40 s (compilation), later ones 20 s
    cb = CosineSchedule(1.0, epochs=50, steps_per_epoch=4, time_budget=100.0)
    model = _Model()
    cb.set_model(model)
    cb.on_train_begin()
    first_batch = [24, 5, 5, 5]                    # the first batch of the fit compiles: 24 s
    for epoch, seconds in enumerate([40, 20, 20, 20]):
        cb.on_epoch_begin(epoch)
        clock["t"] += first_batch[epoch]
        cb.on_train_batch_end(0)
        clock["t"] += seconds - first_batch[epoch]
        cb.on_epoch_end(epoch)
        if model.stop_training:
            break
    # planning keeps a 5 % margin.  Epoch 0: the 3 batches after the first took 16 s -> pace 16 * 4 / 3
    # = 21.3 s; 60 s left -> 2 more (3 planned).  Epoch 1: 40 s left at 21 s -> 1 more (3 planned).
    # Epoch 2: 20 s left < 21 s -> stop, with the schedule at its end
    assert cb.paces[0] == pytest.approx(16 * 4 / 3) and cb.paces[1:] == [20, 20]
    assert epoch == 2 and model.stop_training
    assert cb.planned_epochs == 3 and cb.elapsed == pytest.approx(80.0)
    assert _lr(model) == pytest.approx(0.01)                              # annealed to final_fraction * base


def test_resumed_budget_counts_earlier_time(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(schedules.time, "perf_counter", lambda: clock["t"])
    cb = CosineSchedule(1.0, epochs=10, steps_per_epoch=2, time_budget=60.0, elapsed=50.0)
    model = _Model()
    cb.set_model(model)
    cb.on_epoch_begin(5)
    clock["t"] += 15
    cb.on_epoch_end(5)
    assert model.stop_training and cb.planned_epochs == 6


def _run_epochs(cb, model, clock, epochs, first_batch=5.0, seconds=20.0):
    """Drive ``cb`` through ``epochs`` (a range) of a fit on the fake clock; the logged rate of each epoch."""
    rates = []
    cb.on_train_begin()
    for epoch in epochs:
        cb.on_epoch_begin(epoch)
        for batch in range(cb.steps_per_epoch):
            cb.on_train_batch_begin(batch)
            clock["t"] += first_batch if batch == 0 else (seconds - first_batch) / (cb.steps_per_epoch - 1)
            cb.on_train_batch_end(batch)
        rates.append(_lr(model))                   # the rate of the epoch's last step, as history.csv logs it
        cb.on_epoch_end(epoch)
        if model.stop_training:
            break
    return rates


def test_saved_plan_resumes_on_the_same_curve(monkeypatch):
    """A schedule rebuilt from the run's settings and given the saved state continues the budget-fitted plan:
    the same learning rates, epoch by epoch, and the same stop as the uninterrupted schedule."""
    import json

    clock = {"t": 0.0}
    monkeypatch.setattr(schedules.time, "perf_counter", lambda: clock["t"])

    def make():
        return CosineSchedule(1.0, epochs=50, steps_per_epoch=4, time_budget=210.0)

    whole, model = make(), _Model()
    whole.set_model(model)
    expected = _run_epochs(whole, model, clock, range(50))
    assert len(expected) == 10 and whole.planned_epochs == 10      # 210 s at 20 s an epoch + a 5 % margin

    first, model = make(), _Model()
    first.set_model(model)
    rates = _run_epochs(first, model, clock, range(4))             # killed after epoch 3
    state = json.loads(json.dumps(first.get_state()))               # through state.json
    assert state["planned_epochs"] == first.planned_epochs < 50
    resumed, model = make(), _Model()
    resumed.set_model(model)
    resumed.set_state(state)
    rates += _run_epochs(resumed, model, clock, range(4, 50))
    np.testing.assert_allclose(rates, expected, atol=1e-12, rtol=0)
    assert model.stop_training and resumed.planned_epochs == 10 and resumed.elapsed == pytest.approx(200.0)
    # the resumed fit's first epoch recompiles: its pace is an estimate, kept apart from the measured ones
    assert resumed.measured == [False, True, True, True, False, True, True, True, True, True]


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        CosineSchedule(0.1, epochs=3, steps_per_epoch=0)
