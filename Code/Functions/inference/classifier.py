"""Predicting with a trained classifier: load it with its ``classes.json`` and score images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError


def load_classifier(path: str | Path):
    """``(model, info)`` from a ``model.keras`` file or its run folder; ``info`` is ``classes.json``."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"--model {path} does not exist; pass a model.keras file written by classify-train "
                        "(or its run folder)")
    info_path = path.parent / "classes.json"
    if not info_path.is_file():
        raise UserError(f"no classes.json beside {path}; classify-train writes the class names there - "
                        "copy it with the model")
    info = json.loads(info_path.read_text())
    from Functions.inference.loading import load_keras_model

    model = load_keras_model(path)
    outputs = int(model.outputs[-1].shape[-1])
    if outputs != len(info["classes"]) and not (outputs == 1 and len(info["classes"]) == 2):
        raise UserError(f"{info_path} names {len(info['classes'])} classes but the model has {outputs} outputs; "
                        "the two files come from different runs")
    return model, info


def list_images(path: str | Path) -> list[Path]:
    """One image file, or every image under a folder (recursively, ``*_mask*`` files skipped)."""
    from Functions.data.labelled import is_mask_name
    from Functions.base.paths import walk_folders
    from Functions.data.imaging import is_image_file

    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"--images {path} does not exist; pass an image file or a folder of images")
    found = (Path(d) / f for d, _, names in walk_folders(path) for f in names)   # linked folders too
    files = sorted(p for p in found if p.is_file() and is_image_file(p) and not is_mask_name(p))
    if not files:
        raise UserError(f"--images {path} holds no image files")
    return files


def prepare_inputs(files: Sequence[str | Path], info: dict, workers: int = 4) -> np.ndarray:
    """Images preprocessed as at training time (``classes.json`` recipe): ``(N, H, W, C) float32``."""
    from concurrent.futures import ThreadPoolExecutor

    from Functions.data.imaging import read_image
    from Functions.data.preprocessing import prepare_image

    def one(p) -> np.ndarray:
        return prepare_image(read_image(p), info["image_size"], info["channels"], info.get("normalization", "minmax"),
                             info.get("clahe", False))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return np.stack(list(pool.map(one, files)))


def predict_images(model, images: str | Path | Sequence[str | Path], batch_size: int = 16, workers: int = 4):
    """Class probabilities for images: a ``DataFrame`` with ``image``, ``predicted``, ``probability``
    (of the predicted class) and one ``prob_<class>`` column per class, in the order of ``classes.json``.

    ``model``: a ``model.keras`` path or its run folder, or a ``(model, info)`` pair from
    :func:`load_classifier`.  ``images``: an image file, a folder, or a list of files.
    """
    import pandas as pd

    model, info = model if isinstance(model, tuple) else load_classifier(model)
    files = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    classes = info["classes"]
    x = prepare_inputs(files, info, workers)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=1)
    top = probs.argmax(axis=1)
    table = pd.DataFrame({"image": [str(p) for p in files], "predicted": [classes[i] for i in top],
                          "probability": probs[np.arange(len(top)), top]})
    for j, c in enumerate(classes):
        table[f"prob_{c}"] = probs[:, j]
    return table
