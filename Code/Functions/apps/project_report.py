"""The one-page project report of a finished run: ``RUN/project_report.md`` (``python -m Functions report RUN``).

Where ``report.md`` (written by ``train``) lists every setting and figure of a run, this page answers the
questions a reader of a project asks, in order, from the run's own files:

1. the data (``plan.json``'s fingerprint: sizes, spacing, modality, groups, near-duplicates);
2. the split and how it was grouped (``split.json``, ``config.json``, and the leakage check of
   :func:`Functions.evaluation.leakage.check_split`);
3. the plan's choices with their reasons (``plan.json``; settings you gave are marked);
4. the test figures at native resolution with their units (an ``evaluate --run`` folder, else the run's own
   ``test_metrics.csv``);
5. the worst cases as a table and as pictures (the evaluation's ``worst.png``);
6. the export parity figures (``export/*.check.json``);
7. what to distrust (:func:`cautions`: rules that read the same files).

It starts with the run's report card (:func:`Functions.apps.run_catalog.report_card`), the summary the classroom
page shows.  Nothing is recomputed except the leakage check, and the page links its pictures by relative path,
so the run folder can be moved or published as it is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from Functions.apps.run_catalog import number, read_json, report_card, run_kind
from Functions.base.errors import UserError

#: The report's file name inside the run folder.
REPORT_NAME = "project_report.md"
#: Metric columns the figures table shows, in this order, where the table has them.
SHOWN = ("dice", "iou", "precision", "recall", "boundary_f1", "hd95", "assd")
#: Distance columns (in the table's unit); the others are fractions.
DISTANCES = ("hd95", "assd")
#: Below this many test images the interval of the mean is wide enough to say so.
FEW_TEST = 30
#: Export parity: a larger probability difference, or a lower Dice against the Keras masks, is a caution.
EXPORT_DIFF = 1e-3
EXPORT_DICE = 0.99
#: Dice lost by training on resized images (``dice_resized`` - native ``dice``) worth a caution.
RESIZE_GAP = 0.02


def find_evaluation(run_dir: str | os.PathLike) -> Path | None:
    """The run's ``evaluate --run`` folder on its test split (``evaluation-test``, the latest numbered one
    without test-time flips), or ``None`` when it has not been evaluated."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob("evaluation-test*") if (p / "metrics.csv").is_file() and "-tta" not in p.name]
    if not found:
        return None
    return max(found, key=lambda p: (len(p.name), p.name))


def scores_table(run_dir: Path, evaluation: Path | None):
    """``(table, unit, source)``: the per-image (per-volume) test metrics, the unit of their distances
    (``mm`` or ``px``) and the file they came from."""
    import pandas as pd

    kind = run_kind(run_dir)
    source = evaluation / "metrics.csv" if evaluation is not None else run_dir / "test_metrics.csv"
    if not source.is_file():
        raise UserError(f"{run_dir} has no test metrics ({source.name}); finish the run, or pass the folder "
                        "written by `evaluate --run` with --evaluation")
    table = pd.read_csv(source)
    if kind == "3-D":
        return table, "mm", source
    own = run_dir / "test_metrics.csv"
    units = pd.read_csv(own, usecols=lambda c: c == "unit") if own.is_file() else None
    values = set(units["unit"].astype(str)) if units is not None and "unit" in units else set()
    unit = "mm" if values == {"mm"} else ("mm or px (see the unit column)" if "mm" in values else "px")
    return table, unit, source


def interval(values) -> tuple[float, float, int]:
    """``(mean, half-width, n)`` of the normal 95 % interval of the mean of the finite ``values``
    (half-width NaN for fewer than two)."""
    v = _finite(values)
    if not v.size:
        return float("nan"), float("nan"), 0
    half = 1.96 * float(np.std(v, ddof=1)) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return float(np.mean(v)), half, int(v.size)


def cautions(*, metrics: dict, config: dict, plan: dict | None, table, unit: str, leakage=None,
             exports: list[dict] | None = None) -> list[str]:
    """What a reader should distrust about a run's figures, one sentence each (the rules in the code below).

    ``metrics``/``config``/``plan``: the run's ``metrics.json``, ``config.json`` and ``plan.json`` (None without
    one); ``table``: the per-image test metrics; ``unit``: of its distances; ``leakage``: a
    :class:`~Functions.evaluation.leakage.LeakageReport` or None; ``exports``: the ``*.check.json`` contents.
    """
    from Functions.planning.plan import format_value

    out = []
    if leakage is not None and leakage.test_leaks:
        shared = sum(len(v) for k, v in leakage.shared.items() if k.endswith("/test"))
        dups = sum(len(v) for k, v in leakage.duplicates.items() if k.endswith("/test"))
        out.append(f"LEAKAGE: {shared} group(s) and {dups} near-duplicate pair(s) are shared with the test split, "
                   "so the test figures are optimistic; retrain with `train --split-by group --near-duplicates`.")
    elif leakage is not None and leakage.group_source == "file names only" and run_kind_of(config) != "3-D":
        out.append("No groups are known (no patient IDs in the files): if several images come from one patient, "
                   "one video or one slide, they may sit on both sides of the split. Only near-duplicate pictures "
                   "were checked.")
    fp = (plan or {}).get("fingerprint") or {}
    unchecked = leakage is None or leakage.hashed is None      # a near-duplicate check finds them across the split
    if fp.get("near_duplicate_samples") and not config.get("near_duplicates") and unchecked:
        out.append(f"{fp['near_duplicate_samples']} of {fp.get('hashed')} images have a near-duplicate but the "
                   "split did not group them (--near-duplicates off): a copy in training and test inflates the score.")
    if "dice" in table:
        mean, half, n = interval(table["dice"])
        if n == 1:
            out.append(f"Only 1 test case (Dice {mean:.3f}): one figure has no spread, so it says little about the "
                       "next case; test on more.")
        elif n and n < FEW_TEST:
            out.append(f"Only {n} test cases: "
                       f"mean Dice {mean:.3f} +/- {half:.3f} (95 % interval of the mean); a difference between two "
                       "runs smaller than that is noise.")
    for col in DISTANCES:
        if col in table:
            bad = int((~np.isfinite(table[col].to_numpy(dtype=float))).sum())
            if bad:
                out.append(f"{bad} test case(s) have an empty prediction or an empty truth: their {col} is infinite "
                           f"and left out of its mean, which therefore looks better than it is.")
                break
    if unit == "px" and any(c in table for c in DISTANCES):
        out.append("HD95 and ASSD are in pixels: the files store no pixel spacing, so they cannot be compared with "
                   "figures in mm or with data sets of another resolution.")
    trained, asked = metrics.get("epochs_trained"), config.get("epochs")
    if trained is not None and trained <= 2:
        out.append(f"The model trained for {trained} epoch(s): these figures show that the pipeline runs, not how "
                   "good the method is.")
    elif trained is not None and asked and trained < asked and not config.get("patience"):
        if config.get("time_budget"):
            out.append(f"The {config['time_budget']:g}-minute budget allowed {trained} epochs (of at most {asked}): "
                       "a longer budget may score higher.")
        else:
            out.append(f"Training stopped after {trained} of {asked} epochs: a longer run may score higher.")
    native, resized = metrics.get("dice"), metrics.get("dice_resized")
    if native is not None and resized is not None and resized - native >= RESIZE_GAP:
        out.append(f"Dice {resized:.3f} at the training size but {native:.3f} at native resolution: resizing loses "
                   "detail; compare with published figures only at native resolution.")
    for c in (plan or {}).get("choices", []):
        if not c.get("applied", True):
            out.append(f"You set {c['field']} yourself; the plan would have chosen {format_value(c['value'])} because: "
                       f"{c['reason']}")
    for e in exports or []:
        if e.get("max_abs_diff", 0) > EXPORT_DIFF or e.get("dice", 1) < EXPORT_DICE:
            out.append(f"The exported {e.get('file')} ({e.get('precision')}) differs from the Keras model: max "
                       f"|p - p_keras| {e['max_abs_diff']:.2g}, Dice of the masks {e['dice']:.4f} on "
                       f"{e.get('images')} image(s); measure it on the test split before deploying it.")
    out.append("The test split comes from the same folder as the training data: it does not show how the model "
               "does on another scanner, hospital or population (that needs an external test set).")
    return out


def run_kind_of(config: dict) -> str:
    """``"3-D"`` for a ``train --dims 3`` configuration, else ``"2-D"``."""
    return "3-D" if int(config.get("dims") or 2) == 3 else "2-D"


def _data_section(plan: dict | None) -> list[str]:
    fp = (plan or {}).get("fingerprint")
    if not fp:
        return ["No plan.json in the run folder (trained with --no-plan): the data was not fingerprinted."]
    size = lambda v: " x ".join(str(int(x)) for x in v)   # noqa: E731 - a one-line formatter
    what = "volumes" if fp.get("dims") == 3 else "images"
    spacing = fp.get("spacing_median")
    lines = [f"- **Folder**: `{fp.get('root')}`: {fp.get('n_samples')} {what} with masks ({fp.get('mask_kind')}, "
             f"{fp.get('n_classes')} classes with background).",
             f"- **Sizes**: {size(fp['size_min'])} to {size(fp['size_max'])} (median {size(fp['size_median'])}); "
             f"largest / smallest area {number(fp.get('size_spread'), 2)}; "
             + (f"spacing {' x '.join(f'{s:g}' for s in spacing)} mm (median)." if spacing
                else "no pixel spacing stored (distances in pixels)."),
             f"- **Modality**: {fp.get('modality')} ({fp.get('modality_source')}); {fp.get('channels')} channel(s); "
             f"foreground {100 * float(fp.get('foreground_share') or 0):.1f} % of the pixels, "
             f"{number(fp.get('objects_per_image'), 1)} object(s) per image (median area "
             f"{number(fp.get('object_area_median'), 1)} px), {100 * float(fp.get('touching_share') or 0):.0f} % "
             "touching another.",
             f"- **Groups**: {fp.get('n_groups')} group(s) of two or more samples ({fp.get('grouped_samples')} "
             f"samples); {fp.get('near_duplicate_samples')} of {fp.get('hashed')} hashed images have a near-duplicate."]
    if fp.get("layout_split"):
        lines.append("- **The layout's own split**: " + ", ".join(f"{k} {v}" for k, v in fp["layout_split"].items())
                     + (f" ({fp['layout_note']})" if fp.get("layout_note") else "") + ".")
    return lines


def _split_section(run_dir: Path, config: dict, leakage) -> list[str]:
    split = read_json(run_dir / "split.json")
    counts = ", ".join(f"{k} {len(split.get(k) or [])}" for k in ("train", "val", "test"))
    how = (f"split `{config.get('split', 'auto')}`, by `{config.get('split_by', 'group')}`"
           + (", near-duplicates grouped" if config.get("near_duplicates") else "") + f", seed {config.get('seed')}")
    lines = [f"{counts} ({how}; the files are listed in split.json).", ""]
    if leakage is not None:
        lines += ["Leakage check (`python -m Functions check-split RUN`):", "", "```text", *leakage.lines(), "```"]
    return lines


def _plan_section(plan: dict | None) -> list[str]:
    from Functions.planning.plan import format_value
    from Functions.viz.reports import markdown_table

    if not plan:
        return ["No plan: the run used the built-in defaults and the flags given."]
    rows = [{"setting": c["field"], "value": format_value(c["value"]), "why": c["reason"] if c.get("applied", True)
             else f"(set by you) {c['reason']}"} for c in plan.get("choices", [])]
    return [markdown_table(rows)]


def _figures_section(table, unit: str, source: Path, metrics: dict, out_dir: Path) -> list[str]:
    from Functions.viz.reports import markdown_table

    rows = []
    shown = [c for c in SHOWN if c in table] or [c for c in table.select_dtypes("number").columns
                                                  if c not in ("width", "height")]
    for col in shown:
        if col in table:
            mean, half, n = interval(table[col])
            finite = _finite(table[col])
            rows.append({"metric": col + (f" ({unit})" if col in DISTANCES else ""), "mean": mean,
                         "95 % interval": f"+/- {half:.4f}" if math.isfinite(half) else "-",
                         "median": float(np.median(finite)) if finite.size else float("nan"), "n": n})
    kind = "volume" if "id" in table and "image" not in table else "image"
    lines = [f"Each test {kind} scored at its original resolution (predictions brought back to its own grid); "
             f"distances in {unit}. Source: [{source.name}]({_rel(source, out_dir)}).", "", markdown_table(rows)]
    if metrics.get("dice_resized") is not None:
        lines.append(f"\nAt the training size ({metrics.get('resized_to')}) the mean Dice was "
                     f"{metrics['dice_resized']:.4f}; the table above is the figure to quote.")
    return lines


def _finite(values):
    """The finite values of a column or sequence, as a float array."""
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def _worst_section(table, evaluation: Path | None, run_dir: Path, out_dir: Path, n: int) -> list[str]:
    from Functions.metrics.segmentation import lowest_dice
    from Functions.viz.reports import markdown_table

    order = lowest_dice(table, n)
    name = "image" if "image" in table else "id"
    cols = [c for c in (name, "dice", "iou", "hd95", "width", "height") if c in table]
    lines = [markdown_table([{c: table[c].iloc[i] for c in cols} for i in order])] if order else ["_(no Dice column)_"]
    picture = evaluation / "worst.png" if evaluation is not None else None
    if picture is not None and picture.is_file():
        lines.append(f"\n![the lowest-Dice test cases at native resolution]({_rel(picture, out_dir)})")
    elif (run_dir / "predictions.png").is_file():
        lines.append("\nNo `evaluate --run` folder yet: the training's test predictions instead.\n\n"
                     f"![test predictions]({_rel(run_dir / 'predictions.png', out_dir)})")
    return lines


def read_exports(run_dir: Path) -> list[dict]:
    """The contents of the run's ``export/*.check.json`` files (sorted by name)."""
    return [read_json(p) for p in sorted((run_dir / "export").glob("*.check.json"))]


def _export_section(exports: list[dict], kind: str) -> list[str]:
    from Functions.viz.reports import markdown_table

    if not exports and kind == "3-D":
        return ["Export covers 2-D runs; a 3-D run is deployed as its model.keras, and `predict` writes NIfTI files "
                "with each scan's own header."]
    if not exports:
        return ["Not exported (`python -m Functions export RUN --images DIR`; needs `pip install -e .[deploy]`)."]
    rows = [{"file": e.get("file"), "precision": e.get("precision"), "MB": f"{e.get('bytes', 0) / 1e6:.2f}",
             "images": e.get("images"), "max abs diff of p": f"{e.get('max_abs_diff', float('nan')):.2e}",
             "Dice with Keras masks": e.get("dice")} for e in exports]
    return ["Each exported file run on the same prepared images as the Keras model:", "", markdown_table(rows)]


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_project_report(run_dir: str | os.PathLike, *, evaluation: str | os.PathLike | None = None,
                         out: str | os.PathLike | None = None, leakage: bool = True, worst: int = 4) -> Path:
    """Write the one-page report of a run (module docstring) and return its path.

    ``evaluation``: an ``evaluate --run`` folder (default: :func:`find_evaluation`; without one the run's own
    test metrics are used); ``out``: the file (default ``RUN/project_report.md``, rewritten each time - it
    holds nothing but what the run's files say); ``leakage``: run the leakage check (near-duplicates included);
    ``worst``: how many lowest-Dice cases the table lists.
    """
    from Functions.evaluation.leakage import check_split

    run_dir = Path(run_dir).expanduser()
    config = read_json(run_dir / "config.json")
    if not config:
        raise UserError(f"{run_dir} is not a run folder (no config.json); pass a folder written by `train`")
    metrics, plan = read_json(run_dir / "metrics.json"), read_json(run_dir / "plan.json") or None
    evaluation = Path(evaluation).expanduser() if evaluation is not None else find_evaluation(run_dir)
    if evaluation is not None and not (evaluation / "metrics.csv").is_file():
        raise UserError(f"--evaluation {evaluation} holds no metrics.csv; pass a folder written by `evaluate --run`")
    out = Path(out).expanduser() if out is not None else run_dir / REPORT_NAME
    table, unit, source = scores_table(run_dir, evaluation)
    check = check_split(run_dir) if leakage and (run_dir / "split.json").is_file() else None
    exports = read_exports(run_dir)
    where = out.parent
    page = [f"# Project report: {run_dir.name}", "", report_card(run_dir), "",
            "## 1. The data", "", *_data_section(plan), "",
            "## 2. The split and how it was grouped", "", *_split_section(run_dir, config, check), "",
            "## 3. The plan: each setting and why", "", *_plan_section(plan), "",
            "## 4. Test figures at native resolution", "", *_figures_section(table, unit, source, metrics, where), "",
            "## 5. The worst cases", "", *_worst_section(table, evaluation, run_dir, where, worst), "",
            "## 6. Export parity", "", *_export_section(exports, run_kind(run_dir)), "",
            "## 7. What to distrust", "",
            *[f"- {c}" for c in cautions(metrics=metrics, config=config, plan=plan, table=table, unit=unit,
                                         leakage=check, exports=exports)], "",
            "Every setting, the training curves and the command that repeats the run: [report.md]("
            f"{_rel(run_dir / 'report.md', where)}).", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    from Functions.base.runs import atomic_write_text

    atomic_write_text(out, "\n".join(page))
    return out
