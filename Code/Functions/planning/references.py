"""The figure each recipe in ``recipes/`` is expected to reach, and a real-data run checked against it.

Every recipe file states its figure in its opening comment: measured here (with the command, the budget and
the hardware) or "not yet measured here" with the published anchor.  :data:`REFERENCES` holds the same facts
in a form code can use, one :class:`Reference` per recipe of a public data set, so that a notebook's "Real
data" section can

* name the recipe for its data set (:func:`for_dataset`),
* say what to expect, with budget, hardware and source, and how to get the data (:meth:`Reference.describe`),
* build the ``train`` command that reproduces the figure (:meth:`Reference.train_args`), and
* compare the run's ``metrics.json`` with the figure, printing the tolerance (:meth:`Reference.compare`).

A test checks that each figure here is the one its recipe file states.  Nothing here is asserted against a
run: hardware, downloads (DSB2018's original release holds 670 images, the copy measured here 664) and
time budgets differ, so the comparison is printed, not enforced.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from Functions.base.errors import UserError
from Functions.base.paths import repo_root
from Functions.data import datasets

#: Where the figures were measured (README.md, "Results").
SHARED_CPU = "the repository's shared 2-core CPU (no GPU)"


@dataclass(frozen=True)
class Reference:
    """One recipe of a public data set and the figure it is expected to reach."""

    recipe: str                  # file name in recipes/, without .toml
    dataset: str                 # registered name (Functions.data.datasets)
    task: str                    # semantic, instance or panoptic (volumes: semantic, the recipe sets dims = 3)
    metric: str                  # the key of the run's metrics.json
    value: float | None          # measured here; None: not yet measured here
    tolerance: float | None      # how far a rerun may land from value and still count as reproduced
    budget: str                  # what the figure cost
    hardware: str
    source: str                  # where the figure is recorded (or why there is none)
    anchor: str                  # the published figure it is read against
    note: str = ""               # what differs between the measured run and a download

    @property
    def path(self) -> Path:
        """``recipes/<recipe>.toml`` of the repository (a clone installed with ``pip install -e .``)."""
        root = repo_root()
        if root is None:
            raise UserError("the recipes live in the repository's recipes/ folder, which this installation cannot "
                            "see; clone the repository and run `pip install -e .`")
        return root / "recipes" / f"{self.recipe}.toml"

    @property
    def model(self) -> str:
        """The architecture the recipe trains (its ``model`` key, else ``train``'s default)."""
        import tomllib

        values = tomllib.loads(self.path.read_text(encoding="utf-8"))
        return str(values.get("model", "unet3d" if values.get("dims") == 3 else "unet"))

    def expected(self) -> str:
        """One line: the figure with its tolerance, or "not yet measured here"."""
        if self.value is None:
            return f"{self.metric}: not yet measured here; published anchor: {self.anchor}"
        return f"{self.metric} {self.value:.4f} ± {self.tolerance:g} ({self.source}); published anchor: {self.anchor}"

    def train_args(self, model: str | None = None, data_dir: str | os.PathLike | None = None,
                   out: str | os.PathLike | None = None) -> list[str]:
        """The ``python -m Functions`` arguments that train this recipe on the registered data set.

        ``model`` replaces the recipe's architecture (a flag overrides the recipe); ``data_dir`` is where the
        data sets live (``None``: ``$MIP_DATA_DIR``, else ``Data/datasets``); ``out`` the new run folder.
        """
        args = ["train", "--config", str(self.path), "--dataset", self.dataset]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        if model is not None and model != self.model:
            args += ["--model", model]
        if out is not None:
            args += ["--out", str(out)]
        return args

    def describe(self, model: str | None = None, data_dir: str | os.PathLike | None = None) -> str:
        """A few lines for a notebook: the recipe, what to expect, what it cost, how to get the data."""
        info = datasets.get(self.dataset)
        download = (f"automatic (python -m Functions download {info.name})" if info.automatic else
                    f"manual: {info.manual}; then python -m Functions download {info.name} --archive FILE")
        command = "python -m Functions " + " ".join(
            self.train_args(model=model, data_dir=data_dir)).replace(str(self.path), f"recipes/{self.recipe}.toml")
        rows = [("recipe", f"recipes/{self.recipe}.toml ({self.model})"), ("expected", self.expected())]
        if model is not None and model != self.model:
            rows.append(("model", f"{model} replaces the recipe's {self.model}: the figure above is "
                                  f"{self.model}'s, {model}'s is not yet measured here"))
        rows += [("budget", self.budget), ("hardware", self.hardware), ("download", download), ("command", command)]
        if self.note:
            rows.append(("note", self.note))
        return "\n".join([f"Real data: {info.name} ({info.title})"] + [f"  {k + ':':<9} {v}" for k, v in rows])

    def compare(self, metrics: dict, model: str | None = None) -> str:
        """One line: the run's figure against the expected one and the tolerance (printed, never asserted)."""
        got = metrics.get(self.metric)
        if got is None or not math.isfinite(float(got)):
            return f"the run's metrics hold no finite {self.metric!r}: nothing to compare"
        got = float(got)
        if self.value is None:
            return (f"test {self.metric} {got:.4f}; no figure measured here to compare with (published anchor: "
                    f"{self.anchor})")
        diff = got - self.value
        verdict = ("within the tolerance" if abs(diff) <= self.tolerance + 1e-12 else
                   "above the tolerance" if diff > 0 else "below the tolerance")
        line = (f"test {self.metric} {got:.4f} against {self.value:.4f} ± {self.tolerance:g} "
                f"(difference {diff:+.4f}): {verdict}")
        if model is not None and model != self.model:
            line += f"; the reference is {self.model}'s, this run trained {model}"
        return line


_LOG = "benchmarks/LOG.md"
_DSB_COPY = ("measured on the course's copy of 664 images (the download holds the original 670), so the "
             "test images differ")


def _unmeasured(recipe: str, dataset: str, task: str, metric: str, anchor: str) -> Reference:
    """A recipe not yet run here: its 15-minute budget and the published anchor only."""
    return Reference(recipe, dataset, task, metric, None, None, "15 minutes of training (the recipe's time_budget)",
                     SHARED_CPU, "not yet measured here", anchor)


REFERENCES: dict[str, Reference] = {r.recipe: r for r in (
    Reference("dsb2018_semantic", "dsb2018", "semantic", "dice", 0.9129, 0.01,
              "15 minutes of training (the recipe's time_budget)", SHARED_CPU,
              f"{_LOG} run P: binary U-Net, 133 test images at original resolution; run G, the same without "
              "bfloat16 and --keep last, 0.9117",
              "DoubleU-Net Dice 0.9133 (Jha et al., CBMS 2020; its own split)",
              _DSB_COPY),
    Reference("dsb2018_instance", "dsb2018", "instance", "dsb_score", 0.5778, 0.01,
              "15 minutes of training each (the recipe's time_budget)", SHARED_CPU,
              f"mean of runs P, Q, R (0.5792, 0.5759, 0.5784) in {_LOG}; README results table, 'the hand-set "
              "recipe', 133 test images at original resolution",
              "2018 Data Science Bowl stage 2: winner 0.632, CellProfiler 0.528 (hidden stage-2 set)",
              _DSB_COPY),
    _unmeasured("kvasir_seg", "kvasir-seg", "semantic", "dice",
                "Dice 0.8133 with ResUNet++ (Jha et al. 2019, IEEE ISM)"),
    _unmeasured("busi", "busi", "semantic", "dice",
                "U-Net F1 0.770 (F1 of a binary mask is its Dice; Al-Dhabyani et al. 2020 published the data)"),
    _unmeasured("drive", "drive", "semantic", "dice",
                "F1 0.816 inside the field of view, retina-unet (orobix/retina-unet, DRIVE test set)"),
    Reference("msd_hippocampus", "msd-hippocampus", "semantic", "dice", 0.8945, 0.02,
              "15 minutes of training (the recipe's time_budget; 83 epochs on the quiet CPU)", SHARED_CPU,
              "README results table, MSD Task04 Hippocampus half: mean of anterior 0.9019 and posterior 0.8872 on "
              "20 test volumes, each on its own grid (benchmarks/LOG.md, the planner sweep)",
              "nnU-Net 0.90 / 0.89 (MSD test set; Isensee et al. 2018, arXiv 1809.10486)",
              "measured on half of the set (130 volumes); the download holds all 260, so more training volumes "
              "and other test volumes"),
    _unmeasured("msd_spleen", "msd-spleen", "semantic", "dice",
                "about 0.96 mean Dice on the validation volumes of MONAI's spleen tutorial"),
    _unmeasured("pannuke", "pannuke", "panoptic", "mpq",
                "HoVer-Net mPQ 0.4629, bPQ 0.6596 (Gamper et al. 2020, three folds)"),
)}


def for_dataset(name: str, task: str = "semantic") -> Reference:
    """The :class:`Reference` of the recipe for registered data set ``name`` and ``task``.

    ``name`` as :func:`Functions.data.datasets.get` takes it (``"kvasir_seg"``, ``"hippocampus"``...).  A
    :class:`UserError` names the data sets that have a recipe when ``name`` has none for ``task``.
    """
    info = datasets.get(name)
    for ref in REFERENCES.values():
        if ref.dataset == info.name and ref.task == task:
            return ref
    have = ", ".join(sorted({f"{r.dataset} ({r.task})" for r in REFERENCES.values()}))
    raise UserError(f"{info.name} has no recipe for the {task} task in recipes/, so there is no figure to "
                    f"reproduce; the real-data run takes one of: {have}")
