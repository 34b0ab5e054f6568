"""``python -m Functions benchmark``: training/prediction/input throughput against a peer baseline and the roofline."""

from __future__ import annotations

import sys

NAME = "benchmark"
HELP = "measure train/predict/input-pipeline speed per model against plain Keras and the matmul roofline"


def add_arguments(p) -> None:
    from Functions.commands.options import parse_option

    p.add_argument("--model", action="append", metavar="NAME",
                   help="segmentation model to measure, repeatable, or 'all' (default: unet)")
    p.add_argument("--image-size", type=int, default=128, metavar="N", help="input N x N (%(default)s)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="(%(default)s)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="input channels (%(default)s)")
    p.add_argument("--steps", type=int, default=6, metavar="N",
                   help="timed training steps per repeat (%(default)s)")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="interleaved rounds of roofline / baseline / default path; medians reported (%(default)s)")
    p.add_argument("--roofline-size", type=int, default=2048, metavar="N",
                   help="matrix size of the fp32 matmul roofline (%(default)s)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the tutorial-style Keras baseline")
    p.add_argument("--mixed-precision", action="store_true",
                   help="build the measured models under mixed precision (float16 on GPUs)")
    p.add_argument("--model-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="architecture option, repeatable (applied to the baseline U-Net too)")
    p.add_argument("--out", metavar="FILE.md",
                   help="new markdown file for the table (default runs/benchmark-<backend>-<size>px-<time>.md; "
                        "an existing file is never overwritten)")
    p.add_argument("--jit-reprobe", action="store_true",
                   help="measure XLA against the plain graph again even when the choice is cached "
                        "(TensorFlow; see MIP_JIT_PROBE / MIP_JIT_CACHE)")
    p.add_argument("--json", action="store_true", help="print one JSON object per model instead of the table")
    p.add_argument("--latency", action="append", metavar="RUN",
                   help="instead: accuracy against speed of a trained run (repeatable): batch-1 latency p50/p95, "
                        "frames/s, file size, GFLOPs and test Dice for Keras, ONNX, LiteRT float32 and int8 "
                        "(exports made in RUN/export/ when missing; needs pip install -e .[deploy]); the table goes "
                        "to --out and the plot beside it (.png)")


def run(args) -> int:
    from pathlib import Path

    from Functions.base.errors import UserError

    # checks that need no backend first: a mistake costs a fraction of a second, not a TensorFlow start-up
    if args.out:
        out = Path(args.out).expanduser()
        if out.suffix.lower() != ".md":
            raise UserError(f"--out {args.out} must end in .md (the markdown table)")
        if out.exists():
            raise UserError(f"--out {args.out} already exists and is never overwritten; choose a new file name")
    if args.latency:
        return run_latency_table(args)
    for flag, value, low in (("--image-size", args.image_size, 16), ("--batch-size", args.batch_size, 1),
                             ("--steps", args.steps, 2), ("--repeats", args.repeats, 1),
                             ("--roofline-size", args.roofline_size, 16)):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")

    from Functions.apps.benchmark import (BenchmarkSettings, default_report_path, markdown_table, run_benchmark,
                                          to_json_lines, write_report)
    from Functions.models.registry import SPECS

    names = args.model or ["unet"]
    if "all" in names:
        names = [k for k, v in SPECS.items() if v.task == "segmentation"]
    settings = BenchmarkSettings(image_size=args.image_size, batch_size=args.batch_size, channels=args.channels,
                                 steps=args.steps, repeats=args.repeats, roofline_size=args.roofline_size,
                                 baseline=args.baseline, mixed_precision=args.mixed_precision,
                                 model_options=dict(args.model_option), jit_reprobe=args.jit_reprobe)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    results = run_benchmark(names, settings, log=log)
    path = write_report(results, settings, args.out or default_report_path(settings), command=_command(names, args))
    if args.json:
        print(to_json_lines(results), flush=True)
        print(f"table written to {path}", file=sys.stderr, flush=True)
    else:
        print(markdown_table(results))
        print(f"\ntable written to {path}", flush=True)
    return 0


def run_latency_table(args) -> int:
    """``--latency RUN ...``: one table row per run x runtime x precision, and the accuracy-speed plot."""
    from pathlib import Path

    from Functions.apps.latency import accuracy_speed_plot, latency_table, run_latency

    rows = [row for run in args.latency for row in run_latency(run, log=lambda m: print(m, flush=True))]
    table = latency_table(rows)
    print(table)
    if args.out:
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("# Accuracy against speed (batch 1)\n\n" + table + "\n")
        plot = accuracy_speed_plot(rows, out.with_suffix(".png"))
        print(f"\ntable written to {out}, plot to {plot}", flush=True)
    return 0


def _command(names: list[str], args) -> str:
    """The command line that repeats this measurement."""
    parts = ["python -m Functions benchmark", *(f"--model {n}" for n in names),
             f"--image-size {args.image_size}", f"--batch-size {args.batch_size}", f"--channels {args.channels}",
             f"--steps {args.steps}", f"--repeats {args.repeats}"]
    parts += ["--no-baseline"] if not args.baseline else []
    parts += ["--mixed-precision"] if args.mixed_precision else []
    parts += [f"--model-option {k}={v}" for k, v in args.model_option]
    return " ".join(parts)
