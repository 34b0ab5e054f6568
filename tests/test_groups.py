"""Group-aware splits: groups from the readers, near-duplicates by perceptual hash, the check-split command."""

import json

import cv2
import numpy as np
import pytest

from Functions.cli import main
from Functions.data.discovery import Sample, find_samples
from Functions.data.duplicates import (dhash, duplicate_clusters, hamming, image_hashes, is_blank,
                                       near_duplicate_pairs, phash)
from Functions.data.splits import (describe_groups, known_groups, sample_groups, shared_groups, split_indices)


# ----------------------------------------------------------------------------- split_indices(groups=)
def test_group_split_never_shares_a_group():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 15, 60)                                   # 60 patients, 1-14 slices each
    groups = np.repeat([f"p{k}" for k in range(60)], sizes)
    n = len(groups)
    tr, va, te = split_indices(n, 0.15, 0.2, seed=1, groups=groups)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(n))
    for a, b in ((tr, va), (tr, te), (va, te)):
        assert shared_groups(groups, a, b) == []
    assert abs(len(te) - 0.2 * n) <= 14 and abs(len(va) - 0.15 * n) <= 14   # within one group of the target
    again = split_indices(n, 0.15, 0.2, seed=1, groups=list(groups))
    for x, y in zip((tr, va, te), again):
        np.testing.assert_array_equal(x, y)


def test_group_split_hand_case_and_distinct_groups_match_plain_split():
    # 4 groups of sizes 5, 3, 1, 1: a 20 % test split takes whole groups nearest 2 items
    groups = ["a"] * 5 + ["b"] * 3 + ["c", "d"]
    tr, va, te = split_indices(10, 0.0, 0.2, seed=0, groups=groups)
    assert len(va) == 0 and len({groups[i] for i in te}) >= 1
    assert shared_groups(groups, tr, te) == []
    assert len(te) in (1, 2, 3)
    # every item its own group -> exactly the split without groups
    plain = split_indices(40, 0.15, 0.15, seed=7)
    grouped = split_indices(40, 0.15, 0.15, seed=7, groups=[f"g{i}" for i in range(40)])
    nones = split_indices(40, 0.15, 0.15, seed=7, groups=[None] * 40)
    for x, y, z in zip(plain, grouped, nones):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_group_split_stratified_by_the_groups_label():
    groups, labels = [], []
    for k in range(30):
        label = "glioma" if k < 20 else "meningioma"
        groups += [f"p{k}"] * 4
        labels += [label] * 4
    tr, va, te = split_indices(len(groups), 0.2, 0.2, seed=3, stratify=labels, groups=groups)
    lab = np.array(labels)
    assert shared_groups(groups, tr, te) == [] and shared_groups(groups, va, te) == []
    # 20 glioma patients -> 4 test, 4 val; 10 meningioma -> 2 test, 2 val (4 slices each)
    assert int((lab[te] == "glioma").sum()) == 16 and int((lab[te] == "meningioma").sum()) == 8
    assert int((lab[va] == "glioma").sum()) == 16 and int((lab[va] == "meningioma").sum()) == 8
    assert describe_groups(groups, (tr, va, te)) == "groups: train 18, val 6, test 6 (30 groups for 120 samples)"


def test_group_split_with_few_groups_keeps_training_data():
    tr, va, te = split_indices(6, 0.2, 0.2, seed=0, groups=["a"] * 3 + ["b"] * 3)
    assert len(tr) == 3 and len(va) + len(te) == 3
    with pytest.raises(ValueError, match="groups has 2"):
        split_indices(3, 0.2, 0.2, groups=["a", "b"])


def test_known_groups():
    assert known_groups(["a", "a", "b"]) and not known_groups(["a", "b", None, None]) and not known_groups([None] * 3)


# ----------------------------------------------------------------------------- near-duplicates
def _scene(seed, size=(180, 240)):
    rng = np.random.default_rng(seed)
    img = np.zeros(size, np.uint8)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, min(size), 2))
        cv2.circle(img, c, int(rng.integers(10, 60)), int(rng.integers(60, 255)), -1)
    return cv2.GaussianBlur(img, (0, 0), 3)


def test_hashes_see_through_resize_and_jpeg_but_not_other_pictures():
    a = _scene(0)
    resized = cv2.resize(a, (500, 375), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 40])
    copy = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    ha, hc = image_hashes(a), image_hashes(copy)
    assert hamming(ha[0], hc[0]) <= 6 and hamming(ha[1], hc[1]) <= 6
    others = [image_hashes(_scene(s)) for s in range(1, 21)]
    assert min(max(hamming(ha[0], h[0]), hamming(ha[1], h[1])) for h in others) > 10
    assert near_duplicate_pairs([ha], others) == []
    assert [(i, j) for i, j, _ in near_duplicate_pairs([ha] + others, [hc])] == [(0, 0)]
    assert dhash(np.dstack([a, a, a])) == dhash(a) and phash(np.dstack([a, a, a])) == phash(a)


def test_hand_made_dhash():
    # left brighter than right everywhere -> all 64 bits set
    ramp = np.tile(np.arange(90, 0, -1, dtype=np.float32), (80, 1))
    assert dhash(ramp) == 2 ** 64 - 1 and dhash(ramp[:, ::-1]) == 0
    assert hamming(0b1011, 0b0001) == 2


def test_duplicate_clusters_are_transitive():
    h = [(0, 0), (0b111, 0b111), (0b111111, 0b111111), (2 ** 64 - 1, 2 ** 64 - 1)]
    # 0 ~ 1 (3 bits), 1 ~ 2 (3 bits), 0 and 2 are 6 apart; 3 far from all
    np.testing.assert_array_equal(duplicate_clusters(h, max_distance=3), [0, 0, 0, 3])
    np.testing.assert_array_equal(duplicate_clusters(h, max_distance=2), [0, 1, 2, 3])


def test_sample_groups_merge_duplicates_with_groups(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    pics = {"x1": _scene(5), "x2": cv2.resize(_scene(5), (120, 90)), "y": _scene(6), "z": _scene(7)}
    for name, img in pics.items():
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), img)
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), (img > 100).astype(np.uint8) * 255)
    samples = find_samples(tmp_path)
    assert [s.id for s in samples] == ["x1", "x2", "y", "z"]
    assert sample_groups(samples) == [None] * 4
    assert sample_groups(samples, near_duplicates=True) == ["duplicate:x1", "duplicate:x1", None, None]
    # x2 and y are one patient: y joins the cluster of x2's copy x1
    tagged = [Sample(id=s.id, image=s.image, masks=s.masks, group=g)
              for s, g in zip(samples, [None, "patient:P", "patient:P", None])]
    assert sample_groups(tagged, near_duplicates=True) == ["duplicate:x1"] * 3 + [None]


def test_blank_images_by_hand():
    # why they are left out: every constant frame has the same hashes, whatever its grey level
    assert image_hashes(np.zeros((64, 64), np.uint8)) == image_hashes(np.zeros((90, 70), np.uint8)) == (0, 0)
    flat = [image_hashes(np.full((64, 64), v, np.uint8)) for v in (0, 50, 200)]
    assert [(i, j) for i, j, _ in near_duplicate_pairs(flat)] == [(0, 1), (0, 2), (1, 2)]
    assert is_blank(np.zeros((64, 64), np.uint8)) and is_blank(np.full((9, 7, 3), 200, np.uint8))
    dither = np.full((32, 32), 100, np.uint8)
    dither[::2, ::3] = 101                                            # one grey level of noise: blank
    assert is_blank(dither)
    assert not is_blank(dither.astype(np.uint16) * 10)                # 1000..1010: 10 > 1010 / 255
    assert is_blank(dither.astype(np.uint16) * 10 + 5000)             # 6000..6010: 10 <= 6010 / 255
    faint = np.zeros((32, 32), np.uint8)
    faint[10:20, 10:20] = 3                                           # a faint but real square: not blank
    assert not is_blank(faint) and not is_blank(_scene(0))
    half = np.full((32, 32), 0.5, np.float32)
    half[0, 0] = 0.5 + 0.0019                                         # 0.0019 <= 0.5 / 255: blank
    assert is_blank(half)
    half[0, 0] = 0.5 + 0.0021                                         # 0.0021 > 0.5 / 255: a picture
    assert not is_blank(half)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = np.arange(16)[None, :]                              # a red ramp: grey 0 .. 5, not blank
    assert not is_blank(rgb) and is_blank(np.full((4, 4), np.nan, np.float32)) and is_blank(np.zeros((0, 5)))


def test_blank_frames_are_not_grouped_and_are_counted(tmp_path):
    from Functions.data.splits import split_samples

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    pics = {"b1": np.zeros((180, 240), np.uint8), "b2": np.full((256, 256), 128, np.uint8), "r1": _scene(8),
            "r2": cv2.resize(_scene(8), (200, 150)), "u": _scene(9)}
    for name, img in pics.items():
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), img)
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), (img > 100).astype(np.uint8) * 255)
    samples = find_samples(tmp_path)
    notes: list[str] = []
    assert sample_groups(samples, near_duplicates=True, notes=notes) == [None, None, "duplicate:r1",
                                                                         "duplicate:r1", None]
    assert notes == ["2 blank image(s) left out of the near-duplicate check (each stays a group of its own)"]
    _, groups, message = split_samples(samples, 0.2, 0.2, seed=0, near_duplicates=True)
    assert groups[:2] == [None, None] and message.endswith("; " + notes[0])


# ----------------------------------------------------------------------------- readers fill the group
def test_brain_tumor_reader_groups_by_patient_id(tmp_path):
    from test_datasets import make_brain_tumor

    samples = find_samples(make_brain_tumor(tmp_path / "bt"))
    assert [s.group for s in samples] == ["patient:MR0123"] * 3


def test_nifti_slices_grouped_by_volume(tmp_path):
    nib = pytest.importorskip("nibabel")
    for case in ("case1", "case2"):
        for folder in ("images", "masks"):
            (tmp_path / folder).mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(np.ones((6, 5, 3), np.uint8), np.eye(4)), str(tmp_path / folder / f"{case}.nii.gz"))
    samples = find_samples(tmp_path)
    assert [s.group for s in samples] == ["volume:case1"] * 3 + ["volume:case2"] * 3
    tr, va, te = split_indices(6, 0.0, 0.5, seed=0, groups=sample_groups(samples))
    assert {samples[i].group for i in te} != {samples[i].group for i in tr}
    assert len(te) == 3


def test_dicom_grouped_by_patient_id(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k, pid in enumerate(["A", "A", "B"]):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
        ds.PatientID = pid
        ds.save_as(tmp_path / "images" / f"s{k}.dcm")
        cv2.imwrite(str(tmp_path / "masks" / f"s{k}.png"), np.zeros((128, 128), np.uint8))
    samples = find_samples(tmp_path)
    assert [s.group for s in samples] == ["patient:A", "patient:A", "patient:B"]


# ----------------------------------------------------------------------------- check-split
def _run_folder(tmp_path, split):
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "unet", "data": str(tmp_path / "nowhere")}))
    (run / "split.json").write_text(json.dumps(split))
    return run


def test_check_split_reports_shared_groups_and_duplicates(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    paths = {}
    for name, img in {"a": _scene(1), "a_copy": cv2.resize(_scene(1), (300, 225)), "b": _scene(2),
                      "c": _scene(3)}.items():
        paths[name] = str(imgs / f"{name}.png")
        cv2.imwrite(paths[name], img)
    clean = _run_folder(tmp_path / "clean", {"train": [paths["a"], paths["b"]], "val": [], "test": [paths["c"]],
                                             "groups": {"train": ["p1", "p2"], "val": [], "test": ["p3"]}})
    assert main(["check-split", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "train/test: ok: 0 shared group(s), 0 near-duplicate pair(s)" in out
    assert "train 2 samples in 2 groups" in out and "groups from split.json" in out

    leaky = _run_folder(tmp_path / "leaky", {
        "train": [paths["a"], paths["b"]], "val": [],
        "test": [paths["a_copy"], paths["c"]],
        "groups": {"train": ["p1", "p2"], "val": [], "test": ["p9", "p2"]}})
    assert main(["check-split", str(leaky)]) == 1
    out = capsys.readouterr().out
    assert "train/test: LEAK: 1 shared group(s), 1 near-duplicate pair(s)" in out
    assert "group p2" in out and f"{paths['a']} ~ {paths['a_copy']}" in out and "result: LEAKAGE" in out
    assert main(["check-split", str(leaky), "--no-duplicates"]) == 1
    assert "near-duplicate pair" not in capsys.readouterr().out

    blank = {}
    for name, value in (("black", 0), ("grey", 128)):
        blank[name] = str(imgs / f"{name}.png")
        cv2.imwrite(blank[name], np.full((90, 120), value, np.uint8))
    frames = _run_folder(tmp_path / "frames", {"train": [paths["a"], blank["black"]], "val": [],
                                               "test": [paths["c"], blank["grey"]]})
    assert main(["check-split", str(frames)]) == 0                    # two blank frames are no leak
    out = capsys.readouterr().out
    assert "train/test: ok: 0 shared group(s), 0 near-duplicate pair(s)" in out
    assert "2 images hashed (dHash + pHash), 2 blank image(s) left out" in out


def test_check_split_without_groups_counts_files_in_two_splits(tmp_path, capsys):
    run = _run_folder(tmp_path, {"train": ["v1.nii.gz", "v1.nii.gz", "v2.nii.gz"], "val": [],
                                 "test": ["v1.nii.gz", "v3.nii.gz"]})
    assert main(["check-split", str(run), "--no-duplicates"]) == 1
    out = capsys.readouterr().out
    assert "groups from file names only" in out and "group file:v1.nii.gz" in out


def test_check_split_bad_input(tmp_path, capsys):
    assert main(["check-split", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "split.json" in err and "\n" not in err


def test_split_samples_refuses_image_split_on_grouped_data():
    from Functions.base.errors import UserError
    from Functions.data.splits import split_samples

    grouped = [Sample(id=f"s{i}", image=f"v{i // 4}.nii", group=f"volume:v{i // 4}") for i in range(40)]
    (tr, va, te), groups, message = split_samples(grouped, 0.2, 0.2, seed=0)
    assert shared_groups(groups, tr, te) == [] and shared_groups(groups, tr, va) == []
    assert message == "Split by group, groups: train 6, val 2, test 2 (10 groups for 40 samples)"
    with pytest.raises(UserError, match="--split-by image.*--allow-shared-groups"):
        split_samples(grouped, 0.2, 0.2, seed=0, split_by="image")
    (tr, va, te), _, message = split_samples(grouped, 0.2, 0.2, seed=0, split_by="image", allow_shared_groups=True)
    assert len(te) == 8 and "by image (groups shared on purpose)" in message
    plain = [Sample(id=f"s{i}", image=f"i{i}.png") for i in range(10)]
    idx, groups, message = split_samples(plain, 0.2, 0.2, seed=0, split_by="image")
    assert groups == [None] * 10 and message == "Split: no groups known (10 independent samples)"
    for a, b in zip(idx, split_indices(10, 0.2, 0.2, seed=0)):
        np.testing.assert_array_equal(a, b)
