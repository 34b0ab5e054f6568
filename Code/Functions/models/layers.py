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
