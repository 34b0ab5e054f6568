"""Shared test settings: quiet backends, the --run-slow switch, small data fixtures."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DSB_ROOT = REPO.parent / "shared" / "datasets" / "dsb2018" / "stage1_train"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow to run")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "realdata" in item.keywords and not DSB_ROOT.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {DSB_ROOT}"))


@pytest.fixture(scope="session")
def dsb_root() -> Path:
    if not DSB_ROOT.is_dir():
        pytest.skip(f"DSB2018 not found at {DSB_ROOT}")
    return DSB_ROOT


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


@pytest.fixture
def tiny_pairs_dir(tmp_path) -> Path:
    """images/ + masks/ with 12 blob pairs at 32x32 (PNG)."""
    return write_blob_pairs(tmp_path / "tiny")
