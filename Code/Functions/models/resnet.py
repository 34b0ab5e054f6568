"""ResNet classifiers (He, Zhang, Ren & Sun 2016).

He K., Zhang X., Ren S., Sun J. "Deep Residual Learning for Image
Recognition", CVPR 2016, arXiv:1512.03385.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks
from Functions.models.backbones import check_weights, load_backbone, rgb_input

# Blocks per stage (conv2_x .. conv5_x) in the paper's Table 1.
STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
MIN_SIZE = 32  # the network downsamples 32x


def _build_resnet(input_shape, num_classes, *, variant, base_filters, dropout, name):
    input_shape = blocks.check_input_shape(input_shape, min_size=MIN_SIZE, model=name)
    num_classes = blocks.check_num_classes(num_classes)
    base_filters = blocks.check_positive_int(base_filters, "base_filters")
    dropout = blocks.check_dropout(dropout)
    block = blocks.bottleneck_block if variant == "resnet50" else blocks.basic_block

    inputs = blocks.make_input(input_shape)
    x = blocks.conv_bn_act(inputs, base_filters, kernel_size=7, strides=2, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, n_blocks in enumerate(STAGES[variant]):
        for b in range(n_blocks):
            strides = 2 if (stage > 0 and b == 0) else 1
            x = block(x, base_filters * 2**stage, strides=strides, name=f"stage{stage + 2}_block{b + 1}")
    outputs = blocks.classification_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


def build_resnet18(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    base_filters: int = 64,
    dropout: float = 0.0,
    name: str = "resnet18",
) -> keras.Model:
    """ResNet-18 classifier trained from scratch: basic blocks, stages of 2-2-2-2.

    Paper: He, Zhang, Ren & Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016 (Table 1).

    Stem 7x7 conv stride 2 + 3x3 max pool stride 2, four stages with
    ``base_filters * (1, 2, 4, 8)`` filters (stride 2 at the start of stages
    3-5), then global average pooling, optional dropout and a dense layer.

    Input: ``(N, H, W, C)``, ``H, W >= 32`` (or ``None``); any ``C``.
    Output: ``(N, num_classes)`` float32 probabilities (sigmoid when
    ``num_classes == 1``, softmax otherwise).

    Default parameter count: 11,180,353
    """
    return _build_resnet(input_shape, num_classes, variant="resnet18", base_filters=base_filters, dropout=dropout,
                         name=name)


def build_resnet34(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    base_filters: int = 64,
    dropout: float = 0.0,
    name: str = "resnet34",
) -> keras.Model:
    """ResNet-34 classifier trained from scratch: basic blocks, stages of 3-4-6-3.

    Paper: He, Zhang, Ren & Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016 (Table 1).  Layout as :func:`build_resnet18`.

    Input: ``(N, H, W, C)``, ``H, W >= 32`` (or ``None``); any ``C``.
    Output: ``(N, num_classes)`` float32 probabilities.

    Default parameter count: 21,295,937
    """
    return _build_resnet(input_shape, num_classes, variant="resnet34", base_filters=base_filters, dropout=dropout,
                         name=name)


def build_resnet50(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    base_filters: int = 64,
    dropout: float = 0.0,
    name: str = "resnet50",
) -> keras.Model:
    """ResNet-50 classifier trained from scratch: bottleneck blocks (x4 expansion), stages of 3-4-6-3.

    Paper: He, Zhang, Ren & Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016 (Table 1).  Stage outputs have
    ``4 * base_filters * (1, 2, 4, 8)`` channels; the stride-2 conv of each
    downsampling block is the 3x3 one.

    Input: ``(N, H, W, C)``, ``H, W >= 32`` (or ``None``); any ``C``.
    Output: ``(N, num_classes)`` float32 probabilities.

    Default parameter count: 23,556,929
    """
    return _build_resnet(input_shape, num_classes, variant="resnet50", base_filters=base_filters, dropout=dropout,
                         name=name)


def build_resnet50_imagenet(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    weights: str | None = "imagenet",
    freeze_backbone: bool = False,
    dropout: float = 0.0,
    name: str = "resnet50_imagenet",
) -> keras.Model:
    """ResNet-50 classifier on the ``keras.applications`` backbone, ImageNet weights by default.

    Paper: He, Zhang, Ren & Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016.

    ``weights="imagenet"`` downloads the pretrained backbone once (cached in
    ``~/.keras/models``; UserError when offline), ``weights=None`` starts
    from random weights.  ``freeze_backbone=True`` trains only the head.
    Inputs in [0, 1]; ``C != 3`` channels pass a learned 1x1 adapter to RGB.
    The nested backbone model is named ``resnet50``.

    Input: ``(N, H, W, C)``, ``H, W >= 32`` (or ``None``); any ``C``.
    Output: ``(N, num_classes)`` float32 probabilities.

    Default parameter count: 23,589,767
    """
    input_shape = blocks.check_input_shape(input_shape, min_size=MIN_SIZE, model=name)
    num_classes = blocks.check_num_classes(num_classes)
    check_weights(weights, "weights")
    dropout = blocks.check_dropout(dropout)
    backbone = load_backbone("resnet50", input_shape, weights=weights, option="weights")
    backbone.trainable = not freeze_backbone

    inputs = blocks.make_input(input_shape)
    x = backbone(rgb_input(inputs, "resnet50"))
    outputs = blocks.classification_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)
