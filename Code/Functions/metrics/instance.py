"""Instance and panoptic segmentation metrics on integer label maps (NumPy/SciPy only).

A *label map* is an integer array ``(H, W)`` (or any shape; both maps must
have the same shape) where 0 is background and every other value is one
object.  An object is the set of pixels carrying its value, whether or not
they are connected; labels need not be consecutive (``{0, 7, 300}`` is two
objects).

Definitions
-----------
IoU matrix
    ``iou[i, j] = |T_i & P_j| / |T_i | P_j|`` for every true object ``T_i``
    and predicted object ``P_j``, computed from one ``bincount`` of label
    pairs, so hundreds of objects cost one pass over the pixels.
Matching at threshold ``t``
    One-to-one pairs with ``iou > t`` (strictly greater, as the DSB2018
    rules state "IoU above the threshold").  For ``t >= 0.5`` a true object
    can overlap more than half of at most one prediction and vice versa, so
    the pairs above ``t`` are already unique and greedy matching is exact.
    For ``t < 0.5`` the maximum number of pairs is found by the Hungarian
    algorithm (``scipy.optimize.linear_sum_assignment``).
TP, FP, FN at ``t``
    matched pairs; predictions without a partner; true objects without one.
DSB2018 score
    ``mean over t in {0.50, 0.55, ..., 0.95} of TP / (TP + FP + FN)``, per
    image; a data set's score is the mean over images.  ``ap50``/``ap75`` are
    the single terms at ``t = 0.5`` and ``0.75`` (the DSB2018 sense of
    "average precision": label maps carry no confidence scores).
Precision / recall / F1 at 0.5
    ``TP/(TP+FP)``, ``TP/(TP+FN)``, ``2TP/(2TP+FP+FN)``.
Panoptic quality (Kirillov et al. 2019), matching at IoU > 0.5
    ``SQ = sum of matched IoUs / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``,
    ``PQ = SQ * RQ``.  One "thing" class (objects), no stuff classes.
Aggregated Jaccard index (Kumar et al. 2017)
    for every true object ``T_i`` take the prediction ``P_j`` with the
    largest IoU (lowest label on ties); add ``|T_i & P_j|`` to ``C`` and
    ``|T_i | P_j|`` to ``U``.  A true object that overlaps no prediction adds
    its area to ``U`` only.  Finally every prediction never chosen adds its
    area to ``U``.  ``AJI = C / U``.  (A prediction may be chosen by several
    true objects, as in the paper; this is the ``get_fast_aji`` of HoVer-Net.)

Empty images (documented conventions)
    * Both maps empty (no objects on either side): every ratio (``ap50``,
      ``ap75``, ``dsb_score``, precision, recall, F1, ``pq``, ``sq``, ``rq``,
      ``aji``) is **1.0** - nothing to find and nothing found is a perfect
      answer, as in the DSB2018 evaluation.
    * Objects on only one side: every ratio is **0.0** (no true positive is
      possible; precision with no predictions and recall with no true objects
      are taken as 0, not undefined).
    * ``sq`` when there are objects but no match: **0.0** (panopticapi).
"""

from __future__ import annotations

import numpy as np

#: DSB2018 IoU thresholds 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))

#: Columns of :func:`instance_table` in order (after ``image``).
INSTANCE_COLUMNS = ["n_true", "n_pred", "ap50", "ap75", "dsb_score", "precision_50", "recall_50", "f1_50",
                    "pq", "sq", "rq", "aji"]


def _check_pair(true, pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"label maps differ in shape: true {t.shape} vs predicted {p.shape}")
    for name, a in (("true", t), ("predicted", p)):
        if a.dtype == bool:
            continue
        if not np.issubdtype(a.dtype, np.integer):
            if a.size and not np.array_equal(a, np.round(a)):
                raise ValueError(f"the {name} label map holds non-integer values; pass integer labels (0 = background)")
        if a.size and a.min() < 0:
            raise ValueError(f"the {name} label map holds negative labels; labels must be >= 0 (0 = background)")
    return t, p


def _sequential(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel to 0..n keeping order; returns (relabelled int64 array, original labels of 1..n)."""
    flat = np.asarray(a).ravel().astype(np.int64)
    labels, inverse = np.unique(flat, return_inverse=True)
    if labels.size and labels[0] == 0:
        return inverse.reshape(-1).astype(np.int64), labels[1:]
    return inverse.reshape(-1).astype(np.int64) + 1, labels


def overlap_counts(true, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (true object, predicted object) pair.

    Returns ``(intersection (n_true, n_pred), true_areas (n_true,), pred_areas (n_pred,))``
    with objects ordered by label value.
    """
    t, p = _check_pair(true, pred)
    ts, tl = _sequential(t)
    ps, pl = _sequential(p)
    nt, npd = len(tl), len(pl)
    joint = np.bincount(ts * (npd + 1) + ps, minlength=(nt + 1) * (npd + 1)).reshape(nt + 1, npd + 1)
    inter = joint[1:, 1:]
    true_areas = joint[1:, :].sum(axis=1)
    pred_areas = joint[:, 1:].sum(axis=0)
    return inter, true_areas, pred_areas


def iou_matrix(true, pred) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns), ``(n_true, n_pred)`` float64."""
    inter, ta, pa = overlap_counts(true, pred)
    return _iou_from_counts(inter, ta, pa)


def _iou_from_counts(inter, ta, pa) -> np.ndarray:
    union = ta[:, None] + pa[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou.astype(np.float64)


def match(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs with ``iou > threshold``: ``(true indices, predicted indices)``.

    ``threshold >= 0.5``: every pair above it is unique, taken as is.
    Below 0.5: the maximum number of pairs (Hungarian algorithm).
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    ok = iou > threshold
    if threshold >= 0.5:
        ti, pj = np.nonzero(ok)
        return ti, pj
    from scipy.optimize import linear_sum_assignment

    # maximise the number of matches first, then the total IoU among equal counts
    cost = -(ok.astype(np.float64) * (1.0 + iou / (2.0 * max(iou.shape))))
    ti, pj = linear_sum_assignment(cost)
    keep = ok[ti, pj]
    return ti[keep], pj[keep]


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if both_empty:
        return 1.0
    return float(num / den) if den > 0 else 0.0


def matching_counts(true, pred, threshold: float = 0.5) -> dict[str, float]:
    """``tp, fp, fn`` and the matched IoUs' sum at one threshold."""
    iou = iou_matrix(true, pred)
    ti, pj = match(iou, threshold)
    tp = len(ti)
    return {"tp": tp, "fp": iou.shape[1] - tp, "fn": iou.shape[0] - tp, "iou_sum": float(iou[ti, pj].sum())}


def _score_at(iou: np.ndarray, threshold: float) -> float:
    nt, npd = iou.shape
    tp = len(match(iou, threshold)[0])
    return _ratio(tp, nt + npd - tp, nt == 0 and npd == 0)


def dsb_score(true, pred, thresholds=DSB_THRESHOLDS) -> float:
    """DSB2018 score of one image: mean of ``TP / (TP + FP + FN)`` over ``thresholds``; both empty = 1."""
    iou = iou_matrix(true, pred)
    return float(np.mean([_score_at(iou, t) for t in thresholds]))


def average_precision(true, pred, threshold: float = 0.5) -> float:
    """``TP / (TP + FP + FN)`` at one IoU threshold (DSB2018 sense); both empty = 1."""
    return _score_at(iou_matrix(true, pred), threshold)


def aji(true, pred) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017) of one image; both empty = 1."""
    inter, ta, pa = overlap_counts(true, pred)
    return _aji_from_counts(inter, ta, pa)


def _aji_from_counts(inter, ta, pa) -> float:
    nt, npd = inter.shape
    if nt == 0 and npd == 0:
        return 1.0
    if nt == 0 or npd == 0:
        return 0.0
    iou = _iou_from_counts(inter, ta, pa)
    best = np.argmax(iou, axis=1)
    rows = np.arange(nt)
    paired = iou[rows, best] > 0
    c = float(inter[rows[paired], best[paired]].sum())
    u = float((ta[paired] + pa[best[paired]] - inter[rows[paired], best[paired]]).sum())
    u += float(ta[~paired].sum())
    used = np.zeros(npd, bool)
    used[best[paired]] = True
    u += float(pa[~used].sum())
    return c / u if u > 0 else 0.0


def panoptic_quality(true, pred) -> dict[str, float]:
    """``{"pq", "sq", "rq"}`` with matching at IoU > 0.5 (one thing class)."""
    iou = iou_matrix(true, pred)
    return _pq_from_iou(iou)


def _pq_from_iou(iou: np.ndarray) -> dict[str, float]:
    nt, npd = iou.shape
    if nt == 0 and npd == 0:
        return {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    ti, pj = match(iou, 0.5)
    tp = len(ti)
    fp, fn = npd - tp, nt - tp
    sq = float(iou[ti, pj].sum() / tp) if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": sq * rq, "sq": sq, "rq": float(rq)}


def instance_metrics(true, pred) -> dict[str, float]:
    """Every instance/panoptic measure of one image.

    ``true``, ``pred``: integer label maps of one shape (0 = background).
    Returns ``{n_true, n_pred, ap50, ap75, dsb_score, precision_50, recall_50,
    f1_50, pq, sq, rq, aji}`` (counts as ints, the rest floats in [0, 1]).
    """
    inter, ta, pa = overlap_counts(true, pred)
    iou = _iou_from_counts(inter, ta, pa)
    nt, npd = iou.shape
    both_empty = nt == 0 and npd == 0
    scores = {t: _score_at(iou, t) for t in DSB_THRESHOLDS}
    tp = len(match(iou, 0.5)[0])
    out = {
        "n_true": int(nt),
        "n_pred": int(npd),
        "ap50": scores[0.5],
        "ap75": scores[0.75],
        "dsb_score": float(np.mean(list(scores.values()))),
        "precision_50": _ratio(tp, npd, both_empty),
        "recall_50": _ratio(tp, nt, both_empty),
        "f1_50": _ratio(2 * tp, nt + npd, both_empty),
    }
    out.update(_pq_from_iou(iou))
    out["aji"] = _aji_from_counts(inter, ta, pa)
    return out


def instance_table(trues, preds, names=None):
    """Per-image instance metrics as a pandas DataFrame plus a final ``mean`` row.

    Columns: ``image`` then :data:`INSTANCE_COLUMNS`.  The mean row averages
    every column over images (the DSB2018 data-set score is the mean of
    ``dsb_score``; ``n_true``/``n_pred`` are means too).
    """
    import pandas as pd

    trues, preds = list(trues), list(preds)
    if len(trues) != len(preds):
        raise ValueError(f"{len(trues)} true label maps but {len(preds)} predictions")
    names = list(names) if names is not None else [str(i) for i in range(len(trues))]
    rows = [{"image": n, **instance_metrics(t, p)} for n, t, p in zip(names, trues, preds)]
    table = pd.DataFrame(rows, columns=["image"] + INSTANCE_COLUMNS)
    if rows:
        mean = {"image": "mean", **{c: float(table[c].mean()) for c in INSTANCE_COLUMNS}}
        table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    return table


def relabel(mask, connectivity: int = 1) -> np.ndarray:
    """Connected components of a binary (or label) mask as an ``int32`` label map, ``(H, W)`` in and out."""
    from scipy import ndimage

    m = np.asarray(mask) > 0
    structure = ndimage.generate_binary_structure(m.ndim, connectivity)
    labels, _ = ndimage.label(m, structure=structure)
    return labels.astype(np.int32)
