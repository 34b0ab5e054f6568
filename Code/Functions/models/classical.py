"""Segmentation before deep learning: Otsu thresholding and a pixel-wise random forest.

Two baselines that show what a network has to beat:

* :func:`otsu_segment` - one global threshold chosen by Otsu's method (the grey
  value that maximises the between-class variance of the histogram), then
  optionally a little clean-up.  No training data at all.
* :class:`PixelForest` - a random forest (scikit-learn) that classifies every
  pixel from a hand-designed feature vector: smoothed intensity, gradient
  magnitude and texture (eigenvalues of the Hessian) at several scales
  (:func:`pixel_features`, built on
  :func:`skimage.feature.multiscale_basic_features`).  This is what tools
  such as ilastik do; it learns from a few labelled images, but every
  feature is fixed by hand - a network learns its features end to end.

Everything is seeded (pixel sampling and the forest), so a result repeats
exactly.  Images are ``(H, W)`` or ``(H, W, C)`` of any range; masks are
``(H, W)`` with 0 = background and 1 = object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from Functions.base.errors import UserError

#: Default scales (Gaussian sigma in pixels) of :func:`pixel_features`.
SIGMAS = (1.0, 2.0, 4.0, 8.0)


def _gray(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: channels averaged, min-max scaled."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x.mean(axis=-1)
    if x.ndim != 2:
        raise UserError(f"classical segmentation: image must be (H, W) or (H, W, C), got shape {x.shape}")
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def otsu_threshold(image: np.ndarray) -> float:
    """Otsu's threshold of ``image`` after :func:`_gray` scaling to [0, 1] (a float in [0, 1])."""
    from skimage.filters import threshold_otsu

    x = _gray(image)
    return float(threshold_otsu(x)) if float(x.max()) > float(x.min()) else 0.5


def otsu_segment(image: np.ndarray, *, bright_objects: bool = True, min_size: int = 0,
                 smooth: float = 0.0) -> np.ndarray:
    """Foreground = pixels on the object side of Otsu's threshold.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        bright_objects: objects brighter than the background (fluorescence); ``False`` for dark objects
            (e.g. a lesion in ultrasound).
        min_size: remove connected objects smaller than this many pixels (0 = keep all).
        smooth: Gaussian sigma applied before thresholding (0 = none); suppresses noise speckles.

    Returns:
        ``(H, W)`` uint8 mask of 0/1.
    """
    from scipy import ndimage

    x = _gray(image)
    if smooth > 0:
        x = ndimage.gaussian_filter(x, float(smooth))
    t = otsu_threshold(x)
    mask = x > t if bright_objects else x <= t
    if min_size > 0:
        from skimage.morphology import remove_small_objects

        mask = remove_small_objects(mask, max_size=int(min_size) - 1) if _new_skimage() \
            else remove_small_objects(mask, min_size=int(min_size))
    return mask.astype(np.uint8)


def _new_skimage() -> bool:
    import skimage

    major, minor = (int(p) for p in skimage.__version__.split(".")[:2])
    return (major, minor) >= (0, 26)


def pixel_features(image: np.ndarray, sigmas: tuple[float, ...] = SIGMAS) -> np.ndarray:
    """Per-pixel features: intensity, gradient magnitude and Hessian texture at each scale in ``sigmas``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` (channels are averaged).
        sigmas: Gaussian scales in pixels; the scales used are ``len(sigmas)`` values spaced evenly on a
            log scale from ``min(sigmas)`` to ``max(sigmas)`` (exactly ``sigmas`` for 1, 2, 4, 8).

    Returns:
        ``(H, W, 4 * len(sigmas))`` float32: for every sigma the smoothed intensity, the magnitude of its
        gradient (edges) and the two eigenvalues of its Hessian (blob and ridge texture) -
        :func:`skimage.feature.multiscale_basic_features` with ``intensity``, ``edges`` and ``texture``.
    """
    from skimage.feature import multiscale_basic_features

    sigmas = tuple(float(s) for s in sigmas)
    if not sigmas or min(sigmas) <= 0:
        raise UserError(f"pixel_features: sigmas={sigmas} must be positive numbers")
    x = _gray(image)
    feats = multiscale_basic_features(x, intensity=True, edges=True, texture=True, sigma_min=min(sigmas),
                                      sigma_max=max(sigmas), num_sigma=len(sigmas), workers=1)
    return np.asarray(feats, dtype=np.float32)


@dataclass
class PixelForest:
    """A random forest that labels every pixel from :func:`pixel_features`.

    ``fit`` samples ``pixels_per_class`` pixels of each class (seeded), so a rare class
    (small objects) is not drowned by the background.  ``predict`` returns 0/1 masks;
    ``predict_proba`` the forest's probability of class 1.
    """

    n_estimators: int = 50
    max_depth: int | None = 12
    pixels_per_class: int = 5000
    sigmas: tuple = SIGMAS
    seed: int = 0
    forest: object = field(default=None, repr=False)

    def fit(self, images, masks) -> "PixelForest":
        """Train on images ``[(H, W[, C]), ...]`` and masks ``[(H, W), ...]`` (sizes may differ between pairs)."""
        from sklearn.ensemble import RandomForestClassifier

        if len(images) != len(masks) or len(images) == 0:
            raise UserError(f"PixelForest.fit: got {len(images)} images and {len(masks)} masks; "
                            "give the same, non-zero number of each")
        rng = np.random.default_rng(self.seed)
        feats, labels = [], []
        for image, mask in zip(images, masks):
            f = pixel_features(image, self.sigmas)
            m = np.asarray(mask).reshape(f.shape[:2]) > 0
            feats.append(f.reshape(-1, f.shape[-1]))
            labels.append(m.ravel())
        feats, labels = np.concatenate(feats), np.concatenate(labels)
        chosen = []
        for cls in (False, True):
            where = np.flatnonzero(labels == cls)
            if where.size == 0:
                raise UserError("PixelForest.fit: the masks hold no " + ("object" if cls else "background")
                                + " pixels; give images with both")
            chosen.append(rng.choice(where, size=min(self.pixels_per_class, where.size), replace=False))
        chosen = np.sort(np.concatenate(chosen))
        self.forest = RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                             random_state=self.seed, n_jobs=1)
        self.forest.fit(feats[chosen], labels[chosen].astype(np.uint8))
        return self

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` float32 probability of the object class."""
        if self.forest is None:
            raise UserError("PixelForest: call fit(images, masks) before predict")
        f = pixel_features(image, self.sigmas)
        p = self.forest.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1]
        return p.reshape(f.shape[:2]).astype(np.float32)

    def predict(self, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """``(H, W)`` uint8 mask of 0/1."""
        return (self.predict_proba(image) >= threshold).astype(np.uint8)

    def feature_importances(self) -> dict[str, float]:
        """Importance of each feature family (intensity, edges, texture), summed over scales; sums to 1."""
        if self.forest is None:
            raise UserError("PixelForest: call fit(images, masks) first")
        n = len(self.sigmas)
        imp = np.asarray(self.forest.feature_importances_)
        # multiscale_basic_features orders features per sigma: intensity, edges, texture (2 eigenvalues)
        per = imp.reshape(n, -1)
        return {"intensity": float(per[:, 0].sum()), "edges": float(per[:, 1].sum()),
                "texture": float(per[:, 2:].sum())}
