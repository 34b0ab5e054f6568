"""Instance evaluation: a run's model, decoded into label maps, scored object by object.

:func:`score_instances` scores label maps (per image + a mean row, the
columns of :func:`Functions.metrics.instance.instance_table` plus the pixel
Dice of the merged foreground).  :func:`predict_and_score` predicts samples
with a predictor and scores them at their original size, a batch at a time
(the end of ``train --task instance`` uses it).  :func:`evaluate_instance_run` predicts a
run's split with its ``model.keras`` (3-class head: watershed; 1-channel
head: connected components), reads the true instances of every sample
(:func:`Functions.data.instances.read_instances`) and writes
``instance_metrics.csv`` and ``worst_instances.png`` to a new folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from Functions.base.errors import UserError


def score_instances(trues, preds, names=None):
    """Per-image instance metrics + ``pixel_dice`` (foreground Dice) and a final ``mean`` row (DataFrame).

    ``trues``, ``preds``: sequences of ``(H, W)`` integer label maps.
    """
    from Functions.metrics.instance import instance_table
    from Functions.metrics.segmentation import dice

    trues, preds = list(trues), list(preds)
    table = instance_table(trues, preds, names=names)
    pixel = [dice(np.asarray(t) > 0, np.asarray(p) > 0) for t, p in zip(trues, preds)]
    if pixel:
        table["pixel_dice"] = pixel + [float(np.mean(pixel))]
    return table


def check_image_samples(samples) -> None:
    """Instances are read from image files: refuse volumes and slices with one clear error."""
    if any(getattr(s, "kind", "image") != "image" for s in samples):
        raise UserError("instance evaluation reads instances from image files (DSB2018 masks/, name_mask_N, "
                        "label-map PNGs); this data set stores its masks in another format")


def instance_batches(samples, batch_size: int):
    """``(start, samples, images, true label maps)`` for consecutive batches of image ``samples``."""
    from Functions.data.imaging import read_image
    from Functions.data.instances import read_instances

    for start in range(0, len(samples), max(1, int(batch_size))):
        chunk = samples[start:start + batch_size]
        images = [read_image(s.image) for s in chunk]
        yield start, chunk, images, [read_instances(s, im.shape[:2]) for s, im in zip(chunk, images)]


def predict_and_score(predictor, samples, *, batch_size: int = 8, tta: bool = False, min_size: int | None = None,
                      keep: int = 4):
    """Predict ``samples`` with a :class:`~Functions.inference.predictor.Predictor`, decode label maps and
    score them against the true instances, each image at its original size.

    Images are read one batch at a time, so memory does not grow with the
    number of samples.  Returns ``(table, worst)``: the table of
    :func:`score_instances` (last row the mean) and the ``keep`` lowest-scoring
    images as ``(index, image, true labels, predicted labels)``, lowest first.
    """
    import pandas as pd

    from Functions.inference.instances import predict_instances

    samples = list(samples)
    check_image_samples(samples)
    parts, worst = [], []
    for start, chunk, images, trues in instance_batches(samples, batch_size):
        preds = predict_instances(predictor, images, batch_size=batch_size, tta=tta, min_size=min_size)
        part = score_instances(trues, preds, names=[s.id for s in chunk]).iloc[:-1]
        parts.append(part)
        for j, score in enumerate(part["dsb_score"].to_numpy()):
            worst.append((float(score), start + j, images[j], trues[j], preds[j]))
        worst = sorted(worst, key=lambda w: (w[0], w[1]))[:keep]
    table = pd.concat(parts, ignore_index=True) if parts else score_instances([], [])
    if len(table):
        numeric = [c for c in table.columns if c != "image"]
        mean = {"image": "mean", **{c: float(table[c].mean()) for c in numeric}}
        table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    return table, [w[1:] for w in worst]


#: The settings :func:`tune_decoder` tries: a grid over the two thresholds, then the smallest marker (seed)
#: size, then the smallest object size.  The interior grid reaches 0.95 because DSB2018 models trained
#: without boundary weights chose 0.9 at the old grid's edge; markers of 8 px beat 2 px in two of three
#: DSB2018 runs (a small confident speck no longer splits one nucleus in two).
TUNING_GRID = {"interior_threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
               "foreground_threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "min_marker_size": (2, 4, 8, 16, 32),
               "min_size": (2, 4, 8, 16, 32, 64)}

#: :func:`tune_decoder` tunes a kind of image (:func:`Functions.inference.instances.image_kind`) on its own
#: only when the validation split holds at least this many images of it.
MIN_KIND_IMAGES = 5


def _search(score, start: dict, grid: dict) -> tuple[dict, float]:
    """The grid search of :func:`tune_decoder` from ``start``: both thresholds, then each size in turn."""
    best, best_score = start, score(start)
    for it in grid["interior_threshold"]:
        for ft in grid["foreground_threshold"]:
            candidate = {**best, "interior_threshold": float(it), "foreground_threshold": float(ft)}
            value = score(candidate)
            if value > best_score + 1e-12:
                best, best_score = candidate, value
    for key in ("min_marker_size", "min_size"):
        for size in grid[key]:
            candidate = {**best, key: int(size)}
            value = score(candidate)
            if value > best_score + 1e-12:
                best, best_score = candidate, value
    return best, best_score


def tune_decoder(predictor, samples, *, batch_size: int = 8, tta: bool = False, grid: dict | None = None,
                 by_kind: bool = True, min_kind_images: int = MIN_KIND_IMAGES) -> dict:
    """Choose the watershed settings that maximise the mean DSB2018 score on ``samples`` (a validation split,
    never the test split).

    The probabilities of every sample are predicted once (at its original
    size); the two thresholds of
    :func:`Functions.inference.instances.three_class_to_labels` are searched
    on a grid at the default sizes, then ``min_marker_size`` at the best
    thresholds, then ``min_size``.  Ties keep the earlier (default-nearest) setting.

    ``by_kind``: when the split mixes kinds of image
    (:func:`~Functions.inference.instances.image_kind`: fluorescence, brightfield,
    stained), each kind with at least ``min_kind_images`` images is searched
    again on its own images, starting from the general choice, and its
    settings are kept (``chosen["by_kind"][kind]``) only when they score
    higher there.  Other kinds, and new kinds met at prediction time, use the
    general settings.

    Returns ``{"chosen": {..., "by_kind": {...}}, "default_score": float,
    "general_score": float, "chosen_score": float, "n_images": int,
    "kinds": {kind: {"n_images", "general_score", "chosen_score"}},
    "trials": [{settings..., "dsb_score"}, ...]}`` (scores: mean DSB2018
    score over the images; ``trials`` lists the general search).
    """
    from Functions.inference.instances import DECODER_DEFAULTS, image_kind, probabilities_to_labels
    from Functions.metrics.instance import instance_metrics

    grid = {**TUNING_GRID, **(grid or {})}
    samples = list(samples)
    if not samples:
        raise UserError("no validation images to tune the watershed on; keep a validation split (--val-fraction)")
    check_image_samples(samples)
    probs, trues, kinds = [], [], []
    for _, _, images, labels in instance_batches(samples, batch_size):
        trues += labels
        kinds += [image_kind(im) for im in images]
        probs += [p.astype(np.float16) for p in predictor.probabilities(images, batch_size=batch_size, tta=tta)]

    def image_scores(indices, settings: dict) -> np.ndarray:
        """DSB2018 score of each image in ``indices`` decoded with ``settings``."""
        return np.array([instance_metrics(trues[i], probabilities_to_labels(probs[i].astype(np.float32), **settings))
                         ["dsb_score"] for i in indices])

    def scorer(indices, trials):
        def score(settings: dict) -> float:
            for t in trials:
                if all(t[k] == settings[k] for k in settings):
                    return t["dsb_score"]
            value = float(image_scores(indices, settings).mean())
            trials.append({**settings, "dsb_score": value})
            return value
        return score

    trials: list[dict] = []
    everything = list(range(len(samples)))
    general, general_score = _search(scorer(everything, trials), dict(DECODER_DEFAULTS), grid)
    per_image = image_scores(everything, general)
    chosen, report = dict(general), {}
    present = sorted(set(kinds), key=kinds.index)
    for kind in present if by_kind and len(present) > 1 else ():
        indices = [i for i in everything if kinds[i] == kind]
        entry = {"n_images": len(indices), "general_score": float(per_image[indices].mean())}
        if len(indices) >= min_kind_images:
            own, own_score = _search(scorer(indices, []), dict(general), grid)
            if own_score > entry["general_score"] + 1e-12:
                chosen.setdefault("by_kind", {})[kind] = own
                per_image[indices] = image_scores(indices, own)
        entry["chosen_score"] = float(per_image[indices].mean())
        report[kind] = entry
    return {"chosen": chosen, "default_score": trials[0]["dsb_score"], "general_score": general_score,
            "chosen_score": float(per_image.mean()), "n_images": len(samples), "kinds": report, "trials": trials}


def describe_decoder(chosen: dict) -> str:
    """One line for the tuned settings of :func:`tune_decoder`: the general ones, then each kind's own."""
    def line(settings: dict) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in settings.items() if k != "by_kind")

    kinds = "; ".join(f"{kind} images: {line(s)}" for kind, s in (chosen.get("by_kind") or {}).items())
    return line(chosen) + (f"; {kinds}" if kinds else "")


def evaluate_instance_run(run_dir, data=None, dataset=None, data_dir=None, split=None, out=None,
                          batch_size: int = 8, tta: bool = False, min_size: int | None = None) -> dict:
    """Score ``run_dir``'s model as an instance segmenter on a split of its data (or other data).

    Returns ``{"table", "split", "out"}``; the table's last row is the mean.
    """
    from Functions.base.runs import read_run_settings
    from Functions.evaluation.evaluate import run_samples
    from Functions.inference.instances import check_instance_head
    from Functions.inference.predictor import check_new_folder, load_predictor

    settings = read_run_settings(run_dir)
    samples, split = run_samples(run_dir, settings, data=data, dataset=dataset, data_dir=data_dir, split=split)
    check_image_samples(samples)
    folder = check_new_folder(Path(out) if out else Path(run_dir) / f"evaluation-instance-{split}", "--out")
    predictor = load_predictor(run_dir, flag="--run")
    check_instance_head(predictor, run_dir)
    table, worst = predict_and_score(predictor, samples, batch_size=batch_size, tta=tta, min_size=min_size)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "instance_metrics.csv", index=False)
    worst_figure(folder / "worst_instances.png", table, worst)
    return {"table": table, "split": split, "out": folder}


def worst_figure(path, table, worst) -> None:
    """Image, true and predicted instances of the ``worst`` images (from :func:`predict_and_score`)."""
    from Functions.inference.instances import colour_labels
    from Functions.viz.plotting import display_image, pyplot, save_figure

    if not worst:
        return
    scores = table["dsb_score"].to_numpy()
    plt = pyplot()
    fig, axes = plt.subplots(len(worst), 3, figsize=(8, 2.7 * len(worst)), squeeze=False)
    for row, (i, image, truth, pred) in zip(axes, worst):
        for ax, im, head in zip(row, (display_image(image), colour_labels(truth), colour_labels(pred, 1)),
                                (f"{table['image'][i]}  DSB {scores[i]:.3f}", f"truth ({len(np.unique(truth)) - 1})",
                                 f"prediction ({len(np.unique(pred)) - 1})")):
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
            ax.set_title(head, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
