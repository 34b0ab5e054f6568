"""Panoptic prediction: one softmax head decoded into an instance map and a class map.

The head (``train --task panoptic``) has ``K = 2 + T + S`` channels, in the
order of :func:`Functions.data.instance_targets.panoptic_target`: 0
background, 1 object boundary, ``1 + t`` interior of an object of type ``t``
(``t = 1..T``), ``1 + c`` stuff class ``c`` (``c = T+1..T+S``).

Decoding (:func:`decode_panoptic`)
    1. Objects: the channels fold into the 3-class head of ``--task instance``
       (background + stuff | interior of any type | boundary) and the same
       marker-controlled watershed (:func:`Functions.inference.instances.probabilities_to_labels`)
       separates them.
    2. Object types: each pixel of an object votes for its most probable
       type; the object takes the majority (HoVer-Net's rule,
       :func:`Functions.data.panoptic_io.majority_types`).
    3. Stuff: every pixel outside objects takes the most probable of
       background and the stuff classes (semantic, no instances).
"""

from __future__ import annotations

import numpy as np

from Functions.base.errors import UserError
from Functions.data.panoptic_io import majority_types
from Functions.inference.instances import decoder_settings, probabilities_to_labels


def decode_panoptic(probabilities: np.ndarray, num_types: int, num_stuff: int = 0,
                    decoder: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 2 + T + S)`` probabilities -> ``(instance map int32, class map int32)`` (see the module docstring)."""
    p = np.asarray(probabilities, np.float32)
    k = 2 + num_types + num_stuff
    if p.ndim != 3 or p.shape[-1] != k:
        raise ValueError(f"a panoptic head with {num_types} types and {num_stuff} stuff classes has {k} channels, "
                         f"got shape {p.shape}")
    types = p[..., 2:2 + num_types]
    rest = p[..., [0] + list(range(2 + num_types, k))]          # background, stuff 1..S
    three = np.stack([rest.sum(-1), types.sum(-1), p[..., 1]], axis=-1)
    instances = probabilities_to_labels(three, **decoder_settings(decoder))
    outside = np.argmax(rest, axis=-1)
    outside = np.where(outside > 0, outside + num_types, 0)
    pixel = np.where(instances > 0, np.argmax(types, axis=-1) + 1, outside)
    return instances.astype(np.int32), majority_types(instances, pixel, num_types)


def panoptic_settings(settings: dict, source) -> tuple[int, int, list[str]]:
    """``(T, S, names)`` from a run's settings (``config.json``), or a one-line error naming ``source``."""
    t, s = settings.get("object_types"), settings.get("stuff_classes") or 0
    if settings.get("task") != "panoptic" or not t:
        raise UserError(f"--task panoptic needs a run trained with `train --task panoptic`; {source} is a "
                        f"{settings.get('task') or 'semantic'} run")
    names = list(settings.get("panoptic_names") or []) or (
        [f"type {k}" for k in range(1, t + 1)] + [f"stuff {k}" for k in range(1, s + 1)])
    return int(t), int(s), names


def panoptic_head(predictor, settings: dict, source) -> tuple[int, int, list[str]]:
    """:func:`panoptic_settings` of a loaded run, checked against its model's output channels (``2 + T + S``);
    a one-line :class:`UserError` naming ``source`` otherwise."""
    t, s, names = panoptic_settings(settings, source)
    channels = int(predictor.model.outputs[-1].shape[-1])
    if channels != 2 + t + s:
        raise UserError(f"{source} has {channels} output channels but its config.json describes {t} types and "
                        f"{s} stuff classes ({2 + t + s} channels); the run folder is inconsistent")
    return t, s, names


def predict_panoptic(predictor, images, num_types: int, num_stuff: int, batch_size: int = 8,
                     tta: bool = False) -> list:
    """``[(instance map, class map)]`` for each image ``(H, W, C)`` at its own size."""
    probs = predictor.probabilities(list(images), batch_size=batch_size, tta=tta)
    return [decode_panoptic(p, num_types, num_stuff, getattr(predictor, "decoder", None)) for p in probs]


#: Colours (RGB 0-255) of the object types; stuff classes get light tints.
TYPE_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (128, 128, 0))
STUFF_COLOURS = ((255, 225, 25), (170, 255, 195), (255, 215, 180), (220, 190, 255), (200, 200, 200))


def panoptic_overlay(image: np.ndarray, instances: np.ndarray, classes: np.ndarray, num_types: int,
                     names: list[str]) -> np.ndarray:
    """RGB uint8: stuff regions lightly tinted, each object's outline and fill in its type's colour, and a
    legend strip below naming every class in its colour."""
    import cv2

    from Functions.data.instance_targets import instance_boundaries
    from Functions.data.overlays import display_image

    base = display_image(image)
    rgb = np.repeat(base[..., None], 3, -1) if base.ndim == 2 else base[..., :3].copy()
    rgb = (rgb * 255).astype(np.float32)
    cls = np.asarray(classes)
    inst = np.asarray(instances)
    colours = {}
    for k, name in enumerate(names, start=1):
        colours[k] = np.array(TYPE_COLOURS[(k - 1) % len(TYPE_COLOURS)] if k <= num_types
                              else STUFF_COLOURS[(k - num_types - 1) % len(STUFF_COLOURS)], np.float32)
        on = cls == k
        alpha = 0.35 if k <= num_types else 0.25
        rgb[on] = (1 - alpha) * rgb[on] + alpha * colours[k]
    edges = instance_boundaries(inst)
    for k in range(1, num_types + 1):
        rgb[edges & (cls == k)] = colours[k]
    h, w = rgb.shape[:2]
    row = 14
    legend = np.full((row * len(names) + 4, w, 3), 255, np.uint8)
    for i, name in enumerate(names):
        y = 2 + i * row
        cv2.rectangle(legend, (3, y + 2), (13, y + 11), tuple(int(c) for c in colours[i + 1]), -1)
        kind = "object" if i < num_types else "stuff"
        cv2.putText(legend, f"{i + 1} {name} ({kind})", (18, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([np.clip(rgb, 0, 255).astype(np.uint8), legend], axis=0)


def predict_folder_panoptic(model_path, images, out, *, overlay: bool = False, batch_size: int = 8,
                            tta: bool = False, npy: bool = False):
    """``predict --task panoptic``: ``out/instances/<stem>.png`` + ``out/classes/<stem>.png`` (16-bit; with
    ``npy`` one ``out/<stem>.npy`` of shape ``(H, W, 2)`` instead), ``out/overlays/<stem>.png`` with a legend
    (``overlay``), ``out/classes.json`` and ``out/predictions.csv`` (objects per type)."""
    import json

    import pandas as pd

    from Functions.data.imaging import read_image, write_image
    from Functions.data.panoptic_io import write_panoptic
    from Functions.inference.predictor import (check_new_folder, images_in_chunks, list_images, load_predictor,
                                               run_settings)

    out = check_new_folder(out)
    files = list_images(images)
    for f in files:
        read_image(f)
    predictor = load_predictor(model_path)
    t, s, names = panoptic_head(predictor, run_settings(predictor_path(model_path)), model_path)
    rows = []
    for chunk, arrays in images_in_chunks(files, out, overlay, batch_size):
        for f, im, (inst, cls) in zip(chunk, arrays, predict_panoptic(predictor, arrays, t, s, batch_size, tta)):
            if npy:
                np.save(out / f"{f.stem}.npy", np.stack([inst, cls], -1).astype(np.int32))
            else:
                write_panoptic(out, f.stem, inst, cls)
            if overlay:
                write_image(out / "overlays" / f"{f.stem}.png", panoptic_overlay(im, inst, cls, t, names))
            row = {"image": str(f), "width": im.shape[1], "height": im.shape[0],
                   "foreground": float(np.mean(inst > 0)), "objects": int(len(np.unique(inst)) - 1)}
            for k in range(1, t + 1):
                row[f"n_{names[k - 1]}"] = int(len(np.unique(inst[cls == k])))
            rows.append(row)
    (out / "classes.json").write_text(json.dumps({"num_classes": t, "stuff_classes": s, "class_names": names},
                                                 indent=2) + "\n")
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    return table


def predictor_path(model_path):
    """The ``model.keras`` a run folder or model path names (for :func:`run_settings`)."""
    from pathlib import Path

    p = Path(model_path).expanduser()
    return p / "model.keras" if p.is_dir() else p
