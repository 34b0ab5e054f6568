"""UNeXt (Valanarasu & Patel 2022): convolutional stages, then tokenised shifted-MLP stages.

Valanarasu J. M. J., Patel V. M. "UNeXt: MLP-based Rapid Medical Image
Segmentation Network", MICCAI 2022, arXiv:2203.04967.  Written from the paper
and the structure of the authors' PyTorch release (UNeXt-pytorch, ``archs.py``).
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks
from Functions.models.layers import ChannelGroupShift, ExactGELU

#: Channels of the five encoder stages in the paper: three conv stages, two tokenised MLP stages.
UNEXT_FILTERS = (16, 32, 128, 160, 256)


def shifted_mlp_block(x, *, shift_groups: int = 5, name: str):
    """One tokenised shifted-MLP block: ``x + MLP(LayerNorm(x))``.

    The MLP: shift channel groups along the height -> token-wise linear layer
    (the "tokenised MLP", a 1x1 convolution on the ``(N, H, W, C)`` map,
    which exports to ONNX / LiteRT as one Conv) -> 3x3 depthwise conv (DWConv, positional information) ->
    GELU -> shift along the width -> Dense.  Hidden width = input width (the
    paper's ``mlp_ratio=1``).  Shape unchanged: ``(N, H, W, C)``.
    """
    channels = int(x.shape[-1])
    y = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(x)
    y = ChannelGroupShift(shift_groups, axis=1, name=f"{name}_shift_h")(y)
    y = layers.Conv2D(channels, 1, name=f"{name}_fc1")(y)      # token-wise linear layer = 1x1 convolution
    y = layers.DepthwiseConv2D(3, padding="same", name=f"{name}_dwconv")(y)
    y = ExactGELU(name=f"{name}_gelu")(y)
    y = ChannelGroupShift(shift_groups, axis=2, name=f"{name}_shift_w")(y)
    y = layers.Conv2D(channels, 1, name=f"{name}_fc2")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def _tokenised_stage(x, filters: int, *, shift_groups: int, name: str):
    """Overlapping patch embedding (3x3 conv, stride 2, LayerNorm), a shifted-MLP block, LayerNorm."""
    x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_embed")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_embed_norm")(x)
    x = shifted_mlp_block(x, shift_groups=shift_groups, name=f"{name}_block")
    return layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(x)


def _up(x, filters: int, *, batch_norm: bool = True, name: str):
    """3x3 conv (+BN) -> bilinear x2 upsampling -> ReLU (the UNeXt decoder step)."""
    x = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=blocks.BN_MOMENTUM, name=f"{name}_bn")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_unext(
    input_shape: tuple = (256, 256, 1),
    num_classes: int = 1,
    *,
    filters: tuple = UNEXT_FILTERS,
    shift_groups: int = 5,
    name: str = "unext",
) -> keras.Model:
    """UNeXt: a light U-shaped network for real-time segmentation.

    Paper: Valanarasu & Patel, "UNeXt: MLP-based Rapid Medical Image
    Segmentation Network", MICCAI 2022 (1.47 M parameters, 0.57 GFLOPs at
    256x256 x 3 channels in the paper).

    Encoder: three conv stages (3x3 conv -> BN -> 2x2 max pool -> ReLU) with
    ``filters[0:3]`` channels, then two tokenised MLP stages (3x3 stride-2
    conv "patch embedding" + LayerNorm, one shifted-MLP block, LayerNorm)
    with ``filters[3:5]``.  Decoder: per level a 3x3 conv (+BN), bilinear x2
    upsampling and ReLU, the encoder features of that level *added* (not
    concatenated); the two deepest decoder levels run a shifted-MLP block
    and LayerNorm after the addition.  1x1 conv head.

    Input: ``(N, H, W, C)`` with ``H`` and ``W`` multiples of 32 (or ``None``); any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities (sigmoid for
    one class, softmax otherwise).

    Default parameter count: 1,472,657
    """
    input_shape = blocks.check_input_shape(input_shape, factor=32, factor_text="2**5=32", model=name)
    num_classes = blocks.check_num_classes(num_classes)
    filters = tuple(blocks.check_positive_int(f, "filters") for f in filters)
    if len(filters) != 5:
        raise ValueError(f"{name}: filters must list 5 channel counts (3 conv + 2 MLP stages), got {filters!r}")
    shift_groups = blocks.check_positive_int(shift_groups, "shift_groups")

    inputs = blocks.make_input(input_shape)
    x, skips = inputs, []
    for level in range(3):  # conv stages: conv -> BN -> pool -> ReLU
        x = layers.Conv2D(filters[level], 3, padding="same", kernel_initializer="he_normal",
                          name=f"enc{level}_conv")(x)
        x = layers.BatchNormalization(momentum=blocks.BN_MOMENTUM, name=f"enc{level}_bn")(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = layers.Activation("relu", name=f"enc{level}_relu")(x)
        skips.append(x)
    x = _tokenised_stage(x, filters[3], shift_groups=shift_groups, name="tok3")
    skips.append(x)
    x = _tokenised_stage(x, filters[4], shift_groups=shift_groups, name="tok4")  # bottleneck

    for level in (3, 2):  # decoder levels with a shifted-MLP block
        x = _up(x, filters[level], name=f"dec{level}")
        x = layers.Add(name=f"dec{level}_skip")([x, skips[level]])
        x = shifted_mlp_block(x, shift_groups=shift_groups, name=f"dec{level}_block")
        x = layers.LayerNormalization(epsilon=1e-5, name=f"dec{level}_norm")(x)
    for level in (1, 0):
        x = _up(x, filters[level], name=f"dec{level}")
        x = layers.Add(name=f"dec{level}_skip")([x, skips[level]])
    x = _up(x, filters[0], batch_norm=False, name="dec_out")
    outputs = blocks.segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
