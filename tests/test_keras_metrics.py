"""Streaming Keras metrics equal the NumPy metrics on the whole epoch's data."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from Functions.metrics import streaming as KM  # noqa: E402
from Functions import metrics as M  # noqa: E402

pytestmark = pytest.mark.backend


def result(metric) -> float:
    return float(ops.convert_to_numpy(metric.result()))


def stream(metric, batches, sample_weights=None):
    metric.reset_state()
    for i, (t, p) in enumerate(batches):
        sw = None if sample_weights is None else sample_weights[i]
        metric.update_state(ops.convert_to_tensor(t), ops.convert_to_tensor(p), sample_weight=sw)
    return result(metric)


def random_binary_batches(seed=0, sizes=(3, 2, 4)):
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        t = (rng.random((n, 12, 10, 1)) < 0.1 + 0.25 * k).astype(np.float32)
        p = np.clip(t * 0.7 + rng.random(t.shape) * 0.6, 0, 1).astype(np.float32)
        out.append((t, p))
    return out


def test_names_and_factory():
    ms = KM.segmentation_metrics()
    assert [m.name for m in ms] == ["dice", "iou", "mean_dice"]
    assert [type(m) for m in ms] == [KM.Dice, KM.IoU, KM.MeanDice]
    ms = KM.segmentation_metrics(num_classes=4, threshold=0.3)
    assert all(m.num_classes == 4 and m.threshold == 0.3 for m in ms)


def test_binary_streaming_equals_numpy_on_concatenation():
    batches = random_binary_batches()
    t_all = np.concatenate([t for t, _ in batches])[..., 0] > 0.5
    p_all = np.concatenate([p for _, p in batches])[..., 0] >= 0.5
    assert stream(KM.Dice(), batches) == pytest.approx(M.dice(t_all, p_all), abs=1e-6)
    assert stream(KM.IoU(), batches) == pytest.approx(M.iou(t_all, p_all), abs=1e-6)
    per_image = [M.dice(t, p) for t, p in zip(t_all, p_all)]
    assert stream(KM.MeanDice(), batches) == pytest.approx(np.mean(per_image), abs=1e-6)
    # the threshold is honoured
    p_hi = np.concatenate([p for _, p in batches])[..., 0] >= 0.8
    assert stream(KM.Dice(threshold=0.8), batches) == pytest.approx(M.dice(t_all, p_hi), abs=1e-6)


def test_streaming_is_not_a_mean_of_batch_ratios():
    # batch 1: one pixel to find, missed (Dice 0); batch 2: a large object found (Dice 1)
    t1 = np.zeros((1, 16, 16, 1), np.float32)
    t1[0, 3, 3] = 1
    p1 = np.zeros_like(t1)
    t2 = np.zeros((1, 16, 16, 1), np.float32)
    t2[0, 2:14, 2:14] = 1
    p2 = t2.copy()
    batches = [(t1, p1), (t2, p2)]
    dice = stream(KM.Dice(), batches)
    exact = M.dice(np.concatenate([t1, t2]), np.concatenate([p1, p2]))
    assert dice == pytest.approx(exact, abs=1e-6)
    assert dice == pytest.approx(2 * 144 / (2 * 144 + 1), abs=1e-6)
    batch_mean = np.mean([M.dice(t1, p1), M.dice(t2, p2)])
    assert batch_mean == 0.5 and abs(dice - batch_mean) > 0.4
    assert stream(KM.MeanDice(), batches) == pytest.approx(0.5, abs=1e-6)  # per-image mean, as intended


def test_empty_truth_and_prediction_is_perfect():
    z = np.zeros((2, 8, 8, 1), np.float32)
    for cls in (KM.Dice, KM.IoU, KM.MeanDice):
        assert stream(cls(), [(z, z)]) == 1.0
    one = z.copy()
    one[0, 0, 0] = 1
    assert stream(KM.MeanDice(), [(z, one)]) == pytest.approx(0.5)  # image 0: 0, image 1: 1


def test_reset_state_and_sample_weight():
    batches = random_binary_batches(seed=1, sizes=(3,))
    m = KM.Dice()
    stream(m, batches)
    m.reset_state()
    for v in m.variables:
        assert np.all(ops.convert_to_numpy(v) == 0)
    t, p = batches[0]
    w = np.array([1.0, 0.0, 1.0], np.float32)
    keep = [0, 2]
    tb, pb = t[keep, ..., 0] > 0.5, p[keep, ..., 0] >= 0.5
    assert stream(KM.Dice(), batches, [w]) == pytest.approx(M.dice(tb, pb), abs=1e-6)
    assert stream(KM.MeanDice(), batches, [w]) == pytest.approx(np.mean([M.dice(a, b) for a, b in zip(tb, pb)]),
                                                                abs=1e-6)


def multiclass_batches(seed=0, k=4):
    rng = np.random.default_rng(seed)
    out = []
    for n in (2, 3):
        labels = rng.integers(0, k - 1, (n, 9, 11))  # class k-1 never in the truth
        logits = rng.normal(size=(n, 9, 11, k)) + 2.5 * np.eye(k)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        out.append((labels, probs.astype(np.float32)))
    return out


def test_multiclass_streaming_equals_numpy():
    k = 4
    batches = multiclass_batches(k=k)
    t_all = np.concatenate([t for t, _ in batches])
    p_all = np.concatenate([p.argmax(-1) for _, p in batches])
    ref = M.multiclass_metrics(t_all, p_all, k)  # foreground classes, absent ones left out
    one_hot = [(np.eye(k, dtype=np.float32)[t], p) for t, p in batches]
    with_axis = [(t[..., None].astype(np.float32), p) for t, p in batches]
    as_int = [(t.astype(np.int32), p) for t, p in batches]
    for fmt in (one_hot, with_axis, as_int):
        assert stream(KM.Dice(num_classes=k), fmt) == pytest.approx(ref["mean_dice"], abs=1e-6)
        assert stream(KM.IoU(num_classes=k), fmt) == pytest.approx(ref["mean_iou"], abs=1e-6)
        per_image = [M.multiclass_metrics(t, p, k)["mean_dice"] for t, p in zip(t_all, p_all)]
        assert stream(KM.MeanDice(num_classes=k), fmt) == pytest.approx(np.mean(per_image), abs=1e-6)


def test_config_round_trip():
    for cls in (KM.Dice, KM.IoU, KM.MeanDice):
        m = cls(threshold=0.3, num_classes=3, name=f"x_{cls.__name__}")
        config = m.get_config()
        assert config["threshold"] == 0.3 and config["num_classes"] == 3 and config["name"] == f"x_{cls.__name__}"
        blob = keras.saving.serialize_keras_object(m)
        assert blob["registered_name"] == f"Functions>{cls.__name__}"
        again = keras.saving.deserialize_keras_object(blob, safe_mode=True)
        assert type(again) is cls and again.get_config() == config
    with pytest.raises(ValueError, match="num_classes"):
        KM.Dice(num_classes=0)


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
@pytest.mark.parametrize("num_classes", [1, 3])
def test_compiled_evaluate_matches_numpy(num_classes, tmp_path):
    """Inside model.evaluate (XLA where the backend has it) over 3 batches: the epoch's exact values."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((6, 12, 12, 1)).astype(np.float32)
    act = "sigmoid" if num_classes == 1 else "softmax"
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(num_classes, 3, padding="same",
                                                                            activation=act)])
    if num_classes == 1:
        y = (x > 0.6).astype(np.float32)
    else:
        y = np.minimum((x * 3).astype(np.int32), 2)
    jit = keras.backend.backend() in ("tensorflow", "jax")
    model.compile(loss="mse" if num_classes == 1 else "sparse_categorical_crossentropy",
                  metrics=KM.segmentation_metrics(num_classes=num_classes), jit_compile=jit)
    res = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    probs = np.asarray(model.predict(x, batch_size=6, verbose=0))
    if num_classes == 1:
        t, p = y[..., 0] > 0.5, probs[..., 0] >= 0.5
        exact, per_image = M.dice(t, p), np.mean([M.dice(a, b) for a, b in zip(t, p)])
        exact_iou = M.iou(t, p)
    else:
        t, p = y[..., 0], probs.argmax(-1)
        ref = M.multiclass_metrics(t, p, num_classes)
        exact, exact_iou = ref["mean_dice"], ref["mean_iou"]
        per_image = np.mean([M.multiclass_metrics(a, b, num_classes)["mean_dice"] for a, b in zip(t, p)])
    assert res["dice"] == pytest.approx(exact, abs=1e-5)
    assert res["iou"] == pytest.approx(exact_iou, abs=1e-5)
    assert res["mean_dice"] == pytest.approx(per_image, abs=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    res2 = again.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    assert res2["dice"] == pytest.approx(res["dice"], abs=1e-5)
