"""U-Net (Ronneberger, Fischer & Brox 2015).

Ronneberger O., Fischer P., Brox T. "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import keras
from keras import layers

from . import blocks


def build_unet(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    depth: int = 4,
    base_filters: int = 16,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    name: str = "unet",
) -> keras.Model:
    """U-Net: a contracting path, an expanding path and skip concatenations.

    Paper: Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation", MICCAI 2015.

    Each level has two 3x3 conv (+BN) + ReLU units; the encoder halves the
    resolution with 2x2 max pooling and doubles the filters
    (``base_filters * 2**level``); the decoder doubles the resolution with a
    2x2 transposed conv (``upsampling="transpose"``) or bilinear upsampling +
    3x3 conv (``"bilinear"``), concatenates the encoder features of the same
    level and applies two conv units.  'same' padding keeps output size =
    input size (the paper used 'valid' padding and cropped skips).

    Input: ``(N, H, W, C)`` with ``H`` and ``W`` multiples of ``2**depth``
    (or ``None``); any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities (sigmoid when
    ``num_classes == 1``, softmax otherwise).

    Default parameter count: 1,945,233
    """
    input_shape = blocks.check_input_shape(
        input_shape, factor=2**depth, factor_text=f"2**{depth}={2**depth}", model=name
    )
    num_classes = blocks.check_num_classes(num_classes)
    depth = blocks.check_positive_int(depth, "depth")
    base_filters = blocks.check_positive_int(base_filters, "base_filters")
    dropout = blocks.check_dropout(dropout)
    blocks.check_choice(upsampling, blocks.UPSAMPLING_MODES, "upsampling")

    inputs = blocks.make_input(input_shape)
    x = inputs
    skips = []
    for level in range(depth):
        x = blocks.double_conv(x, base_filters * 2**level, batch_norm=batch_norm, dropout=dropout, name=f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = blocks.double_conv(x, base_filters * 2**depth, batch_norm=batch_norm, dropout=dropout, name="bridge")
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = blocks.upsample(x, filters, mode=upsampling, name=f"dec{level}")
        x = layers.Concatenate(name=f"dec{level}_concat")([skips[level], x])
        x = blocks.double_conv(x, filters, batch_norm=batch_norm, dropout=dropout, name=f"dec{level}")
    outputs = blocks.segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
