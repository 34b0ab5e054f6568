"""Which way of running the U-Net train step is fastest on this machine's backend.

    python benchmarks/cpu_paths.py                       # U-Net 16/4 at 128x128x1, batch 8
    python benchmarks/cpu_paths.py --variants tutorial,default,default_xla --repeats 4

Variants (all the same network, trained on the same synthetic batches):

* ``tutorial``: :func:`Functions.benchmark.plain_unet` compiled with
  ``compile(optimizer="adam", loss="binary_crossentropy")``, NumPy arrays to ``fit``;
* ``tutorial_xla``: the same with ``jit_compile=True``;
* ``default``: what ``train`` does (:func:`Functions.training.compile_model`
  with the :class:`~Functions.training.TrainConfig` defaults, batches from
  :func:`Functions.pipeline.make_batches` with the default augmentation);
* ``default_xla``: the same with ``jit_compile=True``;
* ``default_bf16``: the default path built under ``mixed_bfloat16``.

Every round trains each variant for ``--steps`` batches back to back, so a
change in machine load hits all of them; the table gives medians over the
rounds of images per wall-clock second and per CPU-second of this process
(the second does not depend on how much of the machine other programs take).
The first round (tracing, XLA compilation) is not timed; its wall time is
the ``startup s`` column.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

VARIANTS = ("tutorial", "tutorial_xla", "default", "default_xla", "default_bf16")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from Functions.apps.benchmark import StepClock, compile_like_tutorials, device_name, plain_unet, synthetic_data
    from Functions.data.augmentation import get_augmenter
    from Functions.models import build_model
    from Functions.data.pipeline import make_batches
    from Functions.engine.segmentation import TrainConfig, compile_model

    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    size, batch = args.image_size, args.batch_size
    x, y = synthetic_data((args.steps + 1) * batch, size, 1, seed=0)
    y_float = y.astype(np.float32)

    def make(name):
        keras.utils.set_random_seed(0)
        if name.startswith("tutorial"):
            model = plain_unet((size, size, 1))
            if name == "tutorial":
                compile_like_tutorials(model)
            else:
                model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
            return model, dict(x=x, y=y_float, batch_size=batch)
        config = TrainConfig(jit_compile=True if name == "default_xla" else "auto")
        policy = keras.mixed_precision.global_policy()
        if name == "default_bf16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            model = build_model("unet", input_shape=(size, size, 1), num_classes=1)
        finally:
            keras.mixed_precision.set_global_policy(policy)
        compile_model(model, config)
        augmenter = get_augmenter(config.augment) if config.augment else None
        data = make_batches(x, y, batch, shuffle=True, augmenter=augmenter, workers=config.workers)
        return model, dict(x=data)

    runs = {name: make(name) for name in names}
    clock = StepClock()
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    startup = {}
    for round_ in range(args.repeats + 1):
        for name, (model, data) in runs.items():
            t0 = time.perf_counter()
            model.fit(**data, epochs=1, verbose=0, shuffle=False, callbacks=[clock.callback])
            if round_ == 0:
                startup[name] = time.perf_counter() - t0
            else:
                wall[name].append(clock.images_per_second(batch))
                cpu[name].append(clock.images_per_cpu_second(batch))
        if round_:
            print(f"round {round_}: " + ", ".join(f"{n} {wall[n][-1]:.2f}" for n in names) + " img/s",
                  file=sys.stderr, flush=True)
    base = statistics.median(cpu[names[0]])
    lines = [f"{keras.backend.backend()} on {device_name()}; U-Net 16/4, {size}x{size}x1, batch {batch}; "
             f"{args.repeats} rounds of {args.steps} steps; load average {os.getloadavg()[0]:.1f}", "",
             f"| variant | img/s | img/CPU-s | vs {names[0]} (CPU-s) | startup s |", "|---|---:|---:|---:|---:|"]
    for n in names:
        w, c = statistics.median(wall[n]), statistics.median(cpu[n])
        lines.append(f"| {n} | {w:.2f} | {c:.2f} | {c / base:.2f}x | {startup[n]:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
