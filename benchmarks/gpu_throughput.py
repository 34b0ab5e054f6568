"""Train and predict throughput of every segmentation model on a GPU, fp32 and mixed precision.

Run it on a machine with a GPU, from the repository root::

    python benchmarks/gpu_throughput.py                        # JAX, then PyTorch (one process each)
    python benchmarks/gpu_throughput.py --backend jax          # or --backend torch / tensorflow
    python benchmarks/gpu_throughput.py --backend torch --image-size 256 --batch-size 16

For each segmentation model in the registry it runs
:func:`Functions.benchmark.benchmark_model` at ``--image-size`` (256 by
default) once in float32 and once under mixed precision (``mixed_float16``
on a GPU), and writes ``benchmarks/gpu-<backend>-<size>px.md`` (a table
naming the device) and ``benchmarks/gpu-<backend>-<size>px.jsonl`` (one JSON
object per model and precision).  Without a GPU it stops and records nothing,
so no CPU figure is ever filed as a GPU one.

The backend must be chosen before Keras is imported, so this script sets
``KERAS_BACKEND`` itself; ``--backend both`` (the default) runs itself once
per backend (JAX, then PyTorch) in a fresh process.  Each JSON object carries
the device name and the library versions it was measured with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("both", "jax", "torch", "tensorflow"), default="both",
                   help="both = jax, then torch, each in its own process (%(default)s)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", action="append", help="only these models (default: every segmentation model)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the tutorial-style baseline (measured in float32 only)")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run even without a GPU (a dry run: the files are named cpu-..., never gpu-...)")
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parent))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.backend == "both":
        import subprocess

        argv = list(sys.argv[1:] if argv is None else argv)
        rest = [a for i, a in enumerate(argv) if a != "--backend" and (i == 0 or argv[i - 1] != "--backend")
                and not a.startswith("--backend=")]
        codes = [subprocess.call([sys.executable, __file__, "--backend", backend, *rest])
                 for backend in ("jax", "torch")]
        return max(codes)
    os.environ["KERAS_BACKEND"] = args.backend

    from Functions.base import quiet

    quiet.install()                     # the backends' start-up chatter stays out of the log

    from Functions.apps.benchmark import BenchmarkSettings, benchmark_model, library_versions, markdown_table
    from Functions.base.runtime import device_name, has_gpu
    from Functions.models.registry import SPECS

    device = device_name()
    on_gpu = has_gpu()
    if not on_gpu and not args.allow_cpu:
        print(f"no GPU visible to the {args.backend} backend (device: {device}); nothing measured or recorded",
              file=sys.stderr)
        return 1
    names = args.model or [k for k, v in SPECS.items() if v.task == "segmentation"]
    results = []
    for mixed in (False, True):
        for name in names:
            settings = BenchmarkSettings(image_size=args.image_size, batch_size=args.batch_size, channels=1,
                                         steps=args.steps, repeats=args.repeats, mixed_precision=mixed,
                                         baseline=args.baseline and not mixed)
            print(f"{name} ({'mixed precision' if mixed else 'float32'}) on {device} ...", flush=True)
            try:
                results.append(benchmark_model(name, settings, log=print))
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: record the failure, go on
                print(f"  {name} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                results.append({"model": name, "precision": "mixed" if mixed else "float32",
                                "error": f"{type(exc).__name__}: {str(exc)[:200]}"})

    kind = "gpu" if on_gpu else "cpu"
    stem = Path(args.out_dir) / f"{kind}-{args.backend}-{args.image_size}px"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".jsonl").write_text("\n".join(json.dumps(r, default=float) for r in results) + "\n")
    ok = [r for r in results if "error" not in r]
    lines = [f"# {kind.upper()} throughput, {args.backend} backend, {args.image_size}x{args.image_size}x1, "
             f"batch {args.batch_size}", "",
             f"- device: {device}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in library_versions().items() if v),
             f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
             f"- command: `python benchmarks/gpu_throughput.py --backend {args.backend} --image-size "
             f"{args.image_size} --batch-size {args.batch_size}`", ""]
    for precision in ("float32", "mixed"):
        rows = [r for r in ok if r["precision"] == precision]
        if rows:
            lines += [f"## {precision}", "", markdown_table(rows), ""]
    failed = [r for r in results if "error" in r]
    if failed:
        lines += ["## failed", ""] + [f"- {r['model']} ({r['precision']}): {r['error']}" for r in failed] + [""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
