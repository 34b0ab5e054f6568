"""The finish step of every run, written once: what happens after the last epoch.

Each task says only how its kept model is scored: ``task.score(model, config, data, run_dir)`` returns a
:class:`Scores`.  :func:`finish` then writes the run folder's results the same way for every kind of run:

1. the per-image tables (``test_metrics.csv``; ``predictions.csv`` for classifiers, ``test_classes.csv``
   for panoptic runs);
2. ``metrics.json``: the task's figures, then the keys every run has (``split``, ``n_images``,
   ``epochs_trained``, ``train_seconds``, ``parameters``, ``peak_rss_mb``, the best / kept epoch from
   :func:`best_epoch`), then the task's closing keys (``summary``, ``scored_at``...);
3. ``curves.png`` (loss and a metric per epoch) and the task's own figures;
4. ``report.md`` (:func:`Functions.viz.reports.write_report`) with the task's extra sections and its
   "How the test figures were computed" note;
5. one printed line ``Test (split, N images...): figures (T s training) -> run folder``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from Functions.base.runs import write_json
from Functions.base.runtime import peak_rss_mb


@dataclass
class Scores:
    """What a task's scoring step returns; :func:`finish` writes it."""

    split: str                        # the split scored: "test", or "validation" when there is no test split
    n_images: int                     # images (or volumes) scored
    metrics: dict                     # the task's figures: the first keys of metrics.json
    line: str                         # the figures of the printed line, with the spacing before "(T s training)"
    after: dict = field(default_factory=dict)      # keys of metrics.json after the shared ones
    tables: dict = field(default_factory=dict)     # {CSV file name: DataFrame}
    figures: list[Callable[[Path], object]] = field(default_factory=list)   # draw(run_dir) for each figure
    curves: tuple = ("loss", "dice")  # what curves.png plots
    title: str | None = None          # report.md's title (None: "Run <folder>")
    sections: str = ""                # markdown put before the report's figures
    note: str = ""                    # "How the test figures were computed" (appended to report.md)
    unit: str = "images"              # what was scored, for the printed line
    where: str = ""                   # e.g. ", original resolution", for the printed line


def finish(task, model, config, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Score the kept ``model`` with ``task.score`` and write tables, ``metrics.json``, figures and
    ``report.md`` (see the module docstring); returns the metrics."""
    import matplotlib.pyplot as plt

    from Functions.viz.plotting import plot_history
    from Functions.viz.reports import write_report

    run_dir = Path(run_dir)
    scores = task.score(model, config, data, run_dir)
    for name, table in scores.tables.items():
        table.to_csv(run_dir / name, index=False)
    metrics = {**scores.metrics, "split": scores.split, "n_images": int(scores.n_images),
               "epochs_trained": int(len(hist)), "train_seconds": round(seconds, 1),
               "parameters": int(model.count_params()), "peak_rss_mb": round(peak_rss_mb(), 1),
               **best_epoch(hist, task.monitor_name(model, config.monitor), config.keep), **scores.after}
    write_json(run_dir / "metrics.json", metrics)
    plt.close(plot_history(hist, run_dir / "curves.png", metrics=scores.curves))
    for draw in scores.figures:
        figure = draw(run_dir)
        if figure is not None:
            plt.close(figure)
    path = write_report(run_dir, config=asdict(config), data=data, metrics=metrics, title=scores.title,
                        command=task.reproduce(config))
    if scores.sections:
        text, marker = path.read_text(), "\n## Figures\n"
        path.write_text(text.replace(marker, scores.sections + marker, 1) if marker in text
                        else text + scores.sections)
    if scores.note:
        with open(path, "a") as f:
            f.write(f"\n## How the test figures were computed\n\n{scores.note}\n")
    print(f"Test ({scores.split}, {scores.n_images} {scores.unit}{scores.where}): {scores.line}"
          f"({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


def scored_split(data: dict) -> tuple[list, str]:
    """``(samples, split name)`` of the split the finished model is scored on: test, else validation."""
    if data["test"][2]:
        return list(data["test"][2]), "test"
    return list(data["val"][2]), "validation"


def best_epoch(hist, monitor: str, keep: str = "best") -> dict:
    """``best_epoch`` (1-based), ``monitor`` and ``best_value`` from the history table, when it has the column.

    Also ``keep`` (``"best"`` or ``"last"``, the run's ``--keep``) and ``kept_epoch``, the epoch whose
    model the run kept (1-based): the best one, or the last one.
    """
    if monitor not in hist or not len(hist):
        return {"monitor": monitor, "keep": keep}
    values = hist[monitor].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        return {"monitor": monitor, "keep": keep}
    i = int(np.nanargmin(values) if monitor.endswith("loss") else np.nanargmax(values))
    out = {"monitor": monitor, "best_epoch": int(hist["epoch"].iloc[i]) + 1, "best_value": float(values[i]),
           "keep": keep}
    out["kept_epoch"] = int(hist["epoch"].iloc[-1]) + 1 if keep == "last" else out["best_epoch"]
    if "learning_rate" in hist:
        out["final_learning_rate"] = float(hist["learning_rate"].iloc[-1])
    return out
