"""Panoptic quality of typed objects plus stuff classes (NumPy only): per-class PQ, mPQ, mPQ+, bPQ.

Inputs of one image
-------------------
``instance map`` ``(H, W)`` integers, 0 = no object, each other value one
object (any values, not necessarily consecutive); ``class map`` ``(H, W)``
integers: 0 = unlabelled background, ``1..T`` the object ("thing") types,
``T+1..T+S`` the stuff classes (tissue regions).  ``T`` is ``num_classes``
and ``S`` ``stuff_classes``; a class id above ``T+S`` is an error.  This is
CoNIC's ``H x W x 2`` layout ``[..., 0]`` instance, ``[..., 1]`` class.

Objects of one type (the CoNIC rule)
    The objects of type ``c`` are ``instance * (class == c)``: a pixel counts
    for type ``c`` when its class-map value is ``c`` (exactly
    ``get_multi_pq_info`` of the CoNIC challenge).  When every object carries
    one type - as the readers and ``predict --task panoptic`` produce - this
    is the same as typing each object as a whole.  Object pixels whose class
    is 0 or a stuff id count for no type (they still count in bPQ).
Matching
    :func:`Functions.metrics.instance.match` at IoU > 0.5 (strictly), which is
    one-to-one at that threshold; ``TP`` pairs, ``FP`` unmatched predictions,
    ``FN`` unmatched true objects, ``iou_sum`` the matched IoUs' sum.
PQ, SQ, RQ from counts
    ``SQ = iou_sum / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``, ``PQ = SQ * RQ``,
    computed exactly (no ``1e-6`` in the denominators as the reference scripts
    add); no TP gives ``SQ = 0``; no object on either side gives 0 for
    mPQ+ (what CoNIC's epsilon yields), NaN (absent) for the per-image values.

The three published averages
----------------------------
mPQ (PanNuke, Gamper et al. 2020, ``PanNuke-metrics/run.py``)
    Per image, PQ of each type whose truth holds at least one object of
    that type; a type absent from the image's truth is **skipped** (NaN) even
    when predicted (its false positives are not counted).  The image's mPQ
    is the mean over its present types (NaN when its truth has no typed
    object); the data set's mPQ is the mean over images with a value.  With
    ``groups`` (PanNuke's tissue types) it is the mean over groups of the
    mean over each group's images, as ``run.py`` reports it.  The per-class
    PanNuke PQ (``pq_pannuke``) is the mean over images where the type is
    present in the truth.
mPQ+ (CoNIC challenge, ``compute_stats.py``)
    ``TP, FP, FN, iou_sum`` of each type are **summed over all images**
    first (an image without the type on either side adds nothing), then PQ
    per type from the sums, then the mean over all ``T`` types.  A type absent
    from every image on both sides scores 0 and still counts in the mean.
bPQ (class-agnostic, PanNuke)
    PQ of the instance maps with types ignored, per image; an image whose
    truth has no object is skipped (NaN); the data set's bPQ is the mean over
    the other images (over groups first, with ``groups``).
Detection F1, precision, recall per type
    From the summed counts at IoU > 0.5: ``F1 = 2TP / (2TP + FP + FN)``,
    which equals ``RQ`` by definition (reported under both names because
    readers look for either), ``precision = TP / (TP + FP)``,
    ``recall = TP / (TP + FN)`` (0 when the denominator is 0).  This is the
    IoU-matched F1, not HoVer-Net's centroid-distance ``F_d``/``F_t``.
Stuff IoU
    Per stuff class ``s``: ``|T_s & P_s| / |T_s | P_s|`` of the pixels whose
    class-map value is ``s``.  Per image: NaN when ``s`` is on neither side.
    Per data set: intersections and unions summed over images (so large
    regions weigh more), 0 when ``s`` is never on either side.
"""

from __future__ import annotations

import math

import numpy as np

from Functions.data.panoptic_io import majority_types  # noqa: F401  (re-exported: the object-typing rule)
from Functions.metrics.instance import iou_matrix, match


def _check_maps(inst, cls, num_classes: int, stuff_classes: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    i = np.asarray(inst)
    c = np.asarray(cls)
    if i.shape != c.shape:
        raise ValueError(f"the {side} instance map {i.shape} and class map {c.shape} differ in shape")
    for name, a in (("instance", i), ("class", c)):
        if a.size and not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
            if not np.array_equal(a, np.round(a)):
                raise ValueError(f"the {side} {name} map holds non-integer values")
        if a.size and a.min() < 0:
            raise ValueError(f"the {side} {name} map holds negative values")
    top = num_classes + stuff_classes
    if c.size and int(c.max()) > top:
        raise ValueError(f"the {side} class map holds class {int(c.max())}, above the {num_classes} object "
                         f"type(s) + {stuff_classes} stuff class(es) = {top}; pass the right class counts")
    return i.astype(np.int64), c.astype(np.int64)


def pq_from_counts(tp: float, fp: float, fn: float, iou_sum: float) -> dict[str, float]:
    """``{"pq", "sq", "rq"}`` from matching counts (exact; all-zero counts give 0)."""
    sq = iou_sum / tp if tp > 0 else 0.0
    den = tp + 0.5 * fp + 0.5 * fn
    rq = tp / den if den > 0 else 0.0
    return {"pq": float(sq * rq), "sq": float(sq), "rq": float(rq)}


def _counts(true_inst: np.ndarray, pred_inst: np.ndarray) -> dict[str, float]:
    iou = iou_matrix(true_inst, pred_inst)
    ti, pj = match(iou, 0.5)
    tp = len(ti)
    return {"n_true": iou.shape[0], "n_pred": iou.shape[1], "tp": tp, "fp": iou.shape[1] - tp,
            "fn": iou.shape[0] - tp, "iou_sum": float(iou[ti, pj].sum())}


def image_panoptic_stats(true_inst, true_cls, pred_inst, pred_cls, num_classes: int,
                         stuff_classes: int = 0) -> dict:
    """Matching counts of one image (see the module docstring).

    Returns ``{"binary": counts, "things": [counts of type 1..T], "stuff":
    [(intersection, union, true pixels, predicted pixels) of stuff 1..S]}``
    where ``counts = {n_true, n_pred, tp, fp, fn, iou_sum}``.
    """
    if num_classes < 1 or stuff_classes < 0:
        raise ValueError(f"num_classes must be >= 1 and stuff_classes >= 0, got {num_classes}, {stuff_classes}")
    ti, tc = _check_maps(true_inst, true_cls, num_classes, stuff_classes, "true")
    pi, pc = _check_maps(pred_inst, pred_cls, num_classes, stuff_classes, "predicted")
    if ti.shape != pi.shape:
        raise ValueError(f"true maps {ti.shape} and predicted maps {pi.shape} differ in shape")
    things = [_counts(np.where(tc == c, ti, 0), np.where(pc == c, pi, 0)) for c in range(1, num_classes + 1)]
    stuff = []
    for s in range(num_classes + 1, num_classes + stuff_classes + 1):
        t, p = tc == s, pc == s
        stuff.append((int((t & p).sum()), int((t | p).sum()), int(t.sum()), int(p.sum())))
    return {"binary": _counts(ti, pi), "things": things, "stuff": stuff}


def _nanmean(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def image_row(stats: dict) -> dict:
    """One image's scores from :func:`image_panoptic_stats`: ``bpq``, ``mpq`` and per type/stuff values.

    Keys: ``n_true, n_pred, bpq, bsq, brq, mpq`` then ``pq_k, sq_k, rq_k`` for
    each type ``k`` (1-based; NaN where the type is absent from the truth -
    PanNuke's rule) and ``iou_s`` for each stuff class (NaN when on neither side).
    """
    b = stats["binary"]
    row = {"n_true": b["n_true"], "n_pred": b["n_pred"]}
    bq = pq_from_counts(b["tp"], b["fp"], b["fn"], b["iou_sum"]) if b["n_true"] else \
        {"pq": float("nan"), "sq": float("nan"), "rq": float("nan")}
    row.update({"bpq": bq["pq"], "bsq": bq["sq"], "brq": bq["rq"]})
    per = []
    for k, c in enumerate(stats["things"], start=1):
        q = pq_from_counts(c["tp"], c["fp"], c["fn"], c["iou_sum"]) if c["n_true"] else \
            {"pq": float("nan"), "sq": float("nan"), "rq": float("nan")}
        per.append(q)
    row["mpq"] = _nanmean([q["pq"] for q in per])
    for k, q in enumerate(per, start=1):
        row.update({f"pq_{k}": q["pq"], f"sq_{k}": q["sq"], f"rq_{k}": q["rq"]})
    for s, (inter, union, _, _) in enumerate(stats["stuff"], start=1):
        row[f"iou_{s}"] = inter / union if union else float("nan")
    return row


def _group_mean(values, groups) -> float:
    if groups is None:
        return _nanmean(values)
    groups = list(groups)
    if len(groups) != len(values):
        raise ValueError(f"{len(groups)} group labels for {len(values)} images")
    means = [_nanmean([v for v, g in zip(values, groups) if g == key]) for key in dict.fromkeys(groups)]
    return _nanmean(means)


def panoptic_scores(trues, preds, num_classes: int, stuff_classes: int = 0, names=None, class_names=None,
                    groups=None) -> dict:
    """Score a data set: per-image table, per-class table and a summary.

    ``trues``/``preds``: sequences of ``(instance map, class map)`` pairs (or
    ``(H, W, 2)`` arrays).  ``class_names``: ``T + S`` names (default
    ``type_1.., stuff_1..``).  ``groups``: optional label per image (PanNuke
    tissue types) for mPQ and bPQ.  Returns ``{"images": DataFrame,
    "classes": DataFrame, "summary": dict}`` - see the module docstring for
    every definition.  The per-image table ends with a ``mean`` row (NaNs
    skipped); the per-class table with a ``mean`` row over the object types
    (its ``pq`` is mPQ+) and stuff classes (its ``iou`` the mean stuff IoU).
    """
    import pandas as pd

    trues, preds = list(trues), list(preds)
    if len(trues) != len(preds):
        raise ValueError(f"{len(trues)} true maps but {len(preds)} predictions")
    names = list(names) if names is not None else [str(i) for i in range(len(trues))]
    labels = _class_labels(num_classes, stuff_classes, class_names)
    rows, all_stats = [], []
    for name, t, p in zip(names, trues, preds):
        (t_i, t_c), (p_i, p_c) = _split(t), _split(p)
        st = image_panoptic_stats(t_i, t_c, p_i, p_c, num_classes, stuff_classes)
        all_stats.append(st)
        rows.append({"image": name, **image_row(st)})
    images = pd.DataFrame(rows)
    rename = {f"{m}_{k}": f"{m}_{labels[k - 1]}" for k in range(1, num_classes + 1) for m in ("pq", "sq", "rq")}
    rename.update({f"iou_{s}": f"iou_{labels[num_classes + s - 1]}" for s in range(1, stuff_classes + 1)})
    class_rows = []
    for k in range(1, num_classes + 1):
        tot = {key: float(sum(st["things"][k - 1][key] for st in all_stats))
               for key in ("n_true", "n_pred", "tp", "fp", "fn", "iou_sum")}
        q = pq_from_counts(tot["tp"], tot["fp"], tot["fn"], tot["iou_sum"])
        per_image = [r[f"pq_{k}"] for r in rows]
        class_rows.append({
            "class": labels[k - 1], "id": k, "kind": "object",
            "images_present": int(sum(st["things"][k - 1]["n_true"] > 0 for st in all_stats)),
            **{key: int(v) if key != "iou_sum" else v for key, v in tot.items()},
            **q, "f1": q["rq"],
            "precision": tot["tp"] / (tot["tp"] + tot["fp"]) if tot["tp"] + tot["fp"] else 0.0,
            "recall": tot["tp"] / (tot["tp"] + tot["fn"]) if tot["tp"] + tot["fn"] else 0.0,
            "pq_pannuke": _nanmean(per_image), "iou": float("nan")})
    for s in range(1, stuff_classes + 1):
        inter = sum(st["stuff"][s - 1][0] for st in all_stats)
        union = sum(st["stuff"][s - 1][1] for st in all_stats)
        class_rows.append({"class": labels[num_classes + s - 1], "id": num_classes + s, "kind": "stuff",
                           "images_present": int(sum(st["stuff"][s - 1][2] > 0 for st in all_stats)),
                           "iou": inter / union if union else 0.0})
    classes = pd.DataFrame(class_rows)
    for col in ("id", "images_present", "n_true", "n_pred", "tp", "fp", "fn"):
        if col in classes:
            classes[col] = classes[col].astype("Int64")      # counts stay integers beside the stuff rows' blanks
    things = classes[classes["kind"] == "object"]
    stuff = classes[classes["kind"] == "stuff"]
    mean_row = {"class": "mean", "kind": "mean"}
    for col in ("pq", "sq", "rq", "f1", "precision", "recall", "pq_pannuke"):
        mean_row[col] = float(things[col].mean())
    mean_row["iou"] = float(stuff["iou"].mean()) if len(stuff) else float("nan")
    classes = pd.concat([classes, pd.DataFrame([mean_row])], ignore_index=True)
    mpq = _group_mean(list(images["mpq"]) if rows else [], groups)
    bpq = _group_mean(list(images["bpq"]) if rows else [], groups)
    if rows:
        numeric = [c for c in images.columns if c != "image"]
        mean = {"image": "mean", **{c: _nanmean(images[c].astype(float)) for c in numeric}}
        images = pd.concat([images, pd.DataFrame([mean])], ignore_index=True)
    images = images.rename(columns=rename)
    summary = {
        "n_images": len(rows), "num_classes": num_classes, "stuff_classes": stuff_classes, "class_names": labels,
        "mpq": mpq, "mpq_plus": float(mean_row["pq"]), "bpq": bpq,
        "per_class": {r["class"]: {k: r[k] for k in ("pq", "sq", "rq", "f1", "precision", "recall", "pq_pannuke",
                                                    "tp", "fp", "fn", "images_present")}
                      for r in class_rows if r["kind"] == "object"},
        "stuff_iou": {r["class"]: r["iou"] for r in class_rows if r["kind"] == "stuff"},
        "mean_stuff_iou": mean_row["iou"],
    }
    return {"images": images, "classes": classes, "summary": summary}


def _class_labels(num_classes: int, stuff_classes: int, class_names) -> list[str]:
    if class_names is None:
        return [f"type_{k}" for k in range(1, num_classes + 1)] + [f"stuff_{s}" for s in range(1, stuff_classes + 1)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes + stuff_classes or len(set(names)) != len(names):
        raise ValueError(f"class_names needs {num_classes + stuff_classes} distinct names (object types, then "
                         f"stuff classes), got {len(names)}: {', '.join(names)}")
    return names


def _split(item) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return np.asarray(item[0]), np.asarray(item[1])
    a = np.asarray(item)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"a panoptic map is (H, W, 2) [instance, class] or a pair of (H, W) maps, got {a.shape}")
    return a[..., 0], a[..., 1]
