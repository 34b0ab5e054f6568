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

Resuming (``train(resume_config(run_dir), resume=True)``, or ``python -m
Functions train --resume RUN_DIR``) restarts from the last epoch committed in
``backup/``: model and optimizer weights (with the learning rate and step
count), the history rows, the best value so far and the early-stopping /
learning-rate-plateau counters.  The shuffling and augmentation of epoch
``e`` depend only on ``(seed, e)``, so they continue as if uninterrupted.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runtime import has_gpu, set_precision

#: Quantities logged every epoch that --monitor can pick (each also with a ``val_`` prefix).
MONITORS = ("dice", "iou", "mean_dice", "loss")


def _monitor_base(monitor: str) -> str:
    return monitor[4:] if monitor.startswith("val_") else monitor


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
    normalization: str = "auto"        # "auto": dark_background for mixed brightfield/fluorescence data, else minmax
    clahe: bool = False
    augment: str | None = "light"      # a preset of Functions.augmentation (light: flips, 90-degree turns) or None
    threshold: float = 0.5
    monitor: str = "val_dice"
    jit_compile: str | bool = "auto"
    workers: int = 2
    out: str | None = None
    verbose: int | str = "auto"
    patience: int = 0                  # early stopping after N epochs without improvement; 0 = off
    reduce_lr_patience: int = 0        # halve the learning rate after N epochs without improvement; 0 = off
    reduce_lr_factor: float = 0.5
    progress_every: int = 5            # progress.png every N epochs; 0 = off
    tensorboard: bool = False          # TensorBoard logs in run/tensorboard
    mixed_precision: bool = False      # float16 compute on GPUs (bfloat16 on CPU, with a warning)
    deterministic: bool = False        # also ask the backend for deterministic kernels (slower; disables XLA)
    distribute: bool = False           # data-parallel over all local devices (TF/JAX); batch_size is per replica
    subset: int | None = None          # use only N samples (a seeded random choice) for quick experiments; None = all
    run_eagerly: bool = False          # no graph compilation: slower steps, no start-up wait (tiny runs, debugging)
    lr_schedule: str = "cosine"        # "cosine": warm-up + cosine decay (Functions.schedules); "constant"
    time_budget: float | None = None   # minutes of training; fewer epochs when they would not fit; None = no limit
    tta: bool = False                  # test metrics from the mean of the four flips (evaluate/predict --tta)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.subset is None or self.subset >= 3, f"--subset must be at least 3 samples, got {self.subset}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.image_size >= 8, f"--image-size must be at least 8, got {self.image_size}"),
            (self.learning_rate > 0, f"--lr must be positive, got {self.learning_rate}"),
            (0 < self.threshold < 1, f"--threshold must be between 0 and 1, got {self.threshold}"),
            (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (not (self.data and self.dataset), "give either --data DIR or --dataset NAME, not both"),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
             and self.val_fraction + self.test_fraction < 1,
             f"--val-fraction and --test-fraction must each be in [0, 1) and sum below 1, got "
             f"{self.val_fraction} and {self.test_fraction}"),
            (self.val_fraction > 0, "--val-fraction must be above 0: the best model is chosen on validation images"),
            (self.patience >= 0, f"--patience must be 0 (off) or more, got {self.patience}"),
            (self.reduce_lr_patience >= 0,
             f"--reduce-lr-patience must be 0 (off) or more, got {self.reduce_lr_patience}"),
            (0 < self.reduce_lr_factor < 1, f"--reduce-lr-factor must be between 0 and 1, got {self.reduce_lr_factor}"),
            (self.progress_every >= 0, f"--progress-every must be 0 (off) or more, got {self.progress_every}"),
            (self.workers >= 0, f"--workers must be 0 or more, got {self.workers}"),
            (self.lr_schedule in ("cosine", "constant"),
             f"--lr-schedule must be cosine or constant, got {self.lr_schedule!r}"),
            (self.time_budget is None or self.time_budget > 0,
             f"--time-budget must be a positive number of minutes, got {self.time_budget}"),
            (_monitor_base(self.monitor) in MONITORS,
             f"--monitor {self.monitor} is not logged; choose one of "
             + ", ".join(p + m for p in ("val_", "") for m in MONITORS)),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


# ----------------------------------------------------------------------------- data
def resolve_samples(config: TrainConfig):
    """The samples a config points at: ``--data``, ``--dataset`` or the offline nuclei sample."""
    from Functions.data.discovery import find_samples

    if config.dataset:
        from Functions.data import datasets

        return datasets.load(config.dataset, data_dir=config.data_dir)
    if config.data:
        return find_samples(config.data)
    from Functions.base.paths import sample_dir

    return find_samples(sample_dir("nuclei"))


def prepare_data(config: TrainConfig, samples=None):
    """Split and load the arrays: ``dict`` with ``train``/``val``/``test`` ``(images, masks, samples)``."""
    from Functions.data.pipeline import infer_channels, load_arrays
    from Functions.data.splits import split_indices

    samples = list(resolve_samples(config) if samples is None else samples)
    if config.subset is not None and config.subset < len(samples):   # seeded, so a rerun gets the same images
        keep = np.sort(np.random.default_rng(config.seed).choice(len(samples), config.subset, replace=False))
        samples = [samples[i] for i in keep]
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

    See :func:`Functions.preprocessing.choose_normalization`: a data set that
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
def compile_model(model, config: TrainConfig):
    """Compile with the configured loss (averaged over deep-supervision heads), Adam and streaming metrics."""
    import keras

    from Functions.engine.distribute import jit_allowed
    from Functions.metrics.streaming import segmentation_metrics
    from Functions.losses import get_loss

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
        weighted_metrics=metrics,    # same names; they honour sample weights (--distribute's zero-weight padding)
        jit_compile=resolve_jit_compile(config.jit_compile) and jit_allowed() and not config.run_eagerly,
        run_eagerly=config.run_eagerly,
    )
    return model


def resolve_jit_compile(setting: str | bool) -> bool | str:
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


def build(config: TrainConfig, input_shape: tuple[int, int, int]):
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
    import keras
    import pandas as pd

    from Functions.base.runs import clean_partial_files, read_state, write_history_csv
    from Functions.base.runtime import set_seed

    config = replace(config)                              # never change the caller's object
    config.validate()
    if config.data and not resume:
        config.data = str(Path(config.data).expanduser().resolve())   # so evaluate/resume find it from anywhere
    state = None
    if resume:
        run_dir = Path(config.out)
        state = read_state(run_dir / "backup")
    set_seed(config.seed, deterministic=config.deterministic)
    if data is None:
        data = prepare_data(config)                   # all input errors surface before a folder is made
    if config.channels is None:
        config.channels = data["channels"]
    chosen = " (auto)" if config.normalization == "auto" else ""
    if config.normalization == "auto":                # config.json records what was used, for predict/evaluate
        config.normalization = data.get("normalization", "minmax")
    split = {k: [str(s.image) for s in data[k][2]] for k in ("train", "val", "test")}
    if resume:
        _check_same_split(run_dir, split)
    x_tr, y_tr, s_tr = data["train"]
    x_va, y_va, s_va = data["val"]

    previous_policy = keras.mixed_precision.global_policy()
    from contextlib import ExitStack

    from Functions.engine import distribute as dist

    scope = ExitStack()                               # --distribute: build, compile and fit inside the strategy
    try:
        set_precision(config.mixed_precision)
        replicas = dist.open_scope(scope, config.distribute, per_replica_batch=config.batch_size)
        # ---- model: build + compile (kept together so a distribution scope can wrap them)
        model = build(config, (config.image_size, config.image_size, data["channels"]))
        compile_model(model, config)

        if not resume:
            from Functions.base.paths import new_run_dir

            run_dir = new_run_dir(config.out, prefix=config.model)
            write_json(run_dir / "config.json", asdict(config))
            write_json(run_dir / "split.json", split)
        clean_partial_files(run_dir / "backup", run_dir)
        start, rows, finished = 0, [], False
        if state is not None:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(state["weights_path"])
            start, rows, finished = state["epochs_done"], state["history"], state["finished"]
        if resume:                                     # history.csv holds exactly the committed epochs
            if rows:
                write_history_csv(run_dir / "history.csv", rows)
            else:
                (run_dir / "history.csv").unlink(missing_ok=True)
            print(f"Resuming {run_dir} after epoch {start} of {config.epochs}", flush=True)

        schedule = make_schedule(config, len(x_tr), replicas, elapsed=sum(r.get("seconds", 0.0) for r in rows))
        run_callbacks, guard = make_callbacks(config, model, run_dir, data, rows=rows, state=state,
                                              extra=[c for c in (schedule,) if c] + list(callbacks or []))
        verbose = config.verbose
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        t0 = time.time()
        if start < config.epochs and not finished:
            from Functions.data.pipeline import make_batches

            augmenter = None
            if config.augment:
                from Functions.data.augmentation import get_augmenter

                augmenter = get_augmenter(config.augment)
            n_out = len(model.outputs)
            # --distribute: --batch-size is per replica; the pipeline yields the global batch (its share of
            # it on each JAX host), padded with zero-weight samples where the replicas need equal slices.
            batch = dist.input_batch_size(config.batch_size, replicas) if config.distribute else config.batch_size
            part_tr, part_va = dist.process_shard(len(x_tr)), dist.process_shard(len(x_va))
            train_batches = make_batches(x_tr[part_tr], y_tr[part_tr], batch, shuffle=True, augmenter=augmenter,
                                         seed=config.seed, num_outputs=n_out, workers=config.workers)
            train_batches.set_epoch(start)            # shuffling/augmentation continue where they stopped
            val_batches = make_batches(x_va[part_va], y_va[part_va], batch, num_outputs=n_out, workers=1)
            train_batches, val_batches = dist.even_batches(train_batches), dist.even_batches(val_batches)
            if start == 0:
                print(f"Training {config.model} on {len(x_tr)} images ({len(x_va)} validation, "
                      f"{len(data['test'][2])} test), {x_tr.shape[1]}x{x_tr.shape[2]}x{x_tr.shape[3]}, "
                      f"normalisation {config.normalization}{chosen}, "
                      f"{model.count_params():,} parameters, backend {keras.backend.backend()}; "
                      f"run folder {run_dir}", flush=True)
            # shuffle=False: the batches shuffle themselves from (seed, epoch); Keras' own shuffling of
            # batch order draws from Python's global random state, which a resumed run cannot restore.
            try:
                model.fit(train_batches, validation_data=val_batches, epochs=config.epochs, initial_epoch=start,
                          callbacks=run_callbacks, verbose=verbose, shuffle=False)
            except KeyboardInterrupt:
                print(f"\ninterrupted; continue with: python -m Functions train --resume {run_dir}",
                      file=sys.stderr, flush=True)
                raise
        scope.close()                                 # the saved model is loaded and tested without a strategy
        if guard.nan_epoch is not None:
            raise UserError(guard.message(config.learning_rate) + f"; the history so far is in {run_dir}")
        seconds = time.time() - t0 + sum(r.get("seconds", 0.0) for r in rows)
        hist = pd.read_csv(run_dir / "history.csv")
        if not (run_dir / "model.keras").exists():   # the monitored value was never finite: keep the last state
            model.save(run_dir / "model.keras")
        best = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    finally:
        scope.close()
        keras.mixed_precision.set_global_policy(previous_policy)
    metrics = finish_run(best, config, data, run_dir, hist, seconds)
    _remove_backup(run_dir)                            # the run is complete: nothing left to resume
    return {"run_dir": run_dir, "metrics": metrics, "history": hist, "model": best}


def _remove_backup(run_dir: Path) -> None:
    """Delete ``backup/``: first its state file (one atomic step that marks the run finished), then the rest."""
    import shutil

    (run_dir / "backup" / "state.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)


def make_schedule(config: TrainConfig, n_train: int, replicas: int = 1, elapsed: float = 0.0):
    """The learning-rate callback for ``config`` (:class:`~Functions.schedules.CosineSchedule`), or ``None``.

    ``"cosine"`` gives way to ``--reduce-lr-patience`` (both would set the
    learning rate); a time budget alone still needs the callback, which
    stops training when the next epoch would not fit.
    """
    from Functions.engine.schedules import CosineSchedule

    cosine = config.lr_schedule == "cosine" and not config.reduce_lr_patience
    if not cosine and config.time_budget is None:
        return None
    from Functions.engine import distribute as dist

    batch = dist.input_batch_size(config.batch_size, replicas) if config.distribute else config.batch_size
    steps = max(1, -(-len(np.arange(n_train)[dist.process_shard(n_train)]) // batch))
    return CosineSchedule(config.learning_rate, config.epochs, steps,
                          final_fraction=0.01 if cosine else 1.0, warmup_epochs=1.0 if cosine else 0.0,
                          time_budget=None if config.time_budget is None else 60.0 * config.time_budget,
                          elapsed=elapsed)


def make_callbacks(config: TrainConfig, model, run_dir: Path, data: dict, rows: list | None = None,
                   state: dict | None = None, extra: list | None = None):
    """The run's callbacks in the order they must run, and the NaN guard (to ask after ``fit``).

    Order matters: the NaN guard first; the history row and the best model
    before the plateau/early-stopping counters; :class:`TrainingState` last so
    that it commits what all the others did in the epoch.
    """
    import keras

    from Functions.engine.callbacks import BestModel, EpochLog, NaNGuard, ProgressFigure, TrainingState

    monitor = monitor_name(model, config.monitor)
    mode = "min" if monitor.endswith("loss") else "max"
    guard = NaNGuard()
    log = EpochLog(run_dir / "history.csv", rows=rows)
    best = BestModel(run_dir / "model.keras", monitor=monitor, mode=mode)
    stateful = {"best_model": best}
    cbs = [guard, log, best]
    if config.patience:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                                   patience=config.patience, verbose=1)
    if config.reduce_lr_patience:
        stateful["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, patience=config.reduce_lr_patience, factor=config.reduce_lr_factor,
            min_lr=config.learning_rate * 1e-3, verbose=1)
    cbs += [stateful[k] for k in ("early_stopping", "reduce_lr") if k in stateful]
    if config.progress_every:
        x_va, y_va, _ = data["val"]
        from Functions.engine.distribute import batch_multiple, process_count

        k = min(4, len(x_va))
        k -= k % batch_multiple()                     # JAX data parallelism: equal slices per device
        k = 0 if process_count() > 1 else k           # several JAX hosts: predict() cannot gather outputs
        if k:
            cbs.append(ProgressFigure(x_va[:k], y_va[:k], run_dir / "progress.png", every=config.progress_every,
                                      threshold=config.threshold, total_epochs=config.epochs))
    if config.tensorboard:
        try:
            import tensorflow  # noqa: F401 - the TensorBoard callback writes with tf.summary
        except ImportError:
            raise UserError("--tensorboard needs the tensorflow package; `pip install tensorflow` "
                            "or drop --tensorboard") from None
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    cbs += list(extra or [])
    cbs.append(TrainingState(run_dir / "backup", log, stateful=stateful, nan_guard=guard,
                             total_epochs=config.epochs, restore=state))
    return cbs, guard






# ----------------------------------------------------------------------------- resume
def load_run_config(run_dir: str | Path, flag: str = "--run") -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json`` (unknown keys ignored)."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{flag} {run_dir} is not a folder; pass the run folder printed when training started")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{flag} {run_dir} has no config.json, so it is not a run folder made by `train`; "
                        "pass the folder printed when training started")
    try:
        values = json.loads(cfg_path.read_text())
        fields = TrainConfig.__dataclass_fields__
        return TrainConfig(**{k: v for k, v in values.items() if k in fields})
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError):
        raise UserError(f"{cfg_path} is not a valid run configuration; restore it from a backup or start "
                        "a new run") from None


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of an interrupted run, to pass to ``train(config, resume=True)``.

    Raises :class:`UserError` when ``run_dir`` is not a run folder or the run has already finished.
    """
    run_dir = Path(run_dir).expanduser()
    config = load_run_config(run_dir, flag="--resume")
    config.out = str(run_dir)
    if (run_dir / "metrics.json").is_file() and not (run_dir / "backup" / "state.json").is_file():
        raise UserError(f"run {run_dir} already finished (see {run_dir / 'report.md'}); nothing to resume - "
                        "start a new run with --out NEW_FOLDER")
    return config


def _check_same_split(run_dir: Path, split: dict) -> None:
    path = run_dir / "split.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    if {k: sorted(v) for k, v in saved.items()} != {k: sorted(v) for k, v in split.items()}:
        raise UserError(f"the data of run {run_dir} changed since it started (its files no longer match "
                        f"{path}); restore the data or start a new run")


def finish_run(model, config: TrainConfig, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Test metrics, figures and report for a trained model."""
    from Functions.base.runtime import peak_rss_mb
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
                    **_best_epoch(hist, monitor_name(model, config.monitor)),
                    "summary": {k: {s: _num(summary.loc[s, k]) for s in summary.index} for k in summary.columns}})
    write_json(run_dir / "metrics.json", metrics)
    import matplotlib.pyplot as plt

    plt.close(plot_history(hist, run_dir / "curves.png"))
    order = np.argsort([-d for d in table["dice"].to_numpy()])  # best first would hide failures: show spread
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]
    plt.close(plot_predictions(x_te[pick], y_te[pick], preds[pick], n=len(pick),
                               scores=table["dice"].to_numpy()[pick], titles=[s_te[i].id for i in pick],
                               path=run_dir / "predictions.png"))
    write_report(run_dir, config=asdict(config), data=data, metrics=metrics, command=reproduce_command(config))
    print(f"Test ({split_name}, {len(table)} images): Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  "
          f"({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


def _best_epoch(hist, monitor: str) -> dict:
    """``best_epoch`` (1-based), ``monitor`` and ``best_value`` from the history table, when it has the column."""
    if monitor not in hist or not len(hist):
        return {"monitor": monitor}
    values = hist[monitor].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        return {"monitor": monitor}
    i = int(np.nanargmin(values) if monitor.endswith("loss") else np.nanargmax(values))
    out = {"monitor": monitor, "best_epoch": int(hist["epoch"].iloc[i]) + 1, "best_value": float(values[i])}
    if "learning_rate" in hist:
        out["final_learning_rate"] = float(hist["learning_rate"].iloc[-1])
    return out


def reproduce_command(config: TrainConfig) -> str:
    """The ``python -m Functions train`` line that repeats this run (settings that differ from the defaults)."""
    flags = {"learning_rate": "--lr"}
    default = TrainConfig()
    parts = ["python -m Functions train"]
    for name in TrainConfig.__dataclass_fields__:
        value, base = getattr(config, name), getattr(default, name)
        if name == "augment" and value is None and base is not None:
            parts.append("--augment none")                 # the default augments: say that this run did not
            continue
        if name in ("out", "verbose", "workers", "model_options") or value == base or value is None:
            continue
        flag = flags.get(name, "--" + name.replace("_", "-"))
        if name == "jit_compile":
            parts.append("--no-jit") if value is False else None
        elif isinstance(value, bool):
            parts.append(flag) if value else None
        else:
            parts.append(f"{flag} {value}")
    parts += [f"--model-option {k}={v}" for k, v in sorted(config.model_options.items())]
    return " ".join(parts)


def _num(v):
    v = float(v)
    return None if np.isnan(v) else v


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))
