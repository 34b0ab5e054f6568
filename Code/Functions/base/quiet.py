"""Quiet backend imports: the command line shows what the user needs, not the backends' start-up chatter.

TensorFlow 2.20+ writes lines like these to the process's standard error
(file descriptor 2, from C++) while it is imported, *before* absl's logging
is initialised, so ``TF_CPP_MIN_LOG_LEVEL=3`` cannot switch them off::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795929054.370841   14637 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1795929054.371165   14637 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...

:func:`install` sets the environment variables that do work (before any
backend is imported) and adds an import hook: the first import of
``keras``, ``tensorflow``, ``jax`` or ``torch`` runs with file descriptor 2
sent to a temporary file; afterwards every line that is *not* known start-up
noise (:func:`is_noise`) is written to standard error, in order.  Real
warnings (a Python ``warnings.warn``, an error from a C++ library) therefore
still reach the user; only the listed patterns are dropped.  Nothing is
imported by :func:`install` itself, so a command can check its arguments
and paths first and fail in a fraction of a second.

``python -m Functions --verbose <command>`` (or ``MIP_VERBOSE=1``) skips all
of this and shows every line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

#: Modules whose first import is filtered (their submodules are imported inside that window).
BACKEND_MODULES = ("keras", "tensorflow", "jax", "torch")

#: Environment variables set (unless already set) before a backend is imported.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",         # TensorFlow C++ INFO/WARNING/ERROR after absl is initialised
    "GRPC_VERBOSITY": "ERROR",           # gRPC (TensorFlow's distributed runtime)
    "ABSL_MIN_LOG_LEVEL": "3",           # absl-py / absl C++ in newer builds
}

_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # absl-format INFO lines written before InitializeLog (oneDNN notice, CUDA stub probing, CPU features)
    r"|I\d{4} [\d:.]+\s+\d+ \S+\.(?:cc|h):\d+\] .*"
    # ... and the WARNING/ERROR lines that only say there is no GPU on a CPU machine
    r"|[WE]\d{4} [\d:.]+\s+\d+ (?:cuda_platform|cuda_executor|cuda_diagnostics|cudart_stub|cuda_dnn|cuda_fft"
    r"|cuda_blas|gpu_device|cpu_feature_guard|computation_placer)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|This TensorFlow binary is optimized to use available CPU instructions.*"
    r"|An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed\. "
    r"Falling back to cpu\."
    r")\s*$"
)


def is_noise(line: str) -> bool:
    """True for one line of known backend start-up chatter (see the module docstring)."""
    return bool(_NOISE.match(line.rstrip("\r\n")))


def filter_lines(text: str) -> str:
    """``text`` without its noise lines (:func:`is_noise`); every other line kept, in order."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_noise(line))


def verbose_requested() -> bool:
    """``MIP_VERBOSE`` set to anything but ``""``/``0``: show the backends' start-up lines."""
    return os.environ.get("MIP_VERBOSE", "") not in ("", "0")


class FilteredStderr:
    """Context: file descriptor 2 goes to a temporary file; on exit the non-noise lines go to stderr."""

    def __enter__(self):
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stderr must not break an import
            pass
        self._tmp = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        _ACTIVE[0] += 1
        return self

    def __exit__(self, *exc):
        _ACTIVE[0] -= 1
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        kept = filter_lines(self._tmp.read().decode("utf-8", errors="replace"))
        self._tmp.close()
        if kept:
            sys.stderr.write(kept)
            sys.stderr.flush()
        return False


class _QuietLoader(importlib.abc.Loader):
    """Wraps a backend's loader: its module body runs inside :class:`FilteredStderr`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with FilteredStderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):          # get_data, get_resource_reader, ... as the real loader
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds the backends' top-level modules as usual and wraps their loaders in :class:`_QuietLoader`."""

    def __init__(self):
        self._busy = False

    def find_spec(self, name, path=None, target=None):
        if path is not None or name not in BACKEND_MODULES or self._busy or _filtering():
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


_ACTIVE = [0]          # open FilteredStderr windows (a backend imported inside one needs no second window)


def _filtering() -> bool:
    return _ACTIVE[0] > 0


def install(verbose: bool | None = None) -> bool:
    """Quiet the backends for this process (idempotent); ``verbose`` (default :func:`verbose_requested`) skips it.

    Sets :data:`QUIET_ENVIRONMENT` where unset and installs the import hook.
    Returns True when the hook is (now) installed.  Backends already imported
    are not affected.
    """
    if verbose is None:
        verbose = verbose_requested()
    if verbose:
        return False
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True


def installed() -> bool:
    """Whether the import hook is in place in this process."""
    return any(isinstance(f, _QuietFinder) for f in sys.meta_path)


def uninstall() -> None:
    """Remove the import hook (the environment variables stay)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
