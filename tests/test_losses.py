"""Segmentation losses: values by hand, finite gradients on edge cases, minimum at the truth, serialization."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from Functions import losses as L  # noqa: E402

pytestmark = pytest.mark.backend

NAMES = ["bce", "dice", "bce_dice", "jaccard", "focal", "tversky", "focal_tversky", "cce", "cce_dice"]
OVERLAP = ["dice", "jaccard", "tversky", "focal_tversky"]


def np_value(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def value_and_grad(fn, x: np.ndarray):
    """``fn(x)`` and d fn / d x as NumPy, on whichever backend Keras runs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = fn(v)
        return out.numpy(), tape.gradient(out, v).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        out, g = jax.value_and_grad(fn)(jnp.asarray(x))
        return np.asarray(out), np.asarray(g)
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        out = fn(v)
        out.backward()
        return out.detach().cpu().numpy(), v.grad.detach().cpu().numpy()
    pytest.skip(f"no gradient helper for backend {backend}")


def loss_value(name, y_true, y_pred, **kw) -> float:
    return float(np_value(L.get_loss(name, **kw)(y_true, y_pred)))


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------
def test_names_and_unknown():
    assert L.available_losses() == NAMES
    for name in NAMES:
        loss = L.get_loss(name)
        assert isinstance(loss, keras.losses.Loss)
        assert loss.name == name
    assert isinstance(L.get_loss("BCE-Dice"), L.BCEDiceLoss)
    with pytest.raises(ValueError, match="bce, dice, bce_dice, jaccard, focal, tversky, focal_tversky"):
        L.get_loss("hinge")
    with pytest.raises(ValueError, match="alpha, beta"):
        L.get_loss("tversky", gamma=2.0)
    assert L.get_loss("tversky", alpha=0.6, beta=0.4).alpha == 0.6


# ----------------------------------------------------------------------------
# values by hand
# ----------------------------------------------------------------------------
T1 = np.array([1, 1, 0, 0], np.float32).reshape(1, 2, 2, 1)
P1 = np.array([1.0, 0.5, 0.5, 0.0], np.float32).reshape(1, 2, 2, 1)


def test_soft_overlaps_by_hand():
    # tp = 1.5, sum t = 2, sum p = 2, fp = 0.5, fn = 0.5
    assert loss_value("dice", T1, P1, smooth=0.0) == pytest.approx(1 - 3 / 4, abs=1e-6)
    assert loss_value("dice", T1, P1) == pytest.approx(1 - 4 / 5, abs=1e-6)
    assert loss_value("jaccard", T1, P1) == pytest.approx(1 - 2.5 / 3.5, abs=1e-6)
    assert loss_value("tversky", T1, P1, alpha=0.3, beta=0.7) == pytest.approx(1 - 2.5 / 3.0, abs=1e-6)
    # alpha = beta = 0.5 is the Dice (without smoothing, whose weight differs by a factor 2)
    assert loss_value("tversky", T1, P1, alpha=0.5, beta=0.5, smooth=0.0) == \
        pytest.approx(loss_value("dice", T1, P1, smooth=0.0), abs=1e-6)
    ft = loss_value("focal_tversky", T1, P1, gamma=0.75)
    assert ft == pytest.approx((1 - 2.5 / 3.0) ** 0.75, abs=1e-6)
    # false positives weigh alpha, false negatives beta
    only_fp = np.array([1.0, 1.0, 1.0, 0.0], np.float32).reshape(1, 2, 2, 1)
    assert loss_value("tversky", T1, only_fp, alpha=0.9, beta=0.1, smooth=0.0) > \
        loss_value("tversky", T1, only_fp, alpha=0.1, beta=0.9, smooth=0.0)


def test_bce_and_focal_by_hand():
    p = np.clip(P1, 1e-7, 1 - 1e-7).astype(np.float64)
    ce = -(T1 * np.log(p) + (1 - T1) * np.log(1 - p))
    assert loss_value("bce", T1, P1) == pytest.approx(ce.mean(), rel=1e-5)
    # gamma = 0, alpha = 0.5: half the cross-entropy
    assert loss_value("focal", T1, P1, alpha=0.5, gamma=0.0) == pytest.approx(ce.mean() / 2, rel=1e-5)
    fl = -(0.25 * T1 * (1 - p) ** 2 * np.log(p) + 0.75 * (1 - T1) * p ** 2 * np.log(1 - p))
    assert loss_value("focal", T1, P1) == pytest.approx(fl.mean(), rel=1e-5)
    bd = loss_value("bce_dice", T1, P1, dice_weight=2.0)
    assert bd == pytest.approx(ce.mean() + 2 * loss_value("dice", T1, P1), rel=1e-5)


def test_dice_is_per_image_then_batch_mean():
    t = np.zeros((2, 4, 4, 1), np.float32)
    t[0, :2] = 1  # image 0: 8 pixels, predicted perfectly
    t[1, 0, 0] = 1  # image 1: 1 pixel, missed
    p = np.zeros_like(t)
    p[0, :2] = 1
    per_image = [0.0, 1 - 1 / 2]  # smooth 1: (0 + 1) / (1 + 0 + 1)
    assert loss_value("dice", t, p) == pytest.approx(np.mean(per_image), abs=1e-6)
    pooled = 1 - (2 * 8 + 1) / (9 + 8 + 1)
    assert abs(loss_value("dice", t, p) - pooled) > 0.1


def test_multiclass_label_formats_agree():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 5, 6))
    logits = rng.normal(size=(2, 5, 6, 3))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    for name in NAMES:
        a = loss_value(name, one_hot, probs)
        b = loss_value(name, labels[..., None].astype(np.float32), probs)
        c = loss_value(name, labels.astype(np.int32), probs)
        assert np.isfinite(a) and a > 0, name
        assert a == pytest.approx(b, abs=1e-6) and a == pytest.approx(c, abs=1e-6), name
    # categorical cross-entropy by hand
    ce = -np.log(np.clip((one_hot * probs).sum(-1), 1e-7, 1)).mean()
    assert loss_value("bce", one_hot, probs) == pytest.approx(ce, rel=1e-5)
    # background excluded: only classes 1, 2 averaged
    d_all = loss_value("dice", one_hot, probs)
    d_fg = loss_value("dice", one_hot, probs, include_background=False)
    assert d_all != pytest.approx(d_fg)


# ----------------------------------------------------------------------------
# numerics
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_finite_with_finite_gradients_on_extreme_masks(name):
    loss = L.get_loss(name)
    shape = (2, 4, 4, 1)
    for t_fill in (0.0, 1.0):
        y_true = ops.convert_to_tensor(np.full(shape, t_fill, np.float32))
        for p_fill in (0.0, 1.0, 0.5):
            x = np.full(shape, p_fill, np.float32)
            v, g = value_and_grad(lambda yp: loss(y_true, yp), x)
            assert np.isfinite(v), (name, t_fill, p_fill)
            assert np.all(np.isfinite(g)), (name, t_fill, p_fill)
            assert v >= -1e-6


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_minimal(name):
    rng = np.random.default_rng(1)
    t = (rng.random((2, 8, 8, 1)) < 0.4).astype(np.float32)
    best = loss_value(name, t, t)
    if name in OVERLAP:
        assert best == pytest.approx(0.0, abs=1e-4)
    else:
        assert best < 1e-4
    for k in range(5):
        noisy = np.clip(t + rng.normal(0, 0.2 + 0.1 * k, t.shape), 0, 1).astype(np.float32)
        assert loss_value(name, t, noisy) > best
    assert loss_value(name, t, 1 - t) > loss_value(name, t, np.full_like(t, 0.5))
    # the gradient points towards the truth: a small step against it lowers the loss
    x = np.full_like(t, 0.5)
    y = ops.convert_to_tensor(t)
    loss = L.get_loss(name)
    v0, g = value_and_grad(lambda yp: loss(y, yp), x)
    v1 = loss_value(name, t, np.clip(x - 0.05 * g / (np.abs(g).max() + 1e-12), 0, 1))
    assert v1 < v0


def test_mixed_precision_inputs_compute_in_float32():
    rng = np.random.default_rng(2)
    t = (rng.random((2, 8, 8, 1)) < 0.5).astype(np.float32)
    p = rng.uniform(0.01, 0.99, t.shape).astype(np.float32)
    p16 = ops.convert_to_tensor(p.astype(np.float16))
    for name in NAMES:
        fn = {"bce": L.bce, "dice": L.dice_loss, "bce_dice": L.bce_dice_loss, "jaccard": L.jaccard_loss,
              "focal": L.focal_loss, "tversky": L.tversky_loss, "focal_tversky": L.focal_tversky_loss,
              "cce": L.categorical_crossentropy, "cce_dice": L.cce_dice_loss}[name]
        out = fn(ops.convert_to_tensor(t), p16)
        assert keras.backend.standardize_dtype(out.dtype) == "float32", name
        assert tuple(out.shape) == (2,)
        ref = np_value(fn(ops.convert_to_tensor(t), ops.convert_to_tensor(p.astype(np.float16).astype(np.float32))))
        np.testing.assert_allclose(np_value(out), ref, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------
# serialization and training
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_serialization_round_trip(name):
    kwargs = {"bce": {}, "dice": {"smooth": 0.5}, "bce_dice": {"dice_weight": 0.3},
              "jaccard": {"include_background": False}, "focal": {"alpha": 0.6, "gamma": 1.5},
              "tversky": {"alpha": 0.2, "beta": 0.8}, "focal_tversky": {"gamma": 1.25},
              "cce": {"class_weights": [1.0, 3.0]}, "cce_dice": {"dice_weight": 0.5}}[name]
    loss = L.get_loss(name, **kwargs)
    config = loss.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    blob = keras.saving.serialize_keras_object(loss)
    assert blob["registered_name"].startswith("Functions>")
    again = keras.saving.deserialize_keras_object(blob, safe_mode=True)
    assert type(again) is type(loss) and again.get_config() == config
    assert loss_value(name, T1, P1, **kwargs) == pytest.approx(float(np_value(again(T1, P1))), abs=1e-7)


def tiny_model(channels: int):
    activation = "sigmoid" if channels == 1 else "softmax"
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(channels, 1, activation=activation),
    ])


@pytest.mark.parametrize("channels", [1, 3])
def test_training_with_every_loss_stays_finite(channels, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype(np.float32)
    labels = (x[..., 0] * channels * 0.999).astype(np.int32)
    y = labels[..., None].astype(np.float32) if channels == 1 else labels[..., None]
    y[0] = 0  # an image with an empty truth
    for name in NAMES:
        eager = name != "bce_dice"  # the default loss compiled; eager elsewhere (compiling is the slow part)
        model = tiny_model(channels)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=L.get_loss(name), run_eagerly=eager)
        hist = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"])), name
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert type(again.loss) is type(L.get_loss(NAMES[-1]))          # the last loss trained, restored as itself
