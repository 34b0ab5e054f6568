"""ResUNet++ (Jha et al. 2019): residual units + squeeze-excitation + ASPP + attention.

Jha D., Smedsrud P. H., Riegler M. A., Johansen D., de Lange T., Halvorsen P.,
Johansen H. D. "ResUNet++: An Advanced Architecture for Medical Image
Segmentation", IEEE ISM 2019, arXiv:1911.07067.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks


def build_resunet_plus_plus(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    depth: int = 3,
    base_filters: int = 16,
    se_ratio: int = 8,
    aspp_rates: tuple = (1, 6, 12, 18),
    name: str = "resunet_plus_plus",
) -> keras.Model:
    """ResUNet++: ResUNet with squeeze-and-excitation, ASPP and decoder attention.

    Paper: Jha et al., "ResUNet++: An Advanced Architecture for Medical
    Image Segmentation", IEEE ISM 2019.

    Encoder: a stem residual unit (``base_filters``) and ``depth`` stride-2
    pre-activation residual units (``base_filters * 2**level``), each
    followed by squeeze-and-excitation.  Bridge: ASPP with
    ``base_filters * 2**(depth+1)`` filters.  Each decoder step runs the
    attention block (encoder skip x decoder features), upsamples 2x
    (nearest), concatenates the skip and applies a residual unit.  A final
    ASPP precedes the 1x1 head.  The paper's network is ``depth=3,
    base_filters=16`` (filters 16-32-64-128, bridge 256).

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of ``2**depth`` (or ``None``).
    Output: ``(N, H, W, num_classes)`` float32 probabilities.

    Default parameter count: 3,246,559
    """
    input_shape = blocks.check_input_shape(
        input_shape, factor=2**depth, factor_text=f"2**{depth}={2**depth}", model=name
    )
    num_classes = blocks.check_num_classes(num_classes)
    depth = blocks.check_positive_int(depth, "depth")
    base_filters = blocks.check_positive_int(base_filters, "base_filters")
    se_ratio = blocks.check_positive_int(se_ratio, "se_ratio")
    aspp_rates = tuple(int(r) for r in aspp_rates)

    inputs = blocks.make_input(input_shape)
    x = blocks.preact_residual_unit(inputs, base_filters, first=True, name="stem")
    x = blocks.squeeze_excite(x, ratio=se_ratio, name="stem_se")
    skips = [x]
    for level in range(1, depth + 1):
        x = blocks.preact_residual_unit(x, base_filters * 2**level, strides=2, name=f"enc{level}")
        x = blocks.squeeze_excite(x, ratio=se_ratio, name=f"enc{level}_se")
        skips.append(x)
    x = blocks.aspp(x, base_filters * 2 ** (depth + 1), rates=aspp_rates, name="bridge_aspp")
    for level in reversed(range(depth)):
        x = blocks.decoder_attention(skips[level], x, name=f"dec{level}_attention")
        x = layers.UpSampling2D(2, name=f"dec{level}_upsample")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = blocks.preact_residual_unit(x, base_filters * 2**level, name=f"dec{level}")
    x = blocks.aspp(x, base_filters, rates=aspp_rates, name="head_aspp")
    outputs = blocks.segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
