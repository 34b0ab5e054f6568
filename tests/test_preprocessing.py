"""Resize, normalise, colour conversion, CLAHE and cropping, checked by hand."""

import numpy as np
import pytest

from Functions.data.preprocessing import (clahe, crop_to_mask, mask_bbox, normalize, resize_image, resize_mask,
                                     to_grayscale, to_rgb)


def test_resize_area_for_images_nearest_for_masks():
    img = np.array([[0, 4], [8, 12]], np.float32).repeat(2, 0).repeat(2, 1)[..., None]  # 4x4 blocks
    small = resize_image(img, 2)
    np.testing.assert_allclose(small[..., 0], [[0, 4], [8, 12]])
    img2 = np.zeros((4, 4, 1), np.float32)
    img2[0, 0] = 4.0
    assert resize_image(img2, 2)[0, 0, 0] == pytest.approx(1.0)  # area average of a 2x2 block
    labels = np.array([[0, 1, 2, 2]] * 4, np.uint8)
    big = resize_mask(labels, (4, 8))
    assert set(np.unique(big)) == {0, 1, 2} and big.dtype == np.uint8


def test_normalize_modes():
    x = np.array([[10, 20], [30, 50]], np.uint8)[..., None]
    np.testing.assert_allclose(normalize(x, "minmax")[..., 0], [[0, 0.25], [0.5, 1]])
    z = normalize(x, "standardize")
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(normalize(x, "scale")[..., 0], x[..., 0] / 255.0)
    assert normalize(np.full((3, 3, 1), 7, np.uint8), "minmax").max() == 0
    with pytest.raises(ValueError, match="normalization"):
        normalize(x, "zscore")


def test_colour_conversions():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 255
    assert to_grayscale(rgb).shape == (2, 2, 1)
    assert to_grayscale(rgb)[0, 0, 0] == 150  # 0.587 * 255, OpenCV BT.601 weights
    assert to_rgb(np.ones((2, 2, 1))).shape == (2, 2, 3)


def test_clahe_increases_local_contrast():
    rng = np.random.default_rng(0)
    low = (100 + rng.integers(0, 10, (64, 64))).astype(np.uint8)[..., None]
    out = clahe(low)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 1)
    assert out.std() > 2 * low.std()


def test_crop_to_mask_with_margin():
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 30:50] = 1
    image = np.arange(100 * 100).reshape(100, 100, 1)
    assert mask_bbox(mask) == (40, 30, 60, 50)
    ci, cm = crop_to_mask(image, mask, margin=5)
    assert cm.shape == (30, 30) and ci.shape == (30, 30, 1) and cm.sum() == 400
    ci, cm = crop_to_mask(image, mask, margin=0.5)  # 10 px each side
    assert cm.shape == (40, 40)
    ci, cm = crop_to_mask(image, np.zeros_like(mask))
    assert cm.shape == (100, 100)


def test_binary_masks_resize_by_area_fraction():
    from Functions.data.preprocessing import resize_binary_mask

    m = np.zeros((4, 4), np.uint8)
    m[:2, :2] = 255                 # a full 2x2 block -> one output pixel fully covered
    m[2, 2] = 1                     # a quarter of an output pixel -> background
    m[0, 2:4] = 1                   # half of an output pixel -> foreground (>= 0.5)
    np.testing.assert_array_equal(resize_binary_mask(m, 2), [[1, 1], [0, 0]])
    up = resize_binary_mask(np.array([[1, 0], [0, 0]], np.uint8), (4, 4))
    assert up.dtype == np.uint8 and up[0, 0] == 1 and up[3, 3] == 0 and set(np.unique(up)) == {0, 1}
    same = np.array([[0, 3], [1, 0]], np.uint16)
    np.testing.assert_array_equal(resize_binary_mask(same, 2), [[0, 1], [1, 0]])


def test_dark_background_inverts_brightfield_only():
    from Functions.data.preprocessing import has_bright_background

    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 36
    fluorescence = np.where(disc, 200, 20).astype(np.uint8)[..., None]        # bright nucleus on black
    brightfield = np.where(disc, 40, 220).astype(np.uint8)[..., None]         # dark nucleus on white
    he = np.stack([np.where(disc, 90, 235), np.where(disc, 40, 210), np.where(disc, 140, 230)], -1).astype(np.uint8)
    assert not has_bright_background(fluorescence)
    assert has_bright_background(brightfield) and has_bright_background(he)
    assert not has_bright_background(np.full((4, 4), 7))                       # constant: nothing to invert
    for image in (fluorescence, brightfield, he):
        out = normalize(image, "dark_background")
        assert out.dtype == np.float32 and out.shape == image.shape
        assert out.min() >= 0 and out.max() <= 1
        assert out[disc].mean() > out[~disc].mean() + 0.5                      # nucleus bright, field dark
        if image.shape[-1] == 1:
            assert out[disc].min() == 1.0 and out[~disc].max() == 0.0
    np.testing.assert_allclose(normalize(fluorescence, "dark_background"), normalize(fluorescence, "minmax"))
    np.testing.assert_allclose(normalize(brightfield, "dark_background"), 1 - normalize(brightfield, "minmax"))


def test_choose_normalization_from_object_polarity():
    from helpers import blob_pair

    from Functions.data.preprocessing import choose_normalization

    pairs = [blob_pair(32, seed=i) for i in range(20)]           # bright discs on a dark background
    masks = np.stack([m for _, m in pairs])[..., None]
    bright = np.stack([normalize(im, "minmax") for im, _ in pairs])[..., None]   # (N, H, W, 1)
    dark = 1.0 - bright                                           # the same discs, dark on a light field
    assert choose_normalization(bright, masks) == "minmax"      # one polarity throughout
    assert choose_normalization(dark, masks) == "dark_background"
    mixed = np.concatenate([bright[:14], dark[14:]])             # 30 % brightfield-like, as in DSB2018
    assert choose_normalization(mixed, masks) == "dark_background"
    assert choose_normalization(bright, np.zeros_like(masks)) == "minmax"   # no objects: nothing to judge
