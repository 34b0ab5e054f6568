"""``python -m Functions classify-train``: train an image classifier (default: ResNet-18 on the ultrasound sample)."""

from __future__ import annotations

import argparse

NAME = "classify-train"
HELP = ("train an image classifier on one-subfolder-per-class data and report accuracy, confusion matrix, "
        "ROC and Grad-CAM (no arguments: ResNet-18 on the Data/ ultrasound sample)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.classification import ClassifyConfig
    from Functions.commands.train import parse_option

    d = ClassifyConfig()
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="DIR", help="folder with one subfolder of images per class; *_mask* files "
                     "are ignored, so the BUSI layout works as downloaded (default: Data/sample/ultrasound)")
    src.add_argument("--dataset", metavar="NAME", help="a registered dataset with class labels (e.g. busi)")
    src.add_argument("--data-dir", metavar="DIR", help="where registered datasets are stored (default $MIP_DATA_DIR)")
    src.add_argument("--image-size", type=int, default=d.image_size, metavar="N", help="resize to N x N (%(default)s)")
    src.add_argument("--channels", type=int, choices=(1, 3), help="force 1 or 3 input channels (default: from data)")
    src.add_argument("--normalization", default=d.normalization,
                     choices=("minmax", "standardize", "scale", "percentile", "none"),
                     help="per-image intensity normalisation (%(default)s)")
    src.add_argument("--clahe", action="store_true", help="apply CLAHE contrast equalisation before resizing")
    src.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F",
                     help="validation share of every class (%(default)s)")
    src.add_argument("--test-fraction", type=float, default=d.test_fraction, metavar="F",
                     help="test share of every class (%(default)s)")
    src.add_argument("--augment", default=d.augment, metavar="PRESET",
                     help="training augmentation: auto (flips left-right, small rotation/zoom/shift/intensity; "
                          "keeps up and down), none, light, default or strong (%(default)s)")
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--model", default=d.model, metavar="NAME",
                   help="classifier (%(default)s): resnet18, resnet34, resnet50, resnet50_imagenet")
    m.add_argument("--width", type=int, metavar="N",
                   help="filters of the first stage of from-scratch ResNets (default 16 for fast CPU runs; "
                        "the paper uses 64)")
    m.add_argument("--model-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="architecture option, repeatable (e.g. base_filters=32, dropout=0.2)")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet weights for models that have them (default: yes for *_imagenet models); "
                        "they are downloaded once, which needs internet")
    m.add_argument("--freeze-backbone", action="store_true", help="train only the head of a pretrained model")
    m.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="(%(default)s)")
    m.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="(%(default)s)")
    m.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate", metavar="LR",
                   help="Adam learning rate (%(default)s)")
    m.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="E", help="(%(default)s)")
    m.add_argument("--class-weights", default=d.class_weights, choices=("balanced", "none"),
                   help="weight the loss so every class counts equally (%(default)s)")
    m.add_argument("--monitor", default=d.monitor, help="validation metric that picks the best model (%(default)s; "
                   "or val_accuracy)")
    m.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction, default="auto",
                   help="compile steps with XLA (default: on JAX only; --jit can pay off for long TensorFlow runs)")
    m.add_argument("--seed", type=int, default=d.seed,
                   help="seed for split, initialisation, augmentation (%(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="new run folder (default runs/classify-<model>-<time>); "
                   "never overwritten")
    o.add_argument("--gradcam-images", type=int, default=d.gradcam_images, metavar="N",
                   help="test images shown in gradcam.png (%(default)s; 0 = none)")
    o.add_argument("--workers", type=int, default=d.workers, help="input-pipeline threads (%(default)s)")
    o.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")


def config_from_args(args):
    from Functions.engine.classification import ClassifyConfig

    fields = ClassifyConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and k != "model_options"}
    values["model_options"] = dict(args.model_option)
    if values.get("verbose") is None:
        values["verbose"] = "auto"
    if str(values.get("augment")).lower() == "none":
        values["augment"] = None
    return ClassifyConfig(**values)


def run(args) -> int:
    from Functions.engine.classification import train_classifier

    train_classifier(config_from_args(args))
    return 0
