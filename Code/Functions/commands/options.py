"""Command-line options shared by the training commands (``train``, ``classify-train``).

The flags of the training engine (schedule, time budget, resume, distribution, precision, callbacks,
run folder) are declared once here, so every training command offers the same ones with the same
meaning.  Config fields map to flags through :func:`Functions.base.runs.flag_for` (one table), which
the command line also uses to name the flag in error messages.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from Functions.base.errors import UserError
from Functions.base.runs import flag_for


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (``depth=3``, ``dropout=0.1``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip().replace("-", "_"), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip().replace("-", "_"), value


def add_data_source(group, default_sample: str) -> None:
    group.add_argument("--data", metavar="DIR", help=f"folder of the data (default: Data/sample/{default_sample})")
    group.add_argument("--dataset", metavar="NAME", help="a registered dataset (see `python -m Functions datasets`)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="where registered datasets are stored (default $MIP_DATA_DIR)")


def add_engine_arguments(p: argparse.ArgumentParser, d, model_help: str) -> None:
    """The engine's flags, with defaults from the config instance ``d``."""
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--model", default=d.model, metavar="NAME", help=model_help)
    m.add_argument("--model-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="architecture option, repeatable (e.g. base_filters=32, dropout=0.2)")
    m.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="(%(default)s)")
    m.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="(%(default)s)")
    m.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate", metavar="LR",
                   help="Adam learning rate (%(default)s); the peak of the cosine schedule")
    m.add_argument("--lr-schedule", default=d.lr_schedule, choices=("cosine", "constant"),
                   help="cosine: one warm-up epoch, then cosine decay to 1%% of --lr by the last epoch; "
                        "constant: --lr throughout (also what --reduce-lr-patience uses) (%(default)s)")
    m.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="train at most this long (first-epoch compilation and validation included): fewer "
                        "epochs when they would not fit, the cosine schedule fitted to those that do")
    m.add_argument("--monitor", default=d.monitor,
                   help="validation metric that picks the best model (%(default)s; one of "
                        + ", ".join("val_" + k for k in d.MONITORS) + ")")
    m.add_argument("--keep", default=d.keep, choices=("best", "last"),
                   help="the model the run keeps and tests: the best epoch by --monitor, or the last epoch "
                        "(with --lr-schedule cosine, whose learning rate ends near zero; a small or noisy "
                        "validation set can otherwise pick an early epoch by chance) (%(default)s)")
    m.add_argument("--ema", type=float, default=d.ema, metavar="MOMENTUM",
                   help="Polyak averaging: keep an exponential moving average of the weights (momentum per "
                        "step, e.g. 0.99 for about the last 100 steps); validation, the saved model and the "
                        "test use the averaged weights (%(default)s = off)")
    m.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction, default="auto",
                   help="compile steps with XLA (default: chosen for the backend and device)")
    m.add_argument("--seed", type=int, default=d.seed, help="seed for split, initialisation, augmentation (%(default)s)")
    m.add_argument("--deterministic", action="store_true",
                   help="also ask the backend for deterministic kernels (GPU; slower, turns XLA off)")
    m.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute with float32 weights on a GPU; bfloat16 on a CPU, faster only where it "
                        "has bfloat16 instructions (avx512_bf16/amx_bf16; otherwise a warning)")
    m.add_argument("--subset", type=int, metavar="N", help="use N samples (a seeded random choice) for a quick try")
    c = p.add_argument_group("callbacks")
    c.add_argument("--patience", type=int, default=d.patience, metavar="N",
                   help="stop after N epochs without improvement of --monitor (default 0: off)")
    c.add_argument("--reduce-lr-patience", type=int, default=d.reduce_lr_patience, metavar="N",
                   help="multiply the learning rate by --reduce-lr-factor after N epochs without improvement "
                        "(default 0: off)")
    c.add_argument("--reduce-lr-factor", type=float, default=d.reduce_lr_factor, metavar="F", help="(%(default)s)")
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
    o.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")


class HelpAll(argparse.Action):
    """``--help-all``: the help with every flag (``--help`` shows the common ones, see :func:`hide_advanced`)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        for action in parser._actions:
            hidden = getattr(action, "hidden_help", None)
            if hidden is not None:
                action.help = hidden
        parser.print_help()
        parser.exit()


def hide_advanced(parser: argparse.ArgumentParser, common: tuple[str, ...]) -> None:
    """Leave only the flags whose ``dest`` is in ``common`` (and the help flags) in ``--help``; add
    ``--help-all`` to show the rest."""
    for action in parser._actions:
        if action.dest in common or action.dest == "help" or action.help == argparse.SUPPRESS:
            continue
        action.hidden_help = action.help if action.help is not None else ""
        action.help = argparse.SUPPRESS
    parser.add_argument("--help-all", action=HelpAll, help="show every flag (the plan sets most of them; see "
                                                          "docs/planning.md) and exit")


def given_options(parser_factory, argv: list[str] | None, args=None) -> set[str]:
    """The ``dest`` of every option given explicitly in ``argv`` (the command's own words).

    The command's parser is built again with every default suppressed and ``argv`` parsed once more, so an
    option counts as given even when its value equals the default.  Without ``argv`` (the command called
    from Python), the options whose value differs from the default.
    """
    p = argparse.ArgumentParser(add_help=False)
    parser_factory(p)
    if argv is None:
        defaults = vars(p.parse_args([]))
        return {k for k, v in vars(args).items() if k in defaults and v != defaults[k]} if args is not None else set()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    namespace, _ = p.parse_known_args(argv)
    return set(vars(namespace))


def config_from_args(config_class, args):
    """A ``config_class`` instance from parsed arguments (``--model-option`` pairs become ``model_options``)."""
    fields = config_class.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and k != "model_options"}
    values["model_options"] = dict(args.model_option)
    if values.get("verbose") is None:
        values["verbose"] = "auto"
    if str(values.get("augment")).lower() == "none":
        values["augment"] = None
    return config_class(**values)


#: Options that may accompany --resume (they change how the run is shown, not what it computes).
RESUME_OPTIONS = ("resume", "verbose", "workers", "cpu_devices")


def conflicting_options(parser_factory, config_class, args, saved) -> list[str]:
    """Options given with --resume whose value differs from the run's saved setting.

    Repeating the original command with ``--resume`` added is fine; changing a
    setting is not (the resumed epochs would not match the earlier ones).
    ``parser_factory(parser)`` adds the command's arguments to a fresh parser.
    """
    defaults = argparse.ArgumentParser()
    parser_factory(defaults)
    base = vars(defaults.parse_args([]))
    changed = [k for k, v in base.items() if k not in RESUME_OPTIONS and getattr(args, k, v) != v]
    given = config_from_args(config_class, args)
    conflicts = []
    for key in changed:
        field = "model_options" if key == "model_option" else key
        mine, theirs = getattr(given, field, None), getattr(saved, field, None)
        if field in ("data", "out", "data_dir") and mine and theirs:
            same = Path(mine).expanduser().resolve() == Path(theirs).expanduser().resolve()
        elif field == "model_options":
            same = all(theirs.get(k) == v for k, v in (mine or {}).items())
        else:
            same = mine == theirs
        if not same:
            conflicts.append(key)
    return conflicts


def run_training(args, *, parser_factory, config_class, train_fn, resume_fn, files: dict | None = None) -> int:
    """What every training command does: a new run from the flags, or ``--resume RUN_DIR``.  ``files``:
    more JSON files of the new run folder (``train``'s ``plan.json``)."""
    if getattr(args, "cpu_devices", None):             # before the backend starts
        from Functions.engine.distribute import use_cpu_devices

        use_cpu_devices(args.cpu_devices)
    if args.resume:
        config = resume_fn(args.resume)
        changed = conflicting_options(parser_factory, config_class, args, config)
        if changed:
            names = {"jit_compile": "--jit/--no-jit", "model_option": "--model-option"}
            flags = " ".join(names.get(k, flag_for(k)) for k in changed)
            raise UserError(f"--resume continues {args.resume} with its saved settings; drop {flags} "
                            "(start a new run with --out to change settings)")
        if args.verbose is not None:
            config.verbose = args.verbose
        config.workers = args.workers
        train_fn(config, resume=True)
        return 0
    if files:
        train_fn(config_from_args(config_class, args), files=files)
    else:
        train_fn(config_from_args(config_class, args))
    return 0
