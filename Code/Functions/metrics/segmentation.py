"""Segmentation evaluation in NumPy: overlap, boundary and distance measures.

Everything here works on plain arrays, one image at a time, and is meant to be
exact (no thresholds hidden inside, no averaging of ratios across images
unless you ask for it).  Keras metrics that stream over an epoch live in
:mod:`Functions.keras_metrics`; these are the reference they are tested against.

Inputs
------
* Binary functions take two arrays of the same shape (``(H, W)``, or any
  number of dimensions): the truth and the prediction.  A pixel is foreground
  when it is non-zero (``bool``, ``0/1`` or ``0/255`` masks all work).
  Threshold probabilities yourself first (``prob >= 0.5``).
* Multi-class functions take two integer label maps of the same shape with
  values in ``0 .. num_classes - 1``; class 0 is the background.

Conventions (all tested in ``tests/test_metrics.py``)
-----------------------------------------------------
Confusion counts
    ``tp``, ``fp``, ``fn``, ``tn`` count pixels; precision = tp/(tp+fp),
    recall (sensitivity) = tp/(tp+fn), specificity = tn/(tn+fp),
    dice (F1) = 2tp/(2tp+fp+fn), iou (Jaccard) = tp/(tp+fp+fn),
    pixel accuracy = (tp+tn)/all pixels.
Empty masks (a ratio whose denominator is 0)
    The ratio is **1.0 when truth and prediction are identical** (e.g. both
    empty: nothing to find and nothing found) and **0.0 otherwise** (e.g. an
    empty prediction for a non-empty truth has precision 0, a non-empty
    prediction for an empty truth has recall 0).  This applies to dice, iou,
    precision, recall, specificity and boundary F1 alike.
Boundary of a mask
    The mask minus its binary erosion by the 4-connected cross (the 3x3
    "plus" in 2-D; ``scipy.ndimage.generate_binary_structure(ndim, 1)`` in
    general).  Pixels outside the image count as background, so a mask pixel
    on the image edge is a boundary pixel (scipy ``border_value=0``, as MONAI).
Surface distances
    For every boundary pixel of one mask, the exact Euclidean distance to the
    nearest boundary pixel of the other mask (``scipy.ndimage.
    distance_transform_edt``), in both directions.  Distances are in pixels,
    or in physical units when ``spacing`` (one number, or one per axis, e.g.
    ``(row_mm, col_mm)``) is given.
Hausdorff distance, HD95 and ASSD
    Hausdorff = the larger of the two directed maxima.  HD95 = the larger of
    the two directed 95th percentiles (``numpy.percentile`` with its default
    linear interpolation), as MONAI's ``compute_hausdorff_distance(
    percentile=95)``.  ASSD = the mean of all distances of both directions
    pooled together (as MONAI's ``compute_average_surface_distance(
    symmetric=True)``).  Both masks empty: 0.0.  Exactly one empty: ``inf``
    (no finite distance exists); :func:`summarize` reports how many finite
    values went into each summary.
Boundary F1 (Csurka et al., BMVC 2013)
    Boundary precision = share of predicted boundary pixels whose distance to
    the true boundary is ``<= tolerance``; boundary recall = share of true
    boundary pixels within ``tolerance`` of the predicted boundary; boundary
    F1 = their harmonic mean (0 when both are 0).  ``tolerance`` is in the
    same unit as the distances (pixels by default, 2 px).

Example
-------
>>> import numpy as np
>>> t = np.zeros((4, 4), bool); t[1:3, 1:3] = True
>>> p = np.zeros((4, 4), bool); p[1:3, 1:4] = True
>>> round(dice(t, p), 4), round(iou(t, p), 4)
(0.8, 0.6667)
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Per-image columns written by ``python -m Functions evaluate`` (after ``image``).
METRIC_COLUMNS = [
    "dice", "iou", "precision", "recall", "specificity",
    "pixel_accuracy", "boundary_f1", "hd95", "assd",
]

#: Keys of :func:`binary_metrics`.
BINARY_KEYS = [
    "dice", "iou", "precision", "recall", "specificity",
    "pixel_accuracy", "boundary_f1", "hausdorff", "hd95", "assd",
]

# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------
def _as_pair(true, pred) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean arrays of one shape (non-zero = foreground)."""
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {t.shape} vs {p.shape}")
    if t.ndim == 0:
        raise ValueError("truth and prediction must be arrays with at least one dimension")
    return t.astype(bool, copy=False), p.astype(bool, copy=False)


def _ratio(num: float, den: float, identical: bool) -> float:
    """``num / den``; a 0/0 is 1.0 when the masks are identical, else 0.0."""
    if den == 0:
        return 1.0 if identical else 0.0
    return float(num) / float(den)


def confusion(true, pred) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of two binary masks of one shape."""
    t, p = _as_pair(true, pred)
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    tn = int(t.size - tp - fp - fn)
    return tp, fp, fn, tn


# ----------------------------------------------------------------------------
# overlap measures (binary)
# ----------------------------------------------------------------------------
def dice(true, pred) -> float:
    """Dice coefficient (F1): ``2tp / (2tp + fp + fn)``; both empty -> 1.0."""
    tp, fp, fn, _ = confusion(true, pred)
    return _ratio(2 * tp, 2 * tp + fp + fn, fp + fn == 0)


def iou(true, pred) -> float:
    """Intersection over union (Jaccard): ``tp / (tp + fp + fn)``; both empty -> 1.0."""
    tp, fp, fn, _ = confusion(true, pred)
    return _ratio(tp, tp + fp + fn, fp + fn == 0)


jaccard = iou
f1 = dice


def precision(true, pred) -> float:
    """``tp / (tp + fp)``; empty prediction -> 1.0 if the truth is empty too, else 0.0."""
    tp, fp, fn, _ = confusion(true, pred)
    return _ratio(tp, tp + fp, fp + fn == 0)


def recall(true, pred) -> float:
    """Recall (sensitivity) ``tp / (tp + fn)``; empty truth -> 1.0 if the prediction is empty too, else 0.0."""
    tp, fp, fn, _ = confusion(true, pred)
    return _ratio(tp, tp + fn, fp + fn == 0)


sensitivity = recall


def specificity(true, pred) -> float:
    """``tn / (tn + fp)``; a truth with no background -> 1.0 if the prediction has none either, else 0.0."""
    _, fp, fn, tn = confusion(true, pred)
    return _ratio(tn, tn + fp, fp + fn == 0)


def pixel_accuracy(true, pred) -> float:
    """Share of pixels whose value agrees (binary masks or integer label maps)."""
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {t.shape} vs {p.shape}")
    if t.dtype == bool or p.dtype == bool:
        t, p = t.astype(bool), p.astype(bool)
    return float(np.mean(t == p)) if t.size else 1.0


# ----------------------------------------------------------------------------
# boundaries and distances
# ----------------------------------------------------------------------------
def boundary(mask) -> np.ndarray:
    """Boundary pixels of a binary mask: the mask minus its erosion by the 4-connected cross.

    Pixels outside the image count as background (``border_value=0``), so mask
    pixels on the image edge are boundary pixels.  Returns a bool array of the
    mask's shape.
    """
    from scipy import ndimage

    m = np.asarray(mask).astype(bool)
    if not m.any():
        return m.copy()
    cross = ndimage.generate_binary_structure(m.ndim, 1)
    eroded = ndimage.binary_erosion(m, structure=cross, border_value=0)
    return m & ~eroded


def _sampling(spacing, ndim: int):
    if spacing is None:
        return None
    s = np.atleast_1d(np.asarray(spacing, dtype=float))
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"spacing must be one positive number or {ndim} of them, got {spacing!r}")
    return tuple(float(v) for v in s)


def _distance_to(edges: np.ndarray, sampling) -> np.ndarray:
    """Euclidean distance from every pixel to the nearest ``True`` pixel of ``edges``."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(~edges, sampling=sampling)


def surface_distances(true, pred, *, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances ``(pred_to_true, true_to_pred)``.

    ``pred_to_true[i]`` is the distance from the i-th boundary pixel of the
    prediction (row-major order) to the nearest boundary pixel of the truth;
    ``true_to_pred`` the converse.  When one mask is empty its array is empty
    and the other is all ``inf``; both empty gives two empty arrays.
    """
    t, p = _as_pair(true, pred)
    sampling = _sampling(spacing, t.ndim)
    bt, bp = boundary(t), boundary(p)
    nt, np_ = int(bt.sum()), int(bp.sum())
    if nt == 0 or np_ == 0:
        return np.full(np_, np.inf), np.full(nt, np.inf)
    return _distance_to(bt, sampling)[bp], _distance_to(bp, sampling)[bt]


def _directed_stat(d: np.ndarray, percentile: float | None) -> float:
    if percentile is None:
        return float(np.max(d))
    return float(np.percentile(d, percentile))


def _hausdorff_from(d_pt: np.ndarray, d_tp: np.ndarray, percentile: float | None) -> float:
    """Hausdorff distance from :func:`surface_distances`' arrays: both empty -> 0.0, one empty -> inf."""
    if d_pt.size == 0 and d_tp.size == 0:
        return 0.0
    if d_pt.size == 0 or d_tp.size == 0:
        return float("inf")
    return max(_directed_stat(d_pt, percentile), _directed_stat(d_tp, percentile))


def _assd_from(d_pt: np.ndarray, d_tp: np.ndarray) -> float:
    """ASSD from :func:`surface_distances`' arrays: both empty -> 0.0, one empty -> inf."""
    if d_pt.size == 0 and d_tp.size == 0:
        return 0.0
    if d_pt.size == 0 or d_tp.size == 0:
        return float("inf")
    return float((d_pt.sum() + d_tp.sum()) / (d_pt.size + d_tp.size))


def _boundary_f1_from(d_pt: np.ndarray, d_tp: np.ndarray, tolerance: float) -> float:
    """Boundary F1 from :func:`surface_distances`' arrays: both empty -> 1.0, one empty -> 0.0."""
    if d_pt.size == 0 and d_tp.size == 0:
        return 1.0
    if d_pt.size == 0 or d_tp.size == 0:
        return 0.0
    bp = float(np.mean(d_pt <= tolerance))
    br = float(np.mean(d_tp <= tolerance))
    return 0.0 if bp + br == 0 else 2 * bp * br / (bp + br)


def hausdorff_distance(true, pred, *, percentile: float | None = None, spacing=None) -> float:
    """Symmetric Hausdorff distance between the mask boundaries.

    ``percentile=None``: the classic (maximum) Hausdorff distance.  A number
    ``q`` in [0, 100]: the larger of the two directed ``q``-th percentiles
    (``q=95`` gives HD95).  Both masks empty -> 0.0; exactly one empty -> inf.
    """
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    return _hausdorff_from(*surface_distances(true, pred, spacing=spacing), percentile)


def hd95(true, pred, *, spacing=None) -> float:
    """95th-percentile Hausdorff distance (see :func:`hausdorff_distance`)."""
    return hausdorff_distance(true, pred, percentile=95, spacing=spacing)


def assd(true, pred, *, spacing=None) -> float:
    """Average symmetric surface distance: the mean of both directions' distances pooled.

    Both masks empty -> 0.0; exactly one empty -> inf.
    """
    return _assd_from(*surface_distances(true, pred, spacing=spacing))


def boundary_f1(true, pred, *, tolerance: float = 2.0, spacing=None) -> float:
    """Boundary F1 score (Csurka et al. 2013) with a distance tolerance.

    Boundary precision: share of predicted boundary pixels at Euclidean
    distance ``<= tolerance`` from the true boundary; boundary recall: share
    of true boundary pixels within ``tolerance`` of the predicted boundary.
    Returns their harmonic mean.  Both masks empty -> 1.0; exactly one
    empty -> 0.0.  ``tolerance`` is in pixels, or in the unit of ``spacing``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return _boundary_f1_from(*surface_distances(true, pred, spacing=spacing), tolerance)


# ----------------------------------------------------------------------------
# all at once
# ----------------------------------------------------------------------------
def binary_metrics(true, pred, *, spacing=None, tolerance: float = 2.0, roi=None) -> dict[str, float]:
    """Every binary measure of one image.

    Parameters: ``true``, ``pred`` - masks of one shape (non-zero = foreground);
    ``spacing`` - pixel size (one number or one per axis) for physical
    distances; ``tolerance`` - boundary F1 tolerance in the distance unit.

    Returns a dict with keys ``dice, iou, precision, recall, specificity,
    pixel_accuracy, boundary_f1, hausdorff, hd95, assd`` (floats; distances may
    be ``inf`` when exactly one mask is empty - see the module docstring).

    ``roi`` (a mask of the same shape, non-zero = inside; e.g. DRIVE's field of view): only the pixels inside
    count - the overlap measures and pixel accuracy on those pixels alone, the boundary measures on both masks
    cut to the region.
    """
    t, p = _as_pair(true, pred)
    if roi is not None:
        r = np.asarray(roi).astype(bool)
        if r.shape != t.shape:
            raise ValueError(f"roi and masks differ in shape: {r.shape} vs {t.shape}")
        t, p = t & r, p & r
        tp, fp, fn, _ = confusion(t, p)
        tn = int(r.sum()) - tp - fp - fn
        size = int(r.sum())
    else:
        tp, fp, fn, tn = confusion(t, p)
        size = t.size
    same = fp + fn == 0
    d_pt, d_tp = surface_distances(t, p, spacing=spacing)   # one pass for all boundary measures
    out = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, same),
        "iou": _ratio(tp, tp + fp + fn, same),
        "precision": _ratio(tp, tp + fp, same),
        "recall": _ratio(tp, tp + fn, same),
        "specificity": _ratio(tn, tn + fp, same),
        "pixel_accuracy": (tp + tn) / size if size else 1.0,
        "boundary_f1": _boundary_f1_from(d_pt, d_tp, tolerance),
        "hausdorff": _hausdorff_from(d_pt, d_tp, None),
        "hd95": _hausdorff_from(d_pt, d_tp, 95),
        "assd": _assd_from(d_pt, d_tp),
    }
    return {k: float(out[k]) for k in BINARY_KEYS}


# ----------------------------------------------------------------------------
# multi-class
# ----------------------------------------------------------------------------
_PER_CLASS = ["dice", "iou", "precision", "recall", "specificity", "boundary_f1", "hausdorff", "hd95", "assd"]


def _check_labels(true, pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {t.shape} vs {p.shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for multi-class metrics, got {num_classes}")
    for name, a in (("truth", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes or not np.all(a == np.round(a))):
            raise ValueError(f"{name} must hold integer labels in 0..{num_classes - 1}")
    return t.astype(np.int64), p.astype(np.int64)


def _classes(num_classes: int, include_background: bool) -> list[int]:
    return list(range(0 if include_background else 1, num_classes))


def mean_iou(true, pred, num_classes: int, *, include_background: bool = True) -> float:
    """Mean of per-class IoU over the classes present in the truth or the prediction.

    Classes absent from both are left out (as ``keras.metrics.MeanIoU``); if
    no class is present at all the result is 1.0.
    """
    t, p = _check_labels(true, pred, num_classes)
    vals = [iou(t == c, p == c) for c in _classes(num_classes, include_background)
            if np.any(t == c) or np.any(p == c)]
    return float(np.mean(vals)) if vals else 1.0


def mean_pixel_accuracy(true, pred, num_classes: int, *, include_background: bool = True) -> float:
    """Per-class recall (share of each class's pixels labelled right) averaged over classes in the truth.

    Classes absent from the truth have no recall and are left out; if none is
    present the result is 1.0 when the prediction has none of them either, else 0.0.
    """
    t, p = _check_labels(true, pred, num_classes)
    classes = _classes(num_classes, include_background)
    vals = [recall(t == c, p == c) for c in classes if np.any(t == c)]
    if vals:
        return float(np.mean(vals))
    return 1.0 if not any(np.any(p == c) for c in classes) else 0.0


def multiclass_metrics(
    true,
    pred,
    num_classes: int,
    *,
    include_background: bool = False,
    spacing=None,
    tolerance: float = 2.0,
) -> dict[str, float]:
    """Per-class and mean measures of one integer label map.

    ``true``, ``pred``: integer arrays of one shape with values in
    ``0 .. num_classes-1`` (0 = background).  Each class ``c`` is scored as a
    binary mask ``label == c`` with :func:`binary_metrics`; keys are
    ``<measure>_<c>`` (``dice_1``, ``hd95_2``, ...) for measures ``dice, iou,
    precision, recall, specificity, boundary_f1, hausdorff, hd95, assd``.

    Means (``mean_dice``, ``mean_iou``, ``mean_hd95``, ...) average the
    classes considered (class 0 only with ``include_background=True``) that
    are present in the truth or the prediction; classes absent from both are
    left out (if none is present, all considered classes are averaged, which
    gives the perfect values).  ``mean_pixel_accuracy`` averages per-class
    recall over considered classes present in the truth.
    ``pixel_accuracy`` is the share of all pixels with the right label.

    Macro and micro means (documented convention for empty classes)
        ``macro_dice`` / ``macro_iou`` follow MONAI's ``ignore_empty=True``:
        a class whose **truth** is empty in this image is excluded from the
        mean, whatever the prediction holds (so the mean measures how well
        present classes are segmented; a false alarm of an absent class shows
        in ``micro_*``, ``precision_<c>`` and the confusion matrix instead).
        If no considered class is present in the truth the macro means are
        1.0 when the prediction holds none of them either, else 0.0.
        ``micro_dice`` / ``micro_iou`` pool the pixel counts ``tp, fp, fn``
        of the considered classes before dividing (empty convention as for
        binary masks).
    """
    t, p = _check_labels(true, pred, num_classes)
    classes = _classes(num_classes, include_background)
    out: dict[str, float] = {}
    per: dict[int, dict[str, float]] = {}
    for c in classes:
        per[c] = binary_metrics(t == c, p == c, spacing=spacing, tolerance=tolerance)
        for k in _PER_CLASS:
            out[f"{k}_{c}"] = per[c][k]
    present = [c for c in classes if np.any(t == c) or np.any(p == c)] or classes
    for k in _PER_CLASS:
        out[f"mean_{k}"] = float(np.mean([per[c][k] for c in present])) if present else 1.0
    out["pixel_accuracy"] = pixel_accuracy(t, p)
    out["mean_pixel_accuracy"] = mean_pixel_accuracy(t, p, num_classes, include_background=include_background)
    out.update(macro_micro(t, p, num_classes, include_background=include_background))
    return out


def macro_micro(true, pred, num_classes: int, *, include_background: bool = False) -> dict[str, float]:
    """``{macro_dice, macro_iou, micro_dice, micro_iou}`` of one label map (conventions in
    :func:`multiclass_metrics`)."""
    t, p = _check_labels(true, pred, num_classes)
    classes = _classes(num_classes, include_background)
    cm = confusion_matrix(t, p, num_classes)
    tp = np.array([cm[c, c] for c in classes], np.float64)
    fn = np.array([cm[c, :].sum() - cm[c, c] for c in classes], np.float64)
    fp = np.array([cm[:, c].sum() - cm[c, c] for c in classes], np.float64)
    present = (tp + fn) > 0
    out = {}
    if present.any():
        out["macro_dice"] = float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))
        out["macro_iou"] = float(np.mean(tp[present] / (tp[present] + fp[present] + fn[present])))
    else:
        out["macro_dice"] = out["macro_iou"] = 1.0 if fp.sum() == 0 else 0.0
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    out["micro_dice"] = _ratio(2 * TP, 2 * TP + FP + FN, FP + FN == 0)
    out["micro_iou"] = _ratio(TP, TP + FP + FN, FP + FN == 0)
    return out


def confusion_matrix(true, pred, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix ``(K, K)`` int64: ``[i, j]`` = pixels of true class ``i`` predicted ``j``."""
    t, p = _check_labels(true, pred, num_classes)
    return np.bincount(t.ravel() * num_classes + p.ravel(), minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


# ----------------------------------------------------------------------------
# many images
# ----------------------------------------------------------------------------
def per_image_metrics(
    trues: Iterable,
    preds: Iterable,
    names: Sequence[str] | None = None,
    *,
    num_classes: int | None = None,
    spacing=None,
    tolerance: float = 2.0,
    include_background: bool = False,
    rois: Sequence | None = None,
):
    """One row per image: a :class:`pandas.DataFrame` whose first column is ``image``.

    ``trues``, ``preds``: sequences (or stacked arrays ``(N, H, W)``) of masks.
    ``names``: image names (default ``"0"``, ``"1"``, ...).
    ``num_classes`` None or 2 (binary masks, non-zero = foreground): columns
    :data:`METRIC_COLUMNS`.  ``num_classes`` >= 3 (integer label maps): the
    keys of :func:`multiclass_metrics`.  ``spacing``, ``tolerance`` and
    ``include_background`` are passed on.  ``rois``: one region-of-interest mask (or ``None``) per image for
    binary masks (:func:`binary_metrics` ``roi``: only pixels inside count).
    """
    import pandas as pd

    trues, preds = list(trues), list(preds)
    if len(trues) != len(preds):
        raise ValueError(f"{len(trues)} truths but {len(preds)} predictions")
    if names is None:
        names = [str(i) for i in range(len(trues))]
    names = [str(n) for n in names]
    if len(names) != len(trues):
        raise ValueError(f"{len(names)} names for {len(trues)} images")
    rois = list(rois) if rois is not None else [None] * len(trues)
    if len(rois) != len(trues):
        raise ValueError(f"{len(rois)} regions of interest for {len(trues)} images")
    rows = []
    for name, t, p, r in zip(names, trues, preds, rois):
        if num_classes is None or num_classes <= 2:
            m = binary_metrics(t, p, spacing=spacing, tolerance=tolerance, roi=r)
            row = {k: m[k] for k in METRIC_COLUMNS}
        else:
            row = multiclass_metrics(t, p, num_classes, include_background=include_background,
                                     spacing=spacing, tolerance=tolerance)
        rows.append({"image": name, **row})
    columns = ["image"] + (list(rows[0].keys())[1:] if rows else METRIC_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


def summarize(df):
    """Mean, standard deviation (n-1) and median of every numeric column.

    Returns a DataFrame with one column per metric and the rows ``mean``,
    ``std``, ``median`` and ``n`` (so ``summary.loc["mean", "dice"]``).
    ``n`` counts the finite values used: an ``inf`` distance from an image
    with exactly one empty mask is left out, so ``n`` below the number of
    images flags such images.  ``std`` needs two values (else NaN).
    """
    import pandas as pd

    numeric = df.select_dtypes(include="number")
    cols = {}
    for col in numeric.columns:
        v = numeric[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        cols[col] = [
            float(np.mean(v)) if v.size else float("nan"),
            float(np.std(v, ddof=1)) if v.size > 1 else float("nan"),
            float(np.median(v)) if v.size else float("nan"),
            float(v.size),
        ]
    return pd.DataFrame(cols, index=["mean", "std", "median", "n"], columns=list(numeric.columns))


def lowest_dice(table, n: int) -> list[int]:
    """Row positions of the ``n`` lowest-Dice rows of ``table``, lowest first (ties in table order); ``[]``
    without a ``dice`` column."""
    if "dice" not in table or not len(table) or n <= 0:
        return []
    return [int(i) for i in np.argsort(table["dice"].to_numpy(dtype=float), kind="stable")[:n]]
