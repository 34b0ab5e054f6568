"""``predict_probabilities``: the same numbers as ``model.predict``, by a path without its per-call set-up."""

from __future__ import annotations

import numpy as np
import pytest

from Functions.inference.tta import predict_probabilities, probabilities_to_masks


def _images(n, size=32, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


class NoPredict:
    """Wraps a model; ``predict`` (the slow per-call path) must not be used."""

    def __init__(self, model):
        self.model = model
        self.batches = []

    def predict(self, *a, **k):
        raise AssertionError("predict_probabilities called model.predict")

    def predict_on_batch(self, x):
        self.batches.append(x.shape)
        return self.model.predict_on_batch(x)

    @property
    def outputs(self):
        return self.model.outputs


@pytest.mark.backend
def test_matches_model_predict_with_a_padded_last_batch():
    from Functions.models import build_unet

    model = build_unet((32, 32, 1), base_filters=4, depth=2)
    x = _images(7)
    expected = model.predict(x, batch_size=3, verbose=0)
    wrapped = NoPredict(model)
    got = predict_probabilities(wrapped, x, batch_size=3)
    assert got.shape == (7, 32, 32, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert wrapped.batches == [(3, 32, 32, 1)] * 3            # the last batch (1 image) padded to 3: one shape
    few = NoPredict(model)
    np.testing.assert_allclose(predict_probabilities(few, x[:2], batch_size=8), expected[:2], atol=1e-5)
    assert few.batches == [(2, 32, 32, 1)]                     # fewer images than a batch: no padding
    assert predict_probabilities(model, x[:0], batch_size=4).shape == (0, 32, 32, 1)
    float64 = predict_probabilities(model, x.astype(np.float64), batch_size=4)
    assert float64.dtype == np.float32
    np.testing.assert_allclose(float64, expected, atol=1e-5)


@pytest.mark.backend
def test_deep_supervision_last_head_and_tta():
    from Functions.models import build_model, single_output

    model = build_model("unet_plus_plus", (32, 32, 1), 1, base_filters=4, depth=2, deep_supervision=True)
    assert len(model.outputs) > 1
    x = _images(5, seed=1)
    last = single_output(model).predict(x, verbose=0)
    np.testing.assert_allclose(predict_probabilities(model, x, batch_size=2), last, atol=1e-5)
    flips = [((), last)]
    for axes in ((2,), (1,), (1, 2)):
        flips.append((axes, np.flip(single_output(model).predict(np.flip(x, axis=axes), verbose=0), axis=axes)))
    expected = np.mean([p for _, p in flips], axis=0)
    got = predict_probabilities(model, x, batch_size=2, tta=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert probabilities_to_masks(got).shape == (5, 32, 32)
