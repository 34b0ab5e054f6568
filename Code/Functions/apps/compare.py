"""Several architectures, one split, one budget: the ``compare`` command's library.

:func:`compare_models` loads the data once, then runs :func:`Functions.training.train`
for each model with the same settings (seed, split, epochs, image size,
loss, learning rate) into ``COMPARE_DIR/<model>/`` - each a complete run
folder with its own ``report.md``.  It then writes, in ``COMPARE_DIR``:

* ``comparison.csv`` - one row per model: test Dice, IoU, HD95, boundary F1,
  parameters, epochs, seconds per epoch (median over epochs, so the first
  epoch's compilation does not dominate) and inference milliseconds per
  image (test images in batches, after one warm-up call);
* ``comparison.md`` and ``report.md`` - the same table in markdown, with the figure;
* ``comparison.png`` - bars of Dice, IoU and HD95, and seconds per epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

log = logging.getLogger("Functions")

#: Columns of ``comparison.csv``.
COLUMNS = ["model", "dice", "iou", "hd95", "boundary_f1", "parameters", "epochs", "seconds_per_epoch",
           "inference_ms_per_image", "run"]


def parse_models(text: str | list[str]) -> list[str]:
    """``"unet,unet_plus_plus"`` -> ``["unet", "unet_plus_plus"]``; UserError for unknown or repeated names."""
    from Functions.models.registry import SPECS

    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    seg = [k for k, v in SPECS.items() if v.task == "segmentation"]
    if not names:
        raise UserError(f"--models needs at least one name, e.g. --models unet,attention_unet "
                        f"(choose from {', '.join(seg)})")
    unknown = [n for n in names if n not in seg]
    if unknown:
        raise UserError(f"--models: unknown segmentation model(s) {', '.join(unknown)}; choose from {', '.join(seg)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--models lists {', '.join(repeated)} more than once; name each model once")
    return names


def inference_ms_per_image(model, images: np.ndarray, batch_size: int = 8) -> float:
    """Mean wall-clock milliseconds per image of ``model.predict`` on ``images`` (after a warm-up call)."""
    from Functions.inference.tta import predict_probabilities

    predict_probabilities(model, images[:batch_size], batch_size=batch_size)   # compile / warm caches
    t0 = time.perf_counter()
    predict_probabilities(model, images, batch_size=batch_size)
    return 1000.0 * (time.perf_counter() - t0) / max(1, len(images))


def compare_models(models: list[str], base, out: str | Path | None = None) -> "object":
    """Train every model in ``models`` with ``base`` (a :class:`~Functions.training.TrainConfig`) and compare them.

    All models see the same split and budget: the data are loaded once with
    ``base``'s seed and fractions.  Bad settings (a model that cannot take
    the image size or an option) are found for every model before anything
    is trained.  A model whose training fails (e.g. NaN loss) gets a row
    without metrics, the others still run, and a :class:`UserError` naming
    it is raised at the end.  Returns the comparison :class:`pandas.DataFrame`.
    """
    import keras
    import pandas as pd

    from Functions.base.paths import new_run_dir
    from Functions.engine.segmentation import build, prepare_data
    from Functions.engine.tasks import train

    models = parse_models(models)
    base = replace(base)
    base.validate()
    if base.data:
        base.data = str(Path(base.data).expanduser().resolve())
    data = prepare_data(base)
    if base.channels is None:
        base.channels = data["channels"]
    for name in models:                                  # every model must build before any is trained
        build(replace(base, model=name), (base.image_size, base.image_size, data["channels"]))
        keras.backend.clear_session()
    if out is None:
        compare_dir = new_run_dir(None, prefix="compare")
    else:
        from Functions.inference.predictor import check_new_folder

        compare_dir = check_new_folder(out)
        compare_dir.mkdir(parents=True, exist_ok=True)
    log.info("Comparing %s for %d epoch(s) each -> %s", ", ".join(models), base.epochs, compare_dir)
    x_eval = data["test"][0] if data["test"][0] is not None else data["val"][0]
    rows, failed = [], []
    for name in models:
        config = replace(base, model=name, out=str(compare_dir / name))
        try:
            result = train(config, data=data)
        except UserError as exc:
            log.warning("%s failed: %s", name, exc)
            failed.append(f"{name} ({exc})")
            rows.append({"model": name, "run": f"{name}/"})
            continue
        m, hist = result["metrics"], result["history"]
        seconds = hist["seconds"].to_numpy(dtype=float) if "seconds" in hist else np.array([np.nan])
        rows.append({
            "model": name, "dice": m.get("dice"), "iou": m.get("iou"), "hd95": m.get("hd95"),
            "boundary_f1": m.get("boundary_f1"), "parameters": int(m["parameters"]), "epochs": int(len(hist)),
            "seconds_per_epoch": float(np.median(seconds)),
            "inference_ms_per_image": inference_ms_per_image(result["model"], x_eval, base.batch_size),
            "run": f"{name}/",
        })
        keras.backend.clear_session()
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(compare_dir / "comparison.csv", index=False)
    plot_comparison(table, compare_dir / "comparison.png")
    text = comparison_markdown(table, base, data, failed)
    (compare_dir / "comparison.md").write_text(text)
    (compare_dir / "report.md").write_text(text)
    log.info("%s", table.drop(columns=["run"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    log.info("comparison.csv, comparison.md and comparison.png -> %s", compare_dir)
    if failed:
        raise UserError(f"{len(failed)} model(s) failed: {'; '.join(failed)}; the others are in {compare_dir}")
    return table


def comparison_markdown(table, base, data: dict, failed: list[str]) -> str:
    """The comparison as a GitHub-readable markdown page."""
    from Functions.viz.reports import markdown_table

    split = "test" if data["test"][0] is not None else "validation"
    rows = []
    for r in table.to_dict("records"):
        row = {k: ("-" if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        row["run"] = f"[{r['model']}]({r['model']}/report.md)"
        if isinstance(r.get("parameters"), (int, np.integer)) or (isinstance(r.get("parameters"), float)
                                                                   and not np.isnan(r["parameters"])):
            row["parameters"] = f"{int(r['parameters']):,}"
        rows.append(row)
    lines = [
        "# Model comparison\n",
        f"Every model was trained for {base.epochs} epoch(s) on the same split "
        f"({len(data['train'][2])} train / {len(data['val'][2])} validation / {len(data['test'][2])} test images, "
        f"seed {base.seed}) at {base.image_size}x{base.image_size}, batch {base.batch_size}, loss {base.loss}, "
        f"learning rate {base.learning_rate:g}; "
        + ("the last epoch was kept.  " if base.keep == "last" else f"the best epoch by {base.monitor} was kept.  ")
        + f"Dice, IoU, HD95 (pixels) and boundary F1 are means over the {split} images.  Seconds per epoch is "
        "the median over epochs; inference is milliseconds per image in batches after a warm-up.\n",
        markdown_table(rows, COLUMNS),
    ]
    if failed:
        lines.append("\nFailed: " + "; ".join(failed) + "\n")
    lines.append("\n![Comparison](comparison.png)\n")
    return "\n".join(lines)


def plot_comparison(table, path=None):
    """Bars per model: Dice, IoU, HD95 and seconds per epoch."""
    from Functions.viz.plotting import pyplot, save_figure

    plt = pyplot()
    panels = [("dice", "Dice (higher is better)"), ("iou", "IoU (higher is better)"),
              ("hd95", "HD95, pixels (lower is better)"), ("seconds_per_epoch", "seconds per epoch")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    names = list(table["model"])
    for ax, (col, title) in zip(axes[0], panels):
        values = table[col].to_numpy(dtype=float)
        bars = ax.bar(range(len(names)), np.nan_to_num(values, nan=0.0, posinf=0.0), color="tab:blue")
        for bar, v in zip(bars, values):
            ax.annotate("n/a" if not np.isfinite(v) else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return fig
