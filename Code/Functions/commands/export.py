"""``python -m Functions export``: write a trained run as ONNX, LiteRT or a SavedModel, checked against Keras.

The file goes to ``RUN/export/`` (``model.onnx``, ``model.tflite``,
``model-float16.tflite``, ``model-int8.tflite`` or ``saved_model/``; an
existing one is refused, never replaced), converted by Keras's own
``model.export``.  The export then runs the file on sample images (prepared
as ``predict`` prepares them) and writes ``<file>.check.json``: the largest
absolute difference of the probabilities from the Keras model's, and the Dice
overlap of the two masks.  The converters are optional:
``pip install -e .[deploy]`` (tf2onnx, onnx, onnxruntime, ai-edge-litert).
Run the exported file with ``predict --runtime onnx|litert``.
"""

from __future__ import annotations

NAME = "export"
HELP = "export a trained run to ONNX / LiteRT (float16, int8) / SavedModel and check it against the Keras model"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN", help="run folder written by `train` (holds model.keras and config.json)")
    p.add_argument("--format", choices=("onnx", "litert", "saved_model"), default="onnx", help="(%(default)s)")
    p.add_argument("--quantize", choices=("float16", "int8"), default=None,
                   help="LiteRT only: float16 weights, or int8 weights and activations (needs --calibration)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="folder of training-like images: int8 activation ranges (up to 100 images)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="folder of images the check runs on (up to 8; default: --calibration)")


def run(args) -> int:
    from Functions.apps.export import export_run

    report = export_run(args.run, args.format, quantize=args.quantize, calibration=args.calibration,
                        images=args.images)
    print(f"{report['file']} ({report['precision']}, {report['bytes'] / 1e6:.2f} MB, {report['seconds']} s): on "
          f"{report['images']} image(s) max |p - p_keras| = {report['max_abs_diff']:.2e}, Dice with the Keras masks "
          f"{report['dice']:.4f} -> {report['file']}.check.json")
    return 0
