"""Sliding-window inference: throughput against a plain ``model.predict`` on the same tiles, and peak RSS of a
4000x3000 image.

    python benchmarks/sliding_window.py [--patch 256] [--image 1024] [--batch 4] [--rounds 3]
        [--big 4000x3000] [--big-filters 8]

Part 1 (same process, interleaved rounds, medians): a U-Net (base 16, depth 4) predicts a random
``IMAGE x IMAGE`` image through :func:`Functions.inference.sliding_window.sliding_window_predict` (overlap 0.5,
Gaussian weights, tiles batched) and, separately, the very same tiles stacked into one array through
``model.predict(tiles, batch_size=BATCH)``.  Tiles/s of both and their ratio are printed.

Part 2 (in a fresh child process, so the RSS is its own): a 4000x3000x1 uint8 image through sliding-window
prediction with a small U-Net (base ``--big-filters``), peak RSS before and after, and the bytes of the
accumulators (2 x 4000 x 3000 x 4).  Timings are measurements on whatever machine runs this, not reproducible.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(filters: int):
    from Functions.models.unet import build_unet

    return build_unet((None, None, 1), 1, base_filters=filters)


def throughput(args) -> None:
    from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict, tile_starts

    model = build(16)
    image = np.random.default_rng(0).uniform(size=(args.image, args.image, 1)).astype(np.float32)
    starts = tile_starts(args.image, args.patch, 0.5)
    tiles = np.stack([image[r:r + args.patch, c:c + args.patch] for r in starts for c in starts])
    n = len(tiles)
    fn = keras_predict_fn(model)
    # warm-up (tracing / compilation) of both paths
    sliding_window_predict(fn, image, args.patch, batch_size=args.batch)
    model.predict(tiles, batch_size=args.batch, verbose=0)
    sw, plain = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        sliding_window_predict(fn, image, args.patch, batch_size=args.batch)
        sw.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        model.predict(tiles, batch_size=args.batch, verbose=0)
        plain.append(n / (time.perf_counter() - t))
    s, p = float(np.median(sw)), float(np.median(plain))
    print(f"U-Net base 16, {args.image}x{args.image} image, patch {args.patch}, overlap 0.5: {n} tiles, "
          f"batch {args.batch}, median of {args.rounds} interleaved rounds")
    print(f"  sliding_window_predict: {s:.2f} tiles/s (rounds: {', '.join(f'{v:.2f}' for v in sw)})")
    print(f"  model.predict on the same tiles: {p:.2f} tiles/s (rounds: {', '.join(f'{v:.2f}' for v in plain)})")
    print(f"  ratio sliding / plain: {s / p:.3f}")


def big(args) -> None:
    from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict

    h, w = (int(v) for v in args.big.lower().split("x"))
    model = build(args.big_filters)
    fn = keras_predict_fn(model)
    fn(np.zeros((args.batch, args.patch, args.patch, 1), np.float32))      # build/trace
    before = peak_rss_mb()
    image = np.random.default_rng(0).integers(0, 255, (h, w, 1), dtype=np.uint8)
    t = time.perf_counter()
    out = sliding_window_predict(fn, image, args.patch, batch_size=args.batch)
    dt = time.perf_counter() - t
    after = peak_rss_mb()
    acc = 2 * h * w * 4 / 2 ** 20
    print(f"{h}x{w}x1 uint8 image ({image.nbytes / 2 ** 20:.0f} MB), U-Net base {args.big_filters}, patch "
          f"{args.patch}, overlap 0.5, batch {args.batch}: output {out.shape}, {dt:.1f} s")
    print(f"  peak RSS: {before:.0f} MB with the model loaded, {after:.0f} MB after predicting "
          f"(+{after - before:.0f} MB; accumulators {acc:.0f} MB, image {image.nbytes / 2 ** 20:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--image", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", default="4000x3000")
    parser.add_argument("--big-filters", type=int, default=8)
    parser.add_argument("--only", choices=("throughput", "big"))
    args = parser.parse_args()
    if args.only == "throughput":
        throughput(args)
    elif args.only == "big":
        big(args)
    else:
        argv = [a for a in sys.argv[1:]]
        for part in ("throughput", "big"):
            subprocess.run([sys.executable, __file__, *argv, "--only", part], check=True)


if __name__ == "__main__":
    main()
