"""Segmentation losses on ``keras.ops``: BCE, soft Dice, BCE + Dice, Jaccard, focal, Tversky, focal Tversky.

Each loss is a pure function ``f(y_true, y_pred, **params) -> (B,)`` (one
value per image) plus a thin serializable :class:`keras.losses.Loss` class
that averages those values over the batch.  Pick one by name with
:func:`get_loss` (``train --loss NAME`` does); :func:`available_losses`
lists the names.

Shapes
------
``y_pred``: ``(B, H, W, C)`` probabilities (any number of spatial axes) -
sigmoid output for ``C == 1`` (binary), softmax output for ``C > 1``
(multi-class).  ``y_true``: binary ``(B, H, W, 1)`` or ``(B, H, W)`` with
values 0/1; multi-class either one-hot ``(B, H, W, C)`` or integer labels
``(B, H, W, 1)`` / ``(B, H, W)`` (told apart by the last dimension's size).

Numerics
--------
Everything is computed in float32, also when the model runs in mixed
precision (``y_pred`` is cast first).  Probabilities are clipped to
``[eps, 1 - eps]`` (``eps = 1e-7``) before any logarithm or power, so every
loss is finite with finite gradients, also on all-zero and all-one masks.

Overlap losses (Dice, Jaccard, Tversky, focal Tversky) are *soft*: they use
the probabilities, are computed per image and per class, averaged over the
classes (for multi-class, ``include_background`` decides whether class 0
counts), then averaged over the batch.  ``smooth`` (default 1.0) is added to
numerator and denominator: an image with an empty truth and an empty
prediction then scores a perfect overlap of 1 (loss 0) instead of 0/0, and
the gradient stays finite.

Multi-class (softmax, ``C > 1``) and class weights
--------------------------------------------------
``cce`` is the (sparse) categorical cross-entropy: integer label maps
``(B, H, W)``/``(B, H, W, 1)`` or one-hot targets, ``-sum_c w_c t_c log p_c``
per pixel, averaged over the pixels.  ``class_weights`` (one number per class,
default all 1) is accepted by ``cce``, ``cce_dice``, ``dice`` and ``focal``:
in cross-entropy and focal loss each pixel is weighted by its true class's
weight (focal's ``alpha`` is then ignored for multi-class); in Dice the
per-class scores are averaged with the weights (normalised to sum 1 over the
classes counted).  ``class_weights`` must have ``C`` entries.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "available_losses", "get_loss",
    "bce", "dice_loss", "bce_dice_loss", "jaccard_loss", "focal_loss", "tversky_loss", "focal_tversky_loss",
    "categorical_crossentropy", "cce_dice_loss",
    "BCE", "DiceLoss", "BCEDiceLoss", "JaccardLoss", "FocalLoss", "TverskyLoss", "FocalTverskyLoss",
    "CategoricalCrossentropy", "CCEDiceLoss",
]

#: Clip for probabilities before logs and powers.
EPSILON = 1e-7


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------
def prepare(y_true, y_pred):
    """Return ``(y_true, y_pred)`` as float32 tensors of ``y_pred``'s shape ``(B, ..., C)``.

    Binary (``C == 1``): ``y_true`` is reshaped to ``(B, ..., 1)``.
    Multi-class: one-hot ``y_true`` is kept, integer labels are one-hot encoded.
    """
    y_pred = ops.cast(y_pred, "float32")
    n_channels = y_pred.shape[-1]
    if n_channels is None:
        raise ValueError("y_pred must have a known channel (last) dimension")
    if n_channels == 1:
        y_true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(y_pred))
        return y_true, y_pred
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == n_channels:
        return ops.cast(y_true, "float32"), y_pred
    labels = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
    if len(y_true.shape) == len(y_pred.shape):  # (B, ..., 1) integer labels
        labels = ops.squeeze(labels, axis=-1)
    return ops.one_hot(labels, n_channels, dtype="float32"), y_pred


def _clip(p):
    return ops.clip(p, EPSILON, 1.0 - EPSILON)


def _spatial_axes(x):
    """Axes between batch and channels."""
    return tuple(range(1, len(x.shape) - 1))


def _class_mean(per_class, include_background: bool, class_weights=None):
    """``(B, C) -> (B,)``; drop class 0 for multi-class without background; weighted by ``class_weights``."""
    weights = _weights(class_weights, per_class.shape[-1])
    if per_class.shape[-1] > 1 and not include_background:
        per_class = per_class[:, 1:]
        weights = None if weights is None else weights[1:]
    if weights is None:
        return ops.mean(per_class, axis=-1)
    return ops.sum(per_class * weights, axis=-1) / ops.sum(weights)


def _weights(class_weights, n_classes):
    """``class_weights`` as a float32 tensor ``(C,)``, or None."""
    if class_weights is None:
        return None
    w = [float(v) for v in class_weights]
    if len(w) != n_classes:
        raise ValueError(f"class_weights has {len(w)} entries but the model predicts {n_classes} classes")
    if any(v < 0 for v in w) or sum(w) <= 0:
        raise ValueError(f"class_weights must be >= 0 with a positive sum, got {w}")
    return ops.convert_to_tensor(w, dtype="float32")


def _soft_counts(y_true, y_pred):
    """Soft ``(tp, fp, fn)`` per image and class, shape ``(B, C)``."""
    axes = _spatial_axes(y_pred)
    tp = ops.sum(y_true * y_pred, axis=axes)
    fp = ops.sum((1.0 - y_true) * y_pred, axis=axes)
    fn = ops.sum(y_true * (1.0 - y_pred), axis=axes)
    return tp, fp, fn


def _pixel_mean(x):
    """Mean over every axis but the batch: ``(B, ...) -> (B,)``."""
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


# ----------------------------------------------------------------------------
# pure functions: (y_true, y_pred) -> (B,)
# ----------------------------------------------------------------------------
def bce(y_true, y_pred):
    """Cross-entropy per image (mean over pixels).

    Binary: ``-[t log p + (1-t) log(1-p)]``.  Multi-class (softmax): the
    categorical cross-entropy ``-sum_c t_c log p_c``.
    """
    t, p = prepare(y_true, y_pred)
    p = _clip(p)
    if p.shape[-1] == 1:
        ce = -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))
    else:
        ce = -ops.sum(t * ops.log(p), axis=-1)
    return _pixel_mean(ce)


def dice_loss(y_true, y_pred, *, smooth: float = 1.0, include_background: bool = True, class_weights=None):
    """Soft Dice loss ``1 - (2 sum tp + s) / (sum t + sum p + s)`` per image and class, class-averaged
    (weighted by ``class_weights`` when given)."""
    t, p = prepare(y_true, y_pred)
    tp, fp, fn = _soft_counts(t, p)
    score = (2.0 * tp + smooth) / (2.0 * tp + fp + fn + smooth)
    return 1.0 - _class_mean(score, include_background, class_weights)


def categorical_crossentropy(y_true, y_pred, *, class_weights=None):
    """(Sparse) categorical cross-entropy per image: mean over pixels of ``-w_t log p_t``.

    ``y_true``: integer labels ``(B, H, W)``/``(B, H, W, 1)`` or one-hot
    ``(B, H, W, C)``; ``y_pred``: softmax ``(B, H, W, C)``.  For ``C == 1``
    this is the binary cross-entropy (weights: ``[w_background, w_foreground]``).
    """
    t, p = prepare(y_true, y_pred)
    p = _clip(p)
    if p.shape[-1] == 1:
        w = _weights(class_weights, 2)
        ce = -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))
        if w is not None:
            ce = ce * (w[0] * (1.0 - t) + w[1] * t)
        return _pixel_mean(ce)
    w = _weights(class_weights, p.shape[-1])
    tw = t if w is None else t * w
    return _pixel_mean(-ops.sum(tw * ops.log(p), axis=-1))


def cce_dice_loss(y_true, y_pred, *, dice_weight: float = 1.0, smooth: float = 1.0,
                  include_background: bool = True, class_weights=None):
    """``categorical_crossentropy + dice_weight * dice_loss`` per image (both class-weighted)."""
    return categorical_crossentropy(y_true, y_pred, class_weights=class_weights) + dice_weight * dice_loss(
        y_true, y_pred, smooth=smooth, include_background=include_background, class_weights=class_weights)


def bce_dice_loss(y_true, y_pred, *, dice_weight: float = 1.0, smooth: float = 1.0,
                  include_background: bool = True):
    """``bce + dice_weight * dice_loss`` per image."""
    return bce(y_true, y_pred) + dice_weight * dice_loss(
        y_true, y_pred, smooth=smooth, include_background=include_background
    )


def jaccard_loss(y_true, y_pred, *, smooth: float = 1.0, include_background: bool = True):
    """Soft Jaccard (IoU) loss ``1 - (sum tp + s) / (sum tp + sum fp + sum fn + s)``."""
    t, p = prepare(y_true, y_pred)
    tp, fp, fn = _soft_counts(t, p)
    score = (tp + smooth) / (tp + fp + fn + smooth)
    return 1.0 - _class_mean(score, include_background)


def focal_loss(y_true, y_pred, *, alpha: float = 0.25, gamma: float = 2.0, class_weights=None):
    """Focal loss (Lin et al. 2017) per image (mean over pixels).

    Binary: ``-alpha t (1-p)^gamma log p - (1-alpha)(1-t) p^gamma log(1-p)``.
    Multi-class: ``-alpha sum_c t_c (1-p_c)^gamma log p_c``, or with
    ``class_weights`` ``-sum_c w_c t_c (1-p_c)^gamma log p_c`` (``alpha``
    unused).  ``gamma=0`` and ``alpha=0.5`` give half the cross-entropy.
    """
    t, p = prepare(y_true, y_pred)
    p = _clip(p)
    if p.shape[-1] == 1:
        pos = alpha * t * ops.power(1.0 - p, gamma) * ops.log(p)
        neg = (1.0 - alpha) * (1.0 - t) * ops.power(p, gamma) * ops.log(1.0 - p)
        fl = -(pos + neg)
    else:
        w = _weights(class_weights, p.shape[-1])
        tw = alpha * t if w is None else t * w
        fl = -ops.sum(tw * ops.power(1.0 - p, gamma) * ops.log(p), axis=-1)
    return _pixel_mean(fl)


def tversky_index(y_true, y_pred, *, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0):
    """Soft Tversky index ``(tp + s) / (tp + alpha fp + beta fn + s)`` per image and class ``(B, C)``.

    ``alpha`` weighs false positives, ``beta`` false negatives;
    ``alpha = beta = 0.5`` is the soft Dice, ``alpha = beta = 1`` the soft Jaccard.
    """
    t, p = prepare(y_true, y_pred)
    tp, fp, fn = _soft_counts(t, p)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def tversky_loss(y_true, y_pred, *, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0,
                 include_background: bool = True):
    """Tversky loss (Salehi et al. 2017): ``1 - class-mean Tversky index`` per image."""
    ti = tversky_index(y_true, y_pred, alpha=alpha, beta=beta, smooth=smooth)
    return 1.0 - _class_mean(ti, include_background)


def focal_tversky_loss(y_true, y_pred, *, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75,
                       smooth: float = 1.0, include_background: bool = True):
    """Focal Tversky loss (Abraham & Khan 2019): class mean of ``(1 - TI)^gamma`` per image.

    ``gamma < 1`` focuses on hard images (as the paper's ``1/gamma = 0.75``).
    ``1 - TI`` is floored at ``eps`` before the power so the gradient stays
    finite on a perfect prediction.
    """
    ti = tversky_index(y_true, y_pred, alpha=alpha, beta=beta, smooth=smooth)
    per_class = ops.power(ops.maximum(1.0 - ti, EPSILON), gamma)
    return _class_mean(per_class, include_background)


# ----------------------------------------------------------------------------
# serializable classes
# ----------------------------------------------------------------------------
def outside_roi_as_truth(y_true, y_pred, weight):
    """``(y_true, y_pred)`` prepared (:func:`prepare`) with the prediction replaced by the truth where the
    per-pixel ``weight`` ``(B, ..., 1)`` is 0 (outside a region of interest such as DRIVE's field of view).

    Every loss here then ignores those pixels: their prediction no longer reaches the loss, so they give no
    gradient, and a pixel whose prediction equals its 0/1 truth adds (almost exactly) nothing to cross-entropy and
    nothing to the soft-Dice error terms.  Works for every loss of this module, per image or per pixel.
    """
    y_true, y_pred = prepare(y_true, y_pred)
    w = ops.cast(weight, "float32")
    if len(w.shape) == len(y_pred.shape) - 1:
        w = ops.expand_dims(w, -1)
    return y_true, w * y_pred + (1.0 - w) * y_true


class _SegmentationLoss(keras.losses.Loss):
    """Wraps one of the functions above; subclasses set ``fn`` and list their parameters."""

    fn = None
    params: tuple[str, ...] = ()

    def __init__(self, name: str, reduction: str = "sum_over_batch_size", dtype=None, **params):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        for key, value in params.items():
            setattr(self, key, value)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Per-image weights ``(B,)`` are Keras's own; per-pixel weights (a region of interest,
        :func:`outside_roi_as_truth`) take the pixels they zero out of the loss."""
        if sample_weight is not None and len(sample_weight.shape) > 1:
            y_true, y_pred = outside_roi_as_truth(y_true, y_pred, sample_weight)
            sample_weight = None
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **{k: getattr(self, k) for k in self.params})

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self.params})
        if "class_weights" in config and config["class_weights"] is not None:
            config["class_weights"] = [float(v) for v in config["class_weights"]]
        return config


def _tuple_or_none(values):
    return None if values is None else tuple(float(v) for v in values)


@keras.saving.register_keras_serializable(package="Functions")
class BCE(_SegmentationLoss):
    """Binary cross-entropy (categorical for softmax outputs); see :func:`bce`."""

    fn = staticmethod(bce)

    def __init__(self, name: str = "bce", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="Functions")
class DiceLoss(_SegmentationLoss):
    """Soft Dice loss per image, averaged over the batch; see :func:`dice_loss`."""

    fn = staticmethod(dice_loss)
    params = ("smooth", "include_background", "class_weights")

    def __init__(self, smooth: float = 1.0, include_background: bool = True, class_weights=None, name: str = "dice",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, smooth=float(smooth),
                         include_background=bool(include_background), class_weights=_tuple_or_none(class_weights))


@keras.saving.register_keras_serializable(package="Functions")
class BCEDiceLoss(_SegmentationLoss):
    """``bce + dice_weight * soft Dice``; see :func:`bce_dice_loss`."""

    fn = staticmethod(bce_dice_loss)
    params = ("dice_weight", "smooth", "include_background")

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0, include_background: bool = True,
                 name: str = "bce_dice", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, dice_weight=float(dice_weight),
                         smooth=float(smooth), include_background=bool(include_background))


@keras.saving.register_keras_serializable(package="Functions")
class JaccardLoss(_SegmentationLoss):
    """Soft Jaccard (IoU) loss; see :func:`jaccard_loss`."""

    fn = staticmethod(jaccard_loss)
    params = ("smooth", "include_background")

    def __init__(self, smooth: float = 1.0, include_background: bool = True, name: str = "jaccard",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, smooth=float(smooth),
                         include_background=bool(include_background))


@keras.saving.register_keras_serializable(package="Functions")
class FocalLoss(_SegmentationLoss):
    """Focal loss with ``alpha`` (positive-class weight) and ``gamma`` (focusing); see :func:`focal_loss`."""

    fn = staticmethod(focal_loss)
    params = ("alpha", "gamma", "class_weights")

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, class_weights=None, name: str = "focal",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, alpha=float(alpha), gamma=float(gamma),
                         class_weights=_tuple_or_none(class_weights))


@keras.saving.register_keras_serializable(package="Functions")
class CategoricalCrossentropy(_SegmentationLoss):
    """(Sparse) categorical cross-entropy with optional class weights; see :func:`categorical_crossentropy`."""

    fn = staticmethod(categorical_crossentropy)
    params = ("class_weights",)

    def __init__(self, class_weights=None, name: str = "cce", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, class_weights=_tuple_or_none(class_weights))


@keras.saving.register_keras_serializable(package="Functions")
class CCEDiceLoss(_SegmentationLoss):
    """Categorical cross-entropy + soft Dice, optionally class-weighted; see :func:`cce_dice_loss`."""

    fn = staticmethod(cce_dice_loss)
    params = ("dice_weight", "smooth", "include_background", "class_weights")

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0, include_background: bool = True,
                 class_weights=None, name: str = "cce_dice", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, dice_weight=float(dice_weight),
                         smooth=float(smooth), include_background=bool(include_background),
                         class_weights=_tuple_or_none(class_weights))


@keras.saving.register_keras_serializable(package="Functions")
class TverskyLoss(_SegmentationLoss):
    """Tversky loss, ``alpha`` weighs false positives and ``beta`` false negatives; see :func:`tversky_loss`."""

    fn = staticmethod(tversky_loss)
    params = ("alpha", "beta", "smooth", "include_background")

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0, include_background: bool = True,
                 name: str = "tversky", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, alpha=float(alpha), beta=float(beta),
                         smooth=float(smooth), include_background=bool(include_background))


@keras.saving.register_keras_serializable(package="Functions")
class FocalTverskyLoss(_SegmentationLoss):
    """Focal Tversky loss ``(1 - TI)^gamma``; see :func:`focal_tversky_loss`."""

    fn = staticmethod(focal_tversky_loss)
    params = ("alpha", "beta", "gamma", "smooth", "include_background")

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75, smooth: float = 1.0,
                 include_background: bool = True, name: str = "focal_tversky",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype, alpha=float(alpha), beta=float(beta),
                         gamma=float(gamma), smooth=float(smooth), include_background=bool(include_background))


_LOSSES: dict[str, type[_SegmentationLoss]] = {
    "bce": BCE,
    "dice": DiceLoss,
    "bce_dice": BCEDiceLoss,
    "jaccard": JaccardLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "cce": CategoricalCrossentropy,
    "cce_dice": CCEDiceLoss,
}

#: Other names accepted by :func:`get_loss`.
_ALIASES = {"sparse_categorical_crossentropy": "cce", "categorical_crossentropy": "cce", "sparse_cce": "cce"}


def available_losses() -> list[str]:
    """Names accepted by :func:`get_loss` (and ``train --loss``)."""
    return list(_LOSSES)


def get_loss(name: str, **kwargs) -> keras.losses.Loss:
    """A loss instance by name (``"bce"``, ``"dice"``, ``"bce_dice"``, ``"jaccard"``, ``"focal"``,
    ``"tversky"``, ``"focal_tversky"``); ``kwargs`` go to its constructor (e.g. ``alpha=0.7``).

    Raises ``ValueError`` for an unknown name or parameter, listing the valid ones.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(_LOSSES)}")
    cls = _LOSSES[key]
    allowed = set(cls.params) | {"name", "reduction", "dtype"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"loss {key!r} takes no parameter {', '.join(unknown)}; "
            f"valid: {', '.join(cls.params) or '(none)'}"
        )
    return cls(**kwargs)
