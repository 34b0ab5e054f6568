"""Keras segmentation metrics that are exact over a whole epoch.

Keras reports a metric's ``result()`` after accumulating every batch seen so
far.  A ratio such as Dice must therefore accumulate its *counts* (true
positives, false positives, false negatives) and divide once at the end, as
``keras.metrics.MeanIoU`` does; averaging per-batch Dice values would weight a
nearly-empty batch like a full one and gives a different (wrong) number.

* :class:`Dice` - ``2tp / (2tp + fp + fn)`` over every pixel of the epoch.
* :class:`IoU` - ``tp / (tp + fp + fn)`` over every pixel of the epoch.
* :class:`MeanDice` - the Dice of each image, averaged over images (the
  number most papers report as "mean Dice"); it accumulates the sum of
  per-image Dice values and the number of images.

Shapes
------
``y_pred``: ``(B, H, W, C)`` probabilities - sigmoid for ``num_classes=1``,
softmax for ``num_classes=C >= 2``.  ``y_true``: ``(B, H, W, 1)`` or
``(B, H, W)`` 0/1 masks (binary), or for multi-class one-hot ``(B, H, W, C)``
or integer labels ``(B, H, W, 1)`` / ``(B, H, W)`` (told apart by the last
dimension's static size).  Any number of spatial dimensions works.

Conventions (the same as :mod:`Functions.metrics`, which the tests compare against)
-----------------------------------------------------------------------------------
* Binary: a predicted pixel is foreground when ``y_pred >= threshold``
  (default 0.5); a true pixel when ``y_true >= 0.5``.
* Multi-class: the predicted class is the ``argmax`` over channels; Dice and
  IoU are computed per foreground class (1 .. C-1) and averaged over the
  classes that occur in the truth or the prediction.
* Nothing to find and nothing found (a 0/0 ratio) counts as a perfect 1.0,
  for the epoch counts and for each image of :class:`MeanDice`.
* ``sample_weight`` (optional, per image ``(B,)`` or per pixel) weights each
  pixel's contribution to the counts; :class:`MeanDice` also weights each
  image's Dice by the mean of its pixel weights.

All arithmetic is in float32 on ``keras.ops`` without Python branching on
tensor values, so the metrics run under ``jit_compile=True`` and on the
TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["Dice", "IoU", "MeanDice", "segmentation_metrics"]


# ----------------------------------------------------------------------------
# pure functions on keras.ops
# ----------------------------------------------------------------------------
def _flatten(x, channels: int):
    """``(B, ...) -> (B, N, channels)``."""
    return ops.reshape(x, (ops.shape(x)[0], -1, channels))


def hard_masks(y_true, y_pred, *, num_classes: int = 1, threshold: float = 0.5):
    """Hard 0/1 masks ``(t, p)`` of shape ``(B, N, K)`` in float32.

    ``K = 1`` for binary (``num_classes=1``); ``K = num_classes`` one-hot
    channels for multi-class (argmax of ``y_pred``; ``y_true`` one-hot or
    integer labels).
    """
    y_pred = ops.cast(y_pred, "float32")
    if num_classes <= 1:
        p = ops.cast(y_pred >= threshold, "float32")
        t = ops.cast(ops.cast(y_true, "float32") >= 0.5, "float32")
        return _flatten(t, 1), _flatten(p, 1)
    k = int(num_classes)
    p = ops.one_hot(ops.argmax(y_pred, axis=-1), k, dtype="float32")
    one_hot_truth = len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == k and k > 1
    if one_hot_truth:
        t = ops.one_hot(ops.argmax(ops.cast(y_true, "float32"), axis=-1), k, dtype="float32")
    else:
        labels = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
        labels = ops.reshape(labels, (ops.shape(labels)[0], -1))
        t = ops.one_hot(labels, k, dtype="float32")
    return _flatten(t, k), _flatten(p, k)


def _pixel_weights(sample_weight, t):
    """Weights of shape ``(B, N, 1)`` matching ``t`` ``(B, N, K)``, or ``None``."""
    if sample_weight is None:
        return None
    w = ops.cast(sample_weight, "float32")
    if len(w.shape) <= 1:
        w = ops.reshape(w, (-1, 1, 1)) * ops.ones_like(t[..., :1])
    else:
        w = ops.reshape(w, (ops.shape(w)[0], -1, 1))
    return w


def confusion_counts(t, p, weights=None, axis=(0, 1)):
    """Weighted ``(tp, fp, fn)`` summed over ``axis`` of hard masks ``(B, N, K)``."""
    if weights is None:
        weights = 1.0
    tp = ops.sum(t * p * weights, axis=axis)
    fp = ops.sum((1.0 - t) * p * weights, axis=axis)
    fn = ops.sum(t * (1.0 - p) * weights, axis=axis)
    return tp, fp, fn


def _mean_ratio(num, den, axis=-1):
    """Mean over ``axis`` of ``num/den`` where ``den > 0``; 1.0 where no entry has ``den > 0``."""
    valid = ops.cast(den > 0, "float32")
    ratio = num / ops.where(den > 0, den, ops.ones_like(den))
    n = ops.sum(valid, axis=axis)
    mean = ops.sum(ratio * valid, axis=axis) / ops.maximum(n, 1.0)
    return ops.where(n > 0, mean, ops.ones_like(mean))


def _foreground(x, num_classes: int):
    """Drop the background channel (class 0) for multi-class counts."""
    return x if num_classes <= 1 else x[..., 1:]


# ----------------------------------------------------------------------------
# metric classes
# ----------------------------------------------------------------------------
class _CountMetric(keras.metrics.Metric):
    """Accumulates per-class ``tp``, ``fp``, ``fn`` over the epoch."""

    def __init__(self, threshold: float = 0.5, num_classes: int = 1, name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1 (1 = binary sigmoid output), got {num_classes}")
        self.threshold = float(threshold)
        self.num_classes = int(num_classes)
        k = max(1, self.num_classes)
        self.tp = self.add_variable(shape=(k,), initializer="zeros", dtype="float32", name="tp")
        self.fp = self.add_variable(shape=(k,), initializer="zeros", dtype="float32", name="fp")
        self.fn = self.add_variable(shape=(k,), initializer="zeros", dtype="float32", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = hard_masks(y_true, y_pred, num_classes=self.num_classes, threshold=self.threshold)
        tp, fp, fn = confusion_counts(t, p, _pixel_weights(sample_weight, t))
        self.tp.assign_add(tp)
        self.fp.assign_add(fp)
        self.fn.assign_add(fn)

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold, num_classes=self.num_classes)
        return config


@keras.saving.register_keras_serializable(package="Functions")
class Dice(_CountMetric):
    """Dice ``2tp / (2tp + fp + fn)`` from counts accumulated over the epoch.

    Args: ``threshold`` (binary: ``y_pred >= threshold`` is foreground),
    ``num_classes`` (1 = binary sigmoid output; C >= 2 = softmax, foreground
    classes averaged), ``name`` (default ``"dice"``), ``dtype``.
    """

    def __init__(self, threshold: float = 0.5, num_classes: int = 1, name: str = "dice", dtype=None):
        super().__init__(threshold=threshold, num_classes=num_classes, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn = (_foreground(v, self.num_classes) for v in (self.tp, self.fp, self.fn))
        return _mean_ratio(2.0 * tp, 2.0 * tp + fp + fn)


@keras.saving.register_keras_serializable(package="Functions")
class IoU(_CountMetric):
    """Intersection over union ``tp / (tp + fp + fn)`` from counts accumulated over the epoch.

    Same arguments as :class:`Dice`; default name ``"iou"``.
    """

    def __init__(self, threshold: float = 0.5, num_classes: int = 1, name: str = "iou", dtype=None):
        super().__init__(threshold=threshold, num_classes=num_classes, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn = (_foreground(v, self.num_classes) for v in (self.tp, self.fp, self.fn))
        return _mean_ratio(tp, tp + fp + fn)


@keras.saving.register_keras_serializable(package="Functions")
class MeanDice(keras.metrics.Metric):
    """Per-image Dice averaged over every image of the epoch.

    Accumulates the sum of per-image Dice values and the image count.  An
    image with nothing to find and nothing predicted scores 1.0.  For
    multi-class, each image's Dice is the mean over the foreground classes
    present in that image's truth or prediction.  Same arguments as
    :class:`Dice`; default name ``"mean_dice"``.
    """

    def __init__(self, threshold: float = 0.5, num_classes: int = 1, name: str = "mean_dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1 (1 = binary sigmoid output), got {num_classes}")
        self.threshold = float(threshold)
        self.num_classes = int(num_classes)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = hard_masks(y_true, y_pred, num_classes=self.num_classes, threshold=self.threshold)
        w = _pixel_weights(sample_weight, t)
        tp, fp, fn = confusion_counts(t, p, w, axis=1)  # (B, K)
        tp, fp, fn = (_foreground(v, self.num_classes) for v in (tp, fp, fn))
        per_image = _mean_ratio(2.0 * tp, 2.0 * tp + fp + fn)  # (B,)
        image_w = ops.ones_like(per_image) if w is None else ops.mean(w, axis=(1, 2))
        self.total.assign_add(ops.sum(per_image * image_w))
        self.count.assign_add(ops.sum(image_w))

    def result(self):
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1e-12), 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold, num_classes=self.num_classes)
        return config


def segmentation_metrics(num_classes: int = 1, threshold: float = 0.5) -> list[keras.metrics.Metric]:
    """``[Dice, IoU, MeanDice]`` (names ``dice``, ``iou``, ``mean_dice``) for ``model.compile``.

    ``num_classes=1`` for a sigmoid output; ``C >= 2`` for a softmax output
    (argmax prediction, foreground classes 1..C-1 averaged).
    """
    return [
        Dice(threshold=threshold, num_classes=num_classes),
        IoU(threshold=threshold, num_classes=num_classes),
        MeanDice(threshold=threshold, num_classes=num_classes),
    ]
