"""Random augmentation applied to an image and its mask together.

One :class:`Augmenter` holds the configuration (a probability and a range
for every transform) and is called once per sample with a
``numpy.random.Generator``::

    aug = Augmenter.preset("default")
    rng = np.random.default_rng(0)
    image, mask = aug(image, mask, rng)

Shapes.  ``image`` is ``(H, W, C)`` (any C, usually 1 or 3) or ``(H, W)``;
``mask`` is ``(H, W)`` or ``(H, W, 1)`` holding label values (0/1 or class
ids, integer, bool or float) or ``None``.  Both come back with the shapes
and dtypes they went in with.

Geometric transforms move image and mask identically:

* horizontal / vertical flips and rotation by a multiple of 90 degrees,
  done with numpy (exact, no interpolation);
* rotation by any angle, scaling and shifting, combined into ONE affine
  matrix per sample;
* elastic deformation (Simard, Steinkraus and Platt 2003, used by the U-Net
  paper): a random displacement field smoothed by a Gaussian of
  ``elastic_sigma`` pixels and scaled by ``elastic_alpha`` pixels.

The affine matrix and the elastic field are composed into a single
resampling (``cv2.warpAffine`` when there is no elastic field, otherwise one
``cv2.remap``), so an image is interpolated at most once.  The image uses
``image_interpolation`` (linear by default), the mask always uses nearest
neighbour, and both use the same border mode (``border``, reflection by
default), so the mask stays label-valued (its values are a subset of the
input's) and aligned with the image.

Intensity transforms touch the image only: gamma, contrast, brightness,
Gaussian blur and Gaussian noise.  Their sizes are relative to the image's
own intensity span ``s = max - min`` so they behave the same for images
scaled to [0, 1] (s ~ 1) and for standardised images (zero mean, unit
variance):

* gamma:      ``lo + s * ((x - lo) / s) ** g``  with ``g`` drawn log-uniformly
  from ``gamma_range``;
* contrast:   ``mean + c * (x - mean)``        with ``c`` from ``contrast_range``;
* brightness: ``x + d * s``                    with ``d`` in ``[-max_brightness, max_brightness]``;
* blur:       Gaussian blur of ``sigma`` pixels drawn from ``blur_sigma``;
* noise:      ``x + N(0, (noise_std * s) ** 2)``.

With ``clip=True`` (default) the result is clipped to the input's
``[min, max]`` so a [0, 1] image stays in [0, 1].

Randomness comes only from the generator passed in: the same generator state
gives the same output, which is what makes :func:`augment_batch` and the
training pipeline reproducible.  The object is immutable and keeps no
state, so one instance can be shared by many worker threads (OpenCV releases
the GIL while it resamples).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from Functions.base.errors import UserError

__all__ = [
    "Augmenter",
    "MODALITY_PRESETS",
    "PRESETS",
    "augment_batch",
    "get_augmenter",
    "preset_for",
    "rng_for",
]


class AugmentationArgumentError(UserError, ValueError):
    """A bad augmentation argument.

    It is a :class:`ValueError` (library convention for argument checks) and
    a :class:`~Functions.errors.UserError`, so the command line prints it as a
    one-line ``error: ...`` when it comes from ``--augment``.
    """


_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,  # numpy "reflect": edge pixel not repeated
    "symmetric": cv2.BORDER_REFLECT,  # edge pixel repeated
    "constant": cv2.BORDER_CONSTANT,  # zeros (background label 0 for the mask)
    "edge": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
}
_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
}
# cv2 resamples these mask dtypes natively; others are converted and back.
_CV2_MASK_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                          np.int32, np.float32, np.float64)}
_PROBABILITIES = ("hflip", "vflip", "rotate90", "rotate", "scale", "shift", "elastic",
                  "brightness", "contrast", "gamma", "noise", "blur")


def _fail(message: str) -> None:
    raise AugmentationArgumentError(f"Augmenter: {message}")


def _as_pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        _fail(f"{name} must be a pair (low, high) of numbers, got {value!r}")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        _fail(f"{name} must be an ordered pair low <= high of finite numbers, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class Augmenter:
    """Configuration of the random transforms, and the callable that applies them.

    Every transform has a probability (``0`` disables it, ``1`` applies it to
    every sample) and a range from which its strength is drawn uniformly
    (log-uniformly for ``scale_range`` and ``gamma_range``).

    Geometric (image and mask):
        hflip, vflip: probability of a left-right / up-down flip.
        rotate90: probability of a rotation by 90, 180 or 270 degrees (only 180
            on non-square images, so the shape is kept).
        rotate, max_angle: probability of a rotation by an angle drawn from
            ``[-max_angle, max_angle]`` degrees (``max_angle`` in [0, 180]).
        scale, scale_range: probability of a zoom by a factor from
            ``scale_range`` (> 0; above 1 enlarges the content).
        shift, max_shift: probability of a translation by up to ``max_shift``
            times the height / width in each direction (``max_shift`` in [0, 1]).
        elastic, elastic_alpha, elastic_sigma: probability of an elastic
            deformation; the displacement field is uniform noise in [-1, 1]
            smoothed by a Gaussian of ``elastic_sigma`` pixels and multiplied
            by ``elastic_alpha`` pixels (Simard et al. 2003).
    Intensity (image only, relative to the image's span ``max - min``):
        brightness, max_brightness: add ``d * span``, ``|d| <= max_brightness``.
        contrast, contrast_range: scale deviations from the mean by a factor
            from ``contrast_range`` (>= 0).
        gamma, gamma_range: gamma correction with an exponent from
            ``gamma_range`` (> 0).
        noise, noise_std: add Gaussian noise of std ``noise_std * span``.
        blur, blur_sigma: Gaussian blur with sigma (pixels) from ``blur_sigma``.
    Options:
        image_interpolation: "linear" (default), "nearest" or "cubic" for the
            image; the mask always uses nearest neighbour.
        border: how pixels outside the image are filled during rotation,
            scaling, shifting and elastic deformation: "reflect" (default),
            "symmetric", "constant" (zeros), "edge" or "wrap"; the same for
            image and mask.
        clip: clip the augmented image to the input's ``[min, max]``.

    ``Augmenter()`` gives random flips and 90-degree rotations only; see
    :meth:`preset` for ready-made settings.
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rotate90: float = 0.5
    rotate: float = 0.0
    max_angle: float = 180.0
    scale: float = 0.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.0
    max_shift: float = 0.1
    elastic: float = 0.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    brightness: float = 0.0
    max_brightness: float = 0.1
    contrast: float = 0.0
    contrast_range: tuple[float, float] = (0.8, 1.2)
    gamma: float = 0.0
    gamma_range: tuple[float, float] = (0.8, 1.25)
    noise: float = 0.0
    noise_std: float = 0.03
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    image_interpolation: str = "linear"
    border: str = "reflect"
    clip: bool = True

    # ------------------------------------------------------------------ checks
    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name in _PROBABILITIES:
            value = getattr(self, name)
            try:
                p = float(value)
            except (TypeError, ValueError):
                p = float("nan")
            if not 0.0 <= p <= 1.0:
                _fail(f"probability {name}={value!r} must be in [0, 1]")
            put(name, p)

        def number(name: str, low: float, high: float = math.inf, *,
                   low_open: bool = False) -> float:
            value = getattr(self, name)
            try:
                x = float(value)
            except (TypeError, ValueError):
                x = float("nan")
            ok = (low < x if low_open else low <= x) and x <= high
            if not ok:
                bracket = "(" if low_open else "["
                _fail(f"{name}={value!r} must be in {bracket}{low}, {high}]")
            put(name, x)
            return x

        number("max_angle", 0.0, 180.0)
        number("max_shift", 0.0, 1.0)
        number("elastic_alpha", 0.0)
        number("elastic_sigma", 0.0, low_open=True)
        number("max_brightness", 0.0)
        number("noise_std", 0.0)

        for name, low, low_open in (("scale_range", 0.0, True), ("contrast_range", 0.0, False),
                                    ("gamma_range", 0.0, True), ("blur_sigma", 0.0, True)):
            lo, hi = _as_pair(name, getattr(self, name))
            if lo < low or (low_open and lo == low):
                _fail(f"{name}={getattr(self, name)!r} must lie in "
                      f"{'(' if low_open else '['}{low}, inf) and be ordered low <= high")
            put(name, (lo, hi))

        if self.image_interpolation not in _INTERPOLATIONS:
            _fail(f"image_interpolation={self.image_interpolation!r} must be one of "
                  f"{sorted(_INTERPOLATIONS)}")
        if self.border not in _BORDERS:
            _fail(f"border={self.border!r} must be one of {sorted(_BORDERS)}")
        put("clip", bool(self.clip))

    # ----------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Augmenter":
        """A named configuration from :data:`PRESETS`, optionally with fields overridden.

        ``"none"`` (nothing), ``"light"`` (flips and 90-degree rotations),
        ``"default"`` (plus small rotations, zoom and shifts, mild
        brightness / contrast / gamma and occasional elastic deformation) and
        ``"strong"`` (larger ranges, more elastic deformation, noise and blur),
        and one per imaging modality - ``"microscopy"``, ``"endoscopy"``,
        ``"ultrasound"``, ``"radiograph"`` and ``"fundus"`` - holding only
        transforms the acquisition could produce (ultrasound and radiographs:
        no vertical flip, no 90-degree turn); :func:`preset_for` picks one
        from a data set's name.
        """
        key = str(name).strip().lower()
        if key not in PRESETS:
            _fail(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})

    @property
    def is_identity(self) -> bool:
        """True when every probability is zero (the augmenter returns its input)."""
        return all(getattr(self, name) == 0.0 for name in _PROBABILITIES)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-friendly; ``Augmenter(**d)`` rebuilds it)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    # ---------------------------------------------------------------- applying
    def __call__(self, image: np.ndarray, mask: np.ndarray | None,
                 rng: np.random.Generator | int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment one sample.

        Args:
            image: ``(H, W, C)`` or ``(H, W)`` array, float32 expected (other
                dtypes are processed in float32 and cast back).
            mask: ``(H, W)`` or ``(H, W, 1)`` label array, or ``None``.
            rng: the generator all random draws come from (an int or ``None``
                is passed to ``np.random.default_rng``).

        Returns:
            ``(image, mask)`` with the input shapes and dtypes.
        """
        image, mask, _ = self.apply(image, mask, rng)
        return image, mask

    def apply(self, image: np.ndarray, mask: np.ndarray | None,
              rng: np.random.Generator | int | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Like calling the augmenter, and also return the names of the transforms applied."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
        h, w = image.shape[:2]
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape[:2] != (h, w) or not (
                    mask.ndim == 2 or (mask.ndim == 3 and mask.shape[2] == 1)):
                raise ValueError(f"mask must be (H, W) or (H, W, 1) matching image (H, W) = "
                                 f"{(h, w)}, got shape {mask.shape}")
        image_dtype, image_shape = image.dtype, image.shape
        mask_dtype = mask.dtype if mask is not None else None
        mask_shape = mask.shape if mask is not None else None
        applied: list[str] = []

        img = image.astype(np.float32, copy=False)
        msk = mask.reshape(h, w) if mask is not None else None
        if msk is not None and msk.dtype not in _CV2_MASK_DTYPES:
            msk = _to_cv2_labels(msk)

        # -- exact geometric transforms (numpy views; made contiguous below)
        if self.hflip and rng.random() < self.hflip:
            img, msk = img[:, ::-1], (msk[:, ::-1] if msk is not None else None)
            applied.append("hflip")
        if self.vflip and rng.random() < self.vflip:
            img, msk = img[::-1], (msk[::-1] if msk is not None else None)
            applied.append("vflip")
        if self.rotate90 and rng.random() < self.rotate90:
            k = int(rng.integers(1, 4)) if h == w else 2
            img = np.rot90(img, k, axes=(0, 1))
            msk = np.rot90(msk, k, axes=(0, 1)) if msk is not None else None
            applied.append(f"rot{90 * k}")

        # -- one resampling for rotation + scale + shift + elastic
        matrix = self._draw_affine(rng, h, w, applied)
        field = self._draw_elastic(rng, h, w, applied)
        if matrix is not None or field is not None:
            img, msk = self._resample(img, msk, matrix, field)

        # -- intensity transforms (image only)
        img = self._intensity(img, rng, applied)

        img = np.ascontiguousarray(img).reshape(image_shape)
        if np.issubdtype(image_dtype, np.integer):
            info = np.iinfo(image_dtype)
            img = np.clip(np.rint(img), info.min, info.max)
        img = img.astype(image_dtype, copy=False)
        if msk is not None:
            msk = np.ascontiguousarray(msk).reshape(mask_shape).astype(mask_dtype, copy=False)
        return img, msk, applied

    # ------------------------------------------------------------- internals
    def _draw_affine(self, rng: np.random.Generator, h: int, w: int,
                     applied: list[str]) -> np.ndarray | None:
        """Forward 2x3 matrix (rotation about the centre, zoom, shift) or None."""
        angle, zoom, tx, ty = 0.0, 1.0, 0.0, 0.0
        if self.rotate and rng.random() < self.rotate:
            angle = float(rng.uniform(-self.max_angle, self.max_angle))
            applied.append(f"rotate {angle:+.0f}°")
        if self.scale and rng.random() < self.scale:
            lo, hi = self.scale_range
            zoom = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            applied.append(f"scale {zoom:.2f}")
        if self.shift and rng.random() < self.shift:
            tx, ty = (rng.uniform(-self.max_shift, self.max_shift, size=2) * (w, h)).tolist()
            applied.append(f"shift {tx:+.0f},{ty:+.0f}")
        if angle == 0.0 and zoom == 1.0 and tx == 0.0 and ty == 0.0:
            return None
        centre = ((w - 1) / 2.0, (h - 1) / 2.0)
        matrix = cv2.getRotationMatrix2D(centre, angle, zoom)
        matrix[:, 2] += (tx, ty)
        return matrix

    def _draw_elastic(self, rng: np.random.Generator, h: int, w: int,
                      applied: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Smoothed random displacement field ``(dx, dy)`` in pixels, or None."""
        if not (self.elastic and rng.random() < self.elastic) or self.elastic_alpha == 0.0:
            return None
        noise = rng.random((2, h, w), dtype=np.float32)
        noise = noise * 2.0 - 1.0
        sigma = self.elastic_sigma
        dx = cv2.GaussianBlur(noise[0], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        dy = cv2.GaussianBlur(noise[1], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        dx *= self.elastic_alpha
        dy *= self.elastic_alpha
        applied.append("elastic")
        return dx, dy

    def _resample(self, img: np.ndarray, msk: np.ndarray | None,
                  matrix: np.ndarray | None,
                  field: tuple[np.ndarray, np.ndarray] | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = img.shape[:2]
        border = _BORDERS[self.border]
        interp = _INTERPOLATIONS[self.image_interpolation]
        img = np.ascontiguousarray(img)
        msk = np.ascontiguousarray(msk) if msk is not None else None
        if field is None:
            warp = lambda a, flag: cv2.warpAffine(  # noqa: E731
                a, matrix, (w, h), flags=flag, borderMode=border)
        else:
            # Output pixel p samples the source at A^-1 (p + d(p)): the elastic
            # field is applied after the affine map, in one interpolation.
            dx, dy = field
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            px, py = xs + dx, ys + dy
            if matrix is None:
                map_x, map_y = px, py
            else:
                inv = cv2.invertAffineTransform(matrix).astype(np.float32)
                map_x = inv[0, 0] * px + inv[0, 1] * py + inv[0, 2]
                map_y = inv[1, 0] * px + inv[1, 1] * py + inv[1, 2]
            warp = lambda a, flag: cv2.remap(  # noqa: E731
                a, map_x, map_y, flag, borderMode=border)
        out = warp(img, interp).reshape(img.shape)
        if msk is not None:
            msk = warp(msk, cv2.INTER_NEAREST).reshape(msk.shape)
        return out, msk

    def _intensity(self, img: np.ndarray, rng: np.random.Generator,
                   applied: list[str]) -> np.ndarray:
        flags = [bool(p and rng.random() < p) for p in
                 (self.gamma, self.contrast, self.brightness, self.blur, self.noise)]
        if not any(flags):
            return img
        do_gamma, do_contrast, do_brightness, do_blur, do_noise = flags
        img = np.array(img, dtype=np.float32, copy=True, order="C")
        lo, hi = float(img.min()), float(img.max())
        span = hi - lo if hi > lo else 1.0
        if do_gamma:
            g_lo, g_hi = self.gamma_range
            g = float(math.exp(rng.uniform(math.log(g_lo), math.log(g_hi))))
            t = np.clip((img - lo) / span, 0.0, 1.0)
            img = (np.power(t, g, dtype=np.float32) * span + lo).astype(np.float32, copy=False)
            applied.append(f"gamma {g:.2f}")
        if do_contrast:
            c = float(rng.uniform(*self.contrast_range))
            mean = float(img.mean())
            img = (img - mean) * np.float32(c) + np.float32(mean)
            applied.append(f"contrast {c:.2f}")
        if do_brightness:
            d = float(rng.uniform(-self.max_brightness, self.max_brightness))
            img += np.float32(d * span)
            applied.append(f"brightness {d:+.2f}")
        if do_blur:
            s = float(rng.uniform(*self.blur_sigma))
            img = cv2.GaussianBlur(img, (0, 0), s, borderType=cv2.BORDER_REFLECT_101
                                   ).reshape(img.shape)
            applied.append(f"blur {s:.1f}")
        if do_noise:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(
                self.noise_std * span)
            applied.append("noise")
        if self.clip:
            np.clip(img, lo, hi, out=img)
        return img


def _to_cv2_labels(mask: np.ndarray) -> np.ndarray:
    """Cast a label mask of a dtype cv2 cannot resample (bool, int64, ...) to one it can."""
    if mask.dtype == np.bool_:
        return mask.view(np.uint8)
    if np.issubdtype(mask.dtype, np.integer):
        if mask.size == 0 or (mask.min() >= np.iinfo(np.int32).min
                              and mask.max() <= np.iinfo(np.int32).max):
            return mask.astype(np.int32)
        raise ValueError("mask labels do not fit in int32")
    return mask.astype(np.float32 if mask.dtype.itemsize <= 4 else np.float64)


#: Field values of the named presets (see :meth:`Augmenter.preset`).
PRESETS: dict[str, dict[str, Any]] = {
    "none": dict(hflip=0.0, vflip=0.0, rotate90=0.0),
    "light": dict(hflip=0.5, vflip=0.5, rotate90=0.5),
    "default": dict(
        hflip=0.5, vflip=0.5, rotate90=0.5,
        rotate=0.5, max_angle=20.0,
        scale=0.5, scale_range=(0.9, 1.1),
        shift=0.5, max_shift=0.05,
        elastic=0.3, elastic_alpha=34.0, elastic_sigma=4.0,
        brightness=0.3, max_brightness=0.1,
        contrast=0.3, contrast_range=(0.85, 1.15),
        gamma=0.3, gamma_range=(0.85, 1.18),
    ),
    "strong": dict(
        hflip=0.5, vflip=0.5, rotate90=0.5,
        rotate=0.7, max_angle=180.0,
        scale=0.7, scale_range=(0.8, 1.25),
        shift=0.7, max_shift=0.1,
        elastic=0.6, elastic_alpha=40.0, elastic_sigma=4.0,
        brightness=0.5, max_brightness=0.2,
        contrast=0.5, contrast_range=(0.7, 1.3),
        gamma=0.5, gamma_range=(0.7, 1.4),
        noise=0.3, noise_std=0.03,
        blur=0.2, blur_sigma=(0.5, 1.5),
    ),
    # -- modality presets: only transforms that could happen when the image is acquired.
    # Microscopy: a slide has no up, down, left or right, so every flip and turn is plausible.
    # (the "default" preset plus a little camera noise; filled in below the table)
    "microscopy": dict(noise=0.2, noise_std=0.02),
    # Endoscopy: the scope turns freely inside the organ, lighting and focus vary.
    "endoscopy": dict(
        hflip=0.5, vflip=0.5, rotate90=0.5,
        rotate=0.5, max_angle=30.0,
        scale=0.5, scale_range=(0.85, 1.2),
        shift=0.5, max_shift=0.08,
        elastic=0.2, elastic_alpha=30.0, elastic_sigma=5.0,
        brightness=0.5, max_brightness=0.15,
        contrast=0.5, contrast_range=(0.8, 1.2),
        gamma=0.3, gamma_range=(0.8, 1.25),
        blur=0.2, blur_sigma=(0.5, 1.2),
    ),
    # Ultrasound: the probe is always at the top of the image (depth grows downwards) and
    # shadows fall downwards, so no vertical flip and no 90-degree turn; the probe may be
    # held either way round (left-right flip), tilted a little, pressed a little harder
    # (small elastic), with another gain (brightness/contrast) and speckle (noise).
    "ultrasound": dict(
        hflip=0.5, vflip=0.0, rotate90=0.0,
        rotate=0.3, max_angle=10.0,
        scale=0.5, scale_range=(0.9, 1.1),
        shift=0.5, max_shift=0.05,
        elastic=0.2, elastic_alpha=20.0, elastic_sigma=5.0,
        brightness=0.3, max_brightness=0.1,
        contrast=0.4, contrast_range=(0.8, 1.2),
        gamma=0.3, gamma_range=(0.85, 1.18),
        noise=0.2, noise_std=0.03,
    ),
    # Radiographs and cross-sectional radiology (X-ray, CT, MRI slices): the patient lies in a
    # standard orientation, so no vertical flip or 90-degree turn; left-right flips keep most
    # anatomy plausible (both hemispheres, both lungs) and small tilts and zooms happen.
    "radiograph": dict(
        hflip=0.5, vflip=0.0, rotate90=0.0,
        rotate=0.3, max_angle=10.0,
        scale=0.3, scale_range=(0.9, 1.1),
        shift=0.3, max_shift=0.05,
        brightness=0.3, max_brightness=0.1,
        contrast=0.3, contrast_range=(0.85, 1.15),
        gamma=0.3, gamma_range=(0.85, 1.18),
        noise=0.1, noise_std=0.02,
    ),
    # Fundus photographs: a left eye is the mirror image of a right eye; the camera is held
    # upright, so small rotations but no vertical flip or 90-degree turn.
    "fundus": dict(
        hflip=0.5, vflip=0.0, rotate90=0.0,
        rotate=0.5, max_angle=15.0,
        scale=0.3, scale_range=(0.9, 1.1),
        brightness=0.4, max_brightness=0.1,
        contrast=0.4, contrast_range=(0.85, 1.15),
        gamma=0.3, gamma_range=(0.85, 1.18),
    ),
}
PRESETS["microscopy"] = {**PRESETS["default"], **PRESETS["microscopy"]}


#: Which preset suits which imaging modality (the ``modality`` of a
#: :class:`Functions.data.datasets.DatasetInfo`, or an offline sample's name).
MODALITY_PRESETS: dict[str, str] = {
    "microscopy": "microscopy",
    "electron microscopy": "microscopy",
    "endoscopy": "endoscopy",
    "ultrasound": "ultrasound",
    "radiograph": "radiograph",
    "mri": "radiograph",
    "ct": "radiograph",
    "x-ray": "radiograph",
    "fundus": "fundus",
}
#: Modality of the offline samples in ``Data/sample/<name>``.
SAMPLE_MODALITIES = {"nuclei": "microscopy", "ultrasound": "ultrasound"}


def preset_for(modality: str) -> str:
    """The augmentation preset name that suits an imaging modality.

    Args:
        modality: a modality (``"microscopy"``, ``"electron microscopy"``, ``"endoscopy"``,
            ``"ultrasound"``, ``"radiograph"``, ``"mri"``, ``"ct"``, ``"x-ray"``, ``"fundus"``) or an
            offline sample name (``"nuclei"``, ``"ultrasound"``).  For a registered data set name use
            :func:`Functions.data.datasets.preset_for`, which reads the entry's ``modality``.

    Returns:
        A key of :data:`PRESETS`, e.g. ``preset_for("ultrasound") == "ultrasound"`` (never a vertical
        flip or a 90-degree turn) and ``preset_for("nuclei") == "microscopy"``.

    Raises:
        AugmentationArgumentError: for a name that is neither.
    """
    key = str(modality).strip().lower()
    if key in MODALITY_PRESETS:
        return MODALITY_PRESETS[key]
    if key in SAMPLE_MODALITIES:
        return MODALITY_PRESETS[SAMPLE_MODALITIES[key]]
    _fail(f"preset_for: {modality!r} is neither a modality ({', '.join(MODALITY_PRESETS)}) nor an offline "
          f"sample ({', '.join(SAMPLE_MODALITIES)}); for a data set use Functions.data.datasets.preset_for")
    return ""  # unreachable


def get_augmenter(spec: "Augmenter | str | bool | Mapping[str, Any] | None"
                  ) -> Augmenter | None:
    """Turn a user-facing setting into an :class:`Augmenter`, or ``None`` for no augmentation.

    Accepts ``None`` / ``False`` / ``"none"`` (no augmentation), ``True``
    (the ``"default"`` preset), a preset name, a mapping of
    :class:`Augmenter` fields (optionally with ``"preset": name`` as the
    base), or an :class:`Augmenter` (returned as is).
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        return Augmenter.preset("default")
    if isinstance(spec, Augmenter):
        return spec
    if isinstance(spec, str):
        aug = Augmenter.preset(spec)
        return None if aug.is_identity else aug
    if isinstance(spec, Mapping):
        fields = dict(spec)
        base = fields.pop("preset", None)
        names = {f.name for f in dataclasses.fields(Augmenter)}
        unknown = sorted(set(fields) - names)
        if unknown:
            _fail(f"unknown field(s) {', '.join(map(repr, unknown))}; valid fields: "
                  f"{', '.join(sorted(names))}")
        return Augmenter.preset(base, **fields) if base is not None else Augmenter(**fields)
    _fail(f"cannot make an augmenter from {spec!r}; pass None, True/False, one of "
          f"{', '.join(PRESETS)}, a dict of fields or an Augmenter")
    return None  # unreachable


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for ``(seed, *keys)``, e.g. ``rng_for(seed, epoch, index)``.

    The stream depends only on the numbers given, not on which worker thread
    asks or in what order, so a threaded input pipeline stays reproducible.
    """
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


def augment_batch(images: np.ndarray, masks: np.ndarray | None,
                  augmenter: "Augmenter | str | bool | Mapping[str, Any] | None",
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Augment a batch reproducibly.

    Args:
        images: ``(N, H, W, C)`` or ``(N, H, W)``.
        masks: ``(N, H, W)`` or ``(N, H, W, 1)``, or ``None``.
        augmenter: anything :func:`get_augmenter` accepts (``None`` copies the inputs).
        seed: sample ``i`` uses ``rng_for(seed, i)``, so results do not depend on
            the batch size or order of processing.

    Returns:
        ``(images, masks)`` with the input shapes and dtypes.
    """
    images = np.asarray(images)
    if masks is not None:
        masks = np.asarray(masks)
        if len(masks) != len(images):
            raise ValueError(f"augment_batch: {len(images)} images but {len(masks)} masks")
    aug = get_augmenter(augmenter)
    out_images = np.array(images, copy=True)
    out_masks = None if masks is None else np.array(masks, copy=True)
    if aug is None:
        return out_images, out_masks
    for i in range(len(images)):
        img, msk = aug(images[i], None if masks is None else masks[i], rng_for(seed, i))
        out_images[i] = img
        if out_masks is not None:
            out_masks[i] = msk
    return out_images, out_masks
