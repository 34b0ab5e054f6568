"""The package's architecture, checked from the code (docs/architecture.md).

* The layer contract in ``pyproject.toml`` (``[tool.importlinter]``) holds: every import, those
  written inside functions included, points down the layers.
* The contract really fails the build: a violation planted in a temporary copy of the package (an
  upward import hidden inside a function) makes ``lint-imports`` exit non-zero and name it.
* ``../shared/tools/import_cycles.py`` (when present) finds no import cycle and no ``_private`` name
  imported across modules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CYCLES_TOOL = REPO.parent / "shared" / "tools" / "import_cycles.py"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def contract_text() -> str:
    """The ``[tool.importlinter]`` tables of ``pyproject.toml``, verbatim."""
    text = (REPO / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    rest = text[start:]
    # up to the next table that is not part of the import-linter configuration
    nxt = re.search(r"^\[(?!tool\.importlinter)(?!\[tool\.importlinter)[^\]]*\]", rest, re.MULTILINE)
    return rest if nxt is None else rest[:nxt.start()]


def run_lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    if not Path(LINT).exists():
        pytest.skip("lint-imports is not installed (pip install import-linter)")
    env = {**os.environ, "PYTHONPATH": str(pythonpath) if pythonpath else os.environ.get("PYTHONPATH", "")}
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_contract_names_every_layer_in_order():
    text = contract_text()
    layers = re.findall(r'^\s*"(Functions\.[^"]+)",?\s*$', text, re.MULTILINE)
    assert layers == [
        "Functions.cli : Functions.commands", "Functions.apps", "Functions.engine", "Functions.planning",
        "Functions.evaluation",
        "Functions.viz", "Functions.inference", "Functions.models | Functions.losses | Functions.metrics",
        "Functions.data", "Functions.base",
    ]
    # every subpackage / top-level module of Functions sits in a layer
    named = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
    pkg = REPO / "Code" / "Functions"
    present = {f"Functions.{p.stem}" for p in pkg.iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.stem.startswith("_"))}
    assert present <= named, f"not in any layer: {sorted(present - named)}"


def test_the_package_keeps_the_layer_contract():
    proc = run_lint(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_a_planted_upward_import_breaks_the_build(tmp_path):
    code = tmp_path / "code"
    shutil.copytree(REPO / "Code" / "Functions", code / "Functions",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # the data layer reaching up into the engine, hidden inside a function
    (code / "Functions" / "data" / "planted.py").write_text(
        "def sneaky():\n    from Functions.engine import schedules\n\n    return schedules\n")
    (tmp_path / ".importlinter.toml").write_text(contract_text())
    (tmp_path / "pyproject.toml").write_text(contract_text())
    proc = run_lint(tmp_path, pythonpath=code)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "Functions.data is not allowed to import Functions.engine" in proc.stdout
    assert "Functions.data.planted -> Functions.engine.schedules" in proc.stdout
    # ... and the same copy without the plant passes: the failure is the plant's alone
    (code / "Functions" / "data" / "planted.py").unlink()
    proc = run_lint(tmp_path, pythonpath=code)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.mark.skipif(not CYCLES_TOOL.exists(), reason=f"{CYCLES_TOOL} not found")
def test_no_import_cycles_and_no_private_cross_module_imports():
    proc = subprocess.run([sys.executable, str(CYCLES_TOOL), "Code/Functions"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    summary = proc.stdout.strip().splitlines()[-1]
    m = re.search(r"(\d+) modules, \d+ internal imports, (\d+) cycles, (\d+) private", summary)
    assert m, proc.stdout + proc.stderr
    assert int(m.group(1)) > 50                                  # the whole package was read
    assert (int(m.group(2)), int(m.group(3))) == (0, 0), proc.stdout
