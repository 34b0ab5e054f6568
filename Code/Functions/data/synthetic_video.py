"""A synthetic ultrasound-like clip for video segmentation: a dark lesion moving under a probe.

Each frame is a speckled tissue background (a fixed texture, as tissue under a
probe held over one region, with fresh speckle noise per frame) and a
hypoechoic (dark) elliptical lesion with a bright posterior rim, drifting
along a smooth path and slowly changing shape, as when the operator sweeps the
probe.  The masks are exact.  Everything depends only on ``seed``.

>>> frames, masks = make_clip(n_frames=60, size=(240, 320))    # (60, 240, 320) uint8 each; masks 0/1
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError

DEFAULT_FRAMES = 60
#: (height, width) of the clip in pixels.
DEFAULT_CLIP_SIZE = (240, 320)
DEFAULT_RATE = 15.0
CLIP_NAME = "clip.mp4"


def _texture(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() or 1.0)


def make_clip(n_frames: int = DEFAULT_FRAMES, size: tuple = DEFAULT_CLIP_SIZE, seed: int = 0):
    """``(frames, masks)``: ``(n_frames, H, W)`` uint8 grey frames and 0/1 uint8 lesion masks."""
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    h, w = (int(s) for s in size)
    if min(h, w) < 64:
        raise ValueError(f"the clip must be at least 64x64 pixels, got {h}x{w}")
    rng = np.random.default_rng([int(seed), 7])
    depth = np.linspace(0, 1, h)[:, None]
    tissue = 120 + 25 * _texture(rng, (h, w), min(h, w) / 40) + 12 * np.sin(depth * 18 + _texture(rng, (h, w), 20))
    tissue *= 1.1 - 0.5 * depth                            # attenuation with depth
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 4)
    frames = np.empty((n_frames, h, w), np.uint8)
    masks = np.empty((n_frames, h, w), np.uint8)
    for t in range(n_frames):
        s = t / max(1, n_frames - 1)
        cy = h * (0.5 + 0.2 * np.sin(2 * np.pi * s + phase[0]))
        cx = w * (0.5 + 0.3 * np.sin(2 * np.pi * 1.5 * s + phase[1]))
        ry = min(h, w) * (0.14 + 0.03 * np.sin(2 * np.pi * s + phase[2]))
        rx = min(h, w) * (0.20 + 0.03 * np.cos(2 * np.pi * s + phase[3]))
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = inside <= 1.0
        rim = np.exp(-((inside - 1.3) ** 2) / 0.05) * (yy > cy)       # posterior enhancement below the lesion
        image = np.where(mask, 35 + 10 * (inside / 1.0), tissue) + 40 * rim
        speckle = rng.rayleigh(1.0, (h, w)) / np.sqrt(np.pi / 2)   # multiplicative, mean 1
        frames[t] = np.clip(image * (0.75 + 0.25 * speckle), 0, 255).astype(np.uint8)
        masks[t] = mask
    return frames, masks


def write_video(path: str | os.PathLike, frames: np.ndarray, rate: float = DEFAULT_RATE) -> Path:
    """Write grey or RGB ``frames`` as an MPEG-4 ``.mp4`` (or MJPEG ``.avi``) file; returns the path."""
    import cv2

    path = Path(path)
    codec = {".mp4": "mp4v", ".avi": "MJPG"}.get(path.suffix.lower())
    if codec is None:
        raise UserError(f"{path} must end in .mp4 or .avi")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(rate), (w, h))
    if not writer.isOpened():
        raise UserError(f"could not open {path} for writing a video; check that the folder is writable")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
    writer.release()
    return path


def write_clip(out: str | os.PathLike, *, n_frames: int = DEFAULT_FRAMES, size: tuple = DEFAULT_CLIP_SIZE,
               seed: int = 0, overwrite: bool = False) -> int:
    """Write ``out/video/clip.mp4`` and its masks ``out/video/masks/frame_000.png`` (0/255); returns the frames.

    A non-empty ``out/video`` is refused unless ``overwrite`` (then only the clip and the mask files are replaced).
    """
    import cv2

    base = Path(out) / "video"
    if base.is_dir() and any(base.iterdir()) and not overwrite:
        raise UserError(f"{base} is not empty; pass --overwrite to replace the generated files, "
                        "or choose another --out")
    frames, masks = make_clip(n_frames, size, seed)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    for old in (base / "masks").glob("frame_*.png"):
        old.unlink()
    write_video(base / CLIP_NAME, frames)
    for i, m in enumerate(masks):
        cv2.imwrite(str(base / "masks" / f"frame_{i:03d}.png"), m * 255)
    return len(frames)
