import numpy as np
import pytest

from Functions.data.splits import split_indices


def test_split_sizes_disjoint_and_seeded():
    tr, va, te = split_indices(100, 0.15, 0.15, seed=3)
    assert (len(tr), len(va), len(te)) == (70, 15, 15)
    assert len(set(tr) | set(va) | set(te)) == 100
    again = split_indices(100, 0.15, 0.15, seed=3)
    for a, b in zip((tr, va, te), again):
        np.testing.assert_array_equal(a, b)
    other = split_indices(100, 0.15, 0.15, seed=4)
    assert not np.array_equal(te, other[2])


def test_stratified_split_keeps_ratios():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    tr, va, te = split_indices(100, 0.2, 0.2, seed=0, stratify=labels)
    lab = np.array(labels)
    for part, n in ((tr, 60), (va, 20), (te, 20)):
        counts = {c: int((lab[part] == c).sum()) for c in "abc"}
        assert counts == {"a": round(0.6 * n), "b": round(0.3 * n), "c": round(0.1 * n)}


def test_bad_fractions():
    with pytest.raises(ValueError, match="below 1"):
        split_indices(10, 0.5, 0.5)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, -0.1, 0.2)
