"""Instance evaluation: a run's model, decoded into label maps, scored object by object.

:func:`score_instances` scores label maps (per image + a mean row, the
columns of :func:`Functions.metrics.instance.instance_table` plus the pixel
Dice of the merged foreground).  :func:`evaluate_instance_run` predicts a
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


def evaluate_instance_run(run_dir, data=None, dataset=None, data_dir=None, split=None, out=None,
                          batch_size: int = 8, tta: bool = False, min_size: int = 4) -> dict:
    """Score ``run_dir``'s model as an instance segmenter on a split of its data (or other data).

    Returns ``{"table", "split", "out"}``; the table's last row is the mean.
    """
    from Functions.base.runs import read_run_settings
    from Functions.data.imaging import read_image
    from Functions.data.instances import read_instances
    from Functions.evaluation.evaluate import run_samples
    from Functions.inference.instances import predict_instances
    from Functions.inference.predictor import check_new_folder, load_predictor

    settings = read_run_settings(run_dir)
    samples, split = run_samples(run_dir, settings, data=data, dataset=dataset, data_dir=data_dir, split=split)
    if any(getattr(s, "kind", "image") != "image" for s in samples):
        raise UserError("instance evaluation reads instances from image files (DSB2018 masks/, name_mask_N, "
                        "label-map PNGs); this data set stores its masks in another format")
    folder = check_new_folder(Path(out) if out else Path(run_dir) / f"evaluation-instance-{split}", "--out")
    predictor = load_predictor(run_dir, flag="--run")
    images = [read_image(s.image) for s in samples]
    trues = [read_instances(s, im.shape[:2]) for s, im in zip(samples, images)]
    preds = predict_instances(predictor, images, batch_size=batch_size, tta=tta, min_size=min_size)
    table = score_instances(trues, preds, names=[s.id for s in samples])
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "instance_metrics.csv", index=False)
    _worst_figure(folder / "worst_instances.png", table, images, trues, preds)
    return {"table": table, "split": split, "out": folder}


def _worst_figure(path, table, images, trues, preds, n: int = 4) -> None:
    from Functions.viz.plotting import pyplot, save_figure
    from Functions.inference.instances import colour_labels
    from Functions.viz.plotting import display_image

    scores = table["dsb_score"].to_numpy()[:-1]
    order = np.argsort(scores, kind="stable")[:n]
    plt = pyplot()
    fig, axes = plt.subplots(len(order), 3, figsize=(8, 2.7 * len(order)), squeeze=False)
    for row, i in zip(axes, order):
        for ax, im, head in zip(row, (display_image(images[i]), colour_labels(trues[i]), colour_labels(preds[i], 1)),
                                (f"{table['image'][i]}  DSB {scores[i]:.3f}", f"truth ({int(trues[i].max())})",
                                 f"prediction ({len(np.unique(preds[i])) - 1})")):
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
            ax.set_title(head, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
