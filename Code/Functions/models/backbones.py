"""ImageNet backbones from ``keras.applications`` and the glue to feed them.

A backbone sees 3-channel images in its own input range.  :func:`rgb_input`
turns an ``(N, H, W, C)`` image scaled to [0, 1] into that: a learned 1x1
conv adapter maps ``C != 3`` channels to 3 (initialised to copy the channel
mean into R, G and B, so a grayscale image starts as gray RGB), then a fixed
:class:`~Functions.models.layers.ImageNetPreprocessing` layer applies the
backbone's normalisation.

:func:`load_backbone` builds the headless backbone; with
``weights="imagenet"`` keras downloads the weights once into
``~/.keras/models``; when that fails (no internet) it raises
:class:`~Functions.errors.UserError` with the way out.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from Functions.base.errors import UserError
from Functions.models import blocks
from Functions.models.layers import ImageNetPreprocessing

WEIGHT_CHOICES = (None, "imagenet")


@dataclass(frozen=True)
class Backbone:
    """A ``keras.applications`` constructor and the layers a U-Net taps."""

    constructor: str  # attribute of keras.applications
    preprocessing: str  # ImageNetPreprocessing mode
    skips: tuple[str, ...]  # outputs at 1/2, 1/4, 1/8, 1/16 of the input size
    bottleneck: str  # output at 1/32


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone(
        "ResNet50",
        "caffe",
        ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
        "conv5_block3_out",
    ),
    "mobilenetv2": Backbone(
        "MobileNetV2",
        "tf",
        ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu"),
        "out_relu",
    ),
    "efficientnetb0": Backbone(
        "EfficientNetB0",
        "raw255",
        ("block2a_expand_activation", "block3a_expand_activation", "block4a_expand_activation",
         "block6a_expand_activation"),
        "top_activation",
    ),
}

#: Every backbone here halves the resolution five times.
BACKBONE_STRIDE = 32


def check_weights(weights, what: str = "encoder_weights"):
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"{what} must be None (random init) or 'imagenet', got {weights!r}")
    return weights


def load_backbone(
    name: str, input_shape: tuple, *, weights: str | None = None, option: str = "encoder_weights", **kwargs
) -> keras.Model:
    """Headless ``keras.applications`` model ``name`` for ``(H, W, 3)`` inputs.

    ``kwargs`` go to the constructor (e.g. ``alpha`` for MobileNetV2).
    Raises UserError when the ImageNet weights cannot be downloaded;
    ``option`` is the builder argument that message tells the user to change.
    """
    spec = BACKBONES[name]
    check_weights(weights, option)
    constructor = getattr(keras.applications, spec.constructor)
    h, w, _ = input_shape
    try:
        return constructor(include_top=False, weights=weights, input_shape=(h, w, 3), **kwargs)
    except Exception as exc:  # keras raises a bare Exception on a failed download
        if weights != "imagenet":
            raise
        raise UserError(
            f"could not download the ImageNet weights for {spec.constructor} ({exc}); "
            "they need internet access once (keras caches them in ~/.keras/models), "
            f"or pass {option}=None to start from random weights"
        ) from exc


def rgb_input(inputs, backbone: str):
    """``(N, H, W, C)`` images in [0, 1] -> ``(N, H, W, 3)`` in the backbone's input range."""
    channels = int(inputs.shape[-1])
    x = inputs
    if channels != 3:
        x = layers.Conv2D(
            3,
            1,
            kernel_initializer=keras.initializers.Constant(1.0 / channels),
            bias_initializer="zeros",
            name="channel_adapter",
        )(x)
    return ImageNetPreprocessing(BACKBONES[backbone].preprocessing, name="imagenet_preprocessing")(x)


def check_backbone_input(input_shape, model: str) -> tuple:
    """Input shape check for a backbone model: size a multiple of 32 (at least 32)."""
    return blocks.check_input_shape(input_shape, factor=BACKBONE_STRIDE, min_size=BACKBONE_STRIDE, model=model)
