"""``jit_compile="auto"``: the XLA probe's decision, cache and off switch (fake timers; no real timing asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from Functions.engine import jit


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "jit.json"
    monkeypatch.setenv(jit.CACHE_ENV, str(path))
    monkeypatch.delenv(jit.PROBE_ENV, raising=False)
    return path


class FakeMeasure:
    """seconds per step by setting; counts the calls."""

    def __init__(self, graph, xla, fail=()):
        self.seconds = {False: graph, True: xla}
        self.fail = set(fail)
        self.calls = []

    def __call__(self, flag):
        self.calls.append(flag)
        if flag in self.fail:
            raise RuntimeError("no XLA kernel for this op")
        return self.seconds[flag]


def test_cache_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(jit.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_path() == tmp_path / "xdg" / "medical-image-processing" / "jit.json"
    monkeypatch.setenv(jit.CACHE_ENV, str(tmp_path / "mine.json"))
    assert jit.cache_path() == tmp_path / "mine.json"


def test_probe_once_then_cached_then_refreshed(cache):
    measure = FakeMeasure(graph=0.40, xla=0.25)
    first = jit.decide("unet|128", measure)
    assert first == {**first, "jit": True, "xla_seconds": 0.25, "graph_seconds": 0.40, "cached": False}
    assert measure.calls == [False, True, False, True]                   # two alternating rounds
    stored = json.loads(cache.read_text())
    assert stored["unet|128"]["jit"] is True and stored["unet|128"]["graph_seconds"] == 0.40

    again = jit.decide("unet|128", FakeMeasure(graph=0.1, xla=9.0))      # the cache answers; no measuring
    assert again["jit"] is True and again["cached"] is True and again["xla_seconds"] == 0.25

    slower_xla = FakeMeasure(graph=0.30, xla=0.60)                       # another key is probed on its own
    assert jit.decide("unet|256", slower_xla)["jit"] is False and slower_xla.calls == [False, True] * 2
    assert set(json.loads(cache.read_text())) == {"unet|128", "unet|256"}

    redo = FakeMeasure(graph=0.1, xla=0.2)
    assert jit.decide("unet|128", redo, refresh=True)["jit"] is False and redo.calls == [False, True] * 2
    assert json.loads(cache.read_text())["unet|128"]["jit"] is False


def test_a_tie_keeps_the_plain_graph_and_a_failure_loses(cache):
    assert jit.decide("tie", FakeMeasure(0.5, 0.5))["jit"] is False
    result = jit.decide("xla-fails", FakeMeasure(0.5, 0.1, fail={True}))
    assert result["jit"] is False and result["xla_seconds"] is None and result["graph_seconds"] == 0.5
    with pytest.raises(RuntimeError, match="either setting"):
        jit.decide("both-fail", FakeMeasure(0.5, 0.1, fail={True, False}))


def test_each_setting_keeps_its_fastest_round(cache):
    """Round 1 the plain graph is slowed by other work (0.64 s); round 2 shows its real speed (0.35 s)."""
    times = {False: iter([0.64, 0.35]), True: iter([0.56, 0.47])}
    calls = []

    def measure(flag):
        calls.append(flag)
        return next(times[flag])

    result = jit.decide("noisy", measure)
    assert calls == [False, True, False, True]
    assert result["jit"] is False and result["graph_seconds"] == 0.35 and result["xla_seconds"] == 0.47


def test_the_other_setting_must_be_clearly_faster(cache):
    """Within the 10 % margin the fixed rule's setting stays; beyond it the faster one wins, either way round."""
    assert jit.decide("cpu-close", FakeMeasure(graph=0.40, xla=0.37))["jit"] is False      # 7.5 % faster
    assert jit.decide("cpu-clear", FakeMeasure(graph=0.40, xla=0.35))["jit"] is True       # 12.5 % faster
    assert jit.decide("gpu-close", FakeMeasure(graph=0.37, xla=0.40), default=True)["jit"] is True
    assert jit.decide("gpu-clear", FakeMeasure(graph=0.30, xla=0.40), default=True)["jit"] is False
    assert jit.decide("xla-broken", FakeMeasure(0.9, 0.1, fail={True}), default=True)["jit"] is False
    one = FakeMeasure(0.2, 0.5)
    jit.decide("one-round", one, rounds=1)
    assert one.calls == [False, True]


def test_an_unreadable_cache_is_measured_again(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert jit.read_cache(cache) == {}
    assert jit.decide("k", FakeMeasure(0.2, 0.1))["cached"] is False
    assert json.loads(cache.read_text())["k"]["jit"] is True


def test_default_rule():
    assert jit.default_rule("jax", gpu=False) is True
    assert jit.default_rule("tensorflow", gpu=True) is True
    assert jit.default_rule("tensorflow", gpu=False) is False
    assert jit.default_rule("torch", gpu=True) is False


def test_off_switch_uses_the_rule_and_never_measures(cache, monkeypatch):
    import keras

    from Functions.base.runtime import has_gpu
    from Functions.models import build_unet

    def boom(*a, **k):
        raise AssertionError("the probe ran although MIP_JIT_PROBE=0")

    monkeypatch.setattr(jit, "measure_step_seconds", boom)
    monkeypatch.setenv(jit.PROBE_ENV, "0")
    assert not jit.probe_enabled()
    model = build_unet((32, 32, 1), base_filters=4, depth=2)
    chosen = jit.auto_jit(model, lambda m, flag: None, batch_size=2)
    assert chosen is jit.default_rule(keras.backend.backend(), has_gpu())
    assert not cache.exists()


def test_auto_jit_reports_the_choice_and_both_figures(cache, monkeypatch):
    import keras

    from Functions.models import build_unet

    if keras.backend.backend() != "tensorflow":
        pytest.skip("only TensorFlow has two compiled paths to compare")
    calls = []

    def fake(model, compile_fn, batch_size, flag, **kw):
        calls.append(flag)
        return {False: 0.8, True: 0.2}[flag]

    monkeypatch.setattr(jit, "measure_step_seconds", fake)
    model = build_unet((32, 32, 1), base_filters=4, depth=2)
    lines = []
    assert jit.auto_jit(model, lambda m, flag: None, batch_size=2, report=lines.append) is True
    assert calls == [False, True, False, True]
    assert "XLA (jit_compile): on" in lines[0] and "0.2 s/step with XLA" in lines[0] and "0.8 s/step" in lines[0]
    assert jit.auto_jit(model, lambda m, flag: None, batch_size=2, report=lines.append) is True
    assert calls == [False, True] * 2 and "cached" in lines[1]           # second run: from the cache
    key = jit.probe_key(model, 2)
    assert "in=32x32x1" in key and "batch=2" in key and "tensorflow" in key
    assert key.endswith(f"probe {jit.PROBE_VERSION}")              # an older probe's decisions are not reused


def test_measure_step_seconds_times_with_the_given_timer():
    """A fake clock: the three timed steps take 1, 4 and 2 'seconds'; the median is 2; the model is untouched;
    a second round reuses the compiled copy (no second compile)."""
    from Functions.models import build_unet

    model = build_unet((32, 32, 1), base_filters=4, depth=2)
    before = [w.copy() for w in model.get_weights()]
    ticks = iter([0.0, 1.0, 10.0, 14.0, 20.0, 22.0])
    compiled = []

    def compile_fn(copy, flag):
        compiled.append(flag)
        copy.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)

    copies = {}
    seconds = jit.measure_step_seconds(model, compile_fn, batch_size=2, jit=True, steps=3, timer=lambda: next(ticks),
                                       copies=copies)
    assert seconds == 2.0 and compiled == [True] and set(copies) == {True}
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    ticks = iter([0.0, 3.0])
    again = jit.measure_step_seconds(model, compile_fn, batch_size=2, jit=True, steps=1, timer=lambda: next(ticks),
                                     copies=copies)
    assert again == 3.0 and compiled == [True]


def test_random_batch_shapes():
    from Functions.models import build_unet

    model = build_unet((32, 32, 3), num_classes=3, base_filters=4, depth=2)
    x, ys = jit.random_batch(model, 2)
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32
    assert len(ys) == 1 and ys[0].shape == (2, 32, 32, 3)
    np.testing.assert_allclose(ys[0].sum(axis=-1), 1.0, rtol=1e-5)


def test_train_compile_uses_the_probe(cache, monkeypatch, capsys):
    """`train`'s compile_model with jit_compile="auto": the (faked) faster setting is compiled in and printed."""
    import keras

    from Functions.engine.segmentation import TrainConfig, compile_model
    from Functions.models import build_unet

    if keras.backend.backend() != "tensorflow":
        pytest.skip("only TensorFlow has two compiled paths to compare")
    for xla_faster in (True, False):
        monkeypatch.setattr(jit, "measure_step_seconds",
                            lambda model, fn, b, flag, **k: (0.1 if flag == xla_faster else 0.3))
        model = build_unet((32, 32, 1), base_filters=4 if xla_faster else 8, depth=2)   # two different keys
        compile_model(model, TrainConfig(image_size=32, batch_size=2))
        assert model.jit_compile is xla_faster
        assert f"XLA (jit_compile): {'on' if xla_faster else 'off'}" in capsys.readouterr().out
    fixed = build_unet((32, 32, 1), base_filters=4, depth=2)
    monkeypatch.setattr(jit, "measure_step_seconds", lambda *a, **k: pytest.fail("probe for a fixed setting"))
    compile_model(fixed, TrainConfig(image_size=32, batch_size=2, jit_compile=False))
    assert fixed.jit_compile is False
