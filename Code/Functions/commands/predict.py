"""``python -m Functions predict``: masks for new images of any size with a trained model.

Each image is prepared as in training (the run's ``config.json`` beside the
model: channels, normalisation, CLAHE), resized to the model's input, and
its mask is resized back to the image's own size.  Masks are written as
``OUT/<image name>.png`` (0 background, 255 foreground); ``--overlay`` adds
``OUT/overlays/<image name>.png``; ``OUT/predictions.csv`` lists every image
with its size and foreground fraction.
"""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "predict masks for an image or a folder of images (any size) with a trained model"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="FILE",
                   help="model.keras written by `train` (or its run folder)")
    p.add_argument("--images", required=True, metavar="PATH", help="an image file or a folder of images")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for the masks (never overwritten)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="probability threshold (default: the run's, else 0.5)")
    p.add_argument("--overlay", action="store_true", help="also write each image with its mask drawn on it")
    p.add_argument("--tta", action="store_true", help="average the predictions over flips (4x slower)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="(%(default)s)")


def run(args) -> int:
    from Functions.base.errors import UserError
    from Functions.inference.predictor import predict_folder

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    table = predict_folder(args.model, args.images, args.out, threshold=args.threshold, overlay=args.overlay,
                           batch_size=args.batch_size, tta=args.tta)
    sizes = {(int(r.width), int(r.height)) for r in table.itertuples()}
    print(f"{len(table)} mask(s) -> {args.out} ({len(sizes)} image size(s); mean foreground "
          f"{table['foreground'].mean():.1%})")
    return 0
