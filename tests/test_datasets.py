"""Dataset registry, safe archive installation and the loaders, on fixture trees in each published layout."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from Functions import cli
from Functions.data import datasets, public_layouts
from Functions.data.archives import safe_extract
from Functions.data.discovery import find_samples, load_sample
from Functions.base.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SHARED_DSB = REPO.parent / "shared" / "datasets" / "dsb2018"


# ----------------------------------------------------------------------------- fixture writers
def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    ok, buf = cv2.imencode(ext, array)  # imencode + tofile: works with spaces and parentheses
    assert ok
    buf.tofile(str(path))
    return path


def _square(top, left, size=4, shape=(16, 16), value=255):
    m = np.zeros(shape, np.uint8)
    m[top:top + size, left:left + size] = value
    return m


def make_membrane(root: Path, n: int = 3) -> Path:
    """zhixuhao/unet as cloned: data/membrane/train/{image,label}, plus test/ and aug/ without labels."""
    train = root / "unet-master" / "data" / "membrane" / "train"
    for i in range(n):
        label = np.full((16, 16), 255, np.uint8)  # white cells
        label[:, 7:9] = 0  # a black membrane column
        _png(train / "image" / f"{i}.png", np.full((16, 16), 100 + i, np.uint8))
        _png(train / "label" / f"{i}.png", label)
    _png(root / "unet-master" / "data" / "membrane" / "test" / "0.png", np.zeros((16, 16), np.uint8))
    _png(root / "unet-master" / "data" / "membrane" / "test" / "0_predict.png", np.zeros((16, 16), np.uint8))
    (train / "aug").mkdir()
    return train


def make_busi(root: Path) -> Path:
    """Dataset_BUSI_with_GT with spaces, parentheses and a second lesion mask, plus a __MACOSX sibling."""
    top = root / "Dataset_BUSI_with_GT"
    for cls, k in (("benign", 1), ("benign", 2), ("malignant", 1), ("normal", 1)):
        _png(top / cls / f"{cls} ({k}).png", np.full((16, 16, 3), 60, np.uint8))
        mask = _square(0, 0) if cls != "normal" else np.zeros((16, 16), np.uint8)
        _png(top / cls / f"{cls} ({k})_mask.png", mask)
    _png(top / "benign" / "benign (2)_mask_1.png", _square(10, 10))
    (root / "__MACOSX" / "Dataset_BUSI_with_GT" / "benign").mkdir(parents=True)
    (root / "__MACOSX" / "Dataset_BUSI_with_GT" / "benign" / "._benign (1).png").write_bytes(b"\x00\x05")
    return top


def make_kvasir(root: Path, n: int = 3) -> Path:
    top = root / "Kvasir-SEG"
    for i in range(n):
        name = f"cju{i}qkwl35piu0993l0dewei2.jpg"
        _png(top / "images" / name, np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8))
        mask = np.where(_square(5, 6, size=13, shape=(32, 32)) > 0, 252, 3).astype(np.uint8)
        _png(top / "masks" / name, np.repeat(mask[..., None], 3, axis=-1))  # RGB JPEG, like the real masks
    (top / "kavsir_bboxes.json").write_text("{}")
    return top


def make_dsb(root: Path, ids=("a1", "b2")) -> Path:
    for sid in ids:
        _png(root / sid / "images" / f"{sid}.png", np.full((16, 16, 4), 30, np.uint8))
        _png(root / sid / "masks" / "n1.png", _square(0, 0))
        _png(root / sid / "masks" / "n2.png", _square(8, 8))
    return root


def _gif(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_drive(root: Path, test_labels: bool = False) -> Path:
    top = root / "DRIVE"
    fov = np.zeros((20, 18), np.uint8)
    cv2.circle(fov, (9, 10), 8, 255, -1)
    for split, nums in (("training", (21, 22)), ("test", (1, 2))):
        for n in nums:
            stem = f"{n:02d}_{split}"
            _png(top / split / "images" / f"{stem}.tif", np.full((20, 18, 3), 80, np.uint8))
            _gif(top / split / "mask" / f"{stem}_mask.gif", fov)
            vessel = np.zeros((20, 18), np.uint8)
            vessel[:, n % 5] = 255
            if split == "training" or test_labels:
                _gif(top / split / "1st_manual" / f"{n:02d}_manual1.gif", vessel)
    return top


def _write_mat73(path: Path, image: np.ndarray, mask: np.ndarray, label: int) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte user block, struct cjdata, column-major."""
    h5py = pytest.importorskip("h5py")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        g = f.create_group("cjdata")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, value, cls in (("image", image.T, "int16"), ("tumorMask", mask.T, "logical"),
                                 ("label", np.array([[float(label)]]), "double"),
                                 ("PID", np.frombuffer(b"MR0123", np.uint8).astype(np.uint16)[:, None], "char"),
                                 ("tumorBorder", np.array([[1.0, 2.0, 3.0, 4.0]]).T, "double")):
            d = g.create_dataset(name, data=value)
            d.attrs["MATLAB_class"] = np.bytes_(cls)
    with open(path, "r+b") as f:  # MATLAB's text header in the user block
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2024 HDF5 schema 1.00 .")


def _brain_image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    image = (np.arange(6 * 8).reshape(6, 8) * 10 + seed).astype(np.int16)  # non-square: catches transposition
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:7] = 1
    return image, mask


def make_brain_tumor(root: Path) -> Path:
    for part, (num, label) in (("brainTumorDataPublic_1-766", (1, 1)), ("brainTumorDataPublic_1-766", (2, 2)),
                               ("brainTumorDataPublic_767-1532", (767, 3))):
        _write_mat73(root / part / f"{num}.mat", *_brain_image(num), label=label)
    h5py = pytest.importorskip("h5py")
    with h5py.File(root / "cvind.mat", "w") as f:  # ships beside the parts; not a slice
        f.create_dataset("cvind", data=np.ones((1, 3)))
    return root


def _zip_dir(folder: Path, out: Path, arc_root: str = "") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, str(Path(arc_root) / p.relative_to(folder)) if arc_root else str(p.relative_to(folder)))
    return out


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# ----------------------------------------------------------------------------- registry and CLI listing
def test_registry_entries_are_complete():
    assert datasets.names() == ["membrane", "busi", "kvasir-seg", "dsb2018", "drive", "brain-tumor",
                                "msd-hippocampus", "msd-spleen", "consep", "pannuke", "conic"]
    for info in datasets.REGISTRY.values():
        assert info.title and info.samples and info.size and info.license and info.citation and info.homepage
        assert info.automatic == (info.name not in ("drive", "consep", "pannuke", "conic"))
    assert len(datasets.get("membrane").files) == 60
    assert datasets.get("Kvasir_SEG").name == "kvasir-seg" and datasets.get("BBBC038").name == "dsb2018"
    parts = datasets.get("brain-tumor").files
    assert len(parts) == 4 and all(r.md5 and len(r.md5) == 32 for r in parts)
    assert all(r.md5 is None for n in ("membrane", "busi", "kvasir-seg", "dsb2018") for r in datasets.get(n).files)
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        datasets.get("mnist")


def test_datasets_command_prints_every_entry(tmp_path, capsys):
    assert cli.main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in datasets.names():
        assert f"\n{name}: " in "\n" + out
    n = len(datasets.names())
    assert out.count("license:") == n and out.count("citation:") == n
    assert "manual (DRIVE needs a free account" in out and "automatic: python -m Functions download busi" in out
    assert cli.main(["datasets", "drive"]) == 0
    assert capsys.readouterr().out.startswith("drive: DRIVE")


# ----------------------------------------------------------------------------- loaders on the published layouts
def test_membrane_white_cells_are_foreground(tmp_path):
    make_membrane(tmp_path)
    samples = datasets.load("membrane", data_dir=tmp_path)
    assert [s.id for s in samples] == ["0", "1", "2"] and all(s.label is None for s in samples)
    image, mask = load_sample(samples[2])
    assert image[0, 0, 0] == 102
    assert mask[0, 0] == 1 and mask[0, 7] == 0 and mask.sum() == 16 * 14


def test_busi_labels_merged_masks_and_data_dir_forms(tmp_path):
    top = make_busi(tmp_path / "Downloads")
    for data_dir in (tmp_path / "Downloads", top, tmp_path):
        samples = datasets.load("busi", data_dir=data_dir)
        assert [(s.id, s.label) for s in samples] == [
            ("benign (1)", "benign"), ("benign (2)", "benign"),
            ("malignant (1)", "malignant"), ("normal (1)", "normal")]
    _, merged = load_sample(samples[1])
    assert merged.sum() == 32 and merged[0, 0] == 1 and merged[12, 12] == 1
    assert load_sample(samples[3])[1].sum() == 0


def test_kvasir_jpeg_masks_are_thresholded(tmp_path):
    top = make_kvasir(tmp_path)
    raw = cv2.imread(str(top / "masks" / "cju0qkwl35piu0993l0dewei2.jpg"), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(raw)) > 2  # JPEG noise around 0 and 255, as in the real masks
    samples = datasets.load("kvasir-seg", data_dir=tmp_path)
    assert len(samples) == 3
    _, mask = load_sample(samples[0])
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, _square(5, 6, size=13, shape=(32, 32)) // 255)


def test_dsb_per_sample_folders(tmp_path):
    make_dsb(tmp_path / "stage1_train")
    samples = datasets.load("dsb2018", data_dir=tmp_path)
    assert [s.id for s in samples] == ["a1", "b2"]
    assert load_sample(samples[0])[1].sum() == 32


def test_drive_pairs_manuals_never_fov_masks(tmp_path):
    top = make_drive(tmp_path)
    samples = find_samples(top)  # the same path `train --data DRIVE` takes
    assert [(s.id, s.masks[0].name) for s in samples] == [("21_training", "21_manual1.gif"),
                                                         ("22_training", "22_manual1.gif")]
    _, vessel = load_sample(samples[0])
    assert vessel.sum() == 20 and vessel[:, 1].all()  # the manual (column 21 % 5), not the FOV disc
    assert len(datasets.load("drive", data_dir=tmp_path)) == 2
    with pytest.raises(UserError, match="field-of-view"):
        find_samples(top / "test")
    labelled = make_drive(tmp_path / "full", test_labels=True)
    assert [s.id for s in find_samples(labelled)] == ["01_test", "02_test", "21_training", "22_training"]


def test_brain_tumor_mat_v73_transposed_back_with_labels(tmp_path):
    make_brain_tumor(tmp_path / "bt")
    samples = find_samples(tmp_path / "bt")
    assert [(s.id, s.kind, s.label) for s in samples] == [
        ("1", "brain_tumor_mat", "meningioma"), ("2", "brain_tumor_mat", "glioma"),
        ("767", "brain_tumor_mat", "pituitary")]
    image, mask = load_sample(samples[0])
    expected, expected_mask = _brain_image(1)
    assert image.shape == (6, 8, 1) and image.dtype == np.int16
    np.testing.assert_array_equal(image[..., 0], expected)
    np.testing.assert_array_equal(mask, expected_mask)
    assert len(datasets.load("brain-tumor", data_dir=tmp_path)) == 3
    image, mask, label = public_layouts.read_brain_tumor_mat(tmp_path / "bt" / "brainTumorDataPublic_767-1532" / "767.mat")
    assert label == 3 and image[0, 1, 0] == 10 + 767


def test_brain_tumor_matlab_v5_files_read_with_scipy(tmp_path):
    from scipy.io import savemat

    image, mask = _brain_image(5)
    savemat(tmp_path / "5.mat", {"cjdata": {"image": image, "tumorMask": mask, "label": 2.0}})
    (sample,) = find_samples(tmp_path)
    assert sample.label == "glioma"
    got, got_mask = load_sample(sample)
    np.testing.assert_array_equal(got[..., 0], image)
    np.testing.assert_array_equal(got_mask, mask)


def test_training_pipeline_uses_dataset_and_labels(tmp_path):
    from Functions.data.sources import resolve_samples
    from Functions.engine.segmentation import TrainConfig, prepare_data

    make_busi(tmp_path)
    for cls in ("benign", "malignant", "normal"):  # enough per class for a stratified 3-way split
        for k in range(3, 6):
            _png(tmp_path / "Dataset_BUSI_with_GT" / cls / f"{cls} ({k}).png", np.full((16, 16, 3), 9, np.uint8))
            _png(tmp_path / "Dataset_BUSI_with_GT" / cls / f"{cls} ({k})_mask.png", _square(2, 2))
    config = TrainConfig(dataset="busi", data_dir=str(tmp_path), image_size=8, val_fraction=0.3, test_fraction=0.3)
    assert len(resolve_samples(config.data, config.dataset, config.data_dir)) == 13
    data = prepare_data(config)
    x, y, subset = data["train"]
    assert x.shape[1:] == (8, 8, data["channels"]) and y.shape[1:] == (8, 8, 1)
    assert {s.label for s in data["test"][2]} == {"benign", "malignant", "normal"}


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match=r"python -m Functions download kvasir-seg"):
        datasets.load("kvasir-seg", data_dir=tmp_path)
    with pytest.raises(UserError, match=r"drive\.grand-challenge\.org.*--archive"):
        datasets.load("drive", data_dir=tmp_path)
    (tmp_path / "brainTumorDataPublic_1-766.zip").write_bytes(b"PK")
    with pytest.raises(UserError, match="no extracted .mat"):
        datasets.load("brain-tumor", data_dir=tmp_path)


def test_default_data_dir_from_environment(tmp_path, monkeypatch):
    make_dsb(tmp_path / "dsb2018" / "stage1_train")
    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path))
    assert len(datasets.load("dsb2018")) == 2
    assert datasets.installed_path("dsb2018") == tmp_path / "dsb2018"


# ----------------------------------------------------------------------------- installing archives
def test_download_archive_installs_then_refuses_second_install(tmp_path, capsys):
    src = tmp_path / "src"
    make_busi(src)
    archive = _zip_dir(src, tmp_path / "Dataset_BUSI.zip")
    data = tmp_path / "data"
    assert cli.main(["download", "busi", "--archive", str(archive), "--data-dir", str(data)]) == 0
    assert "installed busi: 4 samples" in capsys.readouterr().out
    assert (data / "busi" / "Dataset_BUSI_with_GT" / "benign" / "benign (2)_mask_1.png").is_file()
    assert {p.name for p in data.iterdir()} == {"busi"}  # no staging folder left behind
    assert len(datasets.load("busi", data_dir=data)) == 4
    assert cli.main(["download", "busi", "--archive", str(archive), "--data-dir", str(data)]) == 2
    assert "already installed" in capsys.readouterr().err
    assert cli.main(["download", "busi", "--archive", str(archive), "--data-dir", str(data), "--force"]) == 0
    assert len(datasets.load("busi", data_dir=data)) == 4


def test_install_dsb_archive_into_stage1_train(tmp_path):
    src = make_dsb(tmp_path / "flat")
    archive = _zip_dir(src, tmp_path / "stage1_train.zip")  # the Broad zip has the id folders at the top
    target = datasets.install("dsb2018", archives=[archive], data_dir=tmp_path / "data", log=lambda m: None)
    assert (target / "stage1_train" / "a1" / "images" / "a1.png").is_file()
    assert [s.id for s in datasets.load("dsb2018", data_dir=tmp_path / "data")] == ["a1", "b2"]


def test_install_figshare_bundle_with_nested_zip_parts(tmp_path):
    parts = tmp_path / "parts"
    make_brain_tumor(parts)
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    for part in ("brainTumorDataPublic_1-766", "brainTumorDataPublic_767-1532"):
        _zip_dir(parts / part, bundle_dir / f"{part}.zip")  # parts hold the .mat files at their top
    (bundle_dir / "cvind.mat").write_bytes((parts / "cvind.mat").read_bytes())
    bundle = _zip_dir(bundle_dir, tmp_path / "1512427.zip")
    datasets.install("brain-tumor", archives=[bundle], data_dir=tmp_path / "data", log=lambda m: None)
    samples = datasets.load("brain-tumor", data_dir=tmp_path / "data")
    assert sorted(s.id for s in samples) == ["1", "2", "767"]
    assert not list((tmp_path / "data" / "brain-tumor").rglob("*.zip"))


def test_archive_without_the_layout_installs_nothing(tmp_path):
    junk = tmp_path / "junk"
    _png(junk / "holiday.png", np.zeros((4, 4), np.uint8))
    archive = _zip_dir(junk, tmp_path / "junk.zip")
    with pytest.raises(UserError, match="do not contain its layout"):
        datasets.install("kvasir-seg", archives=[archive], data_dir=tmp_path / "data", log=lambda m: None)
    assert list((tmp_path / "data").iterdir()) == []
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a ZIP or TAR"):
        datasets.install("kvasir-seg", archives=[tmp_path / "notes.txt"], data_dir=tmp_path / "data")


def _malicious_archives(tmp: Path, outside: Path) -> dict[str, Path]:
    out = {}
    for label, member in (("zip-dotdot", "../escaped.txt"), ("zip-abs", str(outside / "abs.txt")),
                          ("zip-backslash", "..\\escaped.txt")):
        p = tmp / f"{label}.zip"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("Kvasir-SEG/images/ok.jpg", b"fine")  # a harmless member first
            zf.writestr(member, b"owned")
        out[label] = p

    def tar_with(label, members):
        p = tmp / f"{label}.tar.gz"
        with tarfile.open(p, "w:gz") as tf:
            for info, data in members:
                tf.addfile(info, io.BytesIO(data) if data is not None else None)
        out[label] = p

    def file_info(name, data=b"owned"):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    tar_with("tar-dotdot", [file_info("Kvasir-SEG/ok.txt"), file_info("../../escaped.txt")])
    tar_with("tar-abs", [file_info(str(outside / "abs.txt"))])
    link = tarfile.TarInfo("Kvasir-SEG/link")
    link.type, link.linkname = tarfile.SYMTYPE, str(outside)
    tar_with("tar-symlink", [(link, None), file_info("Kvasir-SEG/link/through.txt")])
    rel = tarfile.TarInfo("Kvasir-SEG/up")
    rel.type, rel.linkname = tarfile.SYMTYPE, "../../../outside"
    tar_with("tar-relative-symlink", [(rel, None), file_info("Kvasir-SEG/up/through.txt")])
    hard = tarfile.TarInfo("Kvasir-SEG/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
    tar_with("tar-hardlink", [(hard, None)])
    return out


def test_malicious_archives_are_refused_and_write_nothing(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "work" / "data"
    archives = _malicious_archives(tmp_path, outside)
    before = _tree(tmp_path)
    for label, archive in archives.items():
        code = cli.main(["download", "kvasir-seg", "--archive", str(archive), "--data-dir", str(data)])
        err = capsys.readouterr().err
        assert code == 2 and "refusing to unpack" in err and "nothing was extracted" in err, label
        assert _tree(tmp_path) - before <= {"work", "work/data"}, label  # at most the empty data dir
        assert not data.exists() or list(data.iterdir()) == [], label
    assert list(outside.iterdir()) == []


def test_safe_extract_accepts_links_that_stay_inside(tmp_path):
    p = tmp_path / "ok.tar"
    with tarfile.open(p, "w") as tf:
        info = tarfile.TarInfo("d/file.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("d/alias.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "file.txt"
        tf.addfile(link)
    safe_extract(p, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "alias.txt").read_text() == "hi"


# ----------------------------------------------------------------------------- downloading
def test_download_offline_fails_with_one_clear_message(tmp_path, monkeypatch):
    info = datasets.get("kvasir-seg")
    monkeypatch.setitem(datasets.REGISTRY, "kvasir-seg", dataclasses.replace(
        info, files=(datasets.Remote("http://127.0.0.1:9/kvasir-seg.zip", "kvasir-seg.zip"),)))
    with pytest.raises(UserError) as exc:
        datasets.download("kvasir-seg", data_dir=tmp_path / "data", log=lambda m: None)
    message = str(exc.value)
    assert "could not download kvasir-seg" in message and "--archive FILE" in message and "\n" not in message
    assert not (tmp_path / "data" / "kvasir-seg").exists()
    with pytest.raises(UserError, match="cannot be downloaded automatically.*grand-challenge.*--archive"):
        datasets.download("drive", data_dir=tmp_path / "data")


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www (stands in for the publishers' sites)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_through_get_file_with_checksum_and_cache(tmp_path, monkeypatch, local_server, capsys):
    www, url = local_server
    src = make_kvasir(tmp_path / "src")
    archive = _zip_dir(src.parent, www / "kvasir-seg.zip")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    info = datasets.get("kvasir-seg")
    monkeypatch.setitem(datasets.REGISTRY, "kvasir-seg", dataclasses.replace(
        info, files=(datasets.Remote(f"{url}/kvasir-seg.zip", "kvasir-seg.zip", md5=md5),)))
    data = tmp_path / "data"
    assert cli.main(["download", "kvasir-seg", "--data-dir", str(data)]) == 0
    assert (data / ".cache" / "kvasir-seg" / "kvasir-seg.zip").is_file()
    assert len(datasets.load("kvasir-seg", data_dir=data)) == 3
    # a wrong publisher checksum is caught, and the cached copy is not trusted
    monkeypatch.setitem(datasets.REGISTRY, "kvasir-seg", dataclasses.replace(
        info, files=(datasets.Remote(f"{url}/kvasir-seg.zip", "kvasir-seg.zip", md5="0" * 32),)))
    with pytest.raises(UserError, match="could not download"):
        datasets.download("kvasir-seg", data_dir=data, force=True, log=lambda m: None)
    assert len(datasets.load("kvasir-seg", data_dir=data)) == 3  # the installed copy is untouched


def test_download_plain_files_membrane_layout(tmp_path, monkeypatch, local_server):
    www, url = local_server
    train = make_membrane(tmp_path / "src", n=2)
    remotes = []
    for kind in ("image", "label"):
        for i in range(2):
            (www / f"{kind}{i}.png").write_bytes((train / kind / f"{i}.png").read_bytes())
            remotes.append(datasets.Remote(f"{url}/{kind}{i}.png", f"{kind}_{i}.png", dest=f"train/{kind}/{i}.png"))
    info = datasets.get("membrane")
    monkeypatch.setitem(datasets.REGISTRY, "membrane", dataclasses.replace(info, files=tuple(remotes)))
    target = datasets.download("membrane", data_dir=tmp_path / "data", log=lambda m: None)
    assert sorted(p.name for p in (target / "train" / "label").iterdir()) == ["0.png", "1.png"]
    assert [s.id for s in datasets.load("membrane", data_dir=tmp_path / "data")] == ["0", "1"]


# ----------------------------------------------------------------------------- real data or the offline sample
def test_load_or_sample_uses_the_real_set_when_it_is_on_disk(tmp_path):
    make_busi(tmp_path / "data" / "busi")
    said = []
    choice = datasets.load_or_sample("busi", data_dir=tmp_path / "data", log=said.append)
    assert choice.real and choice.name == "busi" and len(choice.samples) == 4
    assert choice.source == {"dataset": "busi", "data_dir": str(tmp_path / "data")}
    assert choice.modality == "ultrasound" and choice.augment == "ultrasound"
    assert len(said) == 1 and said[0].startswith("Using busi: 4 samples found in") and str(choice) == said[0]


def test_load_or_sample_falls_back_when_the_download_fails(tmp_path, monkeypatch):
    info = datasets.get("kvasir-seg")
    monkeypatch.setitem(datasets.REGISTRY, "kvasir-seg", dataclasses.replace(
        info, files=(datasets.Remote("http://127.0.0.1:9/kvasir-seg.zip", "kvasir-seg.zip"),)))  # nothing listens
    said = []
    choice = datasets.load_or_sample("kvasir-seg", data_dir=tmp_path / "data", log=said.append)
    assert not choice.real and choice.name == "sample/nuclei" and len(choice.samples) == 100
    assert choice.source == {"data": str(REPO / "Data" / "sample" / "nuclei")}
    assert choice.modality == "microscopy" and choice.augment == "microscopy"
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("Using the synthetic offline sample Data/sample/nuclei (100 samples) in place of "
                              "kvasir-seg: kvasir-seg is not on disk and the download failed: could not download")
    assert not (tmp_path / "data" / "kvasir-seg").exists()


def test_load_or_sample_manual_smoke_and_no_download(tmp_path, monkeypatch, caplog):
    def no_network(*args, **kwargs):
        raise AssertionError("no download may be attempted")

    monkeypatch.setattr(datasets, "download", no_network)
    said = []
    choice = datasets.load_or_sample("drive", data_dir=tmp_path, log=said.append)  # registration needed
    assert not choice.real and choice.name == "sample/nuclei"
    assert "cannot be downloaded automatically" in said[0] and "grand-challenge" in said[0]
    choice = datasets.load_or_sample("busi", data_dir=tmp_path, allow_download=False, log=said.append)
    assert choice.name == "sample/ultrasound" and len(choice.samples) == 120 and choice.augment == "ultrasound"
    assert {s.label for s in choice.samples} == {"benign", "malignant", "normal"}
    assert said[1].endswith("busi is not under " + str(tmp_path) + " and allow_download=False.")
    make_busi(tmp_path / "busi")
    choice = datasets.load_or_sample("busi", data_dir=tmp_path, smoke=True, fallback="nuclei", log=said.append)
    assert choice.name == "sample/nuclei" and said[2].endswith("in place of busi: smoke run.")
    with caplog.at_level("INFO", logger="Functions"):  # without log=: one record on the Functions logger
        datasets.load_or_sample("busi", data_dir=tmp_path, smoke=True)
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "smoke run" in caplog.records[0].message
    with pytest.raises(UserError, match="fallback='cells'"):
        datasets.load_or_sample("busi", data_dir=tmp_path, fallback="cells")


# ----------------------------------------------------------------------------- the real data
@pytest.mark.realdata
def test_real_dsb2018_through_the_registry():
    if not SHARED_DSB.is_dir():
        pytest.skip(f"{SHARED_DSB} not found")
    samples = datasets.load("dsb2018", data_dir=SHARED_DSB)
    assert len(samples) == 664
    assert len(datasets.load("dsb2018", data_dir=SHARED_DSB.parent)) == 664
    image, mask = load_sample(samples[0])
    assert image.ndim == 3 and mask.shape == image.shape[:2] and mask.max() == 1
