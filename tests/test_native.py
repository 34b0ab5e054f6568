"""Native-resolution loading: in memory or through .npy memory maps under a memory budget; resampling."""

import cv2
import numpy as np
import pytest

from Functions.base.errors import UserError
from Functions.data.discovery import Sample, find_samples
from Functions.data.native import (check_positive, estimate_bytes, format_bytes, load_native, parse_memory,
                                   prepare_native)


def write_sizes(root, sizes):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (h, w) in enumerate(sizes):
        rng = np.random.default_rng(k)
        img = rng.integers(0, 255, (h, w), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:h // 2, w // 4:w // 2] = 255
        cv2.imwrite(str(root / "images" / f"c{k}.png"), img)
        cv2.imwrite(str(root / "masks" / f"c{k}.png"), mask)
    return root


def test_parse_memory_and_positive_checks():
    assert parse_memory("2G") == 2 * 2 ** 30 and parse_memory("500M") == 500 * 2 ** 20
    assert parse_memory("1.5GB") == int(1.5 * 2 ** 30) and parse_memory(1234) == 1234
    assert 0 < parse_memory("0.25") < parse_memory("0.5")
    for bad in ("lots", "0", "-1G", "2X"):
        with pytest.raises(UserError, match="--max-memory"):
            parse_memory(bad)
    assert format_bytes(1536 * 2 ** 20) == "1.5 GB"
    with pytest.raises(UserError, match="--spacing must be a positive number, got 0"):
        check_positive(0, "--spacing")
    assert check_positive(None, "--scale") is None and check_positive("0.5", "--scale") == 0.5


def test_estimate_is_exact_for_image_files(tmp_path):
    samples = find_samples(write_sizes(tmp_path, [(30, 40), (50, 20)]))
    assert estimate_bytes(samples, 1, [1.0, 1.0]) == (30 * 40 + 50 * 20) * 5
    assert estimate_bytes(samples, 3, [0.5, 0.5]) == (15 * 20 + 25 * 10) * 13


def test_in_memory_and_memmap_give_the_same_arrays(tmp_path):
    samples = find_samples(write_sizes(tmp_path / "d", [(30, 40), (50, 20), (17, 33)]))
    mem = load_native(samples, channels=1)
    assert mem.in_memory and "held in memory" in mem.message
    assert [im.shape for im in mem.images] == [(30, 40, 1), (50, 20, 1), (17, 33, 1)]
    assert mem.images[0].dtype == np.float32 and mem.masks[0].dtype == np.uint8 and set(np.unique(mem.masks[0])) == {0, 1}
    assert mem.nbytes == (30 * 40 + 50 * 20 + 17 * 33) * 5
    disk = load_native(samples, channels=1, max_memory=1000, cache_dir=tmp_path / "cache")
    assert not disk.in_memory and isinstance(disk.images[0], np.memmap)
    assert "memory maps" in disk.message and "--max-memory 1000 B" in disk.message
    for a, b in zip(mem.images + mem.masks, disk.images + disk.masks):
        np.testing.assert_array_equal(a, b)
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name.startswith("native-") and disk.cache_dir == folder
    assert sorted(p.name for p in folder.iterdir())[:2] == ["image-00000.npy", "image-00001.npy"]
    again = load_native(samples, channels=1, max_memory=1000, cache_dir=tmp_path / "cache")
    assert "(reused)" in again.message
    with pytest.raises(UserError, match="no cache folder"):
        load_native(samples, channels=1, max_memory=1000)


def test_patch_training_data_from_memmaps(tmp_path):
    """A data set bigger than the budget: patches come from the memory maps, nothing is loaded whole
    (the peak memory while cutting them: benchmarks/bounds.py)."""
    from Functions.data.patches import patch_dataset

    samples = find_samples(write_sizes(tmp_path / "d", [(600, 500)] * 6))      # 6 x 1.5 MB decoded
    data = load_native(samples, channels=1, max_memory="1M", cache_dir=tmp_path / "cache")
    assert not data.in_memory and data.nbytes == 6 * 600 * 500 * 5
    assert all(isinstance(a, np.memmap) for a in [*data.images, *data.masks])
    ds = patch_dataset(data.images, data.masks, 64, batch_size=4, patches_per_epoch=24, seed=0)
    for b in range(len(ds)):
        x, y = ds[b]
        assert x.shape == (4, 64, 64, 1) and y.shape == (4, 64, 64, 1)
        assert set(np.unique(y)) <= {0.0, 1.0} and np.isfinite(x).all()


def test_resampling_by_scale_and_spacing():
    image = np.arange(40 * 60, dtype=np.float32).reshape(40, 60, 1)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:40] = 1
    x, m = prepare_native(image, mask, 1, factor=0.5)
    assert x.shape == (20, 30, 1) and m.shape == (20, 30) and m.sum() == 100
    x, m = prepare_native(image, mask, 1, factor=(2.0, 1.0))
    assert x.shape == (80, 60, 1) and m.sum() == 800
    from Functions.data.native import resample_factor

    s = Sample(id="a", image="a.dcm", spacing=(0.5, 0.25))
    assert resample_factor(s, spacing=1.0) == (0.5, 0.25)
    assert resample_factor(Sample(id="b", image="b.png"), scale=0.5, spacing=1.0) == 0.5


def test_mask_spec_targets_are_drawn_after_resampling_and_keyed_in_the_cache(tmp_path):
    """Instance targets come from full-size label maps, resampled first, boundaries drawn at the new size;
    a cache of other targets is never reused."""
    from functools import partial

    from Functions.data.instance_targets import three_class_target
    from Functions.data.native import MaskSpec

    lab = np.zeros((40, 60), np.int32)
    lab[8:24, 8:24], lab[8:24, 24:40] = 300, 301     # two touching objects, ids above 255
    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), ((lab > 0) * 200).astype(np.uint8))
    sample = Sample(id="a", image=tmp_path / "im" / "a.png", masks=())
    spec = MaskSpec(key="instance-3class-w1", read=lambda s, shape: lab, target=partial(three_class_target, width=1))
    out = load_native([sample], 1, "minmax", scale=0.5, mask_spec=spec)
    m = out.masks[0]
    assert m.shape == (20, 30) and m.dtype == np.uint8 and set(np.unique(m)) == {0, 1, 2}
    assert np.array_equal(m, three_class_target(cv2.resize(lab, (30, 20), interpolation=cv2.INTER_NEAREST)))
    assert (m[4:12, 11:13] == 2).all()              # the touching edge, at the resampled size
    # without a target, ids above 255 cannot be uint8 patch targets: one clear error
    with pytest.raises(UserError, match="do not fit the uint8 targets"):
        load_native([sample], 1, "minmax", mask_spec=MaskSpec(key="raw", read=lambda s, shape: lab))
    # memmap caches of different targets go to different folders
    a = load_native([sample], 1, "minmax", max_memory=1, cache_dir=tmp_path / "c", mask_spec=spec)
    b = load_native([sample], 1, "minmax", max_memory=1, cache_dir=tmp_path / "c",
                    mask_spec=MaskSpec(key="instance-3class-w2", read=lambda s, shape: lab,
                                       target=partial(three_class_target, width=2)))
    assert a.cache_dir != b.cache_dir and (np.asarray(b.masks[0]) == 2).sum() > (np.asarray(a.masks[0]) == 2).sum()
