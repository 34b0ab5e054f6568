"""Building blocks shared by the architectures: one function per idea.

Each block is a plain function ``block(x, ..., name=...) -> tensor`` on Keras
functional tensors (channels last, ``(N, H, W, C)``).  The blocks the U-Net
family uses also take ``dims=3`` for volumes ``(N, D, H, W, C)``: the same
layers in their 3-D form (Conv3D, MaxPooling3D, ...), so a 3-D U-Net is the
2-D one with ``dims=3`` (Cicek et al. 2016).  Keras has no trilinear
upsampling layer, so ``"bilinear"`` upsampling is nearest-neighbour
upsampling in 3-D (followed by the same 3x3x3 conv).  ``name`` is a prefix
for the layers the block creates, so every layer in a model has a readable,
unique name (``enc2_conv1``, ``dec1_up`` ...).

- :func:`conv_bn_act`: Conv2D -> BatchNorm -> activation (the basic unit).
- :func:`double_conv`: two of those (the U-Net level).
- :func:`upsample`: transposed conv or bilinear upsampling + conv.
- :func:`preact_residual_unit`: BN-ReLU-Conv x2 + 1x1-conv shortcut (ResUNet).
- :func:`basic_block`, :func:`bottleneck_block`: the ResNet residual blocks.
- :func:`squeeze_excite`: channel re-weighting (Hu et al. 2018).
- :func:`aspp`: atrous spatial pyramid pooling (Chen et al. 2017).
- :func:`attention_gate`: additive attention gate on a skip (Oktay et al. 2018).
- :func:`decoder_attention`: the ResUNet++ attention block (Jha et al. 2019).
- :func:`segmentation_head`, :func:`classification_head`: 1x1 conv / dense + float32 activation.
- :func:`check_input_shape`, :func:`check_num_classes`: argument validation.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
from keras import layers

#: Batch-norm momentum for every block. 0.9 rather than Keras's 0.99: with the small datasets of the
#: course an epoch is only a few dozen steps, and 0.99 leaves the moving statistics (used at
#: validation and test time) far from the batch statistics for many epochs.
BN_MOMENTUM = 0.9

UPSAMPLING_MODES = ("transpose", "bilinear")
DIMS = (2, 3)


def _layer(kind: str, dims: int):
    """The Keras layer class ``kind`` ("Conv", "ConvTranspose", "MaxPooling", ...) for 2-D or 3-D inputs."""
    if dims not in DIMS:
        raise ValueError(f"dims must be 2 (images) or 3 (volumes), got {dims!r}")
    if kind == "ConvTranspose":
        return getattr(layers, f"Conv{dims}DTranspose")
    return getattr(layers, f"{kind}{dims}D")


# --------------------------------------------------------------------------- validation
def check_num_classes(num_classes: int) -> int:
    """Return ``num_classes`` as int; ValueError unless it is >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (1 = binary with sigmoid), got {num_classes!r}")
    return int(num_classes)


def _suggest(size: int, factor: int) -> list[int]:
    lower = (size // factor) * factor
    return [s for s in (lower, lower + factor) if s >= factor]


def check_input_shape(
    input_shape: Sequence,
    *,
    factor: int = 1,
    factor_text: str | None = None,
    min_size: int | None = None,
    model: str = "model",
    dims: int = 2,
) -> tuple:
    """Validate ``(H, W, C)`` (``dims=3``: ``(D, H, W, C)``); return it as a tuple.

    ``H`` and/or ``W`` may be ``None`` (any size, not validated); when given
    they must be multiples of ``factor`` (shown as ``factor_text``, e.g.
    ``"2**4=16"``) and at least ``min_size``.  ``C`` must be a positive int.
    The ValueError message names sizes that would work.
    """
    if dims == 3:
        return _check_volume_shape(input_shape, factor=factor, factor_text=factor_text, model=model)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"{model}: input_shape must be (height, width, channels), got {input_shape!r}") from None
    if len(shape) != 3:
        raise ValueError(f"{model}: input_shape must be (height, width, channels), got {input_shape!r}")
    shape = tuple(int(d) if isinstance(d, numbers.Integral) and not isinstance(d, bool) else d for d in shape)
    h, w, c = shape
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"{model}: the channel count (last entry of input_shape) must be an integer >= 1, got {c!r}")
    for d in (h, w):
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(f"{model}: height and width must be positive integers or None, got {input_shape!r}")
    known = [d for d in (h, w) if d is not None]
    if not known:
        return shape
    size = f"{h}x{w}"
    low = max(min_size or 1, factor)
    if min_size is not None and any(d < min_size for d in known):
        good = -(-low // factor) * factor
        raise ValueError(f"input size {size} is too small for {model}; use at least {good}x{good}")
    if factor > 1 and any(d % factor for d in known):
        text = factor_text or str(factor)
        hs = _suggest(h, factor) if h is not None and h % factor else [h]
        ws = _suggest(w, factor) if w is not None and w % factor else [w]
        if h == w:
            options = [str(s) for s in hs if s >= low]
        else:
            options = [f"{a}x{b}" for a in hs for b in ws if (a is None or a >= low) and (b is None or b >= low)][:2]
        if not options:
            options = [str(-(-low // factor) * factor)]
        raise ValueError(
            f"input size {size} is not divisible by {text}; use e.g. {' or '.join(options)} (multiples of {factor})"
        )
    return shape


def _check_volume_shape(input_shape, *, factor: int, factor_text: str | None, model: str) -> tuple:
    """``(D, H, W, C)`` with each known side a positive multiple of ``factor``; ValueError naming good sides."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 4:
        raise ValueError(f"{model}: input_shape must be (depth, height, width, channels) for a 3-D model, "
                         f"got {input_shape!r}")
    shape = tuple(int(d) if isinstance(d, numbers.Integral) and not isinstance(d, bool) else d for d in shape)
    c = shape[3]
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"{model}: the channel count (last entry of input_shape) must be an integer >= 1, got {c!r}")
    sides = shape[:3]
    for d in sides:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(f"{model}: depth, height and width must be positive integers or None, got {input_shape!r}")
    bad = [d for d in sides if d is not None and d % factor]
    if factor > 1 and bad:
        size = "x".join(str(d) for d in sides)
        good = "x".join(str(max(factor, (d // factor) * factor)) if d is not None else "None" for d in sides)
        raise ValueError(f"input size {size} is not divisible by {factor_text or factor}; use e.g. {good} "
                         f"(multiples of {factor})")
    return shape


def check_choice(value, choices: Sequence, what: str):
    if value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}, got {value!r}")
    return value


# --------------------------------------------------------------------------- convolutions
def conv_bn_act(
    x,
    filters: int,
    *,
    kernel_size: int = 3,
    strides: int = 1,
    dilation_rate: int = 1,
    batch_norm: bool = True,
    activation: str | None = "relu",
    name: str,
    dims: int = 2,
):
    """Conv2D/Conv3D ('same') -> optional BatchNorm -> optional activation.

    ``(N, H, W, C) -> (N, H/strides, W/strides, filters)`` (``dims=3``: with a
    leading depth axis ``D`` too).  The conv has no bias when batch norm
    follows (the BN shift replaces it).
    """
    x = _layer("Conv", dims)(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def double_conv(x, filters: int, *, batch_norm: bool = True, dropout: float = 0.0, name: str, dims: int = 2):
    """Two 3x3 (3x3x3) conv-BN-ReLU units, then optional dropout: ``(N,[D,]H,W,C) -> (N,[D,]H,W,filters)``."""
    x = conv_bn_act(x, filters, batch_norm=batch_norm, name=f"{name}_1", dims=dims)
    x = conv_bn_act(x, filters, batch_norm=batch_norm, name=f"{name}_2", dims=dims)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def upsample(x, filters: int | None, *, mode: str = "transpose", conv: bool = True, name: str, dims: int = 2):
    """Double the resolution: ``(N,H,W,C) -> (N,2H,2W,filters)`` (``dims=3``: ``2D`` too).

    ``"transpose"``: 2x2 transposed conv, stride 2 (the U-Net up-convolution).
    ``"bilinear"``: bilinear upsampling (nearest-neighbour in 3-D) followed by
    a 3x3 conv, or by nothing when ``conv=False`` (then the channel count
    stays ``C``).
    """
    check_choice(mode, UPSAMPLING_MODES, "upsampling")
    if mode == "transpose":
        return _layer("ConvTranspose", dims)(filters, 2, strides=2, padding="same", name=f"{name}_upconv")(x)
    if dims == 2:
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
    else:
        x = _layer("UpSampling", dims)(2, name=f"{name}_upsample")(x)
    if not conv:
        return x
    return _layer("Conv", dims)(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_upconv")(x)


# --------------------------------------------------------------------------- residual / SE / ASPP
def preact_residual_unit(x, filters: int, *, strides: int = 1, first: bool = False, name: str, dims: int = 2):
    """Pre-activation residual unit (He et al. 2016b, as used by ResUNet).

    Main path: BN-ReLU-Conv3x3(strides) -> BN-ReLU-Conv3x3; shortcut: 1x1
    conv (strides) + BN; the two are added.  Downsampling is the stride of
    the first conv (no pooling).  ``first=True`` drops the leading BN-ReLU
    (the unit that sees the raw image).

    ``(N, H, W, C) -> (N, H/strides, W/strides, filters)`` (``dims=3``: 3x3x3 convs on ``(N, D, H, W, C)``).
    """
    conv = _layer("Conv", dims)
    shortcut = conv(filters, 1, strides=strides, padding="same", use_bias=False, name=f"{name}_short_conv")(x)
    shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_short_bn")(shortcut)
    y = x
    if not first:
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = conv(filters, 3, strides=strides, padding="same", kernel_initializer="he_normal", name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = conv(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def basic_block(x, filters: int, *, strides: int = 1, name: str):
    """ResNet basic block (He et al. 2016): two 3x3 conv-BN, shortcut, add, ReLU.

    The shortcut is the identity, or a 1x1 conv + BN (projection) when the
    stride or the channel count changes.
    ``(N, H, W, C) -> (N, H/strides, W/strides, filters)``.
    """
    shortcut = _projection(x, filters, strides, name)
    y = conv_bn_act(x, filters, strides=strides, name=f"{name}_1")
    y = conv_bn_act(y, filters, activation=None, name=f"{name}_2")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(x, filters: int, *, strides: int = 1, expansion: int = 4, name: str):
    """ResNet bottleneck block (He et al. 2016): 1x1 reduce, 3x3, 1x1 expand, shortcut, add, ReLU.

    The stride sits on the 3x3 conv (the common "v1.5" placement).
    ``(N, H, W, C) -> (N, H/strides, W/strides, expansion * filters)``.
    """
    out = expansion * filters
    shortcut = _projection(x, out, strides, name)
    y = conv_bn_act(x, filters, kernel_size=1, name=f"{name}_1")
    y = conv_bn_act(y, filters, strides=strides, name=f"{name}_2")
    y = conv_bn_act(y, out, kernel_size=1, activation=None, name=f"{name}_3")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _projection(x, filters: int, strides: int, name: str):
    if strides == 1 and int(x.shape[-1]) == filters:
        return x
    return conv_bn_act(x, filters, kernel_size=1, strides=strides, activation=None, name=f"{name}_short")


def squeeze_excite(x, *, ratio: int = 8, name: str):
    """Squeeze-and-excitation (Hu et al. 2018): rescale each channel by a learned gate.

    Global average pool -> Dense(C/ratio, ReLU) -> Dense(C, sigmoid) -> multiply.
    Shape unchanged: ``(N, H, W, C)``.
    """
    channels = int(x.shape[-1])
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Dense(max(1, channels // ratio), activation="relu", name=f"{name}_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def aspp(x, filters: int, *, rates: Sequence[int] = (1, 6, 12, 18), name: str):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabv3).

    One branch per dilation rate (rate 1 is a 1x1 conv, the others 3x3
    dilated convs), each conv-BN-ReLU; concatenated and fused by a 1x1
    conv-BN-ReLU.  ``(N, H, W, C) -> (N, H, W, filters)``.
    """
    branches = []
    for rate in rates:
        k = 1 if rate == 1 else 3
        branches.append(conv_bn_act(x, filters, kernel_size=k, dilation_rate=rate, name=f"{name}_rate{rate}"))
    y = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    return conv_bn_act(y, filters, kernel_size=1, name=f"{name}_fuse")


# --------------------------------------------------------------------------- attention
def attention_gate(x, g, *, inter_filters: int, index: int, name: str = "attention", dims: int = 2):
    """Additive attention gate (Oktay et al. 2018) on the skip features ``x``.

    ``x``: skip, ``(N, H, W, Cx)``; ``g``: gating signal from the next
    coarser level, ``(N, H/2, W/2, Cg)``.

    ``q = ReLU(W_x x + W_g g)`` (``W_x`` a 2x2 stride-2 conv so both sit on
    g's grid, ``W_g`` a 1x1 conv), ``alpha = sigmoid(psi(q))`` with ``psi`` a
    1x1 conv to one channel, resampled bilinearly to ``H x W``.  Returns
    ``x * alpha`` (shape of ``x``).  Layers: ``{name}_psi_{index}`` (psi),
    ``attention_map_{index}`` (alpha at skip resolution, ``(N, H, W, 1)``),
    ``{name}_gated_{index}`` (the gated skip).  ``dims=3``: the same on
    ``(N, D, H, W, C)`` volumes, alpha upsampled nearest-neighbour (Keras has
    no trilinear upsampling layer).
    """
    conv = _layer("Conv", dims)
    theta_x = conv(inter_filters, 2, strides=2, padding="same", use_bias=False, name=f"{name}_wx_{index}")(x)
    phi_g = conv(inter_filters, 1, padding="same", name=f"{name}_wg_{index}")(g)
    q = layers.Add(name=f"{name}_add_{index}")([theta_x, phi_g])
    q = layers.Activation("relu", name=f"{name}_relu_{index}")(q)
    psi = conv(1, 1, padding="same", name=f"{name}_psi_{index}")(q)
    alpha = layers.Activation("sigmoid", name=f"{name}_sigmoid_{index}")(psi)
    if dims == 2:
        alpha = layers.UpSampling2D(2, interpolation="bilinear", name=f"attention_map_{index}")(alpha)
    else:
        alpha = _layer("UpSampling", dims)(2, name=f"attention_map_{index}")(alpha)
    return layers.Multiply(name=f"{name}_gated_{index}")([x, alpha])


def decoder_attention(skip, g, *, name: str):
    """ResUNet++ attention block (Jha et al. 2019): weight decoder features by encoder context.

    ``skip``: encoder features ``(N, H, W, Cs)``; ``g``: decoder features
    ``(N, H/2, W/2, Cg)``.  Skip path BN-ReLU-Conv3x3-MaxPool, decoder path
    BN-ReLU-Conv3x3, added, then BN-ReLU-Conv3x3 and multiplied with ``g``.
    Returns ``(N, H/2, W/2, Cg)``.
    """
    filters = int(g.shape[-1])
    s = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_skip_bn")(skip)
    s = layers.Activation("relu", name=f"{name}_skip_relu")(s)
    s = layers.Conv2D(filters, 3, padding="same", name=f"{name}_skip_conv")(s)
    s = layers.MaxPooling2D(2, name=f"{name}_skip_pool")(s)
    d = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dec_bn")(g)
    d = layers.Activation("relu", name=f"{name}_dec_relu")(d)
    d = layers.Conv2D(filters, 3, padding="same", name=f"{name}_dec_conv")(d)
    y = layers.Add(name=f"{name}_add")([s, d])
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(y)
    y = layers.Activation("relu", name=f"{name}_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(y)
    return layers.Multiply(name=f"{name}_scale")([y, g])


# --------------------------------------------------------------------------- heads
def final_activation(num_classes: int) -> str:
    """``"sigmoid"`` for one class (binary / multi-label), ``"softmax"`` otherwise."""
    return "sigmoid" if num_classes == 1 else "softmax"


def segmentation_head(x, num_classes: int, *, name: str = "output", dims: int = 2):
    """1x1 conv to ``num_classes`` maps, then a float32 sigmoid/softmax layer named ``name``.

    ``(N, [D,] H, W, C) -> (N, [D,] H, W, num_classes)``; the separate float32
    Activation keeps probabilities in float32 under mixed precision.
    """
    x = _layer("Conv", dims)(num_classes, 1, padding="same", name=f"{name}_logits")(x)
    return layers.Activation(final_activation(num_classes), dtype="float32", name=name)(x)


def classification_head(x, num_classes: int, *, dropout: float = 0.0, name: str = "output"):
    """Global average pool -> dropout -> Dense(num_classes) -> float32 sigmoid/softmax.

    ``(N, H, W, C) -> (N, num_classes)``.
    """
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name=f"{name}_logits")(x)
    return layers.Activation(final_activation(num_classes), dtype="float32", name=name)(x)


def check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def make_input(input_shape: tuple, name: str = "image"):
    return keras.Input(shape=input_shape, name=name)


def check_unet_settings(input_shape, num_classes, depth, base_filters, dropout, upsampling, name, dims: int = 2):
    """Validate the settings U-Net, Attention U-Net and UNet++ share; returns them checked.

    ``(input_shape, num_classes, depth, base_filters, dropout)``; ValueError naming the bad one.
    """
    input_shape = check_input_shape(input_shape, factor=2**depth, factor_text=f"2**{depth}={2**depth}", model=name,
                                     dims=dims)
    num_classes = check_num_classes(num_classes)
    depth = check_positive_int(depth, "depth")
    base_filters = check_positive_int(base_filters, "base_filters")
    dropout = check_dropout(dropout)
    check_choice(upsampling, UPSAMPLING_MODES, "upsampling")
    return input_shape, num_classes, depth, base_filters, dropout


def unet_encoder(x, depth: int, base_filters: int, *, batch_norm: bool, dropout: float, dims: int = 2):
    """The contracting path and bridge of U-Net (two 3x3 convs per level, 2x2 max-pool; 3-D: 3x3x3, 2x2x2).

    Returns ``(bridge, skips)``; ``skips[level]`` has ``base_filters * 2**level`` channels
    at ``1 / 2**level`` of the input resolution.
    """
    skips = []
    for level in range(depth):
        x = double_conv(x, base_filters * 2**level, batch_norm=batch_norm, dropout=dropout, name=f"enc{level}",
                        dims=dims)
        skips.append(x)
        x = _layer("MaxPooling", dims)(2, name=f"enc{level}_pool")(x)
    x = double_conv(x, base_filters * 2**depth, batch_norm=batch_norm, dropout=dropout, name="bridge", dims=dims)
    return x, skips
