"""How fast the models train and predict, against a peer baseline and this machine's limit.

:func:`run_benchmark` measures, for each segmentation model and in ONE process:

* ``parameters`` and ``gflop_per_image``: forward FLOPs counted from the
  layers (:func:`Functions.models.flops.count_flops`); a training step costs
  about three forward passes (forward, gradient with respect to the
  activations, gradient with respect to the weights), so
  ``train_gflops = 3 * gflop_per_image * train_images_per_second``;
* ``train_images_per_second``: the path ``python -m Functions train`` takes
  by default - :func:`Functions.training.compile_model` with the
  :class:`~Functions.training.TrainConfig` defaults (loss, metrics, XLA
  choice) fed by :func:`Functions.pipeline.make_batches` with the default
  augmentation;
* ``baseline_train_images_per_second``: the peer baseline, the same network
  written the way Keras tutorials write it (:func:`plain_unet` for ``unet``;
  the registry's network for the others), compiled with
  ``model.compile(optimizer="adam", loss="binary_crossentropy")`` and fed
  NumPy arrays, defaults otherwise;
* ``predict_images_per_second``: our prediction path
  (:func:`Functions.inference.tta.predict_probabilities`) on the default
  model; ``baseline_predict_images_per_second``: ``model.predict`` on the
  tutorial baseline; ``keras_predict_images_per_second``: ``model.predict``
  on our own model; ``predict_vs_baseline`` and ``predict_vs_keras``: the
  ratios (>= 1 means our path is at least as fast).  In every round the three
  are called in turn ``predict_repeats`` times and the best call of each
  counts (another process can only slow a call down);
* ``jit_compile`` and ``jit_probe``: the XLA choice ``train`` makes with
  ``jit_compile="auto"`` (:mod:`Functions.engine.jit`) and the two figures
  it was made from (seconds per training step with and without XLA);
* ``pipeline_images_per_second``: batches per second the input pipeline
  alone delivers, with the training augmentation
  (``pipeline_plain_images_per_second``: without), read with as many
  threads as training uses;
* ``roofline_gflops``: the machine's fp32 matrix-multiply rate, the best of
  NumPy's BLAS and the Keras backend on ``roofline_size`` square matrices;
* ``peak_rss_mb``: the process's peak resident memory so far;
* ``versions`` (Python, NumPy, Keras and the backends) and ``device``.

The machine may be shared, so absolute rates drift.  Ratios are made
robust by interleaving: every repeat measures the roofline, the baseline
and the default path back to back, and each figure is the median over
repeats.  The first round (graph tracing, XLA compilation) is never timed;
its wall time is reported as ``*_startup_seconds``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from Functions.base.runtime import device_name, peak_rss_mb

#: A training step costs about this many forward passes.
TRAIN_FLOP_FACTOR = 3

#: Keys every result carries (the ``--json`` contract).
REQUIRED_KEYS = ("model", "train_images_per_second", "predict_images_per_second", "pipeline_images_per_second",
                 "gflop_per_image", "roofline_gflops", "baseline_train_images_per_second")


@dataclass
class BenchmarkSettings:
    """What to measure and how long (every field has a ``benchmark`` CLI flag)."""

    image_size: int = 128
    batch_size: int = 8
    channels: int = 1
    steps: int = 6                     # timed training steps per repeat (one more is run and not timed)
    repeats: int = 3                   # interleaved rounds after the untimed warm-up round
    predict_batches: int = 4           # batches per timed predict call
    predict_repeats: int = 3           # interleaved predict calls per path and round; the best counts
    pipeline_epochs: int = 2           # passes over the pipeline's batches per timing (at least)
    pipeline_seconds: float = 1.0      # ... and more passes until this long has gone by
    roofline_size: int = 2048          # square matrix size for the matmul roofline
    baseline: bool = True              # also measure the tutorial-style peer baseline
    mixed_precision: bool = False      # build the default-path model under mixed precision
    model_options: dict = field(default_factory=dict)
    seed: int = 0
    jit_reprobe: bool = False          # measure XLA against the plain graph again, even when a choice is cached

    def validate(self) -> None:
        from Functions.base.errors import UserError

        for name, low in (("image_size", 16), ("batch_size", 1), ("steps", 2), ("repeats", 1),
                          ("predict_batches", 1), ("predict_repeats", 1), ("pipeline_epochs", 1),
                          ("roofline_size", 16)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise UserError(f"--{name.replace('_', '-')} must be an integer of at least {low}, got {value!r}")
        if self.channels not in (1, 3):
            raise UserError(f"--channels must be 1 or 3, got {self.channels}")


# ----------------------------------------------------------------------------- machine
def library_versions() -> dict:
    """Versions of Python, this package, NumPy, Keras and every backend installed (``None`` when absent)."""
    import platform

    out = {"python": platform.python_version(), "medical-image-processing": _package_version("medical-image-processing")}
    for name in ("numpy", "keras", "tensorflow", "jax", "jaxlib", "torch"):
        out[name] = _package_version(name)
    return out


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None






def matmul_gflops(size: int = 2048, repeats: int = 3, library: str = "numpy") -> float:
    """Median fp32 ``size x size`` matrix-multiply rate in GFLOP/s (``2 * size**3`` FLOPs per product).

    ``library``: ``"numpy"`` (the BLAS NumPy links) or ``"backend"`` (``keras.ops.matmul``
    on the active Keras backend and its default device).  One untimed call warms up.
    """
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    if library == "numpy":
        def product():
            return float((a @ b)[0, 0])
    elif library == "backend":
        import keras

        ta, tb = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)

        def product():   # reading one element waits for the product without copying it back
            return float(keras.ops.convert_to_numpy(keras.ops.matmul(ta, tb)[0, 0]))
    else:
        raise ValueError(f"library must be 'numpy' or 'backend', got {library!r}")
    product()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        product()
        times.append(time.perf_counter() - t0)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def roofline_gflops(size: int = 2048, repeats: int = 3) -> dict:
    """``{"numpy": GFLOP/s, "backend": GFLOP/s, "roofline": the larger}`` for fp32 matrix multiplication."""
    out = {"numpy": matmul_gflops(size, repeats, "numpy"), "backend": matmul_gflops(size, repeats, "backend")}
    out["roofline"] = max(out.values())
    return out


# ----------------------------------------------------------------------------- peer baseline
def plain_unet(input_shape: tuple = (128, 128, 1), base_filters: int = 16, depth: int = 4,
               batch_norm: bool = True, num_classes: int = 1):
    """A U-Net written as Keras tutorials write it (nothing from this package).

    Per level two 3x3 Conv2D (+ BatchNormalization) + ReLU, 2x2 max pooling
    down; 2x2 stride-2 Conv2DTranspose up, concatenation with the encoder
    features, two more convolutions; a 1x1 sigmoid convolution at the end.
    The layer configuration matches :func:`Functions.models.build_unet` with
    the same arguments (same parameter count), so it is the like-for-like
    peer of our default U-Net.
    """
    import keras
    from keras import layers

    def conv_block(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm)(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input(shape=input_shape)
    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = conv_block(x, base_filters * 2**depth)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([skips[level], x])
        x = conv_block(x, base_filters * 2**level)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Conv2D(num_classes, 1, activation=activation)(x)
    return keras.Model(inputs, outputs, name="plain_unet")


def compile_like_tutorials(model):
    """``model.compile(optimizer="adam", loss="binary_crossentropy")`` - every other setting left at its default."""
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


# ----------------------------------------------------------------------------- data
def synthetic_data(n: int, image_size: int = 128, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, S, S, C) float32`` in [0, 1] with bright discs, and their masks ``(n, S, S, 1) uint8``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:image_size, :image_size].astype(np.float32)
    masks = np.zeros((n, image_size, image_size), np.uint8)
    for i in range(n):
        for _ in range(int(rng.integers(3, 9))):
            cy, cx = rng.uniform(0, image_size, 2)
            r = rng.uniform(image_size * 0.03, image_size * 0.1)
            masks[i] |= ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
    images = 0.2 + 0.6 * masks[..., None] + rng.normal(0.0, 0.08, (n, image_size, image_size, channels))
    return np.clip(images, 0, 1).astype(np.float32), masks[..., None]


# ----------------------------------------------------------------------------- timing
class StepClock:
    """Wall-clock and process CPU time at the end of every training batch of the last ``fit``.

    ``clock.callback`` is the Keras callback to pass to ``fit``.  CPU time is
    summed over all threads of this process (``time.process_time``), so
    images per CPU-second measure how much work a path needs, independent of
    how much of the machine other processes take.
    """

    def __init__(self):
        import keras

        clock = self

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                clock.times, clock.cpu_times = [], []

            def on_train_batch_end(self, batch, logs=None):
                clock.times.append(time.perf_counter())
                clock.cpu_times.append(time.process_time())

        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.callback = _Callback()

    def images_per_second(self, batch_size: int) -> float:
        """Steady-state rate: batches after the first, so iterator start-up is not counted."""
        return self._rate(self.times, batch_size)

    def images_per_cpu_second(self, batch_size: int) -> float:
        """Images per second of CPU time of this process, over the same batches."""
        return self._rate(self.cpu_times, batch_size)

    @staticmethod
    def _rate(times: list[float], batch_size: int) -> float:
        if len(times) < 2:
            raise RuntimeError("need at least two timed batches; raise --steps")
        return (len(times) - 1) * batch_size / max(times[-1] - times[0], 1e-9)


def time_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pipeline_images_per_second(batches, epochs: int = 1, workers: int = 1, min_seconds: float = 1.0) -> float:
    """Images per second a batch source (``len`` + ``__getitem__``, e.g. a PyDataset) delivers.

    ``workers`` threads fetch batches concurrently, as Keras does for a
    PyDataset with ``workers > 1``; ``on_epoch_end`` is called between passes.
    At least ``epochs`` passes are timed, and more until ``min_seconds`` have
    gone by, so that a fast pipeline is not timed on a few microseconds.
    """
    n_images, passes = 0, 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while passes < epochs or time.perf_counter() - t0 < min_seconds:
            for x, _y in pool.map(batches.__getitem__, range(len(batches))):
                n_images += len(x)
            if hasattr(batches, "on_epoch_end"):
                batches.on_epoch_end()
            passes += 1
    return n_images / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- one model
def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def default_train_config(name: str, settings: BenchmarkSettings):
    """The :class:`TrainConfig` ``train`` would use for ``--model name`` at these sizes (everything else default)."""
    from Functions.engine.segmentation import TrainConfig

    return TrainConfig(model=name, image_size=settings.image_size, batch_size=settings.batch_size,
                       channels=settings.channels, model_options=dict(settings.model_options),
                       mixed_precision=settings.mixed_precision, seed=settings.seed)


def _jit_choice(model, config, batch: int, settings: BenchmarkSettings, log) -> dict | None:
    """The ``jit_compile="auto"`` decision for this model (:mod:`Functions.engine.jit`) with both figures.

    ``None`` where there is nothing to measure: a backend with one compiled path
    (JAX: XLA; PyTorch: eager), ``MIP_JIT_PROBE=0``, or a fixed ``jit_compile``.
    """
    import keras

    from Functions.engine import jit
    from Functions.engine.segmentation import compile_model

    if config.jit_compile != "auto" or keras.backend.backend() != "tensorflow" or not jit.probe_enabled():
        return None

    def compile_fn(copy, flag):
        compile_model(copy, replace(config, jit_compile=bool(flag)))

    key = jit.probe_key(model, batch)
    result = jit.decide(key, lambda flag: jit.measure_step_seconds(model, compile_fn, batch, flag),
                        refresh=settings.jit_reprobe)
    log(f"  {model.name}: {jit.describe(result)}")
    return result


def benchmark_model(name: str = "unet", settings: BenchmarkSettings | None = None,
                    log: Callable[[str], None] | None = None) -> dict:
    """Measure one registered segmentation model (see the module docstring); returns a flat dict."""
    import keras

    from Functions.data.augmentation import get_augmenter
    from Functions.models import build_model
    from Functions.models.flops import count_flops
    from Functions.models.registry import offline_options
    from Functions.data.pipeline import make_batches
    from Functions.engine.segmentation import compile_model, resolve_jit_compile

    settings = settings or BenchmarkSettings()
    settings.validate()
    log = log or (lambda message: None)
    config = default_train_config(name, settings)
    size, batch, channels = settings.image_size, settings.batch_size, settings.channels
    shape = (size, size, channels)
    options = {**offline_options(name), **settings.model_options}

    keras.utils.set_random_seed(settings.seed)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        if settings.mixed_precision:
            from Functions.base.runtime import set_precision

            set_precision(True)
        model = build_model(name, input_shape=shape, num_classes=1, **options)
        jit_probe = _jit_choice(model, config, batch, settings, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if jit_probe is not None:                         # what train's jit_compile="auto" would choose
        config = replace(config, jit_compile=jit_probe["jit"])
    compile_model(model, config)
    forward_flops = count_flops(model)
    n_out = len(model.outputs)

    n_train = (settings.steps + 1) * batch           # one untimed batch starts the clock
    x, y = synthetic_data(n_train, size, channels, seed=settings.seed)
    augmenter = get_augmenter(config.augment) if config.augment else None
    train_batches = make_batches(x, y, batch, shuffle=True, augmenter=augmenter, seed=config.seed,
                                 num_outputs=n_out, workers=config.workers)
    x_pred = x[: batch * settings.predict_batches]

    baseline = None
    if settings.baseline:
        keras.utils.set_random_seed(settings.seed)
        if name == "unet":
            unet_options = {k: v for k, v in options.items() if k in ("base_filters", "depth", "batch_norm")}
            baseline = plain_unet(shape, **unet_options)
        else:
            baseline = build_model(name, input_shape=shape, num_classes=1, **options)
            from Functions.models import single_output

            baseline = single_output(baseline)
        compile_like_tutorials(baseline)
    y_float = y.astype(np.float32)

    clock = StepClock()
    samples: dict[str, list[float]] = {k: [] for k in ("train", "baseline", "predict", "baseline_predict",
                                                        "keras_predict",
                                                        "train_cpu", "baseline_cpu",
                                                        "roofline", "roofline_numpy", "roofline_backend")}
    startup = {}
    from Functions.inference.tta import predict_probabilities

    for round_ in range(settings.repeats + 1):
        timed = round_ > 0
        # roofline, then the baseline, then the default path: back to back, so load changes hit all three
        if timed:
            roof = roofline_gflops(settings.roofline_size, repeats=2)
            samples["roofline"].append(roof["roofline"])
            samples["roofline_numpy"].append(roof["numpy"])
            samples["roofline_backend"].append(roof["backend"])
        if baseline is not None:
            seconds = time_call(lambda: baseline.fit(x, y_float, batch_size=batch, epochs=1, verbose=0,
                                                     callbacks=[clock.callback]))
            if timed:
                samples["baseline"].append(clock.images_per_second(batch))
                samples["baseline_cpu"].append(clock.images_per_cpu_second(batch))
            else:
                startup["baseline"] = seconds
                baseline.predict(x_pred, batch_size=batch, verbose=0)
        seconds = time_call(lambda: model.fit(train_batches, epochs=1, verbose=0, shuffle=False,
                                              callbacks=[clock.callback]))
        if timed:
            samples["train"].append(clock.images_per_second(batch))
            samples["train_cpu"].append(clock.images_per_cpu_second(batch))
            # prediction: our path, model.predict on our model and on the baseline, interleaved
            # predict_repeats times; the best of each (other processes can only slow a call down)
            calls = {"predict": lambda: predict_probabilities(model, x_pred, batch_size=batch),
                     "keras_predict": lambda: model.predict(x_pred, batch_size=batch, verbose=0)}
            if baseline is not None:
                calls["baseline_predict"] = lambda: baseline.predict(x_pred, batch_size=batch, verbose=0)
            rates: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(settings.predict_repeats):
                for key, call in calls.items():
                    rates[key].append(len(x_pred) / time_call(call))
            for key, values in rates.items():
                samples[key].append(max(values))
            log(f"  {name} round {round_}: default {samples['train'][-1]:.2f} img/s"
                + (f", baseline {samples['baseline'][-1]:.2f} img/s" if baseline is not None else "")
                + f", roofline {samples['roofline'][-1]:.1f} GFLOP/s; predict {samples['predict'][-1]:.1f} img/s"
                + (f" (baseline model.predict {samples['baseline_predict'][-1]:.1f})" if baseline is not None
                   else ""))
        else:
            startup["train"] = seconds
            predict_probabilities(model, x_pred, batch_size=batch)
            model.predict(x_pred, batch_size=batch, verbose=0)

    # the input pipeline alone: with the training augmentation and without any
    pipe_aug = make_batches(x, y, batch, shuffle=True, augmenter=augmenter or get_augmenter("light"),
                            seed=config.seed, num_outputs=n_out, workers=config.workers)
    pipe_plain = make_batches(x, y, batch, shuffle=True, seed=config.seed, num_outputs=n_out,
                              workers=config.workers)
    workers = max(1, config.workers)
    pipeline = pipeline_images_per_second(pipe_aug, settings.pipeline_epochs, workers, settings.pipeline_seconds)
    pipeline_plain = pipeline_images_per_second(pipe_plain, settings.pipeline_epochs, workers,
                                                settings.pipeline_seconds)

    train_ips = _median(samples["train"])
    roofline = _median(samples["roofline"])
    gflop = forward_flops / 1e9
    result = {
        "model": name,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "precision": "mixed" if settings.mixed_precision else "float32",
        "image_size": size,
        "batch_size": batch,
        "channels": channels,
        "parameters": int(model.count_params()),
        "gflop_per_image": gflop,
        "train_gflop_per_image": TRAIN_FLOP_FACTOR * gflop,
        "train_images_per_second": train_ips,
        "train_gflops": TRAIN_FLOP_FACTOR * gflop * train_ips,
        "predict_images_per_second": _median(samples["predict"]),
        "predict_gflops": gflop * _median(samples["predict"]),
        "keras_predict_images_per_second": _median(samples["keras_predict"]),
        "predict_vs_keras": _median(samples["predict"]) / _median(samples["keras_predict"]),
        "pipeline_images_per_second": pipeline,
        "pipeline_plain_images_per_second": pipeline_plain,
        "pipeline_augmentation": config.augment or "light",
        "roofline_gflops": roofline,
        "roofline_numpy_gflops": _median(samples["roofline_numpy"]),
        "roofline_backend_gflops": _median(samples["roofline_backend"]),
        "roofline_fraction": TRAIN_FLOP_FACTOR * gflop * train_ips / roofline,
        "roofline_images_per_second": roofline / (TRAIN_FLOP_FACTOR * gflop),
        "baseline_train_images_per_second": _median(samples["baseline"]) if baseline is not None else None,
        "train_images_per_cpu_second": _median(samples["train_cpu"]),
        "baseline_train_images_per_cpu_second": _median(samples["baseline_cpu"]) if baseline is not None else None,
        "baseline_predict_images_per_second": _median(samples["baseline_predict"]) if baseline is not None else None,
        "predict_vs_baseline": (_median(samples["predict"]) / _median(samples["baseline_predict"])
                                if baseline is not None else None),
        "speedup_vs_baseline": train_ips / _median(samples["baseline"]) if baseline is not None else None,
        "pipeline_over_train": pipeline / train_ips,
        "jit_compile": bool(model.jit_compile) if hasattr(model, "jit_compile") else bool(
            resolve_jit_compile(config.jit_compile)),
        "jit_probe": jit_probe,
        "predict_samples": samples["predict"],
        "baseline_predict_samples": samples["baseline_predict"],
        "versions": library_versions(),
        "train_startup_seconds": startup.get("train"),
        "baseline_startup_seconds": startup.get("baseline"),
        "repeats": settings.repeats,
        "steps": settings.steps,
        "train_samples": samples["train"],
        "baseline_samples": samples["baseline"],
        "roofline_samples": samples["roofline"],
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "peak_rss_mb": peak_rss_mb(),
    }
    del model, baseline
    keras.backend.clear_session()
    return result


# ----------------------------------------------------------------------------- many models + report
def run_benchmark(models: Sequence[str] = ("unet",), settings: BenchmarkSettings | None = None,
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """:func:`benchmark_model` for each name; a bad name raises :class:`UserError` before anything runs."""
    from Functions.base.errors import UserError
    from Functions.models.registry import SPECS

    settings = settings or BenchmarkSettings()
    settings.validate()
    for name in models:
        spec = SPECS.get(name)
        if spec is None or spec.task != "segmentation":
            valid = ", ".join(k for k, v in SPECS.items() if v.task == "segmentation")
            raise UserError(f"--model {name} is not a segmentation model; choose from: {valid}")
    return [benchmark_model(name, settings, log=log) for name in models]


_COLUMNS = (
    ("model", "model", "{}"),
    ("parameters", "parameters", "{:,}"),
    ("gflop_per_image", "GFLOP/img (fwd)", "{:.2f}"),
    ("train_images_per_second", "train img/s", "{:.2f}"),
    ("train_gflops", "train GFLOP/s", "{:.1f}"),
    ("roofline_fraction", "of roofline", "{:.0%}"),
    ("baseline_train_images_per_second", "baseline train img/s", "{:.2f}"),
    ("speedup_vs_baseline", "vs baseline", "{:.2f}x"),
    ("train_images_per_cpu_second", "train img/CPU-s", "{:.2f}"),
    ("baseline_train_images_per_cpu_second", "baseline img/CPU-s", "{:.2f}"),
    ("predict_images_per_second", "predict img/s", "{:.1f}"),
    ("baseline_predict_images_per_second", "baseline predict img/s", "{:.1f}"),
    ("predict_vs_baseline", "predict vs baseline", "{:.2f}x"),
    ("jit_compile", "XLA", "{}"),
    ("pipeline_images_per_second", "pipeline img/s (aug)", "{:.0f}"),
    ("pipeline_plain_images_per_second", "pipeline img/s (no aug)", "{:.0f}"),
    ("roofline_gflops", "roofline GFLOP/s", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:.0f}"),
)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(value)


def markdown_table(results: Sequence[dict]) -> str:
    """The results as a GitHub markdown table (one row per model)."""
    head = "| " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    rule = "|" + "|".join("---" if key == "model" else "---:" for key, _, _ in _COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(r.get(key), fmt) for key, _, fmt in _COLUMNS) + " |" for r in results]
    return "\n".join([head, rule, *rows])


def markdown_report(results: Sequence[dict], settings: BenchmarkSettings, command: str = "") -> str:
    """A short markdown page: the conditions, the table and how to read it."""
    first = results[0] if results else {}
    lines = [
        "# Benchmark",
        "",
        f"- command: `{command}`" if command else "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- device: {first.get('device', '?')}; backend {first.get('backend', '?')}; "
        f"precision {first.get('precision', 'float32')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items() if v),
        *(f"- {r['model']}: XLA {'on' if r.get('jit_compile') else 'off'}"
          + (f" (probe: {r['jit_probe'].get('xla_seconds') or float('nan'):.3g} s/step with XLA, "
             f"{r['jit_probe'].get('graph_seconds') or float('nan'):.3g} s/step without"
             f"{', cached' if r['jit_probe'].get('cached') else ''})" if r.get("jit_probe") else " (fixed rule)")
          + (f"; predict {r['predict_vs_baseline']:.2f}x the baseline's model.predict"
             if r.get("predict_vs_baseline") else "")
          for r in results),
        f"- input {settings.image_size}x{settings.image_size}x{settings.channels}, batch {settings.batch_size}, "
        f"{settings.repeats} interleaved repeats of {settings.steps} timed steps (medians)",
        f"- load average at the end: {first.get('load_average', float('nan')):.1f} "
        "(other processes share the CPU when this is above the core count; compare ratios, not absolute rates)",
        "",
        markdown_table(results),
        "",
        "Training GFLOP/s count 3 forward passes per training image.  The roofline is the machine's fp32 "
        "matrix-multiply rate measured in the same run; 'baseline' is the same network compiled "
        "the way tutorials do (`compile(optimizer=\"adam\", loss=\"binary_crossentropy\")`, NumPy arrays "
        "to `fit`).",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def write_report(results: Sequence[dict], settings: BenchmarkSettings, path: str | os.PathLike,
                 command: str = "") -> Path:
    """Write :func:`markdown_report` to ``path`` (folders are created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(results, settings, command))
    return path


def default_report_path(settings: BenchmarkSettings) -> Path:
    """``runs/benchmark-<backend>-<size>px[-mixed]-<date>-<time>.md``: a new file; tracked files are never touched.

    ``runs/`` of the repository (ignored by git), or of the current folder
    outside one.
    """
    import keras

    from Functions.base.paths import repo_root

    root = repo_root() or Path.cwd()
    precision = "-mixed" if settings.mixed_precision else ""
    stem = f"benchmark-{keras.backend.backend()}-{settings.image_size}px{precision}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = root / "runs" / f"{stem}.md"
    k = 1
    while path.exists():
        path = root / "runs" / f"{stem}-{k}.md"
        k += 1
    return path


def to_json_lines(results: Sequence[dict]) -> str:
    """One JSON object per line, per model."""
    return "\n".join(json.dumps(r, default=float) for r in results)
