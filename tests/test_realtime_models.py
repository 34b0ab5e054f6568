"""The real-time models (UNeXt, lite U-Net): the token shift by hand, sizes against the papers, reload elsewhere.

Shapes, the one-process reload, overfitting and bad sizes are in ``test_models.py`` (both models are
registered there); here: what is particular to them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from Functions.models import build_model
from Functions.models.flops import count_flops
from Functions.models.layers import ChannelGroupShift

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.backend
def test_channel_group_shift_by_hand():
    # 7 channels, 3 groups -> torch.chunk sizes 3, 3, 1; shifts -1, 0, +1 along the width.
    x = np.arange(1 * 1 * 4 * 7, dtype="float32").reshape(1, 1, 4, 7) + 1
    y = np.asarray(ChannelGroupShift(3, axis=2)(x))
    row = x[0, 0]                                            # (width 4, channels 7)
    expected = np.zeros_like(row)
    expected[:3, 0:3] = row[1:, 0:3]                         # moved by -1: out[j] = in[j + 1]
    expected[:, 3:6] = row[:, 3:6]                           # not moved
    expected[1:, 6] = row[:3, 6]                             # moved by +1: out[j] = in[j - 1]
    np.testing.assert_array_equal(y[0, 0], expected)
    # Along the height the same rule: channel 0 of 5 groups moves up by 2 with zeros entering at the bottom.
    x = np.random.default_rng(0).random((2, 6, 3, 10)).astype("float32")
    y = np.asarray(ChannelGroupShift(5, axis=1)(x))
    np.testing.assert_array_equal(y[:, :4, :, 0:2], x[:, 2:, :, 0:2])
    np.testing.assert_array_equal(y[:, 4:, :, 0:2], 0)
    np.testing.assert_array_equal(y[:, 2:, :, 8:10], x[:, :4, :, 8:10])
    assert ChannelGroupShift.from_config(ChannelGroupShift(3, axis=2).get_config()).axis == 2
    with pytest.raises(ValueError, match="odd"):
        ChannelGroupShift(4)


def test_unext_matches_the_paper_size():
    """1.47 M parameters and 0.57 G multiply-adds at 256x256x3 (Valanarasu & Patel 2022, Table 1)."""
    model = build_model("unext", (256, 256, 3), 1)
    assert 1.45e6 <= model.count_params() <= 1.50e6, model.count_params()
    macs = count_flops(model) / 2                            # count_flops counts a multiply-add as 2
    assert 0.53e9 <= macs <= 0.62e9, macs
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_shift_h") for n in names) == 4   # 2 encoder + 2 decoder shifted-MLP blocks
    assert model.get_layer("tok4_embed").output.shape[1:] == (8, 8, 256)


def test_lite_unet_is_lighter_than_unet():
    lite = build_model("lite_unet", (256, 256, 1), 1)
    unet = build_model("unet", (256, 256, 1), 1)
    assert 0.5e6 <= lite.count_params() <= 1.2e6, lite.count_params()
    assert count_flops(lite) < 0.2 * count_flops(unet)
    assert lite.get_layer("block10_project_bn").output.shape[1:] == (8, 8, 96)   # 1/32 of the input


_RELOAD = textwrap.dedent("""
    import sys, numpy as np, keras
    import Functions.models  # registers the custom layers, as the library's own loaders do
    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path, safe_mode=True)
        np.save(path + ".npy", keras.ops.convert_to_numpy(model(x, training=False)))
""")
REALTIME = {"unext": dict(filters=(4, 8, 16, 20, 24)), "lite_unet": dict(alpha=0.25, decoder_filters=(8, 8, 8, 8, 8))}


def test_saved_models_reload_in_a_new_process_in_safe_mode(tmp_path):
    x = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected, paths = {}, []
    for name, options in REALTIME.items():
        keras.utils.set_random_seed(0)
        model = build_model(name, (32, 32, 1), 1, **options)
        # One training step so batch-norm statistics and weights differ from their initial values.
        model.compile(optimizer="adam", loss="binary_crossentropy", run_eagerly=True)
        model.train_on_batch(x, (x > 0.5).astype("float32"))
        expected[name] = keras.ops.convert_to_numpy(model(x, training=False))
        paths.append(str(tmp_path / f"{name}.keras"))
        model.save(paths[-1])
    env = {**os.environ, "PYTHONPATH": str(REPO / "Code"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _RELOAD, str(tmp_path / "x.npy"), *paths], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, path in zip(REALTIME, paths):
        np.testing.assert_allclose(np.load(path + ".npy"), expected[name], atol=1e-6)


@pytest.mark.backend
def test_exact_gelu_is_keras_gelu():
    from Functions.models.layers import ExactGELU

    x = np.linspace(-6, 6, 241, dtype="float32").reshape(1, 241)
    expected = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(np.asarray(ExactGELU()(x)), expected, atol=1e-6)
    # By hand at 1: 0.5 * (1 + erf(1 / sqrt 2)) = 0.841344746...
    np.testing.assert_allclose(np.asarray(ExactGELU()(np.ones((1, 1), "float32"))), [[0.8413447]], atol=1e-6)
