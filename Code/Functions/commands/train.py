"""``python -m Functions train``: train a segmentation model (default: U-Net on the offline sample)."""

from __future__ import annotations

import argparse

from Functions.commands.options import add_data_source, add_engine_arguments, run_training
from Functions.data.preprocessing import NORMALIZATIONS

NAME = "train"
HELP = "train a segmentation model and report test Dice/IoU (no arguments: U-Net on the Data/ sample)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.segmentation import TrainConfig

    d = TrainConfig()
    src = p.add_argument_group("data")
    add_data_source(src, "nuclei")
    src.add_argument("--image-size", type=int, default=d.image_size, metavar="N", help="resize to N x N (%(default)s)")
    src.add_argument("--channels", type=int, choices=(1, 3), help="force 1 or 3 input channels (default: from data)")
    src.add_argument("--normalization", default=d.normalization,
                     choices=("auto", *NORMALIZATIONS),
                     help="per-image intensity normalisation (%(default)s: dark_background when the training "
                          "masks show a mix of dark-on-light and light-on-dark objects that the background "
                          "brightness predicts, as in DSB2018; minmax otherwise)")
    src.add_argument("--clahe", action="store_true", help="apply CLAHE contrast equalisation before resizing")
    src.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F")
    src.add_argument("--test-fraction", type=float, default=d.test_fraction, metavar="F")
    src.add_argument("--augment", nargs="?", const="default", default=d.augment, metavar="PRESET",
                     help="augment training batches: none, light (flips and 90-degree turns), default, strong "
                          "(%(default)s; bare flag = default)")
    add_engine_arguments(p, d, model_help="architecture (%(default)s); see `architectures`")
    s = p.add_argument_group("segmentation")
    s.add_argument("--loss", default=d.loss, metavar="NAME", help="loss (%(default)s): bce, dice, bce_dice, jaccard, "
                   "focal, tversky, focal_tversky")
    s.add_argument("--threshold", type=float, default=d.threshold, help="probability threshold for masks (%(default)s)")
    s.add_argument("--tta", action="store_true",
                   help="score the test split on the mean prediction over the four flips (test-time augmentation)")
    s.add_argument("--progress-every", type=int, default=d.progress_every, metavar="N",
                   help="draw progress.png (predictions on fixed validation images) every N epochs; 0 = off "
                        "(%(default)s)")


def config_from_args(args):
    from Functions.commands.options import config_from_args as build
    from Functions.engine.segmentation import TrainConfig

    return build(TrainConfig, args)


def run(args) -> int:
    from Functions.engine.segmentation import TrainConfig, resume_config, train

    return run_training(args, parser_factory=add_arguments, config_class=TrainConfig, train_fn=train,
                        resume_fn=resume_config)
