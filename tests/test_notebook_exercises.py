"""The exercises of the course notebooks: every one has a hint and a solution, and every "implement it"
exercise has a check that is harmless before the learner fills it in and passes with the solution.

Convention (notebooks 01-14; any notebook may adopt it):

* a code cell tagged ``exercise`` holds the learner's stub: functions named ``my_*`` whose body raises
  ``NotImplementedError``;
* a code cell tagged ``exercise-check`` compares the learner's ``my_*`` function with ``Functions`` (or with a
  hand-computed case). It needs only the notebook's parameter, smoke and import cells and the ``my_*``
  function, and prints "not done yet" when that raises ``NotImplementedError``;
* the solution is a markdown ``<details><summary>Solution</summary>`` block with a fenced ``python`` block
  that defines the same ``my_*`` names (markdown, so the no-library-code rule of test_notebooks.py holds),
  or a collapsed code cell tagged ``exercise-solution`` defining ``solution_X`` for a learner's ``my_X`` or
  ``build_my_X`` (notebook 02's U-Net).

The tests below run, for every check cell of every notebook, the stub (the check must print "not done yet"),
the solution from the notebook (the check must pass, i.e. raise nothing and print "correct") and a wrong
answer from ``WRONG_ANSWERS`` (the check must fail with an ``AssertionError``, the message the learner
reads, and not print "correct"). A check cell whose learner function has no wrong answer there fails
``test_every_check_is_fed_a_wrong_answer``; a cell that prints "not done yet" without the
``exercise-check`` tag fails ``test_every_check_cell_is_tagged``.
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
    "13_instance_segmentation.ipynb",
    "14_volumes.ipynb",
    "15_realtime_segmentation.ipynb",
    "16_panoptic_segmentation.ipynb",
    "17_your_own_dataset.ipynb",
]
ALL_NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
SOLUTION = re.compile(r"<details>\s*<summary>Solution</summary>(.*?)</details>", re.S)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MY_NAME = re.compile(r"\b(?:build_)?my_\w+")     # the learner's functions: my_leak, build_my_unet
MY_DEF = re.compile(r"^def ((?:build_)?my_\w+)", re.M)

#: One wrong answer per learner function that a check cell tests: the notebook's own solution with one
#: typical mistake, written as ``(text of the solution, what the mistake puts there instead)``.
WRONG_ANSWERS = {
    ("01_fundamentals.ipynb", "my_soft_dice_loss"):         # the smoothing term left out of the numerator
        ("(2.0 * np.sum(p * t) + s)", "(2.0 * np.sum(p * t))"),
    ("01_fundamentals.ipynb", "my_mean_pixel_accuracy"):    # divided by the predicted pixels (precision)
        ("/ np.sum(truth == c)", "/ np.sum(pred == c)"),
    ("02_unet.ipynb", "my_output_size"):                    # the padding taken off once, not on both sides
        ("- 2 * p", "- p"),
    ("02_unet.ipynb", "build_my_unet"):                     # a bias in every convolution before batch norm
        ("use_bias=False", "use_bias=True"),
    ("03_projects_unet.ipynb", "my_summary"):               # the population spread (n), not the sample's (n - 1)
        ("np.std(v, ddof=1)", "np.std(v)"),
    ("03_projects_unet.ipynb", "my_learning_rate"):         # the floor forgotten: the rate decays to 0, not to 1 %
        ("floor + (base - floor) * 0.5 * (1 + np.cos(np.pi * progress))", "base * 0.5 * (1 + np.cos(np.pi * progress))"),
    ("04_unet_plus_plus.ipynb", "my_average_heads"):        # the last head only
        ("np.mean(np.stack(heads), axis=0)", "heads[-1]"),
    ("05_projects_unet_plus_plus.ipynb", "my_leak"):        # image indices compared, not patients
        ("{groups[i] for i in train} & {groups[i] for i in test}", "set(train) & set(test)"),
    ("06_resunet.ipynb", "my_residual_factor"):             # the identity path's 1 forgotten
        ("return 1 + alpha", "return alpha"),
    ("07_projects_resunet.ipynb", "my_soft_dice_loss"):     # one loss for the whole batch
        ("axes = (1, 2, 3)", "axes = None"),
    ("07_projects_resunet.ipynb", "my_tta"):                # the predictions not flipped back
        ("inverse(predict_probabilities(model, forward(images)))", "predict_probabilities(model, forward(images))"),
    ("07_projects_resunet.ipynb", "my_remove_small"):       # the background counted as an object
        ("keep[0] = False", "pass"),
    ("08_attention_unet_breast_ultrasound.ipynb", "my_attention_gate"):  # ReLU instead of the sigmoid
        ('layers.Conv2D(1, 1, activation="sigmoid")', 'layers.Conv2D(1, 1, activation="relu")'),
    ("08_attention_unet_breast_ultrasound.ipynb", "my_inside_outside"):  # "outside" includes the inside
        ("alpha[mask == 0]", "alpha[mask >= 0]"),
    ("10_projects_resunet_plus_plus.ipynb", "my_conv_flops"):  # multiply-adds counted once (MACs)
        ("(2 * k * k * c_in + 1)", "(k * k * c_in + 1)"),
    ("09_resunet_plus_plus.ipynb", "my_squeeze_excite"):    # a ReLU gate, not one in (0, 1)
        ('layers.Dense(channels, activation="sigmoid")', 'layers.Dense(channels, activation="relu")'),
    ("11_resnet_classification.ipynb", "my_bottleneck_params"):  # batch norm counted with 2 numbers, not 4
        ("4 * (filters + filters + out)", "2 * (filters + filters + out)"),
    ("12_architecture_comparison.ipynb", "my_bootstrap_ci"):  # averaged over the resamples, not within each
        ("replace=True).mean(axis=1)", "replace=True).mean(axis=0)"),
    ("13_instance_segmentation.ipynb", "my_dsb_score"):     # "at least the threshold" instead of "above"
        ("iou > th", "iou >= th"),
    ("14_volumes.ipynb", "my_voxel_to_mm"):                 # the offset (last column) left out
        (" + affine[:3, 3]", ""),
    ("14_volumes.ipynb", "my_tile_starts"):                 # rounded down: too few tiles, neighbours too far apart
        ("np.ceil", "np.floor"),
    ("15_realtime_segmentation.ipynb", "my_ema"):           # the weights swapped: the old state weighted alpha
        ("alpha * p + (1 - alpha) * state", "alpha * state + (1 - alpha) * p"),
    ("16_panoptic_segmentation.ipynb", "my_pq"):            # unmatched objects counted whole, not halved (RQ)
        ("tp + 0.5 * fp + 0.5 * fn", "tp + fp + fn"),
    ("17_your_own_dataset.ipynb", "my_mean_interval"):      # the population spread (n): an interval too narrow
        ("np.std(v, ddof=1)", "np.std(v)"),
    ("17_your_own_dataset.ipynb", "my_test_images_needed"):  # rounded down: the interval slightly wider than asked
        ("math.ceil((1.96 * sd / half_width) ** 2)", "int((1.96 * sd / half_width) ** 2)"),
}


def _read(name):
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def _tagged(nb, tag):
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])]


def _solution_blocks(nb) -> dict[str, str]:
    """``{my_name: python source}`` for every ``def my_*`` in a solution block (dedented), and for
    ``my_X`` / ``build_my_X`` of every ``solution_X`` in a cell tagged ``exercise-solution``."""
    import textwrap

    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "exercise-solution" in cell.get("metadata", {}).get("tags", []):
            for stem in re.findall(r"^def solution_(\w+)", cell.source, re.M):
                for name in (f"my_{stem}", f"build_my_{stem}"):
                    found[name] = f"{cell.source}\n{name} = solution_{stem}\n"
        if cell.cell_type != "markdown":
            continue
        for details in SOLUTION.findall(cell.source):
            for block in PYTHON_BLOCK.findall(details):
                block = textwrap.dedent(block)
                for name in MY_DEF.findall(block):
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
    stubs = {n for c in _tagged(nb, "exercise") for n in MY_DEF.findall(c.source)}
    checked = {n for c in _tagged(nb, "exercise-check") for n in MY_NAME.findall(c.source)}
    solved = set(_solution_blocks(nb))
    assert stubs == checked, f"{name}: stubs {sorted(stubs)} vs checked {sorted(checked)}"
    assert stubs <= solved, f"{name}: no solution for {sorted(stubs - solved)}"
    for cell in _tagged(nb, "exercise"):
        assert "NotImplementedError" in cell.source


def _checks():
    return [(name, k) for name in ALL_NOTEBOOKS for k in range(len(_tagged(_read(name), "exercise-check")))]


def _check_cell(name: str, k: int):
    """``(notebook, its k-th check cell)``; the checks need Keras."""
    pytest.importorskip("keras")
    nb = _read(name)
    return nb, _tagged(nb, "exercise-check")[k]


def _learner_names(check) -> list[str]:
    return sorted(set(MY_NAME.findall(check.source)))


def _check_namespace(nb, check, solved=()) -> dict:
    """The set-up cells, the collapsed ``solution_*`` cells that the check itself compares with, and the notebook's
    solutions of the learner functions in ``solved``."""
    ns = _setup_namespace(nb)
    for cell in _tagged(nb, "exercise-solution"):
        if any(re.search(rf"\b{n}\b", check.source) for n in re.findall(r"^def (solution_\w+)", cell.source, re.M)):
            _run(cell.source, ns)
    solutions = _solution_blocks(nb)
    for n in solved:
        _run(solutions[n], ns)
    return ns


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_every_check_cell_is_tagged(name):
    """A cell that tells the learner "not done yet" is a check: tagged, so the tests below find it."""
    nb = _read(name)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "not done yet" in cell.source:
            assert "exercise-check" in cell.get("metadata", {}).get("tags", []), f"{name} cell {i}: tag it exercise-check"


def test_every_check_is_fed_a_wrong_answer():
    """Every learner function of every check cell has an entry in WRONG_ANSWERS, and every entry a check."""
    checked = {(name, n) for name, k in _checks() for n in _learner_names(_tagged(_read(name), "exercise-check")[k])}
    assert checked == set(WRONG_ANSWERS), (f"no wrong answer for {sorted(checked - set(WRONG_ANSWERS))}; "
                                           f"no check for {sorted(set(WRONG_ANSWERS) - checked)}")


@pytest.mark.parametrize("name,k", _checks())
def test_check_is_harmless_before_and_passes_with_the_solution(name, k):
    nb, check = _check_cell(name, k)
    used = _learner_names(check)
    assert used, f"{name}: a check cell must call the learner's my_* function"
    stubs = "\n".join(c.source for c in _tagged(nb, "exercise") if any(f"def {n}(" in c.source for n in used))

    ns = _check_namespace(nb, check)
    _run(stubs, ns)
    assert "not done yet" in _run(check.source, ns), f"{name}: the check must say 'not done yet' for the stub"

    ns = _check_namespace(nb, check, solved=used)
    printed = _run(check.source, ns)  # an AssertionError here: the notebook's own solution fails its check
    assert "not done yet" not in printed and "correct" in printed, printed


@pytest.mark.parametrize("name,k", _checks())
def test_check_says_so_for_a_wrong_answer(name, k):
    """The notebook's solution with one typical mistake (WRONG_ANSWERS): the check must fail with a message."""
    nb, check = _check_cell(name, k)
    solutions = _solution_blocks(nb)
    for wrong in _learner_names(check):
        ns = _check_namespace(nb, check, solved=[n for n in _learner_names(check) if n != wrong])
        right, mistake = WRONG_ANSWERS[(name, wrong)]
        assert right in solutions[wrong], f"{name}: WRONG_ANSWERS[{wrong!r}] no longer matches the solution"
        _run(solutions[wrong].replace(right, mistake), ns)
        out = io.StringIO()
        with pytest.raises(AssertionError) as failed, contextlib.redirect_stdout(out):
            exec(check.source, ns)
        assert "correct" not in out.getvalue() and "not done yet" not in out.getvalue(), out.getvalue()
        assert str(failed.value).strip(), f"{name}: the check fails for {wrong} without telling the learner why"
