"""Work-arounds for upstream bugs, each gated on the versions that need it and undone when left.

``keras_multi_worker_fix(strategy)``: Keras 3's TensorFlow trainer fails
under :class:`tf.distribute.MultiWorkerMirroredStrategy` in two places
(present from Keras 3.0 and still in 3.15.1, the newest version checked here):

1. Before the first step, ``TensorFlowTrainer._maybe_symbolic_build``
   averages the first batch over the replicas with
   ``strategy.reduce("MEAN", batch, axis=None)``, which the multi-worker
   strategy cannot do eagerly ("Attempt to convert a value (PerReplica...)
   to a Tensor").  Only shapes are needed there, so this worker's first
   slice is used instead.
2. Each step's logs go through ``reduce_per_replica``, which for a
   multi-worker strategy calls ``strategy.reduce("MEAN", v, axis=0)`` on
   scalar losses and metrics ("Invalid reduction dimension 0 for input with
   0 dimensions"); ``axis=None`` averages them over the replicas as intended.

Upstream reports: tensorflow/tensorflow#72388 ("``tf.distribute`` and
``keras`` 3 incompatibility: ValueError: Invalid reduction dimension 0 for
input with 0 dimensions", closed there and referred to Keras) and
keras-team/keras#20585 ("Does Keras 3 work with
``tf.distribute.MultiWorkerMirroredStrategy``?", open).

The fix is needed only when the installed Keras still has the faulty line
(:func:`multi_worker_fix_needed` reads the trainer's source, so a Keras that
repairs it turns the fix off by itself) and only for a multi-worker
collective strategy; otherwise :func:`keras_multi_worker_fix` changes
nothing.  Checked on one machine with two worker processes: the weights after
training equal those of a single-process run on the same global batches.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator

from Functions.base.runtime import backend_name

#: The newest Keras whose source was read to confirm the bug (the gate itself reads the source).
KERAS_CHECKED = "3.15.1"
UPSTREAM_ISSUES = ("https://github.com/tensorflow/tensorflow/issues/72388",
                   "https://github.com/keras-team/keras/issues/20585")
_FAULTY_LINE = 'strategy.reduce("MEAN", v, axis=0)'

log = logging.getLogger("Functions")


def multi_worker_fix_needed() -> bool:
    """True when the TensorFlow backend runs a Keras 3 whose ``reduce_per_replica`` has the faulty reduction."""
    if backend_name() != "tensorflow":
        return False
    import keras

    if not keras.__version__.startswith("3."):
        return False
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:                                   # a Keras whose internals moved on
        return False
    if not hasattr(tf_trainer, "_collective_all_reduce_multi_worker"):
        return False
    try:
        source = inspect.getsource(tf_trainer.reduce_per_replica)
    except (OSError, TypeError, AttributeError):
        return False
    return _FAULTY_LINE in source


def _is_multi_worker(strategy) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def keras_multi_worker_fix(strategy) -> Iterator[bool]:
    """Within the block, Keras ``fit`` works under ``strategy`` when it is a multi-worker strategy.

    Yields True when the fix is applied and False when it does not apply (any
    other strategy, backend or Keras version); Keras is restored on exit either way.
    """
    if not (_is_multi_worker(strategy) and multi_worker_fix_needed()):
        yield False
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    is_multi = tf_trainer._collective_all_reduce_multi_worker
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def local_first(strat, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strat.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strat = self._distribute_strategy
        if iterator is not None and strat is not None and is_multi(strat):
            for _, _, it in iterator:
                data_batch = tree.map_structure(lambda v: local_first(strat, v), next(it))
                break
            return original_build(self, data_batch=data_batch)
        return original_build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strat, reduction):
        if reduction in ("auto", "mean") and is_multi(strat):
            return tree.map_structure(
                lambda v: strat.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return original_reduce(values, strat, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    log.info("Keras multi-worker fix applied (see %s)", UPSTREAM_ISSUES[0])
    try:
        yield True
    finally:
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = original_build
        tf_trainer.reduce_per_replica = original_reduce
