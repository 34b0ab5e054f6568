"""Loading images at their native resolution (optionally resampled), in memory or through a disk cache.

Patch training (:mod:`Functions.data.patches`) needs every training image at
full resolution, each at its own size.  :func:`load_native` decodes the
samples once - channels converted, CLAHE, optional resampling, normalised per
image exactly as the resize path does - and returns lists of arrays:

* **in memory** when the decoded data set fits the memory budget
  (``max_memory`` bytes, default :func:`default_max_memory`, half of the RAM
  available now);
* otherwise **as ``.npy`` memory maps** under ``cache_dir/native-<key>/``
  (:mod:`Functions.data.array_cache`: the key hashes the contents of the
  image *and* mask files and the settings; an entry is written once, whole,
  under a lock): each image and mask is written once (``image-00012.npy``,
  ``mask-00012.npy``) and read back with ``numpy.load(mmap_mode="r")``, so a
  patch reads only its own bytes from disk and the operating system keeps
  what fits in its page cache.  A data set of 20 GB then trains in 12 GB of
  RAM.  A ``manifest.json`` records the samples and settings; a later run
  with the same files and settings reuses the cache instead of decoding
  again, and a run on edited files (a corrected mask) decodes them anew.

Resampling: ``scale`` multiplies both sides (0.5 halves them); ``spacing``
(a pixel size, e.g. in mm) resamples every image whose format stores its
spacing to that pixel size (images without spacing keep theirs).  Images are
resampled with area/linear interpolation, masks with nearest neighbour
(binary masks by area fraction), and the new spacing is kept for the distance
metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.data.array_cache import cached_entry, files_key
from Functions.data.discovery import Sample, load_roi, load_sample
from Functions.data.samples import IGNORE
from Functions.data.imaging import read_image
from Functions.data.pipeline import bounded_map

log = logging.getLogger("Functions")

#: Fraction of the currently available RAM the decoded training data may take by default.
DEFAULT_MEMORY_FRACTION = 0.5
_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "KB": 2 ** 10, "M": 2 ** 20, "MB": 2 ** 20, "G": 2 ** 30, "GB": 2 ** 30,
          "T": 2 ** 40, "TB": 2 ** 40}


def available_memory() -> int:
    """Bytes of RAM available now (``MemAvailable`` of ``/proc/meminfo``; psutil or 4 GiB elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return 4 * 2 ** 30


def default_max_memory() -> int:
    """The default memory budget: :data:`DEFAULT_MEMORY_FRACTION` of :func:`available_memory`."""
    return int(available_memory() * DEFAULT_MEMORY_FRACTION)


def parse_memory(value, flag: str = "--max-memory") -> int:
    """``"2G"``, ``"500M"``, ``"1.5GB"``, ``"0.25"`` (a fraction of the available RAM) or bytes -> bytes."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = int(value)
    else:
        text = str(value).strip().upper().replace("IB", "B").replace(" ", "")
        num = text.rstrip("KMGTB")
        unit = text[len(num):]
        try:
            number = float(num)
        except ValueError:
            number = None
        if number is None or unit not in _UNITS:
            raise UserError(f"{flag} {value!r} is not a memory size; write it like 4G, 500M or 0.5 (a fraction "
                            "of the available RAM)")
        if unit == "" and 0 < number < 1:
            return int(available_memory() * number)
        size = int(number * _UNITS[unit])
    if size <= 0:
        raise UserError(f"{flag} must be positive, got {value}; write it like 4G or 500M")
    return size


def format_bytes(n: float) -> str:
    """``1536 * 2**20`` -> ``"1.5 GB"`` (binary units, one decimal)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def check_positive(value, flag: str) -> float | None:
    """``None`` or a float > 0 (``--scale``, ``--spacing``); else one clear :class:`UserError`."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} must be a positive number, got {value!r}") from None
    if not np.isfinite(x) or x <= 0:
        raise UserError(f"{flag} must be a positive number, got {value}; e.g. {flag} 0.5")
    return x


def resample_factor(sample: Sample, scale: float | None = None, spacing: float | None = None) -> float | tuple:
    """Factor per axis ``(row, column)`` by which ``sample`` is resampled (1.0: left as it is)."""
    if spacing is not None and getattr(sample, "spacing", None):
        return tuple(float(s) / spacing for s in sample.spacing[:2])
    return float(scale) if scale else 1.0


def native_shape(sample: Sample, factor) -> tuple[int, int] | None:
    """``(H, W)`` after resampling from the file header (plain image files only), else ``None``."""
    if sample.kind != "image":
        return None
    try:
        from PIL import Image

        with Image.open(sample.image) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - unknown format: decode to learn the size
        return None
    fr, fc = factor if isinstance(factor, tuple) else (factor, factor)
    return max(1, int(round(h * fr))), max(1, int(round(w * fc)))


@dataclass(frozen=True)
class MaskSpec:
    """Targets other than the binary union of a sample's mask files (multi-class and instance patch training).

    ``read(sample, (H, W))`` returns the sample's label map at the image's own
    size (class indices, or instance ids of any integer dtype); it is resampled
    with the image by nearest neighbour and then passed through ``target``
    (e.g. :func:`Functions.data.instance_targets.three_class_target`, so the
    boundaries are drawn at the training resolution), whose result must fit in
    ``uint8``.  ``key`` names the targets in the cache key (``"classes:0:0,255:1"``,
    ``"instance-3class-w1"``), so a cache of other targets is never reused.
    """

    key: str
    read: Callable
    target: Callable | None = None


def prepare_native(image: np.ndarray, mask: np.ndarray, channels: int, normalization: str = "minmax",
                   use_clahe: bool = False, factor=1.0, mask_mode: str = "binary",
                   target: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One decoded sample -> ``(image (H', W', channels) float32, mask (H', W') uint8)`` at native size × ``factor``.

    ``mask_mode`` ``"binary"``: the mask is made 0/1 (area-fraction resampling);
    ``"labels"``: its values are kept (nearest neighbour), then ``target`` is
    applied when given.
    """
    from Functions.data.preprocessing import (clahe, normalize, resize_binary_mask, resize_image, resize_mask,
                                              to_channels)

    x = to_channels(np.asarray(image), channels)
    if use_clahe:
        x = clahe(x)
    fr, fc = factor if isinstance(factor, tuple) else (factor, factor)
    m = np.asarray(mask)
    if x.ndim == 2:
        x = x[..., None]
    if (fr, fc) != (1.0, 1.0):
        size = (max(1, int(round(x.shape[0] * fr))), max(1, int(round(x.shape[1] * fc))))
        x = resize_image(x, size)
        m = resize_binary_mask(m, size) if mask_mode == "binary" else resize_mask(m, size)
    if mask_mode == "binary":
        m = (m > 0).astype(np.uint8)
    elif target is not None:
        m = target(m)
    if m.size and int(m.max()) > 255:
        raise UserError(f"mask values up to {int(m.max())} do not fit the uint8 targets of patch training; "
                        "give instance masks a target (e.g. --task instance) or map the values with --class-map")
    return normalize(x, normalization).astype(np.float32), m.astype(np.uint8)


def outside_roi(mask: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """``mask`` (uint8 targets) with the pixels outside ``roi`` set to :data:`~Functions.data.samples.IGNORE`,
    which patch training turns into loss weight 0 (:func:`Functions.data.patches.patch_dataset`).  ``roi`` is
    resized to the mask (nearest neighbour) when the image was resampled; ``None``: the mask unchanged."""
    if roi is None:
        return mask
    if roi.shape != mask.shape[:2]:
        from Functions.data.preprocessing import resize_mask

        roi = resize_mask(roi.astype(np.uint8), mask.shape[:2]) > 0
    return np.where(roi, mask, IGNORE).astype(np.uint8)


@dataclass
class NativeData:
    """Images ``(H_i, W_i, C)`` float32 and masks ``(H_i, W_i)`` uint8, one per sample, sizes may differ.

    ``in_memory`` False: the arrays are read-only ``numpy.memmap`` views of
    ``.npy`` files in ``cache_dir``.  ``nbytes``: the decoded size (estimated
    before decoding, exact after).  ``spacings``: pixel size per image after
    resampling (``None`` where unknown).  ``message``: the line ``train``
    prints about the choice.
    """

    images: list
    masks: list
    spacings: list = field(default_factory=list)
    in_memory: bool = True
    nbytes: int = 0
    budget: int = 0
    cache_dir: Path | None = None
    message: str = ""


def estimate_bytes(samples: Sequence[Sample], channels: int, factors: Sequence, probe: int = 8) -> int:
    """Decoded size of ``samples`` in bytes (image float32 × channels + mask uint8 per pixel).

    Exact from the headers of plain image files; for other formats the mean of
    the first ``probe`` decoded samples times their number.
    """
    per_pixel = 4 * channels + 1
    total, unknown = 0, []
    for s, f in zip(samples, factors):
        shape = native_shape(s, f)
        if shape is None:
            unknown.append((s, f))
        else:
            total += shape[0] * shape[1] * per_pixel
    if unknown:
        probed = []
        for s, f in unknown[:probe]:
            image = load_sample(s)[0]
            fr, fc = f if isinstance(f, tuple) else (f, f)
            probed.append(round(image.shape[0] * fr) * round(image.shape[1] * fc) * per_pixel)
        total += int(np.mean(probed) * len(unknown))
    return int(total)


#: Bumped when decoding changes what a cache entry holds, so older entries are not reused.
CACHE_VERSION = 2


def native_cache_key(samples: Sequence[Sample], settings: dict) -> str:
    """The cache key of ``samples`` decoded with ``settings``: the settings, each sample's reader, slice and
    paths, and the contents of its image, mask and instance files (:func:`Functions.data.array_cache.files_key`)."""
    items = []
    for s in samples:
        files = [s.image, *s.masks] + ([s.instances] if getattr(s, "instances", None) else [])
        items.append(([s.kind, s.index, [str(f) for f in files]], files))
    return files_key(items, {**settings, "version": CACHE_VERSION})


def load_native(samples: Sequence[Sample], channels: int, normalization: str = "minmax", use_clahe: bool = False,
                *, scale: float | None = None, spacing: float | None = None, max_memory=None,
                cache_dir: str | os.PathLike | None = None, mask_mode: str = "binary",
                mask_spec: MaskSpec | None = None, workers: int = 4) -> NativeData:
    """Decode ``samples`` at native resolution (see the module docstring) -> :class:`NativeData`.

    ``mask_spec``: read the targets with a :class:`MaskSpec` instead of merging the
    mask files into a binary mask (then ``mask_mode`` is ``"labels"``).

    ``max_memory``: bytes or a string for :func:`parse_memory` (default
    :func:`default_max_memory`).  When the estimated decoded size exceeds it,
    the arrays go to ``.npy`` memory maps in ``cache_dir`` (required then).
    """
    from concurrent.futures import ThreadPoolExecutor

    samples = list(samples)
    if not samples:
        raise UserError("no samples to load; check the data folder and the split fractions")
    scale = check_positive(scale, "--scale")
    spacing = check_positive(spacing, "--spacing")
    budget = default_max_memory() if max_memory is None else parse_memory(max_memory)
    factors = [resample_factor(s, scale, spacing) for s in samples]
    estimate = estimate_bytes(samples, channels, factors)
    in_memory = estimate <= budget
    cache = None
    if not in_memory:
        if cache_dir is None:
            raise UserError(f"the decoded data ({format_bytes(estimate)}) exceed --max-memory "
                            f"{format_bytes(budget)} and no cache folder was given; pass a cache folder or raise "
                            "--max-memory")
        cache = Path(cache_dir).expanduser()

    if mask_spec is not None:
        mask_mode = "labels"

    def one(args):
        s, f = args
        if mask_spec is None:
            image, mask = load_sample(s)
            x, m = prepare_native(image, mask, channels, normalization, use_clahe, f, mask_mode)
        else:
            image = read_image(s.image)
            x, m = prepare_native(image, mask_spec.read(s, image.shape[:2]), channels, normalization, use_clahe, f,
                                  "labels", mask_spec.target)
        return x, outside_roi(m, load_roi(s, image.shape[:2]))

    spacings = []
    for s, f in zip(samples, factors):
        sp = getattr(s, "spacing", None)
        fr, fc = f if isinstance(f, tuple) else (f, f)
        spacings.append((sp[0] / fr, sp[1] / fc) if sp else None)

    settings = {"channels": channels, "normalization": normalization, "clahe": bool(use_clahe), "scale": scale,
                "spacing": spacing, "mask_mode": mask_mode}
    if any(getattr(s, "roi", None) is not None for s in samples):
        settings["roi"] = [str(getattr(s, "roi", None)) for s in samples]
    if mask_spec is not None:
        settings["masks"] = mask_spec.key
    images: list = []
    masks: list = []
    if cache is not None:
        def build(folder: Path) -> dict:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for i, (image, mask) in enumerate(bounded_map(pool, one, list(zip(samples, factors)),
                                                               2 * max(1, workers))):
                    np.save(folder / f"image-{i:05d}.npy", image)
                    np.save(folder / f"mask-{i:05d}.npy", mask)
            return {"settings": settings, "samples": [str(s.image) for s in samples]}

        # one folder per file contents and settings, written once: runs never clash
        cache, reuse = cached_entry(cache, native_cache_key(samples, settings), len(samples), build)
        for i in range(len(samples)):
            images.append(np.load(cache / f"image-{i:05d}.npy", mmap_mode="r"))
            masks.append(np.load(cache / f"mask-{i:05d}.npy", mmap_mode="r"))
        nbytes = sum(a.nbytes for a in images) + sum(m.nbytes for m in masks)
        message = (f"Data: {len(samples)} images at native resolution, {format_bytes(nbytes)} decoded > "
                   f"--max-memory {format_bytes(budget)}: reading patches from .npy memory maps in {cache}"
                   + (" (reused)" if reuse else ""))
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for image, mask in bounded_map(pool, one, list(zip(samples, factors)), 2 * max(1, workers)):
                images.append(image)
                masks.append(mask)
        nbytes = sum(a.nbytes for a in images) + sum(m.nbytes for m in masks)
        message = (f"Data: {len(samples)} images at native resolution, {format_bytes(nbytes)} decoded, held in "
                   f"memory (--max-memory {format_bytes(budget)})")
    log.debug(message)
    return NativeData(images=images, masks=masks, spacings=spacings, in_memory=cache is None, nbytes=int(nbytes),
                      budget=int(budget), cache_dir=cache, message=message)
