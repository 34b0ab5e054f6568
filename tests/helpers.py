"""Helpers the test files share: tiny synthetic images and the folders they are written to.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``); ``conftest.py`` holds
only fixtures and the command-line switches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def blob_pair(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a noisy dark background and its exact mask (uint8 image, 0/1 mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.12, size * 0.25)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
    image = np.clip(40 + 150 * mask + rng.normal(0, 12, mask.shape), 0, 255).astype(np.uint8)
    return image, mask


def write_blob_pairs(root: Path, n: int = 12, size: int = 32, seed: int = 0, names=None) -> Path:
    """``root/images/<name>.png`` + ``root/masks/<name>.png`` (0/255) for ``n`` blob pairs (seeds ``seed + i``).

    ``names`` defaults to ``case_00``, ``case_01``, ...; returns ``root``.
    """
    import cv2

    names = list(names) if names is not None else [f"case_{i:02d}" for i in range(n)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        image, mask = blob_pair(size, seed=seed + i)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask * 255)
    return root
