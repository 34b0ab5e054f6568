"""Small serializable layers the architectures need beyond ``keras.layers``.

Everything here is built from ``keras.ops`` only, so it runs on TensorFlow,
JAX and PyTorch, and every constructor argument is in ``get_config`` so a
``.keras`` file reloads with ``keras.saving.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

import keras
from keras import ops

# Per-channel statistics the ImageNet backbones were trained with (RGB order).
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PREPROCESSING_MODES = ("caffe", "tf", "torch", "raw255", "none")


def imagenet_preprocess(x, mode: str = "tf"):
    """Map images scaled to [0, 1] (RGB, channels last) to a backbone's input range.

    ``mode`` follows ``keras.applications``:

    - ``"caffe"`` (ResNet50): RGB -> BGR, times 255, minus the ImageNet mean per channel.
    - ``"tf"`` (MobileNetV2): scaled to [-1, 1].
    - ``"torch"``: minus the ImageNet mean, divided by its standard deviation.
    - ``"raw255"`` (EfficientNet, which normalises inside the model): times 255.
    - ``"none"``: unchanged.

    Input and output shape: ``(N, H, W, 3)``.
    """
    if mode == "caffe":
        x = ops.flip(x, axis=-1) * 255.0
        return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
    if mode == "tf":
        return x * 2.0 - 1.0
    if mode == "torch":
        mean = ops.convert_to_tensor(_IMAGENET_MEAN_RGB, dtype=x.dtype)
        std = ops.convert_to_tensor(_IMAGENET_STD_RGB, dtype=x.dtype)
        return (x - mean) / std
    if mode == "raw255":
        return x * 255.0
    if mode == "none":
        return x
    raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")


@keras.saving.register_keras_serializable(package="Functions")
class ImageNetPreprocessing(keras.layers.Layer):
    """Fixed (weight-free) mapping from [0, 1] RGB images to a backbone's expected range.

    See :func:`imagenet_preprocess` for the modes.  Shape is unchanged.
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")
        self.mode = mode

    def call(self, inputs):
        return imagenet_preprocess(inputs, self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_flops(self, input_shapes, output_shapes) -> int:
        """Forward FLOPs per image (used by :func:`Functions.models.flops.count_flops`)."""
        n = _num_elements(output_shapes[0])
        return {"caffe": 2, "tf": 2, "torch": 2, "raw255": 1, "none": 0}[self.mode] * n

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


def _num_elements(shape) -> int:
    n = 1
    for d in shape[1:]:
        n *= int(d)
    return n


@keras.saving.register_keras_serializable(package="Functions")
class ChannelGroupShift(keras.layers.Layer):
    """The UNeXt token shift (Valanarasu & Patel 2022): channel groups moved by -k..k pixels along one axis.

    The channels are cut into ``groups`` consecutive chunks (sizes as ``torch.chunk``:
    ``ceil(C / groups)`` each, the last one shorter); chunk ``i`` is translated by
    ``i - groups // 2`` pixels along ``axis`` (1 = height, 2 = width) with zeros
    shifted in, so that a following token-wise (1x1) MLP mixes neighbouring
    positions.  Zero padding then slicing only: exports to ONNX/LiteRT and runs on
    every backend.  Shape unchanged: ``(N, H, W, C)``.
    """

    def __init__(self, groups: int = 5, axis: int = 1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or groups % 2 == 0:
            raise ValueError(f"groups must be an odd integer >= 1, got {groups!r}")
        if axis not in (1, 2):
            raise ValueError(f"axis must be 1 (height) or 2 (width), got {axis!r}")
        self.groups = groups
        self.axis = axis

    def _chunks(self, channels: int) -> list[tuple[int, int]]:
        size = -(-channels // self.groups)
        return [(start, min(start + size, channels)) for start in range(0, channels, size)]

    def call(self, inputs):
        pad = self.groups // 2
        if pad == 0:
            return inputs
        widths = [[0, 0]] * 4
        widths[self.axis] = [pad, pad]
        padded = ops.pad(inputs, widths)
        parts = []
        for i, (lo, hi) in enumerate(self._chunks(int(inputs.shape[-1]))):
            shift = i - pad  # content moves by +shift: out[j] = in[j - shift]
            start, stop = pad - shift, -(pad + shift) or None
            if self.axis == 1:
                parts.append(padded[:, start:stop, :, lo:hi])
            else:
                parts.append(padded[:, :, start:stop, lo:hi])
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_flops(self, input_shapes, output_shapes) -> int:
        """A shift moves data only: 0 FLOPs."""
        return 0

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "axis": self.axis})
        return config


@keras.saving.register_keras_serializable(package="Functions")
class ExactGELU(keras.layers.Layer):
    """GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (Hendrycks & Gimpel 2016), written with ``erf``.

    The same function as ``Activation("gelu")``, which TensorFlow lowers to
    ``erfc``, an op the ONNX converter (tf2onnx) lacks; ``erf`` converts.  Shape unchanged.
    """

    def call(self, inputs):
        return 0.5 * inputs * (1.0 + ops.erf(inputs * 0.7071067811865476))

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_flops(self, input_shapes, output_shapes) -> int:
        """Counted as one activation per element, like the other activations."""
        return _num_elements(output_shapes[0])
