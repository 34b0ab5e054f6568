"""The course notebooks: committed clean, parameterised, free of library code, and runnable.

NOTE for the course engineers (issue 19): a code cell tagged ``exercise-solution`` may define one
function of up to ``SOLUTION_FUNCTION_LINES`` lines (a "build it yourself" solution such as the ~30-line
U-Net in 02); it must be collapsed (``metadata.jupyter.source_hidden = true``), its function names must
start with ``solution_``, and it may hold no class.  Every other cell keeps the 5-line limit.  The Colab
set-up cell is the one in /tmp/setup_cell.py (shallow clone of ``REF``, loud failure, version check,
optional Drive folder); ``test_colab_setup_comes_first`` checks its key lines.
Every notebook holds the same set-up cell as 01 (``test_setup_cell_is_the_same_everywhere``); an existing
clone is moved to a changed ``REF`` (git fetch + checkout), which
``test_setup_cell_clones_and_moves_an_earlier_clone_to_ref`` runs against a local repository.
Notebooks 07-12 (engineer B) keep solutions in markdown ``<details>`` blocks instead, with stub cells tagged
``exercise`` and check cells tagged ``exercise-check``; tests/test_notebook_exercises.py runs every check with
the stub ("not done yet") and with the notebook's own solution (must pass). Add a notebook to its list to opt in.

Structural checks (fast, always run): no outputs or execution counts, exactly one
``parameters``-tagged cell holding ``SMOKE = False``, a Colab set-up cell first,
learning objectives and exercises, no ``class`` and no function longer than a few lines
(library code belongs in ``Functions``).

Execution (``@pytest.mark.notebook``): papermill runs every notebook top to bottom with
``SMOKE=True`` in a fresh kernel, in a temporary working directory (run folders land there),
and fails on any error.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
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
    "13_instance_segmentation.ipynb",
    "14_volumes.ipynb",
    "15_realtime_segmentation.ipynb",
    "16_panoptic_segmentation.ipynb",
    "17_your_own_dataset.ipynb",
]
MAX_FUNCTION_LINES = 5  # a def's body may not be longer than this (helpers go into Functions)
SOLUTION_FUNCTION_LINES = 40  # ... except in a collapsed cell tagged "exercise-solution" (see the module docstring)
SOLUTION_TAG = "exercise-solution"
CELL_TIMEOUT_S = 900


def _read(name: str):
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def _python_source(cell_source: str) -> str:
    """A code cell as plain Python (IPython magics and shell escapes translated)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def test_the_notebook_set_is_complete():
    found = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} holds outputs; clear them before committing"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_one_parameters_cell_with_smoke_off(name):
    nb = _read(name)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters', found {len(tagged)}"
    cell = tagged[0]
    assert cell.cell_type == "code"
    assignments = {t.id: n.value for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    assert "SMOKE" in assignments and isinstance(assignments["SMOKE"], ast.Constant)
    assert assignments["SMOKE"].value is False, f"{name}: the committed default must be SMOKE = False"
    # the derived smoke settings follow right after the parameters cell
    following = nb.cells[nb.cells.index(cell) + 1]
    assert following.cell_type == "code" and "if SMOKE" in following.source


@pytest.mark.parametrize("name", EXPECTED)
def test_colab_setup_comes_first(name):
    nb = _read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].source
    assert 'IN_COLAB = "google.colab" in sys.modules' in first
    assert "git clone" in first and "pip install" in first and "if IN_COLAB" in first
    # one pinned version, a shallow clone, loud failures, a version check (the cell of /tmp/setup_cell.py)
    assert first.count("REF = ") == 1 and '"--depth", "1", "--branch", REF' in first, \
        f"{name}: shallow-clone the version named once in REF"
    assert "SET-UP FAILED" in first and " -q" not in first, f"{name}: set-up failures must be loud"
    assert "keras.__version__" in first and "USE_DRIVE" in first
    before = nb.cells[: nb.cells.index(code[0])]
    assert any("GPU" in c.source for c in before if c.cell_type == "markdown"), \
        f"{name}: tell Colab users to pick a GPU runtime before the set-up cell"
    colab_link = f"https://colab.research.google.com/github/RezaSaadatyar/Medical-Image-Processing/blob/main/notebooks/{name}"
    assert colab_link in nb.cells[0].source


def _setup_cell(name: str) -> str:
    return next(c.source for c in _read(name).cells if c.cell_type == "code")


@pytest.mark.parametrize("name", EXPECTED)
def test_setup_cell_is_the_same_everywhere(name):
    """One set-up cell for the course: a fix made in 01 must reach every notebook."""
    assert _setup_cell(name) == _setup_cell(EXPECTED[0]), f"{name}: copy the set-up cell of {EXPECTED[0]}"


def _git(*args, cwd=None) -> str:
    import subprocess

    step = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return step.stdout.strip()


def test_setup_cell_clones_and_moves_an_earlier_clone_to_ref(tmp_path, monkeypatch):
    """The git part of the set-up cell (between its '# --- git' and '# --- install' lines), run against a local
    repository instead of GitHub: a fresh clone of REF A; REF B requested later moves the clone to B's commit;
    a clone with local changes, or a folder that is not a clone, stops with one SET-UP FAILED line and is left
    as it was."""
    import subprocess
    import textwrap

    source = _setup_cell(EXPECTED[0])
    block = textwrap.dedent(source[source.index("    # --- git"):source.index("    # --- install")])
    origin = tmp_path / "origin"
    origin.mkdir()
    _git("init", "-q", cwd=origin)
    commits = {}
    for ref in ("a", "b"):
        (origin / "version.txt").write_text(ref)
        _git("add", "version.txt", cwd=origin)
        _git("commit", "-q", "-m", ref, cwd=origin)
        _git("tag", ref, cwd=origin)
        commits[ref] = _git("rev-parse", "HEAD", cwd=origin)
    work = tmp_path / "content"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(ref):
        ns = {"REF": ref, "REPO_URL": origin.as_uri(), "FOLDER": "course", "os": os, "subprocess": subprocess}
        exec(block, ns)
        return ns["moved"]  # what decides the "restart the session" advice

    assert run("a") is False
    assert _git("rev-parse", "HEAD", cwd=work / "course") == commits["a"]
    assert run("b") is True  # the old cell skipped an existing folder silently and stayed at a
    assert _git("rev-parse", "HEAD", cwd=work / "course") == commits["b"]
    assert (work / "course" / "version.txt").read_text() == "b"
    assert run("b") is False  # the same REF again: nothing moves, no error
    (work / "course" / "version.txt").write_text("my edit")
    with pytest.raises(SystemExit, match=r"^SET-UP FAILED: course/ has local changes .*version.txt.*stash"):
        run("a")
    assert (work / "course" / "version.txt").read_text() == "my edit"
    assert _git("rev-parse", "HEAD", cwd=work / "course") == commits["b"]
    (work / "course" / "version.txt").write_text("b")  # clean again
    with pytest.raises(SystemExit, match="^SET-UP FAILED: git fetch .* did not work"):
        run("no-such-ref")
    (work / "plain").mkdir()
    with pytest.raises(SystemExit, match="^SET-UP FAILED: the folder plain/ exists but is not a git clone"):
        exec(block, {"REF": "a", "REPO_URL": origin.as_uri(), "FOLDER": "plain", "os": os, "subprocess": subprocess})


@pytest.mark.parametrize("name", EXPECTED)
def test_objectives_prose_and_exercises(name):
    nb = _read(name)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "Learning objectives" in markdown[0]
    assert any(m.lstrip().startswith("## Exercises") or "\n## Exercises" in m for m in markdown[-2:])
    assert len(markdown) >= 8, f"{name}: explain the code in prose between the cells"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("environment_summary()" in c for c in code), f"{name} should print the backend it runs on"


#: Notebooks whose exercises follow the issue-19 format: all of them.
EXERCISE_FORMAT = EXPECTED


@pytest.mark.parametrize("name", EXERCISE_FORMAT)
def test_every_exercise_has_a_hint_a_solution_and_implement_ones_a_check(name):
    import re

    nb = _read(name)
    text = next(c.source for c in nb.cells if c.cell_type == "markdown" and "## Exercises" in c.source)
    text = text[text.index("## Exercises"):]
    items = re.split(r"\n(?=\d+\. )", text)[1:]
    assert len(items) >= 4, f"{name}: expected numbered exercises after '## Exercises'"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for item in items:
        number = item.split(".", 1)[0]
        assert "*Hint:*" in item, f"{name} exercise {number} has no hint"
        assert "<details><summary>Solution</summary>" in item and "</details>" in item, \
            f"{name} exercise {number} has no collapsible solution"
        if "**Implement**" in item or "**Build it yourself**" in item:
            assert "not done yet" in code, f"{name} exercise {number} is an 'implement' exercise without a check cell"


@pytest.mark.parametrize("name", EXPECTED)
def test_no_library_code_in_notebooks(name):
    nb = _read(name)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_python_source(cell.source))
        solution = SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
        if solution:
            assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, \
                f"{name} cell {i}: collapse the solution cell (metadata.jupyter.source_hidden = true)"
        limit = SOLUTION_FUNCTION_LINES if solution else MAX_FUNCTION_LINES
        for node in ast.walk(tree):
            assert not isinstance(node, ast.ClassDef), f"{name} cell {i} defines class {node.name}; move it to Functions"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[-1].end_lineno - node.body[0].lineno + 1
                assert body <= limit, (
                    f"{name} cell {i} defines {node.name}() with {body} lines; move it to Functions")
                assert not solution or node.name.startswith("solution_"), \
                    f"{name} cell {i}: functions of an exercise-solution cell are named solution_*"


def test_function_length_check_catches_long_helpers():
    """The check above must reject a long def and accept a short one."""
    long_def = "def helper(x):\n" + "".join(f"    x = x + {k}\n" for k in range(MAX_FUNCTION_LINES + 1)) + "    return x\n"
    body = ast.parse(long_def).body[0]
    assert body.body[-1].end_lineno - body.body[0].lineno + 1 > MAX_FUNCTION_LINES
    cell = "%matplotlib inline\n!echo hi\nx = 1\n"
    assert "get_ipython()" in _python_source(cell)
    ast.parse(_python_source(cell))


@pytest.fixture(scope="module")
def kernel_name():
    pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no 'python3' Jupyter kernel; run `python -m ipykernel install --user --name python3`")
    return "python3"


@pytest.mark.notebook
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_smoke_mode(name, kernel_name, tmp_path):
    import papermill

    env = {"MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the kernel: no windows, quiet TensorFlow
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / name), str(tmp_path / name), parameters={"SMOKE": True},
            kernel_name=kernel_name, cwd=str(tmp_path), progress_bar=False, log_output=False,
            execution_timeout=CELL_TIMEOUT_S,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    executed = nbformat.read(tmp_path / name, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert executed.cells[0].source == _read(name).cells[0].source
    print(f"{name}: {seconds:.0f} s")


# ----------------------------------------------------------------------------- 17: any folder, 2-D or 3-D
CAPSTONE = "17_your_own_dataset.ipynb"


def _capstone_setup(data_dir) -> dict:
    """Notebook 17's parameter cell (with ``DATA_DIR`` set), its smoke cell and its import cell, run in order."""
    import contextlib
    import io

    code = [c for c in _read(CAPSTONE).cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.get("metadata", {}).get("tags", []))
    imports = next(c for c in code if "environment_summary()" in c.source)
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(params.source + f"\nSMOKE = True\nDATA_DIR = {data_dir!r}\n", ns)
        exec(code[code.index(params) + 1].source, ns)
        exec(imports.source, ns)
    return ns


@pytest.mark.parametrize("sample, volumes", [(None, False), ("volumes", True), ("ultrasound", False)])
def test_capstone_takes_the_path_its_folder_needs(sample, volumes):
    """DATA_DIR = None is the nuclei sample (2-D); a Decathlon folder takes the 3-D path, BUSI's layout the 2-D one."""
    pytest.importorskip("keras")
    from Functions.base.paths import sample_dir

    ns = _capstone_setup(str(sample_dir(sample)) if sample else None)
    assert ns["VOLUMES"] is volumes
    assert ns["DATA"] == sample_dir(sample or "nuclei")


@pytest.mark.notebook
@pytest.mark.slow
def test_capstone_runs_a_decathlon_folder_in_3d(kernel_name, tmp_path):
    """Notebook 17 top to bottom on the 3-D sample (SMOKE): a 3-D run, its evaluation and report; the export is
    skipped with a message.  Slow (about the time of the 2-D smoke run), so CI runs only the 2-D one."""
    import json

    import papermill

    from Functions.base.paths import sample_dir

    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / CAPSTONE), str(tmp_path / CAPSTONE),
        parameters={"SMOKE": True, "DATA_DIR": str(sample_dir("volumes"))}, kernel_name=kernel_name,
        cwd=str(tmp_path), progress_bar=False, log_output=False, execution_timeout=CELL_TIMEOUT_S)
    executed = nbformat.read(tmp_path / CAPSTONE, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "the 3-D (volumes) path" in text and "export skipped: a 3-D run" in text
    (run,) = sorted((tmp_path / "runs").glob("capstone-*"))
    assert json.loads((run / "config.json").read_text())["dims"] == 3
    assert (run / "evaluation-test" / "worst.png").is_file()
    assert "distances in mm" in (run / "project_report.md").read_text()
