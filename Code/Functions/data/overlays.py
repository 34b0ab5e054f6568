"""Drawing masks over images as arrays (no matplotlib): what the overlay files and the figures share.

* :func:`display_image` - any image as 2-D gray or RGB in [0, 1]; :func:`mask_plane` - ``(H, W[, 1])`` -> ``(H, W)``;
* :func:`overlay` - truth (green) and prediction (magenta) tinted over an image;
* :func:`class_palette`, :func:`colour_classes`, :func:`overlay_classes` - class maps in colour.

Every function takes and returns NumPy arrays (shapes in each docstring), so
the inference layer writes overlay PNGs with them and :mod:`Functions.viz.plotting`
puts them into figures (its ``plotting.overlay`` etc. are these functions).
"""

from __future__ import annotations

import numpy as np

TRUTH_COLOR = (0.0, 1.0, 0.0)   # green
PRED_COLOR = (1.0, 0.0, 1.0)    # magenta


def mask_plane(mask) -> np.ndarray:
    """A mask ``(H, W)`` or ``(H, W, 1)`` as ``(H, W)``."""
    m = np.asarray(mask)
    return m[..., 0] if m.ndim == 3 else m


def display_image(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` image as something ``imshow`` shows well: 2-D gray or RGB scaled to [0, 1]."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def overlay(image: np.ndarray, mask: np.ndarray | None = None, pred: np.ndarray | None = None,
            alpha: float = 0.45) -> np.ndarray:
    """RGB ``(H, W, 3)`` float image with the truth (green) and prediction (magenta) drawn over it.

    Filled areas are tinted with ``alpha``; contours are drawn solid.
    """
    from skimage.segmentation import find_boundaries

    base = display_image(image)
    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base.copy()
    for m, color in ((mask, TRUTH_COLOR), (pred, PRED_COLOR)):
        if m is None:
            continue
        on = mask_plane(m) > 0
        rgb[on] = (1 - alpha) * rgb[on] + alpha * np.asarray(color)
        rgb[find_boundaries(on, mode="inner")] = color
    return np.clip(rgb, 0, 1)


#: Colours of classes 1.. in class-map figures (class 0, background, is black); tab10 order.
CLASS_COLORS = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
                (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
                (0.74, 0.74, 0.13), (0.09, 0.75, 0.81))


def class_palette(num_classes: int) -> np.ndarray:
    """``(K, 3)`` float RGB colours: black for class 0, then :data:`CLASS_COLORS` (cycled)."""
    colours = [(0.0, 0.0, 0.0)] + [CLASS_COLORS[(k - 1) % len(CLASS_COLORS)] for k in range(1, num_classes)]
    return np.asarray(colours, np.float32)


def colour_classes(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Class map ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 in :func:`class_palette` colours."""
    table = (class_palette(num_classes) * 255).round().astype(np.uint8)
    return table[np.clip(np.asarray(classes, np.int64), 0, num_classes - 1)]


def overlay_classes(image: np.ndarray, classes: np.ndarray, num_classes: int, alpha: float = 0.45) -> np.ndarray:
    """Image ``(H, W[, C])`` + class map ``(H, W)`` -> RGB float ``(H, W, 3)`` in [0, 1]: each class
    tinted in its colour, class outlines solid; background left as is."""
    from skimage.segmentation import find_boundaries

    base = display_image(image)
    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base[..., :3].copy()
    pal = class_palette(num_classes)
    c = np.asarray(classes, np.int64)
    for k in range(1, num_classes):
        on = c == k
        if on.any():
            rgb[on] = (1 - alpha) * rgb[on] + alpha * pal[k]
            rgb[find_boundaries(on, mode="inner")] = pal[k]
    return np.clip(rgb, 0, 1)
