"""The synthetic panoptic sample (typed nuclei on two tissue regions) and its committed copy."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from Functions.data import synthetic as S
from Functions.data.panoptic_io import read_panoptic_folder

SAMPLE = Path(__file__).resolve().parents[1] / "Data" / "sample" / "panoptic"


def test_committed_panoptic_sample_matches_the_generator():
    maps = read_panoptic_folder(SAMPLE)
    assert len(maps) == S.DEFAULT_N_PANOPTIC
    meta = json.loads((SAMPLE / "classes.json").read_text())
    assert meta["class_names"] == list(S.PANOPTIC_TYPES + S.PANOPTIC_STUFF) and meta["num_classes"] == 3
    for i in (0, 17, 39):
        image, inst, cls = S.make_panoptic(i + 1, size=S.DEFAULT_PANOPTIC_SIZE, seed=S.DEFAULT_SEED)[i]
        name = f"panoptic_{i:03d}"
        disk = cv2.imread(str(SAMPLE / "images" / f"{name}.png"))[..., ::-1]
        diff = np.abs(disk.astype(int) - image.astype(int))
        assert np.mean(diff > 0) < 1e-3 and diff.max() <= 2
        assert np.array_equal(maps[name][0], inst) and np.array_equal(maps[name][1], cls)
        mask = cv2.imread(str(SAMPLE / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask > 0, inst > 0)


def test_panoptic_generator_types_differ_in_size_and_shape():
    areas, elong = {1: [], 2: [], 3: []}, {1: [], 2: [], 3: []}
    stuff_seen = set()
    for image, inst, cls in S.make_panoptic(6, seed=3):
        assert image.shape == (128, 128, 3) and set(np.unique(cls)) <= {1, 2, 3, 4, 5}
        stuff_seen |= set(np.unique(cls[inst == 0]).tolist())
        for v in np.unique(inst)[1:]:
            m = inst == v
            types = np.unique(cls[m])
            assert len(types) == 1                      # each nucleus one type
            ys, xs = np.nonzero(m)
            ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs])))
            areas[int(types[0])].append(m.sum())
            elong[int(types[0])].append(np.sqrt(ev[1] / max(ev[0], 1e-6)))
    assert stuff_seen == {4, 5}                          # outside nuclei only stuff, both regions present
    assert np.median(areas[1]) < np.median(areas[3]) < np.median(areas[2])
    assert np.median(elong[3]) > 2.5 > np.median(elong[2]) and np.median(elong[1]) < 1.4
    # nuclei never touch: a one-pixel gap between any two instances
    from scipy import ndimage

    for _, inst, _ in S.make_panoptic(3, seed=4):
        for v in np.unique(inst)[1:]:
            ring = ndimage.binary_dilation(inst == v) & (inst != v)
            assert not (inst[ring] > 0).any()
