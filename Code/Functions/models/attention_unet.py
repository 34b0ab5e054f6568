"""Attention U-Net (Oktay et al. 2018): U-Net with additive attention gates on the skips.

Oktay O., Schlemper J., Le Folgoc L., Lee M., Heinrich M., Misawa K., Mori K.,
McDonagh S., Hammerla N. Y., Kainz B., Glocker B., Rueckert D. "Attention
U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv:1804.03999.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from Functions.models import blocks


def build_attention_unet(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    depth: int = 4,
    base_filters: int = 16,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    name: str = "attention_unet",
    dims: int = 2,
) -> keras.Model:
    """Attention U-Net: each skip is gated by the coarser decoder features before concatenation.

    Paper: Oktay et al., "Attention U-Net: Learning Where to Look for the
    Pancreas", MIDL 2018.

    Same encoder/decoder as :func:`build_unet`.  At decoder level ``l`` the
    skip ``x`` (``H/2**l``) is multiplied by
    ``alpha = sigmoid(psi(ReLU(W_x x + W_g g)))``, where ``g`` is the decoder
    tensor one level coarser (:func:`blocks.attention_gate`, intermediate
    width = half the skip's filters); the gated skip, not the raw one, is
    concatenated with the upsampled ``g``.  The gate coefficients are the
    layers ``attention_map_1`` (full resolution) .. ``attention_map_{depth}``;
    :func:`attention_maps` returns them.

    ``dims=3`` builds the same network for volumes (3-D convolutions and
    pooling, see :mod:`Functions.models.volumetric`).

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of ``2**depth`` (or ``None``).
    Output: ``(N, H, W, num_classes)`` float32 probabilities.

    Default parameter count: 2,010,757
    """
    input_shape, num_classes, depth, base_filters, dropout = blocks.check_unet_settings(
        input_shape, num_classes, depth, base_filters, dropout, upsampling, name, dims
    )

    inputs = blocks.make_input(input_shape)
    x, skips = blocks.unet_encoder(inputs, depth, base_filters, batch_norm=batch_norm, dropout=dropout, dims=dims)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        gated = blocks.attention_gate(skips[level], x, inter_filters=max(1, filters // 2), index=level + 1,
                                      dims=dims)
        x = blocks.upsample(x, filters, mode=upsampling, name=f"dec{level}", dims=dims)
        x = layers.Concatenate(name=f"dec{level}_concat")([gated, x])
        x = blocks.double_conv(x, filters, batch_norm=batch_norm, dropout=dropout, name=f"dec{level}", dims=dims)
    outputs = blocks.segmentation_head(x, num_classes, dims=dims)
    return keras.Model(inputs, outputs, name=name)


def attention_map_layers(model: keras.Model) -> list:
    """The ``attention_map_i`` layers of ``model``, ordered by ``i`` (1 = full resolution)."""
    found = [layer for layer in model.layers if layer.name.startswith("attention_map_")]
    if not found:
        raise ValueError(f"model {model.name!r} has no attention_map_* layers (build it with build_attention_unet)")
    return sorted(found, key=lambda layer: int(layer.name.rsplit("_", 1)[1]))


def attention_maps(model: keras.Model, images, *, batch_size: int = 8) -> list[np.ndarray]:
    """Gate coefficients of an attention U-Net for ``images`` ``(N, H, W, C)``.

    Returns one float array per gate, ``attention_map_1`` first:
    ``(N, H / 2**(i-1), W / 2**(i-1))`` with values in [0, 1].
    """
    probe = keras.Model(model.inputs, [layer.output for layer in attention_map_layers(model)])
    images = np.asarray(images, dtype="float32")
    chunks = []
    for start in range(0, len(images), batch_size):
        out = probe(keras.ops.convert_to_tensor(images[start:start + batch_size]), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        chunks.append([keras.ops.convert_to_numpy(m)[..., 0].astype(np.float32) for m in out])
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]
