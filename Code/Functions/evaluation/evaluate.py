"""Scoring predicted masks per image, and evaluating a finished run on its test split (or other data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import read_run_settings
from Functions.data.discovery import load_roi, load_sample
from Functions.data.samples import ROI_NOTE
from Functions.data.sources import resolve_samples
from Functions.data.splits import has_layout_split, official_split, split_indices
from Functions.inference.predictor import check_new_folder, load_predictor
from Functions.metrics.segmentation import lowest_dice, per_image_metrics, summarize
from Functions.viz.plotting import plot_predictions
from Functions.viz.reports import markdown_table






def score_masks(true_masks: np.ndarray, pred_masks: np.ndarray, names=None, num_classes: int = 1, **kwargs):
    """Per-image metrics table (:func:`Functions.metrics.segmentation.per_image_metrics`) for ``(N, H, W)`` masks."""
    t = np.asarray(true_masks)
    t = t[..., 0] if t.ndim == 4 else t
    if num_classes > 1:
        kwargs.setdefault("num_classes", num_classes)
    return per_image_metrics(list(t), list(pred_masks), names=names, **kwargs)


# ----------------------------------------------------------------------------- a run folder
#: Splits ``evaluate --run`` understands; ``all`` is every sample of the data.
SPLITS = ("train", "val", "test", "all")


def run_samples(run_dir, settings: dict, data: str | None = None, dataset: str | None = None,
                data_dir: str | None = None, split: str | None = None):
    """The samples to evaluate a run on, and the split's name.

    Without ``data``/``dataset``: the run's own data, split ``test`` by
    default, taken from the run's ``split.json`` (the exact files it held
    out).  With other data: ``all`` samples by default, or the named split:
    the data's own split where its layout gives one (DRIVE ``test/``; unless
    the run was trained with ``--split random``), else drawn with the run's
    seed and fractions.
    """
    own = not (data or dataset)
    split = split or ("test" if own else "all")
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split}")
    if own:
        samples = resolve_samples(settings.get("data"), settings.get("dataset"), settings.get("data_dir"))
    else:
        samples = resolve_samples(data, dataset, data_dir or settings.get("data_dir"))
    if split == "all":
        return list(samples), split
    split_file = Path(run_dir) / "split.json"
    if own and split_file.is_file():
        wanted = set(json.loads(split_file.read_text()).get(split, []))
        chosen = [s for s in samples if str(s.image) in wanted]
        if len(chosen) != len(wanted):               # the data folder moved: match on the last path parts
            tail = {Path(w).parts[-3:] for w in wanted}
            chosen = [s for s in samples if Path(s.image).parts[-3:] in tail]
        if len(chosen) != len(wanted):
            raise UserError(f"{len(wanted) - len(chosen)} {split} image(s) listed in {split_file} are no longer in "
                            f"{settings.get('data') or settings.get('dataset') or 'the sample data'}; "
                            "restore them or pass --data DIR")
    else:
        tags = [getattr(s, "split", None) for s in samples]
        fractions = settings.get("val_fraction", 0.15), settings.get("test_fraction", 0.15)
        if settings.get("split", "auto") != "random" and has_layout_split(tags):   # DRIVE's own test images
            idx = official_split(tags, *fractions, settings.get("seed", 42))[0]
        else:
            idx = split_indices(len(samples), *fractions, settings.get("seed", 42))
        chosen = [samples[i] for i in idx[("train", "val", "test").index(split)]]
    if not chosen:
        raise UserError(f"the {split} split of {run_dir} is empty; choose another with --split "
                        f"({', '.join(SPLITS)})")
    return chosen, split


def evaluate_run(run_dir, data: str | None = None, dataset: str | None = None, data_dir: str | None = None,
                 split: str | None = None, tta: bool = False, out=None, batch_size: int = 8,
                 worst: int = 4, tolerance: float = 2.0, spacing=None) -> dict:
    """Score a trained run's ``model.keras`` on images with true masks, at each image's own size.

    Writes to ``out`` (default ``RUN_DIR/evaluation-<split>[-tta]``, numbered
    when it exists; an explicit ``out`` must be new or empty):
    ``metrics.csv`` (one row per image: ``image`` and the metric columns of
    :mod:`Functions.metrics`), ``summary.csv`` (mean, std, median, n),
    ``worst.png`` (the ``worst`` lowest-Dice images with overlays) and
    ``report.md``.  With ``tta`` the masks come from flip-averaged
    probabilities and ``"plain"`` holds the mean metrics without TTA.
    ``tolerance`` and ``spacing`` go to :func:`Functions.metrics.per_image_metrics`.

    Returns ``{"out": Path, "table": DataFrame, "summary": DataFrame, "split": str, "plain": dict | None}``.
    """
    import pandas as pd

    run_dir = Path(run_dir).expanduser()
    settings = read_run_settings(run_dir, flag="--run")
    if not (run_dir / "model.keras").is_file():
        raise UserError(f"--run {run_dir} has no model.keras (the run stopped before its first epoch ended); "
                        "resume it with `train --resume` or pass another run")
    samples, split = run_samples(run_dir, settings, data, dataset, data_dir, split)
    predictor = load_predictor(run_dir / "model.keras", flag="--run")
    num_classes = int(predictor.model.outputs[-1].shape[-1])
    num_classes = num_classes if num_classes > 1 else 1
    if out is None:
        base = run_dir / f"evaluation-{split}{'-tta' if tta else ''}"
        out, k = base, 1
        while out.exists():
            out, k = base.with_name(f"{base.name}-{k}"), k + 1
    else:
        out = check_new_folder(out)

    tables = {True: [], False: []} if tta else {False: []}
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        pairs = [load_sample(s) for s in chunk]
        images = [p[0] for p in pairs]
        truths = [p[1] for p in pairs]
        for use_tta in tables:
            preds = predictor.predict(images, batch_size=batch_size, tta=use_tta)
            for s, t, p in zip(chunk, truths, preds):  # each image's own spacing (DICOM/NIfTI): HD95/ASSD in mm
                sp = spacing if spacing is not None else getattr(s, "spacing", None)
                roi = load_roi(s, np.shape(t)) if num_classes == 1 else None   # DRIVE: inside the field of view
                tables[use_tta].append(per_image_metrics([t], [p], names=[s.id], tolerance=tolerance, spacing=sp,
                                                         num_classes=num_classes if num_classes > 1 else None,
                                                         rois=[roi]))

    table = pd.concat(tables[tta], ignore_index=True)
    summary = summarize(table)
    plain = None
    if tta:
        plain_table = pd.concat(tables[False], ignore_index=True)
        plain = {k: float(v) for k, v in summarize(plain_table).loc["mean"].items()}
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "metrics.csv", index=False)
    summary.to_csv(out / "summary.csv", index_label="statistic")
    _worst_figure(predictor, samples, table, out / "worst.png", n=worst, tta=tta)
    _evaluation_report(out, run_dir, split, samples, summary, plain, tta,
                       roi=num_classes == 1 and any(getattr(s, "roi", None) is not None for s in samples))
    return {"out": out, "table": table, "summary": summary, "split": split, "plain": plain}


def _worst_figure(predictor, samples, table, path, n: int = 4, tta: bool = False) -> None:
    """The ``n`` lowest-Dice images: image | truth | prediction | overlay."""
    import matplotlib.pyplot as plt

    order = lowest_dice(table, n)
    if not order:
        return
    pairs = [load_sample(samples[i]) for i in order]
    preds = predictor.predict([p[0] for p in pairs], tta=tta)
    fig = plot_predictions([p[0] for p in pairs], [p[1] for p in pairs], preds, n=len(order),
                           scores=table["dice"].to_numpy()[order], titles=[samples[i].id for i in order])
    fig.suptitle("lowest-Dice images (truth green, prediction magenta)", y=1.02)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _evaluation_report(out, run_dir, split, samples, summary, plain, tta, roi: bool = False) -> None:
    lines = [f"# Evaluation of {run_dir.name} on the {split} split\n",
             f"{len(samples)} image(s), scored at each image's own (original) resolution; HD95 and ASSD in mm "
             f"where the image format stores the pixel spacing (DICOM, NIfTI) or --spacing is given, else in pixels"
             f"{' with test-time augmentation (flips averaged)' if tta else ''}"
             f"{'; ' + ROI_NOTE + ' (only pixels inside it count)' if roi else ''}.\n",
             "## Summary\n"]
    rows = [{"metric": c, **{s: float(summary.loc[s, c]) for s in summary.index}} for c in summary.columns]
    lines.append(markdown_table(rows))
    if plain is not None:
        lines.append("\n## Effect of test-time augmentation\n")
        lines.append(markdown_table([{"metric": k, "without TTA": plain[k],
                                      "with TTA": float(summary.loc["mean", k]),
                                      "change": float(summary.loc["mean", k]) - plain[k]}
                                     for k in ("dice", "iou", "hd95") if k in plain]))
    lines.append("\nPer-image values: [metrics.csv](metrics.csv).\n\n## Lowest-Dice images\n\n![worst](worst.png)\n")
    (out / "report.md").write_text("\n".join(lines))
