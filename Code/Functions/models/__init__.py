"""Every architecture behind one registry.

>>> from Functions.models import build_model, available_models
>>> model = build_model("unet", input_shape=(128, 128, 1), num_classes=1)
>>> available_models("classification")  # doctest: +SKIP

``build_model(name, input_shape, num_classes, **options)`` dispatches to the
builder in :data:`MODEL_REGISTRY`; ``model_info(name)`` says which paper it
follows, its task and its default options.  Segmentation models return
``(N, H, W, num_classes)`` probabilities, classifiers ``(N, num_classes)``;
one class means sigmoid, more mean softmax, always float32.
"""

from __future__ import annotations

import keras

from Functions.models.attention_unet import attention_maps
from Functions.models.flops import count_flops
from Functions.models.registry import (
    MODEL_REGISTRY,
    SPECS,
    TASKS,
    VOLUME_REGISTRY,
    VOLUME_SPECS,
    default_options,
    get_spec,
    offline_options,
)
from Functions.models.unet import build_unet

__all__ = [
    "MODEL_REGISTRY",
    "VOLUME_REGISTRY",
    "attention_maps",
    "available_models",
    "build_model",
    "build_unet",
    "count_flops",
    "model_info",
    "offline_options",
    "single_output",
]


def build_model(name: str, input_shape: tuple | None = None, num_classes: int = 1, **options) -> keras.Model:
    """Build the registered architecture ``name``.

    ``input_shape`` defaults to ``(128, 128, 1)`` for image models and
    ``(64, 64, 64, 1)`` for volume models.  ``options`` are the builder's
    keyword options (see ``model_info(name)["defaults"]``); an unknown option
    raises ValueError naming the valid ones.
    """
    spec = get_spec(name)
    if input_shape is None:
        input_shape = (128, 128, 1) if spec.dims == 2 else (64, 64, 64, 1)
    allowed = default_options(spec.builder)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(k for k in allowed if k not in ("input_shape", "num_classes"))
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return spec.builder(input_shape=tuple(input_shape), num_classes=num_classes, **options)


def available_models(task: str | None = None, dims: int = 2) -> list[str]:
    """Registered names, optionally only those for ``task`` ("segmentation" or "classification").

    ``dims=2`` (default): the image models; ``dims=3``: the volume models (``unet3d``, ...).
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    specs = SPECS if dims == 2 else VOLUME_SPECS
    if task is None:
        return list(specs)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    return [name for name, spec in specs.items() if spec.task == task]


def model_info(name: str) -> dict:
    """``{"name", "task", "paper", "defaults", "summary"}`` for a registered model."""
    spec = get_spec(name)
    doc = (spec.builder.__doc__ or "").strip().splitlines()
    return {
        "name": spec.name,
        "task": spec.task,
        "paper": spec.paper,
        "defaults": default_options(spec.builder),
        "summary": doc[0] if doc else "",
    }


def single_output(model: keras.Model, mode: str = "last") -> keras.Model:
    """A one-output view of a deep-supervision model (shares its weights).

    ``mode="last"`` keeps the final head; ``mode="average"`` averages all
    heads with a float32 :class:`keras.layers.Average`.  A model with one
    output is returned unchanged.
    """
    if mode not in ("last", "average"):
        raise ValueError(f"mode must be 'last' or 'average', got {mode!r}")
    outputs = model.outputs
    if len(outputs) == 1:
        return model
    if mode == "last":
        out = outputs[-1]
    else:
        out = keras.layers.Average(dtype="float32", name="output_average")(outputs)
    return keras.Model(model.inputs, out, name=f"{model.name}_{mode}")
