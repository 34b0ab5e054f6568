"""Shared test settings: quiet backends, the --run-slow switch, small data fixtures.

Helpers that test files import (blob images, folder writers) live in ``tests/helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
# jit_compile="auto" would time XLA against the plain graph on first use and cache the choice in the user's
# cache folder: tests use the fixed rule instead (tests/test_jit.py covers the probe with fake timers)
os.environ.setdefault("MIP_JIT_PROBE", "0")

import pytest

from helpers import write_blob_pairs

REPO = Path(__file__).resolve().parents[1]
DSB_ROOT = REPO.parent / "shared" / "datasets" / "dsb2018" / "stage1_train"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def _slow_requested(config) -> bool:
    """``--run-slow``, or a ``-m`` expression that asks for slow tests (``-m slow``, not ``-m "not slow"``)."""
    expr = config.getoption("markexpr", "") or ""
    return bool(config.getoption("--run-slow")) or ("slow" in expr and "not slow" not in expr)


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow to run")
    run_slow = _slow_requested(config)
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "realdata" in item.keywords and not DSB_ROOT.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {DSB_ROOT}"))


@pytest.fixture(scope="session")
def dsb_root() -> Path:
    if not DSB_ROOT.is_dir():
        pytest.skip(f"DSB2018 not found at {DSB_ROOT}")
    return DSB_ROOT


@pytest.fixture
def tiny_pairs_dir(tmp_path) -> Path:
    """images/ + masks/ with 12 blob pairs at 32x32 (PNG)."""
    return write_blob_pairs(tmp_path / "tiny")
