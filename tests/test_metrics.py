"""NumPy evaluation metrics: hand-computed cases, scikit-learn agreement, brute-force distances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from Functions.metrics import segmentation as M


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


# ----------------------------------------------------------------------------
# overlap measures by hand
# ----------------------------------------------------------------------------
def test_overlap_hand_computed():
    t = square((4, 4), 1, 3, 1, 3)  # 4 pixels
    p = square((4, 4), 1, 3, 1, 4)  # 6 pixels, covers t
    assert M.confusion(t, p) == (4, 2, 0, 10)
    assert M.dice(t, p) == pytest.approx(8 / 10)
    assert M.iou(t, p) == pytest.approx(4 / 6)
    assert M.precision(t, p) == pytest.approx(4 / 6)
    assert M.recall(t, p) == pytest.approx(1.0)
    assert M.sensitivity(t, p) == M.recall(t, p)
    assert M.specificity(t, p) == pytest.approx(10 / 12)
    assert M.pixel_accuracy(t, p) == pytest.approx(14 / 16)
    # 0/255 and bool masks are the same masks
    assert M.dice(t.astype(np.uint8) * 255, p.astype(np.uint8)) == pytest.approx(0.8)


def test_binary_metrics_keys_and_consistency():
    rng = np.random.default_rng(1)
    t = rng.random((20, 24)) < 0.3
    p = rng.random((20, 24)) < 0.4
    m = M.binary_metrics(t, p, tolerance=1.5)
    assert list(m) == M.BINARY_KEYS
    assert m["dice"] == pytest.approx(M.dice(t, p))
    assert m["iou"] == pytest.approx(M.iou(t, p))
    assert m["boundary_f1"] == pytest.approx(M.boundary_f1(t, p, tolerance=1.5))
    assert m["hd95"] == pytest.approx(M.hd95(t, p))
    assert m["hausdorff"] == pytest.approx(M.hausdorff_distance(t, p))
    assert m["assd"] == pytest.approx(M.assd(t, p))
    # Dice and IoU are tied: J = D / (2 - D)
    assert m["iou"] == pytest.approx(m["dice"] / (2 - m["dice"]))
    assert M.METRIC_COLUMNS == ["dice", "iou", "precision", "recall", "specificity",
                                "pixel_accuracy", "boundary_f1", "hd95", "assd"]


# ----------------------------------------------------------------------------
# empty-mask conventions
# ----------------------------------------------------------------------------
def test_both_empty_is_perfect():
    z = np.zeros((6, 7), bool)
    m = M.binary_metrics(z, z)
    for k in ("dice", "iou", "precision", "recall", "specificity", "pixel_accuracy", "boundary_f1"):
        assert m[k] == 1.0, k
    for k in ("hausdorff", "hd95", "assd"):
        assert m[k] == 0.0, k


def test_empty_truth_nonempty_prediction():
    t = np.zeros((6, 6), bool)
    p = square((6, 6), 1, 3, 1, 3)
    m = M.binary_metrics(t, p)
    assert m["dice"] == m["iou"] == m["precision"] == 0.0
    assert m["recall"] == 0.0  # 0/0 with masks that differ -> 0
    assert m["specificity"] == pytest.approx(32 / 36)
    assert m["boundary_f1"] == 0.0
    assert m["hausdorff"] == m["hd95"] == m["assd"] == math.inf


def test_empty_prediction_nonempty_truth():
    t = square((6, 6), 1, 3, 1, 3)
    p = np.zeros((6, 6), bool)
    m = M.binary_metrics(t, p)
    assert m["dice"] == m["iou"] == m["recall"] == 0.0
    assert m["precision"] == 0.0  # 0/0 with masks that differ -> 0
    assert m["specificity"] == 1.0  # no false positive among 32 negatives
    assert m["boundary_f1"] == 0.0
    assert m["hd95"] == math.inf and m["assd"] == math.inf


def test_all_foreground_truth_specificity():
    full = np.ones((5, 5), bool)
    assert M.specificity(full, full) == 1.0  # nothing to get wrong
    assert M.specificity(full, square((5, 5), 0, 2, 0, 5)) == 0.0
    assert M.binary_metrics(full, full)["hd95"] == 0.0


# ----------------------------------------------------------------------------
# boundaries and distances by hand
# ----------------------------------------------------------------------------
def test_boundary_is_mask_minus_cross_erosion():
    m = square((5, 5), 1, 4, 1, 4)  # 3x3 block: only the centre survives the cross erosion
    b = M.boundary(m)
    assert b.sum() == 8 and not b[2, 2] and b[1, 1]
    # a 3x3 block touching the image corner: outside counts as background,
    # so the corner block is boundary everywhere except its inner pixel
    c = square((5, 5), 0, 3, 0, 3)
    assert M.boundary(c).sum() == 8 and not M.boundary(c)[1, 1]
    # the whole image: the edge pixels are boundary
    full = np.ones((4, 5), bool)
    assert M.boundary(full).sum() == 4 * 5 - 2 * 3
    # the 4-connected cross, not the 3x3 square: a diagonal-only gap keeps the pixel interior
    d = np.ones((5, 5), bool)
    d[1, 1] = False
    assert not M.boundary(d)[2, 2]  # (1,1) is a diagonal neighbour only
    assert M.boundary(d)[1, 2] and M.boundary(d)[2, 1]


def test_single_pixels_distance_and_spacing():
    t = np.zeros((6, 6), bool)
    p = np.zeros((6, 6), bool)
    t[0, 0] = True
    p[3, 4] = True
    assert M.hausdorff_distance(t, p) == pytest.approx(5.0)
    assert M.hd95(t, p) == pytest.approx(5.0)
    assert M.assd(t, p) == pytest.approx(5.0)
    assert M.hd95(t, p, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(6 ** 2 + 4 ** 2))
    assert M.assd(t, p, spacing=0.5) == pytest.approx(2.5)
    assert M.boundary_f1(t, p, tolerance=5.0) == 1.0
    assert M.boundary_f1(t, p, tolerance=4.99) == 0.0


def test_shifted_square_hand_computed():
    # 4x4 squares, the prediction one column to the right.  Each 12-pixel ring
    # has 6 pixels on the other ring (distance 0) and 6 at distance 1.
    t = square((8, 9), 2, 6, 2, 6)
    p = square((8, 9), 2, 6, 3, 7)
    d_pt, d_tp = M.surface_distances(t, p)
    assert sorted(d_pt) == [0.0] * 6 + [1.0] * 6
    assert sorted(d_tp) == [0.0] * 6 + [1.0] * 6
    m = M.binary_metrics(t, p, tolerance=0.5)
    assert m["hausdorff"] == 1.0
    assert m["hd95"] == 1.0  # np.percentile([0]*6 + [1]*6, 95) = 1
    assert m["assd"] == pytest.approx(0.5)
    assert m["boundary_f1"] == pytest.approx(0.5)  # bp = br = 6/12
    assert M.boundary_f1(t, p, tolerance=1.0) == 1.0  # '<=' tolerance
    assert M.dice(t, p) == pytest.approx(2 * 12 / 32)


def test_hd95_uses_linear_interpolation_and_max_of_directions():
    # truth: a long bar; prediction: its left part only.
    t = square((3, 30), 1, 2, 0, 30)
    p = square((3, 30), 1, 2, 0, 10)
    d_pt, d_tp = M.surface_distances(t, p)
    assert d_pt.max() == 0.0  # every predicted pixel lies on the true bar
    expected = np.percentile(np.arange(21, dtype=float).tolist() + [0.0] * 9, 95)
    assert M.hd95(t, p) == pytest.approx(expected)
    assert M.hausdorff_distance(t, p) == 20.0
    assert M.hausdorff_distance(t, p, percentile=50) == pytest.approx(np.percentile(d_tp, 50))


# ----------------------------------------------------------------------------
# agreement with scikit-learn
# ----------------------------------------------------------------------------
def test_agrees_with_sklearn_on_random_masks():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(25):
        shape = tuple(rng.integers(5, 40, 2))
        t = rng.random(shape) < rng.uniform(0.05, 0.9)
        p = rng.random(shape) < rng.uniform(0.05, 0.9)
        if trial % 5 == 0:  # correlated prediction
            p = t ^ (rng.random(shape) < 0.1)
        yt, yp = t.ravel(), p.ravel()
        m = M.binary_metrics(t, p)
        assert m["dice"] == pytest.approx(sk.f1_score(yt, yp), abs=1e-12)
        assert m["iou"] == pytest.approx(sk.jaccard_score(yt, yp), abs=1e-12)
        assert m["precision"] == pytest.approx(sk.precision_score(yt, yp), abs=1e-12)
        assert m["recall"] == pytest.approx(sk.recall_score(yt, yp), abs=1e-12)
        assert m["specificity"] == pytest.approx(sk.recall_score(yt, yp, pos_label=0), abs=1e-12)
        assert m["pixel_accuracy"] == pytest.approx(sk.accuracy_score(yt, yp), abs=1e-12)


def test_multiclass_agrees_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    t = rng.integers(0, 4, (16, 18))
    p = np.where(rng.random((16, 18)) < 0.6, t, rng.integers(0, 4, (16, 18)))
    p[p == 3] = 2  # class 3 only in the truth
    yt, yp = t.ravel(), p.ravel()
    m = M.multiclass_metrics(t, p, 4)
    f1 = sk.f1_score(yt, yp, labels=[0, 1, 2, 3], average=None)
    for c in (1, 2, 3):
        assert m[f"dice_{c}"] == pytest.approx(f1[c], abs=1e-12)
        assert m[f"dice_{c}"] == pytest.approx(M.dice(t == c, p == c))
    assert "dice_0" not in m  # background left out by default
    assert m["mean_dice"] == pytest.approx(np.mean(f1[1:]), abs=1e-12)
    assert m["mean_iou"] == pytest.approx(sk.jaccard_score(yt, yp, labels=[1, 2, 3], average="macro"), abs=1e-12)
    assert m["pixel_accuracy"] == pytest.approx(sk.accuracy_score(yt, yp), abs=1e-12)
    mb = M.multiclass_metrics(t, p, 4, include_background=True)
    assert mb["mean_iou"] == pytest.approx(sk.jaccard_score(yt, yp, average="macro"), abs=1e-12)
    assert mb["mean_pixel_accuracy"] == pytest.approx(sk.balanced_accuracy_score(yt, yp), abs=1e-12)
    assert M.mean_iou(t, p, 4) == pytest.approx(mb["mean_iou"])
    assert M.mean_pixel_accuracy(t, p, 4) == pytest.approx(mb["mean_pixel_accuracy"])


def test_multiclass_absent_classes_left_out_of_means():
    t = np.zeros((8, 8), int)
    t[2:5, 2:5] = 1
    p = t.copy()
    p[2, 2] = 0
    m = M.multiclass_metrics(t, p, 3)
    assert m["dice_2"] == 1.0  # class 2 absent from both: perfect by convention...
    assert m["mean_dice"] == pytest.approx(m["dice_1"])  # ...but not averaged in
    assert m["mean_dice"] == pytest.approx(2 * 8 / (8 + 9))
    assert m["mean_hd95"] == pytest.approx(m["hd95_1"])
    none = M.multiclass_metrics(np.zeros((4, 4), int), np.zeros((4, 4), int), 3)
    assert none["mean_dice"] == 1.0 and none["mean_hd95"] == 0.0
    with pytest.raises(ValueError, match="labels in 0..2"):
        M.multiclass_metrics(t + 2, p, 3)


# ----------------------------------------------------------------------------
# distances against a brute-force computation
# ----------------------------------------------------------------------------
def brute_boundary(mask):
    """Pixels of the mask with a 4-neighbour outside the mask or outside the image."""
    h, w = mask.shape
    out = []
    for r, c in itertools.product(range(h), range(w)):
        if not mask[r, c]:
            continue
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < h and 0 <= cc < w) or not mask[rr, cc]:
                out.append((r, c))
                break
    return np.array(out, float).reshape(-1, 2)


def brute_directed(a, b, spacing):
    diff = (a[:, None, :] - b[None, :, :]) * np.asarray(spacing)
    return np.sqrt((diff ** 2).sum(-1)).min(axis=1)


@pytest.mark.parametrize("spacing", [None, (0.7, 1.3)])
def test_distances_match_brute_force(spacing):
    rng = np.random.default_rng(7)
    sp = (1.0, 1.0) if spacing is None else spacing
    for _ in range(30):
        shape = tuple(rng.integers(3, 14, 2))
        t = rng.random(shape) < rng.uniform(0.1, 0.8)
        p = rng.random(shape) < rng.uniform(0.1, 0.8)
        if not t.any() or not p.any():
            continue
        bt, bp = brute_boundary(t), brute_boundary(p)
        assert M.boundary(t).sum() == len(bt)
        d_pt = brute_directed(bp, bt, sp)
        d_tp = brute_directed(bt, bp, sp)
        both = np.concatenate([d_pt, d_tp])
        m = M.binary_metrics(t, p, spacing=spacing, tolerance=1.2)
        assert m["hausdorff"] == pytest.approx(max(d_pt.max(), d_tp.max()), abs=1e-9)
        assert m["hd95"] == pytest.approx(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)), abs=1e-9)
        assert m["assd"] == pytest.approx(both.mean(), abs=1e-9)
        bprec, brec = np.mean(d_pt <= 1.2), np.mean(d_tp <= 1.2)
        f1 = 0.0 if bprec + brec == 0 else 2 * bprec * brec / (bprec + brec)
        assert m["boundary_f1"] == pytest.approx(f1, abs=1e-12)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        M.dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="percentile"):
        M.hausdorff_distance(np.ones((3, 3)), np.ones((3, 3)), percentile=120)


# ----------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------
def test_per_image_metrics_and_summarize():
    t1, p1 = square((8, 8), 1, 5, 1, 5), square((8, 8), 1, 5, 2, 6)
    t2, p2 = square((8, 8), 2, 4, 2, 4), square((8, 8), 2, 4, 2, 4)
    t3, p3 = square((8, 8), 2, 4, 2, 4), np.zeros((8, 8), bool)  # missed object
    df = M.per_image_metrics([t1, t2, t3], [p1, p2, p3], names=["a", "b", "c"])
    assert list(df.columns) == ["image"] + M.METRIC_COLUMNS
    assert list(df["image"]) == ["a", "b", "c"]
    assert df.loc[0, "dice"] == pytest.approx(M.dice(t1, p1))
    assert df.loc[1, "dice"] == 1.0 and df.loc[2, "dice"] == 0.0
    s = M.summarize(df)
    assert list(s.index) == ["mean", "std", "median", "n"]
    assert s.loc["mean", "dice"] == pytest.approx(df["dice"].mean())
    assert s.loc["std", "dice"] == pytest.approx(df["dice"].std(ddof=1))
    assert s.loc["median", "dice"] == pytest.approx(df["dice"].median())
    assert s.loc["n", "dice"] == 3
    assert s.loc["n", "hd95"] == 2  # the inf of image c is left out and counted
    assert s.loc["mean", "hd95"] == pytest.approx(df["hd95"].iloc[:2].mean())
    default = M.per_image_metrics(np.stack([t1, t2]), np.stack([p1, p2]))
    assert list(default["image"]) == ["0", "1"]


def test_per_image_multiclass_columns():
    t = np.zeros((2, 6, 6), int)
    t[:, 1:3, 1:3] = 1
    t[:, 3:5, 3:5] = 2
    df = M.per_image_metrics(t, t, num_classes=3)
    assert df.columns[0] == "image"
    assert {"dice_1", "dice_2", "mean_dice", "mean_iou", "mean_pixel_accuracy"} <= set(df.columns)
    assert (df["mean_dice"] == 1.0).all()
