"""U-Nets whose encoder is an ImageNet classification network from ``keras.applications``.

The encoder (ResNet50: He et al. 2016; MobileNetV2: Sandler et al. 2018;
EfficientNetB0: Tan & Le 2019) is kept whole as a nested model; its features
at 1/2, 1/4, 1/8 and 1/16 of the input size are the skips and its last
feature map (1/32) is the bridge.  The decoder (as in the U-Net of
Ronneberger et al. 2015) upsamples five times, concatenating the skip of the
same size and applying two conv-BN-ReLU units each time.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from Functions.models import blocks
from Functions.models.backbones import BACKBONES, check_backbone_input, check_weights, load_backbone, rgb_input

DEFAULT_DECODER_FILTERS = (128, 64, 32, 16, 16)


def build_encoder_unet(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    backbone: str = "resnet50",
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    upsampling: str = "bilinear",
    batch_norm: bool = True,
    name: str | None = None,
    **backbone_options,
) -> keras.Model:
    """U-Net on a ``keras.applications`` encoder (``backbone`` in :data:`BACKBONES`).

    Input: ``(N, H, W, C)`` in [0, 1], ``H`` and ``W`` multiples of 32 (or
    ``None``); ``C != 3`` goes through a learned 1x1 adapter to 3 channels.
    Output: ``(N, H, W, num_classes)`` float32 probabilities.

    ``encoder_weights="imagenet"`` downloads the pretrained weights (once;
    UserError when offline); ``freeze_encoder=True`` makes the encoder
    non-trainable (its batch norms then run in inference mode).
    ``decoder_filters`` gives the filters of the five decoder stages, from
    1/16 up to full resolution.  The nested encoder model is named
    ``{backbone}_encoder``.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
    name = name or f"unet_{backbone}"
    input_shape = check_backbone_input(input_shape, name)
    num_classes = blocks.check_num_classes(num_classes)
    check_weights(encoder_weights)
    blocks.check_choice(upsampling, blocks.UPSAMPLING_MODES, "upsampling")
    decoder_filters = tuple(blocks.check_positive_int(int(f), "decoder_filters entries") for f in decoder_filters)
    if len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 entries (1/16 .. full resolution), got {decoder_filters}")

    spec = BACKBONES[backbone]
    full = load_backbone(backbone, input_shape, weights=encoder_weights, **backbone_options)
    taps = [full.get_layer(n).output for n in (*spec.skips, spec.bottleneck)]
    encoder = keras.Model(full.input, taps, name=f"{backbone}_encoder")
    encoder.trainable = not freeze_encoder

    inputs = blocks.make_input(input_shape)
    features = encoder(rgb_input(inputs, backbone))
    skips, x = list(features[:-1]), features[-1]
    for stage, filters in enumerate(decoder_filters):
        x = blocks.upsample(x, filters, mode=upsampling, conv=False, name=f"dec{stage}")
        if stage < len(skips):
            x = layers.Concatenate(name=f"dec{stage}_concat")([x, skips[-1 - stage]])
        x = blocks.double_conv(x, filters, batch_norm=batch_norm, name=f"dec{stage}")
    outputs = blocks.segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)


def build_unet_resnet50(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    upsampling: str = "bilinear",
    name: str = "unet_resnet50",
) -> keras.Model:
    """U-Net with a ResNet50 encoder (He et al. 2016, "Deep Residual Learning for Image Recognition").

    Skips: ``conv1_relu`` (1/2), ``conv2_block3_out`` (1/4),
    ``conv3_block4_out`` (1/8), ``conv4_block6_out`` (1/16); bridge
    ``conv5_block3_out`` (1/32, 2048 channels).  Inputs in [0, 1] are mapped
    to the caffe-style ImageNet range inside the model.

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of 32; any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities.
    See :func:`build_encoder_unet` for the options.

    Default parameter count: 27,803,799
    """
    return build_encoder_unet(
        input_shape, num_classes, backbone="resnet50", encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder, decoder_filters=decoder_filters, upsampling=upsampling, name=name,
    )


def build_unet_mobilenetv2(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    alpha: float = 1.0,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    upsampling: str = "bilinear",
    name: str = "unet_mobilenetv2",
) -> keras.Model:
    """U-Net with a MobileNetV2 encoder (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

    Skips: ``block_1_expand_relu`` (1/2), ``block_3_expand_relu`` (1/4),
    ``block_6_expand_relu`` (1/8), ``block_13_expand_relu`` (1/16); bridge
    ``out_relu`` (1/32).  ``alpha`` is the MobileNetV2 width multiplier
    (ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4).

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of 32; any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities.
    See :func:`build_encoder_unet` for the options.

    Default parameter count: 4,861,271
    """
    return build_encoder_unet(
        input_shape, num_classes, backbone="mobilenetv2", encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder, decoder_filters=decoder_filters, upsampling=upsampling, name=name,
        alpha=alpha,
    )


def build_unet_efficientnetb0(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    upsampling: str = "bilinear",
    name: str = "unet_efficientnetb0",
) -> keras.Model:
    """U-Net with an EfficientNetB0 encoder (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

    Skips: ``block2a_expand_activation`` (1/2), ``block3a_expand_activation``
    (1/4), ``block4a_expand_activation`` (1/8), ``block6a_expand_activation``
    (1/16); bridge ``top_activation`` (1/32, 1280 channels).

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of 32; any ``C``.
    Output: ``(N, H, W, num_classes)`` float32 probabilities.
    See :func:`build_encoder_unet` for the options.

    Default parameter count: 6,791,098
    """
    return build_encoder_unet(
        input_shape, num_classes, backbone="efficientnetb0", encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder, decoder_filters=decoder_filters, upsampling=upsampling, name=name,
    )
