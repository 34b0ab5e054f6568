"""Predicting and scoring whole volumes: NIfTI or DICOM series in, NIfTI label volume out.

The steps are those of training (:mod:`Functions.engine.volumes`), in the
same order, so a model sees at test time what it saw in training:

1. read the volume (:func:`Functions.data.volumes.read_volume`), reorient it
   to RAS and resample it to the training voxel spacing;
2. normalise intensities (:func:`normalize`: a CT window in Hounsfield units,
   or MRI percentile clipping + z-score);
3. predict tile by tile (:func:`Functions.inference.sliding_window.sliding_window_predict`,
   Gaussian-weighted overlapping patches of the training patch size);
4. map the probabilities back onto the file's own voxel grid (linear
   interpolation, :func:`Functions.data.volumes.to_source`) and threshold them
   (one class) or take the argmax (several) - so the NIfTI written has the
   input's shape, affine and header and opens aligned over it in a viewer.

:func:`score_volume` gives Dice, IoU, HD95, ASSD ... of one label volume, with
distances in millimetres (the voxel spacing of the file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.data import volumes as V

INTENSITIES = ("auto", "ct", "mri", "none")


def intensity_for(modality: str | None, array: np.ndarray | None = None) -> str:
    """``"ct"`` or ``"mri"`` from a modality name (``dataset.json``'s ``"CT"``, ``"MRI"``, ``"T1w"``...).

    Unknown modality: ``"ct"`` when the image goes below -500 (air in HU), else ``"mri"``.
    """
    text = (modality or "").upper()
    if "CT" in text:
        return "ct"
    if any(k in text for k in ("MR", "T1", "T2", "FLAIR", "ADC", "DWI")):
        return "mri"
    if array is not None and np.size(array) and float(np.min(array)) < -500:
        return "ct"
    return "mri"


def normalize(array: np.ndarray, intensity: str, window=None) -> np.ndarray:
    """Normalise a ``(D, H, W, C)`` image: ``"ct"`` window to [0, 1], ``"mri"`` z-score, ``"none"`` as is.

    ``window``: ``(center, width)`` HU for CT; None: the soft-tissue default (center 40, width 400,
    :data:`Functions.data.medical_io.DEFAULT_CT_WINDOW`).
    """
    if intensity not in ("ct", "mri", "none"):
        raise UserError(f"intensity must be ct, mri or none, got {intensity!r}")
    if intensity == "ct":
        return V.normalize_ct(array, tuple(window) if window is not None else None)
    if intensity == "mri":
        return V.normalize_mri(array)
    return np.asarray(array, np.float32)


@dataclass(frozen=True)
class VolumeSettings:
    """How a volume model was trained: everything prediction must repeat (stored in ``config.json``).

    ``spacing`` ``(z, y, x)`` mm (None: keep each volume's own), ``intensity``
    ``"ct"``/``"mri"``/``"none"``, ``window`` ``(center, width)`` HU for CT,
    ``patch`` ``(D, H, W)``, ``channels``, ``num_classes`` (1 = sigmoid).
    """

    patch: tuple
    spacing: tuple | None = None
    intensity: str = "ct"
    window: tuple | None = None
    channels: int = 1
    num_classes: int = 1
    threshold: float = 0.5
    overlap: float = 0.5

    @classmethod
    def from_config(cls, config) -> "VolumeSettings":
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)

        def or_default(key, default):               # only a missing value takes the default: overlap 0 stays 0
            value = get(key)
            return default if value is None else value

        patch = get("patch_size")
        if not patch:
            raise UserError("the run has no patch_size in its config.json; it was not trained on volumes")
        return cls(patch=tuple(int(p) for p in patch),
                   spacing=tuple(float(s) for s in get("target_spacing")) if get("target_spacing") else None,
                   intensity=get("intensity") or "ct", window=tuple(get("window")) if get("window") else None,
                   channels=int(get("channels") or 1), num_classes=int(get("num_classes") or 1),
                   threshold=float(or_default("threshold", 0.5)), overlap=float(or_default("overlap", 0.5)))


def load_for_model(path, settings: VolumeSettings, *, label_path=None) -> tuple[V.Volume, V.Volume | None]:
    """Read (and check) an image and optional label, reorient, resample and normalise the image as in training.

    Returns ``(image, label)`` Volumes on the model's grid; ``image.array`` is
    the normalised float32 ``(D, H, W, C)``.
    """
    image, label = V.read_case(path, label_path, channels=settings.channels > 1, canonical=True,
                               spacing=settings.spacing)
    if image.channels != settings.channels:
        raise UserError(f"{path} has {image.channels} channel(s) but the model was trained on {settings.channels}")
    return image.with_array(normalize(image.array, settings.intensity, settings.window)), label


def predict_probabilities(model, image: np.ndarray, settings: VolumeSettings, *, batch_size: int = 2,
                          tta: bool = False) -> np.ndarray:
    """Sliding-window probabilities of a normalised ``(D, H, W, C)`` image -> ``(D, H, W, K)`` float32."""
    from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict

    return sliding_window_predict(keras_predict_fn(model), image, settings.patch, overlap=settings.overlap,
                                  batch_size=batch_size, gaussian=True, tta=tta)


def probabilities_to_labels(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(..., K)`` probabilities -> ``(...)`` uint8 labels: ``p >= threshold`` for K = 1, argmax otherwise."""
    probs = np.asarray(probs)
    if probs.shape[-1] == 1:
        return (probs[..., 0] >= threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def predict_volume(model, path, settings: VolumeSettings, *, out: str | os.PathLike | None = None,
                   batch_size: int = 2, tta: bool = False) -> tuple[np.ndarray, V.Volume]:
    """Labels for the volume at ``path`` (NIfTI file or DICOM series folder) on the file's own voxel grid.

    Returns ``(labels (D0, H0, W0) uint8, image Volume on the model's grid)``;
    with ``out`` (a ``.nii.gz`` path) the labels are also written there with
    the input's affine and header (:func:`Functions.data.volumes.write_nifti`).
    """
    image, _ = load_for_model(path, settings)
    probs = predict_probabilities(model, image.array, settings, batch_size=batch_size, tta=tta)
    back = V.to_source(probs, image, order=1)
    labels = probabilities_to_labels(back, settings.threshold)
    if out is not None:
        V.write_nifti(out, labels, image.source.affine, image.source.header)
    return labels, image


def score_volume(truth: np.ndarray, pred: np.ndarray, spacing, num_classes: int = 1) -> dict:
    """Dice, IoU, HD95, ASSD ... of one label volume ``(D, H, W)``; distances in mm via ``spacing`` ``(z, y, x)``.

    One class: :func:`Functions.metrics.segmentation.binary_metrics`; several:
    :func:`~Functions.metrics.segmentation.multiclass_metrics` (``dice`` and
    ``iou`` are then the foreground means, ``dice_1``... per label).
    """
    from Functions.metrics.segmentation import binary_metrics, multiclass_metrics

    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise UserError(f"label volume {truth.shape} and prediction {pred.shape} differ in shape")
    if num_classes <= 1:
        return binary_metrics(truth > 0, pred > 0, spacing=spacing)
    out = multiclass_metrics(truth, pred, num_classes, spacing=spacing)
    out["dice"], out["iou"] = out["mean_dice"], out["mean_iou"]
    out["hd95"], out["assd"] = out["mean_hd95"], out["mean_assd"]
    return out


def output_name(path) -> str:
    """The NIfTI name a prediction of ``path`` gets: ``case1.nii.gz`` for ``case1.nii`` or a DICOM folder ``case1/``,
    ``study_series2.nii.gz`` for the second series of a folder ``study/`` that holds several."""
    return f"{V.volume_stem(path)}.nii.gz"


# ----------------------------------------------------------------------------- predict command
def is_volume_run(model_or_run) -> bool:
    """True when a run folder (or the folder of its ``model.keras``) holds a ``train --dims 3`` run."""
    import json

    path = Path(model_or_run)
    folder = path.parent if path.suffix == ".keras" else path
    try:
        settings = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and int(settings.get("dims") or 2) == 3


def list_volumes(path) -> list:
    """The volumes at ``path``: one NIfTI file, one DICOM series folder, or a folder of NIfTI files and
    DICOM series sub-folders (hidden and ``._*`` files skipped).  A DICOM folder holding several series
    (one study exported into one folder) gives one :class:`~Functions.data.volumes.SeriesRef` per series:
    each is its own volume with its own geometry."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--images {path} does not exist; give a .nii/.nii.gz file, a DICOM series folder or a "
                        "folder of volumes")
    if path.is_file():
        if not V.is_nifti_path(path):
            raise UserError(f"--images {path} is not a NIfTI volume (.nii/.nii.gz); a 3-D model predicts volumes")
        return [path]
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    niftis = [p for p in entries if p.is_file() and V.is_nifti_path(p)]
    series = [p for p in entries if p.is_dir()]
    if not niftis and not series:
        series = [path]                     # the folder itself is a DICOM series (read_volume says if not)
    return niftis + [ref for folder in series for ref in _series_of(folder)]


def _series_of(folder: Path) -> list:
    """``[folder]`` for a folder of one DICOM series, one SeriesRef per series when it holds several."""
    refs = V.dicom_series_in(folder)
    return refs if len(refs) > 1 else [folder]


def predict_volume_files(model_path, images, out, *, threshold: float | None = None, batch_size: int = 2,
                         tta: bool = False, overlap: float | None = None):
    """``predict`` for a 3-D run: each volume at ``images`` -> ``out/<name>.nii.gz`` on the input's grid.

    ``model_path``: the run folder or its ``model.keras``; the run's
    ``config.json`` says how to prepare the volumes.  ``out`` must be new.
    Also writes ``out/predictions.csv`` (name, shape, spacing, foreground
    voxels and millilitres per label).  Returns that table.
    """
    import pandas as pd

    from Functions.base.runs import read_run_settings
    from Functions.inference.loading import load_keras_model

    model_path = Path(model_path)
    run_dir = model_path.parent if model_path.suffix == ".keras" else model_path
    model_file = model_path if model_path.suffix == ".keras" else run_dir / "model.keras"
    if not model_file.is_file():
        raise UserError(f"--model {model_path} has no model.keras; give a finished `train --dims 3` run folder")
    settings = VolumeSettings.from_config(read_run_settings(run_dir, flag="--model"))
    if threshold is not None or overlap is not None:
        from dataclasses import replace

        settings = replace(settings, threshold=settings.threshold if threshold is None else float(threshold),
                           overlap=settings.overlap if overlap is None else float(overlap))
    volumes = list_volumes(images)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} already exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(model_file)
    rows = []
    for path in volumes:
        target = out / output_name(path)
        labels, image = predict_volume(model, path, settings, out=target, batch_size=batch_size, tta=tta)
        spacing = image.source.affine[:3, :3]
        voxel_ml = abs(float(np.linalg.det(spacing))) / 1000.0
        row = {"volume": path.name, "prediction": target.name, "shape": "x".join(map(str, labels.shape)),
               "spacing_mm": "x".join(f"{s:g}" for s in V.spacing_of(image.source.affine))}
        for k in range(1, max(2, settings.num_classes)):
            n = int(np.count_nonzero(labels == k))
            row[f"voxels_{k}"], row[f"ml_{k}"] = n, round(n * voxel_ml, 3)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    return table
