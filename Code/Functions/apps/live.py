"""Live predictions for the classroom page: one input, one run, through the same code as ``predict``.

* :func:`read_input` - an uploaded image, NIfTI volume, DICOM file / series or short video (or an offline
  sample) as an :class:`Input`;
* :func:`predict` - the run's prediction of it (:class:`Prediction`): 2-D and instance runs through
  :class:`~Functions.inference.predictor.Predictor` (native resolution, sliding window for patch runs, TTA),
  panoptic runs decoded by :func:`Functions.inference.panoptic.predict_panoptic` (``predict --task panoptic``),
  3-D runs through :mod:`Functions.inference.volumes` (RAS, training spacing, sliding window, back onto the
  file's grid), classifiers through :mod:`Functions.inference.classifier` with Grad-CAM; every frame of a
  video (at most :data:`MAX_FRAMES`) through the same Predictor; the gate coefficients of an attention U-Net
  (:func:`Functions.models.attention_unet.attention_maps`) kept with the prediction;
* :func:`render` - the picture: overlay, object outlines with ids (panoptic: coloured by type, stuff classes
  tinted, a legend below), three orthogonal planes at the true aspect
  through given slice numbers, Grad-CAM heat map; :func:`gate_pictures` - each attention gate over the image;
  :func:`disagreement` - where two runs differ;
* :func:`export` - the mask (PNG, NIfTI with the input's affine, or every frame's in ``.npz``; panoptic: the
  instance map and the class map as ``predict --task panoptic`` writes them) and the overlay (PNG, or an
  ``.mp4`` video) as files.

Models are loaded once per run (:func:`load_run`, keyed by the model file and its modification time) and the
probabilities of the last few (run, input, TTA) triples are kept, so moving the threshold or a slice slider
redraws without running the network again.  The mask at the run's threshold is the one ``predict`` writes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from Functions.apps.run_catalog import read_json, run_kind
from Functions.base.errors import UserError

#: Probabilities kept for quick redraws (threshold, slices): this many (run, input, TTA) triples.
CACHE_SIZE = 8
#: Smallest side (pixels) a picture is drawn at; small images and volumes are enlarged (nearest neighbour).
MIN_DISPLAY = 320
DIFF_COLOR = (1.0, 0.85, 0.0)    # yellow: pixels where two runs disagree
#: Frames of an uploaded video that are segmented (the first ones; the page says when a video is longer).
MAX_FRAMES = 300
VIDEO_EXTENSIONS = (".mp4", ".avi")

_LOCK = threading.Lock()
_MODELS: dict = {}
_RESULTS: OrderedDict = OrderedDict()


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """What the page segments: ``kind`` ``"image"`` (``image`` ``(H, W, C)`` as stored), ``"volume"``
    (``path``: a NIfTI file or a DICOM series folder) or ``"video"`` (``frames`` ``(N, H, W, 3)`` RGB, the
    first :data:`MAX_FRAMES`; ``image`` the first frame; ``fps`` and ``total_frames`` as the file says);
    ``name`` for files and captions; ``key`` a content hash."""

    kind: str
    path: Path
    name: str
    key: str
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    frames: np.ndarray | None = field(default=None, compare=False, repr=False)
    fps: float | None = None
    total_frames: int = 0

    @property
    def stem(self) -> str:
        from Functions.data.volumes import volume_stem

        return volume_stem(self.path) if self.kind == "volume" else Path(self.name).stem


def file_hash(paths) -> str:
    digest = hashlib.sha1()
    for p in paths:
        digest.update(Path(p).name.encode())
        digest.update(Path(p).read_bytes())
    return digest.hexdigest()[:16]


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float, int]:
    """The first ``max_frames`` (default :data:`MAX_FRAMES`) frames of a video as ``(N, H, W, 3)`` uint8 RGB,
    its frames per second (25 when the file does not say) and its frame count; :class:`UserError` when no frame
    can be decoded."""
    import cv2

    path = Path(path)
    max_frames = MAX_FRAMES if max_frames is None else int(max_frames)
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) if capture.isOpened() else 0.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
        while capture.isOpened() and len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise UserError(f"{path.name} could not be decoded as a video (no frame read); upload an .mp4 or .avi "
                        "that a video player opens")
    return np.stack(frames), (fps if 0 < fps < 1000 else 25.0), max(total, len(frames))


def read_input(paths, workdir: str | os.PathLike | None = None) -> Input:
    """One input from uploaded files: an image, a NIfTI volume, one DICOM image, the files of one DICOM
    series (``.dcm`` or no extension; copied into a folder under ``workdir``) or a short ``.mp4`` / ``.avi``
    video.  :class:`UserError` with one line for anything else."""
    from Functions.data import volumes as V
    from Functions.data.imaging import IMAGE_EXTENSIONS, is_image_file, read_image
    from Functions.data.medical_io import is_dicom

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else (paths or []))]
    if not paths:
        raise UserError("no input: upload an image or a volume, or pick one of the samples")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{missing[0]} does not exist; upload the file again")
    if len(paths) > 1:             # the slices of one DICOM series (any file names; others are skipped)
        if any(is_image_file(p) or V.is_nifti_path(p) for p in paths):
            raise UserError(f"{len(paths)} files uploaded: upload one image or volume, or all the .dcm files of "
                            "one DICOM series")
        folder = Path(tempfile.mkdtemp(prefix="series-", dir=workdir))
        for p in paths:
            shutil.copy2(p, folder / p.name)
        return Input("volume", folder, f"DICOM series ({len(paths)} files)", file_hash(sorted(paths)))
    path = paths[0]
    if path.is_dir():
        return Input("volume", path, path.name, file_hash(sorted(path.iterdir())))
    if V.is_nifti_path(path):
        return Input("volume", path, path.name, file_hash([path]))
    if is_dicom(path):
        from Functions.data.medical_io import read_dicom

        pixels = read_dicom(path).pixels
        if pixels.ndim == 3 and pixels.shape[-1] != 3:
            raise UserError(f"{path.name} is a multi-frame DICOM ({pixels.shape[0]} frames); upload a NIfTI volume "
                            "or the .dcm files of a series for a 3-D run")
        return Input("image", path, path.name, file_hash([path]), pixels if pixels.ndim == 3 else pixels[..., None])
    if is_video_file(path):
        frames, fps, total = read_video(path)
        return Input("video", path, path.name, file_hash([path]), frames[0], frames=frames, fps=fps,
                     total_frames=total)
    if not is_image_file(path):
        raise UserError(f"{path.name} is neither an image ({', '.join(IMAGE_EXTENSIONS)}), a volume "
                        f"(.nii, .nii.gz, DICOM) nor a video ({', '.join(VIDEO_EXTENSIONS)}); upload one of those")
    return Input("image", path, path.name, file_hash([path]), read_image(path))


def sample_inputs() -> list[tuple[str, str]]:
    """``(label, path)`` of the offline samples (a few images of each 2-D sample, every sample volume);
    empty when the repository's ``Data/`` folder is not there."""
    from Functions.base.paths import sample_dir
    from Functions.data.imaging import is_image_file

    out: list[tuple[str, str]] = []
    for name, folder, count in (("nuclei", "images", 6), ("tissue", "images", 3), ("ultrasound", "benign", 2),
                                ("ultrasound", "malignant", 2), ("ultrasound", "normal", 2)):
        try:
            base = sample_dir(name) / folder
        except UserError:
            continue
        files = sorted(p for p in base.glob("*") if is_image_file(p) and "_mask" not in p.stem)[:count]
        out += [(f"{name}/{p.name}", str(p)) for p in files]
    try:
        volumes = sorted((sample_dir("volumes") / "imagesTr").glob("*.nii*"))
    except UserError:
        volumes = []
    out += [(f"volumes/{p.name}", str(p)) for p in volumes if not p.name.startswith(".")]
    return out


# ----------------------------------------------------------------------------- models, loaded once
@dataclass
class LoadedRun:
    """A run ready to predict: ``kind``, ``path``, and the loaded ``predictor`` (2-D / instance / panoptic; a
    panoptic run also ``panoptic``: ``(T, S, names)`` from its ``config.json``), ``model`` + ``settings`` (3-D)
    or ``model`` + ``info`` (classifier)."""

    kind: str
    path: Path
    predictor: object = None
    model: object = None
    settings: object = None
    info: dict | None = None
    panoptic: tuple | None = None

    @property
    def threshold(self) -> float:
        if self.predictor is not None:
            return float(self.predictor.threshold)
        return float(getattr(self.settings, "threshold", 0.5))

    @property
    def classes(self) -> int:
        """Output channels of the model (1 = one sigmoid foreground)."""
        model = self.predictor.model if self.predictor is not None else self.model
        return int(model.outputs[-1].shape[-1])


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """The run's model with its preprocessing, loaded once and kept (reloaded when ``model.keras`` changes)."""
    run_dir = Path(run_dir).expanduser()
    model_file = run_dir / "model.keras"
    if not run_dir.is_dir():
        raise UserError(f"run {run_dir} does not exist; choose a run from the list (or press Refresh)")
    if not model_file.is_file():
        raise UserError(f"run {run_dir.name} has no model.keras (training did not finish, or the file was "
                        "moved); choose another run")
    key = (str(model_file.resolve()), model_file.stat().st_mtime_ns)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
    kind = run_kind(run_dir)
    if kind == "classifier":
        from Functions.inference.classifier import load_classifier

        model, info = load_classifier(run_dir)
        loaded = LoadedRun(kind, run_dir, model=model, info=info)
    elif kind == "3-D":
        from Functions.base.runs import read_run_settings
        from Functions.inference.predictor import load_model_file
        from Functions.inference.volumes import VolumeSettings

        settings = VolumeSettings.from_config(read_run_settings(run_dir, flag="run"))
        loaded = LoadedRun(kind, run_dir, model=load_model_file(run_dir, flag="run")[0], settings=settings)
    else:
        from Functions.inference.predictor import load_predictor

        predictor = load_predictor(run_dir, flag="run")
        if kind == "instance":
            from Functions.inference.instances import check_instance_head

            check_instance_head(predictor, run_dir)
        panoptic = None
        if kind == "panoptic":
            from Functions.inference.panoptic import panoptic_head
            from Functions.inference.predictor import run_settings

            panoptic = panoptic_head(predictor, run_settings(model_file), run_dir)
        loaded = LoadedRun(kind, run_dir, predictor=predictor, panoptic=panoptic)
    with _LOCK:
        _MODELS[key] = loaded
    return loaded


def clear_caches() -> None:
    """Forget every loaded model and kept prediction."""
    with _LOCK:
        _MODELS.clear()
        _RESULTS.clear()


# ----------------------------------------------------------------------------- predictions
@dataclass
class Prediction:
    """One run's output for one input.

    ``image``: 2-D ``(H, W, C)`` as stored; 3-D the volume in RAS ``(D, H, W)`` (first channel).  ``probs``:
    2-D semantic ``(H, W, K)``; 3-D ``(D0, H0, W0, K)`` on the file's own grid.  ``labels`` (call
    :meth:`labels_at`): the mask / class map / instance labels.  ``scores`` (classifier): ``{class: p}``;
    ``heatmap``: Grad-CAM ``(H, W)`` in [0, 1].  Panoptic: ``instance_labels`` and ``class_map`` as
    ``predict --task panoptic`` writes them.  Videos: ``image`` the first frame, ``probs``
    ``(N, H, W, K)``, ``seconds`` the time the network took.  ``gates`` (attention U-Nets): the coefficients of
    each gate, ``attention_map_1`` first, ``(h_i, w_i)`` at the gate's own resolution on the model's input.
    """

    run: LoadedRun
    input: Input
    image: np.ndarray
    probs: np.ndarray | None = None
    instance_labels: np.ndarray | None = None
    class_map: np.ndarray | None = None
    volume: object = None              # the file as read (data.volumes.Volume, own grid), for RAS and NIfTI
    scores: dict | None = None
    heatmap: np.ndarray | None = None
    gates: list | None = None
    seconds: float | None = None

    @property
    def kind(self) -> str:
        return self.run.kind

    @property
    def is_video(self) -> bool:
        return self.input.kind == "video"

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """``(z, y, x)`` mm of the RAS volume shown (3-D runs)."""
        if self.volume is None:
            return None
        from Functions.data.volumes import to_canonical

        return tuple(float(s) for s in to_canonical(self.volume).spacing)

    def labels_at(self, threshold: float | None = None) -> np.ndarray | None:
        """The mask at ``threshold`` (default: the run's) - exactly what ``predict`` writes: ``(H, W)`` uint8
        0/1 or classes (2-D; ``(N, H, W)`` for a video), int32 object labels (instance, panoptic),
        ``(D0, H0, W0)`` uint8 on the file's grid (3-D)."""
        if self.kind in ("instance", "panoptic"):
            return self.instance_labels
        t = self.run.threshold if threshold is None else float(threshold)
        if self.kind == "3-D":
            from Functions.inference.volumes import probabilities_to_labels

            return probabilities_to_labels(self.probs, t)
        if self.kind == "2-D":
            from Functions.inference.tta import probabilities_to_masks

            return probabilities_to_masks(self.probs, t) if self.is_video else \
                probabilities_to_masks(self.probs[None], t)[0]
        return None

    def ras_labels(self, threshold: float | None = None) -> np.ndarray:
        """3-D runs: :meth:`labels_at` reoriented to RAS, on the grid of :attr:`image`."""
        from Functions.data.volumes import to_canonical

        return to_canonical(self.volume.with_array(self.labels_at(threshold)[..., None])).array[..., 0]


def predict(run_dir: str | os.PathLike, item: Input, tta: bool = False) -> Prediction:
    """The run's prediction of ``item`` (kept for the next :data:`CACHE_SIZE` calls); :class:`UserError`
    when the input does not suit the run (an image for a 3-D run, a volume for a 2-D one ...)."""
    run = load_run(run_dir)
    key = (str(run.path.resolve()), item.key, bool(tta), run.kind)
    with _LOCK:
        if key in _RESULTS:
            _RESULTS.move_to_end(key)
            return _RESULTS[key]
    result = compute(run, item, bool(tta))
    with _LOCK:
        _RESULTS[key] = result
        while len(_RESULTS) > CACHE_SIZE:
            _RESULTS.popitem(last=False)
    return result


def check_suits(run: LoadedRun, item: Input) -> None:
    if item.kind == "video" and run.kind != "2-D":
        raise UserError(f"run {run.path.name} is a {run.kind} run; videos ({item.name}) are segmented frame by "
                        "frame by 2-D segmentation runs only: choose one, or upload an image or volume")
    if run.kind == "3-D" and item.kind != "volume":
        raise UserError(f"run {run.path.name} segments 3-D volumes, but {item.name} is a 2-D image; upload a "
                        ".nii/.nii.gz volume or the .dcm files of a series, or pick a sample volume")
    if run.kind != "3-D" and item.kind == "volume":
        raise UserError(f"run {run.path.name} is a {run.kind} run that takes 2-D images, but {item.name} is a "
                        "volume; upload an image (png, jpg, tif ...) or choose a 3-D run")
    if run.kind == "classifier" and item.image is not None and item.path.suffix.lower() in (".dcm", ".dicom"):
        raise UserError(f"run {run.path.name} is a classifier, which reads image files (png, jpg, tif ...); "
                        f"{item.name} is DICOM - export it as an image first")


def compute(run: LoadedRun, item: Input, tta: bool) -> Prediction:
    """Run the network (no cache); see :func:`predict`."""
    check_suits(run, item)
    if run.kind == "3-D":
        from Functions.data import volumes as V
        from Functions.inference.volumes import load_for_model, predict_probabilities

        image, _ = load_for_model(item.path, run.settings)       # RAS, training spacing, normalised
        probs = predict_probabilities(run.model, image.array, run.settings, tta=tta)
        back = V.to_source(probs, image, order=1)                 # onto the file's own voxel grid
        raw = V.read_volume(item.path, canonical=False, channels=run.settings.channels > 1)
        shown = V.to_canonical(raw).array[..., 0]
        return Prediction(run, item, shown, probs=back, volume=raw)
    if run.kind == "classifier":
        from Functions.inference.classifier import predict_images, prepare_inputs
        from Functions.inference.gradcam import grad_cam

        table = predict_images((run.model, run.info), [item.path])
        scores = {c: float(table[f"prob_{c}"].iloc[0]) for c in run.info["classes"]}
        heat, _ = grad_cam(run.model, prepare_inputs([item.path], run.info, workers=1))
        return Prediction(run, item, item.image, scores=scores, heatmap=resize_to(heat[0], item.image.shape[:2]))
    if item.kind == "video":
        start = time.perf_counter()
        probs = np.stack(run.predictor.probabilities(list(item.frames), tta=tta))
        return Prediction(run, item, item.image, probs=probs, seconds=time.perf_counter() - start)
    gates = gate_maps(run.predictor, item.image)
    if run.kind == "instance":
        from Functions.inference.instances import predict_instances

        labels = predict_instances(run.predictor, [item.image], tta=tta)[0]
        return Prediction(run, item, item.image, instance_labels=labels, gates=gates)
    if run.kind == "panoptic":
        from Functions.inference.panoptic import predict_panoptic

        labels, classes = predict_panoptic(run.predictor, [item.image], *run.panoptic[:2], tta=tta)[0]
        return Prediction(run, item, item.image, instance_labels=labels, class_map=classes, gates=gates)
    probs = run.predictor.probabilities([item.image], tta=tta)[0]
    return Prediction(run, item, item.image, probs=probs, gates=gates)


def gate_maps(predictor, image: np.ndarray) -> list[np.ndarray] | None:
    """The attention-gate coefficients of ``predictor``'s model for one image, prepared as the predictor
    prepares it (no TTA): one ``(h_i, w_i)`` float32 map per gate, ``attention_map_1`` (finest) first;
    ``None`` when the model has no ``attention_map_*`` layers."""
    model = predictor.model
    if not any(layer.name.startswith("attention_map_") for layer in model.layers):
        return None
    from Functions.models.attention_unet import attention_maps

    return [m[0] for m in attention_maps(model, predictor.prepare(image)[None])]


# ----------------------------------------------------------------------------- pictures
def resize_to(array: np.ndarray, shape, nearest: bool = False) -> np.ndarray:
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(array, np.float32), (int(shape[1]), int(shape[0])), interpolation=interp)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(rgb, np.float32), 0, 1) * 255).round().astype(np.uint8)


def enlarge(rgb: np.ndarray, row_mm: float = 1.0, col_mm: float = 1.0, least: int = MIN_DISPLAY) -> np.ndarray:
    """``rgb`` ``(h, w, 3)`` stretched to pixels of ``row_mm`` x ``col_mm`` (true aspect) and enlarged
    (nearest neighbour) until its shorter side is at least ``least``."""
    h, w = rgb.shape[:2]
    unit = min(row_mm, col_mm)
    rows, cols = h * row_mm / unit, w * col_mm / unit
    factor = max(1.0, least / min(rows, cols))
    size = (max(1, int(round(rows * factor))), max(1, int(round(cols * factor))))
    if size == (h, w):
        return rgb
    import cv2

    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def mark(rgb: np.ndarray, where: np.ndarray, colour=DIFF_COLOR, alpha: float = 0.75) -> np.ndarray:
    """``rgb`` float ``(H, W, 3)`` with the pixels ``where`` tinted in ``colour``."""
    out = np.array(rgb, np.float32, copy=True)
    on = np.asarray(where, bool)
    out[on] = (1 - alpha) * out[on] + alpha * np.asarray(colour, np.float32)
    return out


def draw_ids(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 ``rgb`` with each object's id written at its centre (white on a dark outline)."""
    import cv2
    from scipy import ndimage

    out = np.ascontiguousarray(rgb)
    n = int(labels.max(initial=0))
    if n == 0:
        return out
    scale = max(0.3, min(out.shape[:2]) / 600)
    for k, (cy, cx) in enumerate(ndimage.center_of_mass(np.ones_like(labels), labels, range(1, n + 1)), start=1):
        if np.isnan(cy):
            continue
        org = (int(cx) - 4, int(cy) + 4)
        cv2.putText(out, str(k), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, str(k), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """uint8 ``rgb`` with a dark strip above it holding ``text``."""
    import cv2

    h = 26
    strip = np.full((h, rgb.shape[1], 3), 32, np.uint8)
    cv2.putText(strip, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1, cv2.LINE_AA)
    return np.concatenate([strip, rgb], axis=0)


def heat_picture(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """uint8 RGB: ``heat`` ``(H, W)`` in [0, 1] coloured (``jet``: red high, blue low) over ``image``, as the
    notebooks draw Grad-CAM and attention maps (:func:`Functions.viz.plotting.heatmap_overlay`)."""
    from Functions.viz.plotting import heatmap_overlay

    return to_uint8(heatmap_overlay(image, heat))


def gate_pictures(pred: Prediction) -> list[tuple[np.ndarray, str]]:
    """One ``(picture, caption)`` per attention gate of ``pred`` (finest first): its coefficients enlarged
    (bilinear) to the image size and drawn over the image; ``[]`` when the model has no gates."""
    out = []
    for level, alpha in enumerate(pred.gates or [], start=1):
        picture = enlarge(heat_picture(pred.image, resize_to(alpha, pred.image.shape[:2])), least=160)
        out.append((picture, f"gate {level} ({alpha.shape[0]}x{alpha.shape[1]}): "
                             f"alpha {float(alpha.min()):.2f}-{float(alpha.max()):.2f}"))
    return out


def overlay_2d(image: np.ndarray, labels: np.ndarray, kind: str, classes: int) -> np.ndarray:
    """uint8 RGB of one 2-D image with its mask as ``predict --overlay`` draws it (ids added for instances)."""
    from Functions.data.overlays import overlay, overlay_classes

    if kind == "instance":
        from Functions.inference.instances import overlay_labels

        return overlay_labels(image, labels)
    if classes > 1:
        return to_uint8(overlay_classes(image, labels, classes))
    return to_uint8(overlay(image, None, labels))


def slice_point(shape, position=None) -> tuple[int, int, int]:
    """``(d, h, w)`` slice numbers of a ``(D, H, W)`` volume: ``position`` clipped to ``0 .. size - 1``; a
    ``None`` entry (or no ``position``) is the middle slice, ``size // 2``."""
    position = (None,) * len(shape) if position is None else position
    return tuple(s // 2 if p is None else int(min(s - 1, max(0, round(float(p))))) for p, s in zip(position, shape))


#: Row and column of each plane in ``(z, y, x)`` spacing order (see :func:`Functions.viz.volumes.plane`).
PLANE_AXES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}


def planes_picture(volume: np.ndarray, labels: np.ndarray | None, spacing, position, classes: int = 1,
                   marked: np.ndarray | None = None) -> np.ndarray:
    """Axial, coronal and sagittal planes of ``volume`` ``(D, H, W)`` through the slice numbers ``position``
    (:func:`slice_point`), labels drawn over them, each at its true aspect, side by side: uint8 RGB."""
    from Functions.data.overlays import overlay, overlay_classes
    from Functions.viz.volumes import PLANES, plane

    vol = np.asarray(volume, np.float32)
    point = slice_point(vol.shape, position)
    lo, hi = np.percentile(vol, [1, 99]) if vol.size else (0.0, 1.0)
    grey = np.clip((vol - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(vol)
    panels = []
    for which in PLANES:
        base = plane(grey, which, point)
        if labels is None:
            rgb = np.repeat(base[..., None], 3, axis=-1)
        elif classes > 1:
            rgb = overlay_classes(base, plane(labels, which, point), classes)
        else:
            rgb = overlay(base, None, plane(labels, which, point))
        if marked is not None:
            rgb = mark(rgb, plane(marked, which, point))
        row, col = PLANE_AXES[which]
        panel = enlarge(to_uint8(rgb), spacing[row], spacing[col], least=200)
        index = point[PLANES.index(which)]
        size = vol.shape[PLANES.index(which)]
        panels.append(caption(panel, f"{which} {'dhw'[PLANES.index(which)]}={index} of 0-{size - 1}"))
    height = max(p.shape[0] for p in panels)
    gap = np.full((height, 6, 3), 255, np.uint8)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate([x for p in padded for x in (p, gap)][:-1], axis=1)


def render(pred: Prediction, threshold: float | None = None, position=None) -> np.ndarray:
    """The picture of one prediction (uint8 RGB): mask overlay (a video: its first frame), instance outlines
    with ids, three planes through the slice numbers ``position`` (3-D; ``None``: the middle ones), or the
    Grad-CAM heat map over the image (classifier)."""
    if pred.kind == "3-D":
        return planes_picture(pred.image, pred.ras_labels(threshold), pred.spacing, position, pred.run.classes)
    if pred.kind == "classifier":
        return enlarge(heat_picture(pred.image, pred.heatmap))
    if pred.kind == "panoptic":
        return panoptic_picture(pred)
    labels = pred.labels_at(threshold)
    if pred.is_video:
        labels = labels[0]
    picture = enlarge(overlay_2d(pred.image, labels, pred.kind, pred.run.classes))
    if pred.kind == "instance":
        big = resize_to(labels, picture.shape[:2], nearest=True).astype(np.int32)
        picture = draw_ids(picture, big)
    return picture


def panoptic_picture(pred: Prediction) -> np.ndarray:
    """A panoptic prediction as ``predict --task panoptic --overlay`` draws it (objects in their type's colour,
    stuff classes tinted, a legend naming each class), drawn on the enlarged image so that outlines stay thin
    and the legend readable, with each object's id at its centre."""
    from Functions.inference.panoptic import panoptic_overlay

    t, _, names = pred.run.panoptic
    image = np.asarray(pred.image)
    h, w = image.shape[:2]
    shape = enlarge(np.zeros((h, w), np.uint8)).shape[:2]
    big = [resize_to(a, shape, nearest=True) for a in (image, pred.instance_labels, pred.class_map)]
    labels, classes = big[1].astype(np.int32), big[2].astype(np.int32)
    picture = panoptic_overlay(big[0], labels, classes, t, names)
    return np.concatenate([draw_ids(picture[:shape[0]], labels), picture[shape[0]:]], axis=0)


def foreground_labels(pred: Prediction, threshold: float | None, objects: bool = False) -> np.ndarray:
    """What two runs are compared on: classes (2-D, 3-D; 3-D in RAS; panoptic: its class map) or object / no
    object (instance; and any run when ``objects``)."""
    if pred.kind == "3-D":
        return pred.ras_labels(threshold)
    labels = pred.labels_at(threshold)
    if pred.kind == "panoptic" and not objects:
        return pred.class_map
    return (labels > 0).astype(np.uint8) if objects or pred.kind in ("instance", "panoptic") else labels


def disagreement(a: Prediction, b: Prediction, threshold_a: float | None = None, threshold_b: float | None = None,
                 position=None) -> tuple[np.ndarray | None, str]:
    """Where runs ``a`` and ``b`` disagree on the same input: ``(picture, sentence)``.

    Segmentations: the input with the pixels (voxels) whose label differs marked in yellow, and their count
    (a video: counted over every frame, the first frame drawn).  Two panoptic runs compare class maps; a
    panoptic run and an instance or 2-D run compare object / no object.
    Classifiers: no picture; the sentence says whether the predicted classes agree.
    """
    if a.input.key != b.input.key:
        raise ValueError("disagreement compares two predictions of the same input")
    if "classifier" in (a.kind, b.kind):
        if a.kind != b.kind:
            return None, "a classifier and a segmentation run give different kinds of answer: nothing to compare"
        top_a, top_b = max(a.scores, key=a.scores.get), max(b.scores, key=b.scores.get)
        same = "agree" if top_a == top_b else "disagree"
        return None, (f"the classifiers {same}: A says {top_a} ({a.scores[top_a]:.0%}), "
                      f"B {top_b} ({b.scores[top_b]:.0%})")
    objects = "panoptic" in (a.kind, b.kind) and a.kind != b.kind
    la, lb = foreground_labels(a, threshold_a, objects), foreground_labels(b, threshold_b, objects)
    differ = la != lb
    n, total = int(differ.sum()), int(differ.size)
    unit = "voxels" if a.kind == "3-D" else f"pixels of {len(differ)} frames" if a.is_video else "pixels"
    sentence = f"the runs disagree on {n:,} of {total:,} {unit} ({n / max(total, 1):.2%}), marked in yellow"
    if a.is_video:
        differ = differ[0]
    if a.kind == "3-D":
        return planes_picture(a.image, None, a.spacing, position, marked=differ), sentence
    from Functions.data.overlays import display_image

    base = display_image(a.image)
    rgb = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base[..., :3]
    return enlarge(to_uint8(mark(rgb, differ))), sentence


def object_table(labels: np.ndarray):
    """One row per object of an instance label map: ``id, area_px, centre_y, centre_x, height, width``."""
    import pandas as pd
    from scipy import ndimage

    labels = np.asarray(labels)
    n = int(labels.max(initial=0))
    rows = []
    if n:
        areas = ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))
        centres = ndimage.center_of_mass(np.ones_like(labels), labels, range(1, n + 1))
        for k, box in enumerate(ndimage.find_objects(labels.astype(np.int32)), start=1):
            if box is None:
                continue
            rows.append({"id": k, "area_px": int(areas[k - 1]), "centre_y": round(float(centres[k - 1][0]), 1),
                         "centre_x": round(float(centres[k - 1][1]), 1), "height": box[0].stop - box[0].start,
                         "width": box[1].stop - box[1].start})
    return pd.DataFrame(rows, columns=["id", "area_px", "centre_y", "centre_x", "height", "width"])


def panoptic_table(instances: np.ndarray, classes: np.ndarray, names: list[str]):
    """One row per object of a panoptic map: ``id``, ``type`` (the name of its class in ``classes``, the
    class most of its pixels carry; ``names[0]`` is class 1) and ``pixels``."""
    import pandas as pd

    inst, cls = np.asarray(instances).ravel(), np.asarray(classes).ravel().astype(np.int64)
    on = inst > 0
    pairs, counts = np.unique(np.stack([inst[on], cls[on]]), axis=1, return_counts=True)
    order = np.lexsort((-counts, pairs[0]))                       # by id, the most frequent class first
    ids, first = np.unique(pairs[0][order], return_index=True)
    types = pairs[1][order][first]
    pixels = np.bincount(inst[on], minlength=int(ids.max(initial=0)) + 1)[ids] if len(ids) else []
    return pd.DataFrame({"id": ids.astype(int), "type": [names[k - 1] if 0 < k <= len(names) else f"class {k}"
                                                          for k in types], "pixels": np.asarray(pixels, int)},
                        columns=["id", "type", "pixels"])


def summary_table(pred: Prediction, threshold: float | None = None):
    """The table the page shows under a prediction: objects (instance; panoptic with each object's type),
    class probabilities (classifier), or labelled pixels / voxels per class (2-D, 3-D; millilitres for
    volumes)."""
    import pandas as pd

    if pred.kind == "instance":
        return object_table(pred.labels_at())
    if pred.kind == "panoptic":
        return panoptic_table(pred.instance_labels, pred.class_map, pred.run.panoptic[2])
    if pred.kind == "classifier":
        return pd.DataFrame({"class": list(pred.scores), "probability": [round(v, 4) for v in pred.scores.values()]})
    labels = pred.labels_at(threshold)
    rows = []
    for k in range(1, max(2, pred.run.classes)):
        count = int(np.count_nonzero(labels == k))
        row = {"class": k, "pixels" if pred.kind == "2-D" else "voxels": count,
               "fraction": round(count / max(labels.size, 1), 4)}
        if pred.kind == "3-D":
            voxel_ml = abs(float(np.linalg.det(pred.volume.source.affine[:3, :3]))) / 1000.0
            row["ml"] = round(count * voxel_ml, 3)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- downloads
def export(pred: Prediction, folder: str | os.PathLike, tag: str, threshold: float | None = None,
           position=None) -> list[Path]:
    """Write the mask and the overlay of ``pred`` into ``folder``: ``<input>_<tag>_mask.png`` (as ``predict``
    writes it: 0/255, class values, or 16-bit object labels) or ``_mask.nii.gz`` (the input's affine and
    header), and ``<input>_<tag>_overlay.png``; panoptic runs: ``_instances.png`` and ``_classes.png`` (16-bit,
    as ``predict --task panoptic`` writes ``instances/`` and ``classes/``) and its overlay with the legend;
    classifiers: ``_gradcam.png``; videos: ``_masks.npz`` (array
    ``masks`` ``(N, H, W)`` uint8, 0/1 or classes) and ``_overlay.mp4`` (:func:`write_video`).  Returns the
    paths."""
    from Functions.data.imaging import write_image, write_mask

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{pred.input.stem}_{tag}"
    files = []
    if pred.kind == "classifier":
        files.append(folder / f"{stem}_gradcam.png")
        write_image(files[-1], render(pred))
        return files
    labels = pred.labels_at(threshold)
    if pred.is_video:
        files.append(folder / f"{stem}_masks.npz")
        np.savez_compressed(files[-1], masks=np.asarray(labels, np.uint8))
        frames = (overlay_2d(f, m, pred.kind, pred.run.classes) for f, m in zip(pred.input.frames, labels))
        files.append(write_video(folder / f"{stem}_overlay.mp4", frames, pred.input.fps))
        return files
    if pred.kind == "3-D":
        from Functions.data.volumes import write_nifti

        files.append(write_nifti(folder / f"{stem}_mask.nii.gz", labels, pred.volume.source.affine,
                                 pred.volume.source.header))
    elif pred.kind == "instance":
        from Functions.data.instances import write_label_map

        files.append(folder / f"{stem}_mask.png")
        write_label_map(files[-1], labels)
    elif pred.kind == "panoptic":
        return files + export_panoptic(pred, folder, stem)
    elif pred.run.classes > 1:
        files.append(folder / f"{stem}_mask.png")
        write_image(files[-1], np.asarray(labels, np.uint8))
    else:
        files.append(folder / f"{stem}_mask.png")
        write_mask(files[-1], labels)
    files.append(folder / f"{stem}_overlay.png")
    picture = render(pred, threshold, position) if pred.kind == "3-D" else \
        overlay_2d(pred.image, labels, pred.kind, pred.run.classes)
    write_image(files[-1], picture)
    return files


def export_panoptic(pred: Prediction, folder: Path, stem: str) -> list[Path]:
    """``<stem>_instances.png``, ``<stem>_classes.png`` and ``<stem>_overlay.png`` of a panoptic prediction:
    the files ``predict --task panoptic --overlay`` writes as ``instances/``, ``classes/`` and ``overlays/``
    (:func:`Functions.data.panoptic_io.write_panoptic`, :func:`Functions.inference.panoptic.panoptic_overlay`)."""
    from Functions.data.imaging import write_image
    from Functions.data.panoptic_io import CLASS_DIR, INSTANCE_DIR, write_panoptic
    from Functions.inference.panoptic import panoptic_overlay

    staging = Path(tempfile.mkdtemp(prefix="panoptic-", dir=folder))
    write_panoptic(staging, stem, pred.instance_labels, pred.class_map)
    files = [folder / f"{stem}_instances.png", folder / f"{stem}_classes.png", folder / f"{stem}_overlay.png"]
    shutil.move(staging / INSTANCE_DIR / f"{stem}.png", files[0])
    shutil.move(staging / CLASS_DIR / f"{stem}.png", files[1])
    shutil.rmtree(staging)
    t, _, names = pred.run.panoptic
    write_image(files[2], panoptic_overlay(pred.image, pred.instance_labels, pred.class_map, t, names))
    return files


def write_video(path: str | os.PathLike, frames, fps: float) -> Path:
    """Write uint8 RGB frames ``(H, W, 3)`` as an MPEG-4 (``mp4v``) video at ``fps`` with OpenCV; returns
    ``path``.  (Browsers may not play ``mp4v``; a video player such as VLC does.)"""
    import cv2

    path = Path(path)
    writer = None
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame[..., :3])
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                         (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise UserError(f"OpenCV cannot write the video {path.name} (no mp4v encoder in this build)")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


def video_text(pred: Prediction) -> str:
    """The frames-per-second line of a video prediction: frames segmented (of how many), size, the file's
    frame rate and how fast the network went."""
    item = pred.input
    n, (h, w) = len(item.frames), item.frames.shape[1:3]
    cut = f" (the first {n} of {item.total_frames}; at most {MAX_FRAMES})" if item.total_frames > n else ""
    speed = n / pred.seconds if pred.seconds else float("inf")
    return (f"{n} frames{cut} of {w}x{h} at {item.fps:.1f} fps; {Path(pred.run.path).name} segmented "
            f"{speed:.1f} frames/s")
