"""3-D segmentation networks for volumes: the course's U-Net family with ``dims=3``.

Cicek O., Abdulkadir A., Lienkamp S. S., Brox T., Ronneberger O. "3D U-Net:
Learning Dense Volumetric Segmentation from Sparse Annotation", MICCAI 2016,
arXiv:1606.06650.

Each builder calls the 2-D builder with ``dims=3``: the same blocks
(:mod:`Functions.models.blocks`) with Conv3D, MaxPooling3D and
Conv3DTranspose in place of their 2-D forms, so the 2-D and 3-D networks
cannot drift apart.  Inputs are patches ``(N, D, H, W, C)``; the defaults
(``depth=3``: three 2x2x2 poolings as in the paper, ``base_filters=8``,
a quarter of the paper's 32, so that a CPU trains one in minutes: a training
step on two 32x64x64 patches takes about 0.6 s on two cores, against 3.4 s
with 16) give models that train on
``64^3`` or ``32^3`` patches of a CPU-sized volume.
"""

from __future__ import annotations

import keras

from Functions.models.attention_unet import build_attention_unet
from Functions.models.resunet import build_resunet
from Functions.models.unet import build_unet


def build_unet3d(
    input_shape: tuple = (64, 64, 64, 1),
    num_classes: int = 1,
    *,
    depth: int = 3,
    base_filters: int = 8,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    name: str = "unet3d",
) -> keras.Model:
    """3-D U-Net (Cicek et al. 2016): U-Net with 3x3x3 convolutions, 2x2x2 pooling and up-convolutions.

    Paper: Cicek et al., "3D U-Net: Learning Dense Volumetric Segmentation
    from Sparse Annotation", MICCAI 2016.  Like the paper: batch norm before
    each ReLU, ``depth=3`` poolings, transposed-conv upsampling, skip
    concatenation; unlike it, 'same' padding (output size = input size) and
    the same filter count for both convs of a level.

    Input: ``(N, D, H, W, C)``, each side a multiple of ``2**depth`` (or ``None``).
    Output: ``(N, D, H, W, num_classes)`` float32 probabilities (sigmoid for
    one class, softmax otherwise).

    Default parameter count: 351,513
    """
    return build_unet(input_shape, num_classes, depth=depth, base_filters=base_filters, batch_norm=batch_norm,
                      dropout=dropout, upsampling=upsampling, name=name, dims=3)


def build_attention_unet3d(
    input_shape: tuple = (64, 64, 64, 1),
    num_classes: int = 1,
    *,
    depth: int = 3,
    base_filters: int = 8,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    name: str = "attention_unet3d",
) -> keras.Model:
    """3-D Attention U-Net (Oktay et al. 2018, which was itself 3-D, on CT pancreas).

    Paper: Oktay et al., "Attention U-Net: Learning Where to Look for the
    Pancreas", MIDL 2018.  The 3-D U-Net of :func:`build_unet3d` with an
    additive attention gate on every skip (``attention_map_1`` ..
    ``attention_map_{depth}`` hold the gate coefficients, ``(N, D, H, W, 1)``
    at full resolution).

    Input: ``(N, D, H, W, C)``, each side a multiple of ``2**depth`` (or ``None``).
    Output: ``(N, D, H, W, num_classes)`` float32 probabilities.

    Default parameter count: 358,292
    """
    return build_attention_unet(input_shape, num_classes, depth=depth, base_filters=base_filters,
                                batch_norm=batch_norm, dropout=dropout, upsampling=upsampling, name=name, dims=3)


def build_resunet3d(
    input_shape: tuple = (64, 64, 64, 1),
    num_classes: int = 1,
    *,
    depth: int = 3,
    base_filters: int = 8,
    upsampling: str = "bilinear",
    name: str = "resunet3d",
) -> keras.Model:
    """3-D ResUNet: the pre-activation residual U-Net of Zhang, Liu & Wang (2018) with 3-D units.

    Paper: Zhang, Liu & Wang, "Road Extraction by Deep Residual U-Net",
    IEEE GRSL 2018 (2-D); the same units with 3x3x3 convolutions, strided
    downsampling, and nearest-neighbour upsampling (``"bilinear"`` in 2-D;
    Keras has no trilinear layer) or ``"transpose"``.

    Input: ``(N, D, H, W, C)``, each side a multiple of ``2**depth`` (or ``None``).
    Output: ``(N, D, H, W, num_classes)`` float32 probabilities.

    Default parameter count: 374,217
    """
    return build_resunet(input_shape, num_classes, depth=depth, base_filters=base_filters, upsampling=upsampling,
                         name=name, dims=3)
