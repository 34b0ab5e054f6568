"""``jit_compile="auto"``: choose XLA or the plain graph by measuring both, once per machine.

On the same kind of shared 2-core CPU, XLA (``jit_compile=True``) trained
the U-Net 2x faster than TensorFlow's oneDNN graph on one host and 2.2x
slower on another, so no fixed rule is right everywhere.  :func:`auto_jit`
therefore times a few training steps of the actual model both ways the
first time a model / input shape / batch / precision / device / backend
(and library versions) combination is trained, prints the choice with both
figures, and caches the result in a JSON file in the user cache folder, so
later runs start at once.  The timing is made robust to a shared, noisy
machine: two untimed warm-up steps, then two alternating rounds of five timed
steps per setting, each setting keeping its fastest round's median; and the
setting the fixed rule would not pick must be more than 10 % faster to win.
(A single round of three steps once chose XLA for the 3-class U-Net because
other work slowed the plain graph's round; in training, XLA then ran 1.4x
slower per epoch.)

* cache file: ``$MIP_JIT_CACHE``, else ``$XDG_CACHE_HOME/medical-image-processing/jit.json``,
  else ``~/.cache/medical-image-processing/jit.json`` (:func:`cache_path`);
* off switch: ``MIP_JIT_PROBE=0`` falls back to the fixed rule
  (:func:`default_rule`: XLA on GPUs and on JAX, the plain graph on a
  TensorFlow CPU and on PyTorch).

Only TensorFlow has two compiled paths worth comparing.  JAX without XLA
runs op by op (always slower), so JAX always uses XLA; PyTorch stays eager
(``torch.compile``'s start-up outweighs its gain on the runs this course
makes).  A probe that fails (an XLA kernel missing on this device, say)
counts as infinitely slow.

The decision logic (:func:`decide`) takes the measuring function and the
timer as arguments, so it is tested with a fake timer, without depending on
real timings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Environment variable: "0" switches the probe off (the fixed rule is used).
PROBE_ENV = "MIP_JIT_PROBE"
#: Environment variable: path of the cache file (default: in the user cache folder).
CACHE_ENV = "MIP_JIT_CACHE"
#: Timed training steps per setting and round (after untimed steps that trace/compile and warm up).
PROBE_STEPS = 5
#: Untimed steps before the first timed round of each setting (tracing/compiling, then allocator warm-up).
WARMUP_STEPS = 2
#: Rounds of timing, alternating the settings; each setting keeps its fastest round.
PROBE_ROUNDS = 2
#: The setting the fixed rule would not pick must be at least this much faster to be chosen.
MARGIN = 0.10
#: Bumped when the probe's method changes, so decisions of an older probe are measured again.
PROBE_VERSION = 2

log = logging.getLogger("Functions")


def cache_path() -> Path:
    """Where probe results are kept: ``$MIP_JIT_CACHE`` or ``<user cache>/medical-image-processing/jit.json``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root).expanduser() / "medical-image-processing" / "jit.json"


def probe_enabled() -> bool:
    """False when ``MIP_JIT_PROBE=0`` (or ``false``/``off``/``no``)."""
    return os.environ.get(PROBE_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def default_rule(backend: str, gpu: bool) -> bool:
    """The fixed rule used without a probe: XLA on JAX and on GPUs, not on a TensorFlow CPU or on PyTorch."""
    if backend == "jax":
        return True
    if backend == "tensorflow":
        return bool(gpu)
    return False


def read_cache(path: Path | None = None) -> dict:
    """The cached decisions ``{key: {"jit": bool, "xla_seconds": ..., "graph_seconds": ...}}`` ({} if none/unreadable)."""
    path = path or cache_path()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(entries: dict, path: Path | None = None) -> None:
    """Write ``entries`` atomically (temporary file + rename); a read-only cache folder is not an error."""
    path = Path(path or cache_path())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the XLA probe cache %s (%s); the probe will run again next time", path, exc)


def decide(key: str, measure: Callable[[bool], float], *, cache_file: Path | None = None,
           refresh: bool = False, default: bool = False, rounds: int = PROBE_ROUNDS,
           margin: float = MARGIN) -> dict:
    """The cached decision for ``key``, or a new one from ``measure(jit) -> seconds per step`` for both settings.

    Returns ``{"jit": bool, "xla_seconds": float, "graph_seconds": float, "cached": bool}``.
    ``measure`` is called ``rounds`` times per setting, alternating
    (graph, XLA, graph, XLA, ...), and each setting keeps its fastest round, so
    a burst of load from another process during one round does not decide.
    The setting other than ``default`` (the fixed rule's choice) wins only when
    it is more than ``margin`` (10 %) faster.  A ``measure`` that raises counts
    as ``inf`` for that setting.  The new decision is stored under ``key`` in
    ``cache_file`` (default :func:`cache_path`).
    """
    path = Path(cache_file or cache_path())
    entries = read_cache(path)
    hit = entries.get(key)
    if not refresh and isinstance(hit, dict) and isinstance(hit.get("jit"), bool):
        return {**hit, "cached": True}
    seconds = {False: math.inf, True: math.inf}
    failed: set[bool] = set()
    for _ in range(max(1, int(rounds))):
        for jit in (False, True):
            if jit in failed:
                continue
            try:
                seconds[jit] = min(seconds[jit], float(measure(jit)))
            except Exception as exc:  # noqa: BLE001 - a setting that cannot run loses the comparison
                log.warning("XLA probe: jit_compile=%s failed (%s: %s)", jit, type(exc).__name__, str(exc)[:200])
                failed.add(jit)
                seconds[jit] = math.inf
    if math.isinf(seconds[False]) and math.isinf(seconds[True]):
        raise RuntimeError("the XLA probe could not run either setting; pass jit_compile=True or False")
    default = bool(default)
    other = not default
    choice = other if seconds[other] < seconds[default] * (1.0 - float(margin)) else default   # inf loses
    entry = {"jit": choice, "xla_seconds": _finite(seconds[True]),
             "graph_seconds": _finite(seconds[False]), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    entries = read_cache(path)                       # another process may have written meanwhile
    entries[key] = entry
    write_cache(entries, path)
    return {**entry, "cached": False}


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


# ----------------------------------------------------------------------------- measuring a real model
def probe_key(model, batch_size: int) -> str:
    """Model, input shape, batch, precision, device, backend and versions: what the choice depends on."""
    import importlib

    import keras

    from Functions.base.runtime import device_name

    backend = keras.backend.backend()
    try:
        backend_version = importlib.import_module(backend).__version__
    except Exception:  # noqa: BLE001
        backend_version = "?"
    shape = "x".join(str(d) for d in tuple(model.inputs[0].shape)[1:])
    precision = keras.mixed_precision.global_policy().name
    return (f"{model.name}|params={model.count_params()}|in={shape}|batch={int(batch_size)}|{precision}|"
            f"{device_name()}|{backend} {backend_version}|keras {keras.__version__}|probe {PROBE_VERSION}")


def random_batch(model, batch_size: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """``x`` ``(B, *input)`` in [0, 1) and one target per output, values in [0, 1] (rows sum to 1 for C > 1)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, *tuple(model.inputs[0].shape)[1:]), dtype=np.float32)
    ys = []
    for out in model.outputs:
        y = rng.random((batch_size, *tuple(out.shape)[1:]), dtype=np.float32)
        if y.shape[-1] > 1:
            y = y / y.sum(axis=-1, keepdims=True)
        ys.append(y)
    return x, ys


def measure_step_seconds(model, compile_fn: Callable[[object, bool], None], batch_size: int, jit: bool,
                         steps: int = PROBE_STEPS, timer: Callable[[], float] = time.perf_counter,
                         seed: int = 0, copies: dict | None = None, warmup: int = WARMUP_STEPS) -> float:
    """Median seconds per training step of a copy of ``model`` compiled by ``compile_fn(copy, jit)``.

    The copy has its own weights and optimizer, so ``model`` is untouched.
    ``warmup`` untimed steps trace (and with ``jit`` compile) the step first.
    ``copies``: a dict that keeps the compiled copy per setting, so a later
    round of the probe times the same copy without tracing or compiling again.
    """
    import keras

    x, ys = random_batch(model, batch_size, seed)
    y = ys[0] if len(ys) == 1 else ys
    copy = None if copies is None else copies.get(bool(jit))
    if copy is None:
        copy = keras.models.clone_model(model)
        compile_fn(copy, jit)
        for _ in range(max(1, int(warmup))):
            copy.train_on_batch(x, y)                # trace / compile / warm up: not timed
        if copies is not None:
            copies[bool(jit)] = copy
    times = []
    for _ in range(max(1, steps)):
        t0 = timer()
        copy.train_on_batch(x, y)
        times.append(timer() - t0)
    return float(statistics.median(times))


def auto_jit(model, compile_fn: Callable[[object, bool], None], batch_size: int,
             report: Callable[[str], None] | None = None) -> bool:
    """``jit_compile`` for ``model`` when the setting is ``"auto"`` (see the module docstring).

    ``compile_fn(model, jit)`` must compile a model the way training will.
    TensorFlow with the probe on: the cached or newly measured faster setting,
    reported through ``report`` (default: the ``Functions`` logger) with both
    figures.  Otherwise :func:`default_rule`.
    """
    import keras

    from Functions.base.runtime import has_gpu

    backend = keras.backend.backend()
    if backend != "tensorflow" or not probe_enabled():
        return default_rule(backend, has_gpu())
    report = report or log.info
    key = probe_key(model, batch_size)
    copies: dict = {}
    result = decide(key, lambda jit: measure_step_seconds(model, compile_fn, batch_size, jit, copies=copies),
                    default=default_rule(backend, has_gpu()))
    copies.clear()
    report(describe(result))
    return result["jit"]


def describe(result: dict) -> str:
    """One line: the choice and both figures, e.g. ``XLA: on (0.21 s/step against 0.43 s/step without; cached)``."""
    def fmt(v):
        return "failed" if v is None else f"{v:.3g} s/step"

    return (f"XLA (jit_compile): {'on' if result['jit'] else 'off'} ({fmt(result.get('xla_seconds'))} with XLA, "
            f"{fmt(result.get('graph_seconds'))} without; "
            f"{'cached in ' + str(cache_path()) if result.get('cached') else 'measured now, cached in ' + str(cache_path())}"
            f"; {PROBE_ENV}=0 switches the probe off)")
