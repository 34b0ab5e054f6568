"""Seeded train / validation / test splits by fractions, optionally stratified."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_indices(n: int, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                  stratify: Sequence | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted ``(train, val, test)`` index arrays.

    Sizes: ``round(n * test_fraction)`` test and ``round(n * val_fraction)``
    validation items (at least one each when the fraction is positive and
    ``n`` allows it), the rest training.  With ``stratify`` (one label per
    item) the fractions apply within every class, so each split keeps the
    class ratios.  The same ``seed`` always gives the same split.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else [
        np.flatnonzero(np.asarray(stratify, dtype=object) == c) for c in sorted(set(stratify), key=str)]
    parts = ([], [], [])
    for idx in groups:
        idx = rng.permutation(idx)
        m = len(idx)
        n_test = _count(m, test_fraction)
        n_val = _count(m - n_test, val_fraction / (1 - test_fraction) if test_fraction < 1 else 0)
        if n_test + n_val >= m and m > 0:
            n_val = max(0, m - n_test - 1)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)).astype(int) for p in parts)  # type: ignore[return-value]


def _count(m: int, fraction: float) -> int:
    if fraction <= 0 or m < 2:
        return 0
    return min(m - 1, max(1, int(round(m * fraction))))
