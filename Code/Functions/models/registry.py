"""The table of architectures: name -> builder, task and paper.

:mod:`Functions.models` exposes it as ``MODEL_REGISTRY`` / ``build_model``;
adding an architecture means writing its builder and adding one
:class:`ModelSpec` line to ``_SPECS`` below.

Volume (3-D) models live in their own table, ``VOLUME_SPECS`` (``_SPECS_3D``),
so that everything that walks the image models (``architectures``,
``compare``, ``benchmark``) keeps building 2-D inputs; :func:`get_spec` and
``build_model`` find both, and ``available_models(dims=3)`` lists the 3-D ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from Functions.models.attention_unet import build_attention_unet
from Functions.models.encoder_unet import build_unet_efficientnetb0, build_unet_mobilenetv2, build_unet_resnet50
from Functions.models.lite_unet import build_lite_unet
from Functions.models.resnet import build_resnet18, build_resnet34, build_resnet50, build_resnet50_imagenet
from Functions.models.resunet import build_resunet
from Functions.models.resunet_plus_plus import build_resunet_plus_plus
from Functions.models.unet import build_unet
from Functions.models.unet_plus_plus import build_unet_plus_plus
from Functions.models.unext import build_unext
from Functions.models.volumetric import build_attention_unet3d, build_resunet3d, build_unet3d

TASKS = ("segmentation", "classification")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    task: str
    paper: str
    dims: int = 2                  # spatial dimensions of the input: 2 (images) or 3 (volumes)


_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("unet", build_unet, "segmentation", "Ronneberger et al. 2015, U-Net"),
    ModelSpec("unet_plus_plus", build_unet_plus_plus, "segmentation", "Zhou et al. 2018, UNet++"),
    ModelSpec("resunet", build_resunet, "segmentation", "Zhang, Liu & Wang 2018, deep residual U-Net"),
    ModelSpec("resunet_plus_plus", build_resunet_plus_plus, "segmentation", "Jha et al. 2019, ResUNet++"),
    ModelSpec("attention_unet", build_attention_unet, "segmentation", "Oktay et al. 2018, Attention U-Net"),
    ModelSpec("unet_resnet50", build_unet_resnet50, "segmentation", "U-Net decoder on ResNet50 (He et al. 2016)"),
    ModelSpec("unet_mobilenetv2", build_unet_mobilenetv2, "segmentation",
              "U-Net decoder on MobileNetV2 (Sandler et al. 2018)"),
    ModelSpec("unet_efficientnetb0", build_unet_efficientnetb0, "segmentation",
              "U-Net decoder on EfficientNetB0 (Tan & Le 2019)"),
    ModelSpec("unext", build_unext, "segmentation", "Valanarasu & Patel 2022, UNeXt (real-time)"),
    ModelSpec("lite_unet", build_lite_unet, "segmentation",
              "U-Net on MobileNetV3-Small blocks (Howard et al. 2019), real-time"),
    ModelSpec("resnet18", build_resnet18, "classification", "He et al. 2016, ResNet-18"),
    ModelSpec("resnet34", build_resnet34, "classification", "He et al. 2016, ResNet-34"),
    ModelSpec("resnet50", build_resnet50, "classification", "He et al. 2016, ResNet-50"),
    ModelSpec("resnet50_imagenet", build_resnet50_imagenet, "classification",
              "He et al. 2016, ResNet-50 (keras.applications, ImageNet weights)"),
)

_SPECS_3D: tuple[ModelSpec, ...] = (
    ModelSpec("unet3d", build_unet3d, "segmentation", "Cicek et al. 2016, 3D U-Net", dims=3),
    ModelSpec("attention_unet3d", build_attention_unet3d, "segmentation",
              "Oktay et al. 2018, Attention U-Net (3-D)", dims=3),
    ModelSpec("resunet3d", build_resunet3d, "segmentation", "Zhang, Liu & Wang 2018, deep residual U-Net (3-D)",
              dims=3),
)

SPECS: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
MODEL_REGISTRY: dict[str, Callable] = {s.name: s.builder for s in _SPECS}
#: The 3-D (volume) segmentation models, name -> spec.
VOLUME_SPECS: dict[str, ModelSpec] = {s.name: s for s in _SPECS_3D}
VOLUME_REGISTRY: dict[str, Callable] = {s.name: s.builder for s in _SPECS_3D}


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name`` (2-D or 3-D); ValueError listing the valid names otherwise."""
    try:
        return SPECS[name] if name in SPECS else VOLUME_SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_REGISTRY)}, "
                         f"or for volumes {', '.join(VOLUME_REGISTRY)}") from None


def default_options(builder: Callable) -> dict:
    """Keyword options of a builder and their defaults (``input_shape`` and ``num_classes`` included)."""
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


#: Options that name pretrained weights; :func:`offline_options` sets them to None.
WEIGHT_OPTIONS = ("encoder_weights", "weights")


def offline_options(name: str) -> dict:
    """Options that build ``name`` without downloading anything (random weights, same architecture)."""
    defaults = default_options(get_spec(name).builder)
    return {k: None for k in WEIGHT_OPTIONS if k in defaults}
