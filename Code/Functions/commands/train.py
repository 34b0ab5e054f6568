"""``python -m Functions train``: train a segmentation model (default: U-Net on the offline sample)."""

from __future__ import annotations

import argparse

from Functions.commands.options import (add_data_source, add_engine_arguments, given_options, hide_advanced,
                                        run_training)
from Functions.data.instance_targets import BOUNDARY_MODES
from Functions.data.preprocessing import NORMALIZATIONS

NAME = "train"
HELP = "train a segmentation model and report test Dice/IoU (no arguments: U-Net on the Data/ sample)"
DESCRIPTION = ("Train a segmentation model and report its test scores. The data set is fingerprinted first and a "
               "plan chooses the settings you leave open (printed before the first epoch, saved as plan.json; "
               "docs/planning.md); a recipe file (--config) overrides the plan and flags override both. Every run "
               "folder holds recipe.toml, which --config repeats. --help-all shows every flag.")
#: The flags `train --help` shows; `--help-all` shows the rest.
COMMON = ("data", "dataset", "task", "model", "time_budget", "epochs", "out", "config", "resume", "dims",
          "patch_size", "seed", "subset")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from Functions.engine.segmentation import TrainConfig

    d = TrainConfig()
    src = p.add_argument_group("data")
    add_data_source(src, "nuclei")
    src.add_argument("--image-size", type=int, default=d.image_size, metavar="N", help="resize to N x N (%(default)s)")
    src.add_argument("--channels", type=int, choices=(1, 3), help="force 1 or 3 input channels (default: from data)")
    src.add_argument("--normalization", default=d.normalization,
                     choices=("auto", *NORMALIZATIONS),
                     help="per-image intensity normalisation (%(default)s: dark_background when the training "
                          "masks show a mix of dark-on-light and light-on-dark objects that the background "
                          "brightness predicts, as in DSB2018; minmax otherwise)")
    src.add_argument("--clahe", action="store_true", help="apply CLAHE contrast equalisation before resizing")
    src.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F")
    src.add_argument("--test-fraction", type=float, default=d.test_fraction, metavar="F")
    src.add_argument("--augment", nargs="?", const="default", default=d.augment, metavar="PRESET",
                     help="augment training batches: none, light (flips and 90-degree turns), default, strong, "
                          "or the preset of an imaging modality: microscopy, endoscopy, ultrasound (no vertical "
                          "flips or 90-degree turns), radiograph, fundus (%(default)s; bare flag = default)")
    add_engine_arguments(p, d, model_help="architecture (%(default)s); see `architectures`")
    s = p.add_argument_group("segmentation")
    s.add_argument("--loss", default=d.loss, metavar="NAME", help="loss (%(default)s): bce, dice, bce_dice, jaccard, "
                   "focal, tversky, focal_tversky")
    s.add_argument("--threshold", type=float, default=d.threshold, help="probability threshold for masks (%(default)s)")
    s.add_argument("--tta", action="store_true",
                   help="score the test split on the mean prediction over the four flips (test-time augmentation)")
    s.add_argument("--progress-every", type=int, default=d.progress_every, metavar="N",
                   help="draw progress.png (predictions on fixed validation images) every N epochs; 0 = off "
                        "(%(default)s)")
    c = p.add_argument_group("classes and instances (Functions.engine.multiclass)")
    c.add_argument("--task", default=d.task, choices=("semantic", "instance", "panoptic"),
                   help="instance: a 3-class head (background, interior, boundary) from the instance masks "
                        "(DSB2018 masks/, name_mask_N files, 16-bit label maps in instances/), decoded by "
                        "watershed; test metrics DSB2018 score, AP50/75, F1, PQ, AJI and pixel Dice; panoptic: "
                        "instances/ + classes/ maps (object types, then stuff classes; classes.json names them), one "
                        "head over boundary, types and stuff, decoded by watershed + majority type; test mPQ, mPQ+, "
                        "bPQ, stuff IoU (%(default)s)")
    c.add_argument("--num-classes", type=int, metavar="K",
                   help="classes including background: 1 = binary (sigmoid), K >= 2 softmax over class maps "
                        "0..K-1 (default: inferred from the training masks' values, the mapping printed and saved)")
    c.add_argument("--class-map", metavar="V:C,...",
                   help="mask value -> class, e.g. 0:0,128:1,255:2 for 0/128/255 masks")
    c.add_argument("--class-weights", type=float, nargs="+", metavar="W",
                   help="one loss weight per class (with --loss cce, cce_dice, dice or focal)")
    c.add_argument("--boundary-width", type=int, default=d.boundary_width, metavar="PX",
                   help="--task instance: width in pixels of the boundary class drawn inside each object where "
                        "it meets another object or the background; 2 leaves a wider gap between touching "
                        "nuclei (%(default)s)")
    c.add_argument("--boundaries", choices=BOUNDARY_MODES, default=d.boundaries,
                   help="--task instance: all = every object's rim --boundary-width wide is boundary; touching = "
                        "only the band where an object meets (or comes within --boundary-width of) another, so "
                        "small isolated objects keep their whole interior; both = that band plus a 1-px rim on "
                        "every object; contact = that band and the rim as two classes (4 in all: background, "
                        "interior, rim, contact; --class-weights then takes 4 numbers) (%(default)s)")
    v = p.add_argument_group("volumes (--dims 3: 3-D models on NIfTI / DICOM volumes, Functions.engine.volumes)")
    v.add_argument("--dims", type=int, choices=(2, 3),
                   help="3: train a 3-D model (unet3d, attention_unet3d, resunet3d) on random patches of whole "
                        "volumes; 2: images or 2-D slices (default: 3 for Decathlon data - a dataset.json beside "
                        "imagesTr/ or --dataset msd-* - else 2). With 3, flags left at their 2-D defaults take "
                        "the 3-D ones (--model unet3d, --epochs 15, --batch-size 2, --augment 3d)")
    v.add_argument("--patch-size", type=int, nargs="+", metavar="N",
                   help="with --dims 3: training patch and sliding-window tile in voxels, D H W or one side for "
                        "all three (default: the median volume, at most 48 96 96, in multiples of 2**depth). "
                        "2-D: one side P - train on random P x P patches of the full-size images and predict "
                        "whole images by sliding window (native resolution; --image-size is then unused)")
    v.add_argument("--target-spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="resample every volume to this voxel size in mm (default: the training volumes' median)")
    v.add_argument("--intensity", default="auto", choices=("auto", "ct", "mri", "none"),
                   help="ct: Hounsfield window to [0, 1]; mri: percentile clip + z-score (%(default)s: from "
                        "dataset.json's modality, else from the intensities)")
    v.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"),
                   help="CT window in HU for --intensity ct (default 40 400: the soft-tissue window)")
    v.add_argument("--patches-per-volume", type=int, default=2, metavar="N",
                   help="random training patches per training volume and epoch (%(default)s)")
    v.add_argument("--overlap", type=float, default=0.5, metavar="F",
                   help="overlap of the sliding windows when test images or volumes are predicted, in [0, 1) "
                        "(%(default)s)")
    n = p.add_argument_group("native resolution and group-aware splits (2-D, with --patch-size P)")
    n.add_argument("--foreground-fraction", type=float, default=d.foreground_fraction, metavar="F",
                   help="share of training patches centred on a random foreground pixel (2-D patch training) or "
                        "labelled voxel (--dims 3) (default 1/3, nnU-Net)")
    n.add_argument("--patches-per-image", type=int, default=d.patches_per_image, metavar="N",
                   help="random training patches per image and epoch (%(default)s)")
    n.add_argument("--patch-sampling", choices=("image", "area"), default=d.patch_sampling,
                   help="image: draw patches from every image equally often (nnU-Net); area: in proportion to "
                        "each image's pixels, so large images are covered as densely as small ones (%(default)s)")
    n.add_argument("--pad-patches", action=argparse.BooleanOptionalAction, default=d.pad_patches,
                   help="pad images smaller than a patch: image and mask reflected alike, so a mirrored object "
                        "keeps its label (default: on; --no-pad-patches makes such images an error)")
    n.add_argument("--scale", type=float, metavar="F", help="resample every image by F before patch training "
                   "(0.5 halves each side); predictions are scored at the original size")
    n.add_argument("--spacing", type=float, metavar="MM",
                   help="resample images whose format stores a pixel spacing (DICOM, NIfTI) to this pixel size")
    n.add_argument("--max-memory", metavar="SIZE",
                   help="memory budget for the decoded training images (4G, 500M, or 0.5 = half the available "
                        "RAM; default half the available RAM); above it the images are decoded once into .npy "
                        "memory maps under <runs>/.cache and patches are read from disk")
    n.add_argument("--split-by", choices=("group", "image"), default=d.split_by,
                   help="group: samples of one patient, volume or (with --near-duplicates) picture never go to "
                        "two splits; image: split sample by sample (%(default)s)")
    n.add_argument("--split", choices=("auto", "official", "random"), default=d.split,
                   help="auto: keep the data set's own split where its layout gives one (DRIVE training/ + "
                        "test/, train/ + val/ + test/ folders, Decathlon imagesTs/ with labelsTs/; validation then "
                        "drawn from the official training part with --val-fraction), else a seeded random split; "
                        "official: require the layout's split; random: ignore it (%(default)s)")
    n.add_argument("--allow-shared-groups", action="store_true",
                   help="allow --split-by image on data with known groups (shows the leakage effect on purpose)")
    n.add_argument("--near-duplicates", action="store_true",
                   help="also group near-identical images (perceptual hash) before splitting")
    r = p.add_argument_group("plan and recipes (Functions.planning; docs/planning.md)")
    r.add_argument("--config", metavar="FILE",
                   help="a recipe file (TOML; YAML with PyYAML) of settings, keys = setting names (epochs, "
                        "patch_size...), flat or in the config's sections ([data], [optimisation], [patches]...; "
                        "docs/planning.md, Reading a config); flags override it, it overrides the plan; a run "
                        "folder's recipe.toml repeats that run")
    r.add_argument("--plan", action=argparse.BooleanOptionalAction, default=True,
                   help="fingerprint the data and let the plan choose the settings left open (default: on; "
                        "--no-plan: the built-in defaults)")
    hide_advanced(p, COMMON)


def config_from_args(args):
    from Functions.commands.options import config_from_args as build
    from Functions.engine.segmentation import TrainConfig

    return build(TrainConfig, args)


#: Parser destinations that are not settings of a run (a recipe may not hold them).
NOT_SETTINGS = ("config", "resume", "plan", "model_option", "cpu_devices", "command_argv")


def recipe_keys() -> set[str]:
    """The keys a recipe file may hold: every setting of a 2-D or 3-D run and every ``train`` flag's name."""
    from dataclasses import fields

    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.volumes import VolumeConfig

    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    dests = {a.dest for a in p._actions if a.dest != argparse.SUPPRESS}
    settings = {f.name for c in (TrainConfig, VolumeConfig) for f in fields(c)}
    return (settings | dests) - set(NOT_SETTINGS) - {"help", "help_all"}


def recipe_sections() -> dict[str, set[str]]:
    """The keys each ``[section]`` of a recipe file may hold (:meth:`~Functions.engine.config.RunConfig.sections`
    of the 2-D and the 3-D config together)."""
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.volumes import VolumeConfig

    sections: dict[str, set[str]] = {}
    for config_class in (TrainConfig, VolumeConfig):
        for name, keys in config_class.sections().items():
            sections.setdefault(name, set()).update(keys)
    return sections


def resolve(args):
    """The settings of a new run: defaults < plan < recipe file (``--config``) < flags given.

    Returns ``(args, config_class, plan)``: ``args`` with every setting resolved, the config class (2-D
    :class:`~Functions.engine.segmentation.TrainConfig` or 3-D :class:`~Functions.engine.volumes.VolumeConfig`)
    and the :class:`~Functions.planning.plan.Plan` (None with ``--no-plan``).
    """
    from Functions.base.errors import UserError
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.volumes import VolumeConfig, volume_defaults, wants_volumes

    given = given_options(add_arguments, getattr(args, "command_argv", None), args) - {"command_argv"}
    recipe = {}
    if args.config:
        from Functions.planning.recipes import read_recipe

        recipe = read_recipe(args.config, recipe_keys(), sections=recipe_sections())

    def chosen(name):                                 # flags > recipe > default, for what the plan reads
        return getattr(args, name) if name in given or name not in recipe else recipe[name]

    three = wants_volumes(chosen("dims"), chosen("data"), chosen("dataset"))
    values = dict(vars(args))
    plan = None
    if args.plan:
        from Functions.planning.plan import make_plan

        plan = make_plan(chosen("data"), chosen("dataset"), chosen("data_dir"), task=chosen("task"),
                         time_budget=chosen("time_budget"), dims=3 if three else 2, seed=chosen("seed"),
                         given=given | set(recipe) | ({"model_options"} if "model_option" in given else set()))
        planned = plan.values()
        options = dict(planned.pop("model_options", None) or {})
        values.update({k: v for k, v in planned.items() if k in values or k in VolumeConfig.__dataclass_fields__})
    else:
        options = {}
    options.update(recipe.pop("model_options", None) or {})
    values.update(recipe)
    values.update({k: getattr(args, k) for k in given})
    values["model_option"] = list({**options, **dict(args.model_option)}.items())
    if three:                                         # 3-D: its own defaults and task
        from Functions.engine.volumes import refuse_two_d_settings

        refuse_two_d_settings(values, given)          # a 3-D config has no 2-D setting: one line, not ignored
        refuse_two_d_settings(values, set(recipe) - given, source=f" of --config {args.config}")
        values = volume_defaults(values)
        if isinstance(values.get("patch_size"), int):
            values["patch_size"] = [values["patch_size"]]
        config_class = VolumeConfig
    else:
        values.pop("dims", None)
        config_class = TrainConfig
        patch = values.get("patch_size")
        if isinstance(patch, (list, tuple)):          # 2-D patch training: one side
            if len(patch) != 1:
                raise UserError(f"--patch-size takes one side for 2-D images (e.g. --patch-size 128), got "
                                f"{' '.join(map(str, patch))}; three sides are for --dims 3 volumes")
            values["patch_size"] = int(patch[0])
    return argparse.Namespace(**values), config_class, plan


def run(args) -> int:
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.tasks import resume_config, train       # 3-D (--dims 3) runs, else 2-D ones

    if args.resume:
        if args.config:
            from Functions.base.errors import UserError

            raise UserError(f"--resume continues {args.resume} with its saved settings; drop --config (start a "
                            "new run with --config FILE --out NEW_FOLDER to repeat a recipe)")
        if args.patch_size is not None and len(args.patch_size) == 1:   # the run's own --patch-size P
            args.patch_size = int(args.patch_size[0])
        return run_training(args, parser_factory=add_arguments, config_class=TrainConfig, train_fn=train,
                            resume_fn=resume_config)
    args, config_class, plan = resolve(args)
    files = None
    if plan is not None:
        print("\n".join(plan.lines()), flush=True)
        files = {"plan.json": plan.to_dict()}
    return run_training(args, parser_factory=add_arguments, config_class=config_class, train_fn=train,
                        resume_fn=resume_config, files=files)
