"""Functions: the shared library of the Medical-Image-Processing course.

Data discovery and loading, preprocessing, augmentation, models, losses,
metrics, training, evaluation, plotting and the command line
(``python -m Functions <command>``).  Everything is written with Keras 3
layers and ``keras.ops`` so it runs on the TensorFlow, JAX and PyTorch
backends.

Submodules are imported lazily so that ``import Functions`` stays fast and
does not start a deep-learning backend until one is needed.
"""

from __future__ import annotations

import importlib
import os

# TensorFlow's C++ start-up chatter (CPU feature flags, CUDA probing on CPU-only machines) hides what
# learners need to see; failures still surface as Python exceptions.  Set the variable yourself to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

_SUBMODULES = {
    # layers, bottom to top (see docs/architecture.md)
    "base", "data", "models", "losses", "metrics", "inference", "evaluation", "viz", "engine", "apps",
    "cli", "commands",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'Functions' has no attribute {name!r}")


__all__ = sorted(_SUBMODULES) + ["__version__"]
