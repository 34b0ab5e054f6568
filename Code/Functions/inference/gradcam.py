"""Grad-CAM: where in the image a convolutional classifier looked.

Selvaraju R.R., Cogswell M., Das A., Vedantam R., Parikh D., Batra D.
"Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, arXiv:1610.02391.

For a class ``c`` with score ``y_c`` (the logit, before softmax) and the
feature maps ``A`` ``(h, w, K)`` of a convolutional layer:

* ``alpha_k = mean over (i, j) of d y_c / d A[i, j, k]`` (one weight per channel);
* ``cam = ReLU(sum_k alpha_k A[..., k])``, an ``(h, w)`` map;
* the map is resized bilinearly to the input size and divided by its maximum,
  so heat maps lie in [0, 1] (an all-zero map means no positive evidence).

The model is split at the chosen layer into a *feature* model (input ->
``A``) and a *head* model (``A`` -> scores); the gradient of the head with
respect to its input is taken with the active backend (TensorFlow, JAX or
PyTorch), so Grad-CAM works the same on all three.  The default layer is the
last one whose output is a 4-D feature map; a nested backbone (a
``keras.applications`` model used as one layer) counts as one layer, and a
``layer_name`` inside a nested backbone is reached by inlining that backbone.
The split needs every path from the layer to the output to pass through it,
which holds for the last convolutional block of a classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _functional(model):
    """The model as a Functional graph (a Sequential is rebuilt on its own layers, sharing weights)."""
    import keras

    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = layer(x)
        return keras.Model(inputs, x, name=model.name)
    if not hasattr(model, "_run_through_graph") or not getattr(model, "inputs", None):
        raise ValueError(f"Grad-CAM needs a Functional or Sequential Keras model, got {type(model).__name__}")
    return model


def _is_feature_map(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4


def find_target_layer(model) -> str:
    """Name of the last top-level layer whose output is a 4-D ``(N, h, w, K)`` feature map.

    A nested backbone model counts as one layer, so for a ``keras.applications``
    classifier this is the backbone itself (its last convolutional block).
    """
    model = _functional(model)
    for layer in reversed(model.layers):
        if _is_feature_map(layer):
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a 4-D (N, h, w, K) output; Grad-CAM needs a CNN")


def _find_layer(model, name: str):
    """``(layer, nested_models)``: the layer called ``name`` and the nested models that hold it (outermost first)."""
    import keras

    for layer in model.layers:
        if layer.name == name:
            return layer, []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            try:
                found, path = _find_layer(layer, name)
            except ValueError:
                continue
            return found, [layer, *path]
    raise ValueError(f"no layer named {name!r} in model {model.name!r}")


class GradCAM:
    """Grad-CAM for one model and layer; build once, call on many batches.

    Args:
        model: a Functional or Sequential Keras classifier with ``(N, H, W, C)``
            inputs and ``(N, K)`` outputs.
        layer_name: the feature layer; ``None`` picks :func:`find_target_layer`.
            A layer inside a nested backbone may be named too.
        use_logits: differentiate the input of a final softmax/sigmoid
            :class:`keras.layers.Activation` (the paper's pre-softmax score)
            rather than the probability, which saturates.

    ``heatmaps, classes = GradCAM(model)(images)`` gives ``(N, H, W)`` float32
    maps in [0, 1] and the class explained for each image (the predicted one
    unless ``class_index`` is given).
    """

    def __init__(self, model, layer_name: str | None = None, use_logits: bool = True):
        import keras

        self.model = _functional(model)
        self.layer_name = layer_name or find_target_layer(self.model)
        target, nested = _find_layer(self.model, self.layer_name)
        final = getattr(self.model.outputs[0], "_keras_history", None)
        final = final[0] if final else self.model.layers[-1]
        take_logits = use_logits and isinstance(final, keras.layers.Activation) and \
            getattr(final.activation, "__name__", "") in ("softmax", "sigmoid")
        captured: dict = {}

        def call(layer, *args, **kwargs):
            if any(layer is m for m in nested):  # inline the backbone that holds the target layer
                return layer._run_through_graph(args[0] if len(args) == 1 else args,
                                                operation_fn=lambda op: op, call_fn=call)
            out = layer(*args, **kwargs)
            if layer is target:
                captured["features"] = out
            if layer is final and take_logits:
                captured["scores"] = args[0]
            return out

        clone = keras.models.clone_model(self.model, clone_function=lambda layer: layer, call_function=call)
        if "features" not in captured:
            raise ValueError(f"layer {self.layer_name!r} is not on the path from the input to the output")
        features = captured["features"]
        if len(features.shape) != 4:
            raise ValueError(f"layer {self.layer_name!r} outputs shape {tuple(features.shape)}; "
                             "Grad-CAM needs a 4-D (N, h, w, K) feature map")
        scores = captured.get("scores", clone.outputs[0])
        self.feature_model = keras.Model(clone.inputs[0], features, name="gradcam_features")
        try:
            self.head_model = keras.Model(features, scores, name="gradcam_head")
        except ValueError as exc:
            raise ValueError(
                f"layer {self.layer_name!r} does not separate the network (a skip connection bypasses it: {exc}); "
                "choose the output of a whole block, e.g. the last 4-D layer (layer_name=None)"
            ) from None
        self.uses_logits = "scores" in captured

    def __call__(self, images: np.ndarray, class_index: int | Sequence[int] | None = None,
                 batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Heat maps ``(N, H, W)`` in [0, 1] for ``images`` ``(N, H, W, C)``, and the classes explained ``(N,)``.

        ``class_index``: one class for all images, one per image, or ``None``
        for each image's predicted class.
        """
        import keras

        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        n = len(images)
        if class_index is None:
            wanted = None
        else:
            wanted = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,)).copy()
        maps, chosen = [], []
        for start in range(0, n, batch_size):
            x = images[start:start + batch_size]
            feats = keras.ops.convert_to_numpy(self.feature_model(x, training=False)).astype(np.float32)
            if wanted is None:
                scores = keras.ops.convert_to_numpy(self.head_model(feats, training=False))
                cls = np.argmax(scores, axis=-1) if scores.shape[-1] > 1 else np.zeros(len(x), np.int64)
            else:
                cls = wanted[start:start + batch_size]
            grads = input_gradient(self.head_model, feats, cls)
            weights = grads.mean(axis=(1, 2))                                  # (n, K)
            cam = np.maximum(np.einsum("nhwk,nk->nhw", feats, weights), 0.0)  # (n, h, w)
            maps.append(_resize_and_scale(cam, images.shape[1:3]))
            chosen.append(np.asarray(cls, dtype=np.int64))
        return np.concatenate(maps), np.concatenate(chosen)


def grad_cam(model, images: np.ndarray, class_index: int | Sequence[int] | None = None,
             layer_name: str | None = None, use_logits: bool = True,
             batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """One-call Grad-CAM: ``(heatmaps (N, H, W) in [0, 1], classes (N,))``; see :class:`GradCAM`."""
    return GradCAM(model, layer_name=layer_name, use_logits=use_logits)(images, class_index, batch_size)


def input_gradient(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``d sum_i model(x)[i, classes[i]] / d x`` with the active backend; NumPy array shaped like ``x``.

    Each row's score depends only on its own input (inference mode), so the
    gradient of the sum gives every image its own gradient.
    """
    import keras

    backend = keras.backend.backend()
    rows = np.arange(len(x))
    classes = np.asarray(classes, dtype=np.int64)
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = model(t, training=False)
            score = tf.reduce_sum(tf.gather_nd(out, np.stack([rows, classes], axis=1)))
        grad = tape.gradient(score, t)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        def score(t):
            return jnp.sum(model(t, training=False)[rows, classes])

        grad = jax.grad(score)(jnp.asarray(x))
    elif backend == "torch":
        import torch

        t = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        out = model(t, training=False)
        score = out[torch.as_tensor(rows, device=out.device), torch.as_tensor(classes, device=out.device)].sum()
        (grad,) = torch.autograd.grad(score, t)
    else:
        raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} backend")
    return np.asarray(keras.ops.convert_to_numpy(grad), dtype=np.float32)


def _resize_and_scale(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` maps -> ``(n, H, W)`` (bilinear), each divided by its maximum (zeros stay zeros)."""
    import cv2

    out = np.empty((len(cam), *size), np.float32)
    for i, m in enumerate(cam):
        m = cv2.resize(m.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        top = float(m.max())
        out[i] = m / top if top > 0 else 0.0
    return out
