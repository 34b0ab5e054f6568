"""The docs name tests and files: every one they name must exist, so a renamed test cannot leave a promise unguarded."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def named_tests(text: str) -> list[tuple[str, str]]:
    """``(file, test)`` pairs named in a markdown table, with ``::name`` rows continuing the last named file."""
    pairs = []
    for row in text.splitlines():
        if not row.startswith("|"):
            continue
        current = None
        for m in re.finditer(r"`(test_\w+\.py)?(?:::)?(test_\w+)?`", row):
            file, test = m.groups()
            current = file or current
            if test and current:
                pairs.append((current, test))
    return pairs


def test_named_tests_parse_by_hand():
    row = "| p | `test_a.py::test_one`, `::test_two`, `test_b.py::test_three` |"
    assert named_tests(row) == [("test_a.py", "test_one"), ("test_a.py", "test_two"), ("test_b.py", "test_three")]


def test_every_test_that_correctness_md_names_exists():
    pairs = named_tests((REPO / "docs" / "correctness.md").read_text(encoding="utf-8"))
    assert len(pairs) >= 20
    missing = [f"{f}::{t}" for f, t in pairs
               if not re.search(rf"^def {t}\(", (REPO / "tests" / f).read_text(encoding="utf-8"), re.M)]
    assert missing == []
