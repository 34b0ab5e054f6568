"""Reading images and masks from disk into NumPy arrays.

Formats: PNG, JPEG, TIFF, BMP, GIF (OpenCV first, Pillow as the fallback for
GIF and anything OpenCV cannot decode).  Grayscale, RGB, RGBA (alpha is
dropped), 8- and 16-bit.

* :func:`read_image` returns ``(H, W, C)`` with ``C`` 1 or 3, RGB order, in
  the dtype stored in the file (``uint8``, ``uint16`` or ``float32``).
* :func:`read_mask` returns ``(H, W)``: with ``mode="binary"`` values are
  0/1 (``uint8``); with ``mode="labels"`` the stored label values
  (``int32``, a 0/255 mask becomes 0/1).

Binary thresholding rule (documented because JPEG masks are noisy): an
8-bit mask whose largest value is below 128 is a label or 0/1 mask, so
foreground is ``value > 0``; an 8-bit mask reaching 128 or more is a 0/255
mask, possibly noisy, so foreground is ``value >= 128`` (a JPEG mask with
values such as 3 and 252 becomes 0 and 1); a 16-bit mask with values above
255 (0/65535, or an instance label map with hundreds of labels) is
foreground wherever it is nonzero.  Float masks in [0, 1] use 0.5.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from Functions.base.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


def is_image_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _read_raw(path: Path) -> np.ndarray:
    """Decode a file as stored: (H, W) or (H, W, C) with C in 3/4 in RGB(A) order."""
    if not path.is_file():
        raise UserError(f"image file {path} does not exist; check the path")
    arr = None
    if path.suffix.lower() != ".gif":
        buf = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII names too
        if buf.size:
            arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.ndim == 3:
            code = cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
            arr = cv2.cvtColor(arr, code)
    if arr is None:
        try:
            from PIL import Image

            with Image.open(path) as im:
                im.seek(0)  # first frame of an animated GIF / multi-page TIFF
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("1", "CMYK", "YCbCr", "LA"):
                    im = im.convert("L" if im.mode in ("1", "LA") else "RGB")
                arr = np.array(im)
                if arr.ndim == 3 and arr.shape[2] == 3 and is_grayscale(arr):
                    arr = np.ascontiguousarray(arr[..., 0])  # grey palette (GIF) -> one channel
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user error
            raise UserError(
                f"cannot read image {path} ({type(exc).__name__}); the file is corrupted or not an image - "
                "replace or remove it"
            ) from None
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise UserError(f"image {path} has unexpected shape {arr.shape}; expected a 2-D grayscale or colour image")
    return arr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, C)`` with ``C`` = 1 (grayscale) or 3 (RGB); alpha is dropped."""
    arr = _read_raw(Path(path))
    if arr.ndim == 2:
        return arr[..., None]
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.shape[2] == 2:  # gray + alpha
        arr = arr[..., :1]
    return np.ascontiguousarray(arr)


def is_grayscale(image: np.ndarray) -> bool:
    """True for 1-channel images and for RGB images whose three channels are equal."""
    if image.ndim == 2 or image.shape[-1] == 1:
        return True
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """Foreground (1) / background (0) by the rule in the module docstring; returns ``uint8``."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=-1)
    if m.dtype == bool:
        return m.astype(np.uint8)
    top = float(m.max()) if m.size else 0.0
    if top < 128 and np.issubdtype(m.dtype, np.integer):
        return (m > 0).astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating) and top <= 1.0:
        return (m >= 0.5).astype(np.uint8)
    if top > 255 and np.issubdtype(m.dtype, np.integer):
        return (m > 0).astype(np.uint8)  # 16-bit: 0/65535 masks and instance label maps alike
    return (m >= 128).astype(np.uint8)


def read_mask(path: str | os.PathLike, mode: str = "binary") -> np.ndarray:
    """Read a mask as ``(H, W)``: 0/1 ``uint8`` (``mode="binary"``) or label values (``mode="labels"``)."""
    if mode not in ("binary", "labels"):
        raise ValueError(f"mode must be 'binary' or 'labels', got {mode!r}")
    raw = _read_raw(Path(path))
    if raw.ndim == 3:
        raw = raw[..., :3].max(axis=-1) if raw.shape[2] >= 3 else raw[..., 0]
    if mode == "binary":
        return binarize_mask(raw)
    values = np.unique(raw)
    if len(values) <= 2 and values.max(initial=0) in (255, 65535):
        return (raw > 0).astype(np.int32)
    return raw.astype(np.int32)


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a 0/1 (or 0..255) mask as an 8-bit PNG with 0/255 for binary masks."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.max(initial=0) <= 1:
        m = m * 255
    cv2.imwrite(str(path), m.astype(np.uint8))


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB or grayscale ``uint8``/``uint16`` image (RGB order in, any extension cv2 knows)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if not cv2.imwrite(str(path), img):
        raise UserError(f"could not write {path}; check that the folder exists and the extension is an image type")
