"""The one training loop: every task (segmentation, classification) trains through :func:`fit`.

A task is a :class:`Task` subclass that says what is particular to it - how
to find and load the data, build and compile the model, batch the arrays,
which files describe the run, and how to score the finished model.  The loop
itself is the same for all of them and owns everything a run needs to be
repeatable and robust:

* settings checked before anything is written (``config.validate()``, then the data);
* seeds (:func:`Functions.base.runtime.set_seed`), mixed precision, ``--distribute``;
* the run folder (``config.json``, ``split.json``, ``history.csv``, ``model.keras``, ``report.md``);
* the optimizer (:func:`make_optimizer`: Adam, with ``--ema`` a moving average of the weights);
* callbacks in the order they must run: NaN guard, averaged weights, history, best model, early stopping /
  learning-rate plateau, the learning-rate schedule with its time budget, the task's own,
  TensorBoard, the caller's, and last the resume state;
* resume after a kill (``SIGKILL`` included) from the last committed epoch, with the same split,
  the same shuffling and augmentation stream and the callbacks' counters.

Call it through the tasks: :func:`Functions.engine.tasks.train` (any segmentation run) and
:func:`Functions.engine.classification.train_classifier`.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.paths import new_run_dir
from Functions.base.runs import (check_same_split, clean_partial_files, is_finished, read_state, remove_backup,
                                 reproduce_command, write_history_csv, write_json)
from Functions.base.runtime import set_precision, set_seed
from Functions.engine import distribute as dist
from Functions.engine.config import RunConfig
from Functions.engine.finish import finish
from Functions.inference.loading import load_keras_model


class Task:
    """What one kind of training run does that the loop cannot know; subclass and override.

    ``data`` is the dict :meth:`prepare` returns: at least ``"train"`` and
    ``"val"`` (and usually ``"test"``) as ``(inputs, targets, samples)``
    triples and ``"channels"``.
    """

    #: ``python -m Functions <command>`` that trains this task (for messages and the reproduce line).
    command = "train"
    #: The config class of the task (a :class:`RunConfig` subclass).
    config_class = RunConfig

    # ------------------------------------------------------------------ data
    def prepare(self, config) -> dict:
        """Find, split and load the data; every input error surfaces here, before a folder is made."""
        raise NotImplementedError

    def settle(self, config, data: dict) -> None:
        """Fill in the settings that the data decided (channels, normalisation...) so config.json records them."""
        if config.channels is None:
            config.channels = data["channels"]

    def split_record(self, data: dict) -> dict:
        """``split.json``: the files of each split (resuming checks that they have not changed)."""
        return {k: [str(s.image) for s in data[k][2]] for k in ("train", "val", "test") if k in data}

    def run_files(self, config, data: dict) -> dict:
        """Extra JSON files of a new run folder: ``{file name: object}``."""
        return {}

    def describe(self, config, data: dict, model) -> str:
        """The first line printed when training starts."""
        x_tr = data["train"][0]
        return (f"Training {config.model} on {len(x_tr)} images ({len(data['val'][2])} validation, "
                f"{len(data.get('test', (None, None, []))[2])} test), {'x'.join(str(d) for d in x_tr.shape[1:])}, "
                f"{model.count_params():,} parameters")

    # ------------------------------------------------------------------ model
    def build(self, config, data: dict):
        raise NotImplementedError

    def compile(self, model, config) -> None:
        raise NotImplementedError

    def monitor_name(self, model, monitor: str) -> str:
        """The name Keras logs ``monitor`` under for this model."""
        return monitor

    # ------------------------------------------------------------------ batches
    def batches(self, config, data: dict, model, batch_size: int):
        """``(train_batches, val_batches)``: PyDatasets with ``set_epoch``; ``batch_size`` is this host's share."""
        raise NotImplementedError

    def fit_kwargs(self, config, data: dict) -> dict:
        """Extra keyword arguments of ``model.fit`` (e.g. ``class_weight``)."""
        return {}

    def callbacks(self, config, model, run_dir: Path, data: dict) -> list:
        """The task's own callbacks (after the best model and plateau callbacks, before the resume state)."""
        return []

    # ------------------------------------------------------------------ after training
    def score(self, model, config, data: dict, run_dir: Path):
        """Score the kept model (on the test split, else validation): a :class:`~Functions.engine.finish.Scores`.

        The one finish step (:func:`Functions.engine.finish.finish`) writes what it returns: the tables,
        ``metrics.json``, the figures, ``report.md`` and the printed line.  ``run_dir`` is for the files that
        scoring itself writes (3-D ``predictions/``, the tuned watershed's ``instance_decoder.json``).
        """
        raise NotImplementedError

    def reproduce(self, config) -> str:
        return reproduce_command(self.command, config, self.config_class())


# ----------------------------------------------------------------------------- the loop
def fit(task: Task, config: RunConfig, *, resume: bool = False, callbacks: list | None = None,
        data: dict | None = None, files: dict | None = None) -> dict:
    """Train ``task`` with ``config``, keep the best model, score it and write the run folder.

    ``resume=True`` continues the interrupted run in ``config.out`` from its
    last committed epoch.  ``callbacks``: extra Keras callbacks.  ``data``:
    the output of ``task.prepare(config)`` when the caller already has it.  ``files``: more JSON files of a
    new run folder, ``{name: object}`` (``train`` passes its ``plan.json``).  A ``train`` run folder also
    gets ``recipe.toml``, every setting as a recipe file (:func:`write_run_recipe`).

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    Raises :class:`UserError` for bad settings or data (before any folder is
    made) and when the loss becomes NaN.
    """
    config = replace(config)                              # never change the caller's object
    config.validate()
    if config.data and not resume:
        config.data = str(Path(config.data).expanduser().resolve())   # so evaluate/resume find it from anywhere
    state, run_dir = None, None
    if resume:
        run_dir = Path(config.out)
        state = read_state(run_dir / "backup")
    if data is None:           # the data are found and checked before a backend starts: a bad path fails at once
        data = task.prepare(config)            # (prepare draws from its own seeded generators, not global ones)
    import keras
    import pandas as pd

    set_seed(config.seed, deterministic=config.deterministic)
    task.settle(config, data)
    split = task.split_record(data)
    if resume:
        check_same_split(run_dir, split)

    previous_policy = keras.mixed_precision.global_policy()
    scope = ExitStack()                               # --distribute: build, compile and fit inside the strategy
    try:
        set_precision(config.mixed_precision)
        replicas = dist.open_scope(scope, config.distribute, per_replica_batch=config.batch_size)
        model = task.build(config, data)
        task.compile(model, config)

        if not resume:
            run_dir = new_run_dir(config.out, prefix=run_prefix(task, config))
            write_json(run_dir / "config.json", asdict(config))
            write_json(run_dir / "split.json", split)
            for name, obj in {**task.run_files(config, data), **(files or {})}.items():
                write_json(run_dir / name, obj)
            if task.command == "train":
                write_run_recipe(run_dir, config)
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

        n_train = len(data["train"][0])
        schedule = make_schedule(config, n_train, replicas, elapsed=sum(r.get("seconds", 0.0) for r in rows))
        run_callbacks, guard = make_callbacks(task, config, model, run_dir, data, rows=rows, state=state,
                                              schedule=schedule, extra=callbacks)
        verbose = verbose_level(config)
        t0 = time.time()
        if start < config.epochs and not finished:
            # --distribute: --batch-size is per replica; the pipeline yields the global batch (its share of
            # it on each JAX host), padded with zero-weight samples where the replicas need equal slices.
            batch = dist.input_batch_size(config.batch_size, replicas) if config.distribute else config.batch_size
            train_batches, val_batches = task.batches(config, data, model, batch)
            train_batches.set_epoch(start)            # shuffling/augmentation continue where they stopped
            train_batches, val_batches = dist.even_batches(train_batches), dist.even_batches(val_batches)
            if start == 0:
                print(f"{task.describe(config, data, model)}, backend {keras.backend.backend()}; "
                      f"run folder {run_dir}", flush=True)
            # shuffle=False: the batches shuffle themselves from (seed, epoch); Keras' own shuffling of
            # batch order draws from Python's global random state, which a resumed run cannot restore.
            try:
                model.fit(train_batches, validation_data=val_batches, epochs=config.epochs, initial_epoch=start,
                          callbacks=run_callbacks, verbose=verbose, shuffle=False, **task.fit_kwargs(config, data))
            except KeyboardInterrupt:
                print(f"\ninterrupted; continue with: python -m Functions {task.command} --resume {run_dir}",
                      file=sys.stderr, flush=True)
                raise
        scope.close()                                 # the saved model is loaded and tested without a strategy
        if guard.nan_epoch is not None:
            raise UserError(guard.message(config.learning_rate) + f"; the history so far is in {run_dir}")
        seconds = time.time() - t0 + sum(r.get("seconds", 0.0) for r in rows)
        hist = pd.read_csv(run_dir / "history.csv")
        if not (run_dir / "model.keras").exists():   # the monitored value was never finite: keep the last state
            model.save(run_dir / "model.keras")
        best = load_keras_model(run_dir / "model.keras", compile=True, flag="--out")
    finally:
        scope.close()
        keras.mixed_precision.set_global_policy(previous_policy)
    metrics = finish(task, best, config, data, run_dir, hist, seconds)
    remove_backup(run_dir)                             # the run is complete: nothing left to resume
    return {"run_dir": run_dir, "metrics": metrics, "history": hist, "model": best}


def write_run_recipe(run_dir: Path, config: RunConfig) -> Path:
    """``run_dir/recipe.toml``: every setting of the run (``out`` left out) in one table per config section
    (``[data]``, ``[optimisation]``...), so that ``train --config`` with it repeats the run
    (:mod:`Functions.planning.recipes`)."""
    from Functions.planning.recipes import write_recipe

    values = {k: v for k, v in asdict(config).items() if k != "out"}
    return write_recipe(run_dir / "recipe.toml", values, sections=config.sections(), header=[
        f"The full recipe of run {run_dir.name}, as it ran (settings decided from the data included).",
        f"Repeat it: python -m Functions train --config {run_dir / 'recipe.toml'} --out NEW_FOLDER"])


def run_prefix(task: Task, config) -> str:
    """The run folder's name prefix: the model, with the task's command where it is not plain ``train``."""
    return config.model if task.command == "train" else f"{task.command.split('-')[0]}-{config.model}"


def resume_config(config_class, run_dir: str | Path):
    """The config of an interrupted run, to pass to ``fit(..., resume=True)``.

    Raises :class:`UserError` when ``run_dir`` is not a run folder or the run has already finished.
    """
    run_dir = Path(run_dir).expanduser()
    config = config_class.load(run_dir, flag="--resume")
    config.out = str(run_dir)
    if is_finished(run_dir):
        raise UserError(f"run {run_dir} already finished (see {run_dir / 'report.md'}); nothing to resume - "
                        "start a new run with --out NEW_FOLDER")
    return config


def make_optimizer(config):
    """Adam at ``config.learning_rate`` (the schedule callback sets it per step).

    ``config.ema > 0`` (``--ema MOMENTUM``): the optimizer also keeps an
    exponential moving average of the trainable weights, updated after every
    step (Polyak averaging; Keras' ``use_ema``).  :func:`make_callbacks` then
    swaps the averaged weights in for validation and for the callbacks that
    save the model, so the kept ``model.keras`` holds the average.
    """
    import keras

    return keras.optimizers.Adam(learning_rate=config.learning_rate, use_ema=config.ema > 0,
                                 ema_momentum=config.ema if config.ema > 0 else 0.99)


def make_schedule(config, n_train: int, replicas: int = 1, elapsed: float = 0.0):
    """The learning-rate callback for ``config`` (:class:`~Functions.engine.schedules.CosineSchedule`), or ``None``.

    ``"cosine"`` gives way to ``--reduce-lr-patience`` (both would set the
    learning rate); a time budget alone still needs the callback, which
    stops training when the next epoch would not fit.
    """
    from Functions.engine.schedules import CosineSchedule

    cosine = config.lr_schedule == "cosine" and not config.reduce_lr_patience
    if not cosine and config.time_budget is None:
        return None
    batch = dist.input_batch_size(config.batch_size, replicas) if config.distribute else config.batch_size
    steps = max(1, -(-len(np.arange(n_train)[dist.process_shard(n_train)]) // batch))
    return CosineSchedule(config.learning_rate, config.epochs, steps,
                          final_fraction=0.01 if cosine else 1.0, warmup_epochs=1.0 if cosine else 0.0,
                          time_budget=None if config.time_budget is None else 60.0 * config.time_budget,
                          elapsed=elapsed)


def make_callbacks(task: Task, config, model, run_dir: Path, data: dict, rows: list | None = None,
                   state: dict | None = None, extra: list | None = None, schedule=None):
    """The run's callbacks in the order they must run, and the NaN guard (to ask after ``fit``).

    ``schedule``: the learning-rate callback (:func:`make_schedule`) or ``None``; its plan is part of the
    resume state, so a resumed run continues the same learning-rate curve.  ``extra``: the caller's callbacks.

    Order matters: the NaN guard first; with ``--ema`` the averaged weights
    next, so that validation and every later callback see them; the history
    row and the best model before the plateau/early-stopping counters;
    :class:`TrainingState` last so that it commits what all the others did in
    the epoch.
    """
    import keras

    from Functions.engine.callbacks import AveragedWeights, BestModel, EpochLog, NaNGuard, TrainingState

    monitor = task.monitor_name(model, config.monitor)
    mode = "min" if monitor.endswith("loss") else "max"
    guard = NaNGuard()
    history = EpochLog(run_dir / "history.csv", rows=rows)
    best = BestModel(run_dir / "model.keras", monitor=monitor, mode=mode, keep=config.keep)
    stateful = {"best_model": best}
    cbs = [guard] + ([AveragedWeights(resumed=state is not None)] if config.ema > 0 else []) + [history, best]
    if config.patience:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                                   patience=config.patience, verbose=1)
    if config.reduce_lr_patience:
        stateful["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, patience=config.reduce_lr_patience, factor=config.reduce_lr_factor,
            min_lr=config.learning_rate * 1e-3, verbose=1)
    cbs += [stateful[k] for k in ("early_stopping", "reduce_lr") if k in stateful]
    cbs += task.callbacks(config, model, run_dir, data)
    if config.tensorboard:
        try:
            import tensorflow  # noqa: F401 - the TensorBoard callback writes with tf.summary
        except ImportError:
            raise UserError("--tensorboard needs the tensorflow package; `pip install tensorflow` "
                            "or drop --tensorboard") from None
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    if schedule is not None:
        stateful["schedule"] = schedule
        cbs.append(schedule)
    cbs += list(extra or [])
    cbs.append(TrainingState(run_dir / "backup", history, stateful=stateful, nan_guard=guard,
                             total_epochs=config.epochs, restore=state))
    return cbs, guard


def verbose_level(config) -> int:
    """Keras ``verbose``: progress bars on a terminal, one line per epoch in logs and notebooks."""
    return (1 if sys.stdout.isatty() else 2) if config.verbose == "auto" else int(config.verbose)
