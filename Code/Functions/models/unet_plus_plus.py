"""UNet++ (Zhou et al. 2018): nested, densely connected skip pathways.

Zhou Z., Rahman Siddiquee M. M., Tajbakhsh N., Liang J. "UNet++: A Nested
U-Net Architecture for Medical Image Segmentation", DLMIA 2018,
arXiv:1807.10165.
"""

from __future__ import annotations

import keras
from keras import layers

from Functions.models import blocks


def build_unet_plus_plus(
    input_shape: tuple = (128, 128, 1),
    num_classes: int = 1,
    *,
    depth: int = 4,
    base_filters: int = 16,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    deep_supervision: bool = False,
    name: str = "unet_plus_plus",
) -> keras.Model:
    """UNet++: a U-Net whose skips are themselves stacks of dense conv blocks.

    Paper: Zhou, Rahman Siddiquee, Tajbakhsh & Liang, "UNet++: A Nested
    U-Net Architecture for Medical Image Segmentation", DLMIA 2018.

    Node ``X[i, j]`` (level ``i`` = resolution ``H/2**i``, ``j`` = position
    along the skip) is a double 3x3 conv block with ``base_filters * 2**i``
    filters.  ``X[i, 0]`` is the encoder (max pooling between levels);
    ``X[i, j]`` for ``j >= 1`` sees the concatenation of ``X[i, 0..j-1]``
    and the upsampled ``X[i+1, j-1]``.  The plain U-Net is the special case
    that keeps only ``X[i, 0]`` and ``X[i, depth-i]``.

    Input: ``(N, H, W, C)``, ``H`` and ``W`` multiples of ``2**depth`` (or ``None``).
    Output: ``(N, H, W, num_classes)`` float32 probabilities from a 1x1 head
    on ``X[0, depth]``.  With ``deep_supervision=True`` the model has
    ``depth`` outputs ``output_1 .. output_{depth}``, one 1x1 head on each
    of ``X[0, 1] .. X[0, depth]`` (train with loss weights ``1/depth``; use
    :func:`Functions.models.single_output` to keep the last or the average).

    Default parameter count: 2,267,073
    """
    input_shape, num_classes, depth, base_filters, dropout = blocks.check_unet_settings(
        input_shape, num_classes, depth, base_filters, dropout, upsampling, name
    )

    def node(x, i, j):
        return blocks.double_conv(x, base_filters * 2**i, batch_norm=batch_norm, dropout=dropout, name=f"x{i}{j}")

    inputs = blocks.make_input(input_shape)
    grid: dict[tuple[int, int], object] = {}
    x = inputs
    for i in range(depth + 1):
        if i > 0:
            x = layers.MaxPooling2D(2, name=f"x{i - 1}0_pool")(grid[(i - 1, 0)])
        grid[(i, 0)] = node(x, i, 0)
        # Once level i exists, every node on the diagonal i + j = level can be computed.
        for j in range(1, i + 1):
            lvl = i - j
            up = blocks.upsample(grid[(lvl + 1, j - 1)], base_filters * 2**lvl, mode=upsampling, name=f"x{lvl}{j}")
            merged = layers.Concatenate(name=f"x{lvl}{j}_concat")([grid[(lvl, k)] for k in range(j)] + [up])
            grid[(lvl, j)] = node(merged, lvl, j)

    if deep_supervision:
        outputs = [blocks.segmentation_head(grid[(0, j)], num_classes, name=f"output_{j}") for j in range(1, depth + 1)]
    else:
        outputs = blocks.segmentation_head(grid[(0, depth)], num_classes)
    return keras.Model(inputs, outputs, name=name)
