"""The settings of a training run, as small sections, and their checks.

A run's config is built from **sections**, each a small dataclass of the settings of one concern with the
checks of those settings:

==============  ======================================================================  =====================
section         settings                                                                 used by
==============  ======================================================================  =====================
data            where the data is and how much of it is held out                        every run
images          how 2-D images are resized and normalised                               2-D runs, classifiers
optimisation    model, epochs, batch, learning rate and its schedule, model selection   every run
output          the run folder and the engine's switches (XLA, precision, devices)      every run
segmentation    loss, threshold, test-time flips, number of classes                     2-D and 3-D masks
splits          the data set's own split, groups and near-duplicates                    2-D segmentation
patches         native-resolution patch training                                        2-D segmentation
instances       instance / panoptic targets and classes                                 2-D segmentation
volumes         3-D patches, voxel spacing, intensities                                 3-D segmentation
classifier      ResNet width, pretrained weights, label smoothing, class weights        classifiers
==============  ======================================================================  =====================

The three config classes are siblings that take the sections they need
(:class:`~Functions.engine.segmentation.TrainConfig`,
:class:`~Functions.engine.volumes.VolumeConfig`,
:class:`~Functions.engine.classification.ClassifyConfig`): a 3-D config has no 2-D field at all.  Each section
is a mixin of the config class (a field the config class declares itself belongs to its ``SECTION``: the
``classifier`` settings, 2-D segmentation's ``progress_every``), so a setting is read flat - ``config.epochs``, ``config.patch_size`` - and a
config is one flat dataclass (``config.json`` holds flat keys, ``dataclasses.replace`` works).
:meth:`RunConfig.sections` names the section of every field (``recipe.toml``'s ``[optimisation]`` tables use
it); a config class may give its sections other defaults by declaring the field again.

``validate()`` raises :class:`~Functions.base.errors.UserError` with ``field`` set to the offending
setting; the command line shows it as the matching flag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from Functions.base.errors import UserError
from Functions.base.runs import read_run_settings

#: Check tuples: ``(condition that must hold, field name, message after the field name)``.
Check = tuple[bool, str, str]


class Section:
    """A group of settings; a config class mixes several in.  ``checks()`` chains through every section."""

    #: The section's name in recipe files (``[data]``) and in :meth:`RunConfig.sections`.
    SECTION: ClassVar[str] = ""

    def checks(self) -> list[Check]:
        return []


# ============================================================================= sections
@dataclass
class Data(Section):
    """Where the data is and how much of it is held out."""

    SECTION: ClassVar[str] = "data"

    data: str | None = None            # folder of the data; None -> the offline sample of the task
    dataset: str | None = None         # a registered dataset name (Functions.data.datasets)
    data_dir: str | None = None        # where registered datasets live
    subset: int | None = None          # use only N samples (a seeded random choice) for quick experiments; None = all
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    channels: int | None = None        # None: from the data (1 for grayscale, 3 for colour; MRI sequences)
    augment: str | None = None         # an augmentation preset (Functions.data.augmentation) or None

    def checks(self) -> list[Check]:
        return super().checks() + [
            (self.subset is None or self.subset >= 3, "subset", f"must be at least 3 samples, got {self.subset}"),
            (not (self.data and self.dataset), "data", "and dataset were both given; give one of them, not both"),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
             and self.val_fraction + self.test_fraction < 1, "val_fraction",
             f"and test_fraction must each be in [0, 1) and sum below 1, got "
             f"{self.val_fraction} and {self.test_fraction}"),
            (self.val_fraction > 0, "val_fraction",
             "must be above 0: the best model is chosen on validation images"),
        ]


@dataclass
class Images(Section):
    """How 2-D images are read: resized to ``image_size`` squares, normalised per image."""

    SECTION: ClassVar[str] = "images"
    #: Smallest ``image_size`` the task's models accept.
    MIN_IMAGE_SIZE: ClassVar[int] = 8

    image_size: int = 128
    normalization: str = "minmax"
    clahe: bool = False

    def checks(self) -> list[Check]:
        return super().checks() + [
            (self.image_size >= self.MIN_IMAGE_SIZE, "image_size",
             f"must be at least {self.MIN_IMAGE_SIZE}, got {self.image_size}"),
            (self.channels in (None, 1, 3), "channels", f"must be 1 or 3, got {self.channels}"),
        ]


@dataclass
class Optimisation(Section):
    """The model, how long and how fast it learns, and which epoch's model is kept."""

    SECTION: ClassVar[str] = "optimisation"
    #: Quantities logged every epoch that ``monitor`` can name (each also with a ``val_`` prefix).
    MONITORS: ClassVar[tuple[str, ...]] = ("loss",)

    model: str = "unet"
    model_options: dict = field(default_factory=dict)
    epochs: int = 25
    batch_size: int = 8
    learning_rate: float = 2e-3
    lr_schedule: str = "constant"      # "cosine": warm-up + cosine decay (Functions.engine.schedules); "constant"
    time_budget: float | None = None   # minutes of training; fewer epochs when they would not fit; None = no limit
    seed: int = 42
    monitor: str = "val_loss"
    keep: str = "best"                 # the model kept: "best" epoch by ``monitor``, or the "last" epoch
    ema: float = 0.0                   # Polyak averaging: momentum of the weights' moving average per step; 0 = off
    patience: int = 0                  # early stopping after N epochs without improvement; 0 = off
    reduce_lr_patience: int = 0        # halve the learning rate after N epochs without improvement; 0 = off
    reduce_lr_factor: float = 0.5

    def checks(self) -> list[Check]:
        base = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        return super().checks() + [
            (self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}"),
            (self.learning_rate > 0, "learning_rate", f"must be positive, got {self.learning_rate}"),
            (self.patience >= 0, "patience", f"must be 0 (off) or more, got {self.patience}"),
            (self.reduce_lr_patience >= 0, "reduce_lr_patience",
             f"must be 0 (off) or more, got {self.reduce_lr_patience}"),
            (0 < self.reduce_lr_factor < 1, "reduce_lr_factor",
             f"must be between 0 and 1, got {self.reduce_lr_factor}"),
            (self.lr_schedule in ("cosine", "constant"), "lr_schedule",
             f"must be cosine or constant, got {self.lr_schedule!r}"),
            (self.keep in ("best", "last"), "keep", f"must be best or last, got {self.keep!r}"),
            (0.0 <= self.ema < 1.0, "ema", f"must be 0 (off) or a momentum below 1 such as 0.99, got {self.ema}"),
            (self.time_budget is None or self.time_budget > 0, "time_budget",
             f"must be a positive number of minutes, got {self.time_budget}"),
            (base in self.MONITORS, "monitor",
             f"{self.monitor} is not logged; choose one of "
             + ", ".join(p + m for p in ("val_", "") for m in self.MONITORS)),
        ]


@dataclass
class Output(Section):
    """The run folder, what is shown while training, and the engine's switches."""

    SECTION: ClassVar[str] = "output"

    out: str | None = None
    verbose: int | str = "auto"
    workers: int = 2
    tensorboard: bool = False          # TensorBoard logs in run/tensorboard
    jit_compile: str | bool = "auto"
    run_eagerly: bool = False          # no graph compilation: slower steps, no start-up wait (tiny runs, debugging)
    mixed_precision: bool = False      # float16 compute on GPUs; bfloat16 on CPUs (runtime.set_precision)
    deterministic: bool = False        # also ask the backend for deterministic kernels (slower; disables XLA)
    distribute: bool = False           # data-parallel over all local devices (TF/JAX); batch_size is per replica

    def checks(self) -> list[Check]:
        return super().checks() + [
            (self.workers >= 0, "workers", f"must be 0 or more, got {self.workers}"),
        ]


@dataclass
class Segmentation(Section):
    """What every segmentation run (2-D or 3-D) sets: the loss, the mask threshold and the classes."""

    SECTION: ClassVar[str] = "segmentation"

    loss: str = "bce_dice"
    threshold: float = 0.5
    tta: bool = False                  # test metrics from the mean of the flipped predictions (evaluate/predict --tta)
    num_classes: int | None = None     # None: from the training masks' values (1 = binary)

    def checks(self) -> list[Check]:
        return super().checks() + [
            (0 < self.threshold < 1, "threshold", f"must be between 0 and 1, got {self.threshold}"),
            (self.num_classes is None or self.num_classes >= 1, "num_classes",
             f"must be 1 (binary) or more, got {self.num_classes}"),
        ]


@dataclass
class Splits(Section):
    """How 2-D samples are split: the layout's own split, and groups (patients, duplicates) kept together."""

    SECTION: ClassVar[str] = "splits"

    split: str = "auto"                # "auto": keep the layout's own split (training/ + testing/...); "official"; "random"
    split_by: str = "group"            # "group": patients / volumes / duplicates never in two splits; "image"
    allow_shared_groups: bool = False  # let --split-by image split data with known groups (to show the leakage)
    near_duplicates: bool = False      # also group near-identical pictures (perceptual hash) before splitting

    def checks(self) -> list[Check]:
        return super().checks() + [
            (self.split_by in ("group", "image"), "split_by", f"must be group or image, got {self.split_by!r}"),
            (self.split in ("auto", "official", "random"), "split",
             f"must be auto, official or random, got {self.split!r}"),
        ]


@dataclass
class Patches(Section):
    """2-D training on random patches of the full-size images (native resolution, ``Functions.engine.native``)."""

    SECTION: ClassVar[str] = "patches"

    patch_size: int | None = None      # train on random P x P patches of full-size images; None: resize to image_size
    overlap: float = 0.5               # sliding-window overlap when whole images are predicted (patch training)
    foreground_fraction: float = 1 / 3  # share of training patches centred on a foreground pixel (nnU-Net)
    patches_per_image: int = 1         # random training patches per image and epoch
    patch_sampling: str = "image"      # "image": every image equally often; "area": in proportion to its pixels
    pad_patches: bool = True           # pad images smaller than a patch (image and mask reflected alike); False: error
    scale: float | None = None         # patch training: resample every image by this factor first
    spacing: float | None = None       # patch training: resample to this pixel size (formats that store spacing)
    max_memory: str | None = None      # budget for decoded training data ("4G", "0.5" of RAM); None: half the RAM

    def checks(self) -> list[Check]:
        from Functions.data.native import parse_memory

        def memory_ok(value) -> bool:
            try:
                parse_memory(value)
            except UserError:
                return False
            return True

        patch = self.patch_size
        return super().checks() + [
            (not isinstance(patch, int) or patch >= 16, "patch_size", f"must be at least 16 pixels, got {patch}"),
            (0 <= self.overlap < 1, "overlap",
             f"must be in [0, 1) (the fraction of a tile shared with its neighbour, e.g. 0.5), got {self.overlap}"),
            (0 <= self.foreground_fraction <= 1, "foreground_fraction",
             f"must be between 0 and 1, got {self.foreground_fraction}"),
            (self.patches_per_image >= 1, "patches_per_image",
             f"must be at least 1, got {self.patches_per_image}"),
            (self.patch_sampling in ("image", "area"), "patch_sampling",
             f"must be image or area, got {self.patch_sampling!r}"),
            (self.scale is None or self.scale > 0, "scale", f"must be a positive factor such as 0.5, got {self.scale}"),
            (self.spacing is None or self.spacing > 0, "spacing",
             f"must be a positive pixel size such as 0.5 (mm), got {self.spacing}"),
            ((self.scale is None and self.spacing is None) or bool(patch), "scale",
             "and --spacing resample the full-size images of patch training; add --patch-size P"),
            (self.max_memory is None or memory_ok(self.max_memory), "max_memory",
             "must be a size such as 4G or 500M, or a fraction of the available RAM such as 0.5, got "
             f"{self.max_memory}"),
        ]


@dataclass
class Instances(Section):
    """Classes and objects of 2-D runs: class maps, instance (3-class + watershed) and panoptic targets."""

    SECTION: ClassVar[str] = "instances"

    task: str = "semantic"             # "semantic"; "instance": 3-class head + watershed; "panoptic": types + stuff
    class_map: str | None = None       # "VALUE:CLASS,..." e.g. "0:0,128:1,255:2"; recorded when inferred
    class_weights: list | None = None  # one loss weight per class (cce, cce_dice, dice, focal)
    boundary_width: int = 1            # --task instance: boundary band in pixels (4-connected steps) per object
    boundaries: str = "all"            # --task instance: "all" rims; "touching": where objects meet; "both"
    object_types: int | None = None    # --task panoptic: object (nucleus) types T; None: classes.json or inferred
    stuff_classes: int | None = None   # --task panoptic: stuff classes S (ids T+1..T+S); None: as object_types
    panoptic_names: list | None = None  # --task panoptic: names of the T types then the S stuff classes

    def instance_names(self) -> tuple:
        """The classes ``--task instance`` trains for these ``boundaries``: 3, or 4 for ``contact`` (the 3 of
        the default while ``boundaries`` is not a valid mode, which its own check reports)."""
        from Functions.data.instance_targets import BOUNDARY_MODES, instance_class_names

        return instance_class_names(self.boundaries if self.boundaries in BOUNDARY_MODES else "all")

    def checks(self) -> list[Check]:
        from Functions.data.instance_targets import BOUNDARY_MODES

        names = self.instance_names()
        return super().checks() + [
            (self.task in ("semantic", "instance", "panoptic"), "task",
             f"must be semantic, instance or panoptic, got {self.task!r}"),
            (self.object_types is None or self.object_types >= 1, "object_types",
             f"must be at least 1, got {self.object_types}"),
            (self.stuff_classes is None or self.stuff_classes >= 0, "stuff_classes",
             f"must be 0 or more, got {self.stuff_classes}"),
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
        ]


@dataclass
class Volumes(Section):
    """3-D runs (``train --dims 3``): patches of whole volumes at one voxel spacing, intensities by modality.

    ``patch_size`` ``[D, H, W]`` (None: the median volume shape, at most
    :data:`Functions.data.volumes.MAX_AUTO_PATCH`, rounded down to a multiple of ``2**depth``);
    ``target_spacing`` ``[z, y, x]`` mm (None: the median of the training volumes); ``intensity``
    ``auto``/``ct``/``mri``/``none``; ``window`` ``[center, width]`` HU for CT; ``patches_per_volume``
    training patches drawn from each training volume per epoch, ``foreground_fraction`` of them centred on a
    labelled voxel; ``overlap`` of the sliding windows at test time.
    """

    SECTION: ClassVar[str] = "volumes"

    dims: int = 3
    patch_size: list | None = None
    target_spacing: list | None = None
    intensity: str = "auto"
    window: list | None = None
    patches_per_volume: int = 2
    foreground_fraction: float = 1 / 3  # share of training patches centred on a labelled voxel (nnU-Net)
    overlap: float = 0.5
    split: str = "auto"                # "auto": keep Decathlon's imagesTs/ + labelsTs/ split; "official"; "random"

    def checks(self) -> list[Check]:
        from Functions.inference.volumes import INTENSITIES

        patch_ok = self.patch_size is None or (len(self.patch_size) in (1, 3)
                                               and all(int(p) >= 8 for p in self.patch_size))
        spacing_ok = self.target_spacing is None or (len(self.target_spacing) == 3
                                                     and all(float(s) > 0 for s in self.target_spacing))
        return super().checks() + [
            (self.channels is None or int(self.channels) >= 1, "channels",
             f"must be at least 1, got {self.channels}"),
            (self.dims == 3, "dims", f"must be 3 for volume training, got {self.dims}"),
            (patch_ok, "patch_size", f"must be three sides (D H W) or one, of at least 8 voxels, got "
                                     f"{self.patch_size}"),
            (spacing_ok, "target_spacing", f"must be three positive sizes in mm (z y x), got {self.target_spacing}"),
            (self.intensity in INTENSITIES, "intensity", f"must be one of {', '.join(INTENSITIES)}, "
                                                           f"got {self.intensity!r}"),
            (self.window is None or (len(self.window) == 2 and float(self.window[1]) > 0), "window",
             f"must be a center and a positive width in HU, got {self.window}"),
            (self.patches_per_volume >= 1, "patches_per_volume", f"must be at least 1, got {self.patches_per_volume}"),
            (0 <= self.foreground_fraction <= 1, "foreground_fraction",
             f"must be between 0 and 1, got {self.foreground_fraction}"),
            (0 <= self.overlap < 1, "overlap", f"must be in [0, 1), got {self.overlap}"),
            (self.augment in (None, "3d"), "augment", f"must be 3d or none for volumes, got {self.augment!r}"),
            (self.split in ("auto", "official", "random"), "split",
             f"must be auto, official or random, got {self.split!r}"),
        ]


# ============================================================================= the base of every config
@dataclass
class RunConfig(Output, Optimisation, Data):
    """The sections every run has: ``data``, ``optimisation`` and ``output`` (read ``config.epochs``, ...).

    A task's config adds the sections it needs (listed before this class, so that its fields follow these in
    ``config.json``) and may declare a field again with another default.
    """

    def validate(self) -> None:
        """Raise :class:`UserError` (``field`` set) for the first setting that is out of range."""
        for ok, name, message in self.checks():
            if not ok:
                raise UserError(message, field=name)

    @classmethod
    def sections(cls) -> dict[str, list[str]]:
        """``{section name: [field names]}`` in field order: the section that first declares each field
        (a field of the config class itself belongs to its ``SECTION``)."""
        out: dict[str, list[str]] = {}
        order = list(reversed(cls.__mro__))            # the sections first, then the classes that mix them
        for f in fields(cls):
            owner = next(k for k in order if f.name in vars(k).get("__dataclass_fields__", {}))
            out.setdefault(owner.SECTION, []).append(f.name)
        return out

    @classmethod
    def from_dict(cls, values: dict):
        """A config from a ``config.json`` dict (flat keys); keys this config does not know are ignored (a 3-D
        run's file from before the sibling configs also holds the 2-D settings)."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in values.items() if k in names})
        except TypeError as exc:
            raise UserError(f"the saved settings do not fit {cls.__name__} ({exc}); start a new run") from None

    @classmethod
    def load(cls, run_dir: str | Path, flag: str = "--run"):
        """The config saved in ``run_dir/config.json``."""
        return cls.from_dict(read_run_settings(run_dir, flag=flag))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)
