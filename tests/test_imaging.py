"""Reading every supported format, bit depth and mask encoding."""

import cv2
import numpy as np
import pytest
from PIL import Image

from Functions.base.errors import UserError
from Functions.data.imaging import binarize_mask, is_grayscale, read_image, read_mask


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp", ".gif"])
def test_read_formats_grayscale_and_rgb(tmp_path, ext):
    rng = np.random.default_rng(0)
    gray = (rng.random((20, 30)) * 255).astype(np.uint8)
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: checks RGB (not BGR) order
    Image.fromarray(gray).save(tmp_path / f"g{ext}")
    Image.fromarray(rgb).save(tmp_path / f"c{ext}")
    g = read_image(tmp_path / f"g{ext}")
    c = read_image(tmp_path / f"c{ext}")
    assert g.shape == (20, 30, 1)
    assert c.shape == (20, 30, 3)
    if ext in (".png", ".tif", ".bmp"):
        np.testing.assert_array_equal(g[..., 0], gray)
    assert c[..., 0].mean() > 150 and c[..., 2].mean() < 50


def test_rgba_drops_alpha_and_16bit_kept(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 100
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (8, 8, 3)
    deep = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint16 and out.max() == 63000


def test_mask_encodings(tmp_path):
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 2:5] = 1
    cv2.imwrite(str(tmp_path / "01.png"), m)
    cv2.imwrite(str(tmp_path / "0255.png"), m * 255)
    labels = m.copy()
    labels[6:8, 6:8] = 2
    cv2.imwrite(str(tmp_path / "lab.png"), labels)
    for name in ("01.png", "0255.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), m)
    np.testing.assert_array_equal(read_mask(tmp_path / "lab.png"), (labels > 0).astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "lab.png", mode="labels"), labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "0255.png", mode="labels"), m)


def test_jpeg_mask_noise_is_thresholded(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[10:40, 20:50] = 255
    cv2.imwrite(str(tmp_path / "m.jpg"), m, [cv2.IMWRITE_JPEG_QUALITY, 60])
    raw = cv2.imread(str(tmp_path / "m.jpg"), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(raw)) > 2  # the JPEG really is noisy
    np.testing.assert_array_equal(read_mask(tmp_path / "m.jpg"), (m > 0).astype(np.uint8))
    # values such as 3 and 252 (Kvasir-SEG) map to 0 and 1
    np.testing.assert_array_equal(binarize_mask(np.array([[3, 252], [0, 255]], np.uint8)), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 40000]], np.uint16)), [[0, 1]])
    # a 16-bit instance label map with 300 nuclei: every labelled pixel is foreground
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 1, 150, 300]], np.uint16)), [[0, 1, 1, 1]])


def test_corrupt_and_missing_files_are_user_errors(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="broken.png"):
        read_image(bad)
    with pytest.raises(UserError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_is_grayscale():
    assert is_grayscale(np.zeros((4, 4, 1)))
    assert is_grayscale(np.repeat(np.arange(16).reshape(4, 4, 1), 3, axis=-1))
    rgb = np.zeros((4, 4, 3))
    rgb[0, 0, 0] = 1
    assert not is_grayscale(rgb)
