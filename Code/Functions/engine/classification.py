"""Image classification end to end: the ``classify-train`` job, on the same engine as segmentation.

:func:`train_classifier` takes a :class:`ClassifyConfig` and trains through
:func:`Functions.engine.fit.fit` (so it has resume after a kill, the NaN guard,
the time budget, learning-rate schedules, ``--distribute`` and mixed precision
exactly as ``train``).  It produces a run folder::

    run/
      config.json        every setting (the resolved channel count included)
      classes.json       class names in output order + the input recipe, read by classify-predict
      split.json         which image went to train / validation / test, with its class
      model.keras        the best model by the monitored validation metric
      history.csv        one row per epoch (loss, accuracy, validation loss and accuracy, learning rate)
      metrics.json       accuracy, balanced accuracy, per-class precision/recall/F1/ROC-AUC,
                         macro F1, macro one-vs-rest ROC-AUC, confusion_matrix (rows = truth)
      predictions.csv    one row per test image: truth, prediction, class probabilities
      curves.png, confusion_matrix.png, roc.png, gradcam.png, report.md
      backup/            resume state while training runs (deleted when the run completes)

The metrics themselves are :mod:`Functions.metrics.classification`; prediction
with a finished run is :mod:`Functions.inference.classifier`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from Functions.base.errors import UserError
from Functions.data.sources import seeded_subset
from Functions.engine.config import Check, Images, RunConfig
from Functions.engine.fit import Task, fit, make_optimizer
from Functions.engine.fit import resume_config as resume_run_config
from Functions.metrics.classification import classification_metrics

#: Filters of the first stage of from-scratch ResNets when neither ``width`` nor a
#: ``base_filters`` model option is given: a quarter of the paper's 64, so a
#: ResNet-18 (0.7 M parameters) trains on a CPU in a minute or two.
DEFAULT_WIDTH = 16

#: ``augment="auto"``: mild changes that keep up and down (depth in ultrasound,
#: where shadows fall below a lesion): left-right flips, small rotations,
#: zoom and shifts, brightness and contrast.
AUTO_AUGMENT = dict(hflip=0.5, vflip=0.0, rotate90=0.0, rotate=0.3, max_angle=10.0, scale=0.3,
                    scale_range=(0.9, 1.1), shift=0.3, max_shift=0.05, brightness=0.3, max_brightness=0.1,
                    contrast=0.3, contrast_range=(0.85, 1.15))








# ============================================================================= config
@dataclass
class ClassifyConfig(Images, RunConfig):
    """Every setting of a classification run (the ``classify-train`` flags map one to one).

    Its sections (:mod:`Functions.engine.config`): ``data``, ``optimisation`` and ``output`` (every run's),
    ``images``, and its own ``classifier`` settings below; the defaults are the classification ones
    (``data=None`` -> ``Data/sample/ultrasound``).
    """

    SECTION: ClassVar[str] = "classifier"

    model: str = "resnet18"
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    augment: str | None = "auto"       # "auto", a Functions.data.augmentation preset, or None/"none"
    monitor: str = "val_loss"
    width: int | None = None           # base_filters of from-scratch ResNets; None -> DEFAULT_WIDTH
    pretrained: bool | None = None     # None: the model's default (ImageNet for *_imagenet models)
    freeze_backbone: bool = False
    label_smoothing: float = 0.0
    class_weights: str = "balanced"    # "balanced" or "none"
    gradcam_images: int = 8

    MIN_IMAGE_SIZE = 32                # ResNets downsample 32x
    MONITORS = ("loss", "accuracy")

    def checks(self) -> list[Check]:
        return super().checks() + [
            (0 <= self.label_smoothing < 1, "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}"),
            (self.class_weights in ("balanced", "none"), "class_weights",
             f"must be 'balanced' or 'none', got {self.class_weights!r}"),
            (self.width is None or self.width >= 1, "width", f"must be at least 1, got {self.width}"),
            (self.gradcam_images >= 0, "gradcam_images", f"must be 0 or more, got {self.gradcam_images}"),
        ]


# ============================================================================= data
def resolve_labelled_samples(config: ClassifyConfig):
    """``(samples, classes)`` for ``--data``, ``--dataset`` or the offline ultrasound sample."""
    from Functions.base.paths import sample_dir
    from Functions.data import datasets
    from Functions.data.labelled import find_labelled_images, labelled_samples

    if config.dataset:
        samples = datasets.load(config.dataset, data_dir=config.data_dir)
        return labelled_samples(samples, where=f"dataset {config.dataset!r}")
    return find_labelled_images(config.data or sample_dir("ultrasound"))


def prepare_classification_data(config: ClassifyConfig) -> dict:
    """Find, split (stratified, seeded) and load the images.

    Returns ``{"classes", "channels", "n_samples", "train"/"val"/"test": (images (N, H, W, C) float32,
    labels (N,) int64, samples)}``.
    """
    from Functions.data.labelled import encode_labels, load_images
    from Functions.data.pipeline import infer_channels
    from Functions.data.splits import split_indices

    samples, classes = resolve_labelled_samples(config)
    samples = seeded_subset(samples, config.subset, config.seed)    # seeded: a rerun gets the same images
    if len(samples) < 3:
        raise UserError(f"only {len(samples)} image(s) found; training needs at least 3 (train, validation, test)")
    labels = encode_labels([s.label for s in samples], classes)
    idx = split_indices(len(samples), config.val_fraction, config.test_fraction, config.seed, stratify=labels)
    channels = config.channels or infer_channels(samples)
    data = {"classes": classes, "channels": channels, "n_samples": len(samples)}
    for name, ids in zip(("train", "val", "test"), idx):
        subset = [samples[i] for i in ids]
        x = load_images(subset, config.image_size, channels, config.normalization, config.clahe) if subset else None
        data[name] = (x, labels[ids], subset)
    if data["train"][0] is None or data["val"][0] is None:
        raise UserError("the split left no training or validation images; add images or lower "
                        "--val-fraction/--test-fraction")
    return data


# ============================================================================= model
def build_classifier(config: ClassifyConfig, input_shape: tuple[int, int, int], num_classes: int):
    """The configured classifier; UserError for segmentation models or options the model lacks."""
    from Functions.models import build_model, model_info

    options = classifier_options(config)
    try:
        return build_model(config.model, input_shape=input_shape, num_classes=num_classes, **options)
    except ValueError as exc:
        raise UserError(f"--model {config.model}: {exc}") from None
    except UserError as exc:                              # e.g. ImageNet weights cannot be downloaded
        if options.get("weights", model_info(config.model)["defaults"].get("weights")) is None:
            raise
        raise UserError(f"{exc} (with classify-train: --no-pretrained)") from None


def classifier_options(config: ClassifyConfig) -> dict:
    """The builder options a config resolves to (``--model-option``, ``--width``, ``--pretrained``,
    ``--freeze-backbone``); UserError for segmentation models or options the model lacks."""
    from Functions.models import available_models, model_info

    names = available_models("classification")
    try:
        info = model_info(config.model)
    except ValueError:
        raise UserError(f"--model {config.model!r} is unknown; classifiers: {', '.join(names)}") from None
    if info["task"] != "classification":
        raise UserError(f"--model {config.model} is a {info['task']} model; classifiers: {', '.join(names)}")
    options = dict(config.model_options)
    defaults = info["defaults"]
    if "base_filters" in defaults and "base_filters" not in options:
        options["base_filters"] = config.width or DEFAULT_WIDTH
    elif config.width is not None and "base_filters" not in options:
        raise UserError(f"--width: {config.model} has a fixed width; leave --width out")
    pretrained_models = [n for n in names if "weights" in model_info(n)["defaults"]]
    if config.pretrained is not None:
        if "weights" in defaults:
            options["weights"] = "imagenet" if config.pretrained else None
        elif config.pretrained:
            raise UserError(f"--pretrained: {config.model} has no pretrained weights; "
                            f"use {', '.join(pretrained_models)}")
    if config.freeze_backbone:
        if "freeze_backbone" not in defaults:
            raise UserError(f"--freeze-backbone needs a pretrained backbone ({', '.join(pretrained_models)}); "
                            f"{config.model} is trained from scratch")
        options["freeze_backbone"] = True
    return options


def compile_classifier(model, config: ClassifyConfig):
    """Adam, categorical cross-entropy on one-hot targets (optional label smoothing), accuracy."""
    import keras

    from Functions.engine.distribute import jit_allowed

    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=resolve_classifier_jit(config.jit_compile) and jit_allowed() and not config.run_eagerly,
        run_eagerly=config.run_eagerly,
    )
    return model


def resolve_classifier_jit(setting: str | bool) -> bool:
    """``"auto"``: XLA on JAX, where an uncompiled step runs (and compiles) op by op; not on TensorFlow,
    where compiling a ResNet with XLA takes longer than it saves in a short CPU run; never on PyTorch."""
    if setting != "auto":
        return bool(setting)
    import keras

    return keras.backend.backend() == "jax"


def classification_augmenter(spec):
    """``"auto"`` -> :data:`AUTO_AUGMENT`; anything else as :func:`Functions.augmentation.get_augmenter`."""
    from Functions.data.augmentation import get_augmenter

    return get_augmenter(AUTO_AUGMENT if spec == "auto" else spec)


# ============================================================================= the task
class ClassificationTask(Task):
    """Whole-image classification for :func:`Functions.engine.fit.fit`."""

    command = "classify-train"
    config_class = ClassifyConfig

    def prepare(self, config):
        return prepare_classification_data(config)

    def split_record(self, data):
        return {name: [{"image": str(s.image), "class": s.label} for s in data[name][2]]
                for name in ("train", "val", "test")}

    def run_files(self, config, data):
        return {"classes.json": {"classes": data["classes"], "image_size": config.image_size,
                                 "channels": data["channels"], "normalization": config.normalization,
                                 "clahe": config.clahe}}

    def settle(self, config, data):
        super().settle(config, data)
        config.model_options = classifier_options(config)   # config.json records the options used

    def describe(self, config, data, model):
        classes, y_tr = data["classes"], data["train"][1]
        counts = ", ".join(f"{c} {n}" for c, n in zip(classes, np.bincount(y_tr, minlength=len(classes))))
        return super().describe(config, data, model) + f"; classes {counts}"

    def build(self, config, data):
        return build_classifier(config, (config.image_size, config.image_size, data["channels"]),
                                len(data["classes"]))

    def compile(self, model, config):
        compile_classifier(model, config)

    def batches(self, config, data, model, batch_size):
        from Functions.data.labelled import balanced_class_weights, one_hot
        from Functions.data.pipeline import make_batches
        from Functions.engine import distribute as dist

        k = len(data["classes"])
        x_tr, y_tr, _ = data["train"]
        x_va, y_va, _ = data["val"]
        part_tr, part_va = dist.process_shard(len(x_tr)), dist.process_shard(len(x_va))
        weights = None
        if config.class_weights == "balanced":          # as sample weights: they also survive --distribute padding
            per_class = balanced_class_weights(y_tr, k)
            weights = np.array([per_class[int(c)] for c in y_tr[part_tr]], dtype=np.float32)
        train = make_batches(x_tr[part_tr], one_hot(y_tr[part_tr], k), batch_size, shuffle=True,
                             augmenter=classification_augmenter(config.augment), seed=config.seed,
                             workers=config.workers, sample_weights=weights)
        val = make_batches(x_va[part_va], one_hot(y_va[part_va], k), batch_size, workers=1)
        return train, val

    def score(self, model, config, data, run_dir):
        return score_classifier(model, config, data, run_dir)


CLASSIFICATION = ClassificationTask()


def train_classifier(config: ClassifyConfig, *, resume: bool = False, callbacks: list | None = None,
                     data: dict | None = None) -> dict:
    """Train, keep the best model by the monitored validation metric, evaluate on the test split, write the run.

    ``resume=True`` continues the interrupted run in ``config.out`` (see :func:`resume_config`).
    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    """
    return fit(CLASSIFICATION, config, resume=resume, callbacks=callbacks, data=data)


def resume_config(run_dir: str | Path) -> ClassifyConfig:
    """The :class:`ClassifyConfig` of an interrupted run, to pass to ``train_classifier(config, resume=True)``."""
    return resume_run_config(ClassifyConfig, run_dir)


def score_classifier(model, config: ClassifyConfig, data: dict, run_dir: Path):
    """Test metrics, the predictions table and figures of a trained classifier
    (:class:`~Functions.engine.finish.Scores`)."""
    import pandas as pd

    from Functions.engine.finish import Scores
    from Functions.viz.plotting import plot_confusion_matrix, plot_gradcam, plot_roc

    classes = data["classes"]
    split_name = "test" if data["test"][2] else "val"
    x_te, y_te, s_te = data[split_name]
    probs = np.asarray(model.predict(x_te, batch_size=config.batch_size, verbose=0), dtype=np.float64)
    metrics = classification_metrics(y_te, probs, classes)
    split = "test" if split_name == "test" else "validation"
    table = pd.DataFrame({"image": [str(s.image) for s in s_te], "truth": [classes[i] for i in y_te],
                          "predicted": [classes[i] for i in probs.argmax(axis=1)]})
    for j, c in enumerate(classes):
        table[f"prob_{c}"] = probs[:, j]

    def gradcam(run_dir):
        pick = spread_by_class(y_te, config.gradcam_images)
        try:
            from Functions.inference.gradcam import GradCAM

            heat, explained = GradCAM(model)(x_te[pick], batch_size=config.batch_size)
        except ValueError as exc:                        # e.g. a model without a 4-D feature layer
            logging.getLogger("Functions").warning("no Grad-CAM figure (%s)", exc)
            return None
        titles = [f"{s_te[i].id}\ntrue {classes[y_te[i]]}, pred {classes[c]} ({probs[i, c]:.2f})"
                  for i, c in zip(pick, explained)]
        return plot_gradcam(x_te[pick], heat, titles=titles, path=run_dir / "gradcam.png")

    figures = [lambda run_dir: plot_confusion_matrix(metrics["confusion_matrix"], classes,
                                                     path=run_dir / "confusion_matrix.png"),
               lambda run_dir: plot_roc(y_te, probs, classes, path=run_dir / "roc.png")]
    return Scores(split=split, n_images=metrics["n_images"], metrics=metrics, tables={"predictions.csv": table},
                  figures=figures + ([gradcam] if config.gradcam_images else []), curves=("loss", "accuracy"),
                  title=f"Classification run {Path(run_dir).name}",
                  sections=report_sections(data, {**metrics, "split": split}),
                  line=f"accuracy {metrics['accuracy']:.4f}  balanced accuracy {metrics['balanced_accuracy']:.4f}  "
                       f"macro F1 {metrics['macro_f1']:.4f}  ROC-AUC {_fmt(metrics['roc_auc'])}  ")


def spread_by_class(y: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices taking the classes in turn (first image of each class, then the second, ...)."""
    y = np.asarray(y)
    queues = [list(np.flatnonzero(y == c)) for c in np.unique(y)]
    out: list[int] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(int(q.pop(0)))
    return np.array(sorted(out), dtype=np.int64)


def report_sections(data: dict, metrics: dict) -> str:
    """The classification parts of ``report.md``: class counts, per-class metrics and the confusion matrix."""
    from Functions.viz.reports import markdown_table

    classes = data["classes"]
    counts = [{"split": name, **{c: int(np.sum(data[name][1] == k)) for k, c in enumerate(classes)}}
              for name in ("train", "val", "test")]
    per_class = [{"class": c, **{m: (v if v is not None else float("nan")) for m, v in stats.items()}}
                 for c, stats in metrics["per_class"].items()]
    cm = [{"truth \\ predicted": c, **{p: n for p, n in zip(classes, row)}}
          for c, row in zip(classes, metrics["confusion_matrix"])]
    return ("\n## Classes\n\n" + markdown_table(counts)
            + f"\n## Per-class metrics ({metrics['split']})\n\n"
            + markdown_table(per_class, ["class", "precision", "recall", "f1", "roc_auc", "support"])
            + f"\n## Confusion matrix ({metrics['split']}, rows = truth)\n\n" + markdown_table(cm))


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# ============================================================================= prediction






