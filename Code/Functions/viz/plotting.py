"""Figures: samples, overlays, curves, predictions, augmentation grids.

Every function returns a :class:`matplotlib.figure.Figure` (and saves it when
given ``path``) so notebooks display it and the command line writes it.  The
non-interactive Agg backend is used unless a notebook already chose one.
"""

from __future__ import annotations

import os

import numpy as np

from Functions.data.overlays import (  # noqa: F401 - array drawing, shown in the figures below
    CLASS_COLORS, PRED_COLOR, TRUTH_COLOR, class_palette, colour_classes, display_image, mask_plane, overlay,
    overlay_classes)


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend unless a notebook already chose an inline one."""
    import matplotlib

    if "ipykernel" not in os.environ.get("MPLBACKEND", "") and matplotlib.get_backend().lower() not in (
            "module://matplotlib_inline.backend_inline", "inline", "nbagg", "widget"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path=None):
    """Save ``fig`` to ``path`` (110 dpi, tight) when a path is given; return ``fig``."""
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_samples(images, masks, n: int = 4, titles=None, path=None):
    """Rows of image | mask | overlay for the first ``n`` samples."""
    plt = pyplot()
    n = min(n, len(images))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        m = mask_plane(masks[i])
        panels = (display_image(images[i]), m, overlay(images[i], m))
        for j, (ax, p) in enumerate(zip(axes[i], panels)):
            ax.imshow(p, cmap="gray" if p.ndim == 2 else None)
            ax.set_axis_off()
            ax.set_title(("image" if titles is None else str(titles[i]), "mask", "overlay")[j], fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_history(history, path=None, metrics=("loss", "dice")):
    """Loss and Dice per epoch, training and validation, from a Keras ``History``, a dict or a ``history.csv``."""
    import pandas as pd

    plt = pyplot()
    if hasattr(history, "history"):
        df = pd.DataFrame(history.history)
        df.insert(0, "epoch", range(len(df)))
    elif isinstance(history, (str, os.PathLike)):
        df = pd.read_csv(history)
    else:
        df = pd.DataFrame(history)
    x = (df["epoch"] + 1) if "epoch" in df else np.arange(1, len(df) + 1)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        cols = [c for c in df.columns if c == name or (c.endswith("_" + name) and not c.startswith("val_")
                                                      and "mean_" + name not in c)]
        for col in cols[:1]:
            ax.plot(x, df[col], "o-", ms=3, label=f"train {name}")
            if "val_" + col in df:
                ax.plot(x, df["val_" + col], "s-", ms=3, label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_predictions(images, masks, preds, n: int = 4, scores=None, titles=None, path=None):
    """Rows of image | truth | prediction | overlay (truth green, prediction magenta)."""
    plt = pyplot()
    n = min(n, len(images))
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    for i in range(n):
        m, p = mask_plane(masks[i]), mask_plane(preds[i])
        panels = (display_image(images[i]), m, p, overlay(images[i], m, p))
        heads = ["image" if titles is None else str(titles[i]), "truth", "prediction",
                 "overlay" + ("" if scores is None else f"  Dice {scores[i]:.3f}")]
        for ax, panel, head in zip(axes[i], panels, heads):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0 if panel.ndim == 2 else None)
            ax.set_title(head, fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_augmentation_grid(image: np.ndarray, mask: np.ndarray | None, augmenter=None,
                           n: int = 8, seed: int = 0, *, ncols: int = 3,
                           panel_size: float = 2.6, path=None):
    """The original sample and ``n`` augmented versions, each with the mask outline drawn on it.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image (any intensity scale).
        mask: ``(H, W)`` or ``(H, W, 1)`` label mask, or ``None`` for no outline.
        augmenter: anything :func:`Functions.data.augmentation.get_augmenter` accepts
            (a preset name such as ``"ultrasound"``, a dict, an ``Augmenter``);
            ``None``, ``False`` or ``"none"`` mean no augmentation (every panel
            shows the original).
        n: number of augmented versions.
        seed: version ``i`` uses ``rng_for(seed, i)``, so the grid is reproducible.
        ncols: panels per row.
        panel_size: width and height of one panel in inches.
        path: where to save the figure (optional).

    Returns:
        A figure with ``n + 1`` panels: the original, then each version titled
        with the transforms applied to it.  Every panel uses the original's
        grey-value scale, so intensity changes are visible; each label of the
        mask is outlined in its own colour.
    """
    from skimage.measure import find_contours

    from Functions.data.augmentation import get_augmenter, rng_for

    if int(n) < 1:
        raise ValueError(f"plot_augmentation_grid: n={n!r} must be at least 1")
    plt = pyplot()
    aug = get_augmenter(augmenter)
    image = np.asarray(image)
    lo, hi = float(np.min(image)), float(np.max(image))
    span = hi - lo if hi > lo else 1.0

    panels = [(image, mask, "original")]
    for i in range(int(n)):
        if aug is None:
            panels.append((image, mask, f"#{i + 1}: no augmentation"))
        else:
            img, msk, applied = aug.apply(image, mask, rng_for(seed, i))
            panels.append((img, msk, f"#{i + 1}: " + (", ".join(applied) or "unchanged")))

    cols = max(1, min(int(ncols), len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size * cols, panel_size * rows + 0.3),
                             squeeze=False)
    colours = [TRUTH_COLOR] + [plt.get_cmap("tab10")(k) for k in (1, 3, 4, 5, 6, 8, 9)]
    for ax, (img, msk, title) in zip(axes.flat, panels):
        shown = (np.asarray(img, dtype=np.float32) - lo) / span
        if shown.ndim == 3 and shown.shape[2] == 1:
            shown = shown[..., 0]
        if shown.ndim == 3:
            ax.imshow(np.clip(shown[..., :3], 0.0, 1.0))
        else:
            ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0)
        if msk is not None:
            labels = np.asarray(msk).reshape(shown.shape[:2])
            for k, value in enumerate(v for v in np.unique(labels) if v != 0):
                for contour in find_contours((labels == value).astype(np.float32), 0.5):
                    ax.plot(contour[:, 1], contour[:, 0], color=colours[k % len(colours)],
                            linewidth=1.0)
        ax.set_title(_wrap_title(title, 28), fontsize=8)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(panels):]:
        ax.remove()
    fig.tight_layout()
    return save_figure(fig, path)


def _wrap_title(text: str, width: int) -> str:
    """Break a comma-separated title into lines of about ``width`` characters."""
    lines, line = [], ""
    for part in text.split(", "):
        candidate = f"{line}, {part}" if line else part
        if line and len(candidate) > width:
            lines.append(line + ",")
            line = part
        else:
            line = candidate
    return "\n".join(lines + [line])


# ----------------------------------------------------------------------------- classification
def plot_confusion_matrix(matrix, classes, normalize: bool = True, path=None):
    """Confusion matrix as a heat map: rows = true class, columns = predicted class.

    ``matrix`` is ``(K, K)`` counts (a list of lists is fine).  With
    ``normalize`` the colours show each row's fraction (the recall of that
    class) and every cell is labelled ``count`` and ``fraction``; otherwise the
    colours show counts.
    """
    plt = pyplot()
    cm = np.asarray(matrix, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    shown = frac if normalize else cm
    k = len(classes)
    side = 1.2 + 0.9 * k
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, int(cm.max())))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class" if normalize else "images")
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]}\n{frac[i, j]:.0%}" if normalize else str(cm[i, j])
            dark = shown[i, j] > (0.5 if normalize else cm.max() / 2)
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=30, ha="right")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
    ax.set_title(f"Confusion matrix ({int(cm.sum())} images, accuracy {acc:.3f})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_roc(y_true, probabilities, classes, path=None):
    """One-vs-rest ROC curve of every class (with its AUC in the legend) for labels ``(N,)`` and
    probabilities ``(N, K)``."""
    from Functions.metrics.classification import roc_auc, roc_curve

    plt = pyplot()
    y = np.asarray(y_true)
    probs = np.asarray(probabilities, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for k, name in enumerate(classes):
        auc = roc_auc(y == k, probs[:, k])
        if auc is None:
            continue  # no positives or no negatives: no curve
        fpr, tpr, _ = roc_curve(y == k, probs[:, k])
        ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC, one class vs the rest", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """RGB ``(H, W, 3)`` float image: ``heatmap`` ``(H, W)`` in [0, 1] coloured with ``cmap`` over the image."""
    plt = pyplot()
    base = display_image(image)
    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    colour = plt.get_cmap(cmap)(np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1))[..., :3]
    return np.clip((1 - alpha) * rgb + alpha * colour, 0, 1)


def plot_gradcam(images, heatmaps, titles=None, ncols: int = 4, path=None):
    """Grad-CAM figure: for each image, the image above its heat map overlay (red = most evidence).

    ``images`` ``(N, H, W, C)``, ``heatmaps`` ``(N, H, W)`` in [0, 1] (see
    :mod:`Functions.gradcam`); ``titles`` one string per image.
    """
    plt = pyplot()
    n = len(images)
    cols = max(1, min(ncols, n))
    groups = -(-n // cols)
    fig, axes = plt.subplots(2 * groups, cols, figsize=(2.6 * cols, 5.4 * groups), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        shown = display_image(images[i])
        axes[r, c].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[r, c].set_title("image" if titles is None else str(titles[i]), fontsize=8)
        axes[r + 1, c].imshow(heatmap_overlay(images[i], heatmaps[i]))
        axes[r + 1, c].set_title("Grad-CAM", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- classes and instances
def add_class_legend(fig_or_ax, class_names, loc: str = "lower center"):
    """Draw a colour legend (one patch per class, background included) on a figure or an axis."""
    from matplotlib.patches import Patch

    pal = class_palette(len(class_names))
    handles = [Patch(facecolor=pal[k], edgecolor="0.3", label=f"{k}: {name}") for k, name in enumerate(class_names)]
    if hasattr(fig_or_ax, "legend") and hasattr(fig_or_ax, "axes") and not hasattr(fig_or_ax, "imshow"):
        return fig_or_ax.legend(handles=handles, loc=loc, ncol=min(len(handles), 5), fontsize=8, frameon=False)
    return fig_or_ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)


def plot_class_predictions(images, truths, preds, class_names, n: int = 4, titles=None, path=None):
    """Rows of image | truth classes | predicted classes | overlay, with a colour legend of the classes.

    ``images``: ``(N, H, W[, C])``; ``truths``/``preds``: class maps ``(N, H, W)`` (``truths`` may be None).
    """
    plt = pyplot()
    k = len(class_names)
    n = min(n, len(images))
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n + 0.5), squeeze=False)
    for i in range(n):
        panels = [display_image(images[i]),
                  colour_classes(truths[i], k) if truths is not None else np.zeros(np.shape(preds[i]) + (3,)),
                  colour_classes(preds[i], k), overlay_classes(images[i], preds[i], k)]
        heads = ["image" if titles is None else str(titles[i]), "truth", "prediction", "overlay (prediction)"]
        for ax, im, head in zip(axes[i], panels, heads):
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
            ax.set_title(head, fontsize=9)
            ax.set_axis_off()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    add_class_legend(fig, class_names)
    return save_figure(fig, path)


def plot_instances(image, truth, pred, title: str | None = None, path=None, seed: int = 0):
    """image | true instances | predicted instances, each object in its own colour ``(H, W)`` label maps."""
    from Functions.inference.instances import colour_labels

    plt = pyplot()
    panels = [(display_image(image), "image" if title is None else title)]
    if truth is not None:
        panels.append((colour_labels(truth, seed), f"truth: {len(np.unique(truth)) - 1} objects"))
    panels.append((colour_labels(pred, seed + 1), f"prediction: {len(np.unique(pred)) - 1} objects"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3), squeeze=False)
    for ax, (im, head) in zip(axes[0], panels):
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
        ax.set_title(head, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)
