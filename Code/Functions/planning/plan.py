"""A plan: the fingerprint of a data set, the rules' choices, and how they meet the user's own settings.

Precedence, lowest first: the built-in defaults < the plan < a recipe file (``train --config FILE``) < the
flags on the command line.  :func:`make_plan` measures and decides; :func:`apply_plan` fills the settings the
user left open; :meth:`Plan.to_dict` is ``plan.json`` (written in the run folder and by ``plan --out FILE``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from Functions.planning.fingerprint import Fingerprint, fingerprint
from Functions.planning.rules import Choice, plan_rules


@dataclass
class Plan:
    """The fingerprint and the planned settings (``given``: fields the user set, which the plan leaves alone)."""

    fingerprint: Fingerprint
    choices: list[Choice]
    task: str = "semantic"
    time_budget: float | None = None
    given: set = field(default_factory=set)

    def values(self) -> dict:
        """``{field: value}`` of the choices the user did not set."""
        return {c.field: c.value for c in self.choices if c.field not in self.given}

    def to_dict(self) -> dict:
        return {"task": self.task, "time_budget": self.time_budget,
                "choices": [{"field": c.field, "value": c.value, "reason": c.reason,
                             "applied": c.field not in self.given} for c in self.choices],
                "fingerprint": self.fingerprint.to_dict()}

    def lines(self) -> list[str]:
        """The plan as printed: one line per choice, ``field = value  reason``."""
        fp = self.fingerprint
        kind = fp.mask_kind + (f" ({fp.object_types} types, {fp.stuff_classes} stuff)"
                               if fp.mask_kind == "typed instances" else "")
        head = (f"Plan for {fp.root}: {fp.n_samples} {'volumes' if fp.dims == 3 else 'images'}, "
                f"{fp.modality}, masks {kind} (fingerprint in {fp.seconds:g} s, pixels of "
                f"{fp.n_measured}); `train --help-all` lists every setting")
        out = [head]
        for c in self.choices:
            mark = "  (set by you)" if c.field in self.given else ""
            out.append(f"  {c.field} = {format_value(c.value)}{mark}  - {c.reason}")
        return out

    def write(self, path: str | Path) -> Path:
        from Functions.base.runs import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


def format_value(value) -> str:
    if value is None:
        return "auto"
    if isinstance(value, list):
        return " ".join(format_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def make_plan(data: str | None = None, dataset: str | None = None, data_dir: str | None = None, *,
              task: str | None = None, time_budget: float | None = None, dims: int | None = None,
              seed: int = 0, given=()) -> Plan:
    """Fingerprint ``--data`` / ``--dataset`` (default: the offline nuclei sample) and plan a run on it."""
    fp = fingerprint(data, dataset, data_dir, dims=dims, seed=seed)
    choices = plan_rules(fp, task=task or "semantic", time_budget=time_budget, given=set(given))
    task = next((c.value for c in choices if c.field == "task"), task or "semantic")
    return Plan(fp, choices, task=task, time_budget=time_budget, given=set(given))
