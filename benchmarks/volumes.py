"""3-D figures for the README: training on the volumetric sample, and sliding-window memory on a CT-sized volume.

    python benchmarks/volumes.py train                 # `python -m Functions train --dims 3` with its defaults
    python benchmarks/volumes.py memory                # peak memory of 3-D sliding windows on 300x512x512
    python benchmarks/volumes.py memory --shape 150 256 256 --batch-sizes 1 4

``train`` runs the command line exactly as a learner would (a subprocess, the
offline sample ``Data/sample/volumes``, every default) and prints the wall
time, the CPU time of the process (user + system: what the run cost the
machine, whatever else shares it), and the test Dice, IoU, HD95 and ASSD (mm)
from the run's ``metrics.json``.  The target is a test Dice of at least 0.85
within 5 CPU-minutes.

``memory`` runs, in a fresh subprocess per setting, a small 3-D U-Net
(``depth=2, base_filters=4``) over a float32 volume of ``--shape`` (D H W)
with :func:`Functions.inference.sliding_window.sliding_window_predict`
(patch ``--patch``, overlap 0.5) and reports the process's peak resident
memory (MiB) before the volume exists (the model and the framework), after
the sliding window, the three whole-volume arrays the method must hold
(input, probability sum, weight sum: ``3 x D x H x W x 4`` bytes), and what
is left: the tile batch.  Doubling the tile batch should move only the last
column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(extra: list[str]) -> int:
    out = Path(tempfile.mkdtemp(prefix="vol-bench-")) / "run"
    cmd = [sys.executable, "-m", "Functions", "train", "--dims", "3", "--out", str(out), *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.run(cmd, cwd=REPO)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    if proc.returncode != 0:
        print(f"train failed with exit status {proc.returncode}")
        return proc.returncode
    m = json.loads((out / "metrics.json").read_text())
    load = os.getloadavg()[0]
    print(f"\nwall {wall:.0f} s, CPU {cpu:.0f} s ({cpu / 60:.1f} CPU-min) on {os.cpu_count()} cores, "
          f"load average {load:.1f} at the end; {m['epochs_trained']} epochs, {m['train_seconds']:.0f} s training")
    print(f"test ({m['n_images']} volumes): Dice {m['dice']:.4f}  IoU {m['iou']:.4f}  HD95 {m['hd95']:.2f} mm  "
          f"ASSD {m['assd']:.2f} mm; peak RSS {m['peak_rss_mb']:.0f} MiB; run folder {out}")
    return 0


def _memory_child(shape, patch, batch_size) -> None:
    """Runs in a subprocess: prints one JSON line with the measurements."""
    import numpy as np

    from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict
    from Functions.models import build_model

    model = build_model("unet3d", (*patch, 1), 1, depth=2, base_filters=4)
    predict = keras_predict_fn(model)
    predict(np.zeros((batch_size, *patch, 1), np.float32))                 # warm-up: graph traced, buffers made
    before = _peak_mib()
    volume = np.random.default_rng(0).normal(size=(*shape, 1)).astype(np.float32)
    t0 = time.perf_counter()
    probs = sliding_window_predict(predict, volume, patch, overlap=0.5, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    after = _peak_mib()
    arrays = 3 * volume.nbytes / 2**20                                       # input + probability sum + weights
    print(json.dumps({"shape": list(shape), "patch": list(patch), "batch_size": batch_size, "before": before,
                      "after": after, "arrays": arrays, "output_shape": list(probs.shape), "seconds": seconds}))


def memory(shape, patch, batch_sizes) -> int:
    print(f"3-D sliding window, unet3d depth 2 / 4 filters, volume {'x'.join(map(str, shape))}, "
          f"patch {'x'.join(map(str, patch))}, overlap 0.5")
    print(f"{'tile batch':>10} {'before MiB':>11} {'peak MiB':>9} {'3 arrays MiB':>13} {'tiles etc. MiB':>15} {'s':>6}")
    for b in batch_sizes:
        code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import volumes; "
                f"volumes._memory_child({tuple(shape)!r}, {tuple(patch)!r}, {b})")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-2000:])
            return proc.returncode or 1
        r = json.loads(lines[-1])
        rest = r["after"] - r["before"] - r["arrays"]
        print(f"{b:>10} {r['before']:>11.0f} {r['after']:>9.0f} {r['arrays']:>13.0f} {rest:>15.0f} "
              f"{r['seconds']:>6.0f}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train", help="train --dims 3 with its defaults on the sample")
    t.add_argument("extra", nargs="*", help="more train flags (after --)")
    m = sub.add_parser("memory", help="peak memory of 3-D sliding-window inference")
    m.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("D", "H", "W"))
    m.add_argument("--patch", type=int, nargs=3, default=(64, 128, 128), metavar=("D", "H", "W"))
    m.add_argument("--batch-sizes", type=int, nargs="+", default=(1, 4))
    args = p.parse_args(argv)
    if args.what == "train":
        return train(args.extra)
    return memory(args.shape, args.patch, args.batch_sizes)


if __name__ == "__main__":
    sys.exit(main())
