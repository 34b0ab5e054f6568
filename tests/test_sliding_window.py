"""Sliding-window inference: exact reconstruction, no seams, shapes in 2-D and 3-D, large images."""

import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.inference.sliding_window import (gaussian_importance_map, keras_predict_fn, sliding_window_predict,
                                                tile_starts)


def identity(batch):
    return batch.copy()


def test_gaussian_importance_map_values():
    g = gaussian_importance_map((8, 8))
    assert g.shape == (8, 8) and g.dtype == np.float32
    assert g.max() == pytest.approx(1.0) and g.min() > 0
    # centre (3.5, 3.5), sigma = 1: the corner (0, 0) is 3.5 away on each axis, the peak 0.5 away.
    expected = np.exp(-(3.5 ** 2) / 2) ** 2 / np.exp(-(0.5 ** 2) / 2) ** 2
    assert g[0, 0] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(g, g[::-1, ::-1])                 # symmetric under flips
    g3 = gaussian_importance_map((4, 6, 8))
    assert g3.shape == (4, 6, 8) and g3.max() == pytest.approx(1.0) and g3.min() > 0


def test_tile_starts_cover_the_axis():
    assert tile_starts(10, 4, 0.5) == [0, 2, 4, 6]                     # step 2 exactly
    assert tile_starts(11, 4, 0.5) == [0, 2, 4, 5, 7]                  # 5 tiles, step 7/4 rounded
    assert tile_starts(8, 4, 0.0) == [0, 4]
    assert tile_starts(3, 4, 0.5) == [0]
    s = tile_starts(1000, 128, 0.5)
    assert s[0] == 0 and s[-1] == 1000 - 128 and max(np.diff(s)) <= 64


@pytest.mark.parametrize("shape,patch", [((37, 53, 2), 16), ((20, 20, 1), (8, 12)), ((9, 13, 3), 16),
                                         ((11, 17, 19, 1), 8), ((5, 20, 7, 2), (8, 8, 8))])
def test_identity_model_reproduces_the_image(shape, patch):
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = sliding_window_predict(identity, image, patch, overlap=0.5, batch_size=3)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-5)


def test_identity_with_tta_and_without_gaussian():
    image = np.random.default_rng(1).uniform(size=(21, 30, 1)).astype(np.float32)
    for kwargs in ({"tta": True}, {"gaussian": False}, {"overlap": 0.0}, {"overlap": 0.9}):
        np.testing.assert_allclose(sliding_window_predict(identity, image, 8, **kwargs), image, atol=1e-5)


def test_constant_image_has_no_seams():
    # A model whose output depends on the position inside the tile would show seams; a per-pixel model must not.
    image = np.full((50, 70, 1), 0.7, np.float32)
    out = sliding_window_predict(lambda b: 1 / (1 + np.exp(-3 * b)), image, 16, overlap=0.5)
    assert np.ptp(out) < 1e-6
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-2.1)), rtol=1e-6)


def test_output_channels_may_differ_from_input():
    image = np.random.default_rng(2).uniform(size=(30, 30, 1)).astype(np.float32)
    out = sliding_window_predict(lambda b: np.concatenate([b, 1 - b, 2 * b], -1), image, 16)
    assert out.shape == (30, 30, 3)
    np.testing.assert_allclose(out[..., 2], 2 * image[..., 0], atol=1e-5)


def test_batches_have_a_fixed_size():
    sizes = []

    def record(b):
        sizes.append(len(b))
        return b

    sliding_window_predict(record, np.zeros((40, 40, 1), np.float32), 16, overlap=0.5, batch_size=4)
    # starts 0, 8, 16, 24 per axis -> 16 tiles -> 4 batches of 4
    assert sizes == [4, 4, 4, 4]
    sizes.clear()
    sliding_window_predict(record, np.zeros((30, 40, 1), np.float32), 16, overlap=0.5, batch_size=5)
    assert set(sizes) == {5}
    sizes.clear()
    sliding_window_predict(record, np.zeros((10, 10, 1), np.float32), 16, batch_size=4)
    assert sizes == [1]


@pytest.mark.parametrize("overlap", [1.0, 1.5, -0.1])
def test_bad_overlap_is_a_user_error(overlap):
    with pytest.raises(UserError, match="overlap"):
        sliding_window_predict(identity, np.zeros((8, 8, 1), np.float32), 4, overlap=overlap)


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="spatial axes"):
        sliding_window_predict(identity, np.zeros((8, 8, 1), np.float32), (4, 4, 4))
    with pytest.raises(UserError, match="shape"):
        sliding_window_predict(identity, np.zeros((8,), np.float32), 4)
    with pytest.raises(UserError, match="same spatial size"):
        sliding_window_predict(lambda b: b[:, ::2, ::2], np.zeros((8, 8, 1), np.float32), 4)


def test_large_uint8_image():
    """4000x3000x1 uint8 (12 MB), many tiles (the peak memory against the accumulators: benchmarks/bounds.py)."""
    image = np.zeros((4000, 3000, 1), np.uint8)
    image[::7] = 200
    out = sliding_window_predict(lambda b: b * (1 / 255), image, 256, overlap=0.5, batch_size=8)
    assert out.shape == (4000, 3000, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[::997, ::997, 0], image[::997, ::997, 0] / 255, atol=1e-5)
    np.testing.assert_allclose(out[-1, -1, 0], image[-1, -1, 0] / 255, atol=1e-5)


def test_keras_model_as_predict_fn():
    import keras

    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(2, 1, kernel_initializer="ones", bias_initializer="zeros")(inputs)
    model = keras.Model(inputs, outputs)
    image = np.random.default_rng(3).uniform(size=(40, 24, 1)).astype(np.float32)
    out = sliding_window_predict(keras_predict_fn(model), image, 16, batch_size=2)
    assert out.shape == (40, 24, 2)
    np.testing.assert_allclose(out, np.concatenate([image, image], -1), atol=1e-5)
