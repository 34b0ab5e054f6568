"""Training a segmentation model end to end: the ``train`` main job.

:func:`train` takes a :class:`TrainConfig` and produces a run folder::

    run/
      config.json        every setting (data path, channels, normalisation...), so the run can be
                         repeated, resumed, evaluated and used by ``predict``
      split.json         which samples went to train / validation / test
      model.keras        the best model by ``--monitor`` (validation Dice by default)
      history.csv        one row per finished epoch: ``epoch``, losses and metrics, ``learning_rate``, ``seconds``
      progress.png       predictions on fixed validation images, redrawn every ``--progress-every`` epochs
      metrics.json       test metrics (per-image means) and their summary
      test_metrics.csv   one row of metrics per test image
      curves.png         loss and Dice per epoch
      predictions.png    image | truth | prediction | overlay on test images
      report.md          settings, data, metrics and figures, readable on GitHub
      backup/            resume state while training runs (deleted when the run completes)
      tensorboard/       with ``--tensorboard``

The loop itself (callbacks, resume, NaN guard, time budget, distribution, mixed
precision) is :func:`Functions.engine.fit.fit`; this module is the segmentation
:class:`SegmentationTask` on it.

Resuming (``train(resume_config(run_dir), resume=True)``, or ``python -m
Functions train --resume RUN_DIR``) restarts from the last epoch committed in
``backup/``: model and optimizer weights (with the learning rate and step
count), the history rows, the best value so far and the early-stopping /
learning-rate-plateau counters.  The shuffling and augmentation of epoch
``e`` depend only on ``(seed, e)``, so they continue as if uninterrupted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import write_json
from Functions.base.runtime import has_gpu, peak_rss_mb
from Functions.data.sources import resolve_samples, seeded_subset
from Functions.engine.config import Check, RunConfig
from Functions.engine.fit import Task, best_epoch, fit
from Functions.engine.fit import resume_config as resume_run_config


@dataclass
class TrainConfig(RunConfig):
    """Every setting of a segmentation run (the ``train`` flags map one to one).

    The shared fields (data, model, schedule, run folder, resume, distribution...) are those of
    :class:`~Functions.engine.config.RunConfig`; the defaults below are the segmentation ones.
    """

    normalization: str = "auto"        # "auto": dark_background for mixed brightfield/fluorescence data, else minmax
    augment: str | None = "light"      # a preset of Functions.data.augmentation (light: flips, 90-degree turns) or None
    monitor: str = "val_dice"
    lr_schedule: str = "cosine"        # "cosine": warm-up + cosine decay (Functions.engine.schedules); "constant"
    loss: str = "bce_dice"
    threshold: float = 0.5
    progress_every: int = 5            # progress.png every N epochs; 0 = off
    tta: bool = False                  # test metrics from the mean of the four flips (evaluate/predict --tta)

    MONITORS = ("dice", "iou", "mean_dice", "loss")

    def checks(self) -> list[Check]:
        return super().checks() + [
            (0 < self.threshold < 1, "threshold", f"must be between 0 and 1, got {self.threshold}"),
            (self.progress_every >= 0, "progress_every", f"must be 0 (off) or more, got {self.progress_every}"),
        ]


# ----------------------------------------------------------------------------- data
def prepare_data(config: TrainConfig, samples=None) -> dict:
    """Split and load the arrays: ``dict`` with ``train``/``val``/``test`` ``(images, masks, samples)``,
    ``channels``, ``n_samples`` and the ``normalization`` used."""
    from Functions.data.pipeline import infer_channels, load_arrays
    from Functions.data.splits import split_indices

    if samples is None:
        samples = resolve_samples(config.data, config.dataset, config.data_dir, sample="nuclei")
    samples = seeded_subset(list(samples), config.subset, config.seed)   # seeded: a rerun gets the same images
    if len(samples) < 3:
        raise UserError(f"only {len(samples)} sample(s) found; training needs at least 3 (train, validation, test)")
    labels = [s.label for s in samples]
    stratify = labels if len(set(labels)) > 1 and None not in labels else None
    idx = split_indices(len(samples), config.val_fraction, config.test_fraction, config.seed, stratify=stratify)
    channels = config.channels or infer_channels(samples)
    data = {"channels": channels, "n_samples": len(samples)}
    auto = config.normalization == "auto"
    for name, ids in zip(("train", "val", "test"), idx):
        subset = [samples[i] for i in ids]
        if not subset:
            data[name] = (None, None, [])
            continue
        x, y = load_arrays(subset, config.image_size, channels, "minmax" if auto else config.normalization,
                           config.clahe)
        data[name] = (x, y, subset)
    if data["train"][0] is None or data["val"][0] is None:
        raise UserError("the split left no training or validation images; lower --val-fraction/--test-fraction")
    data["normalization"] = resolve_normalization(data) if auto else config.normalization
    return data


def resolve_normalization(data: dict) -> str:
    """``--normalization auto``: pick the mode from the training split and apply it to every split in place.

    See :func:`Functions.data.preprocessing.choose_normalization`: a data set that
    mixes dark-on-light and light-on-dark objects (DSB2018's brightfield and
    fluorescence nuclei) gets ``"dark_background"``, anything else keeps
    ``"minmax"``.  Both are per-image and invariant to rescaling, so the
    minmax arrays loaded first convert exactly, without decoding again.
    """
    from Functions.data.preprocessing import choose_normalization, normalize

    x_tr, y_tr, _ = data["train"]
    mode = choose_normalization(x_tr, y_tr)
    if mode != "minmax":
        for name in ("train", "val", "test"):
            x = data[name][0]
            for i in range(0 if x is None else len(x)):
                x[i] = normalize(x[i], mode)
    return mode


# ----------------------------------------------------------------------------- model
def build(config: TrainConfig, input_shape: tuple[int, ...]):
    """The configured segmentation model for ``input_shape`` ``(H, W, C)``."""
    from Functions.models import build_model
    from Functions.models.registry import SPECS

    spec = SPECS.get(config.model)
    if spec is not None and spec.task != "segmentation":
        names = ", ".join(k for k, v in SPECS.items() if v.task == "segmentation")
        raise UserError(f"--model {config.model} is a classifier; `train` fits segmentation models: {names}")
    try:
        return build_model(config.model, input_shape=input_shape, num_classes=1, **config.model_options)
    except ValueError as exc:
        raise UserError(f"--model {config.model} at --image-size {config.image_size}: {exc}") from None


def compile_model(model, config: TrainConfig):
    """Compile with the configured loss (averaged over deep-supervision heads), Adam and streaming metrics."""
    import keras

    from Functions.engine.distribute import jit_allowed
    from Functions.losses import get_loss
    from Functions.metrics.streaming import segmentation_metrics

    num_classes = int(model.outputs[-1].shape[-1])
    n_out = len(model.outputs)
    try:
        loss = get_loss(config.loss)
    except ValueError as exc:
        raise UserError(f"{exc}", field="loss") from None
    metrics = segmentation_metrics(num_classes=num_classes, threshold=config.threshold)
    if n_out > 1:
        loss = [get_loss(config.loss) for _ in range(n_out)]
        metrics = [[] for _ in range(n_out - 1)] + [metrics]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=loss,
        loss_weights=[1.0 / n_out] * n_out if n_out > 1 else None,
        weighted_metrics=metrics,    # same names; they honour sample weights (--distribute's zero-weight padding)
        jit_compile=resolve_jit_compile(config.jit_compile) and jit_allowed() and not config.run_eagerly,
        run_eagerly=config.run_eagerly,
    )
    return model


def resolve_jit_compile(setting: str | bool) -> bool:
    """Whether to compile the train step with XLA; ``"auto"`` picks what measured fastest.

    * JAX: always (JAX has no other graph mode).
    * TensorFlow: XLA on a GPU only.  On a CPU the plain TensorFlow graph runs
      the convolutions through oneDNN, which trained the U-Net 2.2x faster
      than XLA's CPU kernels (27.8 against 12.5 images/s, and XLA's compile
      adds tens of seconds); see ``benchmarks/README.md``.
    * PyTorch: eager (``torch.compile`` start-up outweighs its gain on short runs).
    """
    if setting != "auto":
        return bool(setting)
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "tensorflow":
        return has_gpu()
    return False


def monitor_name(model, monitor: str) -> str:
    """Metric names gain the output's name when a model has several outputs (deep supervision)."""
    if len(model.outputs) <= 1 or not monitor.startswith("val_") or monitor == "val_loss":
        return monitor
    last = model.output_names[-1] if hasattr(model, "output_names") else model.outputs[-1].name.split("/")[0]
    return f"val_{last}_{monitor[4:]}"


# ----------------------------------------------------------------------------- the task
class SegmentationTask(Task):
    """Pixel-wise segmentation for :func:`Functions.engine.fit.fit`.

    The methods below are the places where segmentation differs from other
    tasks: data (:func:`prepare_data`), model (:func:`build`,
    :func:`compile_model`), batches, the progress figure and the scoring of
    the finished model (:func:`finish_run`).
    """

    command = "train"
    config_class = TrainConfig

    def prepare(self, config):
        return prepare_data(config)

    def settle(self, config, data):
        super().settle(config, data)
        self.chosen = " (auto)" if config.normalization == "auto" else ""
        if config.normalization == "auto":            # config.json records what was used, for predict/evaluate
            config.normalization = data.get("normalization", "minmax")

    def describe(self, config, data, model):
        return (super().describe(config, data, model)
                + f", normalisation {config.normalization}{getattr(self, 'chosen', '')}")

    def build(self, config, data):
        return build(config, (config.image_size, config.image_size, data["channels"]))

    def compile(self, model, config):
        compile_model(model, config)

    def monitor_name(self, model, monitor):
        return monitor_name(model, monitor)

    def batches(self, config, data, model, batch_size):
        from Functions.data.augmentation import get_augmenter
        from Functions.data.pipeline import make_batches
        from Functions.engine import distribute as dist

        x_tr, y_tr, _ = data["train"]
        x_va, y_va, _ = data["val"]
        augmenter = get_augmenter(config.augment) if config.augment else None
        n_out = len(model.outputs)
        part_tr, part_va = dist.process_shard(len(x_tr)), dist.process_shard(len(x_va))
        train = make_batches(x_tr[part_tr], y_tr[part_tr], batch_size, shuffle=True, augmenter=augmenter,
                             seed=config.seed, num_outputs=n_out, workers=config.workers)
        val = make_batches(x_va[part_va], y_va[part_va], batch_size, num_outputs=n_out, workers=1)
        return train, val

    def callbacks(self, config, model, run_dir, data):
        from Functions.engine.callbacks import ProgressFigure
        from Functions.engine.distribute import batch_multiple, process_count

        if not config.progress_every:
            return []
        x_va, y_va, _ = data["val"]
        k = min(4, len(x_va))
        k -= k % batch_multiple()                     # JAX data parallelism: equal slices per device
        k = 0 if process_count() > 1 else k           # several JAX hosts: predict() cannot gather outputs
        if not k:
            return []
        return [ProgressFigure(x_va[:k], y_va[:k], run_dir / "progress.png", every=config.progress_every,
                               threshold=config.threshold, total_epochs=config.epochs)]

    def finish(self, model, config, data, run_dir, hist, seconds):
        return finish_run(model, config, data, run_dir, hist, seconds)


SEGMENTATION = SegmentationTask()


# ----------------------------------------------------------------------------- main job
def train(config: TrainConfig, *, resume: bool = False, callbacks: list | None = None,
          data: dict | None = None) -> dict:
    """Train, keep the best model by ``config.monitor``, evaluate on the test split and write the run folder.

    ``resume=True`` continues the interrupted run in ``config.out`` (see
    :func:`resume_config`) from its last completed epoch, with the model and
    optimizer weights, learning rate, history, best value and callback
    counters it had then.  ``callbacks``: extra Keras callbacks (notebooks,
    tests).  ``data``: the output of :func:`prepare_data` for this config,
    when the caller already loaded it (``compare`` trains several models on it).

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    Raises :class:`UserError` for bad settings or data (before any folder is
    made) and when the loss becomes NaN.
    """
    return fit(SEGMENTATION, config, resume=resume, callbacks=callbacks, data=data)


def load_run_config(run_dir: str | Path, flag: str = "--run") -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json`` (unknown keys ignored)."""
    return TrainConfig.load(run_dir, flag=flag)


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of an interrupted run, to pass to ``train(config, resume=True)``."""
    return resume_run_config(TrainConfig, run_dir)


def finish_run(model, config: TrainConfig, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Test metrics, figures and report for a trained model."""
    import matplotlib.pyplot as plt

    from Functions.evaluation.evaluate import score_masks
    from Functions.inference.tta import predict_probabilities, probabilities_to_masks
    from Functions.metrics.segmentation import summarize
    from Functions.viz.plotting import plot_history, plot_predictions
    from Functions.viz.reports import write_report

    x_te, y_te, s_te = data["test"] if data["test"][0] is not None else data["val"]
    split_name = "test" if data["test"][0] is not None else "validation"
    probs = predict_probabilities(model, x_te, batch_size=config.batch_size, tta=config.tta)
    preds = probabilities_to_masks(probs, config.threshold)
    table = score_masks(y_te, preds, names=[s.id for s in s_te])
    table.to_csv(run_dir / "test_metrics.csv", index=False)
    summary = summarize(table)
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}
    metrics.update({"split": split_name, "n_images": int(len(table)), "epochs_trained": int(len(hist)),
                    "train_seconds": round(seconds, 1), "parameters": int(model.count_params()),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    **best_epoch(hist, monitor_name(model, config.monitor)),
                    "summary": {k: {s: _num(summary.loc[s, k]) for s in summary.index} for k in summary.columns}})
    write_json(run_dir / "metrics.json", metrics)
    plt.close(plot_history(hist, run_dir / "curves.png"))
    order = np.argsort([-d for d in table["dice"].to_numpy()])  # best first would hide failures: show spread
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]
    plt.close(plot_predictions(x_te[pick], y_te[pick], preds[pick], n=len(pick),
                               scores=table["dice"].to_numpy()[pick], titles=[s_te[i].id for i in pick],
                               path=run_dir / "predictions.png"))
    write_report(run_dir, config=asdict(config), data=data, metrics=metrics,
                 command=SEGMENTATION.reproduce(config))
    print(f"Test ({split_name}, {len(table)} images): Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  "
          f"({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


def reproduce_command(config: TrainConfig) -> str:
    """The ``python -m Functions train`` line that repeats this run (settings that differ from the defaults)."""
    return SEGMENTATION.reproduce(config)


def _num(v):
    v = float(v)
    return None if np.isnan(v) else v
