"""The watershed with and without the foreground pieces that hold no marker, on one trained instance run.

The decoder keeps every foreground component as an object: a piece of foreground whose interior never
reached the marker threshold (a faint or small nucleus) becomes an object of its own
(:func:`Functions.inference.instances.with_unmarked_components`).  Before that change such pieces vanished.
This script predicts the run's test split once (with the run's own test-time flips and its tuned decoder
settings, per kind of image) and decodes every probability map both ways, so the two rows differ only in
that rule::

    python benchmarks/watershed_unmarked.py runs/dsb-planned          # a run of train --task instance

Prints one table: DSB2018 score, AP50, AP75, F1, PQ, AJI, pixel Dice and objects predicted, each image
scored at its original size against its true instances, then averaged over the split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ["dsb_score", "ap50", "ap75", "f1_50", "pq", "aji", "pixel_dice"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run folder of `train --task instance`")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    import numpy as np

    from Functions.base.runs import read_run_settings
    from Functions.evaluation import instance as evaluation
    from Functions.evaluation.evaluate import run_samples
    from Functions.inference import instances
    from Functions.inference.predictor import load_predictor

    run = Path(args.run)
    settings = read_run_settings(run)
    samples, split = run_samples(run, settings, split=args.split)
    predictor = load_predictor(run, flag="run")
    tta = bool(settings.get("tta"))

    keep_all = instances.with_unmarked_components
    decode = instances.three_class_to_labels
    without: list = []

    def both_ways(probabilities, **kw):              # the new rule returned, the old one kept aside
        instances.with_unmarked_components = lambda labels, foreground: np.asarray(labels, np.int64)
        try:
            without.append(decode(probabilities, **kw))
        finally:
            instances.with_unmarked_components = keep_all
        return decode(probabilities, **kw)

    instances.three_class_to_labels = both_ways
    trues, kept = [], []
    try:
        for _, _, images, true in evaluation.instance_batches(list(samples), args.batch_size):
            kept += instances.predict_instances(predictor, images, batch_size=args.batch_size, tta=tta)
            trues += true
    finally:
        instances.three_class_to_labels = decode

    print(f"{run} ({split} split, {len(trues)} images, original resolution, test-time flips {tta}; decoder "
          f"settings {json.dumps(getattr(predictor, 'decoder', None))[:200]})")
    print("| watershed | " + " | ".join(COLUMNS) + " | objects predicted (true) |")
    print("|---|" + "---:|" * (len(COLUMNS) + 1))
    n_true = sum(len(np.unique(t[t > 0])) for t in trues)
    for name, preds in (("markers only (before)", without), ("markers + unmarked pieces (now)", kept)):
        mean = evaluation.score_instances(trues, preds).iloc[-1]
        n_pred = sum(len(np.unique(q[q > 0])) for q in preds)
        print(f"| {name} | " + " | ".join(f"{float(mean[c]):.4f}" for c in COLUMNS) + f" | {n_pred:,} ({n_true:,}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
