"""Export a trained run for deployment (ONNX, LiteRT, SavedModel) and check the file against the Keras model.

Everything goes through Keras's own ``model.export`` (tf2onnx for ONNX, the
TensorFlow Lite converter for LiteRT, with its quantisation options for
``float16`` / ``int8`` weights).  The file lands in ``RUN/export/``
(``model.onnx``, ``model.tflite``, ``model-int8.tflite``, ``saved_model/``);
an existing one is never replaced.  Each export then runs the new file on
sample images, prepared exactly as ``predict`` prepares them, and compares it
with the Keras model: the largest absolute difference of the probabilities
and the Dice overlap of the two thresholded masks, written beside the file as
``<file>.check.json``.

>>> report = export_run("runs/unext", "onnx", images="Data/sample/ultrasound/benign")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

FORMATS = ("onnx", "litert", "saved_model")
QUANTIZATIONS = ("float16", "int8")
#: Format -> the package its converter and its check need (module, pip name).
NEEDS = {"onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
         "litert": (("ai_edge_litert", "ai-edge-litert"),), "saved_model": ()}


def export_file(run: Path, fmt: str, quantize: str | None = None) -> Path:
    """Where ``fmt`` (optionally quantised) goes.

    ``RUN/export/model[-float16|-int8].onnx|.tflite`` or ``RUN/export/saved_model``.
    """
    suffix = f"-{quantize}" if quantize else ""
    name = {"onnx": "model{}.onnx", "litert": "model{}.tflite", "saved_model": "saved_model{}"}[fmt]
    return run / "export" / name.format(suffix)


def sample_batch(predictor, images, flag: str, limit: int = 8) -> np.ndarray:
    """Up to ``limit`` images of a folder (or a list of image files), prepared as ``predict`` prepares them.

    Returns ``(N, h, w, C)`` float32.
    """
    from Functions.data.imaging import read_image
    from Functions.inference.predictor import list_images

    files = list(images) if isinstance(images, (list, tuple)) else list_images(images, flag=flag)
    files = files[:limit]
    return np.stack([predictor.prepare(read_image(f)) for f in files]).astype(np.float32)


def _check_arguments(fmt: str, quantize: str | None, calibration, images) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize {quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    if quantize and fmt != "litert":
        raise UserError(f"--quantize {quantize} applies to --format litert (the LiteRT converter quantises); "
                        f"export --format {fmt} without --quantize")
    if quantize == "int8" and calibration is None:
        raise UserError("--quantize int8 needs --calibration DIR: a folder of training-like images to measure the "
                        "activation ranges")
    if images is None and calibration is None:
        raise UserError("the export checks itself on sample images: pass --images DIR (or --calibration DIR)")


def export_run(run: str | os.PathLike, fmt: str = "onnx", *, quantize: str | None = None,
               calibration: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
               limit: int = 8) -> dict:
    """Export the run's ``model.keras`` as ``fmt`` into ``RUN/export/`` and check it; returns the check figures.

    ``quantize`` (LiteRT only): ``"float16"`` weights, or ``"int8"`` weights and activations calibrated on
    up to 100 images of ``calibration``.  ``images`` (default: ``calibration``): the images the check runs on.
    The returned dict (also ``<file>.check.json``) holds ``file``, ``format``, ``precision``, ``bytes``,
    ``images``, ``max_abs_diff`` (probabilities) and ``dice`` (masks at the run's threshold, mean over images),
    and ``seconds`` (export time).
    """
    from Functions.inference.runtimes import require

    _check_arguments(fmt, quantize, calibration, images)   # argument mistakes answer before any backend starts
    for module, package in NEEDS[fmt]:
        require(module, package, f"export --format {fmt}")
    import keras

    from Functions.inference.predictor import load_predictor

    if keras.backend.backend() != "tensorflow":
        raise UserError(f"export runs on the TensorFlow backend, not {keras.backend.backend()}; "
                        "run it with KERAS_BACKEND=tensorflow")
    run = Path(run).expanduser()
    predictor = load_predictor(run, flag="RUN")
    target = export_file(run if run.is_dir() else run.parent, fmt, quantize)
    if target.exists():
        raise UserError(f"{target} already exists and is never overwritten; move it away to export again")
    sample = sample_batch(predictor, images if images is not None else calibration,
                          "--images" if images is not None else "--calibration", limit)
    options = _converter_options(predictor, quantize, calibration)
    model = predictor.model
    model(sample[:1], training=False)                  # a freshly loaded model must be called once to export
    created = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    export_format = "tf_saved_model" if fmt == "saved_model" else fmt
    try:
        with warnings.catch_warnings():              # converter deprecation chatter (np.object, tf.lite) is not ours
            warnings.simplefilter("ignore")
            model.export(str(target), format=export_format, verbose=False, **options)
    except Exception as exc:  # noqa: BLE001 - converters raise many kinds; the user needs one line
        if created and not any(target.parent.iterdir()):
            target.parent.rmdir()
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"export --format {fmt} of {run} failed ({reason})") from None
    seconds = time.perf_counter() - start
    report = {"file": target.name, "format": fmt, "precision": quantize or "float32", "seconds": round(seconds, 1),
              "bytes": _size(target), **check_export(predictor, target, fmt, sample)}
    Path(f"{target}.check.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _converter_options(predictor, quantize: str | None, calibration) -> dict:
    """LiteRT converter settings for ``quantize`` (passed through ``model.export`` to the TFLiteConverter)."""
    if not quantize:
        return {}
    import tensorflow as tf

    if quantize == "float16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": {"supported_types": [tf.float16]}}
    batch = sample_batch(predictor, calibration, "--calibration", limit=100)

    def representative():
        for image in batch:
            yield [image[None]]

    return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative}


def check_export(predictor, target: Path, fmt: str, sample: np.ndarray) -> dict:
    """Run ``target`` on ``sample`` and compare with the Keras model: ``{images, max_abs_diff, dice}``."""
    from Functions.inference.tta import predict_probabilities, probabilities_to_masks
    from Functions.metrics.segmentation import dice

    expected = predict_probabilities(predictor.model, sample, batch_size=len(sample))
    got = np.concatenate([_runner(target, fmt)(image[None]) for image in sample])
    masks_keras = probabilities_to_masks(expected, predictor.threshold)
    masks_file = probabilities_to_masks(got, predictor.threshold)
    scores = [dice(a, b) for a, b in zip(masks_keras, masks_file)]
    return {"images": int(len(sample)), "max_abs_diff": float(np.max(np.abs(expected - got))),
            "dice": float(np.mean(scores))}


def _runner(target: Path, fmt: str):
    """``batch -> probabilities`` for an exported file."""
    if fmt == "saved_model":
        import keras

        layer = keras.layers.TFSMLayer(str(target), call_endpoint="serve")
        return lambda batch: np.asarray(keras.ops.convert_to_numpy(_first(layer(batch))), np.float32)
    from Functions.inference.runtimes import load_runtime_model

    return load_runtime_model(target, fmt).predict


def _first(outputs):
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
