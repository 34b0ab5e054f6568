"""Panoptic scores of typed objects + stuff: hand-computed cases and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from Functions.metrics.panoptic import majority_types, panoptic_scores, pq_from_counts


def _boxes(spec, shape=(12, 12)):
    """``[(id, type, r0, c0, h, w)]`` -> (instance map, class map)."""
    inst = np.zeros(shape, np.int32)
    cls = np.zeros(shape, np.int32)
    for lab, typ, r0, c0, h, w in spec:
        inst[r0:r0 + h, c0:c0 + w] = lab
        cls[r0:r0 + h, c0:c0 + w] = typ
    return inst, cls


# --------------------------------------------------------------------------- hand-computed
def test_hand_computed_two_images():
    # image a: type 1 square 4x4 predicted as 4x3 (IoU 12/16 = .75); type 2 square found exactly;
    #          plus a type-2 false positive
    ta = _boxes([(1, 1, 0, 0, 4, 4), (2, 2, 6, 6, 3, 3)])
    pa = _boxes([(5, 1, 0, 0, 4, 3), (6, 2, 6, 6, 3, 3), (7, 2, 0, 8, 2, 2)])
    # image b: only type 1 in truth, missed (prediction shifted: IoU 4/28 < .5); type 2 predicted (absent in truth)
    tb = _boxes([(1, 1, 0, 0, 4, 4)])
    pb = _boxes([(1, 1, 2, 2, 4, 4), (2, 2, 8, 8, 2, 2)])
    out = panoptic_scores([ta, tb], [pa, pb], num_classes=2, names=["a", "b"], class_names=["neo", "inf"])
    img = out["images"].set_index("image")
    # image a: type 1: tp1 iou .75 -> pq .75; type 2: tp1 fp1 iou 1 -> rq 1/1.5, pq 2/3
    assert img.loc["a", "pq_neo"] == pytest.approx(0.75)
    assert img.loc["a", "pq_inf"] == pytest.approx(2 / 3)
    assert img.loc["a", "mpq"] == pytest.approx((0.75 + 2 / 3) / 2)
    # bPQ a: 2 true, 3 pred, tp 2 (ious .75, 1) -> sq .875, rq 2/2.5
    assert img.loc["a", "bpq"] == pytest.approx(0.875 * 0.8)
    # image b: type 1 pq 0; type 2 absent from truth -> NaN, skipped (its FP not counted: PanNuke)
    assert img.loc["b", "pq_neo"] == 0.0 and math.isnan(img.loc["b", "pq_inf"])
    assert img.loc["b", "mpq"] == 0.0 and img.loc["b", "bpq"] == 0.0
    s = out["summary"]
    assert s["mpq"] == pytest.approx(((0.75 + 2 / 3) / 2 + 0.0) / 2)
    assert s["bpq"] == pytest.approx(0.7 / 2)
    # mPQ+: type 1 sums tp1 fp1 fn1 iou .75 -> .75 * 1/2; type 2 tp1 fp2 fn0 iou 1 -> 1/2
    cls = out["classes"].set_index("class")
    assert cls.loc["neo", "pq"] == pytest.approx(0.375) and cls.loc["inf", "pq"] == pytest.approx(0.5)
    assert s["mpq_plus"] == pytest.approx((0.375 + 0.5) / 2)
    assert cls.loc["inf", "precision"] == pytest.approx(1 / 3) and cls.loc["inf", "recall"] == 1.0
    assert cls.loc["inf", "f1"] == pytest.approx(0.5)
    assert cls.loc["neo", "pq_pannuke"] == pytest.approx(0.375)   # mean of .75 and 0
    assert cls.loc["inf", "pq_pannuke"] == pytest.approx(2 / 3)   # image b skipped
    assert cls.loc["mean", "pq"] == pytest.approx(s["mpq_plus"])


def test_empty_images_and_absent_classes():
    empty = _boxes([])
    only_pred = _boxes([(1, 1, 0, 0, 3, 3)])
    out = panoptic_scores([empty, empty], [empty, only_pred], num_classes=3)
    img = out["images"]
    # truth empty: bPQ and mPQ skipped (NaN) on both images, whatever was predicted
    assert img["bpq"].iloc[:2].isna().all() and img["mpq"].iloc[:2].isna().all()
    assert math.isnan(out["summary"]["mpq"]) and math.isnan(out["summary"]["bpq"])
    # CoNIC: type 1 has one FP over the data set -> 0; types 2, 3 absent everywhere -> 0, still averaged
    cls = out["classes"].set_index("class")
    assert cls.loc["type_1", "fp"] == 1 and cls.loc["type_1", "pq"] == 0.0
    assert out["summary"]["mpq_plus"] == 0.0


def test_perfect_prediction_with_relabelled_ids_and_stuff():
    t_inst, t_cls = _boxes([(1, 1, 0, 0, 4, 4), (2, 2, 6, 6, 3, 3)])
    t_cls[8:, :4] = 3             # stuff 1 (id 3)
    t_cls[:3, 8:] = 4             # stuff 2 (id 4)
    p_inst = np.where(t_inst > 0, t_inst + 40, 0)
    p_cls = t_cls.copy()
    p_cls[8:, :2] = 4             # half the stuff-1 region predicted as stuff 2: IoU 4/8
    out = panoptic_scores([(t_inst, t_cls)], [np.stack([p_inst, p_cls], -1)], num_classes=2, stuff_classes=2)
    s = out["summary"]
    assert s["mpq"] == 1.0 and s["mpq_plus"] == 1.0 and s["bpq"] == 1.0
    assert s["stuff_iou"]["stuff_1"] == pytest.approx(8 / 16)
    assert s["stuff_iou"]["stuff_2"] == pytest.approx(12 / 20)   # 12 true pixels, 8 more predicted
    assert s["mean_stuff_iou"] == pytest.approx((0.5 + 0.6) / 2)


def test_rejects_bad_class_ids_and_shapes():
    inst, cls = _boxes([(1, 3, 0, 0, 2, 2)])
    with pytest.raises(ValueError, match="class 3"):
        panoptic_scores([(inst, cls)], [(inst, cls)], num_classes=2)
    with pytest.raises(ValueError, match="differ in shape"):
        panoptic_scores([(inst, cls)], [(inst, cls[:5])], num_classes=3)


def test_pq_from_counts_exact():
    assert pq_from_counts(0, 0, 0, 0.0) == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert pq_from_counts(2, 1, 1, 1.5)["pq"] == pytest.approx(0.75 * 2 / 3)


def test_majority_types():
    inst = np.array([[1, 1, 1, 0], [2, 2, 0, 0]])
    cls = np.array([[1, 2, 2, 4], [3, 1, 3, 2]])
    got = majority_types(inst, cls, num_classes=3)
    # object 1: votes 1,2,2 -> 2; object 2: 3 vs 1 tie -> lower type 1; stuff (4) kept; type outside object -> 0
    assert got.tolist() == [[2, 2, 2, 4], [1, 1, 0, 0]]


# --------------------------------------------------------------------------- independent reference
def _objects(inst, cls, c):
    """Boolean masks of the pixels of each object id restricted to class c (loop over ids)."""
    out = []
    for v in sorted(set(inst[cls == c].tolist()) - {0}):
        out.append((inst == v) & (cls == c))
    return out


def _ref_counts(t_objs, p_objs):
    tp, iou_sum, used = 0, 0.0, set()
    for t in t_objs:
        for j, p in enumerate(p_objs):
            inter = np.logical_and(t, p).sum()
            union = np.logical_or(t, p).sum()
            if union and inter / union > 0.5 and j not in used:
                tp += 1
                iou_sum += inter / union
                used.add(j)
                break
    return tp, len(p_objs) - tp, len(t_objs) - tp, iou_sum


def _reference(trues, preds, k, s):
    per_image_mpq, per_image_bpq = [], []
    totals = np.zeros((k, 4))
    stuff_iu = np.zeros((s, 2))
    for (ti, tc), (pi, pc) in zip(trues, preds):
        vals = []
        for c in range(1, k + 1):
            to, po = _objects(ti, tc, c), _objects(pi, pc, c)
            tp, fp, fn, isum = _ref_counts(to, po)
            totals[c - 1] += (tp, fp, fn, isum)
            if to:
                vals.append((isum / tp if tp else 0) * tp / (tp + fp / 2 + fn / 2))
        if vals:
            per_image_mpq.append(sum(vals) / len(vals))
        tb = [ti == v for v in np.unique(ti) if v]
        pb = [pi == v for v in np.unique(pi) if v]
        if tb:
            tp, fp, fn, isum = _ref_counts(tb, pb)
            per_image_bpq.append((isum / tp if tp else 0) * tp / (tp + fp / 2 + fn / 2))
        for j in range(s):
            a, b = tc == k + 1 + j, pc == k + 1 + j
            stuff_iu[j] += ((a & b).sum(), (a | b).sum())
    plus = []
    for tp, fp, fn, isum in totals:
        plus.append(0.0 if tp == 0 else (isum / tp) * tp / (tp + fp / 2 + fn / 2))
    return {"mpq": np.mean(per_image_mpq), "bpq": np.mean(per_image_bpq), "mpq_plus": np.mean(plus),
            "plus": plus, "stuff": [i / u if u else 0.0 for i, u in stuff_iu]}


def _random_scene(rng, shape=(40, 40), k=3, s=2):
    cls = rng.integers(k + 1, k + s + 1, size=shape) if s else np.zeros(shape, int)
    cls[:, : shape[1] // 3] = 0
    inst = np.zeros(shape, np.int32)
    for lab in rng.choice(np.arange(1, 500), size=rng.integers(0, 9), replace=False):
        r, c = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(2, 9, size=2)
        inst[r:r + h, c:c + w] = lab
        cls[r:r + h, c:c + w] = rng.integers(1, k + 1)
    return inst, cls


def _jitter(rng, inst, cls, k):
    """A prediction: objects shifted/shrunk by a pixel or dropped, types sometimes swapped, extra objects."""
    p_inst = np.zeros_like(inst)
    p_cls = np.where(inst == 0, cls, 0)
    for v in np.unique(inst)[1:]:
        if rng.random() < 0.15:
            continue
        m = np.roll(inst == v, shift=tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
        p_inst[m] = v + 1000
        p_cls[m] = rng.integers(1, k + 1) if rng.random() < 0.25 else cls[inst == v][0]
    extra = _random_scene(rng, inst.shape, k, 0)
    p_inst = np.where((p_inst == 0) & (extra[0] > 0), extra[0] + 5000, p_inst)
    p_cls = np.where((p_inst > 5000), extra[1], p_cls)
    return p_inst, p_cls


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    k, s = 3, 2
    trues = [_random_scene(rng, k=k, s=s) for _ in range(5)]
    preds = [_jitter(rng, ti, tc, k) for ti, tc in trues]
    got = panoptic_scores(trues, preds, num_classes=k, stuff_classes=s)
    ref = _reference(trues, preds, k, s)
    summ = got["summary"]
    assert summ["mpq"] == pytest.approx(ref["mpq"], abs=1e-6)
    assert summ["bpq"] == pytest.approx(ref["bpq"], abs=1e-6)
    assert summ["mpq_plus"] == pytest.approx(ref["mpq_plus"], abs=1e-6)
    for j, v in enumerate(ref["plus"], start=1):
        assert summ["per_class"][f"type_{j}"]["pq"] == pytest.approx(v, abs=1e-6)
    for j, v in enumerate(ref["stuff"], start=1):
        assert summ["stuff_iou"][f"stuff_{j}"] == pytest.approx(v, abs=1e-6)
    assert 0.0 < summ["mpq_plus"] < 1.0        # the random cases are neither trivial nor hopeless


# --------------------------------------------------------------------------- command line
def _cli_cases():
    ta = _boxes([(1, 1, 0, 0, 4, 4), (2, 2, 6, 6, 3, 3)])
    pa = _boxes([(5, 1, 0, 0, 4, 3), (6, 2, 6, 6, 3, 3), (7, 2, 0, 8, 2, 2)])
    tb = _boxes([(1, 1, 0, 0, 4, 4)])
    pb = _boxes([(1, 1, 2, 2, 4, 4), (2, 2, 8, 8, 2, 2)])
    return {"a": (ta, pa), "b": (tb, pb)}


def test_evaluate_panoptic_png_and_npy_layouts(tmp_path, capsys):
    import json

    import pandas as pd

    from Functions.cli import main
    from Functions.data.panoptic_io import write_panoptic

    cases = _cli_cases()
    for name, (t, p) in cases.items():
        write_panoptic(tmp_path / "truth", name, *t)
    np.save(tmp_path / "pred_a.npy", np.stack(cases["a"][1], -1))       # per-file npy (H, W, 2)
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "pred" / "a.npy", np.stack(cases["a"][1], -1))
    np.save(tmp_path / "pred" / "b.npy", np.stack(cases["b"][1], -1))
    out = tmp_path / "scores"
    rc = main(["evaluate", "--task", "panoptic", "--masks", str(tmp_path / "truth"), "--predictions",
               str(tmp_path / "pred"), "--num-classes", "2", "--class-names", "neo,inf", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    want = panoptic_scores([cases[n][0] for n in "ab"], [cases[n][1] for n in "ab"], 2)["summary"]
    assert summary["mpq"] == pytest.approx(want["mpq"]) and summary["mpq_plus"] == pytest.approx(0.4375)
    assert summary["bpq"] == pytest.approx(0.35)
    assert summary["per_class"]["inf"]["pq"] == pytest.approx(0.5)
    images = pd.read_csv(out / "per_image.csv")
    assert list(images["image"]) == ["a", "b", "mean"] and "pq_neo" in images.columns
    classes = pd.read_csv(out / "per_class.csv")
    assert list(classes["class"]) == ["neo", "inf", "mean"]
    assert "mPQ+" in capsys.readouterr().out
    # the same scores from a stacked (N, H, W, 2) CoNIC file against the truth stacked the same way
    np.save(tmp_path / "labels.npy", np.stack([np.stack(cases[n][0], -1) for n in "ab"]))
    np.save(tmp_path / "preds.npy", np.stack([np.stack(cases[n][1], -1) for n in "ab"]))
    assert main(["evaluate", "--task", "panoptic", "--masks", str(tmp_path / "labels.npy"), "--predictions",
                 str(tmp_path / "preds.npy"), "--num-classes", "2", "--out", str(tmp_path / "s2")]) == 2
    # names differ (labels_0000 vs preds_0000): refused with one line; same stem in two folders works
    (tmp_path / "t2").mkdir(), (tmp_path / "p2").mkdir()
    (tmp_path / "labels.npy").rename(tmp_path / "t2" / "x.npy")
    (tmp_path / "preds.npy").rename(tmp_path / "p2" / "x.npy")
    assert main(["evaluate", "--task", "panoptic", "--masks", str(tmp_path / "t2"), "--predictions",
                 str(tmp_path / "p2"), "--num-classes", "2", "--out", str(tmp_path / "s3")]) == 0
    assert json.loads((tmp_path / "s3" / "summary.json").read_text())["mpq_plus"] == pytest.approx(0.4375)


@pytest.mark.parametrize("fault", ["class_too_high", "sizes_differ", "channels", "out_exists"])
def test_evaluate_panoptic_bad_input_one_line(tmp_path, capsys, fault):
    from Functions.cli import main
    from Functions.data.panoptic_io import write_panoptic

    t = _boxes([(1, 1, 0, 0, 4, 4)])
    write_panoptic(tmp_path / "truth", "a", *t)
    pred = tmp_path / "pred"
    pred.mkdir()
    arr = np.stack(t, -1)
    args = ["evaluate", "--task", "panoptic", "--masks", str(tmp_path / "truth"), "--predictions", str(pred),
            "--num-classes", "2", "--out", str(tmp_path / "out")]
    if fault == "class_too_high":
        arr[0, 0, 1] = 3
        expect = "a.npy has class id 3"
    elif fault == "sizes_differ":
        from Functions.data.instances import write_label_map

        write_label_map(tmp_path / "truth" / "classes" / "a.png", t[1][:, :6])
        expect = "class map"
    elif fault == "channels":
        arr = np.concatenate([arr, arr[..., :1]], -1)
        expect = "a.npy has shape (12, 12, 3)"
    else:
        (tmp_path / "out").mkdir()
        expect = "already exists"
    np.save(pred / "a.npy", arr)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expect in err[0], err


def test_groups_average_per_group_first_as_pannuke_tissues():
    good = _boxes([(1, 1, 0, 0, 4, 4)])
    bad = (np.zeros((12, 12), np.int32), np.zeros((12, 12), np.int32))
    trues, preds = [good, good, good], [good, good, bad]
    plain = panoptic_scores(trues, preds, 1)["summary"]
    assert plain["mpq"] == pytest.approx(2 / 3) and plain["bpq"] == pytest.approx(2 / 3)
    # tissue A: images 0, 1 (PQ 1, 1); tissue B: image 2 (PQ 0) -> mean of tissue means 0.5
    grouped = panoptic_scores(trues, preds, 1, groups=["A", "A", "B"])["summary"]
    assert grouped["mpq"] == pytest.approx(0.5) and grouped["bpq"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 group labels for 3 images"):
        panoptic_scores(trues, preds, 1, groups=["A", "B"])
