"""3-D augmentation: image and label stay aligned, shapes kept, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.data import augmentation3d as A
from Functions.metrics.segmentation import dice


def _pair(shape=(12, 16, 16)):
    d, h, w = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    label = (((d - 5) / 3.5) ** 2 + ((h - 6) / 4.5) ** 2 + ((w - 9) / 3.0) ** 2 <= 1).astype(np.uint8)
    image = (label * 100.0 + 0.5 * d)[..., None].astype(np.float32)   # a gradient along D shows flips in D
    return image, label


def test_flips_and_quarter_turns_move_image_and_label_together():
    image, label = _pair()
    fi, fl = A.flip(image, label, (0, 2))
    np.testing.assert_array_equal(fi[..., 0], image[::-1, :, ::-1, 0])
    np.testing.assert_array_equal(fl, label[::-1, :, ::-1])
    ri, rl = A.rot90_inplane(image, label, 1)
    assert ri.shape == image.shape and rl.shape == label.shape
    np.testing.assert_array_equal(ri[..., 0] >= 100, rl == 1)
    np.testing.assert_array_equal(rl[:, 0, :], label[:, :, -1])          # (h, w) -> (w, H-1-h): one quarter turn


def test_rotation_and_scale_keep_alignment():
    image, label = _pair((16, 24, 24))
    r = A.rotation_matrix(np.deg2rad(15), np.deg2rad(5), np.deg2rad(-5))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    ri, rl = A.rotate_scale(image, label, r, 1.1)
    assert ri.shape == image.shape and rl.shape == label.shape and rl.dtype == label.dtype
    assert dice(rl, ri[..., 0] >= 50) > 0.9                              # the label follows the image
    assert rl.sum() > label.sum()                                        # zoom 1.1 grows the structure
    same_i, same_l = A.rotate_scale(image, label, np.eye(3), 1.0)
    np.testing.assert_allclose(same_i, image, atol=1e-4)
    np.testing.assert_array_equal(same_l, label)


def test_augment3d_is_seeded_aligned_and_keeps_shapes():
    image, label = _pair((16, 24, 24))
    aug = A.Augment3D(flip=0.5, rot90=0.5, affine=1.0, intensity=0.0)
    a1 = aug(image, label[..., None], np.random.default_rng(7))
    a2 = aug(image, label[..., None], np.random.default_rng(7))
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1], a2[1])
    assert a1[0].shape == image.shape and a1[1].shape == label.shape + (1,)
    for seed in range(6):
        img, lab = aug(image, label, np.random.default_rng(seed))
        assert dice(lab, img[..., 0] >= 50) > 0.85, seed
    noisy, lab = A.Augment3D(flip=0, rot90=0, affine=0, intensity=1.0)(image, label, np.random.default_rng(1))
    np.testing.assert_array_equal(lab, label)
    assert not np.allclose(noisy, image)
    with pytest.raises(UserError, match="flip is a probability"):
        A.Augment3D(flip=2)
    with pytest.raises(UserError, match=r"\(D, H, W, C\)"):
        aug(image[..., 0], label, np.random.default_rng(0))
