"""Training a segmentation model end to end: the ``train`` main job.

:func:`train` takes a :class:`TrainConfig` and produces a run folder::

    run/
      config.json        every setting, so the run can be repeated or resumed
      split.json         which samples went to train / validation / test
      model.keras        the best model by validation Dice
      history.csv        one row per epoch (Keras CSVLogger, column ``epoch``)
      metrics.json       test metrics (per-image means) and their summary
      test_metrics.csv   one row of metrics per test image
      curves.png         loss and Dice per epoch
      predictions.png    image | truth | prediction | overlay on test images
      report.md          settings, data, metrics and figures, readable on GitHub
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError


@dataclass
class TrainConfig:
    """Every setting of a training run (the CLI flags map one to one)."""

    data: str | None = None            # folder of images + masks; None -> the offline sample
    dataset: str | None = None         # a registered dataset name (Functions.datasets)
    data_dir: str | None = None        # where registered datasets live
    model: str = "unet"
    model_options: dict = field(default_factory=dict)
    epochs: int = 25
    image_size: int = 128
    batch_size: int = 8
    loss: str = "bce_dice"
    learning_rate: float = 2e-3
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    channels: int | None = None        # None: 1 for grayscale data, 3 for colour
    normalization: str = "minmax"
    clahe: bool = False
    augment: str | None = None         # None or a preset name of Functions.augmentation
    threshold: float = 0.5
    monitor: str = "val_dice"
    jit_compile: str | bool = "auto"
    workers: int = 2
    out: str | None = None
    verbose: int | str = "auto"

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.image_size >= 8, f"--image-size must be at least 8, got {self.image_size}"),
            (self.learning_rate > 0, f"--lr must be positive, got {self.learning_rate}"),
            (0 < self.threshold < 1, f"--threshold must be between 0 and 1, got {self.threshold}"),
            (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (not (self.data and self.dataset), "give either --data DIR or --dataset NAME, not both"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


# ----------------------------------------------------------------------------- data
def resolve_samples(config: TrainConfig):
    """The samples a config points at: ``--data``, ``--dataset`` or the offline nuclei sample."""
    from .discovery import find_samples

    if config.dataset:
        from . import datasets

        return datasets.load(config.dataset, data_dir=config.data_dir)
    if config.data:
        return find_samples(config.data)
    from .paths import sample_dir

    return find_samples(sample_dir("nuclei"))


def prepare_data(config: TrainConfig, samples=None):
    """Split and load the arrays: ``dict`` with ``train``/``val``/``test`` ``(images, masks, samples)``."""
    from .pipeline import infer_channels, load_arrays
    from .splits import split_indices

    samples = list(resolve_samples(config) if samples is None else samples)
    if len(samples) < 3:
        raise UserError(f"only {len(samples)} sample(s) found; training needs at least 3 (train, validation, test)")
    labels = [s.label for s in samples]
    stratify = labels if len(set(labels)) > 1 and None not in labels else None
    idx = split_indices(len(samples), config.val_fraction, config.test_fraction, config.seed, stratify=stratify)
    channels = config.channels or infer_channels(samples)
    data = {"channels": channels, "n_samples": len(samples)}
    for name, ids in zip(("train", "val", "test"), idx):
        subset = [samples[i] for i in ids]
        if not subset:
            data[name] = (None, None, [])
            continue
        x, y = load_arrays(subset, config.image_size, channels, config.normalization, config.clahe)
        data[name] = (x, y, subset)
    if data["train"][0] is None or data["val"][0] is None:
        raise UserError("the split left no training or validation images; lower --val-fraction/--test-fraction")
    return data


# ----------------------------------------------------------------------------- model
def compile_model(model, config: TrainConfig):
    """Compile with the configured loss (averaged over deep-supervision heads), Adam and streaming metrics."""
    import keras

    from .keras_metrics import segmentation_metrics
    from .losses import get_loss

    num_classes = int(model.outputs[-1].shape[-1])
    n_out = len(model.outputs)
    try:
        loss = get_loss(config.loss)
    except ValueError as exc:
        raise UserError(f"--loss: {exc}") from None
    metrics = segmentation_metrics(num_classes=num_classes, threshold=config.threshold)
    if n_out > 1:
        loss = [get_loss(config.loss) for _ in range(n_out)]
        metrics = [[] for _ in range(n_out - 1)] + [metrics]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=loss,
        loss_weights=[1.0 / n_out] * n_out if n_out > 1 else None,
        metrics=metrics,
        jit_compile=resolve_jit_compile(config.jit_compile),
    )
    return model


def resolve_jit_compile(setting: str | bool) -> bool | str:
    """``"auto"``: XLA on TensorFlow CPU and GPU (Keras itself disables it on CPU) and JAX; PyTorch eager."""
    if setting != "auto":
        return bool(setting)
    import keras

    return keras.backend.backend() in ("tensorflow", "jax")


def monitor_name(model, monitor: str) -> str:
    """Metric names gain the output's name when a model has several outputs (deep supervision)."""
    if len(model.outputs) <= 1 or not monitor.startswith("val_") or monitor == "val_loss":
        return monitor
    last = model.output_names[-1] if hasattr(model, "output_names") else model.outputs[-1].name.split("/")[0]
    return f"val_{last}_{monitor[4:]}"


def build(config: TrainConfig, input_shape: tuple[int, int, int]):
    from .models import build_model

    try:
        return build_model(config.model, input_shape=input_shape, num_classes=1, **config.model_options)
    except ValueError as exc:
        raise UserError(f"--model {config.model}: {exc}") from None


# ----------------------------------------------------------------------------- main job
def train(config: TrainConfig) -> dict:
    """Train, keep the best model by validation Dice, evaluate on the test split and write the run folder.

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame}``.
    """
    import keras
    import pandas as pd

    from .paths import new_run_dir
    from .seeding import set_seed

    config.validate()
    set_seed(config.seed)
    data = prepare_data(config)                       # all input errors surface before a folder is made
    x_tr, y_tr, s_tr = data["train"]
    x_va, y_va, s_va = data["val"]
    model = build(config, (config.image_size, config.image_size, data["channels"]))
    run_dir = new_run_dir(config.out, prefix=config.model)
    _write_json(run_dir / "config.json", asdict(config))
    _write_json(run_dir / "split.json", {k: [str(s.image) for s in data[k][2]] for k in ("train", "val", "test")})

    compile_model(model, config)
    from .pipeline import make_batches

    augmenter = None
    if config.augment:
        from .augmentation import get_augmenter

        augmenter = get_augmenter(config.augment)
    n_out = len(model.outputs)
    train_batches = make_batches(x_tr, y_tr, config.batch_size, shuffle=True, augmenter=augmenter,
                                 seed=config.seed, num_outputs=n_out, workers=config.workers)
    val_batches = make_batches(x_va, y_va, config.batch_size, num_outputs=n_out, workers=1)
    monitor = monitor_name(model, config.monitor)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(run_dir / "model.keras"), monitor=monitor,
                                        mode="min" if monitor.endswith("loss") else "max", save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TerminateOnNaN(),
    ]
    verbose = config.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    print(f"Training {config.model} on {len(x_tr)} images ({len(x_va)} validation, {len(data['test'][2])} test), "
          f"{x_tr.shape[1]}x{x_tr.shape[2]}x{x_tr.shape[3]}, {model.count_params():,} parameters, "
          f"backend {keras.backend.backend()}; run folder {run_dir}", flush=True)
    t0 = time.time()
    history = model.fit(train_batches, validation_data=val_batches, epochs=config.epochs,
                        callbacks=callbacks, verbose=verbose)
    seconds = time.time() - t0
    hist = pd.read_csv(run_dir / "history.csv")
    if not (run_dir / "model.keras").exists():   # e.g. NaN from the first epoch: keep the last state
        model.save(run_dir / "model.keras")
    best = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    metrics = finish_run(best, config, data, run_dir, hist, seconds)
    return {"run_dir": run_dir, "metrics": metrics, "history": hist, "model": best}


def finish_run(model, config: TrainConfig, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Test metrics, figures and report for a trained model."""
    from .evaluation import predict_probabilities, probabilities_to_masks, score_masks
    from .metrics import summarize
    from .plotting import plot_history, plot_predictions
    from .reporting import write_report

    x_te, y_te, s_te = data["test"] if data["test"][0] is not None else data["val"]
    split_name = "test" if data["test"][0] is not None else "validation"
    probs = predict_probabilities(model, x_te, batch_size=config.batch_size)
    preds = probabilities_to_masks(probs, config.threshold)
    table = score_masks(y_te, preds, names=[s.id for s in s_te])
    table.to_csv(run_dir / "test_metrics.csv", index=False)
    summary = summarize(table)
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}
    metrics.update({"split": split_name, "n_images": int(len(table)), "epochs_trained": int(len(hist)),
                    "train_seconds": round(seconds, 1), "parameters": int(model.count_params()),
                    "summary": {k: {s: _num(summary.loc[s, k]) for s in summary.index} for k in summary.columns}})
    _write_json(run_dir / "metrics.json", metrics)
    import matplotlib.pyplot as plt

    plt.close(plot_history(hist, run_dir / "curves.png"))
    order = np.argsort([-d for d in table["dice"].to_numpy()])  # best first would hide failures: show spread
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]
    plt.close(plot_predictions(x_te[pick], y_te[pick], preds[pick], n=len(pick),
                               scores=table["dice"].to_numpy()[pick], titles=[s_te[i].id for i in pick],
                               path=run_dir / "predictions.png"))
    write_report(run_dir, config=asdict(config), data=data, metrics=metrics)
    print(f"Test ({split_name}, {len(table)} images): Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  "
          f"({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


def _num(v):
    v = float(v)
    return None if np.isnan(v) else v


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))
