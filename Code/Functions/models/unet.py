"""U-Net (Ronneberger, Fischer & Brox 2015).

Ronneberger O., Fischer P., Brox T. "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks


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
    dims: int = 2,
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

    ``dims=3`` builds the same network for volumes (3-D convolutions and
    pooling, see :mod:`Functions.models.volumetric`).

    Input: ``(N, H, W, C)`` with ``H`` and ``W`` multiples of ``2**depth``
    (or ``None``); any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities (sigmoid when
    ``num_classes == 1``, softmax otherwise).

    Default parameter count: 1,945,233
    """
    input_shape, num_classes, depth, base_filters, dropout = blocks.check_unet_settings(
        input_shape, num_classes, depth, base_filters, dropout, upsampling, name, dims
    )

    inputs = blocks.make_input(input_shape)
    x, skips = blocks.unet_encoder(inputs, depth, base_filters, batch_norm=batch_norm, dropout=dropout, dims=dims)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = blocks.upsample(x, filters, mode=upsampling, name=f"dec{level}", dims=dims)
        x = layers.Concatenate(name=f"dec{level}_concat")([skips[level], x])
        x = blocks.double_conv(x, filters, batch_norm=batch_norm, dropout=dropout, name=f"dec{level}", dims=dims)
    outputs = blocks.segmentation_head(x, num_classes, dims=dims)
    return keras.Model(inputs, outputs, name=name)
