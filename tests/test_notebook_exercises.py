"""The exercises of the course notebooks: every one has a hint and a solution, and every "implement it"
exercise has a check that is harmless before the learner fills it in and passes with the solution.

Convention (notebooks 01-12; any notebook may adopt it):

* a code cell tagged ``exercise`` holds the learner's stub: functions named ``my_*`` whose body raises
  ``NotImplementedError``;
* a code cell tagged ``exercise-check`` compares the learner's ``my_*`` function with ``Functions`` (or with a
  hand-computed case). It needs only the notebook's parameter, smoke and import cells and the ``my_*``
  function, and prints "not done yet" when that raises ``NotImplementedError``;
* the solution is a markdown ``<details><summary>Solution</summary>`` block with a fenced ``python`` block
  that defines the same ``my_*`` names (markdown, so the no-library-code rule of test_notebooks.py holds).

The tests below run, for every check cell, first the stub (the check must print "not done yet") and then
the solution from the notebook's markdown (the check must pass, i.e. raise nothing and not say "not done yet").
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
WITH_EXERCISE_CONVENTION = [
    "01_fundamentals.ipynb",
    "02_unet.ipynb",
    "03_projects_unet.ipynb",
    "04_unet_plus_plus.ipynb",
    "05_projects_unet_plus_plus.ipynb",
    "06_resunet.ipynb",
    "07_projects_resunet.ipynb",
    "08_attention_unet_breast_ultrasound.ipynb",
    "09_resunet_plus_plus.ipynb",
    "10_projects_resunet_plus_plus.ipynb",
    "11_resnet_classification.ipynb",
    "12_architecture_comparison.ipynb",
]
SOLUTION = re.compile(r"<details>\s*<summary>Solution</summary>(.*?)</details>", re.S)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MY_NAME = re.compile(r"\bmy_\w+")


def _read(name):
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def _tagged(nb, tag):
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])]


def _solution_blocks(nb) -> dict[str, str]:
    """``{my_name: python source}`` for every ``def my_*`` in a solution block (dedented)."""
    import textwrap

    found = {}
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for details in SOLUTION.findall(cell.source):
            for block in PYTHON_BLOCK.findall(details):
                block = textwrap.dedent(block)
                for name in re.findall(r"^def (my_\w+)", block, re.M):
                    found[name] = block
    return found


def _setup_namespace(nb) -> dict:
    """Run the parameter cell (SMOKE = True), the smoke cell after it and the import cell."""
    ns: dict = {}
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.get("metadata", {}).get("tags", []))
    smoke = code[code.index(params) + 1]
    imports = next(c for c in code if "environment_summary()" in c.source)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(params.source + "\nSMOKE = True\n", ns)
        exec(smoke.source, ns)
        exec(imports.source, ns)
    return ns


def _run(source: str, ns: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, ns)
    return out.getvalue()


@pytest.mark.parametrize("name", WITH_EXERCISE_CONVENTION)
def test_every_exercise_has_a_hint_and_a_solution(name):
    nb = _read(name)
    exercises = next(c.source for c in reversed(nb.cells)
                     if c.cell_type == "markdown" and "## Exercises" in c.source)
    text = exercises[exercises.index("## Exercises"):]
    numbered = re.findall(r"^(\d+)\. ", text, re.M)
    assert numbered == [str(k) for k in range(1, len(numbered) + 1)] and numbered, f"{name}: numbered exercises"
    assert len(re.findall(r"\*Hint:\*", text)) == len(numbered), f"{name}: one hint per exercise"
    assert len(SOLUTION.findall(text)) == len(numbered), f"{name}: one collapsible solution per exercise"


@pytest.mark.parametrize("name", WITH_EXERCISE_CONVENTION)
def test_every_stub_has_a_check_and_a_solution(name):
    nb = _read(name)
    stubs = {n for c in _tagged(nb, "exercise") for n in re.findall(r"^def (my_\w+)", c.source, re.M)}
    checked = {n for c in _tagged(nb, "exercise-check") for n in MY_NAME.findall(c.source)}
    solved = set(_solution_blocks(nb))
    assert stubs == checked, f"{name}: stubs {sorted(stubs)} vs checked {sorted(checked)}"
    assert stubs <= solved, f"{name}: no solution for {sorted(stubs - solved)}"
    for cell in _tagged(nb, "exercise"):
        assert "NotImplementedError" in cell.source


def _checks():
    return [(name, k) for name in WITH_EXERCISE_CONVENTION for k in range(len(_tagged(_read(name), "exercise-check")))]


@pytest.mark.parametrize("name,k", _checks())
def test_check_is_harmless_before_and_passes_with_the_solution(name, k):
    pytest.importorskip("keras")
    nb = _read(name)
    check = _tagged(nb, "exercise-check")[k]
    used = sorted(set(MY_NAME.findall(check.source)))
    stubs = "\n".join(c.source for c in _tagged(nb, "exercise") if any(f"def {n}(" in c.source for n in used))

    ns = _setup_namespace(nb)
    _run(stubs, ns)
    assert "not done yet" in _run(check.source, ns), f"{name}: the check must say 'not done yet' for the stub"

    solutions = _solution_blocks(nb)
    ns = _setup_namespace(nb)
    for n in used:
        _run(solutions[n], ns)
    printed = _run(check.source, ns)  # an AssertionError here: the notebook's own solution fails its check
    assert "not done yet" not in printed and "correct" in printed, printed
