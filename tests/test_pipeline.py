"""Loading arrays once and batching them reproducibly on every backend."""

import numpy as np
import pytest

from Functions.data.discovery import find_samples
from Functions.data.pipeline import load_arrays, make_batches


def test_load_arrays_shapes_and_ranges(tiny_pairs_dir):
    samples = find_samples(tiny_pairs_dir)
    x, y = load_arrays(samples, image_size=16)
    assert x.shape == (12, 16, 16, 1) and x.dtype == np.float32
    assert y.shape == (12, 16, 16, 1) and y.dtype == np.uint8
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == {0, 1}
    x3, _ = load_arrays(samples[:2], image_size=16, channels=3)
    assert x3.shape == (2, 16, 16, 3)


@pytest.mark.backend
def test_batches_seeded_shuffle_and_augmentation():
    from Functions.data.augmentation import get_augmenter

    rng = np.random.default_rng(0)
    x = rng.random((10, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.uint8)
    aug = get_augmenter("light")
    a = make_batches(x, y, batch_size=4, shuffle=True, augmenter=aug, seed=1, workers=1)
    b = make_batches(x, y, batch_size=4, shuffle=True, augmenter=aug, seed=1, workers=1)
    assert len(a) == 3
    for i in range(3):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
        # augmentation is joint: mask still equals the thresholded image
        np.testing.assert_array_equal(a[i][1][..., 0], (a[i][0][..., 0] > 0.5).astype(np.float32))
    first = a[0][0]
    a.on_epoch_end()
    assert not np.array_equal(first, a[0][0])  # a new order each epoch
    c = make_batches(x, y, batch_size=4, shuffle=True, seed=1, workers=1)
    c.set_epoch(1)
    d = make_batches(x, y, batch_size=4, shuffle=True, seed=1, workers=1)
    d.on_epoch_end()
    np.testing.assert_array_equal(c[0][0], d[0][0])  # resuming at epoch 1 replays epoch 1's order
    all_y = np.concatenate([make_batches(x, y, batch_size=4)[i][1] for i in range(3)])
    np.testing.assert_array_equal(all_y, y)  # no shuffle: every sample once, in order


@pytest.mark.backend
def test_augmented_sample_does_not_depend_on_batch_size():
    from Functions.data.augmentation import get_augmenter

    rng = np.random.default_rng(3)
    x = rng.random((7, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.uint8)
    aug = get_augmenter("strong")

    def epoch(batch_size, shuffle, e=0):
        b = make_batches(x, y, batch_size=batch_size, shuffle=shuffle, augmenter=aug, seed=5, workers=1)
        b.set_epoch(e)
        return np.concatenate([b[i][0] for i in range(len(b))]), np.concatenate([b[i][1] for i in range(len(b))])

    for shuffle in (False, True):
        ref_x, ref_y = epoch(1, shuffle)
        for size in (2, 3, 7):
            got_x, got_y = epoch(size, shuffle)
            np.testing.assert_array_equal(got_x, ref_x)
            np.testing.assert_array_equal(got_y, ref_y)
    # sample j of epoch e is augmented by its own generator (seed, e, j)
    ref_x, _ = epoch(3, False, e=2)
    for j in (0, 4, 6):
        want, _ = aug(x[j], y[j], np.random.default_rng([5, 2, j, 7]))
        np.testing.assert_array_equal(ref_x[j], np.asarray(want, np.float32))
    assert not np.array_equal(ref_x, x)                      # the augmentation did change the images
    assert not np.array_equal(epoch(3, False, e=3)[0], ref_x)  # and differs from epoch to epoch


def test_multi_output_targets():
    x = np.zeros((4, 8, 8, 1), np.float32)
    y = np.ones((4, 8, 8, 1), np.uint8)
    xb, yb = make_batches(x, y, batch_size=2, num_outputs=3)[0]
    assert isinstance(yb, tuple) and len(yb) == 3 and yb[0].shape == (2, 8, 8, 1)


def test_loading_in_workers_keeps_the_order(tmp_path):
    """Two workers load the same arrays, in the same order, as one (the peak memory while loading, against the
    arrays kept: benchmarks/bounds.py)."""
    from helpers import write_blob_pairs

    samples = find_samples(write_blob_pairs(tmp_path, n=48, size=96))
    x, y = load_arrays(samples, image_size=96, workers=2)
    assert x.shape == (48, 96, 96, 1) and x.dtype == np.float32 and y.shape == (48, 96, 96, 1) and y.dtype == np.uint8
    x1, y1 = load_arrays(samples, image_size=96, workers=1)
    np.testing.assert_array_equal(x, x1)
    np.testing.assert_array_equal(y, y1)
    assert len({m.tobytes() for m in y}) == 48       # 48 different masks: a shuffled order would show above
