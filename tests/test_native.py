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


def entries(cache):
    """The cache folders under ``cache`` (lock files, which start with a dot, aside)."""
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


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
    (folder,) = entries(tmp_path / "cache")
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


# ----------------------------------------------------------------------------- the disk cache: content-keyed, whole
def test_a_mask_edited_in_place_is_not_served_from_the_cache(tmp_path):
    """Same file size, same modification time, other bytes: the key follows the contents."""
    import os

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.bmp"), np.full((20, 24), 120, np.uint8))
    mask = np.zeros((20, 24), np.uint8)
    mask[2:6, 2:6] = 255
    cv2.imwrite(str(root / "masks" / "a.bmp"), mask)               # BMP: the size does not depend on the content
    samples = find_samples(root)
    first = load_native(samples, channels=1, max_memory=1, cache_dir=tmp_path / "cache")
    assert np.asarray(first.masks[0])[3, 3] == 1 and np.asarray(first.masks[0]).sum() == 16
    path = root / "masks" / "a.bmp"
    st = path.stat()
    mask[:] = 0
    mask[10:15, 10:15] = 255                                        # the annotation corrected
    cv2.imwrite(str(path), mask)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))            # and its time stamp put back
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    second = load_native(samples, channels=1, max_memory=1, cache_dir=tmp_path / "cache")
    assert "(reused)" not in second.message and second.cache_dir != first.cache_dir
    m = np.asarray(second.masks[0])
    assert m[3, 3] == 0 and m[12, 12] == 1 and m.sum() == 25
    assert np.asarray(first.masks[0]).sum() == 16                  # the first entry is left whole (write-once)
    third = load_native(samples, channels=1, max_memory=1, cache_dir=tmp_path / "cache")
    assert "(reused)" in third.message and third.cache_dir == second.cache_dir


_RACER = """
import json, sys, time
from pathlib import Path
import numpy as np
import Functions.data.native as native
from Functions.data.discovery import find_samples

root, cache, sync, name = (Path(a) for a in sys.argv[1:5])
plain = native.prepare_native

def slow(*args, **kwargs):                      # count each decoding, and take long enough to overlap
    with open(sync / "decoded", "a") as f:
        f.write("x")
    time.sleep(0.2)
    return plain(*args, **kwargs)

native.prepare_native = slow
samples = find_samples(root)
(sync / f"ready-{name}").touch()
deadline = time.time() + 60
while len(list(sync.glob("ready-*"))) < 2 and time.time() < deadline:   # start together
    time.sleep(0.01)
data = native.load_native(samples, 1, max_memory=1, cache_dir=cache, workers=1)
print(json.dumps({"images": [np.asarray(a).tolist() for a in data.images],
                  "masks": [np.asarray(m).tolist() for m in data.masks],
                  "reused": "(reused)" in data.message, "entry": str(data.cache_dir)}))
"""


def test_two_runs_started_together_build_one_entry_and_both_read_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    root = write_sizes(tmp_path / "d", [(9, 12), (11, 7), (8, 8)])
    expected = load_native(find_samples(root), channels=1)
    (tmp_path / "sync").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(root), str(tmp_path / "cache"),
                               str(tmp_path / "sync"), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True) for name in ("a", "b")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        for a, b in zip(expected.images + expected.masks, r["images"] + r["masks"]):
            np.testing.assert_array_equal(a, np.asarray(b, dtype=a.dtype))
    assert (tmp_path / "sync" / "decoded").read_text() == "xxx"      # decoded once: one run built, one waited
    assert sorted(r["reused"] for r in results) == [False, True]
    (entry,) = entries(tmp_path / "cache")                          # one entry, no temporary folder left
    assert {r["entry"] for r in results} == {str(entry)}


def test_torn_entries_are_never_read_and_are_rebuilt(tmp_path):
    from Functions.data.array_cache import read_complete

    samples = find_samples(write_sizes(tmp_path / "d", [(10, 12), (13, 9)]))
    expected = load_native(samples, channels=1)
    cache = tmp_path / "cache"

    def same(data):
        for a, b in zip(expected.images + expected.masks, data.images + data.masks):
            np.testing.assert_array_equal(a, b)

    entry = load_native(samples, channels=1, max_memory=1, cache_dir=cache).cache_dir
    # a run that crashed while building left its temporary folder: ignored, then cleared
    leftover = cache / f"{entry.name}.tmp-999999-dead"
    leftover.mkdir()
    np.save(leftover / "image-00000.npy", np.zeros((3, 3, 1), np.float32))
    # the entry's last array cut short (a full disk, a killed copy): its size no longer matches the manifest
    last = entry / "mask-00001.npy"
    last.write_bytes(last.read_bytes()[:-7])
    key = __import__("json").loads((entry / "manifest.json").read_text())["key"]
    assert read_complete(entry, key) is None
    data = load_native(samples, channels=1, max_memory=1, cache_dir=cache)
    assert "(reused)" not in data.message and data.cache_dir == entry and not leftover.exists()
    same(data)
    # an entry without its manifest (written by an older version, or half copied)
    (entry / "manifest.json").unlink()
    np.save(entry / "image-00000.npy", np.ones((2, 2, 1), np.float32))
    data = load_native(samples, channels=1, max_memory=1, cache_dir=cache)
    assert "(reused)" not in data.message
    same(data)
    assert [p.name for p in entries(cache)] == [entry.name]
    again = load_native(samples, channels=1, max_memory=1, cache_dir=cache)
    assert "(reused)" in again.message
    same(again)


def test_without_file_locks_the_first_whole_entry_wins(tmp_path, monkeypatch):
    """Where flock is unavailable (Windows) both runs build; the second rename fails and that run reads the
    first run's entry, never a mix of the two."""
    from contextlib import contextmanager

    from Functions.data import array_cache

    @contextmanager
    def no_lock(path):
        yield False

    monkeypatch.setattr(array_cache, "exclusive_lock", no_lock)

    def writer(value):
        def build(folder):
            np.save(folder / "image-00000.npy", np.full((2, 3, 1), value, np.float32))
            np.save(folder / "mask-00000.npy", np.full((2, 3), value, np.uint8))
            if value == 2:                       # meanwhile the other run finishes first
                first = array_cache.cached_entry(tmp_path, "k" * 64, 1, writer(1))
                assert first == (tmp_path / ("native-" + "k" * 16), False)
            return {"by": value}
        return build

    entry, reused = array_cache.cached_entry(tmp_path, "k" * 64, 1, writer(2))
    assert reused and array_cache.read_complete(entry, "k" * 64)["by"] == 1
    assert np.load(entry / "image-00000.npy").max() == 1 and np.load(entry / "mask-00000.npy").max() == 1
    assert entries(tmp_path) == [entry]                  # the losing copy is gone
