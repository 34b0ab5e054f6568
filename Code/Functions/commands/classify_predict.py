"""``python -m Functions classify-predict``: class probabilities for new images with a trained classifier."""

from __future__ import annotations

import argparse

NAME = "classify-predict"
HELP = "per-image class probabilities from a classify-train model (printed, or written with --out file.csv)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="FILE",
                   help="model.keras from a classify-train run (or the run folder; classes.json must sit beside it)")
    p.add_argument("--images", required=True, metavar="PATH",
                   help="an image file or a folder of images (searched recursively, *_mask* files skipped)")
    p.add_argument("--out", metavar="FILE.csv", help="write the table as CSV instead of printing it")
    p.add_argument("--gradcam", metavar="FILE.png", help="also save Grad-CAM heat maps of the images (first 16)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="(%(default)s)")


def run(args) -> int:
    from pathlib import Path

    from Functions.inference.classifier import list_images, load_classifier, predict_images
    from Functions.base.errors import UserError

    if args.out and Path(args.out).suffix.lower() != ".csv":
        raise UserError(f"--out {args.out} must end in .csv")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    loaded = load_classifier(args.model)
    files = list_images(args.images)
    table = predict_images(loaded, files, batch_size=args.batch_size)
    if args.out:
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        print(f"{len(table)} image(s) -> {out}")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.gradcam:
        _save_gradcam(args, table, loaded)
    return 0


def _save_gradcam(args, table, loaded) -> None:
    from pathlib import Path

    from Functions.inference.classifier import prepare_inputs
    from Functions.inference.gradcam import GradCAM
    from Functions.viz.plotting import plot_gradcam, pyplot

    model, info = loaded
    rows = table.head(16)
    x = prepare_inputs(list(rows["image"]), info)
    heat, _ = GradCAM(model)(x, batch_size=args.batch_size)
    titles = [f"{Path(p).name}\n{c} ({q:.2f})"
              for p, c, q in zip(rows["image"], rows["predicted"], rows["probability"])]
    out = Path(args.gradcam).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    pyplot().close(plot_gradcam(x, heat, titles=titles, path=out))
    print(f"Grad-CAM -> {out}")
