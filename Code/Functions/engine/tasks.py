"""Which task trains a config: one task object per kind of run, all under the one loop
(:func:`Functions.engine.fit.fit`) and the one finish step (:func:`Functions.engine.finish.finish`).

=======================================  ============================================================
config                                   task
=======================================  ============================================================
``ClassifyConfig``                       :class:`~Functions.engine.classification.ClassificationTask`
``VolumeConfig`` (``train --dims 3``)    :class:`~Functions.engine.volumes.VolumeTask`
``TrainConfig``, ``task="instance"``     :class:`~Functions.engine.multiclass.InstanceTask`
``TrainConfig``, ``task="panoptic"``     :class:`~Functions.engine.multiclass.PanopticTask`
``TrainConfig``, K >= 2 or inferred      :class:`~Functions.engine.multiclass.MultiClassTask`
``TrainConfig``, ``num_classes=1``       :class:`~Functions.engine.multiclass.BinaryCheckedTask`
=======================================  ============================================================

The 2-D segmentation tasks are :class:`~Functions.engine.segmentation.SegmentationTask` subclasses; with
``patch_size`` set they train on patches at native resolution (:mod:`Functions.engine.native`).
"""

from __future__ import annotations

from pathlib import Path

from Functions.engine.fit import Task, fit


def task_for(config) -> Task:
    """The task object that trains ``config`` (see the module docstring)."""
    from Functions.engine.classification import CLASSIFICATION, ClassifyConfig
    from Functions.engine.multiclass import segmentation_task
    from Functions.engine.volumes import VOLUMES

    if isinstance(config, ClassifyConfig):
        return CLASSIFICATION
    if getattr(config, "dims", 2) == 3:
        return VOLUMES
    return segmentation_task(config)


def train(config, *, resume: bool = False, callbacks: list | None = None, data: dict | None = None,
          files: dict | None = None) -> dict:
    """Train ``config`` with its task (:func:`task_for`): keep the best model by ``config.monitor``, score it on
    the test split and write the run folder.

    ``resume=True`` continues the interrupted run in ``config.out`` (see :func:`resume_config`) from its
    last completed epoch, with the model and optimizer weights, learning rate, history, best value and
    callback counters it had then.  ``callbacks``: extra Keras callbacks (notebooks, tests).  ``data``: the
    output of the task's ``prepare(config)`` when the caller already loaded it (``compare`` trains several
    models on it).  ``files``: more JSON files of the run folder (``{name: object}``, e.g. ``plan.json``).

    Returns ``{"run_dir": Path, "metrics": dict, "history": DataFrame, "model": keras.Model}``.
    Raises :class:`~Functions.base.errors.UserError` for bad settings or data (before any folder is made)
    and when the loss becomes NaN.
    """
    return fit(task_for(config), config, resume=resume, callbacks=callbacks, data=data, files=files)


def resume_config(run_dir: str | Path):
    """The config of an interrupted ``train`` run, to pass to :func:`train` with ``resume=True``:
    a :class:`~Functions.engine.volumes.VolumeConfig` for a ``--dims 3`` run, else a
    :class:`~Functions.engine.segmentation.TrainConfig`."""
    from Functions.base.runs import read_run_settings
    from Functions.engine.fit import resume_config as resume_run_config
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.volumes import VolumeConfig

    three = int(read_run_settings(run_dir, flag="--resume").get("dims") or 2) == 3
    return resume_run_config(VolumeConfig if three else TrainConfig, run_dir)
