"""Training on several devices (data parallelism) with the TensorFlow and JAX backends.

Data parallelism keeps one copy of the model on every device ("replica"),
cuts each global batch into equal per-replica slices, computes gradients
on each slice and averages them before one shared weight update.  So the
effective (global) batch is ``per_replica_batch * replicas``.

* TensorFlow: :class:`tf.distribute.MirroredStrategy` over all local GPUs
  (or, without a GPU, over the logical CPU devices when there are several),
  and :class:`tf.distribute.MultiWorkerMirroredStrategy` when the
  ``TF_CONFIG`` environment variable describes a cluster of machines.
* JAX: :class:`keras.distribution.DataParallel` over every device JAX sees.
  On several hosts, call :func:`keras.distribution.initialize` first (done
  here automatically when ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` and
  ``KERAS_DISTRIBUTION_NUM_PROCESSES`` are set; see ``docs/scaling_up.md``).
* PyTorch: not supported here (Keras has no built-in data-parallel
  distribution for torch); :func:`distribution_scope` raises a
  :class:`~Functions.errors.UserError` that says to use TensorFlow or JAX.

Build *and* compile the model inside :func:`distribution_scope`, and (for
JAX) call ``fit`` inside it too.  The model saved from a distributed run is
an ordinary ``.keras`` file that loads with no strategy at all.

To try ``--distribute`` on a CPU-only machine, :func:`use_cpu_devices` cuts the
CPU into several logical devices (``train --cpu-devices N``); it must run
before the backend starts (for JAX, before ``jax`` is imported).

The Keras multi-worker work-around lives in :mod:`Functions.engine.compat`
and is applied only inside :func:`distribution_scope`; the padding of
batches to equal replica slices is :mod:`Functions.data.sharding`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

from Functions.base.errors import UserError
from Functions.base.runtime import backend_name
from Functions.engine.compat import keras_multi_worker_fix

_JAX_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
log = logging.getLogger("Functions")


# ----------------------------------------------------------------------------- devices
def _split_tf_cpu(n: int) -> None:
    """Cut the (first) physical CPU into ``n`` logical TensorFlow devices; ``RuntimeError`` once TF has started."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is None or len(current) != n:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)


def _tf_local_devices() -> list[str]:
    """GPUs when there are any, otherwise the logical CPUs (several only after a split)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def is_multi_worker() -> bool:
    """True when ``TF_CONFIG`` describes a cluster with more than one task (TensorFlow multi-worker)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return False
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError):
        raise UserError("TF_CONFIG is not valid JSON; see docs/scaling_up.md for its form") from None
    return sum(len(v) for v in cluster.values()) > 1


# ----------------------------------------------------------------------------- strategies
def get_strategy(kind: str = "auto"):
    """The data-parallel strategy for the active backend.

    ``kind``: ``"auto"`` (multi-worker if ``TF_CONFIG`` describes a
    cluster, else the local devices), ``"mirrored"``, ``"multi_worker"``
    (TensorFlow only) or ``"data_parallel"`` (JAX only).

    Returns a ``tf.distribute.Strategy`` on TensorFlow and a
    ``keras.distribution.DataParallel`` on JAX.  PyTorch raises
    :class:`UserError`.
    """
    backend = backend_name()
    kinds = {"tensorflow": ("auto", "mirrored", "multi_worker"), "jax": ("auto", "data_parallel")}
    if backend not in kinds:
        raise UserError(f"--distribute is not supported on the {backend} backend; run with "
                        "KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax (torch DDP is out of scope here)")
    if kind not in kinds[backend]:
        raise UserError(f"distribution kind {kind!r} is not available on {backend}; choose one of {kinds[backend]}")
    if backend == "tensorflow":
        import tensorflow as tf

        if kind == "multi_worker" or (kind == "auto" and is_multi_worker()):
            return tf.distribute.MultiWorkerMirroredStrategy()
        devices = _tf_local_devices()
        if len(devices) > 1 and "GPU" not in devices[0].upper():
            # Several logical CPUs: gather on one device (no NCCL on CPU).
            return tf.distribute.MirroredStrategy(devices=devices,
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy(devices=devices)
    import keras

    if any(os.environ.get(k) for k in _JAX_ENV):
        _jax_initialize_once()
    # Several hosts: each one reads its own share of the samples (see process_shard), so Keras must not
    # try to shard the input again (it can only do that for tf.data pipelines).
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices(),
                                           auto_shard_dataset=process_count() == 1)


_JAX_INITIALISED = False


def _jax_initialize_once() -> None:
    """Join a multi-host JAX job described by the ``KERAS_DISTRIBUTION_*`` environment variables."""
    global _JAX_INITIALISED
    if _JAX_INITIALISED:
        return
    import keras

    keras.distribution.initialize()
    _JAX_INITIALISED = True


@contextlib.contextmanager
def distribution_scope(enabled: bool = True, kind: str = "auto") -> Iterator[object | None]:
    """Context in which to build, compile (and on JAX, fit) a model for data-parallel training.

    Yields the strategy (TensorFlow), the ``DataParallel`` distribution
    (JAX) or ``None`` when ``enabled`` is false (then it does nothing).
    On JAX the previous global distribution is restored on exit, so a model
    loaded afterwards is an ordinary single-device model.  On TensorFlow a
    multi-worker strategy also gets :func:`Functions.engine.compat.keras_multi_worker_fix`
    for the duration of the block.
    """
    if not enabled:
        yield None
        return
    strategy = get_strategy(kind)
    if backend_name() == "tensorflow":
        with strategy.scope(), keras_multi_worker_fix(strategy):
            yield strategy
        return
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(strategy)
    try:
        yield strategy
    finally:
        keras.distribution.set_distribution(previous)


def jit_allowed() -> bool:
    """False inside a TensorFlow strategy with several replicas, where XLA ``jit_compile`` cannot run.

    XLA compiles a step as one cluster and refuses variables that live on
    another device ("Trying to access resource ... located in device
    CPU:1 from device CPU:0"), which is what mirrored variables are.  JAX
    compiles every step anyway, and one device is unaffected: True there.
    """
    if backend_name() != "tensorflow":
        return True
    import tensorflow as tf

    return not (tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1)


def open_scope(stack: contextlib.ExitStack, enabled: bool, per_replica_batch: int, kind: str = "auto") -> int:
    """Enter :func:`distribution_scope` on ``stack`` (closed by the caller) and return the replica count.

    Does nothing and returns 1 when ``enabled`` is false.  When enabled,
    logs (``"Functions"`` logger, INFO) the strategy, its devices and the global batch size.
    """
    if not enabled:
        return 1
    strategy = stack.enter_context(distribution_scope(True, kind))
    replicas = replica_count(strategy)
    name = type(strategy).__name__
    log.info("Distributed training: %s with %d replica(s) on %s; batch %d per replica x %d = global batch %d",
             name, replicas, ", ".join(strategy_devices(strategy)), per_replica_batch, replicas,
             global_batch_size(per_replica_batch, replicas))
    if replicas == 1:
        log.warning("--distribute found a single device, so training runs as usual")
    return replicas


def strategy_devices(strategy) -> list[str]:
    """Short device names a TF strategy or JAX distribution computes on."""
    devices = getattr(getattr(strategy, "extended", None), "worker_devices", None)
    if devices is None:
        mesh = getattr(strategy, "device_mesh", None)
        devices = [] if mesh is None else [str(d) for d in mesh.devices.flatten()]
    return [str(d).replace("/job:localhost/replica:0/task:0/device:", "").lower() for d in devices]


def input_batch_size(per_replica: int, replicas: int) -> int:
    """The batch this process's input pipeline must yield: the global batch / number of host processes.

    One machine (and TensorFlow, whose strategies split the global batch
    themselves): the global batch.  JAX multi-host: each host feeds its part.
    """
    total = global_batch_size(per_replica, replicas)
    count = process_count()
    if total % count:
        raise UserError(f"--batch-size {per_replica} x {replicas} replicas does not split over {count} hosts")
    return total // count


def replica_count(strategy=None) -> int:
    """Number of model replicas: of ``strategy`` if given, else of the active TF strategy / JAX distribution.

    1 when nothing is distributed.
    """
    if strategy is None:
        backend = backend_name()
        if backend == "tensorflow":
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
        elif backend == "jax":
            import keras

            strategy = keras.distribution.distribution()
    if strategy is None:
        return 1
    if hasattr(strategy, "num_replicas_in_sync"):
        return int(strategy.num_replicas_in_sync)
    mesh = getattr(strategy, "device_mesh", None)
    if mesh is not None:
        batch_axis = getattr(strategy, "batch_dim_name", None)
        if batch_axis in mesh.axis_names:
            return int(mesh.shape[list(mesh.axis_names).index(batch_axis)])
        return int(mesh.devices.size)
    return 1


def global_batch_size(per_replica: int, replicas: int) -> int:
    """Batch that one training step consumes in all: ``per_replica * replicas``.

    >>> global_batch_size(8, 4)
    32
    """
    if per_replica < 1 or replicas < 1:
        raise ValueError(f"per_replica and replicas must be positive, got {per_replica} and {replicas}")
    return int(per_replica) * int(replicas)


def process_count() -> int:
    """Number of host processes in the job (JAX multi-host); 1 on one machine and on other backends."""
    if backend_name() != "jax":
        return 1
    import jax

    return int(jax.process_count())


def process_index() -> int:
    """This host's index in a JAX multi-host job; 0 otherwise."""
    if backend_name() != "jax":
        return 0
    import jax

    return int(jax.process_index())


def batch_multiple() -> int:
    """What every batch size must be a multiple of under the active distribution (1 when none).

    JAX's ``DataParallel`` splits each batch into equal slices, one per
    device, so a batch must divide evenly (by the replicas of this process).
    TensorFlow's strategies accept an uneven last batch in training, but
    Keras 3 builds the metrics from the first validation batch by averaging
    the per-replica slices, which fails when they differ in size; so under
    a strategy the batches are kept divisible there too.
    """
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync if tf.distribute.has_strategy() else 1
    if backend != "jax":
        return 1
    import keras

    dist = keras.distribution.distribution()
    if dist is None:
        return 1
    return max(1, replica_count(dist) // process_count())


def even_batches(batches):
    """``batches`` made acceptable to the active distribution (unchanged when there is none).

    JAX: every short batch is padded to a multiple of the replicas
    (:func:`Functions.data.sharding.pad_batches`).  TensorFlow splits uneven batches itself and
    keeps the loss and metrics exact, except that Keras fails when the
    *first* batch of a pass is uneven (see :func:`batch_multiple`), which
    happens only when the whole split is smaller than one global batch: only
    then is that batch padded.
    """
    multiple = batch_multiple()
    if multiple <= 1:
        return batches
    from Functions.data.sharding import pad_batches   # imports Keras: not before use_cpu_devices

    if backend_name() == "tensorflow":
        if len(batches) == 0 or len(batches[0][0]) % multiple == 0:
            return batches
        return pad_batches(batches, multiple, first_only=True)
    return pad_batches(batches, multiple)


def process_shard(n: int):
    """Indices of the ``n`` samples this host reads in a JAX multi-host job; ``slice(None)`` (all) otherwise.

    See :func:`Functions.data.sharding.shard_indices`: every host gets ``ceil(n / P)`` samples, so up to
    ``P - 1`` are read twice per epoch, which also counts them twice in the validation metrics of a
    multi-host run.  On TensorFlow ``tf.distribute`` shards the input itself and every worker reads everything.
    """
    from Functions.data.sharding import shard_indices   # imports Keras: not before use_cpu_devices

    return shard_indices(n, process_count(), process_index())


def use_cpu_devices(n: int) -> None:
    """Make ``n`` CPU devices visible to the backend, to try ``--distribute`` on a machine without GPUs.

    Must run before the backend starts: for JAX it sets
    ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` (so ``jax`` must
    not be imported yet); for TensorFlow it splits the first CPU into
    ``n`` logical devices.  PyTorch: nothing to do (not distributed).
    Raises :class:`UserError` when it is too late.
    """
    import sys

    if n < 1:
        raise UserError(f"--cpu-devices must be at least 1, got {n}")
    flag = f"--xla_force_host_platform_device_count={n}"
    if "jax" in sys.modules:
        import jax

        if jax.device_count("cpu") != n:
            raise UserError(f"--cpu-devices {n}: JAX already started with {jax.device_count('cpu')} CPU device(s); "
                            f"set XLA_FLAGS={flag} before Python starts")
    else:
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join(flags + [flag])
    if backend_name() == "tensorflow":
        try:
            _split_tf_cpu(n)
        except RuntimeError:
            raise UserError(f"--cpu-devices {n}: TensorFlow devices were already initialised; "
                            "use it in a fresh Python process") from None


def scaled_learning_rate(base_lr: float, replicas: int, rule: str = "linear") -> float:
    """Learning rate for a batch ``replicas`` times larger: ``"linear"`` (lr x k), ``"sqrt"`` (lr x sqrt k) or ``"none"``.

    A starting point, not a law: with Adam, the square-root rule or no
    scaling plus a short warm-up is often safer than the linear rule.
    """
    if rule == "none":
        return float(base_lr)
    if rule == "linear":
        return float(base_lr) * replicas
    if rule == "sqrt":
        return float(base_lr) * replicas ** 0.5
    raise ValueError(f"rule must be 'linear', 'sqrt' or 'none', got {rule!r}")
