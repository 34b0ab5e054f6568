"""Readers of CoNSeP, PanNuke, CoNIC and HoVer-Net patches, on fixture trees of the published layouts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from helpers import consep_tree, pannuke_fold

from Functions.base.errors import UserError
from Functions.data.panoptic_layouts import (CLASS_NAMES, pannuke_maps, panoptic_layout, read_conic, read_consep,
                                             read_consep_mat, read_hovernet_patches, read_pannuke_fold,
                                             read_panoptic_dataset)


def test_consep_reader_merges_types_as_hovernet(tmp_path):
    truth = consep_tree(tmp_path / "CoNSeP")
    assert panoptic_layout(tmp_path / "CoNSeP") == "consep"
    items = list(read_consep(tmp_path / "CoNSeP", "Train"))
    assert [n for n, *_ in items] == ["train_1", "train_2"]
    name, image, inst, cls = items[0]
    t_inst, t_types, rgb = truth[("Train", 0)]
    assert np.array_equal(inst, t_inst) and image.shape == (20, 24, 3) and np.array_equal(image, rgb)
    # original types 1..7 of nuclei 1..7 -> 1, 2, 3, 3, 4, 4, 4
    got = [int(cls[inst == k][0]) for k in range(1, 8)]
    assert got == [1, 2, 3, 3, 4, 4, 4]
    assert (cls[inst == 0] == 0).all()
    _, _, inst2, cls2 = items[1]
    assert [int(cls2[inst2 == k][0]) for k in range(1, 8)] == [4, 4, 4, 3, 3, 2, 1]
    raw_inst, raw_cls = read_consep_mat(tmp_path / "CoNSeP" / "Test" / "Labels" / "test_1.mat", merge=False)
    assert [int(raw_cls[raw_inst == k][0]) for k in range(1, 8)] == list(range(1, 8))
    assert len(CLASS_NAMES["consep"]) == 4


def test_consep_mismatched_types_named(tmp_path):
    savemat(tmp_path / "bad.mat", {"inst_map": np.array([[0, 1], [2, 3]], float), "inst_type": np.ones((2, 1))})
    with pytest.raises(UserError, match="bad.mat.*instance 3.*2 types"):
        read_consep_mat(tmp_path / "bad.mat")


def test_hovernet_patches(tmp_path):
    arr = np.zeros((6, 6, 5))
    arr[..., :3] = 200
    arr[1:3, 1:3, 3] = 4
    arr[1:3, 1:3, 4] = 2
    np.save(tmp_path / "p_000.npy", arr)
    assert panoptic_layout(tmp_path) == "hovernet-patches"
    (name, image, inst, cls), = list(read_hovernet_patches(tmp_path))
    assert name == "p_000" and image.dtype == np.uint8 and image[0, 0, 0] == 200
    assert inst[1, 1] == 4 and cls[1, 1] == 2 and cls.sum() == 8


def test_pannuke_fold_reader(tmp_path):
    images, masks = pannuke_fold(tmp_path)
    assert panoptic_layout(tmp_path / "Fold 1") == "pannuke" and panoptic_layout(tmp_path) == "pannuke"
    items = list(read_pannuke_fold(tmp_path / "Fold 1"))
    assert [it[0] for it in items] == ["fold1_0000", "fold1_0001", "fold1_0002"]
    assert [it[4] for it in items] == ["Breast", "Colon", "Breast"]
    _, image, inst, cls, _ = items[0]
    assert np.array_equal(image, np.round(images[0]).astype(np.uint8))
    assert len(np.unique(inst)) == 4                                 # background + 3 nuclei (id 7 twice)
    assert cls[1, 1] == 1 and cls[9, 9] == 2 and cls[1, 11] == 5 and inst[1, 1] != inst[9, 9]
    assert items[1][3][6, 6] == 4 and items[2][2].max() == 0
    assert len(list(read_panoptic_dataset(tmp_path))) == 3
    with pytest.raises(ValueError, match="H x W x 6"):
        pannuke_maps(masks[0, ..., :5])


def test_pannuke_wrong_channels_named(tmp_path):
    pannuke_fold(tmp_path)
    path = tmp_path / "Fold 1" / "masks" / "fold1" / "masks.npy"
    np.save(path, np.zeros((3, 16, 16, 5)))
    with pytest.raises(UserError, match="masks.npy has shape"):
        list(read_pannuke_fold(tmp_path / "Fold 1"))


def test_conic_reader(tmp_path):
    labels = np.zeros((2, 8, 8, 2), np.int32)
    labels[0, 1:4, 1:4] = (5, 3)
    labels[1, 4:8, 4:8] = (1, 6)
    np.save(tmp_path / "images.npy", np.full((2, 8, 8, 3), 9, np.uint8))
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "counts.csv").write_text("neutrophil,epithelial,lymphocyte,plasma,eosinophil,connective\n"
                                         "0,0,1,0,0,0\n0,0,0,0,0,1\n")
    assert panoptic_layout(tmp_path) == "conic"
    items = list(read_panoptic_dataset(tmp_path))
    assert [n for n, *_ in items] == ["conic_00000", "conic_00001"]
    assert items[0][2][2, 2] == 5 and items[0][3][2, 2] == 3 and items[1][3][5, 5] == 6
    np.save(tmp_path / "labels.npy", labels[..., :1])
    with pytest.raises(UserError, match="labels.npy has shape"):
        list(read_conic(tmp_path))


def test_registry_finds_and_loads_panoptic_sets(tmp_path, monkeypatch):
    from Functions.data import datasets

    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "data"))
    consep_tree(tmp_path / "consep" / "CoNSeP")
    items = datasets.load_panoptic("consep", data_dir=tmp_path, split="Test")
    assert [n for n, *_ in items] == ["test_1", "test_2"]
    assert datasets.locate("consep", tmp_path).name == "CoNSeP"
    samples = datasets.load("consep", tmp_path)          # converted once, the set's own split kept
    assert [(s.id, s.split) for s in samples] == [("test_1", "test"), ("test_2", "test"), ("train_1", "train"),
                                                  ("train_2", "train")]
    assert samples[0].instances.is_file() and str(tmp_path / "data" / ".converted") in str(samples[0].image)
    with pytest.raises(UserError, match="not found.*pannuke"):
        datasets.load_panoptic("pannuke", data_dir=tmp_path)
    info = datasets.get("pannuke")
    assert info.task == "panoptic" and not info.automatic and not info.files   # no invented URL or checksum


def test_conic_counts_and_install_of_a_consep_archive(tmp_path):
    import shutil

    from Functions.data import datasets
    from Functions.data.panoptic_layouts import conic_counts

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "counts.csv").write_text("neutrophil,epithelial\n1,2\n0,5\n")
    assert conic_counts(tmp_path / "c")["epithelial"].tolist() == [2, 5]
    with pytest.raises(UserError, match="counts.csv does not exist"):
        conic_counts(tmp_path)
    consep_tree(tmp_path / "src" / "CoNSeP")
    archive = shutil.make_archive(str(tmp_path / "consep"), "zip", tmp_path / "src")
    logs = []
    target = datasets.install("consep", archives=[archive], data_dir=tmp_path / "data", log=logs.append)
    assert (target / "CoNSeP" / "Train" / "Labels" / "train_1.mat").is_file()
    assert any("installed consep: 2 samples" in line for line in logs)
    assert len(datasets.load_panoptic("consep", tmp_path / "data")) == 2
