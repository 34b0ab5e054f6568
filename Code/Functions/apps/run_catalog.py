"""The trained runs in a folder, what kind each one is, and its report card (for the classroom page).

A run folder is any folder with a ``config.json`` written by ``train`` or
``classify-train`` (``compare`` puts one per model under its own folder, so
the search goes a few levels down).  Its *kind* decides how the page uses it:

* ``"2-D"`` - semantic segmentation of images (binary or several classes);
* ``"instance"`` - ``train --task instance`` (one label per object);
* ``"panoptic"`` - ``train --task panoptic`` (objects with a type each, plus stuff classes);
* ``"3-D"`` - ``train --dims 3`` (NIfTI / DICOM volumes);
* ``"classifier"`` - ``classify-train`` (a ``classes.json`` listing ``"classes"`` beside the model; a
  multi-class segmentation run's ``classes.json`` holds ``"class_names"`` instead).

:func:`report_card` is a short markdown summary read from the run's own
files (``config.json``, ``split.json``, ``metrics.json``, ``report.md``):
data set, split, test figures and budget.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from Functions.base.errors import UserError

KINDS = ("2-D", "instance", "panoptic", "3-D", "classifier")
#: How deep below the runs folder run folders are looked for (``compare`` nests one level).
SEARCH_DEPTH = 3


@dataclass(frozen=True)
class RunEntry:
    """One run folder: ``path``, its ``kind`` (one of :data:`KINDS`), ``name`` (relative to the runs folder)
    and whether it holds a ``model.keras``."""

    path: Path
    kind: str
    name: str
    has_model: bool

    @property
    def label(self) -> str:
        """What the run menu shows: ``name (kind)``, marked when the model is missing."""
        return f"{self.name} ({self.kind}{'' if self.has_model else ', no model'})"


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``{}`` when the file is absent, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_kind(run_dir: str | os.PathLike) -> str:
    """The kind of a run folder (:data:`KINDS`), from its ``classes.json`` and ``config.json``."""
    run_dir = Path(run_dir)
    if isinstance(read_json(run_dir / "classes.json").get("classes"), list):   # classify-train's class names
        return "classifier"
    config = read_json(run_dir / "config.json")
    if int(config.get("dims") or 2) == 3:
        return "3-D"
    if config.get("task") in ("instance", "panoptic"):
        return str(config["task"])
    return "2-D"


def find_runs(root: str | os.PathLike) -> list[RunEntry]:
    """The run folders at or below ``root`` (at most :data:`SEARCH_DEPTH` levels), sorted by name.

    Raises :class:`UserError` when ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"runs folder {root} does not exist; pass --runs DIR, the folder that holds your training "
                        "runs (train --out)")
    found: list[RunEntry] = []

    def visit(folder: Path, depth: int) -> None:
        if (folder / "config.json").is_file() or (folder / "model.keras").is_file():
            name = folder.relative_to(root).as_posix() if folder != root else folder.name
            found.append(RunEntry(folder, run_kind(folder), name, (folder / "model.keras").is_file()))
        if depth >= SEARCH_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        except OSError:
            return
        for child in children:
            if child.name not in ("backup", "tensorboard", "logs"):
                visit(child, depth + 1)

    visit(root, 0)
    return sorted(found, key=lambda r: r.name)


def number(value, digits: int = 3) -> str:
    """A figure for the card: ``0.591``, ``26.5``, ``-`` for missing values."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def data_source(kind: str, config: dict) -> str:
    """The data set a run trained on, as the card names it."""
    if config.get("dataset"):
        return str(config["dataset"])
    if config.get("data"):
        return Path(str(config["data"])).name or str(config["data"])
    default = {"classifier": "ultrasound", "3-D": "volumes"}.get(kind, "nuclei")
    return f"offline sample ({default})"


def split_counts(run_dir: Path) -> str:
    """``70 / 15 / 15`` (train / validation / test) from ``split.json``; ``-`` without one."""
    split = read_json(run_dir / "split.json")
    parts = [len(split[k]) if isinstance(split.get(k), list) else None for k in ("train", "val", "test")]
    return "-" if all(p is None for p in parts) else " / ".join("-" if p is None else str(p) for p in parts)


def test_figures(kind: str, metrics: dict) -> str:
    """The test figures a card shows for each kind of run."""
    if not metrics:
        return "not scored yet (no metrics.json)"
    if kind == "classifier":
        keys = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")
    elif kind == "instance":
        keys = ("ap50", "aji", "dice", "iou")
    elif kind == "panoptic":
        keys = ("mpq_plus", "mpq", "bpq", "mean_stuff_iou")
    else:
        keys = ("dice", "iou", "hd95")
    shown = [f"{k} {number(metrics.get(k))}" for k in keys if metrics.get(k) is not None]
    n = metrics.get("n_images") or metrics.get("n_volumes")
    where = f" on {n} test {'volumes' if kind == '3-D' else 'images'}" if n else ""
    return (", ".join(shown) or "-") + where


def budget(config: dict, metrics: dict) -> str:
    """Epochs trained of those asked for, time budget, training seconds and parameters."""
    parts = []
    trained, asked = metrics.get("epochs_trained"), config.get("epochs")
    if trained is not None or asked is not None:
        parts.append(f"{number(trained)} of {number(asked)} epochs")
    if config.get("time_budget"):
        parts.append(f"time budget {config['time_budget']} min")
    if metrics.get("train_seconds") is not None:
        parts.append(f"{metrics['train_seconds']:.0f} s of training")
    if metrics.get("parameters"):
        parts.append(f"{int(metrics['parameters']):,} parameters")
    if config.get("batch_size"):
        parts.append(f"batch {config['batch_size']}")
    return ", ".join(parts) or "-"


def summary_line(run_dir: Path) -> str:
    """The first paragraph after the title of ``report.md`` (the run's one-line result), or ``""``."""
    try:
        lines = (run_dir / "report.md").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    body = [ln for ln in lines[1:8] if ln.strip()]
    return body[0].strip() if body and not body[0].startswith(("#", "|", "`")) else ""


def report_card(run_dir: str | os.PathLike) -> str:
    """A markdown report card of a run: model, kind, data set, split, test figures, budget, input size."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    config, metrics = read_json(run_dir / "config.json"), read_json(run_dir / "metrics.json")
    if kind == "classifier":
        config = {**read_json(run_dir / "classes.json"), **config}
    size = config.get("patch_size") if kind == "3-D" else config.get("image_size")
    size_text = " x ".join(map(str, size)) if isinstance(size, (list, tuple)) else number(size)
    rows = [("model", config.get("model", "-")), ("kind", kind), ("data set", data_source(kind, config)),
            ("split (train / val / test)", split_counts(run_dir)), ("test", test_figures(kind, metrics)),
            ("budget", budget(config, metrics)), ("patch" if kind == "3-D" else "input size", size_text)]
    if kind == "classifier" and config.get("classes"):
        rows.append(("classes", ", ".join(map(str, config["classes"]))))
    elif kind == "panoptic" and config.get("object_types"):
        t, names = int(config["object_types"]), list(config.get("panoptic_names") or [])
        rows.append(("object types", ", ".join(map(str, names[:t])) or str(t)))
        rows.append(("stuff classes", ", ".join(map(str, names[t:])) or number(config.get("stuff_classes") or 0)))
    elif int(config.get("num_classes") or 1) > 1:
        rows.append(("classes", str(config["num_classes"])))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    note = "" if (run_dir / "model.keras").is_file() else "\n\n**No model.keras in this folder: it cannot predict.**"
    summary = summary_line(run_dir)
    head = f"**{run_dir.name}**" + (f" - {summary}" if summary else "")
    return f"{head}\n\n| setting | value |\n|---|---|\n{table}{note}"
