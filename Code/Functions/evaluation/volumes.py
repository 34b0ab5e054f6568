"""Scoring a 3-D run on whole volumes: ``evaluate --run RUN`` for a ``train --dims 3`` run.

Each volume is predicted whole (sliding windows on the run's grid, mapped
back onto the file's voxels, :func:`Functions.inference.volumes.predict_volume`)
and scored against its label file with distances in millimetres - one row
per volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import read_run_settings, write_json


def score_cases(model, settings, cases, *, out_dir: Path | None = None, tta: bool = False,
                batch_size: int = 2) -> tuple:
    """Predict each :class:`~Functions.data.volumes.VolumeCase` whole and score it on its file's grid, in mm.

    Returns ``(table, examples)``: a DataFrame with one row per case (``id``,
    Dice, IoU, HD95, ASSD ..., ``spacing_mm``) and, per case, ``(image,
    truth, prediction, spacing)`` reoriented to RAS for figures.  With
    ``out_dir`` each prediction is also written as ``out_dir/<id>.nii.gz``
    (the input's affine and header).
    """
    import pandas as pd

    from Functions.data.volumes import read_volume, to_canonical
    from Functions.inference.volumes import predict_volume, score_volume

    rows, examples = [], []
    for case in cases:
        out = Path(out_dir) / f"{case.id}.nii.gz" if out_dir is not None else None
        pred, _ = predict_volume(model, case.image, settings, out=out, batch_size=batch_size, tta=tta)
        truth = read_volume(case.label, label=True, canonical=False)
        rows.append({"id": case.id, **score_volume(truth.array[..., 0], pred, truth.spacing, settings.num_classes),
                     "spacing_mm": "x".join(f"{s:g}" for s in truth.spacing)})
        raw = to_canonical(read_volume(case.image, channels=settings.channels > 1, canonical=False))
        can_truth, can_pred = to_canonical(truth), to_canonical(truth.with_array(pred))
        examples.append((raw.array[..., 0], can_truth.array[..., 0], can_pred.array[..., 0], raw.spacing))
    return pd.DataFrame(rows), examples


def evaluate_volume_run(run_dir, *, split: str = "test", out: str | None = None, tta: bool = False,
                        batch_size: int = 2, worst: int = 3) -> dict:
    """Re-score a 3-D run on one part of its split (``train``/``val``/``test``/``all``), per volume.

    Writes ``metrics.csv`` (one row per volume), ``summary.csv``,
    ``predictions/<id>.nii.gz`` and ``worst.png`` (the ``worst`` lowest-Dice
    volumes, three planes each at their true aspect, truth green, prediction
    red) into a new folder (``out``, default ``RUN_DIR/evaluation-<split>``).
    Returns ``{"out", "table", "summary", "worst"}`` (``worst``: those volumes' ids, lowest Dice first).
    """
    from Functions.data.volumes import find_volumes
    from Functions.inference.loading import load_keras_model
    from Functions.inference.volumes import VolumeSettings
    from Functions.metrics.segmentation import lowest_dice, summarize

    run_dir = Path(run_dir)
    config = read_run_settings(run_dir)
    settings = VolumeSettings.from_config(config)
    try:
        split_files = json.loads((run_dir / "split.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable split.json; evaluate a complete run folder") from None
    parts = ("train", "val", "test") if split == "all" else (split,)
    images = [p for part in parts for p in split_files.get(part, [])]
    if not images:
        raise UserError(f"the {split} split of {run_dir} is empty; choose another --split")
    dataset = find_volumes(Path(images[0]).parent.parent) if config.get("data") is None and not config.get(
        "dataset") else None
    cases = _cases_for(images, config, dataset)
    target = Path(out) if out else run_dir / f"evaluation-{split}"
    if target.exists():
        raise UserError(f"{target} already exists; pass --out NEW_FOLDER")
    target.mkdir(parents=True)
    model = load_keras_model(run_dir / "model.keras", flag="--run")
    table, examples = score_cases(model, settings, cases, out_dir=target / "predictions", tta=tta,
                                  batch_size=batch_size)
    table.to_csv(target / "metrics.csv", index=False)
    order = lowest_dice(table, worst)
    if order:
        import matplotlib.pyplot as plt

        from Functions.viz.volumes import plot_volume_predictions

        fig = plot_volume_predictions([examples[i][:3] for i in order], [str(table["id"][i]) for i in order],
                                      scores=[float(table["dice"][i]) for i in order],
                                      spacings=[examples[i][3] for i in order], path=target / "worst.png")
        plt.close(fig)
    summary = summarize(table.drop(columns=["id", "spacing_mm"]))
    summary.to_csv(target / "summary.csv")
    write_json(target / "summary.json", {k: float(summary.loc["mean", k]) for k in summary.columns
                                         if np.isfinite(summary.loc["mean", k])})
    return {"out": target, "table": table, "summary": summary, "worst": [str(table["id"][i]) for i in order]}


def _cases_for(images, config, dataset):
    """The VolumeCases (image + label) of the split's image paths, from the run's data folder."""
    from Functions.data.volumes import find_volumes

    if dataset is None:
        root = config.get("data")
        if config.get("dataset"):
            from Functions.data import datasets

            root = datasets.locate(config["dataset"], config.get("data_dir"))
        if root is None:
            raise UserError(f"the data of this run ({config.get('dataset') or config.get('data')}) is not on disk")
        dataset = find_volumes(root)
    by_image = {str(Path(c.image).resolve()): c for c in dataset.labelled}
    missing = [p for p in images if str(Path(p).resolve()) not in by_image]
    if missing:
        raise UserError(f"{len(missing)} volume(s) of the run's split are missing from {dataset.root}, e.g. "
                        f"{missing[0]}; evaluate on the data the run was trained on")
    return [by_image[str(Path(p).resolve())] for p in images]
