"""The runtime: which backend and devices are in use, precision, seeds, memory.

One place for everything that asks the machine or the Keras backend about
itself: :func:`backend_name`, :func:`has_gpu`, :func:`device_name`,
:func:`list_accelerators`, :func:`environment_summary` (one line for
notebooks and logs), :func:`set_precision` (mixed precision; :func:`cpu_has_bf16`),
:func:`set_seed` (Python, NumPy and the backend) and :func:`peak_rss_mb`.
Keras and the backends are imported inside the functions, so importing this
module stays cheap.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import resource
import sys
from pathlib import Path

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


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``; no extra packages)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB on Linux


def device_name() -> str:
    """The device the Keras backend computes on, in words (GPU name, or CPU model and core count)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"{details.get('device_name', 'GPU')} (TensorFlow)"
        elif backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform != "cpu":
                return f"{dev.device_kind} (JAX {dev.platform})"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"{torch.cuda.get_device_name(0)} (PyTorch CUDA)"
    except Exception:  # noqa: BLE001 - no accelerator runtime: fall through to the CPU
        pass
    return f"CPU {_cpu_model()}, {os.cpu_count()} logical cores"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def backend_name() -> str:
    """The active Keras backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    import keras

    return keras.backend.backend()


def list_accelerators() -> list[str]:
    """The devices the active backend computes on, as short strings (``"cpu:0"``, ``"gpu:0"``...)."""
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [d.name.replace("/device:", "").lower() for d in devices]
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"]
    return ["cpu"]


def environment_summary() -> str:
    """One line for notebooks and logs: Keras version, backend (and its version) and devices.

    Example: ``"Keras 3.15.1 | backend tensorflow 2.20.0 | devices: cpu:0"``.
    """
    import importlib

    import keras

    backend = backend_name()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
    try:
        version = importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001 - an exotic backend without __version__
        version = "?"
    try:
        devices = ", ".join(list_accelerators())
    except Exception as exc:  # noqa: BLE001 - never fail a notebook over a device query
        devices = f"unknown ({type(exc).__name__})"
    return f"Keras {keras.__version__} | backend {backend} {version} | devices: {devices}"


def cpu_has_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag of Linux's
    ``/proc/cpuinfo``); False where that file is missing (macOS, Windows) or names neither."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def set_precision(mixed: bool) -> None:
    """``mixed_float16`` on a GPU; ``mixed_bfloat16`` on a CPU.

    On a CPU with bfloat16 instructions (:func:`cpu_has_bf16`) bfloat16 is
    faster than float32 (on this project's 2-core CPU 1.3x per epoch for the
    DSB2018 3-class U-Net and 1.15x for the binary one, benchmarks/LOG.md);
    on others it is usually slower, and a warning says so.
    """
    import keras

    if not mixed:
        keras.mixed_precision.set_global_policy("float32")
        return
    if has_gpu():
        keras.mixed_precision.set_global_policy("mixed_float16")
        return
    if not cpu_has_bf16():
        logging.getLogger("Functions").warning(
            "mixed precision without a GPU: using bfloat16 on a CPU without bfloat16 instructions (no avx512_bf16 "
            "or amx_bf16), which is usually slower than float32; drop --mixed-precision")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")


def total_memory_bytes() -> int | None:
    """This machine's physical memory in bytes (``os.sysconf``; None where the platform does not tell).  The
    total, not what is free now: the planner's batch rule must not change with the machine's load."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def has_gpu() -> bool:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no usable accelerator runtime
        return False
    return False
