"""Per-class Keras metrics for multi-class (softmax) segmentation, exact over an epoch.

:class:`ClassDice` and :class:`ClassIoU` accumulate the pixel counts
``tp, fp, fn`` of one class ``c`` (prediction = argmax over channels) over
every batch of an epoch and divide once, like
:class:`Functions.metrics.streaming.Dice`; logged as ``dice_<c>`` /
``iou_<c>`` (``val_dice_<c>`` on validation data), they put per-class curves
into ``history.csv``.  A class absent from truth and prediction over the whole
epoch scores 1.0 (nothing to find, nothing found).

Shapes: ``y_pred`` ``(B, H, W, K)`` softmax; ``y_true`` integer labels
``(B, H, W[, 1])`` or one-hot ``(B, H, W, K)``.
"""

from __future__ import annotations

import keras
from keras import ops

from Functions.metrics.streaming import confusion_counts, hard_masks


class _ClassCounts(keras.metrics.Metric):
    """Accumulates ``tp, fp, fn`` of class ``class_id`` of a ``num_classes`` softmax output."""

    def __init__(self, class_id: int, num_classes: int, name: str | None = None, dtype=None):
        super().__init__(name=name or f"{self.prefix}_{class_id}", dtype=dtype)
        if not 0 <= int(class_id) < int(num_classes) or int(num_classes) < 2:
            raise ValueError(f"class_id must be in 0..{int(num_classes) - 1} with num_classes >= 2")
        self.class_id, self.num_classes = int(class_id), int(num_classes)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = hard_masks(y_true, y_pred, num_classes=self.num_classes)
        t, p = t[..., self.class_id:self.class_id + 1], p[..., self.class_id:self.class_id + 1]
        w = None
        if sample_weight is not None:
            w = ops.cast(sample_weight, "float32")
            w = ops.reshape(w, (-1, 1, 1)) * ops.ones_like(t) if len(w.shape) <= 1 else ops.reshape(
                w, (ops.shape(w)[0], -1, 1))
        tp, fp, fn = confusion_counts(t, p, w)
        self.tp.assign_add(ops.sum(tp))
        self.fp.assign_add(ops.sum(fp))
        self.fn.assign_add(ops.sum(fn))

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id, "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="Functions")
class ClassDice(_ClassCounts):
    """Epoch Dice ``2tp / (2tp + fp + fn)`` of one class (1.0 when the class never occurs)."""

    prefix = "dice"

    def result(self):
        den = 2.0 * self.tp + self.fp + self.fn
        return ops.where(den > 0, 2.0 * self.tp / ops.maximum(den, 1e-12), 1.0)


@keras.saving.register_keras_serializable(package="Functions")
class ClassIoU(_ClassCounts):
    """Epoch IoU ``tp / (tp + fp + fn)`` of one class (1.0 when the class never occurs)."""

    prefix = "iou"

    def result(self):
        den = self.tp + self.fp + self.fn
        return ops.where(den > 0, self.tp / ops.maximum(den, 1e-12), 1.0)


def per_class_metrics(num_classes: int) -> list:
    """``[dice_1, ..., dice_{K-1}, iou_1, ..., iou_{K-1}]`` for ``model.compile`` (foreground classes)."""
    return ([ClassDice(c, num_classes) for c in range(1, num_classes)]
            + [ClassIoU(c, num_classes) for c in range(1, num_classes)])
