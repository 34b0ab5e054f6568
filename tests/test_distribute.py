"""Data-parallel training (``Functions.distribute``, ``train --distribute``) on a CPU split into 2 devices.

The distributed runs happen in fresh subprocesses: TensorFlow's logical
devices and JAX's ``XLA_FLAGS`` device count must be set before the backend
starts.  Each subprocess trains the same tiny U-Net for one epoch twice on
the same data, same seed, same global batch (4): once on one device
(``--batch-size 4``) and once distributed (``--distribute --cpu-devices 2
--batch-size 2``, i.e. 2 per replica).  This test process (TensorFlow, no
strategy) then loads both saved models and compares.  The 3 validation
images form one batch that the distributed run pads to 4 with a zero-weight
copy (replicas need equal slices): the validation metrics must still equal
the single-device ones, and the validation loss is the documented 3/4 of it.

Stated tolerance (what holds, with margin): final weights agree within
``1e-5`` absolute (observed <= 6e-7), the epoch's loss and metrics within
``1e-4`` relative (observed <= 2e-6).  The model has no BatchNormalization:
TensorFlow's MirroredStrategy normalises each replica's slice separately,
which changes the result by more than this (JAX's DataParallel computes the
statistics over the global batch and matches a single device with
BatchNormalization too).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Functions.data.sharding import PaddedBatches, pad_batches, shard_indices
from Functions.engine import compat
from Functions.engine import distribute as dist
from Functions.base.errors import UserError
from helpers import write_blob_pairs

REPO = Path(__file__).resolve().parents[1]
WEIGHT_ATOL = 1e-5
METRIC_RTOL = 1e-4

# 21 images -> 16 train (4 full global batches of 4), 3 validation (one batch: padded to 4), 2 test.
TRAIN_ARGS = ["--image-size", "32", "--epochs", "1", "--val-fraction", "0.15", "--test-fraction", "0.1",
              "--model-option", "base_filters=4", "--model-option", "depth=2", "--model-option", "batch_norm=False",
              "--progress-every", "0", "--workers", "1", "--verbose", "0", "--threshold", "0.3", "--seed", "42"]

# Runs in a fresh interpreter: argv = data dir, out dir.  Devices first, then the two runs.
SCRIPT = r"""
import sys
from Functions.engine.distribute import use_cpu_devices
use_cpu_devices(2)
from Functions.cli import main
data, out, args = sys.argv[1], sys.argv[2], sys.argv[3:]
rc1 = main(["train", "--data", data, *args, "--distribute", "--cpu-devices", "2", "--batch-size", "2",
            "--progress-every", "1", "--out", out + "/dist"])
rc2 = main(["train", "--data", data, *args, "--batch-size", "4", "--out", out + "/single"])
sys.exit(rc1 or rc2)
"""


def make_blobs(root: Path, n: int = 21, size: int = 32) -> Path:
    return write_blob_pairs(root, n=n, size=size)


def run_backend(backend: str, tmp_path: Path, extra_env: dict | None = None, timeout: int = 600):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    env.pop("TF_CONFIG", None)
    env.update(extra_env or {})
    data = make_blobs(tmp_path / "data")
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(data), str(out), *TRAIN_ARGS], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, out


def assert_runs_match(out: Path) -> None:
    import keras

    from Functions import losses, models  # noqa: F401 - register the custom objects
    from Functions.metrics import streaming  # noqa: F401

    single = keras.saving.load_model(out / "single" / "model.keras", safe_mode=True)   # no strategy here
    multi = keras.saving.load_model(out / "dist" / "model.keras", safe_mode=True)
    w1, w2 = single.get_weights(), multi.get_weights()
    assert len(w1) == len(w2) > 0
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=0, atol=WEIGHT_ATOL)
    assert any(not np.allclose(a, 0) for a in w1)
    h1 = pd.read_csv(out / "single" / "history.csv")
    h2 = pd.read_csv(out / "dist" / "history.csv")
    assert len(h1) == len(h2) == 1
    cols = ["loss", "dice", "iou", "mean_dice", "val_dice", "val_iou", "val_mean_dice"]
    np.testing.assert_allclose(h2[cols].to_numpy(), h1[cols].to_numpy(), rtol=METRIC_RTOL, atol=1e-7)
    assert h1["dice"].iloc[0] > 0 and h1["val_dice"].iloc[0] > 0          # non-trivial values were compared
    # The 3 validation images were padded to 4 with a zero-weight copy: the metrics count only the 3 real
    # images (equal above), while Keras averages the loss over all 4 (documented in data.sharding.PaddedBatches).
    np.testing.assert_allclose(h2["val_loss"].iloc[0], h1["val_loss"].iloc[0] * 3 / 4, rtol=METRIC_RTOL)
    # the loaded model predicts on any batch size (3 is not a multiple of the 2 replicas)
    x = np.random.default_rng(0).random((3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(multi.predict(x, verbose=0), single.predict(x, verbose=0), atol=1e-4)
    m1 = json.loads((out / "single" / "metrics.json").read_text())
    m2 = json.loads((out / "dist" / "metrics.json").read_text())
    assert m1["n_images"] == m2["n_images"] == 2
    assert abs(m1["dice"] - m2["dice"]) <= 1e-3


# ----------------------------------------------------------------------------- pure helpers
def test_global_batch_and_learning_rate_rules():
    assert dist.global_batch_size(8, 4) == 32
    assert dist.global_batch_size(3, 1) == 3
    with pytest.raises(ValueError):
        dist.global_batch_size(0, 2)
    assert dist.scaled_learning_rate(1e-3, 4, "linear") == pytest.approx(4e-3)
    assert dist.scaled_learning_rate(1e-3, 4, "sqrt") == pytest.approx(2e-3)
    assert dist.scaled_learning_rate(1e-3, 4, "none") == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        dist.scaled_learning_rate(1e-3, 4, "cubic")


def test_tf_config_detection(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not dist.is_multi_worker()
    cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert dist.is_multi_worker()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}))
    assert not dist.is_multi_worker()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG"):
        dist.is_multi_worker()


def test_pad_batches_fills_with_zero_weight_samples():
    import keras

    images = np.arange(6 * 2 * 2 * 1, dtype="float32").reshape(6, 2, 2, 1)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epochs_ended = 0

        def __len__(self):
            return 2

        def __getitem__(self, i):           # two batches of 3 images
            sl = slice(3 * i, 3 * i + 3)
            return images[sl], (images[sl] > 5).astype("float32")

        def on_epoch_end(self):
            self.epochs_ended += 1

    inner = Batches()
    assert pad_batches(inner, 1) is inner
    padded = pad_batches(inner, 2)
    assert isinstance(padded, PaddedBatches)
    assert len(padded) == 2
    for i in range(2):
        x, y, w = padded[i]
        assert x.shape == (4, 2, 2, 1) and y.shape == (4, 2, 2, 1)
        np.testing.assert_array_equal(w, [1, 1, 1, 0])
        np.testing.assert_array_equal(x[:3], images[3 * i:3 * i + 3])
        np.testing.assert_array_equal(x[3], x[0])             # filler repeats the first sample
    first = pad_batches(inner, 2, first_only=True)       # TensorFlow: only batch 0 must be even
    assert first[0][0].shape[0] == 4
    x, y, w = first[1]
    assert x.shape[0] == 3
    np.testing.assert_array_equal(w, [1, 1, 1])
    padded.on_epoch_end()
    assert inner.epochs_ended == 1
    assert dist.even_batches(inner) is inner                  # no distribution active here


def test_without_distribution_nothing_changes():
    # In this (TensorFlow, undistributed) process: one replica, no batch constraint, XLA allowed.
    assert dist.replica_count() == 1
    assert dist.batch_multiple() == 1
    assert dist.jit_allowed()
    assert dist.process_shard(10) == slice(None)
    import contextlib

    with contextlib.ExitStack() as stack:
        assert dist.open_scope(stack, False, per_replica_batch=8) == 1


def test_process_shard_gives_every_host_the_same_count(monkeypatch):
    # JAX hosts must feed equal batches in lock-step: 7 samples over 3 hosts -> 3 each, wrapping around.
    monkeypatch.setattr(dist, "process_count", lambda: 3)
    parts = []
    for i in range(3):
        monkeypatch.setattr(dist, "process_index", lambda i=i: i)
        parts.append(dist.process_shard(7).tolist())
    assert parts == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    monkeypatch.setattr(dist, "process_count", lambda: 2)
    monkeypatch.setattr(dist, "process_index", lambda: 1)
    assert dist.process_shard(16).tolist() == list(range(1, 16, 2))


def test_shard_indices_wrap_around_and_one_host_reads_all():
    assert shard_indices(10, 1, 0) == slice(None)
    assert shard_indices(5, 2, 0).tolist() == [0, 2, 4]
    assert shard_indices(5, 2, 1).tolist() == [1, 3, 0]


# ----------------------------------------------------------------------------- the Keras multi-worker fix
def test_keras_multi_worker_fix_is_a_no_op_where_it_does_not_apply():
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    before = (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica)
    for strategy in (None, tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0"])):
        with compat.keras_multi_worker_fix(strategy) as applied:
            assert applied is False
            assert (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica) == before
    # and the default single-device scope leaves Keras alone too
    with dist.distribution_scope(True, "mirrored"):
        assert (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica) == before


def test_keras_multi_worker_fix_is_applied_then_undone(monkeypatch):
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    # Keras 3.15.1 (the newest checked) still has the faulty reduction, so the gate says the fix is needed.
    if keras.__version__ == compat.KERAS_CHECKED:
        assert compat.multi_worker_fix_needed()
    if not compat.multi_worker_fix_needed():
        pytest.skip(f"Keras {keras.__version__} no longer has the faulty reduction: the fix never applies")
    before = (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica)
    monkeypatch.setattr(compat, "_is_multi_worker", lambda strategy: True)   # no cluster needed to check the swap
    with compat.keras_multi_worker_fix(object()) as applied:
        assert applied is True
        assert tf_trainer.reduce_per_replica is not before[1]
        assert tf_trainer.TensorFlowTrainer._maybe_symbolic_build is not before[0]
    assert (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica) == before


def test_keras_multi_worker_fix_is_off_on_a_keras_without_the_fault(monkeypatch):
    monkeypatch.setattr(compat, "_FAULTY_LINE", "a line no Keras has")
    assert not compat.multi_worker_fix_needed()
    monkeypatch.setattr(compat, "_is_multi_worker", lambda strategy: True)
    with compat.keras_multi_worker_fix(object()) as applied:
        assert applied is False


def test_environment_summary_names_backend_and_devices():
    import keras

    from Functions.base.runtime import environment_summary

    text = environment_summary()
    assert text.startswith(f"Keras {keras.__version__} | backend {keras.backend.backend()} ")
    assert "devices: " in text and "cpu" in text.lower()


def test_unknown_strategy_kind_is_a_user_error():
    with pytest.raises(UserError, match="data_parallel"):
        dist.get_strategy("data_parallel")       # a JAX kind, asked on TensorFlow


# ----------------------------------------------------------------------------- distributed == single device
@pytest.fixture(scope="module")
def backend_runs(tmp_path_factory):
    """``run_backend`` once per backend for this module: the multi-process tests compare with the same runs."""
    done = {}

    def get(backend):
        if backend not in done:
            done[backend] = run_backend(backend, tmp_path_factory.mktemp(backend))
        return done[backend]
    return get


def _needs(backend: str) -> None:
    """Skip where ``backend`` is not installed; skip the JAX cases in CI's PyTorch pass.

    CI installs JAX and PyTorch (requirements-backends.txt) only for its JAX and PyTorch passes, which run the
    tests marked ``backend``: a JAX case with that mark runs in the JAX pass, once."""
    pytest.importorskip(backend)
    if backend == "jax" and os.environ.get("KERAS_BACKEND") == "torch":
        pytest.skip("the JAX subprocess cases run in the KERAS_BACKEND=jax pass")


# The JAX case needs JAX in the TensorFlow pass, which CI does not install: it runs where JAX is installed
# (adding the backend mark would run it in CI's JAX pass, for about 50 CPU-seconds more).
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_distributed_epoch_matches_single_device(backend, backend_runs):
    _needs(backend)
    stdout, out = backend_runs(backend)
    reported = re.findall(r"Distributed training: (\w+) with (\d+) replica\(s\).*global batch (\d+)", stdout)
    assert reported == [("MirroredStrategy" if backend == "tensorflow" else "DataParallel", "2", "4")], stdout
    assert f"backend {backend}" in stdout
    for run in ("single", "dist"):
        for name in ("model.keras", "history.csv", "metrics.json", "report.md"):
            assert (out / run / name).is_file(), f"{run}/{name} missing"
    assert (out / "dist" / "progress.png").is_file()        # drawn by predict() inside the distribution
    assert_runs_match(out)


def test_too_late_cpu_split_is_a_user_error(monkeypatch):
    # TensorFlow is already running in this process, so the CPU can no longer be split.
    import tensorflow as tf

    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))   # restored afterwards

    tf.constant(1.0)                                   # make sure devices are initialised
    if len(tf.config.list_logical_devices("CPU")) == 3:
        pytest.skip("this process already has 3 logical CPUs")
    with pytest.raises(UserError, match="fresh Python process|before Python starts"):
        dist.use_cpu_devices(3)


# ----------------------------------------------------------------------------- several processes
def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train_workers(envs: list[dict], data: Path, out: Path) -> list[str]:
    procs = []
    for i, extra in enumerate(envs):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", **extra}
        cmd = [sys.executable, "-m", "Functions", "train", "--data", str(data), *TRAIN_ARGS, "--distribute",
               "--batch-size", "2", "--out", str(out / f"worker{i}")]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return logs


def test_tensorflow_multi_worker_two_processes_match_single_device(backend_runs, tmp_path):
    """Two worker processes on this machine, configured by TF_CONFIG (MultiWorkerMirroredStrategy)."""
    _needs("tensorflow")
    _, out = backend_runs("tensorflow")                    # its single-device run is the reference
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    envs = [{"KERAS_BACKEND": "tensorflow",
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(2)]
    logs = _train_workers(envs, out.parent / "data", tmp_path / "mw")
    for log in logs:
        assert re.search(r"with 2 replica\(s\).*global batch 4", log), log[-2000:]
    h = [pd.read_csv(tmp_path / "mw" / f"worker{i}" / "history.csv") for i in range(2)]
    ref = pd.read_csv(out / "single" / "history.csv")
    for hist in h:
        np.testing.assert_allclose(hist[["loss", "val_dice"]].to_numpy(), ref[["loss", "val_dice"]].to_numpy(),
                                   rtol=METRIC_RTOL, atol=1e-7)


@pytest.mark.backend
def test_jax_two_host_processes_train_together(tmp_path):
    """Two JAX processes joined by keras.distribution.initialize (KERAS_DISTRIBUTION_* variables, gloo on CPU)."""
    _needs("jax")
    data = make_blobs(tmp_path / "data")
    port = _free_ports(1)[0]
    envs = [{"KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
             "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(i),
             "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"} for i in range(2)]
    logs = _train_workers(envs, data, tmp_path / "jm")
    for log in logs:
        assert re.search(r"DataParallel with 2 replica\(s\).*global batch 4", log), log[-2000:]
    h = [pd.read_csv(tmp_path / "jm" / f"worker{i}" / "history.csv") for i in range(2)]
    # one model trained together: both hosts log the same (globally aggregated) loss and metrics
    np.testing.assert_allclose(h[0].drop(columns=["seconds"]).to_numpy(), h[1].drop(columns=["seconds"]).to_numpy(),
                               rtol=1e-6)
