"""Sliding-window inference: predict an image of any size with a model trained on patches.

The image is covered by overlapping tiles of the patch size (nnU-Net style):
along each spatial axis the tiles start at evenly spaced positions, the first
at 0 and the last flush with the border, spaced by at most
``patch * (1 - overlap)``.  Each tile's prediction is weighted by a Gaussian
importance map (1 at the tile centre, small but positive at its borders, so
tile borders - where a convolutional network sees the least context - count
least), summed into an output accumulator together with the weights, and the
sum is divided by the summed weights at the end.  An image smaller than a
patch along some axis is padded (``pad_mode``, reflect by default) to the
patch size, centred, and the result is cropped back: the output always has
the input's spatial shape.

Memory: one batch of tiles plus the two accumulators (``(*spatial, K)`` and
``(*spatial,)`` float32); tiles are cut from the image batch by batch, never
listed all at once.

Works for 2-D images ``(H, W, C)`` and 3-D volumes ``(D, H, W, C)``.

>>> probs = sliding_window_predict(keras_predict_fn(model), image, 256)   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from Functions.base.errors import UserError
from Functions.data.patches import patch_tuple

PredictFn = Callable[[np.ndarray], np.ndarray]


def check_overlap(overlap: float, flag: str = "--overlap") -> float:
    """``overlap`` as a float in ``[0, 1)``; else :class:`UserError` naming ``flag``."""
    try:
        value = float(overlap)
    except (TypeError, ValueError):
        raise UserError(f"{flag} must be a number in [0, 1), got {overlap!r}") from None
    if not 0.0 <= value < 1.0:
        raise UserError(f"{flag} must be in [0, 1) (the fraction of a tile shared with its neighbour, e.g. 0.5), "
                        f"got {overlap}")
    return value


def gaussian_importance_map(patch_size: tuple, sigma_scale: float = 1 / 8) -> np.ndarray:
    """Gaussian weights for one tile, shape ``patch_size`` (2 or 3 sides), float32.

    ``exp(-d^2 / (2 sigma^2))`` with ``sigma = side * sigma_scale`` per axis and
    ``d`` the distance to the tile centre ``(side - 1) / 2`` (the map is
    symmetric under flips); normalised to a maximum of 1, and the minimum
    clipped to the smallest positive normal float32 so that no weight is 0
    (as nnU-Net does).
    """
    patch = tuple(int(p) for p in np.atleast_1d(patch_size))
    if any(p < 1 for p in patch):
        raise UserError(f"patch_size {patch_size} must be positive")
    if sigma_scale <= 0:
        raise UserError(f"sigma_scale must be positive, got {sigma_scale}")
    weights = np.ones((), np.float64)
    for side in patch:
        x = np.arange(side, dtype=np.float64) - (side - 1) / 2.0
        sigma = side * sigma_scale
        g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
        weights = np.multiply.outer(weights, g)
    weights = weights / weights.max()
    weights = weights.astype(np.float32)
    return np.maximum(weights, np.finfo(np.float32).tiny)


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start positions of the tiles along one axis of length ``size >= patch``.

    ``n = ceil((size - patch) / (patch * (1 - overlap))) + 1`` tiles, evenly
    spread from ``0`` to ``size - patch`` (rounded), as nnU-Net does.
    """
    if size <= patch:
        return [0]
    step = max(patch * (1.0 - overlap), 1.0)
    n = int(np.ceil((size - patch) / step)) + 1
    actual = (size - patch) / (n - 1)
    return [int(round(actual * i)) for i in range(n)]


def _flip_sets(ndim: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes ``1..ndim`` of a batch (the identity first)."""
    axes = range(1, ndim + 1)
    return [c for r in range(ndim + 1) for c in itertools.combinations(axes, r)]


def _predict_batch(predict_fn: PredictFn, batch: np.ndarray, tta: bool) -> np.ndarray:
    if not tta:
        return np.asarray(predict_fn(batch), dtype=np.float32)
    total = None
    flips = _flip_sets(batch.ndim - 2)
    for axes in flips:
        x = np.ascontiguousarray(np.flip(batch, axis=axes)) if axes else batch
        p = np.asarray(predict_fn(x), dtype=np.float32)
        p = np.flip(p, axis=axes) if axes else p
        total = p.copy() if total is None else total + p
    return total / float(len(flips))


def sliding_window_predict(predict_fn: PredictFn, image: np.ndarray, patch_size, *, overlap: float = 0.5,
                           batch_size: int = 4, gaussian: bool = True, tta: bool = False,
                           pad_mode: str = "reflect") -> np.ndarray:
    """Predict ``image`` ``(*spatial, C)`` (2 or 3 spatial axes) tile by tile -> ``(*spatial, K)`` float32.

    ``predict_fn`` maps a float32 batch ``(B, *patch, C)`` to ``(B, *patch, K)``
    (e.g. :func:`keras_predict_fn`); it is called with batches of exactly
    ``min(batch_size, number of tiles)`` tiles (the last batch is filled up by
    repeating its last tile, so a compiled model sees one batch shape).
    ``patch_size`` is an int (same side on every axis) or one side per axis.
    ``overlap`` in ``[0, 1)`` is the fraction of a tile shared with its
    neighbour.  ``gaussian`` weights every tile by
    :func:`gaussian_importance_map` (else uniformly).  ``tta`` averages the
    predictions over every combination of flips of the spatial axes.  Axes
    shorter than the patch are padded with ``pad_mode`` (a :func:`numpy.pad`
    mode; ``"reflect"`` mirrors the image) and cropped back.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise UserError(f"sliding_window_predict needs an image (H, W, C) or a volume (D, H, W, C), "
                        f"got shape {image.shape}")
    ndim = image.ndim - 1
    patch = patch_tuple(patch_size, ndim, flag="patch_size")
    overlap = check_overlap(overlap, "overlap")
    if int(batch_size) < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    spatial = image.shape[:ndim]

    # Pad axes shorter than the patch (centred), remember how to crop back.
    pads = [((p - s) // 2, p - s - (p - s) // 2) if s < p else (0, 0) for s, p in zip(spatial, patch)]
    if any(a or b for a, b in pads):
        try:
            image = np.pad(image, pads + [(0, 0)], mode=pad_mode)
        except ValueError as exc:
            raise UserError(f"pad_mode {pad_mode!r} is not a numpy.pad mode ({exc}); use 'reflect' or "
                            "'constant'") from None
    padded = image.shape[:ndim]

    weight = gaussian_importance_map(patch) if gaussian else np.ones(patch, np.float32)
    starts = [tile_starts(s, p, overlap) for s, p in zip(padded, patch)]
    n_tiles = int(np.prod([len(s) for s in starts]))
    bsize = min(int(batch_size), n_tiles)

    out: np.ndarray | None = None
    norm = np.zeros(padded, np.float32)
    batch = np.empty((bsize, *patch, image.shape[-1]), np.float32)
    corners: list[tuple[int, ...]] = []

    def flush() -> None:
        nonlocal out
        n = len(corners)
        if n < bsize:  # keep the batch shape fixed: repeat the last tile
            batch[n:] = batch[n - 1]
        pred = _predict_batch(predict_fn, batch, tta)
        if pred.shape[:-1] != batch.shape[:-1]:
            raise UserError(f"the model maps tiles of shape {batch.shape[1:]} to {pred.shape[1:]}, not to the same "
                            "spatial size; choose a patch size the model accepts (for a U-Net a multiple of "
                            "2**depth)")
        if out is None:
            out = np.zeros((*padded, pred.shape[-1]), np.float32)
        for k, corner in enumerate(corners):
            sl = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            out[sl] += pred[k] * weight[..., None]
            norm[sl] += weight
        corners.clear()

    for corner in itertools.product(*starts):
        sl = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        batch[len(corners)] = image[sl]
        corners.append(corner)
        if len(corners) == bsize:
            flush()
    if corners:
        flush()

    assert out is not None
    out /= norm[..., None]
    if not any(a or b for a, b in pads):
        return out
    return np.ascontiguousarray(out[tuple(slice(a, a + s) for (a, _), s in zip(pads, spatial))])


def keras_predict_fn(model) -> PredictFn:
    """A ``predict_fn`` for :func:`sliding_window_predict` from a Keras model.

    Deep-supervision models are reduced to their last head
    (:func:`Functions.models.single_output`).  Each batch goes through
    ``model.predict_on_batch`` (the backend's compiled predict step, no
    per-call data-adapter set-up as in ``model.predict``); the result is a
    float32 NumPy array ``(B, *patch, K)``.
    """
    from Functions.models import single_output

    net = single_output(model)

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(net.predict_on_batch(batch), dtype=np.float32)

    return predict


def predict_many(predict_fn: PredictFn, images: Sequence[np.ndarray], patch_size, **options) -> list[np.ndarray]:
    """:func:`sliding_window_predict` for each image of a list (sizes may differ) -> list of ``(*spatial, K)``."""
    return [sliding_window_predict(predict_fn, im, patch_size, **options) for im in images]
