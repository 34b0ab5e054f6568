"""3-D models (unet3d, attention_unet3d, resunet3d) at tiny sizes: shapes, safe-mode reload, parameter counts.

Marked ``backend``: CI reruns them on JAX and PyTorch.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from Functions.models import VOLUME_REGISTRY, available_models, build_model, model_info
from Functions.models import blocks

pytestmark = pytest.mark.backend

VOLUME_MODELS = ["unet3d", "attention_unet3d", "resunet3d"]
TINY = dict(depth=2, base_filters=4)
EAGER = keras.backend.backend() != "jax"


def _run(model, x):
    if not EAGER:
        return model.predict(x, verbose=0)
    return keras.ops.convert_to_numpy(model(keras.ops.convert_to_tensor(x), training=False))


def _volumes(n, side, channels, seed=0):
    return np.random.default_rng(seed).random((n, side, side, side, channels)).astype("float32")


def test_volume_models_are_registered_apart_from_image_models():
    assert available_models("segmentation", dims=3) == VOLUME_MODELS == list(VOLUME_REGISTRY)
    assert not set(VOLUME_MODELS) & set(available_models())          # image-model tables stay 2-D
    info = model_info("unet3d")
    assert "Cicek" in info["paper"] and info["defaults"]["input_shape"] == (64, 64, 64, 1)
    with pytest.raises(ValueError, match="unet3d"):
        build_model("unet4d")


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_output_shapes_binary_and_multiclass(name):
    one = build_model(name, (16, 16, 16, 1), 1, **TINY)
    y = np.asarray(_run(one, _volumes(1, 16, 1)))
    assert y.shape == (1, 16, 16, 16, 1) and y.dtype == np.float32 and np.all((y >= 0) & (y <= 1))
    three = build_model(name, (16, 24, 32, 2), 3, **TINY)              # non-cubic patch, two channels
    y3 = np.asarray(_run(three, np.random.default_rng(1).random((1, 16, 24, 32, 2)).astype("float32")))
    assert y3.shape == (1, 16, 24, 32, 3)
    np.testing.assert_allclose(y3.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_keras_file_reloads_in_safe_mode_with_identical_predictions(name, tmp_path):
    model = build_model(name, (16, 16, 16, 1), 2, **TINY)
    x = _volumes(1, 16, 1, seed=3)
    expected = _run(model, x)
    model.save(tmp_path / f"{name}.keras")
    reloaded = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)
    np.testing.assert_allclose(_run(reloaded, x), expected, atol=1e-6)


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_docstring_parameter_count_matches_default_build(name):
    doc = VOLUME_REGISTRY[name].__doc__
    count = int(re.search(r"Default parameter count: ([\d,]+)", doc).group(1).replace(",", ""))
    assert build_model(name).count_params() == count                     # default (64, 64, 64, 1)


def test_blocks_in_3d_hand_computed_parameter_counts():
    x = keras.Input((8, 8, 8, 2))
    y = blocks.conv_bn_act(x, 8, name="c", dims=3)
    m = keras.Model(x, y)
    assert m.count_params() == 27 * 2 * 8 + 4 * 8                        # 3x3x3 kernel, no bias; BN 4 per filter
    up = keras.Model(x, blocks.upsample(x, 4, name="u", dims=3))
    assert up.output.shape[1:] == (16, 16, 16, 4) and up.count_params() == 8 * 2 * 4 + 4
    head = keras.Model(x, blocks.segmentation_head(x, 3, dims=3))
    assert head.count_params() == 2 * 3 + 3
    # 2-D blocks unchanged
    x2 = keras.Input((8, 8, 2))
    assert keras.Model(x2, blocks.conv_bn_act(x2, 8, name="c2")).count_params() == 9 * 2 * 8 + 4 * 8
    with pytest.raises(ValueError, match="dims must be 2"):
        blocks.conv_bn_act(x2, 8, name="c4", dims=4)


def test_bad_volume_size_names_a_valid_size():
    with pytest.raises(ValueError, match=r"input size 20x16x16 is not divisible by 2\*\*3=8; use e\.g\. 16x16x16"):
        build_model("unet3d", (20, 16, 16, 1))
    with pytest.raises(ValueError, match="depth, height, width, channels"):
        build_model("unet3d", (16, 16, 1))
    assert build_model("unet3d", (None, None, None, 1), **TINY).output.shape[1:] == (None, None, None, 1)


def test_unet3d_learns_a_cube():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.05, (2, 16, 16, 16, 1)).astype("float32")
    y = np.zeros_like(x)
    y[0, 4:10, 5:11, 3:9] = 1
    y[1, 8:14, 2:8, 6:12] = 1
    x += 0.5 * y
    model = build_model("unet3d", (16, 16, 16, 1), 1, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", run_eagerly=EAGER)
    losses = [float(model.train_on_batch(x, y))]
    for _ in range(30):
        losses.append(float(model.train_on_batch(x, y)))
        if losses[-1] <= 0.5 * losses[0]:
            break
    assert np.isfinite(losses[-1]) and losses[-1] <= 0.5 * losses[0], losses


def test_architectures_command_lists_the_volume_models(capsys):
    from Functions import cli

    assert cli.main(["architectures", "--dims", "3", "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("input 32x32x32x1, 1 class(es)") and "one patch" in out.splitlines()[0]
    for name, count in (("unet3d", "351,513"), ("attention_unet3d", "358,292"), ("resunet3d", "374,217")):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert count in line and "Cicek" in out
    assert cli.main(["architectures", "--dims", "3", "--image-size", "20"]) == 2
    assert "multiple of 8" in capsys.readouterr().err


def test_train_picks_volumes_from_the_data_and_3d_defaults_for_untouched_flags(tmp_path):
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.volumes import VolumeConfig, volume_defaults, wants_volumes

    (tmp_path / "task" / "imagesTr").mkdir(parents=True)
    (tmp_path / "task" / "dataset.json").write_text("{}")
    assert wants_volumes(None, str(tmp_path / "task")) and not wants_volumes(None, str(tmp_path))
    assert wants_volumes(None, dataset="msd-spleen") and not wants_volumes(None, dataset="busi")
    assert wants_volumes(3) and not wants_volumes(2, str(tmp_path / "task"))
    two_d = {k: getattr(TrainConfig(), k) for k in ("model", "epochs", "batch_size", "augment")}
    assert volume_defaults(two_d) == {"model": "unet3d", "epochs": VolumeConfig().epochs, "batch_size": 2,
                                      "augment": "3d", "dims": 3}
    assert volume_defaults({**two_d, "model": "attention_unet3d", "epochs": 3})["epochs"] == 3
