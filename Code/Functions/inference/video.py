"""Segmenting video at frame rate: every frame of a file or a camera through a predictor, overlay video out.

Each frame goes through :meth:`Functions.inference.predictor.Predictor.probabilities`
(the run's preprocessing, any runtime: Keras, ONNX or LiteRT), optionally
smoothed over time by an exponential moving average of the probabilities
(``smooth`` = weight of the newest frame: ``p_t = a * p + (1 - a) * p_{t-1}``,
which steadies a mask that flickers between frames at the cost of a lag of about
``1/a`` frames), thresholded, and drawn on the frame; the overlays are written
as a new video at the source's frame rate.

>>> stats = predict_video("runs/unext", "clip.mp4", "clip-seg.mp4", runtime="onnx", smooth=0.5)   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError

#: Output container -> OpenCV FourCC code.
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def check_smooth(smooth: float | None) -> float | None:
    """``None`` or a weight in (0, 1]; a :class:`UserError` naming ``--smooth`` otherwise."""
    if smooth is not None and not 0 < smooth <= 1:
        raise UserError(f"--smooth must be in (0, 1] (weight of the newest frame; 1 = no smoothing), got {smooth}")
    return smooth


def open_source(source: str | int, flag: str = "--video"):
    """An opened ``cv2.VideoCapture`` for a file or a camera index, with its first frame; one-line errors."""
    import cv2

    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        what = f"--camera {source}"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserError(f"{flag} {path} does not exist; pass a video file (e.g. .mp4, .avi)")
        capture = cv2.VideoCapture(str(path))
        what = f"{flag} {path}"
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise UserError(f"{what} could not be decoded (no frame read); pass a video OpenCV can read "
                        "(e.g. H.264 or MPEG-4 in .mp4, MJPEG in .avi) or another camera index")
    return capture, frame


def draw_mask(frame_bgr: np.ndarray, mask: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """The frame (BGR uint8) with the mask tinted and outlined in the prediction colour of
    :mod:`Functions.data.overlays` (magenta); OpenCV only, fast enough for every frame."""
    import cv2

    from Functions.data.overlays import PRED_COLOR

    color = tuple(int(round(255 * c)) for c in PRED_COLOR[::-1])        # RGB [0, 1] -> BGR 0..255
    on = mask > 0
    if not on.any():
        return frame_bgr
    tinted = cv2.addWeighted(frame_bgr, 1 - alpha, np.full_like(frame_bgr, color), alpha, 0)
    out = np.where(on[..., None], tinted, frame_bgr)
    if on.any():
        contours, _ = cv2.findContours(on.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 1)
    return out


def predict_video(model_path: str | os.PathLike, source: str | int, out: str | os.PathLike, *,
                  runtime: str = "keras", smooth: float | None = None, threshold: float | None = None,
                  max_frames: int | None = None) -> dict:
    """Segment every frame of ``source`` (a video file, or an ``int`` camera index) and write the overlay video.

    Returns ``{"frames", "seconds", "fps", "model_fps", "width", "height", "out"}``: ``fps`` counts the
    whole loop (decode, predict, draw, encode), ``model_fps`` only the predictor.  A camera runs until
    ``max_frames`` or Ctrl-C.  ``out`` must be a new ``.mp4`` or ``.avi`` file.
    """
    import cv2

    from Functions.inference.predictor import load_predictor
    from Functions.inference.tta import probabilities_to_masks

    check_smooth(smooth)
    if threshold is not None and not 0 < threshold < 1:
        raise UserError(f"--threshold must be between 0 and 1, got {threshold}")
    out = Path(out).expanduser()
    if out.suffix.lower() not in CODECS:
        raise UserError(f"--out {out} must end in {' or '.join(CODECS)} (the overlay video)")
    if out.exists():
        raise UserError(f"--out {out} already exists and is never overwritten; choose a new file name")
    if not isinstance(source, int) and not Path(source).expanduser().is_file():   # before the model loads
        raise UserError(f"--video {source} does not exist; pass a video file (e.g. .mp4, .avi)")
    predictor = load_predictor(model_path, runtime=runtime)
    t = predictor.threshold if threshold is None else threshold
    capture, frame = open_source(source)
    rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
    height, width = frame.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*CODECS[out.suffix.lower()]), rate, (width, height))
    state, frames, model_seconds = None, 0, 0.0
    start = time.perf_counter()
    try:
        while frame is not None and (max_frames is None or frames < max_frames):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
            tick = time.perf_counter()
            probs = predictor.probabilities([rgb], batch_size=1)[0]
            model_seconds += time.perf_counter() - tick
            state = probs if state is None or smooth is None else smooth * probs + (1 - smooth) * state
            mask = probabilities_to_masks(state[None], t)[0]
            writer.write(draw_mask(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), mask))
            frames += 1
            ok, frame = capture.read()
            frame = frame if ok else None
    except KeyboardInterrupt:                       # a camera stops with Ctrl-C; keep what was written
        pass
    finally:
        capture.release()
        writer.release()
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": seconds, "fps": frames / max(seconds, 1e-9),
            "model_fps": frames / max(model_seconds, 1e-9), "width": width, "height": height, "out": str(out)}
