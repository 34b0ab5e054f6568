"""Deep residual U-Net (Zhang, Liu & Wang 2018).

Zhang Z., Liu Q., Wang Y. "Road Extraction by Deep Residual U-Net",
IEEE Geoscience and Remote Sensing Letters 15(5), 2018, arXiv:1711.10684.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks


def build_resunet(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    depth: int = 3,
    base_filters: int = 16,
    upsampling: str = "bilinear",
    name: str = "resunet",
    dims: int = 2,
) -> keras.Model:
    """ResUNet: a U-Net made of pre-activation residual units.

    Paper: Zhang, Liu & Wang, "Road Extraction by Deep Residual U-Net",
    IEEE GRSL 2018.

    Every unit is BN-ReLU-Conv3x3 twice plus a 1x1-conv shortcut
    (:func:`blocks.preact_residual_unit`).  The encoder has ``depth`` levels
    (``base_filters * 2**level`` filters); levels 1.. and the bridge
    (``base_filters * 2**depth``) downsample with stride 2 in their first conv
    (no pooling).  The decoder upsamples (bilinear in the paper),
    concatenates the encoder features of that level and applies one residual
    unit.  The paper's network is ``depth=3, base_filters=64``.

    ``dims=3`` builds the same network for volumes (3-D convolutions and
    pooling, see :mod:`Functions.models.volumetric`).

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of ``2**depth`` (or ``None``).
    Output: ``(N, H, W, num_classes)`` float32 probabilities.

    Default parameter count: 518,513
    """
    input_shape = blocks.check_input_shape(
        input_shape, factor=2**depth, factor_text=f"2**{depth}={2**depth}", model=name, dims=dims
    )
    num_classes = blocks.check_num_classes(num_classes)
    depth = blocks.check_positive_int(depth, "depth")
    base_filters = blocks.check_positive_int(base_filters, "base_filters")
    blocks.check_choice(upsampling, blocks.UPSAMPLING_MODES, "upsampling")

    inputs = blocks.make_input(input_shape)
    x = inputs
    skips = []
    for level in range(depth):
        x = blocks.preact_residual_unit(
            x, base_filters * 2**level, strides=1 if level == 0 else 2, first=level == 0, name=f"enc{level}",
            dims=dims,
        )
        skips.append(x)
    x = blocks.preact_residual_unit(x, base_filters * 2**depth, strides=2, name="bridge", dims=dims)
    for level in reversed(range(depth)):
        # The paper upsamples without weights; "transpose" uses a learned 2x2 up-convolution.
        x = blocks.upsample(x, base_filters * 2**level, mode=upsampling, conv=False, name=f"dec{level}", dims=dims)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = blocks.preact_residual_unit(x, base_filters * 2**level, name=f"dec{level}", dims=dims)
    outputs = blocks.segmentation_head(x, num_classes, dims=dims)
    return keras.Model(inputs, outputs, name=name)

