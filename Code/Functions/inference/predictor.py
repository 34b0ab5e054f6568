"""Using a trained model on new images of any size: the ``predict`` command's library.

A run folder keeps ``config.json`` next to ``model.keras``; it says how the
training images were prepared (channels, normalisation, CLAHE, threshold).
:func:`load_predictor` reads both, so new images go through exactly the same
steps: convert channels -> CLAHE -> resize to the model's input size ->
normalise.  The probability map is resized back to each image's own size
(linear interpolation) and only then thresholded, so every mask has its
image's height and width.

>>> predictor = load_predictor("runs/unet-20250101-120000")          # doctest: +SKIP
>>> masks = predictor.predict([image_a, image_b])                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.data.imaging import IMAGE_EXTENSIONS, is_image_file

#: Preprocessing used when a model has no ``config.json`` beside it (the ``train`` defaults).
DEFAULTS = {"normalization": "minmax", "clahe": False, "threshold": 0.5}


def load_model_file(path: str | os.PathLike, flag: str = "--model"):
    """Load a ``.keras`` model (or ``RUN_DIR/model.keras`` when given a run folder) for inference.

    Returns ``(model, path)``.  Raises :class:`UserError` naming the file when it
    is missing or is not a Keras model.
    """
    import keras

    from Functions.inference.loading import load_keras_model

    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "model.keras").is_file():
            raise UserError(f"{flag} {path} is a folder without model.keras; pass a .keras file or a run folder")
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist; pass the model.keras file of a training run")
    if path.suffix != ".keras":
        raise UserError(f"{flag} {path} is not a .keras file; pass the model.keras written by `train`")
    model = load_keras_model(path, flag=flag)
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise UserError(f"{flag} {path} is not a one-input image model; pass a segmentation model from `train`")
    return model, path


def run_settings(model_path: str | os.PathLike) -> dict:
    """Preprocessing of the run a model came from: its ``config.json`` (if any) over :data:`DEFAULTS`."""
    settings = dict(DEFAULTS)
    cfg = Path(model_path).parent / "config.json"
    if cfg.is_file():
        try:
            values = json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{cfg} is not valid JSON; repair it or move it away to use the default "
                            "preprocessing") from None
        settings.update({k: values[k] for k in ("normalization", "clahe", "threshold", "image_size", "channels",
                                                "task", "num_classes", "class_names", "patch_size", "overlap",
                                                "scale", "boundaries", "object_types", "stuff_classes",
                                                "panoptic_names")
                         if values.get(k) is not None})
    decoder = Path(model_path).parent / "instance_decoder.json"     # watershed settings tuned on validation
    if decoder.is_file():
        try:
            chosen = json.loads(decoder.read_text()).get("chosen")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise UserError(f"{decoder} is not valid JSON with a \"chosen\" object; repair it or move it away to "
                            "use the default watershed settings") from None
        by_kind = (chosen.get("by_kind") or {}) if isinstance(chosen, dict) else None
        kinds_ok = isinstance(by_kind, dict) and all(isinstance(v, dict) for v in by_kind.values())
        if chosen is not None and not kinds_ok:
            raise UserError(f"{decoder}: \"chosen\" must be an object of watershed settings whose \"by_kind\" maps "
                            "a kind of image to settings; repair it or move it away to use the default settings")
        settings["decoder"] = chosen
    return settings


@dataclass
class Predictor:
    """A model with the preprocessing it was trained with.

    ``input_size`` ``(height, width)`` of the model input (``None`` entries: the
    model accepts any size, and ``image_size`` from the run, else the image's
    own size rounded up to a multiple of 32, is used); ``channels`` 1 or 3.
    """

    model: object
    channels: int
    input_size: tuple[int | None, int | None]
    normalization: str = "minmax"
    clahe: bool = False
    threshold: float = 0.5
    image_size: int | None = None
    #: trained on patches (``train --patch-size``): predict whole images by sliding window at native resolution
    #: (times ``scale`` when the run resampled its images), tiles overlapping by ``overlap``.
    patch_size: int | None = None
    overlap: float = 0.5
    scale: float | None = None
    #: instance runs: the watershed settings tuned on the run's validation split (``instance_decoder.json``)
    decoder: dict | None = None
    #: instance runs: where the run drew the boundary class (``"contact"``: a 4-class head, rim and contact apart)
    boundaries: str | None = None

    def target_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        h, w = self.input_size
        if h is not None and w is not None:
            return int(h), int(w)
        if self.image_size:
            return int(self.image_size), int(self.image_size)
        return tuple(int(-(-s // 32) * 32) for s in shape[:2])  # type: ignore[return-value]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, C)`` image as stored -> ``(h, w, channels)`` float32 model input."""
        from Functions.data.preprocessing import clahe, normalize, resize_image, to_channels

        x = to_channels(np.asarray(image), self.channels)
        if self.clahe:
            x = clahe(x)
        x = resize_image(x, self.target_size(x.shape))
        return normalize(x, self.normalization)

    def probabilities(self, images: list[np.ndarray], batch_size: int = 8, tta: bool = False) -> list[np.ndarray]:
        """Per image, ``(H, W, C)`` float32 probabilities at that image's own size."""
        from Functions.inference.tta import predict_probabilities

        if self.patch_size:
            return [self.window_probabilities(im, batch_size, tta) for im in images]
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            prepared = [self.prepare(im) for im in chunk]
            groups: dict[tuple, list[int]] = {}
            for i, p in enumerate(prepared):        # images of one size go through the model together
                groups.setdefault(p.shape, []).append(i)
            probs: list[np.ndarray | None] = [None] * len(chunk)
            for idx in groups.values():
                batch = np.stack([prepared[i] for i in idx])
                pred = predict_probabilities(self.model, batch, batch_size=batch_size, tta=tta)
                for k, i in enumerate(idx):
                    probs[i] = pred[k]
            for im, p in zip(chunk, probs):
                out.append(resize_probabilities(p, np.asarray(im).shape[:2]))
        return out

    def window_probabilities(self, image: np.ndarray, batch_size: int = 8, tta: bool = False) -> np.ndarray:
        """Sliding-window prediction of one ``(H, W, C)`` image at native resolution -> ``(H, W, K)`` float32.

        The image is prepared as in patch training (channels, CLAHE, resampled by
        ``scale`` when set, normalised over the whole image), tiled by
        ``patch_size`` with ``overlap`` and Gaussian weights
        (:func:`Functions.inference.sliding_window.sliding_window_predict`), and the
        probabilities are resized back when the image was resampled.
        """
        from Functions.data.preprocessing import clahe, normalize, resize_image, to_channels
        from Functions.inference.sliding_window import keras_predict_fn, sliding_window_predict

        x = to_channels(np.asarray(image), self.channels)
        if self.clahe:
            x = clahe(x)
        shape = x.shape[:2]
        if self.scale and float(self.scale) != 1.0:
            x = resize_image(x, tuple(max(1, int(round(s * float(self.scale)))) for s in shape))
        x = normalize(x, self.normalization).astype(np.float32)
        patch = self.patch_size
        h, w = self.input_size
        if h is not None and w is not None:
            patch = (int(h), int(w))                  # a fixed-size model takes tiles of its own input size
        if getattr(self, "_window_fn", None) is None:
            self._window_fn = keras_predict_fn(self.model)
        probs = sliding_window_predict(self._window_fn, x, patch, overlap=self.overlap, batch_size=batch_size,
                                       tta=tta)
        return resize_probabilities(probs, shape)

    def predict(self, images: list[np.ndarray], batch_size: int = 8, tta: bool = False,
                threshold: float | None = None) -> list[np.ndarray]:
        """Per image, an ``(H, W)`` uint8 mask (0/1, or class labels for a softmax model) at its own size."""
        from Functions.inference.tta import probabilities_to_masks

        t = self.threshold if threshold is None else threshold
        return [probabilities_to_masks(p[None], t)[0] for p in self.probabilities(images, batch_size, tta)]


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(h, w, C)`` probabilities -> ``(H, W, C)`` with linear interpolation (thresholding comes after)."""
    import cv2

    p = np.asarray(probs, dtype=np.float32)
    if p.shape[:2] == tuple(shape):
        return p
    out = cv2.resize(p, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    return out.reshape(int(shape[0]), int(shape[1]), p.shape[-1])


def load_predictor(model_path: str | os.PathLike, flag: str = "--model", runtime: str = "keras") -> Predictor:
    """:class:`Predictor` for a ``.keras`` file or run folder, with the run's preprocessing when known.

    ``runtime="onnx"`` / ``"litert"``: the run's exported file (``RUN/export/model.onnx`` / ``.tflite``, or
    that file itself) behind the same interface (:mod:`Functions.inference.runtimes`), with the preprocessing
    of the run it was exported from.
    """
    from Functions.inference.runtimes import exported_file, load_runtime_model, run_folder_of, runtime_of

    if runtime == "keras":
        kind = runtime_of(model_path)
        if kind not in (None, "keras"):
            raise UserError(f"{flag} {model_path} is an exported {kind} file; add --runtime {kind} to run it")
        model, path = load_model_file(model_path, flag=flag)
    else:
        file = exported_file(model_path, runtime, flag)
        model, path = load_runtime_model(file, runtime, flag), run_folder_of(file) / "model.keras"
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise UserError(f"{flag} {path} takes inputs of shape {shape[1:]}, not 2-D images with 1 or 3 channels; "
                        "pass a segmentation model from `train`")
    out_shape = tuple(model.outputs[-1].shape)
    if len(out_shape) != 4:
        raise UserError(f"{flag} {path} outputs shape {out_shape[1:]}, not a mask; it looks like a classifier - "
                        "pass a segmentation model")
    s = run_settings(path)
    return Predictor(model=model, channels=int(shape[-1]), input_size=(shape[1], shape[2]),
                     normalization=s["normalization"], clahe=bool(s["clahe"]), threshold=float(s["threshold"]),
                     image_size=s.get("image_size"), patch_size=s.get("patch_size"),
                     overlap=float(s.get("overlap", 0.5)), scale=s.get("scale"), decoder=s.get("decoder"),
                     boundaries=s.get("boundaries"))


def list_images(path: str | os.PathLike, flag: str = "--images") -> list[Path]:
    """One image file, or the image files directly inside a folder (sorted).

    Raises :class:`UserError` when the path is missing, holds no images, or
    two images share a file stem (their masks would get the same name).
    """
    path = Path(path).expanduser()
    if path.is_file():
        if not is_image_file(path):
            raise UserError(f"{flag} {path} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        return [path]
    if not path.is_dir():
        raise UserError(f"{flag} {path} does not exist; pass an image file or a folder of images")
    files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise UserError(f"{flag} {path} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) directly inside it; "
                        "point it at the folder that holds the images")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise UserError(f"{flag} {path} holds {seen[f.stem].name} and {f.name}, whose masks would both be "
                            f"{f.stem}.png; rename or move one of them")
        seen[f.stem] = f
    return files


def check_new_folder(out: str | os.PathLike, flag: str = "--out") -> Path:
    """``out`` as a folder that is absent or empty (existing files are never overwritten)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file, not a folder; choose a new folder name")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{flag} {out} already holds files and is never overwritten; choose a new folder")
    return out


def images_in_chunks(files: list[Path], out: Path, overlay: bool, batch_size: int):
    """Create ``out/`` (and ``out/overlays/`` with ``overlay``), then yield ``(paths, images)`` for
    ``batch_size`` files at a time, each image ``(H, W, C)`` as stored."""
    from Functions.data.imaging import read_image

    out.mkdir(parents=True, exist_ok=True)
    if overlay:
        (out / "overlays").mkdir()
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        yield chunk, [read_image(f) for f in chunk]


def predict_folder(model_path: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                   threshold: float | None = None, overlay: bool = False, batch_size: int = 8,
                   tta: bool = False, overlap: float | None = None, runtime: str = "keras"):
    """Predict a mask for one image or every image in a folder and write ``out/<stem>.png`` (0/255).

    A model trained on patches (``train --patch-size``) predicts every image
    whole at its native resolution by sliding window, tiles overlapping by
    ``overlap`` (default: the run's, else 0.5); see
    :meth:`Predictor.window_probabilities`.

    With ``overlay`` also ``out/overlays/<stem>.png`` (the image with the
    mask outlined and tinted).  All inputs are checked (readable, uniquely
    named) before anything is written.  Returns a :class:`pandas.DataFrame`
    with ``image, mask, width, height, foreground`` (foreground fraction),
    also written as ``out/predictions.csv``.

    ``runtime``: ``"keras"``, or ``"onnx"`` / ``"litert"`` to run the run's exported file (same outputs).

    Multi-class (softmax) models write class maps (8-bit PNG, value = class
    index) and overlays with one colour per class.  Instance label maps
    (``predict --task instance``): :func:`Functions.inference.instances.predict_folder_instances`.
    """
    import pandas as pd

    from Functions.data.imaging import read_image, write_image, write_mask

    if threshold is not None and not 0 < threshold < 1:
        raise UserError(f"--threshold must be between 0 and 1, got {threshold}")
    if overlap is not None:
        from Functions.inference.sliding_window import check_overlap

        overlap = check_overlap(overlap)
    out = check_new_folder(out)
    files = list_images(images)
    for f in files:                                   # fail before writing anything
        read_image(f)
    predictor = load_predictor(model_path, runtime=runtime)
    if overlap is not None:
        predictor.overlap = overlap
    rows = []
    for chunk, arrays in images_in_chunks(files, out, overlay, batch_size):
        masks = predictor.predict(arrays, batch_size=batch_size, tta=tta, threshold=threshold)
        n_classes = int(predictor.model.outputs[-1].shape[-1])
        for f, im, m in zip(chunk, arrays, masks):
            if n_classes > 1:  # class map: value = class index, whatever classes this image holds
                write_image(out / f"{f.stem}.png", np.asarray(m, np.uint8))
            else:
                write_mask(out / f"{f.stem}.png", m)
            if overlay:
                from Functions.data.overlays import overlay as draw
                from Functions.data.overlays import overlay_classes

                drawn = overlay_classes(im, m, n_classes) if n_classes > 1 else draw(im, None, m)
                write_image(out / "overlays" / f"{f.stem}.png", np.round(drawn * 255).astype(np.uint8))
            rows.append({"image": str(f), "mask": f"{f.stem}.png", "width": im.shape[1], "height": im.shape[0],
                         "foreground": float(np.mean(m > 0))})
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    return table
