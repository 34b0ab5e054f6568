"""DSB2018 at native resolution: instance model (3-class U-Net + watershed) against the simple baseline
(binary U-Net + connected components), both trained by ``python -m Functions train`` in one run.

Both runs use the same seeded split of ``stage1_train`` (664 images; 20 % held out for test, 10 % for
validation, the rest for training), the same model, patch size and wall-clock budget; only the head, the
targets and the decoder differ:

* instance:  ``train --task instance --patch-size P``: background / interior / boundary targets drawn on the
  full-size label maps (one PNG per nucleus), softmax head, decoded by marker-controlled watershed;
* baseline:  ``train --patch-size P`` on the merged binary masks, decoded by 8-connected components of
  ``p >= 0.5`` (``evaluate --task instance --run``).

Every held-out image is predicted whole by sliding window and scored at its original size against its true
instances: the DSB2018 score (mean over IoU 0.50:0.95 of TP/(TP+FP+FN), per image, then averaged), AP50/75
in the same sense, F1@0.5, PQ/SQ/RQ, AJI and the pixel Dice.  The baseline run's Dice is also the figure of
binary segmentation at native resolution (issue: DSB2018 Dice at native resolution); its worst decile is
listed.

The default ``--recipe tuned`` is the best measured on this split (benchmarks/LOG.md, runs C-O): patches
sampled in proportion to image area and test-time flips (``--tta``) for both models; for the instance model
Dice + cross-entropy with the boundary class weighted 5, and the boundary class drawn 2 px wide where nuclei
meet plus a 1-px rim on every nucleus (``--boundary-width 2 --boundaries both``, runs K-L); since runs M-O
also ``--mixed-precision`` for both (bfloat16: faster on CPUs with bfloat16 instructions, see
``Functions.base.runtime.set_precision``), and the watershed is tuned per kind of image on validation (``train``
does that by itself); since run P both keep the last epoch's model (``--keep last``; the cosine schedule ends
near zero, while the best epoch by patch-level validation Dice was a chance pick: run O kept epoch 6 of 26).  ``--recipe defaults`` trains both with ``train``'s own defaults.

Run from the repository root (prints a table; the run folders stay under ``--out``)::

    python benchmarks/dsb_instance.py                                # 15 minutes of training per model
    python benchmarks/dsb_instance.py --subset 12 --minutes 0.3 --patch 32 -- --model-option depth=2
                                                                     # smoke run (about a minute)
    KERAS_BACKEND=jax python benchmarks/dsb_instance.py --only instance --minutes 2.5 -- --model-option base_filters=32
                                                                     # on a GPU (H200: about 2 s an epoch)

Arguments after ``--`` go to both ``train`` commands unchanged, after the recipe's (a repeated flag wins).
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
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "dsb2018" / "stage1_train"
#: flags of ``--recipe tuned``: for both models, then for the instance model only
TUNED_COMMON = ["--patch-sampling", "area", "--tta", "--mixed-precision", "--keep", "last"]
TUNED_INSTANCE = ["--loss", "cce_dice", "--class-weights", "1", "1", "5", "--boundary-width", "2",
                  "--boundaries", "both"]
COLUMNS = ["dsb_score", "ap50", "ap75", "f1_50", "pq", "sq", "rq", "aji", "pixel_dice"]


def parse(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="stage1_train folder (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per model (%(default)s)")
    p.add_argument("--epochs", type=int, default=200, help="at most this many epochs per model (%(default)s)")
    p.add_argument("--patch", type=int, default=128, help="training patch side (%(default)s)")
    p.add_argument("--patches-per-image", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="use N samples (seeded; smoke runs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", choices=("instance", "baseline"), help="train only one of the two models")
    p.add_argument("--recipe", choices=("tuned", "defaults"), default="tuned",
                   help="tuned: the best flags measured on this split (see the docstring); defaults: train's own")
    p.add_argument("--out", default=None, help="folder for the two runs (default runs/dsb-instance-<time>)")
    args = p.parse_args(argv)
    args.extra = extra
    return args


def train_command(args, kind: str, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "Functions", "train", "--data", args.root, "--patch-size", str(args.patch),
           "--patches-per-image", str(args.patches_per_image), "--val-fraction", "0.1", "--test-fraction", "0.2",
           "--seed", str(args.seed), "--epochs", str(args.epochs), "--time-budget", str(args.minutes),
           "--verbose", "0", "--out", str(out)]
    if kind == "instance":
        cmd[4:4] = ["--task", "instance"]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    if args.recipe == "tuned":
        cmd += TUNED_COMMON + (TUNED_INSTANCE if kind == "instance" else [])
    return cmd + list(args.extra)


def uses_tta(args) -> bool:
    """Whether the ``train`` commands average test-time flips (the recipe's ``--tta`` or the user's)."""
    return "--tta" in train_command(args, "baseline", Path("."))


def score_baseline_command(args, run_dir: Path, out: Path) -> list[str]:
    """``evaluate --task instance`` of the binary run, with flips exactly when it was trained with them."""
    return ([sys.executable, "-m", "Functions", "evaluate", "--task", "instance", "--run", str(run_dir),
             "--out", str(out)] + (["--tta"] if uses_tta(args) else []))


def run(cmd: list[str]) -> float:
    print("$ " + " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start


def main(argv=None) -> int:
    import pandas as pd

    args = parse(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: DSB2018 stage1_train not found at {root}; pass --root", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else REPO / "runs" / time.strftime("dsb-instance-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        print(f"error: --out {out} exists and is not empty; choose a new folder", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}; runs -> {out}", flush=True)
    rows = {}
    if args.only != "instance":
        wall = run(train_command(args, "baseline", out / "binary"))
        binary = json.loads((out / "binary" / "metrics.json").read_text())
        run(score_baseline_command(args, out / "binary", out / "binary-instances"))
        table = pd.read_csv(out / "binary-instances" / "instance_metrics.csv")
        m = {c: float(table[c].iloc[-1]) for c in COLUMNS}
        m.update(epochs_trained=binary["epochs_trained"], train_seconds=binary["train_seconds"],
                 n_images=len(table) - 1)
        rows["binary U-Net + connected components"] = (m, wall)   # the baseline runs first: its Dice comes early
    if args.only != "baseline":
        wall = run(train_command(args, "instance", out / "instance"))
        m = json.loads((out / "instance" / "metrics.json").read_text())
        rows["3-class U-Net + watershed"] = (m, wall)
    print()
    print(f"DSB2018 stage1_train, held-out test split (seed {args.seed}, 20 %), every image scored at its original "
          f"size; U-Net trained on {args.patch}x{args.patch} patches at native resolution, {args.minutes:g} min each, "
          f"recipe {args.recipe}{', test-time flips' if uses_tta(args) else ''}")
    print("| model | epochs | train s | run wall s | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(COLUMNS))
    for name, (m, wall) in rows.items():
        print(f"| {name} | {m['epochs_trained']} | {m['train_seconds']:.0f} | {wall:.0f} | "
              + " | ".join(f"{m[c]:.4f}" for c in COLUMNS) + " |")
    if args.only != "instance":
        per_image = pd.read_csv(out / "binary" / "test_metrics.csv")
        worst = per_image.sort_values("dice").head(max(1, len(per_image) // 10))
        print(f"\nBinary U-Net at native resolution: mean Dice {binary['dice']:.4f}, IoU {binary['iou']:.4f} "
              f"({len(per_image)} test images, original resolution); worst decile:")
        for r in worst.itertuples():
            print(f"  {r.image[:16]}  {r.width}x{r.height}  Dice {r.dice:.4f}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
