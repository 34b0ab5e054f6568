"""Functions.viz.architecture: blocks and skips read from the model graph, and the teaching figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from Functions.models import build_model  # noqa: E402
from Functions.viz import architecture  # noqa: E402


@pytest.fixture(scope="module")
def small_unet():
    return build_model("unet", (32, 32, 1), 1, depth=2, base_filters=4)


def test_unet_blocks_roles_shapes_and_skips(small_unet):
    blocks, skips = architecture.architecture_blocks(small_unet)
    assert [b.name for b in blocks] == ["enc0", "enc1", "bridge", "dec1", "dec0"]
    assert [b.role for b in blocks] == ["encoder", "encoder", "bottleneck", "decoder", "decoder"]
    assert [b.shape for b in blocks] == [(32, 32, 4), (16, 16, 8), (8, 8, 16), (16, 16, 8), (32, 32, 1)]
    # hand count: 3x3 conv 1->4 (no bias: batch norm follows), BN (4 numbers per channel), 3x3 conv 4->4, BN
    assert blocks[0].params == 9 * 1 * 4 + 16 + 9 * 4 * 4 + 16
    assert blocks[2].params == 9 * 8 * 16 + 64 + 9 * 16 * 16 + 64
    assert sum(b.params for b in blocks) == small_unet.count_params()
    assert [(k.source, k.target, k.kind) for k in skips] == [(1, 3, "concat"), (0, 4, "concat")]


def test_attention_gates_do_not_bend_the_main_path():
    model = build_model("attention_unet", (32, 32, 1), 1, depth=2, base_filters=4)
    blocks, skips = architecture.architecture_blocks(model)
    assert [b.name for b in blocks] == ["enc0", "enc1", "bridge", "dec1", "dec0"]
    assert blocks[2].shape == (8, 8, 16)
    assert [(k.source, k.target) for k in skips] == [(1, 3), (0, 4)]
    assert sum(b.params for b in blocks) == model.count_params()


def test_receptive_fields_by_hand(small_unet):
    # two 3x3 convs: 1 + 2 + 2 = 5; pool 2x2: +1 -> 6, jump 2; two convs: +4 +4 -> 14; pool: +2 -> 16, jump 4;
    # two convs: +8 +8 -> 32
    assert architecture.receptive_fields(small_unet) == [("enc0", 5), ("enc1", 14), ("bridge", 32)]


def test_figures_are_drawn(small_unet):
    fig = architecture.plot_architecture(small_unet)
    try:
        assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 5
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert "16×16×8" in texts and "8×8×16" in texts and texts.count("concat") == 2
    finally:
        plt.close(fig)
    fig = architecture.plot_parameter_shares(small_unet)
    try:
        heights = [p.get_height() for p in fig.axes[0].patches]
        assert sum(heights) == small_unet.count_params() and len(heights) == 5
    finally:
        plt.close(fig)
    fig = architecture.plot_receptive_field(np.zeros((32, 32), np.float32), small_unet)
    try:
        assert [p.get_width() for p in fig.axes[0].patches] == [5, 14, 32]
    finally:
        plt.close(fig)
    fig = architecture.plot_feature_maps(small_unet, np.random.default_rng(0).random((32, 32, 1)), "enc0_2_relu", n=4)
    try:
        assert [ax.get_title() for ax in fig.axes if ax.images] == ["input"] + [f"channel {c}" for c in range(4)]
        assert fig.axes[1].images[0].get_array().shape == (32, 32)
    finally:
        plt.close(fig)


def test_transposed_convolution_stamps_match_keras():
    import keras

    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    kernel = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    stamps, out = architecture.transposed_conv_stamps(x, kernel, stride=2)
    assert stamps.shape == (2, 2, 5, 5) and out.shape == (5, 5)  # o = (2 - 1) * 2 - 0 + 3
    # the centre (2, 2) gets one tap of every stamp: x[0,0]*k[2,2] + x[0,1]*k[2,0] + x[1,0]*k[0,2] + x[1,1]*k[0,0]
    assert out[2, 2] == 1 * 1 + 2 * 0 + 3 * (-1) + 4 * 1
    layer = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="valid", use_bias=False)
    layer.build((1, 2, 2, 1))
    layer.set_weights([kernel.reshape(3, 3, 1, 1)])
    expected = keras.ops.convert_to_numpy(layer(x.reshape(1, 2, 2, 1).astype("float32")))[0, ..., 0]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    _, cropped = architecture.transposed_conv_stamps(np.ones((4, 4)), np.ones((4, 4)), stride=2, padding=1)
    assert cropped.shape == (8, 8)  # (4 - 1) * 2 - 2 + 4: the usual "doubles the size" setting
    fig = architecture.plot_transposed_convolution(x, kernel, stride=2)
    try:
        assert len(fig.axes) == 2 + 4 + 1
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="stride"):
        architecture.transposed_conv_stamps(x, kernel, stride=0)
