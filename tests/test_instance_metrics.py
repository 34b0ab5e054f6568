"""Instance and panoptic metrics: hand-computed cases and a brute-force reference."""

from __future__ import annotations


import numpy as np
import pytest

from Functions.metrics.instance import (DSB_THRESHOLDS, INSTANCE_COLUMNS, aji, dsb_score, instance_metrics,
                                        instance_table, iou_matrix, match, panoptic_quality)


def _canvas():
    return np.zeros((12, 16), np.int32)


def _square(m, label, r0, c0, h=4, w=4):
    m[r0:r0 + h, c0:c0 + w] = label
    return m


# ----------------------------------------------------------------------------- brute-force reference
def _objects(m):
    return [m == v for v in np.unique(m) if v != 0]


def _reference(true, pred):
    """Loop-by-loop reference written from the definitions (no bincount, no shared helpers)."""
    T, P = _objects(true), _objects(pred)
    nt, npd = len(T), len(P)
    iou = np.zeros((nt, npd))
    inter = np.zeros((nt, npd))
    for i, t in enumerate(T):
        for j, p in enumerate(P):
            inter[i, j] = np.logical_and(t, p).sum()
            iou[i, j] = inter[i, j] / np.logical_or(t, p).sum()
    if nt == 0 and npd == 0:
        return dict(n_true=0, n_pred=0, ap50=1.0, ap75=1.0, dsb_score=1.0, precision_50=1.0, recall_50=1.0,
                    f1_50=1.0, pq=1.0, sq=1.0, rq=1.0, aji=1.0)

    def tp_at(t):
        used_t, used_p, tp, s = set(), set(), 0, 0.0
        for i in range(nt):
            for j in range(npd):
                if iou[i, j] > t and i not in used_t and j not in used_p:
                    used_t.add(i), used_p.add(j)
                    tp += 1
                    s += iou[i, j]
        return tp, s

    per_t = []
    for t in np.arange(0.5, 1.0, 0.05):
        tp, _ = tp_at(t)
        per_t.append(tp / (tp + (npd - tp) + (nt - tp)))
    tp, s = tp_at(0.5)
    fp, fn = npd - tp, nt - tp
    sq = s / tp if tp else 0.0
    rq = tp / (tp + fp / 2 + fn / 2)
    # AJI, Kumar et al. 2017 (Algorithm 1)
    C = U = 0.0
    used = set()
    for i, t in enumerate(T):
        if npd and iou[i].max() > 0:
            j = int(np.argmax(iou[i]))
            C += np.logical_and(t, P[j]).sum()
            U += np.logical_or(t, P[j]).sum()
            used.add(j)
        else:
            U += t.sum()
    for j, p in enumerate(P):
        if j not in used:
            U += p.sum()
    return dict(n_true=nt, n_pred=npd, ap50=per_t[0], ap75=per_t[5], dsb_score=float(np.mean(per_t)),
                precision_50=tp / npd if npd else 0.0, recall_50=tp / nt if nt else 0.0,
                f1_50=2 * tp / (nt + npd), pq=sq * rq, sq=sq, rq=rq, aji=C / U if U else 0.0)


def _assert_close(got, want):
    assert set(want) <= set(got)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


# ----------------------------------------------------------------------------- hand-computed cases
def test_relabelled_identical_maps_score_one():
    t = _square(_square(_canvas(), 1, 0, 0), 2, 6, 8)
    p = np.where(t == 1, 900, np.where(t == 2, 7, 0))  # different, non-consecutive labels
    m = instance_metrics(t, p)
    _assert_close(m, dict(n_true=2, n_pred=2, ap50=1, ap75=1, dsb_score=1, precision_50=1, recall_50=1, f1_50=1,
                          pq=1, sq=1, rq=1, aji=1))


def test_split_object():
    # true: one 4x4 object (16 px); prediction splits it into 4x3 (12 px, IoU 0.75) + 4x1 (4 px, IoU 0.25)
    t = _square(_canvas(), 1, 0, 0)
    p = _square(_square(_canvas(), 1, 0, 0, 4, 3), 2, 0, 3, 4, 1)
    m = instance_metrics(t, p)
    # IoU 0.75 > t for t = 0.50..0.70 (5 thresholds): TP 1, FP 1, FN 0 -> 1/2; 0 for t >= 0.75 (strict >)
    _assert_close(m, dict(n_true=1, n_pred=2, ap50=0.5, ap75=0.0, dsb_score=0.25, precision_50=0.5, recall_50=1.0,
                          f1_50=2 / 3, sq=0.75, rq=2 / 3, pq=0.5, aji=12 / 20))


def test_merged_objects():
    # two touching 4x4 true objects, one 4x8 prediction: IoU 0.5 each, not > 0.5 -> no match anywhere
    t = _square(_square(_canvas(), 1, 0, 0), 2, 0, 4)
    p = _square(_canvas(), 5, 0, 0, 4, 8)
    m = instance_metrics(t, p)
    # AJI: both true objects choose the merged prediction: C = 16 + 16, U = 32 + 32
    _assert_close(m, dict(n_true=2, n_pred=1, ap50=0, ap75=0, dsb_score=0, precision_50=0, recall_50=0, f1_50=0,
                          pq=0, sq=0, rq=0, aji=0.5))


def test_missed_object():
    t = _square(_square(_canvas(), 1, 0, 0), 2, 6, 8)
    p = _square(_canvas(), 3, 0, 0)
    m = instance_metrics(t, p)
    _assert_close(m, dict(n_true=2, n_pred=1, ap50=0.5, ap75=0.5, dsb_score=0.5, precision_50=1, recall_50=0.5,
                          f1_50=2 / 3, sq=1, rq=2 / 3, pq=2 / 3, aji=16 / 32))


def test_extra_object():
    t = _square(_canvas(), 1, 0, 0)
    p = _square(_square(_canvas(), 1, 0, 0), 2, 8, 12, 2, 2)
    m = instance_metrics(t, p)
    _assert_close(m, dict(n_true=1, n_pred=2, ap50=0.5, ap75=0.5, dsb_score=0.5, precision_50=0.5, recall_50=1,
                          f1_50=2 / 3, sq=1, rq=2 / 3, pq=2 / 3, aji=16 / 20))


def test_partial_overlap_thresholds():
    # prediction shifted by one column: |T&P| = 12, |T|P| = 20 -> IoU 0.6, matched only for t = 0.50, 0.55
    t = _square(_canvas(), 1, 0, 0)
    p = _square(_canvas(), 1, 0, 1)
    m = instance_metrics(t, p)
    _assert_close(m, dict(ap50=1, ap75=0, dsb_score=0.2, sq=0.6, rq=1, pq=0.6, aji=0.6))


@pytest.mark.parametrize("side", ["truth", "prediction"])
def test_one_side_empty_scores_zero(side):
    full = _square(_canvas(), 1, 0, 0)
    t, p = (_canvas(), full) if side == "truth" else (full, _canvas())
    m = instance_metrics(t, p)
    assert (m["n_true"], m["n_pred"]) == ((0, 1) if side == "truth" else (1, 0))
    for k in INSTANCE_COLUMNS[2:]:
        assert m[k] == 0.0, k


def test_both_empty_scores_one():
    m = instance_metrics(_canvas(), _canvas())
    assert (m["n_true"], m["n_pred"]) == (0, 0)
    for k in INSTANCE_COLUMNS[2:]:
        assert m[k] == 1.0, k


def test_iou_matrix_and_match():
    t = _square(_square(_canvas(), 1, 0, 0), 2, 6, 8)
    p = _square(_canvas(), 1, 0, 1)
    iou = iou_matrix(t, p)
    assert iou.shape == (2, 1)
    np.testing.assert_allclose(iou[:, 0], [0.6, 0.0])
    ti, pj = match(iou, 0.5)
    assert list(ti) == [0] and list(pj) == [0]
    # below 0.5 the Hungarian assignment keeps pairs unique
    ti, pj = match(np.array([[0.4, 0.3], [0.35, 0.0]]), 0.1)
    assert sorted(zip(ti, pj)) == [(0, 1), (1, 0)]


def test_single_functions_agree_with_instance_metrics():
    rng = np.random.default_rng(3)
    t, p = _random_pair(rng)
    m = instance_metrics(t, p)
    assert dsb_score(t, p) == pytest.approx(m["dsb_score"])
    assert aji(t, p) == pytest.approx(m["aji"])
    assert panoptic_quality(t, p)["pq"] == pytest.approx(m["pq"])
    assert len(DSB_THRESHOLDS) == 10 and DSB_THRESHOLDS[0] == 0.5 and DSB_THRESHOLDS[-1] == 0.95


def _random_pair(rng, size=48, n=8):
    """Random discs (true) and jittered, partly merged/split/missing discs (pred)."""
    yy, xx = np.mgrid[:size, :size]
    t = np.zeros((size, size), np.int32)
    p = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(4, size - 4, 2)
        r = rng.uniform(2.5, 7)
        t[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        if rng.random() < 0.15:
            continue  # missed
        dy, dx = rng.normal(0, 1.5, 2)
        rr = r * rng.uniform(0.7, 1.3)
        disc = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= rr * rr
        lab = int(rng.integers(1, 4 * n))
        if rng.random() < 0.2:  # split into two halves
            p[disc & (xx < cx)] = lab
            p[disc & (xx >= cx)] = lab + 100
        else:
            p[disc] = lab
    if rng.random() < 0.5:  # an extra false object
        cy, cx = rng.uniform(3, size - 3, 2)
        p[(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = 999
    return t, p


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_reference(seed):
    t, p = _random_pair(np.random.default_rng(seed))
    _assert_close(instance_metrics(t, p), _reference(t, p))


def test_table_columns_and_mean_row():
    t1 = _square(_canvas(), 1, 0, 0)
    t2 = _square(_canvas(), 1, 0, 0)
    p2 = _square(_canvas(), 1, 0, 1)
    table = instance_table([t1, t2], [t1, p2], names=["a", "b"])
    for col in ["image", "n_true", "n_pred", "ap50", "ap75", "dsb_score", "f1_50", "pq", "sq", "rq", "aji"]:
        assert col in table.columns
    assert list(table["image"]) == ["a", "b", "mean"]
    assert table.loc[2, "dsb_score"] == pytest.approx((1.0 + 0.2) / 2)
    assert table.loc[2, "aji"] == pytest.approx((1.0 + 0.6) / 2)


def test_hundreds_of_objects():
    """1024 objects in one image (how fast: benchmarks/bounds.py)."""
    size, step = 512, 16
    t = np.zeros((size, size), np.int32)
    k = 0
    for r in range(0, size, step):
        for c in range(0, size, step):
            k += 1
            t[r + 1:r + step - 1, c + 1:c + step - 1] = k
    p = np.roll(t, 1, axis=1)
    m = instance_metrics(t, p)
    assert m["n_true"] == k == 1024
    # each 14x14 square shifted by one column: IoU = 13*14 / (15*14) = 13/15 > 0.85, < 0.9
    assert m["ap50"] == 1.0 and m["dsb_score"] == pytest.approx(0.8)


def test_shape_mismatch_and_bad_labels():
    with pytest.raises(ValueError, match="shape"):
        instance_metrics(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="negative"):
        instance_metrics(np.zeros((4, 4), int), -np.ones((4, 4), int))
