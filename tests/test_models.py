"""Architectures: registry, shapes, save/reload, overfitting, size errors, configs, docstrings, FLOPs."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.models import (
    MODEL_REGISTRY,
    available_models,
    build_model,
    model_info,
    single_output,
)
from Functions.models.attention_unet import attention_maps
from Functions.models.blocks import check_input_shape
from Functions.models.flops import count_flops
from Functions.models.layers import ImageNetPreprocessing
from Functions.models.registry import offline_options

SEGMENTATION = available_models("segmentation")
CLASSIFICATION = available_models("classification")
ALL = available_models()

# Small settings per model so the tests run on a CPU in seconds.
_TINY_DECODER = (16, 8, 8, 8, 8)
TINY = {
    "unet": dict(depth=2, base_filters=8),
    "unet_plus_plus": dict(depth=2, base_filters=8),
    "resunet": dict(depth=2, base_filters=8),
    "resunet_plus_plus": dict(depth=2, base_filters=8),
    "attention_unet": dict(depth=2, base_filters=8),
    "unet_resnet50": dict(decoder_filters=_TINY_DECODER),
    "unet_mobilenetv2": dict(alpha=0.35, decoder_filters=_TINY_DECODER),
    "unet_efficientnetb0": dict(decoder_filters=_TINY_DECODER),
    "unext": dict(filters=(4, 8, 16, 20, 24)),
    "lite_unet": dict(alpha=0.25, decoder_filters=(8, 8, 8, 8, 8)),
    "resnet18": dict(base_filters=8),
    "resnet34": dict(base_filters=8),
    "resnet50": dict(base_filters=8),
    "resnet50_imagenet": dict(weights=None),
}
# Full-width keras.applications encoders of a U-Net: seconds per build/save/step on a CPU. Beyond the output
# shapes and the architectures table (every model, in CI) their reload, config and training cases run only with
# --run-slow: they take the same path as unet_mobilenetv2 (build_encoder_unet on a backbones.BACKBONES entry,
# ImageNetPreprocessing in front), whose cases run in CI. resnet50_imagenet, a builder of its own, runs in CI.
HEAVY = {"unet_resnet50", "unet_efficientnetb0"}
# Per-model cases CI reruns on JAX and PyTorch (compiling/dispatching there costs far more than on
# TensorFlow), chosen to cover every layer type the from-scratch models use: transposed and bilinear
# upsampling, dense skips, dilated convs, squeeze-excitation, attention gates, classification head.
# All twelve models were checked by hand to build and run forward on both backends.
FORWARD_ON_ALL_BACKENDS = {"unet", "unet_plus_plus", "resunet_plus_plus", "attention_unet", "resnet18", "unext",
                           "lite_unet"}
TRAIN_ON_ALL_BACKENDS = {"unet", "attention_unet", "resnet18", "unext", "lite_unet"}
# An input size each model rejects, and a size its error message must suggest.
BAD_SIZE = {
    "unet": (100, "96"),
    "unet_plus_plus": (100, "96"),
    "resunet": (100, "96"),  # depth 3: multiples of 8 -> 96 or 104
    "resunet_plus_plus": (100, "96"),
    "attention_unet": (100, "96"),
    "unet_resnet50": (100, "96"),
    "unet_mobilenetv2": (100, "128"),
    "unet_efficientnetb0": (40, "32"),
    "unext": (100, "96"),
    "lite_unet": (80, "64"),
    "resnet18": (16, "32x32"),
    "resnet34": (16, "32x32"),
    "resnet50": (16, "32x32"),
    "resnet50_imagenet": (16, "32x32"),
}


def _tiny(name: str, input_shape=(64, 64, 1), num_classes: int = 1, **extra) -> keras.Model:
    return build_model(name, input_shape, num_classes, **{**TINY[name], **extra})


def _images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, channels)).astype("float32")


# TensorFlow: eager steps beat tracing a graph for a handful of steps; JAX: op-by-op dispatch is
# slow, so there one jit-compiled step/forward is cheaper; PyTorch runs eagerly either way.
EAGER = keras.backend.backend() != "jax"


def _run(model: keras.Model, x: np.ndarray):
    """Forward pass in inference mode, whichever way is quickest on the current backend."""
    if not EAGER:
        return model.predict(x, verbose=0)
    out = model(keras.ops.convert_to_tensor(x), training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def _cases(*, backend: set, slow: set = frozenset()) -> list:
    """One pytest param per model: ``backend`` ones also rerun on JAX/PyTorch in CI, ``slow`` ones need --run-slow."""
    cases = []
    for name in ALL:
        marks = ([pytest.mark.backend] if name in backend else []) + ([pytest.mark.slow] if name in slow else [])
        cases.append(pytest.param(name, marks=marks))
    return cases


@pytest.fixture(scope="module")
def tiny_models():
    """Models built once at (64, 64, 1), one class, tiny settings; shared read-only."""
    cache: dict[str, keras.Model] = {}

    def get(name: str) -> keras.Model:
        if name not in cache:
            cache[name] = _tiny(name)
        return cache[name]

    return get


# --------------------------------------------------------------------------- registry
def test_registry_lists_every_model_once_by_task():
    assert set(SEGMENTATION) | set(CLASSIFICATION) == set(MODEL_REGISTRY)
    assert not set(SEGMENTATION) & set(CLASSIFICATION)
    for required in ("unet", "unet_plus_plus", "resunet", "resunet_plus_plus", "attention_unet",
                     "unet_resnet50", "unet_mobilenetv2", "resnet18", "resnet34", "resnet50", "resnet50_imagenet"):
        assert required in MODEL_REGISTRY
    assert set(TINY) == set(MODEL_REGISTRY) == set(BAD_SIZE)
    info = model_info("unet")
    assert info["task"] == "segmentation" and "Ronneberger" in info["paper"]
    assert info["defaults"]["base_filters"] == 16 and info["defaults"]["depth"] == 4


def test_unknown_name_option_and_task_are_value_errors():
    with pytest.raises(ValueError, match="unet_plus_plus"):
        build_model("unet3000")
    with pytest.raises(ValueError, match="base_filters"):
        build_model("unet", base_filterz=8)
    with pytest.raises(ValueError, match="segmentation"):
        available_models("detection")


# --------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", _cases(backend=FORWARD_ON_ALL_BACKENDS))
def test_output_shapes_binary_and_multiclass(name, tiny_models):
    seg = name in SEGMENTATION
    one = tiny_models(name)
    y1 = np.asarray(_run(one, _images(1, 64, 1)))
    assert y1.shape == ((1, 64, 64, 1) if seg else (1, 1))
    assert y1.dtype == np.float32 and np.all((y1 >= 0) & (y1 <= 1))

    three = _tiny(name, (64, 64, 3), 3)
    y3 = np.asarray(_run(three, _images(1, 64, 3)))
    assert y3.shape == ((1, 64, 64, 3) if seg else (1, 3))
    np.testing.assert_allclose(y3.sum(axis=-1), 1.0, atol=1e-5)  # softmax over classes


@pytest.mark.parametrize("name", _cases(backend={"unet", "attention_unet", "unext"}, slow=HEAVY))
def test_keras_file_reloads_with_identical_predictions(name, tiny_models, tmp_path):
    model = tiny_models(name)
    x = _images(2, 64, 1, seed=1)
    expected = _run(model, x)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(_run(reloaded, x), expected, atol=1e-6)


@pytest.mark.parametrize("name", _cases(backend={"unet"}, slow=HEAVY))
def test_get_config_round_trip(name, tiny_models):
    model = tiny_models(name)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    x = _images(1, 64, 1, seed=2)
    np.testing.assert_allclose(_run(clone, x), _run(model, x), atol=1e-6)


def _overfit_case(name: str):
    size = 32
    rng = np.random.default_rng(0)
    if name in SEGMENTATION:
        x = rng.normal(0.3, 0.05, (4, size, size, 1)).astype("float32")
        y = np.zeros((4, size, size, 1), "float32")
        for i in range(4):
            r, c = rng.integers(4, size - 14, 2)
            y[i, r:r + 10, c:c + 10] = 1
        x += 0.5 * y
        return x, y, "binary_crossentropy", 1
    x = rng.normal(0.3, 0.05, (4, size, size, 1)).astype("float32")
    y = np.array([0, 1, 0, 1])
    x[y == 1, 8:24, 8:24] += 0.5
    return x, y, "sparse_categorical_crossentropy", 2


@pytest.mark.parametrize("name", _cases(backend=TRAIN_ON_ALL_BACKENDS, slow=HEAVY))
def test_each_model_overfits_four_images(name):
    keras.utils.set_random_seed(0)
    x, y, loss, num_classes = _overfit_case(name)
    model = _tiny(name, (32, 32, 1), num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-2 if name in SEGMENTATION else 1e-3), loss=loss,
                  run_eagerly=EAGER)
    history = []
    for _ in range(30):
        history.append(float(model.train_on_batch(x, y)))
        if history[-1] <= 0.5 * history[0]:
            break
    assert np.isfinite(history[-1]) and history[-1] <= 0.5 * history[0], history


@pytest.mark.parametrize("name", ALL)
def test_bad_input_size_names_a_valid_size(name):
    bad, suggestion = BAD_SIZE[name]
    with pytest.raises(ValueError, match=f"{bad}x{bad}") as info:
        build_model(name, (bad, bad, 1), **offline_options(name))
    assert re.search(rf"\b{suggestion}\b", str(info.value)), str(info.value)


def test_size_error_message_wording():
    with pytest.raises(ValueError) as info:
        build_model("unet", (100, 100, 1))
    assert str(info.value) == (
        "input size 100x100 is not divisible by 2**4=16; use e.g. 96 or 112 (multiples of 16)"
    )
    with pytest.raises(ValueError, match=r"use e\.g\. 96x128 or 112x128"):
        check_input_shape((100, 128, 1), factor=16, factor_text="2**4=16")
    with pytest.raises(ValueError, match="channel"):
        check_input_shape((64, 64, 0))
    assert check_input_shape((None, None, 5), factor=16) == (None, None, 5)
    with pytest.raises(ValueError, match=r"use e\.g\. 96xNone or 112xNone"):
        check_input_shape((100, None, 1), factor=16)
    with pytest.raises(ValueError, match="use at least 32x32"):
        check_input_shape((16, 16, 1), min_size=32, model="resnet18")


@pytest.mark.backend
def test_any_size_when_spatial_dims_are_none():
    model = build_model("unet", (None, None, 2), 1, depth=2, base_filters=4)
    assert _run(model, _images(1, 24, 2)).shape == (1, 24, 24, 1)


@pytest.fixture(scope="module")
def architectures_table():
    """``python -m Functions architectures --image-size 128 --markdown``, run once: ``{name: row cells}``.

    The command builds every registered model at its defaults (128x128x1, one class), so its table also gives
    the default parameter counts the docstrings quote."""
    import contextlib
    import io

    from Functions.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["architectures", "--image-size", "128", "--markdown"]) == 0
    rows = [line.strip("| ").split(" | ") for line in out.getvalue().splitlines() if line.startswith("| ")]
    assert rows[0] == ["name", "task", "paper", "parameters", "GFLOP/image"]
    return {cells[0]: cells for cells in rows[1:]}


def test_architectures_command_lists_every_model(architectures_table):
    assert list(architectures_table) == list(MODEL_REGISTRY)
    for name, (_, task, paper, parameters, gflops) in architectures_table.items():
        assert task == model_info(name)["task"] and paper == model_info(name)["paper"]
        assert float(gflops) > 0, name


@pytest.mark.parametrize("name", ALL)
def test_docstring_parameter_count_matches_default_build(name, architectures_table):
    doc = MODEL_REGISTRY[name].__doc__
    match = re.search(r"Default parameter count: ([\d,]+)", doc)
    assert match, f"{name}: docstring lacks 'Default parameter count: N'"
    assert architectures_table[name][3] == match.group(1), f"{name}: the architectures table counts differently"
    for word in ("Input", "Output"):
        assert word in doc


def test_architectures_row_matches_a_build_of_its_own(architectures_table):
    """The table's U-Net row: 1,945,233 parameters (notebook 02) and the FLOPs of a separate 128x128 build."""
    model = build_model("unet", (128, 128, 1), 1)
    assert architectures_table["unet"][3] == "1,945,233" == f"{model.count_params():,}"
    assert float(architectures_table["unet"][4]) == pytest.approx(count_flops(model) / 1e9, abs=0.005)


# --------------------------------------------------------------------------- specific behaviour
@pytest.mark.backend
def test_unet_plus_plus_deep_supervision_and_single_output():
    model = build_model("unet_plus_plus", (32, 32, 1), 1, depth=3, base_filters=4, deep_supervision=True)
    assert model.output_names == ["output_1", "output_2", "output_3"]
    x = _images(2, 32, 1)
    heads = [np.asarray(h) for h in _run(model, x)]
    assert len(heads) == 3 and all(h.shape == (2, 32, 32, 1) and h.dtype == np.float32 for h in heads)
    np.testing.assert_allclose(_run(single_output(model, "last"), x), heads[-1], atol=1e-6)
    np.testing.assert_allclose(_run(single_output(model, "average"), x), np.mean(heads, axis=0),
                               atol=1e-6)
    plain = build_model("unet", (32, 32, 1), 1, depth=2, base_filters=4)
    assert single_output(plain) is plain
    with pytest.raises(ValueError, match="last"):
        single_output(model, "median")


@pytest.mark.backend
def test_attention_gate_controls_the_skip_the_decoder_sees():
    model = build_model("attention_unet", (32, 32, 1), 1, depth=2, base_filters=4)
    x = _images(2, 32, 1, seed=3)
    probe = keras.Model(model.inputs, [model.get_layer("enc0_2_relu").output,
                                       model.get_layer("attention_gated_1").output,
                                       model.get_layer("dec0_concat").output,
                                       model.outputs[0]])
    skip, gated, concat, before = (np.asarray(t) for t in _run(probe, x))
    channels = skip.shape[-1]
    # The decoder concatenates the gated skip, not the raw one.
    np.testing.assert_allclose(concat[..., :channels], gated, atol=1e-6)
    maps = attention_maps(model, x)
    assert [m.shape for m in maps] == [(2, 32, 32), (2, 16, 16)]
    np.testing.assert_allclose(gated, skip * maps[0][..., None], rtol=1e-5, atol=1e-6)

    # Close the gate: psi = 0 * q - 30 -> alpha ~ 1e-13, so the skip contribution vanishes.
    psi = model.get_layer("attention_psi_1")
    kernel, bias = psi.get_weights()
    psi.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    skip2, gated2, concat2, after = (np.asarray(t) for t in _run(probe, x))
    assert np.abs(skip2).max() > 0.1
    assert np.abs(gated2).max() < 1e-6 and np.abs(concat2[..., :channels]).max() < 1e-6
    assert attention_maps(model, x)[0].max() < 1e-6
    assert np.abs(after - before).max() > 1e-4  # closing the gate changes the prediction


def test_encoder_unet_adapter_and_freezing():
    gray = build_model("unet_mobilenetv2", (64, 64, 1), 1, **TINY["unet_mobilenetv2"])
    rgb = build_model("unet_mobilenetv2", (64, 64, 3), 1, **TINY["unet_mobilenetv2"])
    assert "channel_adapter" in [layer.name for layer in gray.layers]
    assert "channel_adapter" not in [layer.name for layer in rgb.layers]
    frozen = build_model("unet_mobilenetv2", (64, 64, 1), 1, freeze_encoder=True, **TINY["unet_mobilenetv2"])
    encoder = frozen.get_layer("mobilenetv2_encoder")
    assert not encoder.trainable and encoder.count_params() > 0
    trainable = sum(int(np.prod(w.shape)) for w in frozen.trainable_weights)
    assert trainable == sum(int(np.prod(w.shape)) for w in gray.trainable_weights) - sum(
        int(np.prod(w.shape)) for w in gray.get_layer("mobilenetv2_encoder").trainable_weights)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
@pytest.mark.parametrize("name, option", [("unet_mobilenetv2", "encoder_weights"), ("resnet50_imagenet", "weights")])
def test_imagenet_download_failure_is_a_user_error(name, option, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError) as info:
        build_model(name, (64, 64, 1), 1, **{option: "imagenet"})
    message = str(info.value)
    assert "ImageNet" in message and "~/.keras/models" in message and f"{option}=None" in message


def test_weights_option_is_validated():
    with pytest.raises(ValueError, match="imagenet"):
        build_model("unet_mobilenetv2", (64, 64, 1), encoder_weights="coco")


@pytest.mark.backend
def test_final_activation_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model("unet", (32, 32, 1), 2, depth=2, base_filters=4)
        assert model.get_layer("output_logits").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.backend
def test_imagenet_preprocessing_modes_by_hand():
    x = np.array([[[[0.0, 0.5, 1.0]]]], dtype="float32")  # one RGB pixel
    run = lambda mode: np.asarray(ImageNetPreprocessing(mode)(x))[0, 0, 0]  # noqa: E731
    np.testing.assert_allclose(run("tf"), [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(run("raw255"), [0.0, 127.5, 255.0], atol=1e-4)
    np.testing.assert_allclose(run("caffe"), [255 - 103.939, 127.5 - 116.779, 0 - 123.68], atol=1e-3)
    np.testing.assert_allclose(run("torch"), [-0.485 / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225], atol=1e-5)
    layer = ImageNetPreprocessing("caffe", name="pre")
    assert ImageNetPreprocessing.from_config(layer.get_config()).mode == "caffe"
    with pytest.raises(ValueError, match="caffe"):
        ImageNetPreprocessing("bgr")


# --------------------------------------------------------------------------- FLOPs
def test_flops_single_conv_by_hand():
    x = keras.Input((8, 8, 1))
    model = keras.Model(x, keras.layers.Conv2D(2, 3, padding="same")(x))
    # 8*8 positions x 2 filters, each 3*3*1 multiply-adds (2 FLOPs) + 1 bias add.
    assert count_flops(model) == 8 * 8 * 2 * (3 * 3 * 1 * 2) + 8 * 8 * 2 == 2432
    assert count_flops(model, batch_size=3) == 3 * 2432


def test_flops_layer_rules_by_hand():
    x = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu")(x)  # 8*8*4*(18*2)+256
    b = keras.layers.BatchNormalization()(a)  # 2 * 256
    c = keras.layers.MaxPooling2D(2)(b)  # 4*4*4 outputs * 4 window
    d = keras.layers.DepthwiseConv2D(3, padding="same")(c)  # 4*4*4*(9*2) + 64 bias
    e = keras.layers.SeparableConv2D(6, 3, padding="same")(d)  # 4*4*(4*9 + 4*6)*2 + 96 bias
    f = keras.layers.Conv2DTranspose(2, 2, strides=2)(e)  # 4*4*6 inputs * 2*2*2 * 2 + 8*8*2 bias
    g = keras.layers.Add()([f, x])  # 128
    h = keras.layers.GlobalAveragePooling2D()(g)  # 128 input elements
    y = keras.layers.Dense(3)(h)  # 2*2*3 + 3
    model = keras.Model(x, y)
    expected = (8 * 8 * 4 * 18 * 2 + 256) + 512 + 4 * 4 * 4 * 4 + (4 * 4 * 4 * 18 + 64) \
        + (4 * 4 * (4 * 9 + 4 * 6) * 2 + 96) + (4 * 4 * 6 * 8 * 2 + 128) + 128 + 128 + (12 + 3)
    assert count_flops(model) == expected


def test_flops_of_3d_layers_by_hand():
    """Conv3D counts like Conv2D; nearest UpSampling3D, 3-D padding and cropping are free, so no warning."""
    import warnings

    x = keras.Input((4, 4, 4, 1))
    a = keras.layers.Conv3D(2, 3, padding="same")(x)          # 64 positions x 2 x (27*2) + 128 bias
    b = keras.layers.UpSampling3D(2)(a)
    c = keras.layers.ZeroPadding3D(1)(b)
    y = keras.layers.Cropping3D(1)(c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_flops(keras.Model(x, y)) == 64 * 2 * 54 + 128


def test_flops_walk_nested_models():
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 3, padding="same")(inner_in), name="inner")
    x = keras.Input((8, 8, 1))
    y = keras.layers.Activation("relu")(inner(x))
    assert count_flops(keras.Model(x, y)) == 2432 + 8 * 8 * 2
    with pytest.raises(ValueError, match="fixed input sizes"):
        count_flops(build_model("unet", (None, None, 1), depth=2, base_filters=4))


# --------------------------------------------------------------------------- CLI
def test_architectures_table_formats_and_rejects_bad_sizes(capsys):
    from Functions.cli import main
    from Functions.commands.architectures import format_table

    rows = [{"name": "unet", "task": "segmentation", "paper": "Ronneberger et al. 2015", "parameters": 1945233,
             "gflops": 6.0567}]
    md = format_table(rows, markdown=True).splitlines()
    assert md[0] == "| name | task | paper | parameters | GFLOP/image |"
    assert md[2] == "| unet | segmentation | Ronneberger et al. 2015 | 1,945,233 | 6.06 |"
    assert "1,945,233" in format_table(rows)
    assert main(["architectures", "--image-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err

