"""Exported models (ONNX, LiteRT) behind the interface the Keras prediction code already uses.

An exported file is wrapped in a small adapter with ``predict(batch) -> probabilities``
(also available as ``predict_on_batch``) and ``inputs`` / ``outputs`` carrying
their ``shape``, so :class:`Functions.inference.predictor.Predictor`, test-time
augmentation and the sliding window run it exactly as they run a Keras model:
same preprocessing, same tiling, same outputs.

>>> model = load_runtime_model("runs/unext/export/model.onnx", "onnx")   # doctest: +SKIP
>>> probs = model.predict(batch)            # (N, H, W, C) float32 -> (N, H, W, K) float32   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

#: Runtime -> (file suffix, module to import, pip package that provides it).
RUNTIMES = {
    "keras": (".keras", "keras", "keras"),
    "onnx": (".onnx", "onnxruntime", "onnxruntime"),
    "litert": (".tflite", "ai_edge_litert", "ai-edge-litert"),
}


def require(module: str, package: str, what: str):
    """Import ``module``; a missing one is a :class:`UserError` naming the package and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs the package {package}; install the deployment extra: "
                        "pip install -e .[deploy]") from None


@dataclass(frozen=True)
class TensorSpec:
    """The ``shape`` (``None`` for free sizes) of an exported model's input or output."""

    shape: tuple


class OnnxModel:
    """An ``.onnx`` file run by ONNX Runtime on the CPU."""

    runtime = "onnx"

    def __init__(self, path: Path):
        ort = require("onnxruntime", "onnxruntime", "--runtime onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on a CPU shared with other work, spinning threads
        # fight for cores and make the median latency several times worse.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.inputs = [TensorSpec(_shape(t.shape)) for t in self.session.get_inputs()]
        self.outputs = [TensorSpec(_shape(t.shape)) for t in self.session.get_outputs()]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out[-1], dtype=np.float32)

    predict_on_batch = predict


class LiteRTModel:
    """A ``.tflite`` file run by the LiteRT interpreter (float32, float16 or int8 weights; float input)."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int | None = None):
        interpreter = require("ai_edge_litert.interpreter", "ai-edge-litert", "--runtime litert")
        self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self.inputs = [TensorSpec(_shape(inp["shape_signature"]))]
        self.outputs = [TensorSpec(_shape(out["shape_signature"]))]
        self._batch = None

    def _resize(self, shape: tuple) -> None:
        if self._batch != shape:
            index = self.interpreter.get_input_details()[0]["index"]
            self.interpreter.resize_tensor_input(index, list(shape), strict=False)
            self.interpreter.allocate_tensors()
            self._batch = shape

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._resize(batch.shape)
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        x = batch
        if inp["dtype"] != np.float32:                        # integer input: quantise with the file's scale
            scale, zero = inp["quantization"]
            x = np.round(batch / scale + zero).astype(inp["dtype"])
        self.interpreter.set_tensor(inp["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, dtype=np.float32)

    predict_on_batch = predict


def _shape(dims) -> tuple:
    """ONNX / LiteRT dimensions -> a shape with ``None`` for the free ones (names, -1, 0)."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in dims)


def runtime_of(path: str | os.PathLike) -> str | None:
    """The runtime a file is for, from its suffix (``None`` when unknown)."""
    suffix = Path(path).suffix.lower()
    return next((name for name, (ext, _, _) in RUNTIMES.items() if ext == suffix), None)


def exported_file(model: str | os.PathLike, runtime: str, flag: str = "--model") -> Path:
    """The file ``runtime`` runs for ``--model``: the file itself, or ``RUN/export/model.<ext>`` for a run folder.

    A file of another kind is a :class:`UserError` that says which file to pass.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    ext = RUNTIMES[runtime][0]
    path = Path(model).expanduser()
    if path.is_dir():
        candidate = path / ("model.keras" if runtime == "keras" else f"export/model{ext}")
        if not candidate.is_file():
            raise UserError(f"{flag} {path} has no {candidate.relative_to(path)}; export it first with "
                            f"`python -m Functions export {path} --format {runtime}`, or pass the {ext} file")
        return candidate
    if path.suffix.lower() != ext:
        kind = runtime_of(path)
        hint = f" (a {kind} file: use --runtime {kind})" if kind else ""
        raise UserError(f"--runtime {runtime} runs {ext} files, but {flag} {path} is not one{hint}")
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist; export the run first with `python -m Functions export`")
    return path


def load_runtime_model(path: str | os.PathLike, runtime: str, flag: str = "--model"):
    """An :class:`OnnxModel` or :class:`LiteRTModel` for an exported file (checked by :func:`exported_file`)."""
    path = exported_file(path, runtime, flag)
    try:
        return OnnxModel(path) if runtime == "onnx" else LiteRTModel(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file reads the same to a user
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{flag} {path} could not be loaded by {runtime} ({reason}); export it again") from None


def run_folder_of(path: str | os.PathLike) -> Path:
    """The run folder an exported file belongs to (``RUN/export/model.onnx`` -> ``RUN``)."""
    path = Path(path).expanduser()
    return path.parent.parent if path.parent.name == "export" else path.parent
