"""DSB2018 at native resolution: patch training, sliding-window prediction, Dice on each test image at its
original size.

    python benchmarks/dsb_native.py [--data ../shared/datasets/dsb2018/stage1_train] [--minutes 15]
        [--patch 128] [--epochs 60] [--subset N] [--seed 42]

Seeded split of the 664 samples: 20 % test, 10 % validation, 70 % training (the same fractions and seed as the
resized-path figures in benchmarks/LOG.md, so the test images are the same 133).  Every image is kept at
its own size (256x256 up to 1024x1024); each epoch draws ``--patches-per-image`` random ``PATCH x PATCH``
patches per training image (one in three centred on a nucleus), with flips and 90-degree turns.  The number
of epochs is fitted to ``--minutes`` of training after the first epoch (cosine learning-rate decay over
the epochs that fit).  The model is the U-Net of ``train`` (base 16, depth 4, 3 channels,
``dark_background`` normalisation, BCE + Dice, Adam 2e-3).  Test images are predicted whole by sliding
window (overlap 0.5, Gaussian weights) and scored at their original resolution; the mean Dice and IoU and the
worst decile (image, size, Dice) are printed.  A quick check: ``--subset 12 --epochs 1``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "dsb2018" / "stage1_train"))
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=60, help="upper bound on the epochs")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--patches-per-image", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--subset", type=int, default=None, help="use only N samples (a quick check)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tta", action="store_true", help="average the flips at test time")
    args = parser.parse_args()

    import keras

    from Functions import losses
    from Functions.base.runtime import set_seed
    from Functions.data.augmentation import get_augmenter
    from Functions.data.discovery import find_samples, load_sample
    from Functions.data.native import load_native, prepare_native
    from Functions.data.patches import patch_dataset
    from Functions.data.sources import seeded_subset
    from Functions.data.splits import split_indices
    from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict
    from Functions.metrics.segmentation import per_image_metrics
    from Functions.metrics.streaming import Dice
    from Functions.models.unet import build_unet

    t_start = time.perf_counter()
    samples = seeded_subset(find_samples(args.data), args.subset, args.seed)
    tr, va, te = split_indices(len(samples), 0.1, 0.2, seed=args.seed)
    train_s = [samples[i] for i in tr]
    test_s = [samples[i] for i in te]
    print(f"DSB2018 {len(samples)} samples: train {len(tr)}, validation {len(va)} (unused here), test {len(te)}; "
          f"patch {args.patch}, {args.patches_per_image} patch(es) per image per epoch, seed {args.seed}")
    norm, channels = "dark_background", 3
    data = load_native(train_s, channels, norm)
    print(data.message)
    set_seed(args.seed)
    model = build_unet((None, None, channels), 1)
    total = {"epochs": args.epochs}

    def schedule(epoch, lr=None):
        n = max(1, total["epochs"])
        return float(args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(epoch, n) / n))))

    class Budget(keras.callbacks.Callback):
        """Fits the epochs to the budget from the second epoch's time (the first includes tracing)."""

        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            took, left = now - self.t, args.minutes * 60 - (now - self.t0)
            if epoch <= 1:
                fit = epoch + 1 + int(max(left, 0) // max(took, 1e-6))
                total["epochs"] = max(1, min(args.epochs, fit))
                print(f"epoch {epoch + 1} took {took:.0f} s -> {total['epochs']} epoch(s) fit {args.minutes:g} min")
            if epoch + 1 >= total["epochs"] or left < 0:
                self.model.stop_training = True

    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=losses.get_loss("bce_dice"), metrics=[Dice()],
                  jit_compile=False)
    ds = patch_dataset(data.images, data.masks, args.patch, batch_size=args.batch,
                       patches_per_epoch=args.patches_per_image * len(train_s), augmenter=get_augmenter("light"),
                       seed=args.seed, workers=2)
    t0 = time.perf_counter()
    hist = model.fit(ds, epochs=args.epochs, verbose=2,
                     callbacks=[Budget(), keras.callbacks.LearningRateScheduler(schedule)])
    train_s_elapsed = time.perf_counter() - t0
    print(f"trained {len(hist.history['loss'])} epochs in {train_s_elapsed:.0f} s "
          f"(final train Dice {hist.history['dice'][-1]:.4f})")

    fn = keras_predict_fn(model)
    trues, preds, names, sizes = [], [], [], []
    t0 = time.perf_counter()
    for s in test_s:
        image, mask = load_sample(s)
        x, _ = prepare_native(image, mask, channels, norm)
        p = sliding_window_predict(fn, x, args.patch, overlap=args.overlap, batch_size=8, tta=args.tta)
        trues.append((mask > 0).astype(np.uint8))
        preds.append((p[..., 0] >= 0.5).astype(np.uint8))
        names.append(s.id[:12])
        sizes.append(f"{mask.shape[1]}x{mask.shape[0]}")
    table = per_image_metrics(trues, preds, names=names)
    table["size"] = sizes
    print(f"predicted {len(test_s)} test images whole in {time.perf_counter() - t0:.0f} s")
    print(f"TEST at native resolution ({len(test_s)} images): mean Dice {table['dice'].mean():.4f}  "
          f"IoU {table['iou'].mean():.4f}  median Dice {table['dice'].median():.4f}")
    worst = table.sort_values("dice").head(max(1, len(table) // 10))
    print("worst decile:")
    for r in worst.itertuples():
        print(f"  {r.image}  {r.size:>9}  Dice {r.dice:.4f}")
    print(f"total wall clock {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
