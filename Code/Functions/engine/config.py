"""Settings shared by every training run, and their checks.

:class:`RunConfig` holds the fields that segmentation (:class:`~Functions.engine.segmentation.TrainConfig`)
and classification (:class:`~Functions.engine.classification.ClassifyConfig`) runs share: where the data is,
the model, the optimisation schedule, the run folder and the engine's switches (resume state, NaN guard,
time budget, distribution, mixed precision).  Each task's config subclasses it, adds its own fields and
may change defaults (a dataclass subclass may re-declare a field with another default).

``validate()`` raises :class:`~Functions.base.errors.UserError` with ``field`` set to the offending
setting; the command line shows it as the matching flag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import ClassVar
from pathlib import Path

from Functions.base.errors import UserError
from Functions.base.runs import read_run_settings

#: Check tuples: ``(condition that must hold, field name, message after the field name)``.
Check = tuple[bool, str, str]


@dataclass
class RunConfig:
    """Every setting the training engine itself reads (the CLI flags map one to one)."""

    data: str | None = None            # folder of the data; None -> the offline sample of the task
    dataset: str | None = None         # a registered dataset name (Functions.data.datasets)
    data_dir: str | None = None        # where registered datasets live
    model: str = "unet"
    model_options: dict = field(default_factory=dict)
    epochs: int = 25
    image_size: int = 128
    batch_size: int = 8
    learning_rate: float = 2e-3
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    channels: int | None = None        # None: 1 for grayscale data, 3 for colour
    normalization: str = "minmax"
    clahe: bool = False
    augment: str | None = None         # an augmentation preset (Functions.data.augmentation) or None
    monitor: str = "val_loss"
    keep: str = "best"                 # the model kept: "best" epoch by ``monitor``, or the "last" epoch
    ema: float = 0.0                   # Polyak averaging: momentum of the weights' moving average per step; 0 = off
    jit_compile: str | bool = "auto"
    workers: int = 2
    out: str | None = None
    verbose: int | str = "auto"
    patience: int = 0                  # early stopping after N epochs without improvement; 0 = off
    reduce_lr_patience: int = 0        # halve the learning rate after N epochs without improvement; 0 = off
    reduce_lr_factor: float = 0.5
    tensorboard: bool = False          # TensorBoard logs in run/tensorboard
    mixed_precision: bool = False      # float16 compute on GPUs; bfloat16 on CPUs (runtime.set_precision)
    deterministic: bool = False        # also ask the backend for deterministic kernels (slower; disables XLA)
    distribute: bool = False           # data-parallel over all local devices (TF/JAX); batch_size is per replica
    subset: int | None = None          # use only N samples (a seeded random choice) for quick experiments; None = all
    run_eagerly: bool = False          # no graph compilation: slower steps, no start-up wait (tiny runs, debugging)
    lr_schedule: str = "constant"      # "cosine": warm-up + cosine decay (Functions.engine.schedules); "constant"
    time_budget: float | None = None   # minutes of training; fewer epochs when they would not fit; None = no limit

    #: Smallest ``image_size`` the task's models accept.
    MIN_IMAGE_SIZE = 8
    #: Quantities logged every epoch that ``monitor`` can name (each also with a ``val_`` prefix).
    MONITORS: ClassVar[tuple[str, ...]] = ("loss",)

    def checks(self) -> list[Check]:
        """The conditions every run must meet; subclasses add theirs to this list."""
        base = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        return [
            (self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}"),
            (self.subset is None or self.subset >= 3, "subset", f"must be at least 3 samples, got {self.subset}"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}"),
            (self.image_size >= self.MIN_IMAGE_SIZE, "image_size",
             f"must be at least {self.MIN_IMAGE_SIZE}, got {self.image_size}"),
            (self.learning_rate > 0, "learning_rate", f"must be positive, got {self.learning_rate}"),
            (self.channels in (None, 1, 3), "channels", f"must be 1 or 3, got {self.channels}"),
            (not (self.data and self.dataset), "data", "and dataset were both given; give one of them, not both"),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
             and self.val_fraction + self.test_fraction < 1, "val_fraction",
             f"and test_fraction must each be in [0, 1) and sum below 1, got "
             f"{self.val_fraction} and {self.test_fraction}"),
            (self.val_fraction > 0, "val_fraction",
             "must be above 0: the best model is chosen on validation images"),
            (self.patience >= 0, "patience", f"must be 0 (off) or more, got {self.patience}"),
            (self.reduce_lr_patience >= 0, "reduce_lr_patience",
             f"must be 0 (off) or more, got {self.reduce_lr_patience}"),
            (0 < self.reduce_lr_factor < 1, "reduce_lr_factor",
             f"must be between 0 and 1, got {self.reduce_lr_factor}"),
            (self.workers >= 0, "workers", f"must be 0 or more, got {self.workers}"),
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

    def validate(self) -> None:
        """Raise :class:`UserError` (``field`` set) for the first setting that is out of range."""
        for ok, name, message in self.checks():
            if not ok:
                raise UserError(message, field=name)

    @classmethod
    def from_dict(cls, values: dict):
        """A config from a ``config.json`` dict; keys this config does not know are ignored."""
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
        from dataclasses import asdict

        return json.dumps(asdict(self), indent=2, default=str)
