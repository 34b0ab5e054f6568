"""Random patches at native resolution (2-D or 3-D), nnU-Net style.

Instead of resizing every image to one square, training draws patches of a
fixed size from the full-resolution images each epoch:

* :func:`sample_patch` cuts one patch.  With probability
  ``foreground_probability`` (nnU-Net uses 1/3) and when the mask has
  foreground, the patch is centred on a random foreground pixel/voxel
  (shifted to stay inside the image); otherwise its corner is uniform over
  all positions.  An image smaller than the patch along an axis is padded to
  the patch size: the **image by reflection** (``numpy.pad`` mode
  ``"reflect"``, so the network sees plausible texture, not a black band) and
  the **mask by the same reflection** (same mode, same widths), so a nucleus
  mirrored into the padding is labelled as the nucleus it mirrors - zeros
  there would teach the network that a visible object is background.  An
  integer ``mask_pad_value`` (e.g. an ignore label the loss skips) fills the
  mask's padding instead.  With ``pad=False`` such an image is an error.
* :class:`PatchDataset` is a :class:`keras.utils.PyDataset` over a list of
  full-resolution arrays (sizes may differ; ``numpy.memmap`` arrays work and
  only the patch is read).  Patch ``j`` of epoch ``e`` comes from a generator
  seeded by ``(seed, e, j)``: which image, where, and its augmentation do not
  depend on the batch size or on thread timing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from Functions.base.errors import UserError

#: ``numpy.pad`` modes in which the mask is padded exactly as the image (the others invent intensities: mask 0).
MASK_PAD_MODES = ("reflect", "symmetric", "edge", "wrap", "constant")

#: How many foreground coordinates are kept per image to draw centres from (a random subset when more);
#: int32, so 8 KB per 2-D image however large the data set.
MAX_FOREGROUND_POINTS = 1_000


def patch_tuple(patch_size, ndim: int, flag: str = "--patch-size") -> tuple[int, ...]:
    """``patch_size`` (an int or one side per axis) as a tuple of ``ndim`` positive ints."""
    if isinstance(patch_size, (int, np.integer)):
        patch = (int(patch_size),) * ndim
    else:
        patch = tuple(int(p) for p in patch_size)
    if len(patch) != ndim:
        raise UserError(f"{flag} {patch_size} has {len(patch)} sides for data with {ndim} spatial axes; "
                        f"give one side or {ndim}")
    if any(p < 1 for p in patch):
        raise UserError(f"{flag} must be positive, got {patch_size}; use e.g. 128")
    return patch


def check_patch_fits(shapes: Sequence[tuple[int, ...]], patch_size, pad: bool = True,
                     flag: str = "--patch-size") -> tuple[int, ...]:
    """Check ``patch_size`` against the spatial ``shapes`` of the images; returns the patch tuple.

    Without padding every image must be at least the patch size on every axis;
    otherwise a :class:`UserError` names how many images are too small and the
    smallest size.
    """
    shapes = [tuple(int(s) for s in sh) for sh in shapes]
    if not shapes:
        raise UserError("no images to cut patches from; check the data folder and the split fractions")
    patch = patch_tuple(patch_size, len(shapes[0]), flag)
    small = [sh for sh in shapes if any(s < p for s, p in zip(sh, patch))]
    if small and not pad:
        smallest = min(shapes, key=lambda sh: int(np.prod(sh)))
        who = "every image" if len(small) == len(shapes) else f"{len(small)} of {len(shapes)} images"
        raise UserError(f"{flag} {'x'.join(map(str, patch))} is larger than {who} (smallest "
                        f"{'x'.join(map(str, smallest))}) and padding is off; choose a patch size no larger than "
                        "the smallest image, or allow padding (image and mask reflected alike)")
    return patch


def foreground_points(mask: np.ndarray, rng: np.random.Generator | None = None,
                      limit: int = MAX_FOREGROUND_POINTS) -> np.ndarray:
    """``(n, ndim)`` int32 coordinates of foreground (non-zero) pixels/voxels of ``mask`` ``(*spatial[, 1])``.

    At most ``limit`` of them (a random subset drawn with ``rng``, seeded 0 when
    ``None``), enough to draw patch centres from.
    """
    m = np.asarray(mask)
    if m.ndim >= 3 and m.shape[-1] == 1:
        m = m[..., 0]
    flat = np.flatnonzero(m)                    # 8 bytes per foreground pixel, once per image
    if len(flat) > limit:
        rng = rng if rng is not None else np.random.default_rng(0)
        flat = flat[np.sort(rng.choice(len(flat), limit, replace=False))]
    return np.stack(np.unravel_index(flat, m.shape), axis=-1).astype(np.int32).reshape(-1, m.ndim)


def sample_patch(image: np.ndarray, mask: np.ndarray | None, patch_size, rng: np.random.Generator,
                 foreground_probability: float = 1 / 3, *, points: np.ndarray | None = None, pad: bool = True,
                 pad_mode: str = "reflect", mask_pad_value: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One random patch: ``image (*spatial, C)``, ``mask (*spatial)`` or ``(*spatial, 1)`` ->
    ``(image (*patch, C), mask (*patch[, 1]))``, same dtypes (mask ``None`` -> ``None``).

    ``points`` are precomputed foreground coordinates (:func:`foreground_points`);
    without them they are found in ``mask`` when needed.  Axes shorter than the
    patch are padded (centred) with ``pad_mode``: the image, and the mask with
    the same mode and widths (:data:`MASK_PAD_MODES`; other modes, which
    invent intensities, pad the mask with 0), so padded image and mask agree
    pixel by pixel.  ``mask_pad_value`` (e.g. an ignore label): fill the
    mask's padding with it instead.  With ``pad=False`` they raise
    :class:`UserError`.
    """
    image = np.asarray(image) if not isinstance(image, np.memmap) else image
    ndim = image.ndim - 1
    if ndim not in (2, 3):
        raise UserError(f"sample_patch needs an image (H, W, C) or a volume (D, H, W, C), got shape {image.shape}")
    patch = patch_tuple(patch_size, ndim, "patch_size")
    spatial = image.shape[:ndim]
    if mask is not None and tuple(mask.shape[:ndim]) != tuple(spatial):
        raise UserError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    check_patch_fits([spatial], patch, pad, "patch_size")

    # Where the patch starts in the (virtually) padded image.
    pads = [((p - s) // 2, p - s - (p - s) // 2) if s < p else (0, 0) for s, p in zip(spatial, patch)]
    padded = [s + a + b for s, (a, b) in zip(spatial, pads)]
    centre = None
    if foreground_probability > 0 and rng.random() < foreground_probability and mask is not None:
        if points is None:
            points = foreground_points(mask, rng)
        if len(points):
            centre = points[int(rng.integers(len(points)))] + np.array([a for a, _ in pads])
    if centre is None:
        corner = [int(rng.integers(0, ps - p + 1)) for ps, p in zip(padded, patch)]
    else:
        corner = [int(np.clip(c - p // 2, 0, ps - p)) for c, p, ps in zip(centre, patch, padded)]

    # Cut from the unpadded arrays (reads only the patch of a memmap), then pad what is missing.
    src = tuple(slice(max(c - a, 0), min(c - a + p, s)) for c, (a, _), p, s in zip(corner, pads, patch, spatial))
    img = np.asarray(image[src])
    need = [(max(a - c, 0), p - (sl.stop - sl.start) - max(a - c, 0))
            for c, (a, _), p, sl in zip(corner, pads, patch, src)]
    if any(a or b for a, b in need):
        img = _pad(img, need + [(0, 0)], pad_mode)
    msk = None
    if mask is not None:
        msk = np.asarray(mask[src])
        if any(a or b for a, b in need):
            widths = need + [(0, 0)] * (msk.ndim - ndim)
            if mask_pad_value is None and pad_mode in MASK_PAD_MODES:
                msk = np.pad(msk, widths, mode=pad_mode)          # exactly as the image: labels follow pixels
            else:
                msk = np.pad(msk, widths, mode="constant", constant_values=mask_pad_value or 0)
    return img, msk


def _pad(array: np.ndarray, widths, mode: str) -> np.ndarray:
    try:
        return np.pad(array, widths, mode=mode)
    except ValueError as exc:
        raise UserError(f"pad_mode {mode!r} cannot pad a patch ({exc}); use 'reflect' or 'constant'") from None


#: How :func:`sampling_weights` can weight the images patches are drawn from.
PATCH_SAMPLING = ("image", "area")


def sampling_weights(shapes: Sequence[tuple[int, ...]], mode: str = "image") -> np.ndarray | None:
    """Relative patch-sampling weights of images with spatial ``shapes``.

    ``"image"``: ``None`` - every image equally often (nnU-Net), so a data set's
    many small images dominate; ``"area"``: in proportion to the pixels, so each
    pixel of the data set is equally likely to be in a patch and large images
    (which hold more of it) are drawn more often.
    """
    if mode not in PATCH_SAMPLING:
        raise UserError(f"--patch-sampling must be one of {', '.join(PATCH_SAMPLING)}, got {mode!r}")
    if mode == "image":
        return None
    return np.array([float(np.prod(sh)) for sh in shapes])


def patch_dataset(images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, patch_size, *,
                  batch_size: int = 8, patches_per_epoch: int | None = None,
                  foreground_probability: float = 1 / 3, augmenter: Callable | None = None, seed: int = 0,
                  num_outputs: int = 1, workers: int = 1, pad: bool = True, pad_mode: str = "reflect",
                  target_fn: Callable[[np.ndarray], np.ndarray] | None = None, fixed: bool = False,
                  weights: Sequence[float] | None = None, ignore: int | None = None):
    """A :class:`keras.utils.PyDataset` of random patches (see :class:`PatchDataset` built inside).

    ``images``: full-resolution arrays ``(*spatial, C)`` (2 or 3 spatial axes,
    sizes may differ, float32 expected; ``numpy.memmap`` is fine).  ``masks``:
    ``(*spatial)`` or ``(*spatial, 1)`` integer arrays, or ``None``.
    Each item is ``(x, y)``: ``x`` ``(B, *patch, C)`` float32 and ``y``
    ``target_fn(masks (B, *patch, 1))`` (default: the masks as float32),
    repeated in a tuple when ``num_outputs > 1``.  ``patches_per_epoch``
    (default: one per image) patches per epoch; patch ``j`` of epoch ``e``
    uses the generator ``default_rng([seed, e, j])`` for its image, position
    and augmentation.  ``augmenter`` is ``(image, mask, rng) -> (image, mask)``
    (2-D patches).  ``fixed=True`` draws the same patches every epoch
    (validation: a fixed, seeded set of patches, so epochs compare).
    ``weights``: how often each image is drawn, relative to the others (e.g.
    :func:`sampling_weights` ``"area"``: in proportion to its pixels, so every
    pixel of the data set is equally likely to be in a patch); default: every
    image once per ``len(images)`` patches.
    ``ignore``: the mask value of pixels outside a region of interest
    (:data:`Functions.data.samples.IGNORE`, written by
    :func:`Functions.data.native.outside_roi`).  Then each item is
    ``(x, y, w)``: ``w`` ``(B, *patch, 1)`` float32 is 0 on those pixels and 1
    elsewhere (Keras passes it to the loss as ``sample_weight``), ``y`` is 0
    there, and no patch is centred on them.
    """
    import keras

    images = list(images)
    masks = list(masks) if masks is not None else None
    if not images:
        raise UserError("no images to cut patches from; check the data folder and the split fractions")
    if masks is not None and len(masks) != len(images):
        raise UserError(f"{len(images)} images but {len(masks)} masks")
    ndim = images[0].ndim - 1
    patch = check_patch_fits([im.shape[:ndim] for im in images], patch_size, pad)
    probabilities = None
    if weights is not None:
        w = np.asarray(weights, np.float64)
        if w.shape != (len(images),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise UserError(f"patch sampling weights must be {len(images)} non-negative numbers, not all zero")
        probabilities = w / w.sum()

    class PatchDataset(keras.utils.PyDataset):
        """Batches of random patches; ``set_epoch`` positions the stream (resuming)."""

        def __init__(self):
            super().__init__(workers=max(1, int(workers)), use_multiprocessing=False, max_queue_size=8)
            self.images, self.masks, self.patch = images, masks, patch
            self.batch_size = int(batch_size)
            self.patches_per_epoch = int(patches_per_epoch or len(images))
            self.foreground_probability = float(foreground_probability)
            self.augmenter, self.seed, self.num_outputs = augmenter, int(seed), int(num_outputs)
            self.epoch = 0
            self._points: dict[int, np.ndarray] = {}
            self._orders: dict[tuple[int, int], np.ndarray] = {}

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)
            self._orders.clear()

        def on_epoch_end(self):
            if not fixed:
                self.set_epoch(self.epoch + 1)

        def __len__(self):
            return -(-self.patches_per_epoch // self.batch_size)

        def image_index(self, epoch: int, j: int) -> int:
            """Which image patch ``j`` of ``epoch`` comes from: every image once per ``len(images)`` patches,
            or drawn in proportion to ``weights``."""
            n = len(self.images)
            key = (epoch, j // n)
            order = self._orders.get(key)
            if order is None:
                rng = np.random.default_rng([self.seed, epoch, j // n, 11])
                order = rng.permutation(n) if probabilities is None else rng.choice(n, size=n, p=probabilities)
                self._orders[key] = order
            return int(order[j % n])

        def points(self, i: int) -> np.ndarray | None:
            if self.masks is None or self.foreground_probability <= 0:
                return None
            if i not in self._points:
                m = self.masks[i] if ignore is None else np.where(np.asarray(self.masks[i]) == ignore, 0,
                                                                   self.masks[i])
                self._points[i] = foreground_points(m, np.random.default_rng([self.seed, i, 13]))
            return self._points[i]

        def sample(self, epoch: int, j: int) -> tuple[np.ndarray, np.ndarray | None]:
            """Patch ``j`` of ``epoch``: ``(image (*patch, C) float32, mask (*patch, 1) or None)``."""
            i = self.image_index(epoch, j)
            rng = np.random.default_rng([self.seed, epoch, j])
            mask = None if self.masks is None else self.masks[i]
            img, msk = sample_patch(self.images[i], mask, self.patch, rng, self.foreground_probability,
                                    points=self.points(i), pad=pad, pad_mode=pad_mode)
            if msk is not None and msk.ndim == ndim:
                msk = msk[..., None]
            if self.augmenter is not None:
                img, msk = self.augmenter(img, msk, rng)
                if msk is not None:
                    msk = np.asarray(msk).reshape(img.shape[:ndim] + (1,))
            return np.asarray(img, np.float32), msk

        def __getitem__(self, b):
            if b < 0 or b >= len(self):
                raise IndexError(b)
            js = range(b * self.batch_size, min((b + 1) * self.batch_size, self.patches_per_epoch))
            pairs = [self.sample(self.epoch, j) for j in js]
            x = np.stack([p[0] for p in pairs])
            if self.masks is None:
                return x
            y = np.stack([p[1] for p in pairs])
            w = None
            if ignore is not None:
                outside = y == ignore
                w = (~outside).astype(np.float32)
                y = np.where(outside, 0, y).astype(y.dtype)
            y = target_fn(y) if target_fn is not None else y.astype(np.float32)
            if self.num_outputs > 1:
                y = tuple([y] * self.num_outputs)
                w = None if w is None else tuple([w] * self.num_outputs)
            return (x, y) if w is None else (x, y, w)

    return PatchDataset()
