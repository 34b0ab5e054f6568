"""Panoptic evaluation: a model's predictions of typed objects, decoded and scored at each image's own size.

:func:`predict_and_score_panoptic` predicts samples a batch at a time with a
predictor (resized and back, or by sliding window for a patch-trained run),
decodes them (:func:`Functions.inference.panoptic.decode_panoptic`) and scores
them against each sample's instance and class maps as stored
(:func:`Functions.metrics.panoptic.panoptic_scores`); the end of ``train --task
panoptic`` uses it.  :func:`evaluate_panoptic_run` does the same for a split of a
finished run (``evaluate --task panoptic --run RUN``), its ``test`` split from
``split.json`` by default, and writes ``per_image.csv``, ``per_class.csv`` and
``summary.json`` to a new folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def predict_and_score_panoptic(predictor, samples, num_types: int, num_stuff: int, class_names=None,
                               batch_size: int = 8, tta: bool = False) -> dict:
    """:func:`~Functions.metrics.panoptic.panoptic_scores` of ``samples`` predicted at their own size, plus
    ``dice`` (per-image foreground Dice) in the result."""
    from Functions.data.imaging import read_image
    from Functions.data.panoptic_io import sample_panoptic_maps
    from Functions.inference.panoptic import predict_panoptic
    from Functions.metrics.panoptic import panoptic_scores

    samples = list(samples)
    trues, preds = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = [read_image(x.image) for x in chunk]
        trues += [sample_panoptic_maps(x, im.shape[:2]) for x, im in zip(chunk, images)]
        preds += predict_panoptic(predictor, images, num_types, num_stuff, batch_size=batch_size, tta=tta)
    scores = panoptic_scores(trues, preds, num_types, num_stuff, names=[x.id for x in samples],
                             class_names=class_names)
    fg = [(2.0 * np.sum((a[0] > 0) & (b[0] > 0)), float(np.sum(a[0] > 0) + np.sum(b[0] > 0)))
          for a, b in zip(trues, preds)]
    scores["dice"] = [n / d if d else 1.0 for n, d in fg]
    return scores


def prediction_note(settings: dict) -> str:
    """How a run's images are predicted: by sliding window at native resolution, or resized and back."""
    if settings.get("patch_size"):
        p = settings["patch_size"]
        return (f"each image predicted whole at its original resolution by sliding window ({p}x{p} tiles, overlap "
                f"{settings.get('overlap', 0.5)}, Gaussian weights)")
    s = settings.get("image_size")
    return f"each image resized to {s}x{s} for the model and its prediction resized back to the original size"


def clean(value):
    """``value`` with NaN -> None and NumPy scalars -> Python, for JSON."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def evaluate_panoptic_run(run_dir, data=None, dataset=None, data_dir=None, split=None, out=None,
                          batch_size: int = 8, tta: bool = False) -> dict:
    """Score a ``train --task panoptic`` run on a split of its data (default: its test split) or other data.

    Returns ``{"summary", "split", "out", "n"}``; writes ``per_image.csv``, ``per_class.csv`` and
    ``summary.json`` (with the split, the image count and how the images were predicted) to ``out``
    (default ``RUN_DIR/evaluation-panoptic-<split>``, which must be new).
    """
    from Functions.base.runs import read_run_settings
    from Functions.evaluation.evaluate import run_samples
    from Functions.inference.panoptic import panoptic_settings
    from Functions.inference.predictor import check_new_folder, load_predictor

    settings = read_run_settings(run_dir)
    t, s, names = panoptic_settings(settings, run_dir)
    samples, split = run_samples(run_dir, settings, data=data, dataset=dataset, data_dir=data_dir, split=split)
    folder = check_new_folder(Path(out) if out else Path(run_dir) / f"evaluation-panoptic-{split}", "--out")
    predictor = load_predictor(run_dir, flag="--run")
    scores = predict_and_score_panoptic(predictor, samples, t, s, names, batch_size=batch_size, tta=tta)
    folder.mkdir(parents=True, exist_ok=True)
    scores["images"].to_csv(folder / "per_image.csv", index=False)
    scores["classes"].to_csv(folder / "per_class.csv", index=False)
    summary = {**scores["summary"], "split": split, "n_images": len(samples), "scored_at": "original resolution",
               "prediction": prediction_note(settings), "tta": bool(tta),
               "dice": float(np.mean(scores["dice"])) if scores["dice"] else None}
    (folder / "summary.json").write_text(json.dumps(clean(summary), indent=2) + "\n")
    return {"summary": summary, "split": split, "out": folder, "n": len(samples)}
