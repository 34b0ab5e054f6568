"""``python -m Functions train``: train a segmentation model (default: U-Net on the offline sample)."""

from __future__ import annotations

import argparse
import ast

from Functions.base.errors import UserError
from Functions.data.preprocessing import NORMALIZATIONS

NAME = "train"
HELP = "train a segmentation model and report test Dice/IoU (no arguments: U-Net on the Data/ sample)"


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (``depth=3``, ``dropout=0.1``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip().replace("-", "_"), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip().replace("-", "_"), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.segmentation import TrainConfig

    d = TrainConfig()
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="DIR", help="folder of images and masks (default: Data/sample/nuclei)")
    src.add_argument("--dataset", metavar="NAME", help="a registered dataset (see `python -m Functions datasets`)")
    src.add_argument("--data-dir", metavar="DIR", help="where registered datasets are stored (default $MIP_DATA_DIR)")
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
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--model", default=d.model, metavar="NAME", help="architecture (%(default)s); see `architectures`")
    m.add_argument("--model-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="architecture option, repeatable (e.g. base_filters=32, deep_supervision=True)")
    m.add_argument("--loss", default=d.loss, metavar="NAME", help="loss (%(default)s): bce, dice, bce_dice, jaccard, "
                   "focal, tversky, focal_tversky")
    m.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="(%(default)s)")
    m.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="(%(default)s)")
    m.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate", metavar="LR",
                   help="Adam learning rate (%(default)s); the peak of the cosine schedule")
    m.add_argument("--lr-schedule", default=d.lr_schedule, choices=("cosine", "constant"),
                   help="cosine: one warm-up epoch, then cosine decay to 1%% of --lr by the last epoch; "
                        "constant: --lr throughout (also what --reduce-lr-patience uses) (%(default)s)")
    m.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="train at most this long (first-epoch compilation and validation included): the "
                        "cosine schedule is fitted to the epochs that fit, up to --epochs")
    m.add_argument("--tta", action="store_true",
                   help="score the test split on the mean prediction over the four flips (test-time augmentation)")
    m.add_argument("--threshold", type=float, default=d.threshold, help="probability threshold for masks (%(default)s)")
    m.add_argument("--monitor", default=d.monitor, help="metric that picks the best model (%(default)s)")
    m.add_argument("--no-jit", dest="jit_compile", action="store_false", default="auto",
                   help="disable XLA compilation")
    m.add_argument("--seed", type=int, default=d.seed, help="seed for split, initialisation, augmentation (%(default)s)")
    m.add_argument("--deterministic", action="store_true",
                   help="also ask the backend for deterministic kernels (GPU; slower, turns XLA off)")
    m.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute with float32 weights on a GPU (faster, less memory)")
    c = p.add_argument_group("callbacks")
    c.add_argument("--patience", type=int, default=d.patience, metavar="N",
                   help="stop after N epochs without improvement of --monitor (default 0: off)")
    c.add_argument("--reduce-lr-patience", type=int, default=d.reduce_lr_patience, metavar="N",
                   help="multiply the learning rate by --reduce-lr-factor after N epochs without improvement "
                        "(default 0: off)")
    c.add_argument("--reduce-lr-factor", type=float, default=d.reduce_lr_factor, metavar="F", help="(%(default)s)")
    c.add_argument("--progress-every", type=int, default=d.progress_every, metavar="N",
                   help="draw progress.png (predictions on fixed validation images) every N epochs; 0 = off "
                        "(%(default)s)")
    c.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to RUN/tensorboard")
    g = p.add_argument_group("several devices")
    g.add_argument("--distribute", action="store_true",
                   help="data-parallel training over all local GPUs (TensorFlow MirroredStrategy, or "
                        "MultiWorkerMirroredStrategy when TF_CONFIG is set; JAX DataParallel); "
                        "--batch-size is then per device and the global batch is batch x devices")
    g.add_argument("--cpu-devices", type=int, metavar="N",
                   help="split the CPU into N devices, to try --distribute without GPUs")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="new run folder (default runs/<model>-<time>); never overwritten")
    o.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last completed epoch, with its saved settings")
    o.add_argument("--workers", type=int, default=d.workers, help="input-pipeline threads (%(default)s)")
    o.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")


def config_from_args(args):
    from Functions.engine.segmentation import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and k != "model_options"}
    values["model_options"] = dict(args.model_option)
    if values.get("verbose") is None:
        values["verbose"] = "auto"
    return TrainConfig(**values)


#: Options that may accompany --resume (they change how the run is shown, not what it computes).
RESUME_OPTIONS = ("resume", "verbose", "workers", "cpu_devices")


def _changed_options(args) -> list[str]:
    """The options given on the command line with a value other than their default."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    base = vars(defaults.parse_args([]))
    return [k for k, v in base.items() if k not in RESUME_OPTIONS and getattr(args, k, v) != v]


def _conflicting_options(args, saved) -> list[str]:
    """Options given with --resume whose value differs from the run's saved setting.

    Repeating the original command with ``--resume`` added is fine; changing a
    setting is not (the resumed epochs would not match the earlier ones).
    """
    from pathlib import Path

    given = config_from_args(args)
    conflicts = []
    for key in _changed_options(args):
        field = "model_options" if key == "model_option" else key
        mine, theirs = getattr(given, field, None), getattr(saved, field, None)
        if field in ("data", "out", "data_dir") and mine and theirs:
            same = Path(mine).expanduser().resolve() == Path(theirs).expanduser().resolve()
        else:
            same = mine == theirs
        if not same:
            conflicts.append(key)
    return conflicts


def run(args) -> int:
    from Functions.engine.segmentation import resume_config, train

    if getattr(args, "cpu_devices", None):             # before the backend starts
        from Functions.engine.distribute import use_cpu_devices

        use_cpu_devices(args.cpu_devices)
    if args.resume:
        config = resume_config(args.resume)
        changed = _conflicting_options(args, config)
        if changed:
            names = {"learning_rate": "--lr", "jit_compile": "--no-jit"}
            flags = " ".join(names.get(k, "--" + k.replace("_", "-")) for k in changed)
            raise UserError(f"--resume continues {args.resume} with its saved settings; drop {flags} "
                            "(start a new run with --out to change settings)")
        if args.verbose is not None:
            config.verbose = args.verbose
        config.workers = args.workers
        train(config, resume=True)
        return 0
    train(config_from_args(args))
    return 0
