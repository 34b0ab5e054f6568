"""The one-page project report (``python -m Functions report RUN``, notebook 17): its rules of what to distrust,
worked case by case, and the page written from a real tiny run's files (plan, split, evaluation, export checks).

The run fixture trains 2 epochs on twelve 32x32 images (a few seconds on the 2-core CPU).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from Functions.apps.project_report import cautions, interval, write_project_report
from Functions.cli import main
from Functions.evaluation.leakage import LeakageReport
from Functions.metrics.segmentation import lowest_dice

EXTERNAL = "The test split comes from the same folder"


# ----------------------------------------------------------------------------- the pieces, by hand
def test_interval_of_the_mean_by_hand():
    # finite values 0.5, 0.7, 0.9: mean 0.7, sample sd 0.2, half-width 1.96 * 0.2 / sqrt(3)
    mean, half, n = interval([0.5, 0.7, np.inf, 0.9])
    assert (mean, n) == (pytest.approx(0.7), 3)
    assert half == pytest.approx(1.96 * 0.2 / math.sqrt(3))
    assert math.isnan(interval([0.4])[1]) and interval([])[2] == 0


def test_lowest_dice_is_lowest_first_with_ties_in_table_order():
    table = pd.DataFrame({"image": list("abcde"), "dice": [0.5, 0.2, 0.9, 0.2, 0.7]})
    assert lowest_dice(table, 3) == [1, 3, 0]
    assert lowest_dice(table, 10) == [1, 3, 0, 4, 2]
    assert lowest_dice(table.drop(columns="dice"), 3) == [] and lowest_dice(table, 0) == []


def _clean(n=40, **overrides):
    """Inputs of :func:`cautions` for a run with nothing to distrust but the test split's origin."""
    rng = np.random.default_rng(0)
    inputs = dict(metrics={"epochs_trained": 25}, config={"epochs": 25, "near_duplicates": False},
                  plan={"choices": [{"field": "augment", "value": "light", "reason": "R", "applied": True}],
                        "fingerprint": {"near_duplicate_samples": 0, "hashed": n}},
                  table=pd.DataFrame({"image": [f"i{k}" for k in range(n)], "dice": rng.uniform(0.8, 0.9, n),
                                      "hd95": rng.uniform(1, 3, n)}),
                  unit="mm", leakage=LeakageReport(group_source="split.json"),
                  exports=[{"file": "model.onnx", "precision": "float32", "max_abs_diff": 1e-6, "dice": 1.0,
                            "images": 8}])
    inputs.update(overrides)
    return inputs


def test_a_clean_run_gets_only_the_external_validity_caution():
    found = cautions(**_clean())
    assert len(found) == 1 and found[0].startswith(EXTERNAL)


@pytest.mark.parametrize("change, expected", [
    (dict(leakage=LeakageReport(shared={"train/test": ["patient 7"], "val/test": []},
                                duplicates={"train/test": [("a.png", "b.png", 3)]}, group_source="split.json")),
     "LEAKAGE: 1 group(s) and 1 near-duplicate pair(s) are shared with the test split"),
    (dict(leakage=LeakageReport(group_source="file names only")), "No groups are known"),
    (dict(unit="px"), "HD95 and ASSD are in pixels"),
    (dict(metrics={"epochs_trained": 1}), "The model trained for 1 epoch(s)"),
    (dict(metrics={"epochs_trained": 12}), "Training stopped after 12 of 25 epochs"),
    (dict(metrics={"epochs_trained": 12}, config={"epochs": 200, "time_budget": 20.0}),
     "The 20-minute budget allowed 12 epochs (of at most 200)"),
    (dict(metrics={"epochs_trained": 25, "dice": 0.85, "dice_resized": 0.9}),
     "Dice 0.900 at the training size but 0.850 at native resolution"),
    (dict(plan={"choices": [{"field": "augment", "value": "light", "reason": "R", "applied": False}]}),
     "You set augment yourself; the plan would have chosen light because: R"),
    (dict(plan={"choices": [], "fingerprint": {"near_duplicate_samples": 4, "hashed": 40}}),
     "4 of 40 images have a near-duplicate but the split did not group them"),
    (dict(exports=[{"file": "model-int8.tflite", "precision": "int8", "max_abs_diff": 0.02, "dice": 0.995,
                    "images": 8}]), "The exported model-int8.tflite (int8) differs from the Keras model: max |p - "
                                    "p_keras| 0.02, Dice of the masks 0.9950 on 8 image(s)"),
])
def test_each_defect_adds_its_caution(change, expected):
    found = cautions(**_clean(**change))
    assert len(found) == 2 and found[0].startswith(expected), found
    assert found[-1].startswith(EXTERNAL)


def test_infinite_distances_and_a_small_test_set_are_named_with_their_numbers():
    table = pd.DataFrame({"image": list("abcde"), "dice": [0.9, 0.8, 0.7, 0.0, 0.6],
                          "hd95": [1.0, 2.0, np.inf, np.inf, 3.0]})
    found = cautions(**_clean(table=table))
    half = 1.96 * np.std([0.9, 0.8, 0.7, 0.0, 0.6], ddof=1) / math.sqrt(5)
    assert found[0] == (f"Only 5 test cases: mean Dice 0.600 +/- {half:.3f} (95 % interval of the mean); a "
                        "difference between two runs smaller than that is noise.")
    assert found[1].startswith("2 test case(s) have an empty prediction or an empty truth: their hd95 is infinite")
    assert len(found) == 3
    one = cautions(**_clean(table=table.iloc[[1]]))
    assert one[0] == ("Only 1 test case (Dice 0.800): one figure has no spread, so it says little about the next "
                      "case; test on more.") and len(one) == 2
    # grouping the near-duplicates silences that caution, and so does a leakage check that hashed the split
    plan = {"choices": [], "fingerprint": {"near_duplicate_samples": 4, "hashed": 40}}
    assert len(cautions(**_clean(plan=plan, config={"epochs": 25, "near_duplicates": True}))) == 1
    assert len(cautions(**_clean(plan=plan, leakage=LeakageReport(group_source="split.json", hashed=40)))) == 1


# ----------------------------------------------------------------------------- a real run's page
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from helpers import write_blob_pairs

    data = write_blob_pairs(tmp_path_factory.mktemp("pr_data"), seed=7)
    out = tmp_path_factory.mktemp("pr_runs") / "run"
    assert main(["train", "--data", str(data), "--image-size", "32", "--epochs", "2", "--batch-size", "4",
                 "--model-option", "base_filters=4", "--model-option", "depth=2", "--no-jit", "--verbose", "0",
                 "--progress-every", "0", "--workers", "1", "--out", str(out)]) == 0
    assert main(["evaluate", "--run", str(out)]) == 0
    return out


def _section(text: str, number: int) -> str:
    start = text.index(f"\n## {number}. ")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_page_says_what_the_run_files_say(run, capsys):
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"project report -> {run / 'project_report.md'}"
    text = (run / "project_report.md").read_text()
    assert text.startswith(f"# Project report: {run.name}\n\n**{run.name}**")       # the report card comes first
    split = json.loads((run / "split.json").read_text())
    assert (f"train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])}"
            in _section(text, 2))
    assert "result: no group or near-duplicate shared with the test split" in _section(text, 2)
    plan = json.loads((run / "plan.json").read_text())
    reasons = {c["field"]: c["reason"] for c in plan["choices"]}
    assert reasons["loss"] in _section(text, 3) and f"(set by you) {reasons['epochs']}" in _section(text, 3)
    # the figures are the evaluation's, at native resolution, with their unit and interval
    scores = pd.read_csv(run / "evaluation-test" / "metrics.csv")
    mean, half, n = interval(scores["dice"])
    row = next(r for r in _section(text, 4).splitlines() if r.startswith("| dice |"))
    assert row.startswith(f"| dice | {mean:.4f} | +/- {half:.4f} |") and row.endswith(f"| {n} |")
    assert "| hd95 (px) |" in _section(text, 4) and "distances in px" in _section(text, 4)
    # the worst cases: lowest Dice first, and the picture linked by a path that resolves from the report
    worst = _section(text, 5)
    first = [r for r in worst.splitlines() if r.startswith("| ")][1]          # the row under the header
    assert first.startswith(f"| {scores['image'][scores['dice'].idxmin()]} | {scores['dice'].min():.4f} |")
    link = re.search(r"!\[[^]]*\]\(([^)]+)\)", worst).group(1)
    assert link == "evaluation-test/worst.png" and (run / link).is_file()
    assert "Not exported" in _section(text, 6)
    distrust = _section(text, 7)
    assert "The model trained for 2 epoch(s)" in distrust and "You set epochs yourself" in distrust
    assert "HD95 and ASSD are in pixels" in distrust and EXTERNAL in distrust


def test_export_checks_and_another_place_for_the_page(run, tmp_path):
    export = run / "export"
    export.mkdir(exist_ok=True)
    (export / "model-int8.tflite.check.json").write_text(json.dumps(
        {"file": "model-int8.tflite", "format": "litert", "precision": "int8", "bytes": 120000, "images": 8,
         "max_abs_diff": 0.031, "dice": 0.97}))
    try:
        page = write_project_report(run, out=tmp_path / "elsewhere" / "page.md", leakage=False)
        text = page.read_text()
    finally:
        (export / "model-int8.tflite.check.json").unlink()
        export.rmdir()
    assert "| model-int8.tflite | int8 | 0.12 | 8 | 3.10e-02 | 0.9700 |" in _section(text, 6)
    assert "The exported model-int8.tflite (int8) differs from the Keras model" in _section(text, 7)
    assert "Leakage check" not in _section(text, 2)
    link = re.search(r"!\[[^]]*\]\(([^)]+)\)", _section(text, 5)).group(1)
    assert (page.parent / link).resolve() == (run / "evaluation-test" / "worst.png").resolve()


def test_bad_input_is_one_line(run, tmp_path, capsys):
    from helpers import cli_fails

    cli_fails(capsys, ["report", str(tmp_path)], "is not a run folder (no config.json)")
    (tmp_path / "empty").mkdir()
    cli_fails(capsys, ["report", str(run), "--evaluation", str(tmp_path / "empty")], "holds no metrics.csv")
