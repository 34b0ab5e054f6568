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


# ----------------------------------------------------------------------------- position-dependent models
# A per-pixel model gives the same answer whatever the tile weights or flips, so it cannot tell the Gaussian
# from a uniform weighting, nor a used `tta` from an ignored one.  These Keras models see where a pixel lies in
# its tile: a convolution 15 wide along x whose left 8 taps are 1, with zero padding, sums the tile's input
# from x - 7 to x; on an image of ones that is x + 1 at tile column x (0..7) - a ramp along every tile.
SIDE = 8                                          # the tile side along x (and the ramp's length)


def ramp_model(dims=2, bias=0.0, relu=False):
    """On ones: tile column c -> ``c + 1 + bias`` (``relu``: clipped at 0), whatever the other coordinates."""
    import keras

    conv = keras.layers.Conv2D if dims == 2 else keras.layers.Conv3D
    kernel = (1,) * (dims - 1) + (2 * SIDE - 1,)
    inputs = keras.Input((None,) * dims + (1,))
    layer = conv(1, kernel, padding="same", activation="relu" if relu else None)
    model = keras.Model(inputs, layer(inputs))
    w = np.zeros(kernel + (1, 1), np.float32)
    w[..., :SIDE, 0, 0] = 1.0                     # taps at offsets -7..0: the pixel and the 7 to its left
    layer.set_weights([w, np.array([bias], np.float32)])
    return model


def ramp(c):
    return c + 1.0                                 # ramp_model(): bias 0


def half_ramp(c):
    return np.maximum(c - 3.0, 0.0)               # ramp_model(bias=-4, relu=True): 0 0 0 0 1 2 3 4


def flip_mean(c):
    """``half_ramp`` averaged over the tile flips: flipping x reads column 7 - c; flipping y, z changes nothing."""
    return (half_ramp(c) + half_ramp(SIDE - 1 - c)) / 2    # 2 1.5 1 .5 .5 1 1.5 2


def blended(tile_value, width=12, starts=(0, 4), gaussian=True):
    """By hand: the prediction along x of an image of ones ``width`` wide, tiles starting at ``starts``.

    Every tile's value depends on x only and the Gaussian map is a product of one factor per axis, so the
    other axes' weights cancel: ``out(x) = sum_t w(x - s_t) v(x - s_t) / sum_t w(x - s_t)`` over the tiles t
    that hold x, with ``w(c) = exp(-(c - 3.5)^2 / 2)`` (sigma = 8 / 8) or 1.
    """
    out = []
    for x in range(width):
        cols = [x - s for s in starts if 0 <= x - s < SIDE]
        w = [np.exp(-(c - 3.5) ** 2 / 2) if gaussian else 1.0 for c in cols]
        out.append(sum(wi * tile_value(c) for wi, c in zip(w, cols)) / sum(w))
    return np.array(out, np.float32)


def test_gaussian_and_uniform_weights_by_hand_with_a_position_dependent_model():
    """Ones 10x12, tiles 8x8 at overlap 0.5: tiles start at rows 0, 2 and columns 0, 4.  Columns 0-3 and 8-11
    (the borders) lie in one tile column: the ramp itself, 1..4 and 5..8, with either weighting.  In columns 4-7
    two ramps overlap, 5..8 from the left tile and 1..4 from the right one: uniform weights give their mean
    3, 4, 5, 6; the Gaussian trusts each tile's centre: 4.990, 5.523, 3.477, 4.010."""
    predict = keras_predict_fn(ramp_model())
    image = np.ones((10, 12, 1), np.float32)
    gauss = sliding_window_predict(predict, image, SIDE, overlap=0.5, batch_size=3)
    uniform = sliding_window_predict(predict, image, SIDE, overlap=0.5, batch_size=3, gaussian=False)
    assert gauss.shape == uniform.shape == (10, 12, 1)
    for out in (gauss, uniform):                                    # the same in every row
        np.testing.assert_allclose(out[..., 0], np.broadcast_to(out[:1, :, 0], (10, 12)), atol=1e-5)
    np.testing.assert_allclose(uniform[0, :, 0], [1, 2, 3, 4, 3, 4, 5, 6, 5, 6, 7, 8], atol=1e-5)
    np.testing.assert_allclose(gauss[0, :4, 0], [1, 2, 3, 4], atol=1e-5)
    np.testing.assert_allclose(gauss[0, 8:, 0], [5, 6, 7, 8], atol=1e-5)
    np.testing.assert_allclose(gauss[0, 4:8, 0], [4.99011, 5.52319, 3.47681, 4.00989], atol=1e-4)
    np.testing.assert_allclose(gauss[0, :, 0], blended(ramp), atol=1e-5)
    np.testing.assert_allclose(uniform[0, :, 0], blended(ramp, gaussian=False), atol=1e-5)
    assert np.abs(gauss - uniform).max() > 1.9


def test_image_smaller_than_a_tile_is_padded_centred_and_cropped():
    """Ones 6x6 with 8x8 tiles: one tile, padded by 1 on each side (reflect keeps ones), so image column x is
    tile column x + 1: the ramp 2..7 - a crop off by one column would read 1..6 or 3..8."""
    out = sliding_window_predict(keras_predict_fn(ramp_model()), np.ones((6, 6, 1), np.float32), SIDE)
    np.testing.assert_allclose(out[..., 0], np.tile(np.arange(2, 8, dtype=np.float32), (6, 1)), atol=1e-5)


def test_tta_with_a_flip_sensitive_model_by_hand():
    """The half ramp 0 0 0 0 1 2 3 4 flipped left-right reads 4 3 2 1 0 0 0 0: averaged over the four flips a
    tile holds 2 1.5 1 .5 .5 1 1.5 2.  Whole 8x8 image (``predict_probabilities``) and 10x12 by sliding window
    (Gaussian-blended per tile as above); an ignored ``tta`` would give the half ramp instead."""
    from Functions.inference.tta import predict_probabilities

    model = ramp_model(bias=-4.0, relu=True)
    ones = np.ones((1, SIDE, SIDE, 1), np.float32)
    plain = predict_probabilities(model, ones)[0, ..., 0]
    flipped = predict_probabilities(model, ones, tta=True)[0, ..., 0]
    np.testing.assert_allclose(plain, np.tile([0, 0, 0, 0, 1, 2, 3, 4], (SIDE, 1)), atol=1e-5)
    np.testing.assert_allclose(flipped, np.tile([2, 1.5, 1, .5, .5, 1, 1.5, 2], (SIDE, 1)), atol=1e-5)

    predict = keras_predict_fn(model)
    image = np.ones((10, 12, 1), np.float32)
    no_tta = sliding_window_predict(predict, image, SIDE, overlap=0.5)[..., 0]
    tta = sliding_window_predict(predict, image, SIDE, overlap=0.5, tta=True)[..., 0]
    np.testing.assert_allclose(no_tta, np.broadcast_to(blended(half_ramp), (10, 12)), atol=1e-5)
    np.testing.assert_allclose(tta, np.broadcast_to(blended(flip_mean), (10, 12)), atol=1e-5)
    np.testing.assert_allclose(tta[0, :4], [2, 1.5, 1, .5], atol=1e-5)          # border: one tile's flip mean
    assert np.abs(tta - no_tta).max() > 1.4


def test_predictor_tiles_with_gaussian_weights_and_passes_tta():
    """The patch-trained predictor (``predict``/``evaluate`` of a ``--patch-size`` run) on the same cases."""
    from Functions.inference.predictor import Predictor

    image = np.ones((10, 12, 1), np.float32)
    ramp_predictor = Predictor(ramp_model(), channels=1, input_size=(None, None), normalization="none",
                               patch_size=SIDE, overlap=0.5)
    np.testing.assert_allclose(ramp_predictor.probabilities([image])[0][0, :, 0], blended(ramp), atol=1e-5)
    half = Predictor(ramp_model(bias=-4.0, relu=True), channels=1, input_size=(None, None), normalization="none",
                     patch_size=SIDE, overlap=0.5)
    np.testing.assert_allclose(half.probabilities([image], tta=True)[0][0, :, 0], blended(flip_mean), atol=1e-5)
    np.testing.assert_allclose(half.probabilities([image])[0][0, :, 0], blended(half_ramp), atol=1e-5)


def test_volume_sliding_window_gaussian_and_tta_by_hand():
    """3-D (``Functions.inference.volumes.predict_probabilities``, what volume predict/evaluate use): ones
    6x4x12, tiles 4x4x8 at overlap 0.5 start at depths 0, 2 and columns 0, 4; the ramp runs along x as in 2-D,
    so the hand values are the same, and TTA's eight flips average to the same flip mean."""
    from Functions.inference.volumes import VolumeSettings, predict_probabilities

    settings = VolumeSettings(patch=(4, 4, SIDE), overlap=0.5)
    volume = np.ones((6, 4, 12, 1), np.float32)
    out = predict_probabilities(ramp_model(dims=3), volume, settings)[..., 0]
    assert out.shape == (6, 4, 12)
    np.testing.assert_allclose(out, np.broadcast_to(blended(ramp), out.shape), atol=1e-5)
    assert np.abs(out[0, 0] - blended(ramp, gaussian=False)).max() > 1.9          # not uniform weights
    half = ramp_model(dims=3, bias=-4.0, relu=True)
    tta = predict_probabilities(half, volume, settings, tta=True)[..., 0]
    np.testing.assert_allclose(tta, np.broadcast_to(blended(flip_mean), tta.shape), atol=1e-5)
    no_tta = predict_probabilities(half, volume, settings)[..., 0]
    np.testing.assert_allclose(no_tta, np.broadcast_to(blended(half_ramp), no_tta.shape), atol=1e-5)
