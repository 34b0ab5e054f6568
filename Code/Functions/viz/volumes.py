"""Pictures of volumes: three orthogonal planes with label outlines, and sliding-window tiles.

Arrays are ``(D, H, W)`` in RAS orientation (``Functions.data.volumes.to_canonical``):
axial planes are ``[d]`` (shown with anterior up), coronal ``[:, h]`` and
sagittal ``[:, :, w]`` (superior up).  ``spacing`` ``(z, y, x)`` mm sets each
panel's aspect ratio so anisotropic voxels are drawn at their true shape.
"""

from __future__ import annotations

import numpy as np

PLANES = ("axial", "coronal", "sagittal")


def centre_point(label: np.ndarray | None, shape) -> tuple[int, int, int]:
    """The centroid of ``label`` (rounded) or the volume centre when it is empty/None: ``(d, h, w)``."""
    if label is not None and np.any(label):
        return tuple(int(round(c)) for c in np.argwhere(np.asarray(label) > 0).mean(axis=0))
    return tuple(int(s) // 2 for s in shape)


def plane(array: np.ndarray, which: str, point) -> np.ndarray:
    """The 2-D plane ``which`` of ``array`` ``(D, H, W)`` through ``point``, oriented for display."""
    d, h, w = point
    if which == "axial":
        return array[d][::-1]                    # rows: anterior at the top
    if which == "coronal":
        return array[:, h, :][::-1]              # rows: superior at the top
    if which == "sagittal":
        return array[:, :, w][::-1]
    raise ValueError(f"plane must be one of {PLANES}, got {which!r}")


def _aspect(which: str, spacing) -> float:
    sz, sy, sx = spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[which]


def plot_planes(image: np.ndarray, label=None, pred=None, *, spacing=(1.0, 1.0, 1.0), point=None, axes=None,
                title: str | None = None, window=None):
    """Axial, coronal and sagittal planes of ``image`` ``(D, H, W)`` through ``point`` (default: label centroid).

    ``label`` is outlined in green, ``pred`` in red.  ``window`` sets the grey
    range as everywhere in the package: ``(center, width)`` (HU for CT; black
    at ``center - width / 2``, white at ``center + width / 2``) or a preset
    name of :data:`Functions.data.medical_io.WINDOWS`; default: the 1st-99th
    percentile of ``image``.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    from Functions.data.medical_io import resolve_window

    image = np.asarray(image, np.float32)
    point = point if point is not None else centre_point(label if label is not None else pred, image.shape)
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    else:
        fig = axes[0].figure
    if window is None:
        lo, hi = np.percentile(image, [1, 99])
    else:
        center, width = resolve_window(window)
        lo, hi = center - width / 2, center + width / 2
    for ax, which in zip(axes, PLANES):
        ax.imshow(plane(image, which, point), cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(which, spacing),
                  interpolation="nearest")
        for mask, colour in ((label, "lime"), (pred, "red")):
            if mask is not None and np.any(plane(np.asarray(mask), which, point)):
                ax.contour(plane(np.asarray(mask) > 0, which, point).astype(float), levels=[0.5], colors=colour,
                           linewidths=1.0)
        ax.set_title(f"{which} ({'dhw'[PLANES.index(which)]}={point[PLANES.index(which)]})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_volume_predictions(examples, ids, *, scores=None, spacings=None, path=None):
    """One row of three planes per ``(image, truth, prediction)`` in ``examples``; truth green, prediction red."""
    import matplotlib.pyplot as plt

    n = max(1, len(examples))
    fig, axes = plt.subplots(n, 3, figsize=(11, 3.6 * n), squeeze=False)
    for i, (image, truth, pred) in enumerate(examples):
        spacing = spacings[i] if spacings is not None else (1.0, 1.0, 1.0)
        title = ids[i] + (f"  Dice {scores[i]:.3f}" if scores is not None else "")
        plot_planes(image, truth, pred, spacing=spacing, axes=axes[i])
        axes[i][0].set_ylabel(title, fontsize=9)
    fig.suptitle("truth (green) and prediction (red)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_tiles(image2d: np.ndarray, starts, patch, *, ax=None, upto: int | None = None, aspect: float = 1.0):
    """Draw sliding-window tiles on one plane: ``starts`` = (row starts, column starts), ``patch`` = (rows, cols).

    ``upto`` draws only the first ``upto`` tiles (to show them arriving one by one); the last is filled.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(image2d, cmap="gray", aspect=aspect, interpolation="nearest")
    corners = [(r, c) for r in starts[0] for c in starts[1]]
    upto = len(corners) if upto is None else upto
    for k, (r, c) in enumerate(corners[:upto]):
        last = k == upto - 1
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), patch[1], patch[0], fill=last, alpha=0.25 if last else 1.0,
                               edgecolor="orange", facecolor="orange", linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"tile {upto} of {len(corners)}", fontsize=9)
    return ax
