"""Image-classification metrics in NumPy (tests check them against scikit-learn).

* accuracy = correct / all; balanced accuracy = mean recall over the classes
  present in the truth;
* per class: precision = TP / (TP + FP), recall = TP / (TP + FN),
  F1 = 2 P R / (P + R), each 0 when its denominator is 0; macro F1 = the
  unweighted mean of the per-class F1 over all classes;
* ROC-AUC one-vs-rest per class from ranks (Mann-Whitney U):
  ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the
  sum of the ranks of the positives' scores, tied scores sharing their mean
  rank; undefined (``None``) for a class absent from, or the only class in,
  the truth.  The macro ROC-AUC averages the defined ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K) int64`` counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def roc_auc(is_positive: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve from ranks (ties share their mean rank); ``None`` without both classes."""
    pos = np.asarray(is_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0      # 1-based rank of each distinct value
    ranks = mean_rank[inverse.reshape(-1)]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(is_positive: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: one point per distinct score (highest first), starting at (0, 0)."""
    pos = np.asarray(is_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(pos)[last]
    fp = np.cumsum(~pos)[last]
    tpr = np.r_[0.0, tp / max(1, pos.sum())]
    fpr = np.r_[0.0, fp / max(1, (~pos).sum())]
    return fpr, tpr, np.r_[np.inf, s[last]]


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray,
                           classes: Sequence[str] | None = None) -> dict:
    """Every classification metric for integer labels ``(N,)`` and probabilities ``(N, K)``.

    The prediction is the most probable class.  Returns a JSON-ready dict:
    ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc`` (macro
    one-vs-rest), ``per_class`` (``{name: {precision, recall, f1, roc_auc,
    support}}``), ``confusion_matrix`` (list of lists, rows = truth, in the
    order of ``classes``), ``classes`` and ``n_images``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim == 1 or probs.shape[-1] == 1:          # one sigmoid output: P(class 1)
        p1 = probs.reshape(-1)
        probs = np.stack([1 - p1, p1], axis=1)
    t = np.asarray(y_true, dtype=np.int64)
    k = probs.shape[1]
    classes = [str(c) for c in (classes if classes is not None else range(k))]
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for {k} probability columns")
    pred = np.argmax(probs, axis=1)
    cm = confusion_matrix(t, pred, k)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    aucs = [roc_auc(t == c, probs[:, c]) for c in range(k)]
    defined = [a for a in aucs if a is not None]
    n = int(len(t))
    return {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "balanced_accuracy": float(recall[support > 0].mean()) if n else float("nan"),
        "macro_f1": float(f1.mean()),
        "roc_auc": float(np.mean(defined)) if defined else None,
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "roc_auc": aucs[i], "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
        "classes": classes,
        "n_images": n,
    }
