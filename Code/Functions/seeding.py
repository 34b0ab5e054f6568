"""One call that fixes every source of randomness: Python, NumPy and the Keras backend."""

from __future__ import annotations

import os
import random

import numpy as np


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and Keras (TensorFlow/JAX/PyTorch); optionally ask for deterministic kernels.

    ``deterministic=True`` also turns on TensorFlow's op determinism (which makes
    Keras switch XLA off, roughly halving CPU speed) and PyTorch's deterministic
    algorithms.  On a CPU the default kernels already repeat exactly.

    Splits and augmentation take their own seeded generators (see
    :mod:`Functions.splits`, :mod:`Functions.pipeline`); this call covers
    weight initialisation and dropout.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # noqa: BLE001 - older TF or already configured
            pass
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
