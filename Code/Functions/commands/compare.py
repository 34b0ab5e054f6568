"""``python -m Functions compare``: several architectures on the same split with the same budget.

Each model is trained with ``train`` into ``OUT/<model>/`` (a full run
folder); ``OUT/comparison.csv``, ``comparison.md`` and ``comparison.png``
put Dice, IoU, HD95, parameters, seconds per epoch and inference time side
by side.
"""

from __future__ import annotations

import argparse

NAME = "compare"
HELP = "train several models on the same split and budget and tabulate Dice, IoU, HD95, size and speed"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.segmentation import TrainConfig
    from Functions.commands.options import parse_option

    d = TrainConfig()
    p.add_argument("--models", required=True, metavar="A,B,...",
                   help="comma-separated architectures, e.g. unet,unet_plus_plus,attention_unet")
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="DIR", help="folder of images and masks (default: Data/sample/nuclei)")
    src.add_argument("--dataset", metavar="NAME", help="a registered dataset (see `python -m Functions datasets`)")
    src.add_argument("--data-dir", metavar="DIR", help="where registered datasets are stored")
    src.add_argument("--image-size", type=int, default=d.image_size, metavar="N", help="(%(default)s)")
    src.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F")
    src.add_argument("--test-fraction", type=float, default=d.test_fraction, metavar="F")
    src.add_argument("--augment", nargs="?", const="default", metavar="PRESET", help="augment training batches")
    m = p.add_argument_group("budget (the same for every model)")
    m.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="(%(default)s)")
    m.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="(%(default)s)")
    m.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate", metavar="LR",
                   help="(%(default)s)")
    m.add_argument("--loss", default=d.loss, metavar="NAME", help="(%(default)s)")
    m.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    m.add_argument("--model-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="option passed to every model (each must accept it), e.g. base_filters=16")
    m.add_argument("--no-jit", dest="jit_compile", action="store_false", default=d.jit_compile,
                   help="disable XLA compilation (faster start for tiny runs)")
    m.add_argument("--progress-every", type=int, default=0, metavar="N",
                   help="progress.png every N epochs in each run (default 0: off)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="new folder for the comparison (default runs/compare-<time>)")
    o.add_argument("--workers", type=int, default=d.workers, help="input-pipeline threads (%(default)s)")
    o.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")


def run(args) -> int:
    from Functions.apps.compare import compare_models, parse_models
    from Functions.engine.segmentation import TrainConfig

    models = parse_models(args.models)
    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and k not in ("model_options", "out")}
    values["model_options"] = dict(args.model_option)
    if values.get("verbose") is None:
        values["verbose"] = "auto"
    compare_models(models, TrainConfig(**values), out=args.out)
    return 0
