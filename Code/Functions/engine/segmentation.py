"""Training a segmentation model end to end: the ``train`` main job.

:func:`train` takes a :class:`TrainConfig` and produces a run folder::

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
from Functions.base.runs import summary_json, write_json
from Functions.base.runtime import has_gpu, peak_rss_mb
from Functions.data.instance_targets import BOUNDARY_MODES, instance_class_names
from Functions.data.sources import resolve_samples, seeded_subset
from Functions.engine.config import Check, RunConfig
from Functions.engine.fit import Task, best_epoch, fit, make_optimizer
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
    # multi-class and instance segmentation (Functions.engine.multiclass)
    task: str = "semantic"             # "semantic"; "instance": 3-class head + watershed, instance metrics
    num_classes: int | None = None     # None: inferred from the training masks' values (1 = binary)
    class_map: str | None = None       # "VALUE:CLASS,..." e.g. "0:0,128:1,255:2"; recorded when inferred
    class_weights: list | None = None  # one loss weight per class (cce, cce_dice, dice, focal)
    boundary_width: int = 1            # --task instance: boundary band in pixels (4-connected steps) per object
    boundaries: str = "all"            # --task instance: "all" rims; "touching": where objects meet; "both"
    object_types: int | None = None    # --task panoptic: object (nucleus) types T; None: classes.json or inferred
    stuff_classes: int | None = None   # --task panoptic: stuff classes S (ids T+1..T+S); None: as object_types
    panoptic_names: list | None = None  # --task panoptic: names of the T types then the S stuff classes
    # native resolution and group-aware splits (Functions.engine.native, Functions.data.splits)
    patch_size: int | None = None      # train on random P x P patches of full-size images; None: resize to image_size
    overlap: float = 0.5               # sliding-window overlap when whole images are predicted (patch training)
    foreground_fraction: float = 1 / 3  # share of training patches centred on a foreground pixel (nnU-Net)
    patches_per_image: int = 1         # random training patches per image and epoch
    patch_sampling: str = "image"      # "image": every image equally often; "area": in proportion to its pixels
    pad_patches: bool = True           # pad images smaller than a patch (image and mask reflected alike); False: error
    scale: float | None = None         # patch training: resample every image by this factor first
    spacing: float | None = None       # patch training: resample to this pixel size (formats that store spacing)
    max_memory: str | None = None      # budget for decoded training data ("4G", "0.5" of RAM); None: half the RAM
    split_by: str = "group"            # "group": patients / volumes / duplicates never in two splits; "image"
    allow_shared_groups: bool = False  # let --split-by image split data with known groups (to show the leakage)
    near_duplicates: bool = False      # also group near-identical pictures (perceptual hash) before splitting
    split: str = "auto"                # "auto": keep the layout's own split (training/ + testing/...); "official"; "random"

    MONITORS = ("dice", "iou", "mean_dice", "loss")

    def instance_names(self) -> tuple:
        """The classes ``--task instance`` trains for these ``boundaries``: 3, or 4 for ``contact`` (the 3 of
        the default while ``boundaries`` is not a valid mode, which its own check reports)."""
        return instance_class_names(self.boundaries if self.boundaries in BOUNDARY_MODES else "all")

    def checks(self) -> list[Check]:
        names = self.instance_names()
        return super().checks() + [
            (0 < self.threshold < 1, "threshold", f"must be between 0 and 1, got {self.threshold}"),
            (self.progress_every >= 0, "progress_every", f"must be 0 (off) or more, got {self.progress_every}"),
            (self.task in ("semantic", "instance", "panoptic"), "task",
             f"must be semantic, instance or panoptic, got {self.task!r}"),
            (self.object_types is None or self.object_types >= 1, "object_types",
             f"must be at least 1, got {self.object_types}"),
            (self.stuff_classes is None or self.stuff_classes >= 0, "stuff_classes",
             f"must be 0 or more, got {self.stuff_classes}"),
            (self.num_classes is None or self.num_classes >= 1, "num_classes",
             f"must be 1 (binary) or more, got {self.num_classes}"),
            (self.task != "instance" or self.num_classes in (None, len(names)), "num_classes",
             f"is {len(names)} ({', '.join(names)}) for --task instance with --boundaries {self.boundaries}, "
             f"got {self.num_classes}; leave --num-classes out"),
            (not self.class_weights or all(w >= 0 for w in self.class_weights), "class_weights",
             f"must be numbers >= 0, got {self.class_weights}"),
            (self.task != "instance" or not self.class_weights or len(self.class_weights) == len(names),
             "class_weights", f"needs one weight per class for --task instance with --boundaries {self.boundaries} "
             f"({', '.join(names)}), got {len(self.class_weights or [])}"),
            (isinstance(self.boundary_width, int) and self.boundary_width >= 1, "boundary_width",
             f"must be a whole number of pixels >= 1, got {self.boundary_width}"),
            (self.boundary_width == 1 or self.task == "instance", "boundary_width",
             "draws the boundary class of --task instance; add --task instance or leave it out"),
            (self.boundaries in BOUNDARY_MODES, "boundaries",
             f"must be one of {', '.join(BOUNDARY_MODES)}, got {self.boundaries!r}"),
            (self.boundaries == "all" or self.task == "instance", "boundaries",
             "draws the boundary class of --task instance; add --task instance or leave it out"),
        ] + native_checks(self)


def native_checks(config) -> list[Check]:
    """Checks of the native-resolution and split settings (patch size, overlap, resampling, memory, split)."""
    from Functions.data.native import parse_memory

    def memory_ok(value) -> bool:
        try:
            parse_memory(value)
        except UserError:
            return False
        return True

    patch = config.patch_size
    return [
        (not isinstance(patch, int) or patch >= 16, "patch_size", f"must be at least 16 pixels, got {patch}"),
        (0 <= config.overlap < 1, "overlap",
         f"must be in [0, 1) (the fraction of a tile shared with its neighbour, e.g. 0.5), got {config.overlap}"),
        (0 <= config.foreground_fraction <= 1, "foreground_fraction",
         f"must be between 0 and 1, got {config.foreground_fraction}"),
        (config.patches_per_image >= 1, "patches_per_image", f"must be at least 1, got {config.patches_per_image}"),
        (config.patch_sampling in ("image", "area"), "patch_sampling",
         f"must be image or area, got {config.patch_sampling!r}"),
        (config.scale is None or config.scale > 0, "scale", f"must be a positive factor such as 0.5, got {config.scale}"),
        (config.spacing is None or config.spacing > 0, "spacing",
         f"must be a positive pixel size such as 0.5 (mm), got {config.spacing}"),
        ((config.scale is None and config.spacing is None) or bool(patch), "scale",
         "and --spacing resample the full-size images of patch training; add --patch-size P"),
        (config.max_memory is None or memory_ok(config.max_memory), "max_memory",
         f"must be a size such as 4G or 500M, or a fraction of the available RAM such as 0.5, got {config.max_memory}"),
        (config.split_by in ("group", "image"), "split_by", f"must be group or image, got {config.split_by!r}"),
        (config.split in ("auto", "official", "random"), "split",
         f"must be auto, official or random, got {config.split!r}"),
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
    the finished model (:func:`finish_run`).
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

    def finish(self, model, config, data, run_dir, hist, seconds):
        return finish_run(model, config, data, run_dir, hist, seconds)


SEGMENTATION = SegmentationTask()


# ----------------------------------------------------------------------------- main job
def train(config: TrainConfig, *, resume: bool = False, callbacks: list | None = None,
          data: dict | None = None, files: dict | None = None) -> dict:
    """Train, keep the best model by ``config.monitor``, evaluate on the test split and write the run folder.

    ``resume=True`` continues the interrupted run in ``config.out`` (see
    :func:`resume_config`) from its last completed epoch, with the model and
    optimizer weights, learning rate, history, best value and callback
    counters it had then.  ``callbacks``: extra Keras callbacks (notebooks,
    tests).  ``data``: the output of :func:`prepare_data` for this config,
    when the caller already loaded it (``compare`` trains several models on it).  ``files``: more JSON files
    of the run folder (``{name: object}``, e.g. ``plan.json``).

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    Raises :class:`UserError` for bad settings or data (before any folder is
    made) and when the loss becomes NaN.

    3-D runs on volumes (``train --dims 3``) go through
    :func:`Functions.engine.volumes.train_volumes` instead.
    """
    from Functions.engine.multiclass import task_for   # multi-class / instance / binary (see that module)

    return fit(task_for(config, SEGMENTATION), config, resume=resume, callbacks=callbacks, data=data, files=files)


def load_run_config(run_dir: str | Path, flag: str = "--run") -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json`` (unknown keys ignored)."""
    return TrainConfig.load(run_dir, flag=flag)


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of an interrupted run, to pass to ``train(config, resume=True)``
    (``--dims 3`` runs: :func:`Functions.engine.volumes.resume_any`)."""
    return resume_run_config(TrainConfig, run_dir)


def finish_run(model, config: TrainConfig, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Test metrics, figures and report for a trained model.

    The test metrics are computed on each test image at its original resolution
    (:func:`Functions.engine.native.score_test_native`; a binary model trained on resized images has its
    masks resized back first); the figures at the training size are kept as ``dice_resized``/``iou_resized``.
    """
    import matplotlib.pyplot as plt

    if config.patch_size:
        from Functions.engine.native import finish_native

        return finish_native(model, config, data, run_dir, hist, seconds, SEGMENTATION.reproduce(config),
                             monitor_name(model, config.monitor))
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
    resized = {}
    if int(model.outputs[-1].shape[-1]) == 1:         # scored where papers score: each image at its own size
        from Functions.engine.native import score_test_native

        resized = {"dice_resized": float(table["dice"].mean()), "iou_resized": float(table["iou"].mean()),
                   "scored_at": "original resolution", "resized_to": f"{config.image_size}x{config.image_size}"}
        table = score_test_native(model, config, data, list(s_te))[0].assign(
            dice_resized=table["dice"].to_numpy())
    table.to_csv(run_dir / "test_metrics.csv", index=False)
    summary = summarize(table.drop(columns=["width", "height", "dice_resized"], errors="ignore"))
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}
    metrics.update(resized)
    if data.get("roi") and resized:                   # scored by score_samples inside each field-of-view mask
        metrics["roi"] = data["roi"]
    metrics.update({"split": split_name, "n_images": int(len(table)), "epochs_trained": int(len(hist)),
                    "train_seconds": round(seconds, 1), "parameters": int(model.count_params()),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    **best_epoch(hist, monitor_name(model, config.monitor), config.keep),
                    "summary": summary_json(summary)})
    write_json(run_dir / "metrics.json", metrics)
    plt.close(plot_history(hist, run_dir / "curves.png"))
    order = np.argsort([-d for d in table["dice"].to_numpy()])  # best first would hide failures: show spread
    pick = order[np.linspace(0, len(order) - 1, num=min(4, len(order))).astype(int)]
    plt.close(plot_predictions(x_te[pick], y_te[pick], preds[pick], n=len(pick),
                               scores=table["dice"].to_numpy()[pick], titles=[s_te[i].id for i in pick],
                               path=run_dir / "predictions.png"))
    write_report(run_dir, config=asdict(config), data=data, metrics=metrics,
                 command=SEGMENTATION.reproduce(config))
    where = ", original resolution" if resized else ""
    also = f"; at {resized['resized_to']}: Dice {resized['dice_resized']:.4f}" if resized else ""
    print(f"Test ({split_name}, {len(table)} images{where}): Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}"
          f"{also}  ({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


def reproduce_command(config: TrainConfig) -> str:
    """The ``python -m Functions train`` line that repeats this run (settings that differ from the defaults)."""
    return SEGMENTATION.reproduce(config)
