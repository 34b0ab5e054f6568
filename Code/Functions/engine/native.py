"""Segmentation at native resolution (``train --patch-size P``): the data, batches and scoring branches of
:class:`~Functions.engine.segmentation.SegmentationTask`.

* **data** (:func:`prepare_patch_data`): the training and validation images
  are decoded once at their own size (optionally resampled by ``--scale`` or
  to ``--spacing``) by :func:`Functions.data.native.load_native` - in memory,
  or as ``.npy`` memory maps under ``<runs>/.cache/`` when they exceed
  ``--max-memory`` (the choice and the size are printed).  The test images are
  not loaded: they are read one batch at a time when the model is scored.
* **batches** (:func:`patch_batches`): ``--patches-per-image`` random
  ``P x P`` patches per training image and epoch, ``--foreground-fraction``
  of them centred on a foreground pixel, images smaller than a patch padded
  (image and mask reflected alike, so a mirrored nucleus keeps its label;
  ``--no-pad-patches`` makes that an error); validation on a fixed, seeded set of patches.
* **scoring** (:func:`score_native`): each test image is predicted whole by
  sliding window (``--overlap``, Gaussian weights) and scored at its original
  resolution (HD95/ASSD in mm where the pixel spacing is known).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from Functions.base.errors import UserError


def cache_root(config) -> Path:
    """Where decoded arrays go when they exceed the memory budget: ``<parent of --out>/.cache`` or ``runs/.cache``."""
    return (Path(config.out).expanduser().parent if config.out else Path("runs")) / ".cache"


def choose_mode(config, samples, channels: int) -> str:
    """``--normalization auto`` for patch training, judged on (at most 64) training images resized for speed."""
    from Functions.data.pipeline import load_arrays
    from Functions.data.preprocessing import choose_normalization

    if config.normalization != "auto":
        return config.normalization
    x, y = load_arrays(samples[:64], 128, channels, "minmax", config.clahe)
    return choose_normalization(x, y)


def prepare_patch_data(config, data: dict, parts: dict, channels: int, masks=None) -> dict:
    """Fill ``data`` for patch training from the split ``parts`` (``{"train": samples, ...}``).

    ``masks``: a :class:`Functions.data.native.MaskSpec` for multi-class or instance targets (default: the
    binary union of each sample's mask files).

    ``data["train"]``/``["val"]``: ``(list of images (H_i, W_i, C) float32, list of masks (H_i, W_i) uint8,
    samples)``; ``data["test"]``: ``(None, None, samples)`` (read when scored); ``data["native"]``: the
    printed loading lines; ``data["preview"]``: four fixed validation patches for ``progress.png``.
    """
    from Functions.data.native import load_native
    from Functions.data.patches import check_patch_fits, patch_dataset

    if not parts["train"] or not parts["val"]:
        raise UserError("the split left no training or validation images; lower --val-fraction/--test-fraction")
    mode = choose_mode(config, parts["train"], channels)
    lines = []
    for name in ("train", "val"):
        loaded = load_native(parts[name], channels, mode, config.clahe, scale=config.scale, spacing=config.spacing,
                             max_memory=config.max_memory, cache_dir=cache_root(config), mask_spec=masks,
                             workers=max(1, config.workers))
        lines.append(loaded.message.replace("Data: ", f"Data ({name}): ", 1))
        data[name] = (loaded.images, loaded.masks, parts[name])
        if name == "train":                           # before the validation images are decoded
            check_patch_fits([im.shape[:2] for im in loaded.images], config.patch_size, config.pad_patches)
    data["test"] = (None, None, parts["test"])
    data["normalization"] = mode
    if data.get("roi"):
        lines.append("Region of interest: the field-of-view mask each sample ships (DRIVE mask/); the loss gives "
                     "weight 0 to the pixels outside it, and the test figures are " + data["roi"])
    data["native"] = lines
    preview = patch_dataset(data["val"][0][:4], data["val"][1][:4], config.patch_size,
                            batch_size=min(4, len(data["val"][0])), seed=config.seed + 1,
                            foreground_probability=1.0, pad=True, fixed=True, ignore=roi_ignore(data))
    data["preview"] = preview[0][:2]
    return data


def roi_ignore(data: dict) -> int | None:
    """The mask value patch batches turn into loss weight 0 when the samples have a region of interest."""
    from Functions.data.samples import IGNORE

    return IGNORE if data.get("roi") else None


def patch_batches(config, data: dict, model, batch_size: int):
    """``(train, val)`` patch PyDatasets (see the module docstring)."""
    from Functions.data.augmentation import get_augmenter
    from Functions.data.patches import patch_dataset, sampling_weights

    x_tr, y_tr, _ = data["train"]
    x_va, y_va, _ = data["val"]
    augmenter = get_augmenter(config.augment) if config.augment else None
    n_out = len(model.outputs)
    common = dict(foreground_probability=config.foreground_fraction, num_outputs=n_out, pad=config.pad_patches,
                  ignore=roi_ignore(data))
    weights = sampling_weights([im.shape[:2] for im in x_tr], config.patch_sampling)
    train = patch_dataset(x_tr, y_tr, config.patch_size, batch_size=batch_size,
                          patches_per_epoch=config.patches_per_image * len(x_tr), augmenter=augmenter,
                          seed=config.seed, workers=max(1, config.workers), weights=weights, **common)
    val = patch_dataset(x_va, y_va, config.patch_size, batch_size=batch_size,
                        patches_per_epoch=config.patches_per_image * len(x_va), seed=config.seed + 1,
                        workers=1, fixed=True, **common)
    return train, val


def describe_patches(config, data: dict, model) -> str:
    """The first lines printed when patch training starts."""
    n_tr, n_va, n_te = (len(data[k][2]) for k in ("train", "val", "test"))
    sizes = [im.shape[:2] for im in data["train"][0]]
    areas = [h * w for h, w in sizes]
    small, big = sizes[int(np.argmin(areas))], sizes[int(np.argmax(areas))]
    head = list(data.get("native", []))
    head.append(f"Training {config.model} on {n_tr} images at native resolution ({n_va} validation, {n_te} test; "
                f"{small[1]}x{small[0]} to {big[1]}x{big[0]}), {config.patches_per_image} random "
                f"{config.patch_size}x{config.patch_size} patch(es) per image and epoch"
                f"{' (drawn in proportion to image area)' if config.patch_sampling == 'area' else ''}, "
                f"{config.foreground_fraction:.0%} centred on foreground, {model.count_params():,} parameters")
    return "\n".join(head)


def predictor_for(model, config, channels: int):
    """A :class:`~Functions.inference.predictor.Predictor` for the just-trained ``model`` with the run's settings."""
    from Functions.inference.predictor import Predictor

    shape = tuple(model.inputs[0].shape)
    return Predictor(model=model, channels=channels, input_size=(shape[1], shape[2]),
                     normalization=config.normalization, clahe=bool(config.clahe), threshold=float(config.threshold),
                     image_size=config.image_size if not config.patch_size else None,
                     patch_size=config.patch_size, overlap=float(config.overlap), scale=config.scale)


def score_test_native(model, config, data: dict, split_samples: list):
    """Per-image metrics of ``split_samples`` at their original resolution (a DataFrame, see
    :func:`Functions.evaluation.native.score_samples`)."""
    from Functions.evaluation.native import score_samples
    from Functions.models import single_output

    predictor = predictor_for(single_output(model), config, data["channels"])
    return score_samples(predictor, split_samples, batch_size=config.batch_size, tta=config.tta,
                         threshold=config.threshold), predictor


def score_native(model, config, data: dict):
    """The scoring step of a model trained on patches (:class:`~Functions.engine.finish.Scores`): each test
    image predicted whole by sliding window and scored at its native resolution."""
    from Functions.base.runs import summary_json
    from Functions.data.discovery import load_sample
    from Functions.engine.finish import Scores
    from Functions.evaluation.native import NATIVE_NOTE
    from Functions.metrics.segmentation import summarize
    from Functions.viz.plotting import plot_predictions

    split_name = "test" if data["test"][2] else "validation"
    samples = data["test"][2] or data["val"][2]
    table, predictor = score_test_native(model, config, data, samples)
    summary = summarize(table.drop(columns=["width", "height"], errors="ignore"))
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}
    order = np.argsort(-table["dice"].to_numpy())
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]

    def predictions(run_dir):
        pairs = [load_sample(samples[i]) for i in pick]
        preds = predictor.predict([p[0] for p in pairs], batch_size=config.batch_size, tta=config.tta)
        return plot_predictions([p[0] for p in pairs], [p[1] for p in pairs], preds, n=len(pick),
                                scores=table["dice"].to_numpy()[pick], titles=[samples[i].id for i in pick],
                                path=run_dir / "predictions.png")

    note = (NATIVE_NOTE + f" Each test image was predicted whole by sliding window ({config.patch_size}x"
            f"{config.patch_size} tiles, overlap {config.overlap}, Gaussian weights)."
            + (f" Every image was {data['roi']} it ships (DRIVE mask/): Dice, IoU, accuracy and the other "
               "figures count only the pixels inside it, as DRIVE papers score." if data.get("roi") else ""))
    after = {"scored_at": "original resolution",
             "distance_unit": "/".join(sorted(set(table["unit"]))) if len(table) else "px",
             "patch_size": config.patch_size, "overlap": config.overlap,
             **({"roi": data["roi"]} if data.get("roi") else {}), "summary": summary_json(summary)}
    return Scores(split=split_name, n_images=len(table), metrics=metrics, after=after,
                  tables={"test_metrics.csv": table}, figures=[predictions], note=note,
                  where=", original resolution",
                  line=f"Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  ")
