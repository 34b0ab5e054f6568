"""Turning samples into model-ready arrays and batches.

* :func:`load_arrays` decodes samples once (in threads), converts channels,
  resizes and normalises them, and returns one in-memory copy:
  images ``(N, H, W, C) float32`` and masks ``(N, H, W, 1) uint8``.
  This is the cache: nothing is decoded twice.
* :class:`SegmentationBatches` is a :class:`keras.utils.PyDataset` over
  those arrays: seeded shuffling every epoch, optional augmentation, batches,
  and background prefetching with worker threads.  PyDataset works the same
  on the TensorFlow, JAX and PyTorch backends.

Determinism: the order of epoch ``e`` depends only on ``(seed, e)``, and the
augmentation of sample ``j`` in epoch ``e`` only on ``(seed, e, j)`` (its own
generator), not on the batch size, the batch it falls in or thread timing, so
a run can be repeated and resumed.  (Keras' ``fit`` advances the stream once
before its first epoch, so a training run's epoch ``e`` draws the stream's
epoch ``e + 1``; the mapping is the same on a resumed run.)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from Functions.data.discovery import Sample, load_sample
from Functions.base.errors import UserError
from Functions.data.imaging import is_grayscale
from Functions.data.preprocessing import normalize, resize_binary_mask, resize_image, resize_mask, to_channels, clahe


def infer_channels(samples: Sequence[Sample], probe: int = 16) -> int:
    """1 if the first ``probe`` images are all grayscale (including RGB with equal channels), else 3."""
    for s in list(samples)[:probe]:
        if not is_grayscale(load_sample(s)[0]):
            return 3
    return 1


def load_arrays(samples: Sequence[Sample], image_size: int | tuple[int, int] | None = 128, channels: int | None = None,
                normalization: str = "minmax", use_clahe: bool = False, mask_mode: str = "binary",
                workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decode and preprocess ``samples`` into ``(images, masks)``.

    images: ``(N, H, W, C) float32``; masks: ``(N, H, W, 1) uint8`` (0/1 with
    ``mask_mode="binary"``, label values with ``"labels"``).  ``image_size``
    ``None`` keeps the original size (all images must then share one size).
    ``channels`` ``None`` picks 1 or 3 with :func:`infer_channels`.
    """
    samples = list(samples)
    if not samples:
        raise UserError("no samples to load; check the data folder and the split fractions")
    if channels is None:
        channels = infer_channels(samples)

    def one(sample: Sample):
        image, mask = load_sample(sample)
        image = to_channels(image, channels)
        if use_clahe:
            image = clahe(image)
        if mask_mode == "binary":   # by area fraction: nearest-neighbour shrinking frays small objects
            mask = resize_binary_mask(mask, image_size) if image_size is not None else (mask > 0).astype(np.uint8)
        elif image_size is not None:
            mask = resize_mask(mask, image_size)
        if image_size is not None:
            image = resize_image(image, image_size)
        return normalize(image, normalization), mask.astype(np.uint8)

    # Results are copied into one preallocated array as they arrive (in order), so the data set is held
    # once - not once as a list of arrays and again as their stack.  At most ``2 * workers`` decoded
    # images wait at any time (``pool.map`` would decode ahead without bound when copying lags behind).
    images = masks = None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (image, mask) in enumerate(bounded_map(pool, one, samples, 2 * max(1, workers))):
            if images is None:
                images = np.empty((len(samples),) + image.shape, image.dtype)
                masks = np.empty((len(samples),) + mask.shape + (1,), np.uint8)
            if image.shape != images.shape[1:]:
                pool.shutdown(wait=False, cancel_futures=True)
                raise UserError(f"images have different sizes {sorted({images.shape[1:], image.shape})} "
                                f"({samples[i].image}); pass --image-size N to resize them")
            images[i] = image
            masks[i, ..., 0] = mask
    return images, masks


def bounded_map(pool: ThreadPoolExecutor, fn, items: Sequence, window: int):
    """``pool.map(fn, items)`` in order, with at most ``window`` calls submitted and not yet consumed
    (bounded memory: ``pool.map`` would decode ahead without bound when the consumer lags behind)."""
    from collections import deque

    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def make_batches(images: np.ndarray, masks: np.ndarray, batch_size: int = 8, shuffle: bool = False,
                 augmenter=None, seed: int = 0, num_outputs: int = 1, workers: int = 2,
                 drop_remainder: bool = False, sample_weights: np.ndarray | None = None):
    """A :class:`keras.utils.PyDataset` yielding ``(x, y)`` batches (``y`` a tuple for several outputs).

    ``masks`` are ``(N, H, W, 1)`` masks for segmentation, or ``(N, K)`` per-image
    targets (one-hot class labels) for classification: those are left as they
    are while the images are augmented.
    ``augmenter`` is a callable ``(image, mask, rng) -> (image, mask)`` (see
    :mod:`Functions.augmentation`) or ``None``.  ``workers`` threads prefetch
    batches in the background (``workers=0`` or ``1`` runs in the main thread).
    ``sample_weights`` ``(N,)``: when given, batches are ``(x, y, w)`` with each sample's weight
    (classification uses it for balanced class weights, which also works under ``--distribute``).
    """
    import keras

    class _Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=max(1, workers), use_multiprocessing=False, max_queue_size=8)
            self.images, self.masks = images, masks
            self.batch_size = int(batch_size)
            self.shuffle, self.augmenter, self.seed = shuffle, augmenter, int(seed)
            self.num_outputs = int(num_outputs)
            self.drop_remainder = drop_remainder
            self.epoch = 0
            self._order = self._make_order()

        def _make_order(self):
            n = len(self.images)
            if not self.shuffle:
                return np.arange(n)
            return np.random.default_rng([self.seed, self.epoch]).permutation(n)

        def set_epoch(self, epoch: int) -> None:
            """Position the shuffling/augmentation stream at ``epoch`` (used when resuming)."""
            self.epoch = int(epoch)
            self._order = self._make_order()

        def __len__(self):
            n = len(self.images)
            return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

        def __getitem__(self, i):
            idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.images[idx], self.masks[idx]
            if self.augmenter is not None:
                # One stream per sample, keyed by (seed, epoch, sample index): a sample is augmented the same
                # way whatever the batch size, its batch or its position in the batch.
                rngs = [np.random.default_rng([self.seed, self.epoch, int(j), 7]) for j in idx]
                if y.ndim < 3:  # per-image targets (class labels): only the image moves
                    x = np.stack([self.augmenter(a, None, r)[0] for a, r in zip(x, rngs)]).astype(np.float32)
                else:
                    pairs = [self.augmenter(a, b, r) for a, b, r in zip(x, y, rngs)]
                    x = np.stack([p[0] for p in pairs]).astype(np.float32)
                    y = np.stack([np.asarray(p[1]).reshape(p[0].shape[:2] + (1,)) for p in pairs])
            y = y.astype(np.float32)
            if self.num_outputs > 1:
                y = tuple([y] * self.num_outputs)
            if sample_weights is not None:
                w = np.asarray(sample_weights, dtype=np.float32)[idx]
                return x, y, (tuple([w] * self.num_outputs) if self.num_outputs > 1 else w)
            return x, y

        def on_epoch_end(self):
            self.set_epoch(self.epoch + 1)

    if len(images) == 0:
        raise UserError("an empty split cannot be batched; lower the validation/test fractions or add data")
    return _Batches()
