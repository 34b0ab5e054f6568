"""Batches shaped for data-parallel training: padding to equal replica slices, and each host's share.

* :class:`PaddedBatches` wraps a :class:`keras.utils.PyDataset` of ``(x, y)``
  (or ``(x, y, w)``) batches so that every batch (or only batch 0) has a size
  that is a multiple of the replica count; the filler samples get weight 0.
* :func:`shard_indices` says which samples host ``index`` of ``count``
  reads in a multi-host job.

Which multiple applies, and whether to pad only the first batch, depends on
the active distribution: :func:`Functions.engine.distribute.even_batches`
decides and calls :func:`pad_batches`.  This module imports Keras at the top
(for the ``PyDataset`` base class); only the training engine imports it.
"""

from __future__ import annotations

import keras
import numpy as np


class PaddedBatches(keras.utils.PyDataset):
    """``batches`` with each batch size a multiple of ``multiple`` (only batch 0 with ``first_only``).

    Short batches are filled up by repeating their first sample, and every
    batch gains a sample-weight vector ``(B,)`` that is 1 for real samples
    (or the inner batches' own weights) and 0 for the filler, so the
    streaming metrics (Dice, IoU, mean Dice) count only real images.  The
    loss is not quite exact: Keras averages a batch's loss over all its
    samples, fillers included, so a padded batch's loss is scaled by
    ``real/padded`` (in the epoch's ``loss``/``val_loss`` at most
    ``multiple - 1`` fillers among all the split's images, the same factor
    every epoch).  ``set_epoch`` and ``on_epoch_end`` pass through, so
    shuffling and resuming behave as with the unwrapped batches.

    Items: ``x (B', ...)``, ``y`` (or a tuple of them, one per output) and
    ``w (B',)`` (a tuple of the same length as ``y`` when ``y`` is a tuple),
    ``B'`` the padded size.
    """

    def __init__(self, batches, multiple: int, first_only: bool = False):
        if multiple < 1:
            raise ValueError(f"multiple must be at least 1, got {multiple}")
        super().__init__(workers=getattr(batches, "workers", 1), use_multiprocessing=False,
                         max_queue_size=getattr(batches, "max_queue_size", 10))
        self.inner = batches
        self.multiple = int(multiple)
        self.first_only = bool(first_only)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        item = self.inner[i]
        x, y = item[:2]
        n = len(x)
        pad = 0 if self.first_only and i != 0 else (-n) % self.multiple
        weights = np.ones((n + pad,), dtype="float32")
        if len(item) > 2:                          # the batches carry sample weights already: keep them
            inner_w = item[2][-1] if isinstance(item[2], tuple) else item[2]
            weights[:n] = np.asarray(inner_w, dtype="float32")
        if pad:
            weights[n:] = 0.0

            def fill(a):
                return np.concatenate([a, np.repeat(a[:1], pad, axis=0)], axis=0)

            x = fill(x)
            y = tuple(fill(t) for t in y) if isinstance(y, tuple) else fill(y)
        w = tuple(weights for _ in y) if isinstance(y, tuple) else weights
        return x, y, w

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def on_epoch_end(self):
        self.inner.on_epoch_end()


def pad_batches(batches, multiple: int, first_only: bool = False):
    """:class:`PaddedBatches` over ``batches``; ``multiple <= 1`` returns ``batches`` unchanged."""
    if multiple <= 1:
        return batches
    return PaddedBatches(batches, multiple, first_only=first_only)


def shard_indices(n: int, count: int, index: int):
    """Indices of the ``n`` samples that host ``index`` of ``count`` reads; ``slice(None)`` (all) for one host.

    Host ``i`` of ``P`` takes samples ``i, i + P, i + 2P, ...``, wrapped
    around to the start so that every host gets the same number,
    ``ceil(n / P)``: the hosts must feed equal batches in lock-step.  So up
    to ``P - 1`` samples are read twice per epoch (as PyTorch's
    ``DistributedSampler`` does).

    >>> shard_indices(5, 2, 1).tolist()
    [1, 3, 0]
    """
    if count <= 1:
        return slice(None)
    per_host = -(-n // count)
    return (np.arange(per_host) * count + index) % n
