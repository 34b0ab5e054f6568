"""A light U-Net on a MobileNetV3-Small-style encoder, built from Keras layers (no weight download).

Encoder blocks follow Howard et al. "Searching for MobileNetV3", ICCV 2019
(arXiv:1905.02244), Table 2 (MobileNetV3-Small): inverted residuals with
depthwise 3x3/5x5 convs, squeeze-and-excitation with a hard sigmoid and
hard-swish activations.  The decoder is a U-Net decoder of depthwise-separable
convs.  Width is scaled by ``alpha``; the default is the real-time setting.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks

#: MobileNetV3-Small: (kernel, expansion channels, output channels, squeeze-excite, activation, stride).
MOBILENETV3_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1),
    (5, 144, 48, True, "hard_swish", 1),
    (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1),
    (5, 576, 96, True, "hard_swish", 1),
)


def _width(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (never below 90 % of it), as MobileNet does."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _squeeze_excite_hard(x, *, name: str):
    """MobileNetV3 squeeze-excite: pool -> 1x1 conv (C/4, ReLU) -> 1x1 conv (C, hard sigmoid) -> scale."""
    channels = int(x.shape[-1])
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(_width(channels / 4), 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="hard_sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def inverted_residual(x, *, kernel: int, expand: int, out: int, se: bool, activation: str, strides: int,
                      name: str):
    """MobileNetV3 block: 1x1 expand -> depthwise kxk (stride) -> [SE] -> 1x1 project, residual if shapes match.

    ``(N, H, W, C) -> (N, H/strides, W/strides, out)``.
    """
    y = x
    if expand != int(x.shape[-1]):
        y = blocks.conv_bn_act(y, expand, kernel_size=1, activation=activation, name=f"{name}_expand")
    y = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(momentum=blocks.BN_MOMENTUM, name=f"{name}_dw_bn")(y)
    y = layers.Activation(activation, name=f"{name}_dw_{activation}")(y)
    if se:
        y = _squeeze_excite_hard(y, name=f"{name}_se")
    y = blocks.conv_bn_act(y, out, kernel_size=1, activation=None, name=f"{name}_project")
    if strides == 1 and int(x.shape[-1]) == out:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _separable_unit(x, filters: int, *, name: str):
    """Depthwise-separable 3x3 conv -> BN -> ReLU."""
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sepconv")(x)
    x = layers.BatchNormalization(momentum=blocks.BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_lite_unet(
    input_shape: tuple = (256, 256, 1),
    num_classes: int = 1,
    *,
    alpha: float = 1.0,
    decoder_filters: tuple = (64, 32, 24, 16, 16),
    name: str = "lite_unet",
) -> keras.Model:
    """Light U-Net: a MobileNetV3-Small encoder (random weights) and a depthwise-separable decoder.

    Paper (encoder): Howard et al., "Searching for MobileNetV3", ICCV 2019 —
    the eleven Small blocks (Table 2) after a 3x3 stride-2 hard-swish stem,
    channel counts times ``alpha`` (rounded to multiples of 8).  Skips are
    taken at 1/2 (stem), 1/4, 1/8 and 1/16 of the input; the bottleneck is
    at 1/32.  Each decoder level: bilinear x2 upsampling, concatenation with
    the skip, one depthwise-separable 3x3 conv + BN + ReLU with
    ``decoder_filters[i]`` channels; a last level returns to full
    resolution before the 1x1 head.  Built from plain Keras layers, so it
    trains from scratch on any backend and exports to ONNX / LiteRT.

    Input: ``(N, H, W, C)`` with ``H`` and ``W`` multiples of 32 (or ``None``); any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities (sigmoid for
    one class, softmax otherwise).

    Default parameter count: 898,961
    """
    input_shape = blocks.check_input_shape(input_shape, factor=32, factor_text="2**5=32", model=name)
    num_classes = blocks.check_num_classes(num_classes)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"{name}: alpha must be a positive number (width multiplier), got {alpha!r}")
    decoder_filters = tuple(blocks.check_positive_int(f, "decoder_filters") for f in decoder_filters)
    if len(decoder_filters) != 5:
        raise ValueError(f"{name}: decoder_filters must list 5 channel counts, got {decoder_filters!r}")

    inputs = blocks.make_input(input_shape)
    x = blocks.conv_bn_act(inputs, _width(16 * alpha), strides=2, activation="hard_swish", name="stem")
    skips = [x]  # 1/2
    for i, (kernel, expand, out, se, activation, strides) in enumerate(MOBILENETV3_SMALL):
        if strides == 2 and i > 0:
            skips.append(x)  # the features just before each further halving: 1/4, 1/8, 1/16
        x = inverted_residual(x, kernel=kernel, expand=_width(expand * alpha), out=_width(out * alpha), se=se,
                              activation=activation, strides=strides, name=f"block{i}")
    for level, filters in enumerate(decoder_filters[:4]):
        skip = skips[-1 - level]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_upsample")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = _separable_unit(x, filters, name=f"dec{level}")
    x = layers.UpSampling2D(2, interpolation="bilinear", name="dec4_upsample")(x)
    x = _separable_unit(x, decoder_filters[4], name="dec4")
    outputs = blocks.segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
