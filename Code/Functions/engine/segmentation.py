"""Training a segmentation model end to end: the ``train`` main job.

:func:`Functions.engine.tasks.train` takes a :class:`TrainConfig` and produces a run folder::

    run/
      config.json        every setting (data path, channels, normalisation...), so the run can be
                         repeated, resumed, evaluated and used by ``predict``
      split.json         which samples went to train / validation / test
      model.keras        the best model by ``--monitor`` (validation Dice by default), or the last (``--keep last``)
                         - with ``--ema``, that epoch's moving average of the weights
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
precision) is :func:`Functions.engine.fit.fit`, and its finish step (tables, ``metrics.json``, figures,
``report.md``) is :func:`Functions.engine.finish.finish`; this module is the segmentation
:class:`SegmentationTask` on them (the multi-class, instance and panoptic tasks of
:mod:`Functions.engine.multiclass` subclass it).

Resuming (``train(resume_config(run_dir), resume=True)``, or ``python -m
Functions train --resume RUN_DIR``) restarts from the last epoch committed in
``backup/``: model and optimizer weights (with the learning rate and step
count), the history rows, the best value so far and the early-stopping /
learning-rate-plateau counters.  The shuffling and augmentation of each epoch
depend only on the seed and the epoch number, so they continue as if uninterrupted.
(Keras' ``fit`` advances the batch stream once before its first epoch, so the
model's epoch ``e`` draws the stream's epoch ``e + 1``, on a resumed run too;
notebook 03's written-out loop shows it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import summary_json
from Functions.base.runtime import has_gpu
from Functions.data.sources import resolve_samples, seeded_subset
from Functions.engine.config import Check, Images, Instances, Patches, RunConfig, Segmentation, Splits
from Functions.engine.fit import Task, make_optimizer
from Functions.engine.fit import resume_config as resume_run_config


@dataclass
class TrainConfig(Instances, Patches, Splits, Segmentation, Images, RunConfig):
    """Every setting of a 2-D segmentation run (the ``train`` flags map one to one).

    Its sections (:mod:`Functions.engine.config`), in ``config.json`` order: ``data``, ``optimisation``,
    ``output`` (every run's), ``images``, ``segmentation``, ``splits``, ``patches`` and ``instances``; the
    defaults below are the 2-D segmentation ones.  3-D runs are the sibling
    :class:`~Functions.engine.volumes.VolumeConfig`.
    """

    SECTION: ClassVar[str] = "segmentation"
    MONITORS = ("dice", "iou", "mean_dice", "loss")

    normalization: str = "auto"        # "auto": dark_background for mixed brightfield/fluorescence data, else minmax
    augment: str | None = "light"      # a preset of Functions.data.augmentation (light: flips, 90-degree turns) or None
    monitor: str = "val_dice"
    lr_schedule: str = "cosine"        # "cosine": warm-up + cosine decay (Functions.engine.schedules); "constant"
    progress_every: int = 5            # progress.png every N epochs; 0 = off

    def checks(self) -> list[Check]:
        return super().checks() + [
            (self.progress_every >= 0, "progress_every", f"must be 0 (off) or more, got {self.progress_every}"),
        ]


# ----------------------------------------------------------------------------- data
def prepare_data(config: TrainConfig, samples=None, masks=None) -> dict:
    """Split and load the arrays: ``dict`` with ``train``/``val``/``test`` ``(images, masks, samples)``,
    ``channels``, ``n_samples`` and the ``normalization`` used."""
    from Functions.data.pipeline import infer_channels, load_arrays
    from Functions.data.splits import OFFICIAL, split_samples

    if samples is None:
        samples = resolve_samples(config.data, config.dataset, config.data_dir, sample="nuclei")
    samples = seeded_subset(list(samples), config.subset, config.seed)   # seeded: a rerun gets the same images
    if len(samples) < 3:
        raise UserError(f"only {len(samples)} sample(s) found; training needs at least 3 (train, validation, test)")
    labels = [s.label for s in samples]
    stratify = labels if len(set(labels)) > 1 and None not in labels else None
    idx, groups, split_message = split_samples(samples, config.val_fraction, config.test_fraction, config.seed,
                                               stratify=stratify, split_by=config.split_by,
                                               allow_shared_groups=config.allow_shared_groups,
                                               near_duplicates=config.near_duplicates, split=config.split)
    channels = config.channels or infer_channels(samples)
    data = {"channels": channels, "n_samples": len(samples), "split_message": split_message,
            "split_kind": OFFICIAL if OFFICIAL in split_message else "random (seeded)"}
    if any(getattr(s, "roi", None) is not None for s in samples):   # DRIVE's field of view: test scores inside it
        from Functions.data.samples import ROI_NOTE

        data["roi"] = ROI_NOTE
    if any(groups):                                   # split.json records them; check-split reads them
        data["groups"] = {k: [groups[i] for i in ids] for k, ids in zip(("train", "val", "test"), idx)}
    if config.patch_size:                             # native resolution: Functions.engine.native
        from Functions.engine.native import prepare_patch_data

        return prepare_patch_data(config, data, {k: [samples[i] for i in ids]
                                                 for k, ids in zip(("train", "val", "test"), idx)}, channels,
                                  masks=masks)
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
        return build_model(config.model, input_shape=input_shape, num_classes=max(1, config.num_classes or 1),
                           **config.model_options)
    except ValueError as exc:
        raise UserError(f"--model {config.model} at --image-size {config.image_size}: {exc}") from None


def compile_model(model, config: TrainConfig):
    """Compile with the configured loss (averaged over deep-supervision heads), Adam and streaming metrics."""
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
        optimizer=make_optimizer(config),
        loss=loss,
        loss_weights=[1.0 / n_out] * n_out if n_out > 1 else None,
        weighted_metrics=metrics,    # same names; they honour sample weights (--distribute's zero-weight padding)
        jit_compile=(not config.run_eagerly and jit_allowed()
                     and resolve_jit_compile(config.jit_compile, model=model, config=config)),
        run_eagerly=config.run_eagerly,
    )
    return model


def resolve_jit_compile(setting: str | bool, model=None, config: TrainConfig | None = None) -> bool:
    """Whether to compile the train step with XLA; ``"auto"`` picks what measured fastest.

    * TensorFlow, given the ``model`` and its ``config`` (not distributed):
      :func:`Functions.engine.jit.auto_jit` times a few steps with and without
      XLA on the first run of this model / shape / batch / device, prints the
      choice with both figures and caches it per machine (``MIP_JIT_PROBE=0``
      switches the probe off; the rule below applies then).  On one shared
      2-core CPU XLA trained the U-Net 2x faster than the oneDNN graph, on
      another 2.2x slower; see ``benchmarks/LOG.md``.
    * JAX: always (JAX has no other graph mode).
    * TensorFlow without a probe: XLA on a GPU only.
    * PyTorch: eager (``torch.compile`` start-up outweighs its gain on short runs).
    """
    if setting != "auto":
        return bool(setting)
    import keras

    if (model is not None and config is not None and keras.backend.backend() == "tensorflow"
            and not getattr(config, "distribute", False)):
        from dataclasses import replace

        from Functions.engine.jit import auto_jit

        def compile_copy(copy, flag):
            compile_model(copy, replace(config, jit_compile=bool(flag)))

        return auto_jit(model, compile_copy, config.batch_size, report=lambda line: print(line, flush=True))

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
    the finished model (:meth:`score`: :func:`score_resized`, or
    :func:`Functions.engine.native.score_native` for patch training).
    """

    command = "train"
    config_class = TrainConfig

    def prepare(self, config, masks=None):
        """The split data; ``masks`` (a :class:`Functions.data.native.MaskSpec`): the targets of patch training
        when they are not binary (the multi-class and instance tasks pass theirs)."""
        return prepare_data(config, masks=masks)

    def settle(self, config, data):
        super().settle(config, data)
        self.chosen = " (auto)" if config.normalization == "auto" else ""
        if config.normalization == "auto":            # config.json records what was used, for predict/evaluate
            config.normalization = data.get("normalization", "minmax")

    def split_record(self, data):
        record = super().split_record(data)
        if data.get("split_kind"):
            record["split"] = data["split_kind"]
        if data.get("roi"):
            record["roi"] = data["roi"]
        if data.get("groups"):
            record["groups"] = data["groups"]
        return record

    def describe(self, config, data, model):
        if config.patch_size:
            from Functions.engine.native import describe_patches

            line = describe_patches(config, data, model)
        else:
            line = super().describe(config, data, model)
        head = f"{data['split_message']}\n" if data.get("split_message") else ""
        return head + line + f", normalisation {config.normalization}{getattr(self, 'chosen', '')}"

    def build(self, config, data):
        side = config.patch_size or config.image_size
        return build(config, (side, side, data["channels"]))

    def compile(self, model, config):
        compile_model(model, config)

    def monitor_name(self, model, monitor):
        return monitor_name(model, monitor)

    def batches(self, config, data, model, batch_size):
        from Functions.data.augmentation import get_augmenter
        from Functions.data.pipeline import make_batches
        from Functions.engine import distribute as dist

        if config.patch_size:
            from Functions.engine.native import patch_batches

            return patch_batches(config, data, model, batch_size)
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
        x_va, y_va, _ = data["val"] if not config.patch_size else (*data["preview"], None)
        k = min(4, len(x_va))
        k -= k % batch_multiple()                     # JAX data parallelism: equal slices per device
        k = 0 if process_count() > 1 else k           # several JAX hosts: predict() cannot gather outputs
        if not k:
            return []
        return [ProgressFigure(x_va[:k], y_va[:k], run_dir / "progress.png", every=config.progress_every,
                               threshold=config.threshold, total_epochs=config.epochs)]

    def score(self, model, config, data, run_dir):
        if config.patch_size:                         # trained on patches: Functions.engine.native
            from Functions.engine.native import score_native

            return score_native(model, config, data)
        return score_resized(model, config, data)


SEGMENTATION = SegmentationTask()


# ----------------------------------------------------------------------------- run settings
def load_run_config(run_dir: str | Path, flag: str = "--run") -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json`` (unknown keys ignored)."""
    return TrainConfig.load(run_dir, flag=flag)


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of an interrupted run, to pass to :func:`Functions.engine.tasks.train`
    with ``resume=True`` (any ``train`` run, 2-D or 3-D: :func:`Functions.engine.tasks.resume_config`)."""
    return resume_run_config(TrainConfig, run_dir)


def score_resized(model, config: TrainConfig, data: dict):
    """The scoring step of a model trained on resized images (:class:`~Functions.engine.finish.Scores`).

    A binary model's test metrics are computed on each test image at its original resolution
    (:func:`Functions.engine.native.score_test_native`: its masks resized back first); the figures at the
    training size are kept as ``dice_resized``/``iou_resized``.
    """
    from Functions.engine.finish import Scores
    from Functions.evaluation.evaluate import score_masks
    from Functions.inference.tta import predict_probabilities, probabilities_to_masks
    from Functions.metrics.segmentation import summarize
    from Functions.viz.plotting import plot_predictions

    x_te, y_te, s_te = data["test"] if data["test"][0] is not None else data["val"]
    split_name = "test" if data["test"][0] is not None else "validation"
    probs = predict_probabilities(model, x_te, batch_size=config.batch_size, tta=config.tta)
    preds = probabilities_to_masks(probs, config.threshold)
    table = score_masks(y_te, preds, names=[s.id for s in s_te])
    resized = {}
    if int(model.outputs[-1].shape[-1]) == 1:         # scored where papers score: each image at its own size
        from Functions.engine.native import score_test_native

        resized = {"dice_resized": float(table["dice"].mean()), "iou_resized": float(table["iou"].mean()),
                   "scored_at": "original resolution", "resized_to": f"{config.image_size}x{config.image_size}"}
        table = score_test_native(model, config, data, list(s_te))[0].assign(
            dice_resized=table["dice"].to_numpy())
    summary = summarize(table.drop(columns=["width", "height", "dice_resized"], errors="ignore"))
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}
    metrics.update(resized)
    if data.get("roi") and resized:                   # scored by score_samples inside each field-of-view mask
        metrics["roi"] = data["roi"]
    order = np.argsort([-d for d in table["dice"].to_numpy()])  # best first would hide failures: show spread
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]

    def predictions(run_dir):
        return plot_predictions(x_te[pick], y_te[pick], preds[pick], n=len(pick),
                                scores=table["dice"].to_numpy()[pick], titles=[s_te[i].id for i in pick],
                                path=run_dir / "predictions.png")

    also = f"; at {resized['resized_to']}: Dice {resized['dice_resized']:.4f}" if resized else ""
    return Scores(split=split_name, n_images=len(table), metrics=metrics,
                  after={"summary": summary_json(summary)}, tables={"test_metrics.csv": table},
                  figures=[predictions], where=", original resolution" if resized else "",
                  line=f"Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}{also}  ")


def reproduce_command(config: TrainConfig) -> str:
    """The ``python -m Functions train`` line that repeats this run (settings that differ from the defaults)."""
    return SEGMENTATION.reproduce(config)
