"""Functions.models.classical: Otsu thresholding and the pixel-wise random forest."""

from __future__ import annotations

import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.models import classical


def _discs(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.08, 0.14) * size
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    return mask


def _dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_otsu_separates_a_two_level_image_exactly():
    mask = _discs()
    image = np.where(mask, 200, 40).astype(np.uint8)
    t = classical.otsu_threshold(image)
    assert 0.0 <= t < 1.0  # on the [0, 1] scale: between the two levels (0 and 1 after scaling)
    np.testing.assert_array_equal(classical.otsu_segment(image), mask)
    np.testing.assert_array_equal(classical.otsu_segment(image, bright_objects=False), 1 - mask)
    assert classical.otsu_segment(image[..., None].repeat(3, axis=-1)).shape == (48, 48)


def test_otsu_min_size_removes_specks():
    image = np.zeros((32, 32), np.float32)
    image[4:14, 4:14] = 1.0  # 100 pixels
    image[20, 20] = 1.0  # one bright speck
    out = classical.otsu_segment(image, min_size=5)
    assert out.sum() == 100 and out[20, 20] == 0


def test_pixel_features_shape_and_families():
    image = np.random.default_rng(0).random((32, 40), dtype=np.float32)
    f = classical.pixel_features(image, sigmas=(1.0, 2.0, 4.0))
    assert f.shape == (32, 40, 12) and f.dtype == np.float32
    with pytest.raises(UserError, match="sigmas"):
        classical.pixel_features(image, sigmas=(0.0, 1.0))


def _texture_pair(seed: int):
    """Object and background with the same mean grey value; only the texture (fine noise) differs."""
    rng = np.random.default_rng(seed)
    mask = _discs(48, seed)
    image = 0.5 + np.where(mask, 0.25, 0.02) * rng.standard_normal((48, 48))
    return image.astype(np.float32), mask


def test_random_forest_learns_texture_that_otsu_cannot_use():
    train = [_texture_pair(s) for s in range(3)]
    test = [_texture_pair(s) for s in range(10, 13)]
    forest = classical.PixelForest(n_estimators=20, pixels_per_class=1500, sigmas=(0.5, 1.0, 2.0, 4.0), seed=0)
    forest.fit([i for i, _ in train], [m for _, m in train])
    rf = np.mean([_dice(m, forest.predict(i)) for i, m in test])
    otsu = np.mean([_dice(m, classical.otsu_segment(i)) for i, m in test])
    assert rf > 0.8 and otsu < 0.4, (rf, otsu)  # measured: 0.847 and 0.332

    importances = forest.feature_importances()
    assert set(importances) == {"intensity", "edges", "texture"}
    assert abs(sum(importances.values()) - 1.0) < 1e-6
    assert importances["intensity"] < importances["edges"] + importances["texture"]


def test_random_forest_is_seeded():
    train = [_texture_pair(s) for s in range(2)]
    images, masks = [i for i, _ in train], [m for _, m in train]
    a = classical.PixelForest(n_estimators=5, pixels_per_class=500, seed=3).fit(images, masks)
    b = classical.PixelForest(n_estimators=5, pixels_per_class=500, seed=3).fit(images, masks)
    c = classical.PixelForest(n_estimators=5, pixels_per_class=500, seed=4).fit(images, masks)
    probe = _texture_pair(20)[0]
    np.testing.assert_array_equal(a.predict_proba(probe), b.predict_proba(probe))
    assert not np.array_equal(a.predict_proba(probe), c.predict_proba(probe))


def test_random_forest_refuses_bad_input():
    with pytest.raises(UserError, match="before predict"):
        classical.PixelForest().predict(np.zeros((8, 8)))
    with pytest.raises(UserError, match="no object pixels"):
        classical.PixelForest().fit([np.zeros((8, 8))], [np.zeros((8, 8))])
    with pytest.raises(UserError, match="same, non-zero number"):
        classical.PixelForest().fit([np.zeros((8, 8))], [])


def test_on_the_nuclei_sample_the_forest_beats_otsu():
    from Functions.base.paths import sample_dir
    from Functions.data.discovery import find_samples, load_sample

    pairs = [load_sample(s) for s in find_samples(sample_dir("nuclei"))[:6]]
    pairs = [(i[:128, :128], m[:128, :128]) for i, m in pairs]
    forest = classical.PixelForest(n_estimators=20, pixels_per_class=2000, seed=0)
    forest.fit([i for i, _ in pairs[:3]], [m for _, m in pairs[:3]])
    rf = np.mean([_dice(m, forest.predict(i)) for i, m in pairs[3:]])
    otsu = np.mean([_dice(m, classical.otsu_segment(i)) for i, m in pairs[3:]])
    print(f"nuclei sample, 3 test crops: Otsu Dice {otsu:.3f}, random forest Dice {rf:.3f}")
    assert rf > otsu + 0.05 and rf > 0.85, (rf, otsu)
