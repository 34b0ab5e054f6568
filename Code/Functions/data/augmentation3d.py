"""3-D augmentation for volume patches: the image and its label move together.

:class:`Augment3D` is an ``(image, label, rng) -> (image, label)`` callable, the
augmenter :func:`Functions.data.patches.patch_dataset` expects.  Every random
choice comes from the ``rng`` passed in (the patch dataset seeds it by
``(seed, epoch, patch)``), so a run is repeatable.

Spatial transforms (applied to image and label alike):

* **flips** along each of the three axes (probability ``flip`` per axis);
* **90-degree turns in the plane** ``(H, W)`` (probability ``rot90``): the
  in-plane axes usually share one spacing, so a quarter turn keeps the voxel
  shape; turns across the slice axis would not, and are not made;
* **small rotations and scaling** (probability ``affine``): a rotation by up
  to ``max_angle`` degrees in the ``(H, W)`` plane, up to
  ``max_tilt`` degrees about the two other axes, and an isotropic zoom in
  ``scale``; the image is resampled trilinearly, the label with nearest
  neighbour, both about the patch centre (edges repeat the border voxel).

Intensity transforms (image only, probability ``intensity``): multiply by
``1 + N(0, 0.1)``, add ``N(0, 0.1)`` times the patch standard deviation, and
add Gaussian noise with standard deviation up to ``noise`` times it.

Shapes: ``image (D, H, W, C)``, ``label (D, H, W)`` or ``(D, H, W, 1)`` (or
``None``); output shapes equal input shapes (a quarter turn of a non-square
``H x W`` patch is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError


def flip(image: np.ndarray, label: np.ndarray | None, axes) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip both along the spatial ``axes`` (0 = D, 1 = H, 2 = W)."""
    axes = tuple(int(a) for a in axes)
    if not axes:
        return image, label
    return np.flip(image, axes), (np.flip(label, axes) if label is not None else None)


def rot90_inplane(image: np.ndarray, label: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn both by ``k`` quarter turns in the ``(H, W)`` plane (axes 1 and 2)."""
    k = int(k) % 4
    if k == 0:
        return image, label
    return np.rot90(image, k, axes=(1, 2)), (np.rot90(label, k, axes=(1, 2)) if label is not None else None)


def rotation_matrix(angle: float, tilt_d: float = 0.0, tilt_h: float = 0.0) -> np.ndarray:
    """3x3 rotation in ``(D, H, W)`` index space: ``angle`` (radians) in the ``(H, W)`` plane, then
    ``tilt_d`` in the ``(D, W)`` plane and ``tilt_h`` in the ``(D, H)`` plane."""
    def plane(a, i, j):
        m = np.eye(3)
        c, s = np.cos(a), np.sin(a)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    return plane(tilt_h, 0, 1) @ plane(tilt_d, 0, 2) @ plane(angle, 1, 2)


def rotate_scale(image: np.ndarray, label: np.ndarray | None, matrix: np.ndarray, scale: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample both with ``matrix`` (3x3, index space) and zoom ``scale`` about the patch centre.

    Output voxel ``o`` takes the input at ``R^-1 (o - c) / scale + c``: the
    content turns by ``R`` and grows by ``scale``.  Image trilinear, label
    nearest; out-of-patch samples repeat the border.  Shapes unchanged.
    """
    spatial = np.array(image.shape[:3], float)
    centre = (spatial - 1) / 2.0
    inv = np.linalg.inv(np.asarray(matrix, float)) / float(scale)
    offset = centre - inv @ centre
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[3]):
        out[..., c] = ndimage.affine_transform(image[..., c].astype(np.float32, copy=False), inv, offset, order=1,
                                               mode="nearest", prefilter=False)
    lab = None
    if label is not None:
        squeeze = label.ndim == 3
        lab3 = label if squeeze else label[..., 0]
        lab3 = ndimage.affine_transform(lab3, inv, offset, order=0, mode="nearest", prefilter=False)
        lab = lab3 if squeeze else lab3[..., None]
    return out, lab


@dataclass(frozen=True)
class Augment3D:
    """Random 3-D augmentation; see the module docstring for each transform and its probability."""

    flip: float = 0.5
    rot90: float = 0.5
    affine: float = 0.3
    max_angle: float = 15.0
    max_tilt: float = 5.0
    scale: tuple = (0.85, 1.15)
    intensity: float = 0.5
    noise: float = 0.05

    def __post_init__(self):
        for name in ("flip", "rot90", "affine", "intensity"):
            p = getattr(self, name)
            if not 0.0 <= float(p) <= 1.0:
                raise UserError(f"{name} is a probability and must be in [0, 1], got {p}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise UserError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator):
        """``image (D, H, W, C)``, ``label (D, H, W[, 1])`` or None -> the same shapes, transformed alike."""
        image = np.asarray(image, np.float32)
        if image.ndim != 4:
            raise UserError(f"Augment3D needs a volume patch (D, H, W, C), got shape {image.shape}")
        axes = [a for a in range(3) if rng.random() < self.flip]
        image, label = flip(image, label, axes)
        if rng.random() < self.rot90 and image.shape[1] == image.shape[2]:
            image, label = rot90_inplane(image, label, int(rng.integers(1, 4)))
        if rng.random() < self.affine:
            angle = np.deg2rad(rng.uniform(-self.max_angle, self.max_angle))
            tilts = np.deg2rad(rng.uniform(-self.max_tilt, self.max_tilt, 2))
            zoom = rng.uniform(*self.scale)
            image, label = rotate_scale(image, label, rotation_matrix(angle, *tilts), zoom)
        if rng.random() < self.intensity:
            std = float(image.std()) or 1.0
            image = image * np.float32(1.0 + rng.normal(0, 0.1)) + np.float32(rng.normal(0, 0.1) * std)
            sigma = rng.uniform(0, self.noise) * std
            image = image + rng.normal(0, sigma, image.shape).astype(np.float32)
        image = np.ascontiguousarray(image, dtype=np.float32)
        label = np.ascontiguousarray(label) if label is not None else None
        return image, label
