"""Training a 3-D segmentation model on volumes: ``train --dims 3``.

The loop (callbacks, resume, time budget, NaN guard, best model, distribution)
is :func:`Functions.engine.fit.fit`, the same as for 2-D images; this module
is the :class:`VolumeTask` on it - what is particular to volumes:

* **data** (:func:`prepare_volumes`): a folder of volumes
  (:func:`Functions.data.volumes.find_volumes`: a Medical Segmentation
  Decathlon task folder or ``images/`` + ``labels/``), a registered data set
  (``--dataset msd-hippocampus``) or the offline sample ``Data/sample/volumes``.
  Split **by volume** (all of a patient's series on one side when DICOM
  headers tell them apart: ``PatientID``, else ``StudyInstanceUID``, else
  ``SeriesInstanceUID``, :func:`Functions.data.volumes.volume_group`), each
  volume reoriented to RAS, resampled to
  one voxel spacing (``target_spacing``; default the median of the training
  volumes, as nnU-Net does) and normalised (CT window or MRI z-score, from
  the ``modality`` of ``dataset.json`` or the intensities);
* **batches**: random patches of ``patch_size`` with foreground oversampling
  (:func:`Functions.data.patches.patch_dataset`, ``foreground_fraction`` -
  by default one third - of the patches centred on a labelled voxel) and 3-D
  augmentation
  (:class:`Functions.data.augmentation3d.Augment3D`); validation on a fixed
  set of patches (two per validation volume, drawn once from the seed);
* **scoring** (:func:`score_volumes`): each test volume is predicted whole
  with Gaussian-weighted sliding windows, mapped back onto its file's voxel
  grid, written to ``predictions/<id>.nii.gz`` (the input's affine and
  header) and scored against its label file: Dice, IoU, HD95 and ASSD in
  millimetres, one row per volume in ``test_metrics.csv``.

The run folder is the 2-D one (``config.json``, ``split.json``, ``model.keras``,
``history.csv``, ``metrics.json``, ``curves.png``, ``predictions.png`` - three
orthogonal planes per test volume - and ``report.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import summary_json
from Functions.data.volumes import auto_patch
from Functions.engine.config import RunConfig, Segmentation, Volumes
from Functions.engine.fit import Task, fit
from Functions.engine.fit import resume_config as resume_run_config
from Functions.engine.segmentation import TrainConfig, compile_model, monitor_name



@dataclass
class VolumeConfig(Volumes, Segmentation, RunConfig):
    """Every setting of a 3-D run (``train --dims 3``): the ``data``, ``optimisation`` and ``output`` sections of
    every run, ``segmentation`` (loss, threshold, classes) and ``volumes`` (:mod:`Functions.engine.config`).

    A sibling of the 2-D :class:`~Functions.engine.segmentation.TrainConfig`, not a subclass: it has none of the
    2-D settings (image size, normalisation, 2-D patches, instances...), so none can be accepted and ignored;
    ``train`` refuses them for a 3-D run with one line (:func:`refuse_two_d_settings`).  ``num_classes`` is set
    from the labels.
    """

    model: str = "unet3d"
    epochs: int = 15
    batch_size: int = 2
    learning_rate: float = 3e-3
    augment: str | None = "3d"           # "3d": Augment3D defaults; None: no augmentation
    monitor: str = "val_dice"
    lr_schedule: str = "cosine"

    MONITORS = ("dice", "iou", "mean_dice", "loss")

    @classmethod
    def from_dict(cls, values: dict):
        """As :meth:`RunConfig.from_dict`; a ``config.json`` written before 3-D runs shared the 2-D field
        ``foreground_fraction`` names it ``foreground_probability``, which is read as that field."""
        values = dict(values)
        if "foreground_probability" in values:
            values["foreground_fraction"] = values.pop("foreground_probability")
        return super().from_dict(values)


#: Why 3-D runs do not read a 2-D setting (the settings themselves are the fields of
#: :class:`~Functions.engine.segmentation.TrainConfig` that :class:`VolumeConfig` lacks).
TWO_D_REASONS = {
    "image_size": "volumes keep their voxels at --target-spacing; --patch-size sets the model's input",
    "normalization": "volume intensities follow --intensity (and --window for CT)",
    "clahe": "volume intensities follow --intensity (and --window for CT)",
    "patches_per_image": "use --patches-per-volume",
    "patch_sampling": "every training volume gives --patches-per-volume patches",
    "pad_patches": "volumes smaller than a patch are always padded",
    "scale": "use --target-spacing Z Y X",
    "spacing": "use --target-spacing Z Y X",
    "max_memory": "volumes are held in memory",
    "split_by": "volumes are split by patient (DICOM) or by volume",
    "allow_shared_groups": "volumes are split by patient (DICOM) or by volume",
    "near_duplicates": "volumes are split by patient (DICOM) or by volume",
    "class_map": "the label volumes' values are the classes",
    "class_weights": "3-D runs weigh every class alike",
    "progress_every": "3-D runs draw no progress.png",
}

#: What a 3-D run's ``config.json`` / ``recipe.toml`` recorded for these 2-D settings while
#: :class:`VolumeConfig` still carried them (other 2-D settings: the 2-D default).
OLD_THREE_D_VALUES = {"normalization": "none", "progress_every": 0}


def two_d_settings() -> list[str]:
    """The settings of a 2-D run that a 3-D run does not have: the difference of the two config classes."""
    three = {f.name for f in fields(VolumeConfig)}
    return [f.name for f in fields(TrainConfig) if f.name not in three]


def refuse_two_d_settings(values: dict, names, source: str = "") -> None:
    """One :class:`UserError` (``field`` set) for the first of ``names`` that is a 2-D setting whose value in
    ``values`` is not the one a 3-D run leaves it at (its 2-D default, or what old 3-D runs recorded).
    ``source``: where the value came from, e.g. ``" (from --config r.toml)"``."""
    default = TrainConfig()
    for name in two_d_settings():
        if name not in names:
            continue
        value = values.get(name)
        if value == getattr(default, name) or (name in OLD_THREE_D_VALUES and value == OLD_THREE_D_VALUES[name]):
            continue
        why = TWO_D_REASONS.get(name, "3-D runs are semantic segmentation")
        raise UserError(f"is a 2-D setting that 3-D runs do not read ({why}); leave it out{source}", field=name)


# ----------------------------------------------------------------------------- data
def volume_source(config: VolumeConfig):
    """The :class:`~Functions.data.volumes.VolumeDataset` named by ``config`` (folder, registered set or sample)."""
    from Functions.base.paths import sample_dir
    from Functions.data.volumes import find_volumes

    if config.dataset:
        from Functions.data import datasets

        root = datasets.locate(config.dataset, config.data_dir)
        if root is None:
            raise UserError(f"dataset {config.dataset} is not installed; run `python -m Functions download "
                            f"{config.dataset}` first (or give --data-dir where it is)", field="dataset")
        return find_volumes(root)
    if config.data:
        return find_volumes(config.data)
    return find_volumes(sample_dir("volumes"))


def prepare_volumes(config: VolumeConfig, dataset=None) -> dict:
    """Split, read, resample and normalise the volumes.

    Returns a dict with ``train``/``val``/``test`` as ``(images, labels, cases)``
    (lists of ``(D, H, W, C)`` float32 and ``(D, H, W, 1)`` uint8 arrays and
    their :class:`~Functions.data.volumes.VolumeCase`), ``channels``,
    ``num_classes``, ``spacing`` (the target spacing), ``intensity``,
    ``patch`` and ``n_samples``.
    """
    from Functions.data.sources import seeded_subset
    from Functions.data.splits import OFFICIAL, dominant_group, has_layout_split, official_split, split_indices
    from Functions.data.volumes import read_case, read_volume, volume_group
    from Functions.inference.volumes import intensity_for, normalize

    dataset = dataset if dataset is not None else volume_source(config)
    cases = dataset.labelled
    cases = seeded_subset(cases, config.subset, config.seed)
    if len(cases) < 3:
        raise UserError(f"only {len(cases)} labelled volume(s) in {dataset.root}; training needs at least 3 "
                        "(train, validation, test)")
    groups = [volume_group(c.image) or f"volume:{c.id}" for c in cases]
    use = groups if len(set(groups)) < len(groups) else None
    tags = [c.split for c in cases]
    if config.split == "official" and not has_layout_split(tags):
        raise UserError(f"--split official: {dataset.root} gives no labelled test part (Decathlon imagesTs/ with "
                        "labelsTs/); use --split random or --split auto")
    if config.split != "random" and has_layout_split(tags):
        idx, how = official_split(tags, config.val_fraction, config.test_fraction, config.seed, groups=use)
        message = f"Split: {OFFICIAL}: {how}"
    else:
        idx = split_indices(len(cases), config.val_fraction, config.test_fraction, config.seed, groups=use)
        message = "Split: random (seeded)"
    if dataset.split_note:
        message += f"; {dataset.split_note}"
    if not len(idx[0]) or not len(idx[1]):
        top = dominant_group(groups)
        if top is not None:
            raise UserError(f"the split left no training or validation volumes: one group ({top[0]}) holds {top[1]} "
                            f"of {len(cases)} volumes and a group never spans two splits; give the series their "
                            "patients' own PatientIDs (blank ones fall back to StudyInstanceUID, then "
                            "SeriesInstanceUID)")
        raise UserError("the split left no training or validation volumes; lower --val-fraction/--test-fraction")
    channels = dataset.channels if dataset.modality else (config.channels or 1)
    multi = channels > 1
    spacing = config.target_spacing
    if spacing is None:   # the median spacing of the training volumes, after reorientation (headers only)
        spacings = [read_volume(cases[i].image, channels=multi).spacing for i in idx[0]]
        spacing = [float(s) for s in np.median(np.array(spacings), axis=0)]
    spacing = tuple(float(s) for s in spacing)
    modality = dataset.modality.get(0) if dataset.modality else None
    data: dict = {"channels": channels, "n_samples": len(cases), "spacing": spacing, "split_message": message,
                  "split_kind": OFFICIAL if OFFICIAL in message else "random (seeded)"}
    intensity = config.intensity
    labels_seen: set = set()
    for name, ids in zip(("train", "val", "test"), idx):
        images, labels, subset = [], [], []
        for i in ids:
            image, label = read_case(cases[i].image, cases[i].label, channels=multi, spacing=spacing)
            if intensity == "auto":
                intensity = intensity_for(modality, image.array)
            images.append(normalize(image.array, intensity, config.window))
            labels.append(label.array)
            labels_seen |= set(np.unique(label.array).tolist())
            subset.append(cases[i])
        data[name] = (images, labels, subset)
    n_labels = max(len(dataset.labels), max(labels_seen) + 1) if dataset.labels else max(labels_seen) + 1
    data["num_classes"] = 1 if n_labels <= 2 else int(n_labels)
    data["intensity"] = intensity
    depth = int(config.model_options.get("depth", 3))
    patch = list(config.patch_size or [])
    data["patch"] = tuple(int(p) for p in (patch * 3 if len(patch) == 1 else patch)) if patch else \
        auto_patch([im.shape[:3] for im in data["train"][0]], depth)
    return data


# ----------------------------------------------------------------------------- the task
class VolumeTask(Task):
    """3-D segmentation on patches for :func:`Functions.engine.fit.fit` (see the module docstring)."""

    command = "train"
    config_class = VolumeConfig

    def prepare(self, config):
        return prepare_volumes(config)

    def settle(self, config, data):
        config.channels = data["channels"]
        config.num_classes = data["num_classes"]
        config.intensity = data["intensity"]
        config.target_spacing = [float(s) for s in data["spacing"]]
        config.patch_size = [int(p) for p in data["patch"]]

    def describe(self, config, data, model):
        n = {k: len(data[k][2]) for k in ("train", "val", "test")}
        head = f"{data['split_message']}\n" if data.get("split_message") else ""
        return head + (f"Training {config.model} on {n['train']} volumes ({n['val']} validation, {n['test']} test), "
                f"patches {'x'.join(map(str, data['patch']))}, spacing "
                f"{' x '.join(f'{s:g}' for s in data['spacing'])} mm, intensity {data['intensity']}, "
                f"{model.count_params():,} parameters")

    def split_record(self, data):
        record = super().split_record(data)
        if data.get("split_kind"):
            record["split"] = data["split_kind"]
        return record

    def build(self, config, data):
        from Functions.models import build_model
        from Functions.models.registry import get_spec

        try:
            spec = get_spec(config.model)
        except ValueError as exc:
            raise UserError(str(exc), field="model") from None
        if spec.dims != 3:
            from Functions.models import available_models

            raise UserError(f"{config.model} is a 2-D model; volumes need one of "
                            f"{', '.join(available_models('segmentation', dims=3))}", field="model")
        shape = (*data["patch"], data["channels"])
        try:
            return build_model(config.model, shape, data["num_classes"], **config.model_options)
        except ValueError as exc:
            raise UserError(f"{exc}", field="patch_size") from None

    def compile(self, model, config):
        compile_model(model, config)

    def monitor_name(self, model, monitor):
        return monitor_name(model, monitor)

    def batches(self, config, data, model, batch_size):
        from Functions.data.augmentation3d import Augment3D
        from Functions.data.patches import patch_dataset, sample_patch
        from Functions.data.pipeline import make_batches

        images, labels, _ = data["train"]
        n_out = len(model.outputs)
        train = patch_dataset(images, labels, data["patch"], batch_size=batch_size,
                              patches_per_epoch=len(images) * config.patches_per_volume,
                              foreground_probability=config.foreground_fraction,
                              augmenter=Augment3D() if config.augment else None, seed=config.seed,
                              num_outputs=n_out, workers=config.workers)
        xs, ys = [], []
        for i, (im, lab) in enumerate(zip(*data["val"][:2])):
            for k, fg in enumerate((1.0, 0.0)):      # one patch on the structure, one anywhere
                rng = np.random.default_rng([config.seed, i, k, 17])
                x, y = sample_patch(im, lab, data["patch"], rng, fg)
                xs.append(x)
                ys.append(y.reshape(*data["patch"], 1))
        val = make_batches(np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32), batch_size,
                           num_outputs=n_out, workers=1)
        return train, val

    def score(self, model, config, data, run_dir):
        return score_volumes(model, config, data, run_dir)

    def reproduce(self, config):
        """``python -m Functions train --dims 3 ...``: the settings that differ from a 2-D run's defaults."""
        from Functions.base.runs import reproduce_command

        flat = replace(config, num_classes=None, **{k: " ".join(f"{v:g}" for v in getattr(config, k))
                                                    for k in ("patch_size", "target_spacing", "window")
                                                    if getattr(config, k)})
        return reproduce_command(self.command, flat, TrainConfig())


VOLUMES = VolumeTask()


def train_volumes(config: VolumeConfig, *, resume: bool = False, callbacks: list | None = None,
                  data: dict | None = None, files: dict | None = None) -> dict:
    """Train a 3-D model (``train --dims 3``); same contract as :func:`Functions.engine.tasks.train`.

    Returns ``{"run_dir", "metrics", "history", "model"}``.
    """
    return fit(VOLUMES, config, resume=resume, callbacks=callbacks, data=data, files=files)


def resume_volume_config(run_dir) -> VolumeConfig:
    """The :class:`VolumeConfig` of an interrupted 3-D run (``train --resume RUN`` of a ``--dims 3`` run)."""
    return resume_run_config(VolumeConfig, run_dir)


# ----------------------------------------------------------------------------- scoring
def score_volumes(model, config: VolumeConfig, data: dict, run_dir: Path):
    """Sliding-window predictions of the test volumes written as NIfTI (``run_dir/predictions/``), scored in mm
    (:class:`~Functions.engine.finish.Scores`)."""
    from Functions.engine.finish import Scores
    from Functions.evaluation.volumes import score_cases
    from Functions.inference.volumes import VolumeSettings
    from Functions.metrics.segmentation import summarize
    from Functions.viz.volumes import plot_volume_predictions

    cases = data["test"][2] or data["val"][2]
    split_name = "test" if data["test"][2] else "validation"
    table, examples = score_cases(model, VolumeSettings.from_config(asdict(config)), cases,
                                  out_dir=run_dir / "predictions", tta=config.tta, batch_size=config.batch_size)
    summary = summarize(table.drop(columns=["id", "spacing_mm"]))
    metrics = {k: float(summary.loc["mean", k]) for k in summary.columns}

    def predictions(run_dir):
        return plot_volume_predictions([e[:3] for e in examples[:4]], [c.id for c in cases[:4]],
                                       scores=table["dice"].to_numpy()[:4], spacings=[e[3] for e in examples[:4]],
                                       path=run_dir / "predictions.png")

    return Scores(split=split_name, n_images=len(table), metrics=metrics, tables={"test_metrics.csv": table},
                  after={"unit": "mm", "summary": summary_json(summary)}, figures=[predictions],
                  title=f"3-D run {run_dir.name}", unit="volumes",
                  line=f"Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  HD95 {metrics['hd95']:.2f} mm  ")


# ----------------------------------------------------------------------------- command line
def wants_volumes(dims, data=None, dataset=None) -> bool:
    """``train``'s ``--dims``: 3 or 2 when given; by default 3 for Decathlon data (a registered ``msd-*`` set,
    or a ``--data`` folder with a ``dataset.json`` beside ``imagesTr/``), else 2."""
    if dims is not None:
        if int(dims) not in (2, 3):
            raise UserError(f"must be 2 or 3, got {dims}", field="dims")
        return int(dims) == 3
    if dataset:
        return str(dataset).lower().replace("_", "-").startswith(("msd-", "task0", "task1"))
    if data:
        if not Path(data).expanduser().is_dir():      # reported by the 2-D path at once, without importing SciPy
            return False
        from Functions.data.volumes import is_decathlon_root

        return is_decathlon_root(Path(data).expanduser())
    return False


def volume_defaults(values: dict) -> dict:
    """``train``'s flag values for a 3-D run: those left at their 2-D default take the 3-D one
    (``--model unet`` -> ``unet3d``, ``--epochs 25`` -> 15, ``--augment light`` -> ``3d`` ...)."""
    two_d, three_d = TrainConfig(), VolumeConfig()
    values = dict(values)
    for name in ("model", "epochs", "batch_size", "learning_rate", "augment"):
        if values.get(name) == getattr(two_d, name):
            values[name] = getattr(three_d, name)
    values["dims"] = 3
    return values
