"""Random patches at native resolution: positions, foreground oversampling, padding, seeding."""

import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.data.patches import check_patch_fits, foreground_points, patch_dataset, sample_patch


def coords_image(h, w):
    """An image whose pixel value encodes its position: value = row * 1000 + column."""
    yy, xx = np.mgrid[:h, :w]
    return (yy * 1000 + xx).astype(np.float32)[..., None]


def test_patch_is_a_window_of_the_image():
    image = coords_image(40, 60)
    mask = np.zeros((40, 60), np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, msk = sample_patch(image, mask, (16, 24), rng)
        assert img.shape == (16, 24, 1) and msk.shape == (16, 24)
        r0, c0 = divmod(int(img[0, 0, 0]), 1000)
        np.testing.assert_array_equal(img, image[r0:r0 + 16, c0:c0 + 24])


def test_foreground_probability_one_always_hits_the_object():
    image = coords_image(64, 64)
    mask = np.zeros((64, 64), np.uint8)
    mask[50:53, 5:8] = 1                                              # one tiny object in a corner
    rng = np.random.default_rng(1)
    hits = [sample_patch(image, mask, 16, rng, foreground_probability=1.0)[1].sum() for _ in range(30)]
    assert min(hits) >= 1
    # never: the object covers 9 of 4096 pixels; a 16x16 patch at random rarely contains it
    rng = np.random.default_rng(1)
    hits0 = [sample_patch(image, mask, 16, rng, foreground_probability=0.0)[1].sum() > 0 for _ in range(200)]
    assert 0 < np.mean(hits0) < 0.3
    rng = np.random.default_rng(2)
    hits_third = [sample_patch(image, mask, 16, rng)[1].sum() > 0 for _ in range(600)]
    assert 0.3 < np.mean(hits_third) < 0.6                            # 1/3 forced + ~1/10 by chance


def test_foreground_centre_is_inside_the_patch_even_at_the_border():
    image = coords_image(32, 32)
    mask = np.zeros((32, 32), np.uint8)
    mask[0, 31] = 1
    img, msk = sample_patch(image, mask, 8, np.random.default_rng(0), foreground_probability=1.0)
    assert msk[0, 7] == 1 and img[0, 7, 0] == 31                     # clipped to the top-right corner


def test_small_image_is_padded_image_and_mask_alike():
    image = coords_image(6, 40)
    mask = np.zeros((6, 40), np.uint8)
    mask[0:2] = 1                                                     # an object along the top edge
    img, msk = sample_patch(image, mask, (10, 8), np.random.default_rng(0))
    assert img.shape == (10, 8, 1) and msk.shape == (10, 8)
    # 4 rows of padding, 2 above, 2 below, by reflection: rows 2, 1 | 0..5 | 4, 3 - for the mask too
    np.testing.assert_array_equal(img[:, 0, 0] // 1000, [2, 1, 0, 1, 2, 3, 4, 5, 4, 3])
    np.testing.assert_array_equal(msk[:, 0], [0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    # an ignore label instead, when asked
    _, ign = sample_patch(image, mask, (10, 8), np.random.default_rng(0), mask_pad_value=255)
    np.testing.assert_array_equal(ign[:, 0], [255, 255, 1, 1, 0, 0, 0, 0, 255, 255])
    with pytest.raises(UserError, match="padding is off"):
        sample_patch(image, mask, (10, 8), np.random.default_rng(0), pad=False)


def _bright_objects(shape, seed):
    """An image whose objects are bright (1.0 + noise) on a dark background (< 0.3), objects touching the
    border, with their binary mask, instance ids and class map (class = 1 + id % 2)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros(shape, np.int32)
    ids[:3, :4] = 1                                                   # touches the top-left corner
    ids[-2:, 2:5] = 2                                                 # touches the bottom edge
    ids[1:4, -2:] = 3                                                 # touches the right edge
    image = np.where(ids > 0, 1.0 + 0.2 * rng.random(shape), 0.3 * rng.random(shape)).astype(np.float32)
    return image[..., None], ids


@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric", "edge", "wrap", "constant"])
def test_padded_image_and_mask_agree_pixel_by_pixel(pad_mode):
    image, ids = _bright_objects((7, 9), 0)
    binary = (ids > 0).astype(np.uint8)
    classes = np.where(ids > 0, 1 + ids % 2, 0).astype(np.uint8)
    for seed in range(5):
        for target in (binary, ids, classes):
            img, msk = sample_patch(image, target, (16, 20), np.random.default_rng(seed), pad_mode=pad_mode)
            assert img.shape == (16, 20, 1) and msk.shape == (16, 20) and msk.dtype == target.dtype
            np.testing.assert_array_equal(msk > 0, img[..., 0] > 0.5)  # every bright pixel is labelled
        # labels move with their pixels: the padded ids/classes are the padded binary mask's objects
        _, m_ids = sample_patch(image, ids, (16, 20), np.random.default_rng(seed), pad_mode=pad_mode)
        _, m_cls = sample_patch(image, classes, (16, 20), np.random.default_rng(seed), pad_mode=pad_mode)
        np.testing.assert_array_equal(m_cls, np.where(m_ids > 0, 1 + m_ids % 2, 0))
    # the patch reaches past the object that touches the corner: its mirror is there, and labelled
    img, msk = sample_patch(image, ids, (16, 20), np.random.default_rng(0), pad_mode="reflect")
    assert (msk == 1).sum() > (ids == 1).sum()


def test_padded_volume_and_mask_agree_voxel_by_voxel():
    image2d, ids = _bright_objects((7, 9), 1)
    vol = np.stack([image2d] * 3)                                     # (3, 7, 9, 1)
    mask = np.stack([ids > 0] * 3).astype(np.uint8)[..., None]        # (3, 7, 9, 1)
    for seed in range(4):
        img, msk = sample_patch(vol, mask, (6, 12, 12), np.random.default_rng(seed))
        assert img.shape == (6, 12, 12, 1) and msk.shape == (6, 12, 12, 1)
        np.testing.assert_array_equal(msk[..., 0] > 0, img[..., 0] > 0.5)


def test_3d_patches():
    vol = np.random.default_rng(0).normal(size=(12, 20, 9, 2)).astype(np.float32)
    mask = np.zeros((12, 20, 9, 1), np.uint8)
    mask[5, 10, 4] = 1
    img, msk = sample_patch(vol, mask, (8, 8, 16), np.random.default_rng(0), foreground_probability=1.0)
    # axis 2 (9 -> 16) is reflected 3 before and 4 after: columns 3 2 1 | 0..8 | 7 6 5 4, so the voxel at
    # column 4 appears twice (at 7 and 15), in the image as in the mask
    assert img.shape == (8, 8, 16, 2) and msk.shape == (8, 8, 16, 1) and msk.sum() == 2
    assert np.flatnonzero(msk.sum(axis=(0, 1, 3))).tolist() == [7, 15]
    assert foreground_points(mask).tolist() == [[5, 10, 4]]


def test_check_patch_fits_message():
    with pytest.raises(UserError, match="larger than every image"):
        check_patch_fits([(20, 30), (25, 25)], 64, pad=False)
    with pytest.raises(UserError, match="1 of 2 images"):
        check_patch_fits([(20, 30), (80, 80)], 32, pad=False)
    assert check_patch_fits([(20, 30)], 64, pad=True) == (64, 64)


def make_data(n=5, seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for k in range(n):
        h, w = 20 + 7 * k, 30 + 3 * k                                  # every image a different size
        images.append(rng.uniform(size=(h, w, 1)).astype(np.float32))
        m = np.zeros((h, w), np.uint8)
        m[h // 2:h // 2 + 3, w // 2:w // 2 + 3] = 1
        masks.append(m)
    return images, masks


def test_dataset_batches_and_independence_of_batch_size():
    images, masks = make_data()
    a = patch_dataset(images, masks, 16, batch_size=2, patches_per_epoch=6, seed=3)
    b = patch_dataset(images, masks, 16, batch_size=3, patches_per_epoch=6, seed=3)
    assert len(a) == 3 and len(b) == 2
    xa = np.concatenate([a[i][0] for i in range(len(a))])
    ya = np.concatenate([a[i][1] for i in range(len(a))])
    xb = np.concatenate([b[i][0] for i in range(len(b))])
    assert xa.shape == (6, 16, 16, 1) and xa.dtype == np.float32 and ya.shape == (6, 16, 16, 1)
    np.testing.assert_array_equal(xa, xb)
    a.on_epoch_end()
    assert not np.array_equal(a[0][0], xa[:2])                        # a new epoch draws new patches
    a.set_epoch(0)
    np.testing.assert_array_equal(a[0][0], xa[:2])                    # and resuming repeats them


def test_dataset_visits_every_image_once_per_round():
    images, masks = make_data(n=4)
    ds = patch_dataset(images, masks, 8, batch_size=4, patches_per_epoch=8, seed=0)
    first = sorted(ds.image_index(0, j) for j in range(4))
    second = sorted(ds.image_index(0, j) for j in range(4, 8))
    assert first == second == [0, 1, 2, 3]


def test_dataset_with_augmenter_target_fn_and_outputs():
    images, masks = make_data()
    calls = []

    def flip(img, msk, rng):
        calls.append(img.shape)
        return img[::-1], msk[::-1]

    ds = patch_dataset(images, masks, 16, batch_size=2, patches_per_epoch=4, augmenter=flip, num_outputs=2,
                       target_fn=lambda y: (y > 0).astype(np.float32) * 2)
    x, (y1, y2) = ds[1]
    assert x.shape == (2, 16, 16, 1) and y1.shape == (2, 16, 16, 1) and set(np.unique(y1)) <= {0.0, 2.0}
    assert calls == [(16, 16, 1)] * 2
    with pytest.raises(IndexError):
        ds[2]


def test_memmap_images(tmp_path):
    images, masks = make_data(n=2)
    mm = []
    for k, im in enumerate(images):
        path = tmp_path / f"{k}.npy"
        np.save(path, im)
        mm.append(np.load(path, mmap_mode="r"))
    ds_mem = patch_dataset(images, masks, 16, batch_size=2, seed=5)
    ds_map = patch_dataset(mm, masks, 16, batch_size=2, seed=5)
    np.testing.assert_array_equal(ds_mem[0][0], ds_map[0][0])


def test_fixed_dataset_repeats_its_patches():
    images, masks = make_data()
    ds = patch_dataset(images, masks, 16, batch_size=5, seed=1, fixed=True)
    first = ds[0][0]
    ds.on_epoch_end()
    np.testing.assert_array_equal(ds[0][0], first)


def test_area_sampling_draws_images_in_proportion_to_their_pixels():
    from Functions.data.patches import sampling_weights

    images = [np.zeros((16, 16, 1), np.float32), np.zeros((32, 48, 1), np.float32)]   # 256 and 1536 pixels
    assert sampling_weights([im.shape[:2] for im in images], "image") is None
    weights = sampling_weights([im.shape[:2] for im in images], "area")
    assert weights.tolist() == [256.0, 1536.0]
    ds = patch_dataset(images, None, 16, batch_size=2, patches_per_epoch=2000, weights=weights, seed=3)
    drawn = np.bincount([ds.image_index(0, j) for j in range(2000)], minlength=2) / 2000
    assert abs(drawn[1] - 6 / 7) < 0.03                       # 1536 / (256 + 1536)
    # reproducible: the same seed draws the same images, whatever the batch size
    again = patch_dataset(images, None, 16, batch_size=7, patches_per_epoch=2000, weights=weights, seed=3)
    assert [again.image_index(0, j) for j in range(50)] == [ds.image_index(0, j) for j in range(50)]
    never = patch_dataset(images, None, 16, patches_per_epoch=200, weights=[0, 1], seed=0)
    assert {never.image_index(e, j) for e in range(2) for j in range(200)} == {1}
    with pytest.raises(UserError, match="2 non-negative numbers"):
        patch_dataset(images, None, 16, weights=[1, -1])
    with pytest.raises(UserError, match="--patch-sampling must be one of image, area"):
        sampling_weights([(4, 4)], "pixels")
