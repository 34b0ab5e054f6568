"""Tests for Functions.augmentation (numpy / OpenCV only, no deep-learning backend)."""

from __future__ import annotations

import numpy as np
import pytest

from Functions.data.augmentation import (PRESETS, Augmenter, augment_batch, get_augmenter,
                                    rng_for)
from Functions.base.errors import UserError

# Every geometric transform switched off, so single transforms can be switched on.
OFF = dict(hflip=0.0, vflip=0.0, rotate90=0.0)
GEOMETRIC = {
    "hflip": dict(hflip=1.0),
    "vflip": dict(vflip=1.0),
    "rotate90": dict(rotate90=1.0),
    "rotate": dict(rotate=1.0, max_angle=180.0),
    "scale": dict(scale=1.0, scale_range=(0.7, 1.4)),
    "shift": dict(shift=1.0, max_shift=0.2),
    "elastic": dict(elastic=1.0, elastic_alpha=34.0, elastic_sigma=4.0),
    "combined": dict(hflip=0.5, vflip=0.5, rotate90=0.5, rotate=1.0, scale=1.0, shift=1.0,
                     elastic=1.0, scale_range=(0.8, 1.25), max_shift=0.1),
}
INTENSITY = {
    "brightness": dict(brightness=1.0, max_brightness=0.2),
    "contrast": dict(contrast=1.0, contrast_range=(0.5, 0.7)),
    "gamma": dict(gamma=1.0, gamma_range=(1.5, 2.0)),
    "noise": dict(noise=1.0, noise_std=0.05),
    "blur": dict(blur=1.0, blur_sigma=(1.0, 2.0)),
}


def blobs(size: int = 64, labels: int = 1, seed: int = 0) -> np.ndarray:
    """A label image with a few filled discs and a rectangle (values 0..labels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((size, size), np.uint8)
    for k in range(5):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.08, 0.16) * size
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1 + k % labels
    out[size // 10: size // 4, size // 2: size // 2 + size // 5] = labels
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


# ----------------------------------------------------------------- alignment
@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@pytest.mark.parametrize("channels", [1, 3])
def test_image_identical_to_mask_stays_identical(name, channels):
    mask = blobs(64)
    image = np.repeat(mask[..., None].astype(np.float32), channels, axis=2)
    aug = Augmenter(**{**OFF, **GEOMETRIC[name]}, image_interpolation="nearest")
    changed = 0
    for seed in range(6):
        img, msk = aug(image, mask, np.random.default_rng(seed))
        for c in range(channels):
            np.testing.assert_array_equal(img[..., c], msk.astype(np.float32))
        changed += not np.array_equal(msk, mask)
    assert changed >= 5  # the transform really moved things


@pytest.mark.parametrize("border", ["reflect", "symmetric", "constant", "edge", "wrap"])
def test_alignment_holds_for_every_border_mode(border):
    mask = blobs(48, labels=2, seed=3)
    aug = Augmenter(**GEOMETRIC["combined"], border=border, image_interpolation="nearest")
    img, msk = aug(mask.astype(np.float32), mask, np.random.default_rng(1))
    np.testing.assert_array_equal(img, msk.astype(np.float32))


@pytest.mark.parametrize("name", ["rotate", "scale", "shift", "elastic", "combined"])
def test_linear_image_thresholded_matches_mask(name):
    mask = blobs(96, seed=5)
    aug = Augmenter(**{**OFF, **GEOMETRIC[name]})  # linear for the image
    for seed in range(4):
        img, msk = aug(mask.astype(np.float32)[..., None], mask, np.random.default_rng(seed))
        assert set(np.unique(img.round(4))) - {0.0, 1.0}, "linear interpolation blends edges"
        assert iou(img[..., 0] > 0.5, msk > 0) > 0.95


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.int32, np.float32, np.bool_])
def test_mask_keeps_its_label_set_and_dtype(dtype):
    labels = blobs(64, labels=2, seed=1)  # values {0, 1, 2}
    mask = (labels > 0) if dtype is np.bool_ else labels.astype(dtype)
    image = np.random.default_rng(0).random((64, 64, 1), dtype=np.float32)
    aug = Augmenter.preset("strong", elastic=1.0, rotate=1.0, scale=1.0)
    for seed in range(5):
        _, out = aug(image, mask, np.random.default_rng(seed))
        assert out.dtype == mask.dtype and out.shape == mask.shape
        assert set(np.unique(out)) <= set(np.unique(mask))
    assert set(np.unique(out)) == set(np.unique(mask))  # blobs survive


# ------------------------------------------------ each transform does its job
def test_flips_and_rot90_are_exact():
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 2), dtype=np.float32)
    mask = rng.integers(0, 3, (8, 8))
    img, msk = Augmenter(**{**OFF, "hflip": 1.0})(image, mask, rng)
    np.testing.assert_array_equal(img, np.fliplr(image))
    np.testing.assert_array_equal(msk, np.fliplr(mask))
    img, msk = Augmenter(**{**OFF, "vflip": 1.0})(image, mask, rng)
    np.testing.assert_array_equal(img, np.flipud(image))
    np.testing.assert_array_equal(msk, np.flipud(mask))
    seen = set()
    for seed in range(20):
        img, msk = Augmenter(**{**OFF, "rotate90": 1.0})(image, mask, np.random.default_rng(seed))
        k = [k for k in (1, 2, 3) if np.array_equal(img, np.rot90(image, k))]
        assert len(k) == 1
        np.testing.assert_array_equal(msk, np.rot90(mask, k[0]))
        seen.add(k[0])
    assert seen == {1, 2, 3}


def test_rot90_on_non_square_image_keeps_shape():
    image = np.arange(6 * 10, dtype=np.float32).reshape(6, 10, 1)
    img, msk = Augmenter(**{**OFF, "rotate90": 1.0})(image, image[..., 0].astype(np.int32), 0)
    np.testing.assert_array_equal(img, np.rot90(image, 2))
    np.testing.assert_array_equal(msk, np.rot90(image[..., 0], 2).astype(np.int32))


def test_scale_by_two_zooms_about_the_centre():
    # 33 x 33, centre pixel 16: output pixel 16 + 2k comes from input pixel 16 + k.
    rng = np.random.default_rng(0)
    image = rng.random((33, 33), dtype=np.float32)
    aug = Augmenter(**OFF, scale=1.0, scale_range=(2.0, 2.0), image_interpolation="nearest")
    img, _ = aug(image, None, rng)
    k = np.arange(-8, 9)
    np.testing.assert_array_equal(img[np.ix_(16 + 2 * k, 16 + 2 * k)], image[np.ix_(16 + k, 16 + k)])


def test_shift_is_a_translation():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32), dtype=np.float32)
    aug = Augmenter(**OFF, shift=1.0, max_shift=0.25, border="wrap",
                    image_interpolation="nearest")
    for seed in range(5):
        img, _ = aug(image, None, np.random.default_rng(seed))
        shifts = [(dy, dx) for dy in range(-8, 9) for dx in range(-8, 9)
                  if np.array_equal(img, np.roll(image, (dy, dx), axis=(0, 1)))]
        assert len(shifts) == 1 and shifts[0] != (0, 0)


def test_rotation_turns_about_the_centre():
    size, c = 65, 32
    image = np.zeros((size, size), np.float32)
    image[c - 2:c + 3, c + 18:c + 23] = 1.0  # square 20 px right of the centre
    angles = []
    aug = Augmenter(**OFF, rotate=1.0, max_angle=180.0, border="constant")
    for seed in range(6):
        img, _ = aug(image, None, np.random.default_rng(seed))
        ys, xs = np.nonzero(img > 0.5)
        assert np.hypot(ys.mean() - c, xs.mean() - c) == pytest.approx(20.0, abs=0.7)
        assert img.sum() == pytest.approx(25.0, rel=0.1)
        angles.append(np.degrees(np.arctan2(-(ys.mean() - c), xs.mean() - c)))
    assert np.ptp(angles) > 30  # different seeds, different angles


def test_elastic_moves_pixels_by_a_few_pixels_smoothly():
    mask = blobs(96, seed=2)
    aug = Augmenter(**OFF, elastic=1.0, elastic_alpha=34.0, elastic_sigma=4.0,
                    image_interpolation="nearest")
    img, msk = aug(mask.astype(np.float32), mask, np.random.default_rng(0))
    changed = np.mean(msk != mask)
    assert 0.005 < changed < 0.2
    assert iou(msk > 0, mask > 0) > 0.7


def test_intensity_transforms_follow_their_formulas():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (32, 32, 1)).astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    span = hi - lo
    mask = blobs(32)

    def run(**kw):
        img, msk = Augmenter(**OFF, clip=False, **kw)(image, mask, np.random.default_rng(1))
        np.testing.assert_array_equal(msk, mask)  # intensity never touches the mask
        assert img.dtype == np.float32 and img.shape == image.shape
        return img.astype(np.float64)

    out = run(**INTENSITY["brightness"])
    delta = out - image
    assert np.ptp(delta) < 1e-5 and 1e-4 < abs(delta.mean()) <= 0.2 * span + 1e-6

    out = run(**INTENSITY["contrast"])
    factor = out.std() / image.std()
    assert 0.5 - 1e-4 <= factor <= 0.7 + 1e-4
    assert out.mean() == pytest.approx(image.mean(), abs=1e-5)

    out = run(**INTENSITY["gamma"])
    t_in, t_out = (image - lo) / span, (out - lo) / span
    inner = (t_in > 0.1) & (t_in < 0.9)
    g = np.log(t_out[inner]) / np.log(t_in[inner])
    assert np.ptp(g) < 1e-3 and 1.5 - 1e-3 <= g.mean() <= 2.0 + 1e-3
    assert out.min() == pytest.approx(lo, abs=1e-6) and out.max() == pytest.approx(hi, abs=1e-6)

    out = run(**INTENSITY["noise"])
    assert (out - image).std() == pytest.approx(0.05 * span, rel=0.1)

    out = run(**INTENSITY["blur"])
    assert out.std() < 0.6 * image.std()
    assert out.mean() == pytest.approx(image.mean(), abs=0.01)


def test_intensity_transforms_for_standardised_images_and_clipping():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((32, 32, 3)).astype(np.float32)
    everything = {k: v for d in INTENSITY.values() for k, v in d.items()}
    img, _ = Augmenter(**OFF, **everything)(image, None, rng)
    assert np.isfinite(img).all() and not np.allclose(img, image)
    assert img.min() >= image.min() and img.max() <= image.max()  # clip=True
    # brightness is relative to the span: a standardised image moves by d * span.
    img, _ = Augmenter(**OFF, brightness=1.0, clip=False)(image, None, np.random.default_rng(3))
    assert 0.0 < abs(float((img - image).mean())) <= 0.1 * np.ptp(image) + 1e-5


# ------------------------------------------------------- shapes and dtypes
@pytest.mark.parametrize("image_shape", [(40, 40), (40, 40, 1), (40, 40, 3), (40, 48, 3)])
@pytest.mark.parametrize("mask_shape", [(40, 40), (40, 40, 1), None])
def test_shapes_are_kept(image_shape, mask_shape):
    rng = np.random.default_rng(0)
    image = rng.random(image_shape, dtype=np.float32)
    mask = None
    if mask_shape is not None:
        mask = rng.integers(0, 2, image_shape[:2] + mask_shape[2:]).astype(np.uint8)
    img, msk = Augmenter.preset("strong", rotate90=1.0, elastic=1.0)(image, mask, rng)
    assert img.shape == image.shape and img.dtype == np.float32
    if mask is None:
        assert msk is None
    else:
        assert msk.shape == mask.shape and msk.dtype == np.uint8


def test_uint8_image_is_returned_as_uint8():
    image = (blobs(32) * 200).astype(np.uint8)[..., None]
    img, _ = Augmenter.preset("strong", brightness=1.0, noise=1.0)(image, None, 0)
    assert img.dtype == np.uint8 and img.shape == image.shape


def test_bad_shapes_are_rejected():
    aug = Augmenter()
    with pytest.raises(ValueError, match="mask"):
        aug(np.zeros((8, 8, 1), np.float32), np.zeros((8, 9), np.uint8), 0)
    with pytest.raises(ValueError, match="mask"):
        aug(np.zeros((8, 8, 1), np.float32), np.zeros((8, 8, 2), np.uint8), 0)
    with pytest.raises(ValueError, match="image"):
        aug(np.zeros((2, 8, 8, 1), np.float32), None, 0)


# ------------------------------------------------------------ determinism
def test_same_seed_same_output_and_different_seeds_differ():
    image = np.random.default_rng(0).random((48, 48, 1), dtype=np.float32)
    mask = blobs(48)
    aug = Augmenter.preset("strong")
    a = aug(image, mask, np.random.default_rng(7))
    b = aug(image, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = aug(image, mask, np.random.default_rng(8))
    assert not np.array_equal(a[0], c[0])


def test_augment_batch_is_deterministic_and_per_sample():
    rng = np.random.default_rng(0)
    images = rng.random((6, 32, 32, 1), dtype=np.float32)
    masks = np.stack([blobs(32, seed=s) for s in range(6)])[..., None]
    x1, y1 = augment_batch(images, masks, "default", seed=3)
    x2, y2 = augment_batch(images, masks, "default", seed=3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == images.shape and y1.shape == masks.shape and y1.dtype == masks.dtype
    x3, _ = augment_batch(images, masks, "default", seed=4)
    assert not np.array_equal(x1, x3)
    # Sample i depends only on (seed, i): a sub-batch gives the same first samples.
    x4, y4 = augment_batch(images[:2], masks[:2], "default", seed=3)
    np.testing.assert_array_equal(x4, x1[:2])
    np.testing.assert_array_equal(y4, y1[:2])
    # No augmenter: an unchanged copy.
    x5, y5 = augment_batch(images, masks, None, seed=3)
    np.testing.assert_array_equal(x5, images)
    assert x5 is not images
    np.testing.assert_array_equal(rng_for(1, 2, 3).random(3), rng_for(1, 2, 3).random(3))


def test_none_preset_is_identity():
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    mask = blobs(16)
    img, msk = Augmenter.preset("none")(image, mask, 0)
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(msk, mask)


# ------------------------------------------------- presets and validation
def test_presets_and_get_augmenter():
    assert set(PRESETS) == {"none", "light", "default", "strong",
                            "microscopy", "endoscopy", "ultrasound", "radiograph", "fundus"}
    assert Augmenter.preset("none").is_identity
    light = Augmenter.preset("light")
    assert (light.hflip, light.vflip, light.rotate90, light.rotate, light.elastic) == (
        0.5, 0.5, 0.5, 0.0, 0.0)
    default = Augmenter.preset("default")
    assert default.elastic == 0.3 and default.rotate > 0 and default.noise == 0.0
    strong = Augmenter.preset("strong")
    assert strong.elastic > default.elastic and strong.noise > 0 and strong.blur > 0
    assert Augmenter.preset("Default", noise=0.5).noise == 0.5

    assert get_augmenter(None) is None and get_augmenter(False) is None
    assert get_augmenter("none") is None
    assert get_augmenter(True) == default
    assert get_augmenter("light") == light
    assert get_augmenter(strong) is strong
    assert get_augmenter({"preset": "light", "blur": 1.0}) == Augmenter.preset("light", blur=1.0)
    assert get_augmenter({"hflip": 1.0}) == Augmenter(hflip=1.0)
    assert Augmenter(**default.to_dict()) == default


@pytest.mark.parametrize("kwargs, words", [
    (dict(hflip=1.5), ["hflip", "[0, 1]"]),
    (dict(elastic=-0.1), ["elastic", "[0, 1]"]),
    (dict(noise="often"), ["noise", "[0, 1]"]),
    (dict(scale_range=(1.2, 0.8)), ["scale_range", "low <= high"]),
    (dict(scale_range=(0.0, 1.0)), ["scale_range"]),
    (dict(gamma_range=(1.0,)), ["gamma_range", "pair"]),
    (dict(contrast_range=(1.2, 0.8)), ["contrast_range"]),
    (dict(blur_sigma=(2.0, 1.0)), ["blur_sigma"]),
    (dict(max_angle=270.0), ["max_angle", "[0.0, 180.0]"]),
    (dict(max_shift=1.5), ["max_shift"]),
    (dict(elastic_sigma=0.0), ["elastic_sigma"]),
    (dict(noise_std=-1.0), ["noise_std"]),
    (dict(image_interpolation="bilinear"), ["image_interpolation", "nearest"]),
    (dict(border="mirror"), ["border", "reflect"]),
])
def test_argument_validation(kwargs, words):
    with pytest.raises(ValueError) as info:
        Augmenter(**kwargs)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="none, light, default, strong"):
        Augmenter.preset("heavy")
    with pytest.raises(UserError, match="heavy"):
        get_augmenter("heavy")
    with pytest.raises(ValueError, match="blurr"):
        get_augmenter({"blurr": 1.0})
    with pytest.raises(ValueError, match="cannot make an augmenter"):
        get_augmenter(42)


def test_augmenter_is_frozen():
    aug = Augmenter()
    with pytest.raises(Exception):
        aug.hflip = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- figure
def test_plot_augmentation_grid_has_n_plus_one_panels():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from Functions.viz.plotting import plot_augmentation_grid

    mask = blobs(48, labels=2)
    image = np.random.default_rng(0).random((48, 48, 3), dtype=np.float32)
    fig = plot_augmentation_grid(image, mask, "strong", n=5, seed=1)
    try:
        assert len(fig.axes) == 6
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == "original" and all(t.startswith(f"#{i}") for i, t in
                                                 enumerate(titles[1:], 1))
        assert all(len(ax.lines) > 0 for ax in fig.axes)  # mask outlines drawn
    finally:
        plt.close(fig)
    fig = plot_augmentation_grid(image[..., :1], None, n=2)
    try:
        assert len(fig.axes) == 3 and all(len(ax.lines) == 0 for ax in fig.axes)
    finally:
        plt.close(fig)


# ------------------------------------------------------------ modality presets
MODALITY_NAMES = ("microscopy", "endoscopy", "ultrasound", "radiograph", "fundus")


@pytest.mark.parametrize("name", ["ultrasound", "radiograph", "fundus"])
def test_upright_modalities_never_turn_the_image_upside_down(name):
    # Top half bright, bottom half dark, plus a mask in the top-left corner only.
    image = np.zeros((48, 48, 1), np.float32)
    image[:24] = 1.0
    image[:24, :8] = 0.6  # a left-right asymmetry too, so a horizontal flip is visible
    mask = np.zeros((48, 48), np.uint8)
    mask[4:14, 4:14] = 1
    aug = Augmenter.preset(name)
    hflips = 0
    for seed in range(60):
        img, msk, applied = aug.apply(image, mask, rng_for(7, seed))
        assert not any(a == "vflip" or a.startswith("rot9") or a.startswith("rot18") or a.startswith("rot27")
                       for a in applied), applied
        # small tilts, zooms and shifts keep the bright half on top and the lesion in the top half
        assert img[:20].mean() > img[28:].mean() + 0.5, (seed, applied)
        ys, _ = np.nonzero(msk)
        assert ys.size and ys.max() < 24, (seed, applied)
        hflips += "hflip" in applied
    assert 15 <= hflips <= 45  # left-right flips do happen, about half the time


@pytest.mark.parametrize("name", MODALITY_NAMES)
def test_modality_presets_keep_image_and_mask_aligned(name):
    mask = blobs(64, seed=2)
    aug = Augmenter.preset(name, image_interpolation="nearest", brightness=0.0, contrast=0.0, gamma=0.0,
                           noise=0.0, blur=0.0)
    moved = 0
    for seed in range(8):
        img, msk = aug(mask.astype(np.float32)[..., None], mask, rng_for(3, seed))
        np.testing.assert_array_equal(img[..., 0], msk.astype(np.float32))
        moved += not np.array_equal(msk, mask)
    assert moved >= 6


def test_microscopy_and_endoscopy_use_every_orientation():
    for name in ("microscopy", "endoscopy"):
        seen = set()
        aug = Augmenter.preset(name)
        for seed in range(40):
            _, _, applied = aug.apply(np.zeros((16, 16), np.float32), None, rng_for(1, seed))
            seen |= {a for a in applied if a in ("hflip", "vflip") or a.startswith("rot")}
        assert {"hflip", "vflip", "rot90", "rot180", "rot270"} <= seen, (name, seen)


def test_preset_for_follows_the_registry_modality():
    from Functions.data import datasets
    from Functions.data.augmentation import preset_for

    assert datasets.preset_for("busi") == "ultrasound"
    assert datasets.preset_for("BUSI") == "ultrasound"
    assert datasets.preset_for("kvasir") == "endoscopy"  # alias of kvasir-seg
    assert datasets.preset_for("dsb2018") == "microscopy"
    assert datasets.preset_for("membrane") == "microscopy"
    assert datasets.preset_for("brain-tumor") == "radiograph"
    assert datasets.preset_for("drive") == "fundus"
    assert datasets.preset_for("nuclei") == "microscopy" and datasets.preset_for("ultrasound") == "ultrasound"
    assert preset_for("CT") == "radiograph" and preset_for("nuclei") == "microscopy"
    assert all(preset_for(m) in PRESETS for m in MODALITY_NAMES)
    with pytest.raises(UserError, match="neither a registered data set"):
        datasets.preset_for("photos-of-cats")
    with pytest.raises(UserError, match="for a data set use Functions.data.datasets.preset_for"):
        preset_for("busi")
    assert get_augmenter(datasets.preset_for("busi")).vflip == 0.0


def test_plot_augmentation_grid_none_means_no_augmentation():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from Functions.viz.plotting import plot_augmentation_grid

    mask = blobs(32)
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    for spec in (None, False, "none"):
        fig = plot_augmentation_grid(image, mask, spec, n=3)
        try:
            titles = [ax.get_title() for ax in fig.axes]
            assert titles == ["original"] + [f"#{i}: no augmentation" for i in (1, 2, 3)]
            first = fig.axes[0].images[0].get_array()
            assert all(np.array_equal(ax.images[0].get_array(), first) for ax in fig.axes)
        finally:
            plt.close(fig)
