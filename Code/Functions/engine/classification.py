"""Image classification end to end: metrics, the ``classify-train`` job and ``classify-predict``.

:func:`train_classifier` takes a :class:`ClassifyConfig` and produces a run folder::

    run/
      config.json        every setting (the resolved channel count included)
      classes.json       class names in output order + the input recipe, read by classify-predict
      split.json         which image went to train / validation / test, with its class
      model.keras        the best model by the monitored validation metric
      history.csv        one row per epoch (loss, accuracy, validation loss and accuracy)
      metrics.json       accuracy, balanced accuracy, per-class precision/recall/F1/ROC-AUC,
                         macro F1, macro one-vs-rest ROC-AUC, confusion_matrix (rows = truth)
      predictions.csv    one row per test image: truth, prediction, class probabilities
      curves.png, confusion_matrix.png, roc.png, gradcam.png, report.md

Metrics are computed here in NumPy (tests check them against scikit-learn):

* accuracy = correct / all; balanced accuracy = mean recall over the classes
  present in the truth;
* per class: precision = TP / (TP + FP), recall = TP / (TP + FN),
  F1 = 2 P R / (P + R), each 0 when its denominator is 0; macro F1 = the
  unweighted mean of the per-class F1 over all classes;
* ROC-AUC one-vs-rest per class from ranks (Mann-Whitney U):
  ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the
  sum of the ranks of the positives' scores, tied scores sharing their mean
  rank; undefined (``None``) for a class absent from, or the only class in,
  the truth.  The macro ROC-AUC averages the defined ones.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
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


# ============================================================================= metrics








# ============================================================================= config
@dataclass
class ClassifyConfig:
    """Every setting of a classification run (the ``classify-train`` flags map one to one)."""

    data: str | None = None            # class-per-subfolder folder; None -> Data/sample/ultrasound
    dataset: str | None = None         # a registered dataset name with labels (Functions.datasets)
    data_dir: str | None = None        # where registered datasets live
    model: str = "resnet18"
    width: int | None = None           # base_filters of from-scratch ResNets; None -> DEFAULT_WIDTH
    model_options: dict = field(default_factory=dict)
    pretrained: bool | None = None     # None: the model's default (ImageNet for *_imagenet models)
    freeze_backbone: bool = False
    epochs: int = 30
    image_size: int = 128
    batch_size: int = 16
    learning_rate: float = 1e-3
    label_smoothing: float = 0.0
    class_weights: str = "balanced"    # "balanced" or "none"
    augment: str | None = "auto"       # "auto", a Functions.augmentation preset, or None/"none"
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    channels: int | None = None        # None: 1 for grayscale data, 3 for colour
    normalization: str = "minmax"
    clahe: bool = False
    monitor: str = "val_loss"
    gradcam_images: int = 8
    jit_compile: str | bool = "auto"   # XLA; "auto": on JAX only (see resolve_classifier_jit)
    workers: int = 2
    out: str | None = None
    verbose: int | str = "auto"
    subset: int | None = None          # use only N images (a seeded random choice) for quick experiments; None = all
    run_eagerly: bool = False          # no graph compilation: slower steps, no start-up wait (tiny runs, debugging)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.subset is None or self.subset >= 3, f"--subset must be at least 3 images, got {self.subset}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.image_size >= 32,
             f"--image-size must be at least 32 (ResNets downsample 32x), got {self.image_size}"),
            (self.learning_rate > 0, f"--lr must be positive, got {self.learning_rate}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.class_weights in ("balanced", "none"),
             f"--class-weights must be 'balanced' or 'none', got {self.class_weights!r}"),
            (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (self.width is None or self.width >= 1, f"--width must be at least 1, got {self.width}"),
            (self.gradcam_images >= 0, f"--gradcam-images must be 0 or more, got {self.gradcam_images}"),
            (not (self.data and self.dataset), "give either --data DIR or --dataset NAME, not both"),
            (self.val_fraction > 0, "--val-fraction must be above 0: the best model is chosen on validation images"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        from Functions.data.splits import split_indices

        try:
            split_indices(3, self.val_fraction, self.test_fraction)
        except ValueError as exc:
            raise UserError(f"--val-fraction/--test-fraction: {exc}") from None


# ============================================================================= data
def resolve_labelled_samples(config: ClassifyConfig):
    """``(samples, classes)`` for ``--data``, ``--dataset`` or the offline ultrasound sample."""
    from Functions.data.labelled import find_labelled_images, labelled_samples

    if config.dataset:
        try:
            from Functions.data import datasets
        except ModuleNotFoundError:
            raise UserError("--dataset needs Functions.datasets, which this installation lacks; "
                            "pass --data DIR with one subfolder per class") from None
        samples = datasets.load(config.dataset, data_dir=config.data_dir)
        return labelled_samples(samples, where=f"dataset {config.dataset!r}")
    if config.data:
        return find_labelled_images(config.data)
    from Functions.base.paths import sample_dir

    return find_labelled_images(sample_dir("ultrasound"))


def prepare_classification_data(config: ClassifyConfig) -> dict:
    """Find, split (stratified, seeded) and load the images.

    Returns ``{"classes", "channels", "n_samples", "train"/"val"/"test": (images (N, H, W, C) float32,
    labels (N,) int64, samples)}``.
    """
    from Functions.data.labelled import encode_labels, load_images
    from Functions.data.pipeline import infer_channels
    from Functions.data.splits import split_indices

    samples, classes = resolve_labelled_samples(config)
    if config.subset is not None and config.subset < len(samples):   # seeded, so a rerun gets the same images
        keep = np.sort(np.random.default_rng(config.seed).choice(len(samples), config.subset, replace=False))
        samples = [samples[i] for i in keep]
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
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
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


# ============================================================================= main job
def train_classifier(config: ClassifyConfig) -> dict:
    """Train, keep the best model by the monitored validation metric, evaluate on the test split, write the run.

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    """
    config.validate()
    augmenter = classification_augmenter(config.augment)
    data = prepare_classification_data(config)          # input errors surface before keras is even imported
    import keras
    import pandas as pd

    from Functions.data.labelled import balanced_class_weights, one_hot
    from Functions.base.paths import new_run_dir
    from Functions.data.pipeline import make_batches
    from Functions.base.runtime import set_seed
    from Functions.base.runs import write_json

    set_seed(config.seed)
    classes = data["classes"]
    k = len(classes)
    x_tr, y_tr, _ = data["train"]
    x_va, y_va, _ = data["val"]
    model = build_classifier(config, (config.image_size, config.image_size, data["channels"]), k)
    run_dir = new_run_dir(config.out, prefix=f"classify-{config.model}")
    write_json(run_dir / "config.json", {**asdict(config), "channels": data["channels"],
                                          "model_options": classifier_options(config)})
    write_json(run_dir / "classes.json", {"classes": classes, "image_size": config.image_size,
                                           "channels": data["channels"], "normalization": config.normalization,
                                           "clahe": config.clahe})
    write_json(run_dir / "split.json", {name: [{"image": str(s.image), "class": s.label} for s in data[name][2]]
                                         for name in ("train", "val", "test")})

    compile_classifier(model, config)
    train_batches = make_batches(x_tr, one_hot(y_tr, k), config.batch_size, shuffle=True, augmenter=augmenter,
                                 seed=config.seed, workers=config.workers)
    val_batches = make_batches(x_va, one_hot(y_va, k), config.batch_size, workers=1)
    weights = balanced_class_weights(y_tr, k) if config.class_weights == "balanced" else None
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(run_dir / "model.keras"), monitor=config.monitor,
                                        mode="min" if config.monitor.endswith("loss") else "max",
                                        save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TerminateOnNaN(),
    ]
    verbose = config.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    counts = ", ".join(f"{c} {n}" for c, n in zip(classes, np.bincount(y_tr, minlength=k)))
    print(f"Training {config.model} on {len(x_tr)} images ({counts}; {len(x_va)} validation, "
          f"{len(data['test'][2])} test), {x_tr.shape[1]}x{x_tr.shape[2]}x{x_tr.shape[3]}, "
          f"{model.count_params():,} parameters, backend {keras.backend.backend()}; run folder {run_dir}", flush=True)
    t0 = time.time()
    model.fit(train_batches, validation_data=val_batches, epochs=config.epochs, callbacks=callbacks,
              class_weight=weights, verbose=verbose)
    seconds = time.time() - t0
    hist = pd.read_csv(run_dir / "history.csv")
    if not (run_dir / "model.keras").exists():          # e.g. NaN from the first epoch: keep the last state
        model.save(run_dir / "model.keras")
    model.load_weights(run_dir / "model.keras")         # back to the best epoch (cheaper than rebuilding)
    metrics = finish_classification(model, config, data, run_dir, hist, seconds)
    return {"run_dir": run_dir, "metrics": metrics, "history": hist, "model": model}


def finish_classification(model, config: ClassifyConfig, data: dict, run_dir: Path, hist, seconds: float) -> dict:
    """Test metrics, predictions table, figures and report for a trained classifier."""
    import pandas as pd

    from Functions.viz.plotting import _plt, plot_confusion_matrix, plot_gradcam, plot_history, plot_roc
    from Functions.base.runs import write_json

    plt = _plt()
    classes = data["classes"]
    split_name = "test" if data["test"][2] else "val"
    x_te, y_te, s_te = data[split_name]
    probs = np.asarray(model.predict(x_te, batch_size=config.batch_size, verbose=0), dtype=np.float64)
    metrics = classification_metrics(y_te, probs, classes)
    metrics.update({"split": "test" if split_name == "test" else "validation", "epochs_trained": int(len(hist)),
                    "train_seconds": round(seconds, 1), "parameters": int(model.count_params())})
    write_json(run_dir / "metrics.json", metrics)
    table = pd.DataFrame({"image": [str(s.image) for s in s_te], "truth": [classes[i] for i in y_te],
                          "predicted": [classes[i] for i in probs.argmax(axis=1)]})
    for j, c in enumerate(classes):
        table[f"prob_{c}"] = probs[:, j]
    table.to_csv(run_dir / "predictions.csv", index=False)

    plt.close(plot_history(hist, run_dir / "curves.png", metrics=("loss", "accuracy")))
    plt.close(plot_confusion_matrix(metrics["confusion_matrix"], classes, path=run_dir / "confusion_matrix.png"))
    plt.close(plot_roc(y_te, probs, classes, path=run_dir / "roc.png"))
    if config.gradcam_images:
        pick = spread_by_class(y_te, config.gradcam_images)
        try:
            from Functions.inference.gradcam import GradCAM

            heat, explained = GradCAM(model)(x_te[pick], batch_size=config.batch_size)
        except ValueError as exc:                        # e.g. a model without a 4-D feature layer
            print(f"note: no Grad-CAM figure ({exc})", flush=True)
        else:
            titles = [f"{s_te[i].id}\ntrue {classes[y_te[i]]}, pred {classes[c]} ({probs[i, c]:.2f})"
                      for i, c in zip(pick, explained)]
            plt.close(plot_gradcam(x_te[pick], heat, titles=titles, path=run_dir / "gradcam.png"))
    write_classification_report(run_dir, config, data, metrics)
    print(f"Test ({metrics['split']}, {metrics['n_images']} images): accuracy {metrics['accuracy']:.4f}  "
          f"balanced accuracy {metrics['balanced_accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}  "
          f"ROC-AUC {_fmt(metrics['roc_auc'])}  ({seconds:.0f} s training) -> {run_dir}", flush=True)
    return metrics


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


def write_classification_report(run_dir: Path, config: ClassifyConfig, data: dict, metrics: dict) -> Path:
    """``report.md``: the shared settings/data/metrics/figures report plus class counts, per-class metrics
    and the confusion matrix."""
    from Functions.viz.reports import markdown_table, write_report

    classes = data["classes"]
    settings = {**asdict(config), "channels": data["channels"], "model_options": classifier_options(config)}
    path = write_report(run_dir, config=settings, data=data,
                        metrics=metrics, title=f"Classification run {Path(run_dir).name}")
    counts = [{"split": name, **{c: int(np.sum(data[name][1] == k)) for k, c in enumerate(classes)}}
              for name in ("train", "val", "test")]
    per_class = [{"class": c, **{m: (v if v is not None else float("nan")) for m, v in stats.items()}}
                 for c, stats in metrics["per_class"].items()]
    cm = [{"truth \\ predicted": c, **{p: n for p, n in zip(classes, row)}}
          for c, row in zip(classes, metrics["confusion_matrix"])]
    extra = ("\n## Classes\n\n" + markdown_table(counts)
             + f"\n## Per-class metrics ({metrics['split']})\n\n"
             + markdown_table(per_class, ["class", "precision", "recall", "f1", "roc_auc", "support"])
             + f"\n## Confusion matrix ({metrics['split']}, rows = truth)\n\n" + markdown_table(cm))
    text = path.read_text()
    marker = "\n## Figures\n"
    text = text.replace(marker, extra + marker, 1) if marker in text else text + extra
    path.write_text(text)
    return path


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# ============================================================================= prediction






