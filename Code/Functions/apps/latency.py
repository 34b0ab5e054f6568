"""Accuracy against speed of trained runs: every runtime and precision at batch 1 (``benchmark --latency``).

For each run folder and each of Keras, ONNX Runtime, LiteRT float32 and
LiteRT int8 (the exported files are made in ``RUN/export/`` when missing,
int8 calibrated on the run's training images): the latency of one prepared
image through the model at batch 1 (median and 95th percentile over
``repeats`` calls after ``warmup``), frames per second (1 / median), the file
size, the forward GFLOPs of the architecture, and the mean Dice on the run's
test split (the files ``split.json`` held out, at each image's own size, as
``evaluate`` scores them).  :func:`accuracy_speed_plot` draws Dice against
frames per second.  Timings are wall-clock on the machine at hand: compare
rows of one table, not tables of different machines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

#: (runtime, precision) pairs measured, in table order.
VARIANTS = (("keras", "float32"), ("onnx", "float32"), ("litert", "float32"), ("litert", "int8"))


def batch_one_latency(predict, x: np.ndarray, *, warmup: int = 5, repeats: int = 50) -> dict:
    """``{"p50_ms", "p95_ms", "fps"}`` of ``predict(x)`` (``x`` one prepared image as a batch of 1)."""
    for _ in range(warmup):
        predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    p50, p95 = (float(np.percentile(times, q)) * 1e3 for q in (50, 95))
    return {"p50_ms": p50, "p95_ms": p95, "fps": 1e3 / p50}


def _exported(run: Path, runtime: str, precision: str, train_files: list) -> Path:
    """The file for a variant, exported (and checked) first when it is missing."""
    from Functions.apps.export import export_file, export_run

    quantize = None if precision == "float32" else precision
    target = export_file(run, runtime, quantize)
    if not target.exists():
        export_run(run, runtime, quantize=quantize, calibration=train_files if quantize else None,
                   images=train_files[:8])
    return target


def run_latency(run: str | os.PathLike, *, variants=VARIANTS, warmup: int = 5, repeats: int = 50,
                log=print) -> list[dict]:
    """One row per variant of one run: model, runtime, precision, p50/p95 ms, fps, MB, GFLOPs, Dice, test images."""
    import json

    from Functions.base.runs import read_run_settings
    from Functions.data.discovery import load_sample
    from Functions.evaluation.evaluate import run_samples
    from Functions.inference.predictor import load_predictor
    from Functions.metrics.segmentation import dice
    from Functions.models.flops import count_flops

    run = Path(run).expanduser()
    settings = read_run_settings(run, flag="--run")
    samples, _ = run_samples(run, settings)
    pairs = [load_sample(s) for s in samples]
    images, truths = [p[0] for p in pairs], [p[1] for p in pairs]
    split_file = run / "split.json"
    train_files = json.loads(split_file.read_text()).get("train", []) if split_file.is_file() else []
    if not train_files:
        raise UserError(f"--run {run} has no split.json with its training images (needed to calibrate int8)")
    keras_predictor = load_predictor(run, flag="--run")
    gflops = count_flops(keras_predictor.model) / 1e9
    name = settings.get("model") or keras_predictor.model.name
    rows = []
    for runtime, precision in variants:
        if runtime == "keras":
            predictor, file = keras_predictor, run / "model.keras"
        else:
            file = _exported(run, runtime, precision, train_files)
            predictor = load_predictor(file, flag="--run", runtime=runtime)
        x = predictor.prepare(images[0])[None].astype(np.float32)
        timing = batch_one_latency(predictor.model.predict_on_batch, x, warmup=warmup, repeats=repeats)
        masks = predictor.predict(images, batch_size=1)
        score = float(np.mean([dice(t > 0, m > 0) for t, m in zip(truths, masks)]))
        row = {"model": name, "runtime": runtime, "precision": precision, **timing,
               "mb": _size(file) / 1e6, "gflops": gflops, "dice": score, "test_images": len(images)}
        log(f"{name:>12} {runtime:>6} {precision:>7}: p50 {row['p50_ms']:.2f} ms, {row['fps']:.0f} frames/s, "
            f"Dice {score:.3f}")
        rows.append(row)
    return rows


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def latency_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`run_latency` rows."""
    head = ("| model | runtime | precision | p50 ms | p95 ms | frames/s | MB | GFLOPs | Dice (test) |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
             f"{r['fps']:.0f} | {r['mb']:.2f} | {r['gflops']:.2f} | {r['dice']:.3f} |" for r in rows]
    return "\n".join([head, *lines])


def accuracy_speed_plot(rows: list[dict], path: str | os.PathLike) -> Path:
    """Dice on the test split against frames per second (log axis), one marker per runtime, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"keras": "o", "onnx": "s", "litert": "^"}
    models = sorted({r["model"] for r in rows})
    colours = {m: plt.cm.tab10(i) for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        filled = r["precision"] == "float32"
        ax.scatter(r["fps"], r["dice"], marker=markers.get(r["runtime"], "x"), s=60,
                   facecolors=colours[r["model"]] if filled else "none", edgecolors=colours[r["model"]])
    for m in models:
        ax.scatter([], [], color=colours[m], label=m)
    for rt, mk in markers.items():
        ax.scatter([], [], marker=mk, color="grey", label=rt)
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="grey", label="int8 (open)")
    ax.set_xscale("log")
    ax.set_xlabel("frames per second at batch 1 (log)")
    ax.set_ylabel("Dice on the test split")
    ax.set_title("Accuracy against speed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
