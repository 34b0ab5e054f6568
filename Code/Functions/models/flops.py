"""Forward-pass FLOPs counted layer by layer from a model's graph.

Works on any backend: nothing is executed, only the shapes the functional
graph already knows are read.  Conventions (per image):

- convolutions and dense layers: a multiply-add is 2 FLOPs, plus 1 per
  output element for the bias and 1 for a fused (non-linear) activation;
- batch normalisation (inference, folded into scale and shift), Rescaling and
  Normalization: 2 per element; layer/group normalisation: 5 per element;
- max / average pooling: one per window element per output; global pooling: one per input element;
- activations (ReLU, sigmoid, softmax ...): 1 per element;
- Add / Subtract / Multiply / Maximum / Minimum: (inputs - 1) per output element; Average: inputs per element;
- bilinear upsampling: 8 per output element (four weighted taps); nearest upsampling
  (``UpSampling1D``/``3D`` are always nearest), padding, cropping, concatenation, reshapes
  and dropout: 0.

A layer may define ``count_flops(input_shapes, output_shapes) -> int`` to
report its own cost.  Nested functional models (``keras.applications``
backbones) are walked recursively.
"""

from __future__ import annotations

import math
import warnings

import keras
from keras import layers

_FREE = (
    layers.InputLayer,
    layers.Concatenate,
    layers.Dropout,
    layers.SpatialDropout2D,
    layers.Reshape,
    layers.Flatten,
    layers.Permute,
    layers.ZeroPadding2D,
    layers.ZeroPadding3D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.SpatialDropout3D,
    layers.UpSampling1D,
    layers.UpSampling3D,
    layers.Identity,
    layers.GaussianNoise,
    layers.RepeatVector,
)
_ACTIVATIONS = (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.Softmax, layers.ELU, layers.PReLU)
_POOLING = (
    layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
    layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
)
_GLOBAL_POOLING = (
    layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
)
_PAIRWISE = (layers.Add, layers.Subtract, layers.Multiply, layers.Maximum, layers.Minimum)


def _elements(shape) -> int:
    """Elements per image of a ``(batch, ...)`` shape; ValueError on unknown sizes."""
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"count_flops needs fixed input sizes, found a tensor of shape {tuple(shape)}; "
            "build the model with e.g. input_shape=(128, 128, 1) instead of None"
        )
    return math.prod(int(d) for d in dims)


def _fused_activation(layer, out: int) -> int:
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "linear")
    return 0 if act is None or name == "linear" else out


def _bias(layer, out: int) -> int:
    return out if getattr(layer, "use_bias", False) else 0


def layer_flops(layer, input_shapes: list, output_shapes: list) -> int | None:
    """FLOPs per image of one call of ``layer``; ``None`` when the layer type is unknown."""
    if hasattr(layer, "count_flops"):
        return int(layer.count_flops(input_shapes, output_shapes))
    if isinstance(layer, _FREE):
        return 0
    out = _elements(output_shapes[0]) if output_shapes else 0
    # Order matters: the special convolutions before the generic one.
    if isinstance(layer, layers.SeparableConv2D):
        kh_kw_cin_mult = math.prod(layer.depthwise_kernel.shape)  # kh, kw, cin, multiplier
        kh_kw = math.prod(layer.depthwise_kernel.shape[:2])
        out_pixels = out // int(output_shapes[0][-1])
        mid = kh_kw_cin_mult // kh_kw  # cin * multiplier channels between the two convs
        macs = out_pixels * mid * kh_kw + out * mid
        return 2 * macs + _bias(layer, out) + _fused_activation(layer, out)
    if isinstance(layer, layers.DepthwiseConv2D):
        kh_kw = math.prod(layer.kernel.shape[:2])
        return 2 * out * kh_kw + _bias(layer, out) + _fused_activation(layer, out)
    if isinstance(layer, (layers.Conv2DTranspose, layers.Conv1DTranspose, layers.Conv3DTranspose)):
        # Every input element is spread over the kernel: kernel shape (*k, out_channels, in_channels).
        macs = _elements(input_shapes[0]) * math.prod(layer.kernel.shape[:-1])
        return 2 * macs + _bias(layer, out) + _fused_activation(layer, out)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        # Kernel shape (*k, in_channels / groups, out_channels): multiply-adds per output element.
        macs = out * math.prod(layer.kernel.shape[:-1])
        return 2 * macs + _bias(layer, out) + _fused_activation(layer, out)
    if isinstance(layer, layers.Dense):
        macs = out * int(layer.kernel.shape[0])
        return 2 * macs + _bias(layer, out) + _fused_activation(layer, out)
    if isinstance(layer, (layers.BatchNormalization, layers.Rescaling, layers.Normalization)):
        return 2 * out
    if isinstance(layer, (layers.LayerNormalization, layers.GroupNormalization)):
        return 5 * out
    if isinstance(layer, _ACTIVATIONS):
        return out
    if isinstance(layer, _POOLING):
        return out * math.prod(layer.pool_size)
    if isinstance(layer, _GLOBAL_POOLING):
        return _elements(input_shapes[0])
    if isinstance(layer, layers.Average):
        return out * len(input_shapes)
    if isinstance(layer, _PAIRWISE):
        return out * (len(input_shapes) - 1)
    if isinstance(layer, layers.UpSampling2D):
        return 8 * out if layer.interpolation == "bilinear" else 0
    return None


def _graph(model):
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError("count_flops needs a built Sequential model (start it with keras.Input)")
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"count_flops works on functional/Sequential models, not on subclassed {type(model).__name__}")
    return model


def _count(model, unknown: set) -> int:
    graph = _graph(model)
    total = 0
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op = node.operation
            in_shapes = [t.shape for t in node.input_tensors]
            out_shapes = [t.shape for t in node.outputs]
            if isinstance(op, keras.Model):
                total += _count(op, unknown)
                continue
            flops = layer_flops(op, in_shapes, out_shapes)
            if flops is None:
                unknown.add(type(op).__name__)
                flops = 0
            total += flops
    return total


def count_flops(model: keras.Model, batch_size: int = 1) -> int:
    """Forward FLOPs of ``model`` for ``batch_size`` images (see the module docstring for conventions).

    The model must have fixed spatial sizes.  Layer types this module does
    not know count as 0 and are named in a warning.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unknown: set = set()
    total = _count(model, unknown)
    if unknown:
        warnings.warn(f"count_flops: no FLOP rule for {sorted(unknown)}; counted as 0", stacklevel=2)
    return int(total) * int(batch_size)
