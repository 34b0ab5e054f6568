"""Speed and memory figures that the tests used to assert as bounds (a test asserts values; figures live here).

    python benchmarks/bounds.py                  # all figures, one JSON line each
    python benchmarks/bounds.py --only memory    # the three memory peaks only (no timing)

Each line names the measurement, its figure, and a ratio that does not depend on the machine where
one exists (memory peaks against the arrays the code must hold):

* ``instance_metrics``: seconds for :func:`Functions.metrics.instance.instance_metrics` on a 512x512
  image of 1024 objects, every one shifted by a pixel (median of 3; was asserted < 2 s);
* ``augmentation``: images per second of ``Augmenter.preset("default")`` on 128x128x1 with OpenCV on one
  thread (was asserted >= 500);
* ``cli_bad_input``: wall and CPU seconds of ``python -m Functions evaluate --run <missing>``, which must
  answer without importing a backend (was asserted < 5 CPU-seconds);
* ``patches_from_memmaps``: the ``tracemalloc`` peak while cutting 24 patches of 64x64 from six 600x500
  images kept as memory maps, against one decoded image (was asserted < 1/3);
* ``load_arrays``: the peak while loading 48 images of 96x96, against the arrays kept (was asserted < 1.4;
  a loader that stacks a list would approach 2);
* ``sliding_window``: the peak of a 4000x3000 uint8 prediction in 256 tiles, against its two float32
  accumulators (was asserted below the accumulators + 40 tile batches, about 1.8).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

CODE = Path(__file__).resolve().parents[1] / "Code"


def _emit(**row) -> None:
    print(json.dumps(row), flush=True)


def _peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write_pairs(root: Path, sizes) -> Path:
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (h, w) in enumerate(sizes):
        rng = np.random.default_rng(k)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:h // 2, w // 4:w // 2] = 255
        cv2.imwrite(str(root / "images" / f"c{k:03d}.png"), rng.integers(0, 255, (h, w), dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"c{k:03d}.png"), mask)
    return root


def instance_metrics_seconds() -> None:
    from Functions.metrics.instance import instance_metrics

    square = np.zeros((16, 16), np.int32)
    square[1:15, 1:15] = 1                             # a 14x14 object in each 16x16 cell of a 32x32 grid
    t = np.kron(np.arange(1, 32 * 32 + 1, dtype=np.int32).reshape(32, 32), np.ones((16, 16), np.int32))
    t *= np.tile(square, (32, 32))
    k = int(t.max())
    p = np.roll(t, 1, axis=1)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        instance_metrics(t, p)
        times.append(time.perf_counter() - start)
    _emit(measure="instance_metrics", objects=k, seconds=round(statistics.median(times), 3))


def augmentation_rate() -> None:
    import cv2

    from Functions.data.augmentation import Augmenter

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rng = np.random.default_rng(0)
        image = rng.random((128, 128, 1), dtype=np.float32)
        mask = (rng.random((128, 128)) < 0.3).astype(np.uint8)
        aug = Augmenter.preset("default")
        n = 1000
        start = time.perf_counter()
        for _ in range(n):
            aug(image, mask, rng)
        rate = n / (time.perf_counter() - start)
    finally:
        cv2.setNumThreads(threads)
    _emit(measure="augmentation", preset="default", size=128, images_per_second=round(rate))


def cli_bad_input_seconds() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(CODE), os.environ.get("PYTHONPATH")]))}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "Functions", "evaluate", "--run", str(Path(tmp) / "none")],
                              capture_output=True, text=True, env=env, timeout=300)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    _emit(measure="cli_bad_input", returncode=proc.returncode, wall_seconds=round(wall, 2),
          cpu_seconds=round(cpu, 2))


def patches_from_memmaps() -> None:
    from Functions.data.discovery import find_samples
    from Functions.data.native import load_native
    from Functions.data.patches import patch_dataset

    with tempfile.TemporaryDirectory() as tmp:
        samples = find_samples(_write_pairs(Path(tmp) / "d", [(600, 500)] * 6))
        data = load_native(samples, channels=1, max_memory="1M", cache_dir=Path(tmp) / "cache")
        ds = patch_dataset(data.images, data.masks, 64, batch_size=4, patches_per_epoch=24, seed=0)
        _, peak = _peak(lambda: [ds[b] and None for b in range(len(ds))])   # one batch held at a time
    one_image = 600 * 500 * 5
    _emit(measure="patches_from_memmaps", in_memory=data.in_memory, peak_mb=round(peak / 2**20, 2),
          data_set_mb=round(data.nbytes / 2**20, 2), peak_per_decoded_image=round(peak / one_image, 3))


def load_arrays_peak() -> None:
    from Functions.data.discovery import find_samples
    from Functions.data.pipeline import load_arrays

    with tempfile.TemporaryDirectory() as tmp:
        samples = find_samples(_write_pairs(Path(tmp), [(96, 96)] * 48))
        (x, y), peak = _peak(lambda: load_arrays(samples, image_size=96, workers=2))
    kept = x.nbytes + y.nbytes
    _emit(measure="load_arrays", peak_mb=round(peak / 2**20, 2), kept_mb=round(kept / 2**20, 2),
          peak_per_kept=round(peak / kept, 2))


def sliding_window_peak() -> None:
    from Functions.inference.sliding_window import sliding_window_predict

    image = np.zeros((4000, 3000, 1), np.uint8)
    image[::7] = 200
    _, peak = _peak(lambda: sliding_window_predict(lambda b: b * (1 / 255), image, 256, overlap=0.5, batch_size=8))
    accumulators = 2 * 4000 * 3000 * 4
    _emit(measure="sliding_window", peak_mb=round(peak / 2**20, 1), accumulators_mb=round(accumulators / 2**20, 1),
          peak_per_accumulators=round(peak / accumulators, 2))


MEASURES = {"instance_metrics": instance_metrics_seconds, "augmentation": augmentation_rate,
            "cli_bad_input": cli_bad_input_seconds, "patches_from_memmaps": patches_from_memmaps,
            "load_arrays": load_arrays_peak, "sliding_window": sliding_window_peak}
MEMORY = ("patches_from_memmaps", "load_arrays", "sliding_window")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("memory", *MEASURES), help="one measurement, or 'memory' for the three peaks")
    args = p.parse_args(argv)
    names = MEMORY if args.only == "memory" else [args.only] if args.only else list(MEASURES)
    for name in names:
        MEASURES[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
