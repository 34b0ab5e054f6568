"""The planner against the hand-set recipes: ``train --data DIR --time-budget 15`` and no other flag (the plan
chooses the rest), on every data set available here, the headline metric printed beside the figure the
hand-set recipe reached (``recipes/*.toml``, taken from benchmarks/LOG.md and README.md).

Data sets: the offline samples (``Data/sample/nuclei``, ``tissue``, ``ultrasound``, ``volumes``, ``panoptic``),
DSB2018 ``stage1_train`` semantic and instance (``--task instance``: the one extra flag, since the task is the
user's choice), MSD Hippocampus; the shared ones only where ``../shared/datasets`` holds them.  The planned split is
``train``'s default (15 % validation, 15 % test), not the recipes' 10 % / 20 %, so the test images differ from
the recipe's: compare the figures as two measurements of one data set, not as a paired test.

    python benchmarks/planner.py                                  # every data set, 15 minutes each (hours)
    python benchmarks/planner.py --only nuclei --minutes 0.3      # smoke run on the offline sample

``--modes planned default recipe`` adds, for each data set, the built-in defaults under the same budget
(``--no-plan --time-budget M``: the path before the planner, which the plan must never fall below) and the
hand-set recipe itself (``--config recipes/X.toml``, its own epochs or budget).  Results are written to
``planner.json`` after every run, so an interrupted sweep keeps what it measured.

Arguments after ``--`` go to every ``train`` command (a smoke run may add ``--subset 12``).  Run folders stay
under ``--out`` (default ``runs/planner-<time>``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"

#: name: (data folder, extra flags, headline metrics, hand-set recipe file, its figure or None, where measured)
DATASETS = {
    "nuclei": (REPO / "Data/sample/nuclei", [], ("dice",), "sample_nuclei.toml", {"dice": 0.9465},
               "README.md (the main job, 25 epochs)"),
    "tissue": (REPO / "Data/sample/tissue", [], ("dice",), "sample_tissue.toml", {"dice": 0.9346},
               "benchmarks/LOG.md, the planner sweep (25 epochs, macro Dice)"),
    "ultrasound": (REPO / "Data/sample/ultrasound", [], ("dice",), "sample_ultrasound.toml", {"dice": 0.9464},
                   "benchmarks/LOG.md, the planner sweep (25 epochs)"),
    "volumes": (REPO / "Data/sample/volumes", [], ("dice", "hd95"), "sample_volumes.toml", {"dice": 0.9608},
                "README.md 'Volumes' (15 epochs)"),
    "dsb2018": (SHARED / "dsb2018/stage1_train", [], ("dice",), "dsb2018_semantic.toml", {"dice": 0.9129},
                "benchmarks/LOG.md run P (binary, 15 min)"),
    "dsb2018-instance": (SHARED / "dsb2018/stage1_train", ["--task", "instance"], ("dsb_score", "ap50"),
                         "dsb2018_instance.toml", {"dsb_score": "0.5759-0.5792", "ap50": "0.7937-0.8023, mean 0.7987"},
                         "benchmarks/LOG.md runs P-R; AP50 mean over the seven runs of the recipe"),
    "panoptic": (REPO / "Data/sample/panoptic", [], ("mpq", "bpq"), "sample_panoptic.toml",
                 {"mpq": 0.9618, "bpq": 0.9701}, "benchmarks/LOG.md, the panoptic plan (40 epochs, batch 4)"),
    "hippocampus": (SHARED / "msd_hippocampus_half/Task04_Hippocampus", [], ("dice", "hd95"),
                    "msd_hippocampus.toml", {"dice": 0.8945},
                    "the recipe is the plan's own choice: one run (benchmarks/LOG.md, the planner sweep)"),
}


#: Flags the built-in defaults (``--no-plan``) need to train the same task: before the planner, typed masks were
#: trained as panoptic only when ``--task panoptic`` was given.
DEFAULT_FLAGS = {"panoptic": ["--task", "panoptic"]}


def parse(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=15.0, help="--time-budget of every run (%(default)s)")
    p.add_argument("--only", nargs="+", choices=sorted(DATASETS), help="these data sets only")
    p.add_argument("--modes", nargs="+", default=["planned"], choices=["planned", "default", "recipe"],
                   help="planned: no flag; default: --no-plan; recipe: --config recipes/X.toml (%(default)s)")
    p.add_argument("--out", type=Path, help="folder of the run folders (default runs/planner-<time>)")
    args = p.parse_args(argv)
    args.extra = extra
    return args


def run_one(name: str, minutes: float, out: Path, extra: list[str], mode: str = "planned") -> dict:
    folder, flags, keys, recipe, figure, where = DATASETS[name]
    run = out / (name if mode == "planned" else f"{name}-{mode}")
    if mode == "recipe":
        how = ["--config", str(REPO / "recipes" / recipe)]
    else:
        how = ["--time-budget", f"{minutes:g}"] + (["--no-plan", *DEFAULT_FLAGS.get(name, [])]
                                                   if mode == "default" else [])
    cmd = [sys.executable, "-m", "Functions", "train", "--data", str(folder), *how, *flags, "--out", str(run), *extra]
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "Code") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"name": name, "mode": mode, "seconds": time.time() - t0, "epochs": metrics.get("epochs_trained"),
            "planned": {k: metrics.get(k) for k in keys}, "recipe": recipe, "figure": figure, "where": where}


def main(argv=None) -> int:
    args = parse(argv)
    names = args.only or list(DATASETS)
    out = args.out or REPO / "runs" / time.strftime("planner-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        if not DATASETS[name][0].is_dir():
            print(f"skip {name}: {DATASETS[name][0]} is not here", flush=True)
            continue
        for mode in args.modes:
            rows.append(run_one(name, args.minutes, out, args.extra, mode))
            (out / "planner.json").write_text(json.dumps(rows, indent=2, default=str))
    print(f"\n| data set | run ({args.minutes:g} min) | metrics | epochs | hand-set recipe | its figure |")
    print("|---|---|---|---:|---|---|")
    label = {"planned": "plan, no other flag", "default": "--no-plan (built-in defaults)", "recipe": "the recipe file"}
    for r in rows:
        planned = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["planned"].items())
        figure = (", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["figure"].items()) + f" ({r['where']})" if r["figure"]
                  else r["where"])
        print(f"| {r['name']} | {label[r['mode']]} | {planned} | {r['epochs']} | recipes/{r['recipe']} | {figure} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
