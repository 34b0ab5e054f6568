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


@pytest.fixture
def tiny_pairs_dir(tmp_path) -> Path:
    """images/ + masks/ with 12 blob pairs at 32x32 (PNG)."""
    import cv2

    root = tmp_path / "tiny"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(12):
        image, mask = blob_pair(32, seed=i)
        cv2.imwrite(str(root / "images" / f"case_{i:02d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"case_{i:02d}.png"), mask * 255)
    return root
