"""``python -m Functions classify-train``: train an image classifier (default: ResNet-18 on the ultrasound sample)."""

from __future__ import annotations

import argparse

from Functions.commands.options import add_data_source, add_engine_arguments, run_training

NAME = "classify-train"
HELP = ("train an image classifier on one-subfolder-per-class data and report accuracy, confusion matrix, "
        "ROC and Grad-CAM (no arguments: ResNet-18 on the Data/ ultrasound sample)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.classification import ClassifyConfig

    d = ClassifyConfig()
    src = p.add_argument_group("data")
    add_data_source(src, "ultrasound")
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
    add_engine_arguments(p, d, model_help="classifier (%(default)s): resnet18, resnet34, resnet50, resnet50_imagenet")
    c = p.add_argument_group("classification")
    c.add_argument("--width", type=int, metavar="N",
                   help="filters of the first stage of from-scratch ResNets (default 16 for fast CPU runs; "
                        "the paper uses 64)")
    c.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet weights for models that have them (default: yes for *_imagenet models); "
                        "they are downloaded once, which needs internet")
    c.add_argument("--freeze-backbone", action="store_true", help="train only the head of a pretrained model")
    c.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="E", help="(%(default)s)")
    c.add_argument("--class-weights", default=d.class_weights, choices=("balanced", "none"),
                   help="weight the loss so every class counts equally (%(default)s)")
    c.add_argument("--gradcam-images", type=int, default=d.gradcam_images, metavar="N",
                   help="test images shown in gradcam.png (%(default)s; 0 = none)")


def config_from_args(args):
    from Functions.commands.options import config_from_args as build
    from Functions.engine.classification import ClassifyConfig

    return build(ClassifyConfig, args)


def run(args) -> int:
    from Functions.engine.classification import ClassifyConfig, resume_config, train_classifier

    return run_training(args, parser_factory=add_arguments, config_class=ClassifyConfig, train_fn=train_classifier,
                        resume_fn=resume_config)
