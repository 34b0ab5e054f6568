"""DSB2018 instance segmentation: a 3-class U-Net + watershed against a binary U-Net + connected components.

Both models are trained in the same run, on the same seeded 80/20 split of
``stage1_train`` (664 images), each under the same wall-clock budget, then
scored on the held-out 20 % with the DSB2018 metric and the other instance
measures of :mod:`Functions.metrics.instance` (labels from the per-nucleus
mask PNGs, at each image's original size).

Pipeline (identical for both models except the head, the target and the decoder):

* every image to one grey channel, min-max normalised and inverted when its
  background is bright (brightfield/H&E nuclei then look like fluorescence,
  :func:`Functions.data.preprocessing.normalize` ``"dark_background"``),
  resized to ``--size`` (area interpolation); label maps resized by nearest neighbour;
* training on random ``--patch`` crops with random flips and 90-degree
  rotations, one crop per training image per epoch, seeded by ``(seed, epoch)``;
* instance model: U-Net with a 3-class softmax head (background / interior /
  boundary, :func:`Functions.data.instance_targets.three_class_target`), loss
  ``cce_dice`` with class weights ``--class-weights``; decoded by
  marker-controlled watershed (:func:`Functions.inference.instances.three_class_to_labels`);
* baseline: the same U-Net with a sigmoid head on the merged mask, loss
  ``bce_dice``; decoded by 8-connected components of ``p >= 0.5``;
* prediction on the whole ``--size`` image, probabilities resized back to the
  original size (linear) before decoding.

Run (from the repository root; prints a table, writes nothing unless ``--out``)::

    python benchmarks/dsb_instance.py                       # full: 664 images, 15 min per model
    python benchmarks/dsb_instance.py --subset 12 --epochs 1 --minutes 1   # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "dsb2018" / "stage1_train"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="stage1_train folder (default: %(default)s)")
    p.add_argument("--subset", type=int, default=None, help="use only the first N samples (smoke runs)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per model (%(default)s)")
    p.add_argument("--epochs", type=int, default=1000, help="at most this many epochs per model (%(default)s)")
    p.add_argument("--size", type=int, default=256, help="images are resized to SIZE x SIZE (%(default)s)")
    p.add_argument("--patch", type=int, default=128, help="training crop side (%(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--class-weights", type=float, nargs=3, default=(1.0, 1.0, 2.0),
                   metavar=("BG", "INTERIOR", "BOUNDARY"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("instance", "baseline"), help="train only one of the two models")
    p.add_argument("--out", help="write the per-image table of both models to this CSV")
    return p.parse_args(argv)


def load(root: Path, subset: int | None, size: int):
    """Images ``(N, size, size, 1)`` float32, label maps at ``size`` and at the original size, names."""
    from Functions.data.discovery import find_samples
    from Functions.data.imaging import read_image
    from Functions.data.instances import read_instances
    from Functions.data.preprocessing import normalize, resize_image, resize_mask, to_channels

    samples = find_samples(root)
    if subset:
        samples = samples[:subset]
    xs, labs_small, labs_full, names = [], [], [], []
    for s in samples:
        img = read_image(s.image)
        lab = read_instances(s, img.shape[:2])
        x = normalize(to_channels(img, 1), "dark_background")
        xs.append(resize_image(x, size).astype(np.float32))
        labs_small.append(resize_mask(lab.astype(np.int32), size))
        labs_full.append(lab)
        names.append(s.id)
    return np.stack(xs), labs_small, labs_full, names


def crops(x, y, patch, rng):
    """One random ``patch`` crop per image, random flips / 90-degree rotations: ``(N, p, p, 1)``, ``(N, p, p)``."""
    n, h, w = x.shape[:3]
    xo = np.empty((n, patch, patch, x.shape[-1]), np.float32)
    yo = np.empty((n, patch, patch), y.dtype)
    for i in range(n):
        r, c = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        a, b = x[i, r:r + patch, c:c + patch], y[i, r:r + patch, c:c + patch]
        k = int(rng.integers(4))
        a, b = np.rot90(a, k), np.rot90(b, k)
        if rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        xo[i], yo[i] = a, b
    return xo, yo


def train(kind, x, targets, args, log):
    """Train one model under the time budget; returns a model that takes ``size x size`` inputs."""
    import keras

    from Functions.losses import get_loss
    from Functions.models import build_model

    keras.utils.set_random_seed(args.seed)
    classes = 3 if kind == "instance" else 1
    opts = dict(depth=args.depth, base_filters=args.base_filters)
    model = build_model("unet", (args.patch, args.patch, 1), num_classes=classes, **opts)
    loss = (get_loss("cce_dice", class_weights=list(args.class_weights)) if kind == "instance"
            else get_loss("bce_dice"))
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=loss)
    start = time.perf_counter()
    budget = 60.0 * args.minutes
    epoch, last = 0, 0.0
    # start an epoch only when it fits in the budget at the pace of the previous one
    while epoch < args.epochs and time.perf_counter() - start + last <= budget:
        t_epoch = time.perf_counter()
        rng = np.random.default_rng([args.seed, epoch])
        xb, yb = crops(x, targets, args.patch, rng)
        if kind == "baseline":
            yb = yb[..., None].astype(np.float32)
        h = model.fit(xb, yb, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
        epoch += 1
        last = time.perf_counter() - t_epoch
        log(f"  {kind}: epoch {epoch}  loss {h.history['loss'][-1]:.4f}  ({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    full = build_model("unet", (args.size, args.size, 1), num_classes=classes, **opts)
    full.set_weights(model.get_weights())
    return full, epoch, seconds


def predict_labels(kind, model, x, shapes, batch_size):
    from Functions.inference.instances import connected_components, three_class_to_labels
    from Functions.inference.predictor import resize_probabilities

    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float32)
    out = []
    for p, shape in zip(probs, shapes):
        p = resize_probabilities(p, shape)
        out.append(three_class_to_labels(p) if kind == "instance" else connected_components(p[..., 0], 0.5, min_size=4))
    return out


def main(argv=None) -> int:
    args = parse(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: DSB2018 stage1_train not found at {root}; pass --root", file=sys.stderr)
        return 2

    from Functions.data.instance_targets import three_class_target
    from Functions.data.splits import split_indices
    from Functions.evaluation.instance import score_instances

    def log(msg):
        print(msg, flush=True)

    t0 = time.perf_counter()
    x, labs_small, labs_full, names = load(root, args.subset, args.size)
    train_idx, _, test_idx = split_indices(len(x), val_fraction=0.0, test_fraction=0.2, seed=args.seed)
    log(f"loaded {len(x)} images in {time.perf_counter() - t0:.0f} s; train {len(train_idx)}, test {len(test_idx)} "
        f"(seed {args.seed}); {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    three = np.stack([three_class_target(labs_small[i]) for i in train_idx])
    fg = np.stack([(labs_small[i] > 0).astype(np.uint8) for i in train_idx])
    xt = x[train_idx]
    shapes = [labs_full[i].shape for i in test_idx]
    trues = [labs_full[i] for i in test_idx]
    test_names = [names[i] for i in test_idx]

    results, tables = {}, []
    for kind, targets in (("instance", three), ("baseline", fg)):
        if args.only and kind != args.only:
            continue
        model, epochs, seconds = train(kind, xt, targets, args, log)
        t1 = time.perf_counter()
        preds = predict_labels(kind, model, x[test_idx], shapes, args.batch_size)
        table = score_instances(trues, preds, names=test_names)
        table.insert(0, "model", kind)
        tables.append(table)
        results[kind] = (table.iloc[-1], epochs, seconds, time.perf_counter() - t1)

    cols = ["dsb_score", "ap50", "ap75", "f1_50", "pq", "sq", "rq", "aji", "pixel_dice", "n_true", "n_pred"]
    print()
    print(f"DSB2018 stage1_train, {len(test_idx)} held-out images (seed {args.seed}), images at {args.size} px, "
          f"U-Net depth {args.depth} base {args.base_filters}")
    print("| model | epochs | train s | predict+decode s | " + " | ".join(cols) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(cols))
    for kind, (row, epochs, seconds, pred_s) in results.items():
        name = "3-class U-Net + watershed" if kind == "instance" else "binary U-Net + connected components"
        print(f"| {name} | {epochs} | {seconds:.0f} | {pred_s:.0f} | " + " | ".join(f"{row[c]:.4f}" for c in cols)
              + " |")
    print(f"total wall clock {time.perf_counter() - t0:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    if args.out:
        import pandas as pd

        pd.concat(tables, ignore_index=True).to_csv(args.out, index=False)
        print(f"per-image table -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
