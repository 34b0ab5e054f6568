"""3-D training and inference end to end on tiny synthetic volumes: run folder, NIfTI predictions, resume, CLI.

The whole file takes about 35 s on the 2-core CPU when it is otherwise idle (each test under 10 s; the CLI
fixture trains once, 10 s); under a load average of 14 it took 2.5 min.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from Functions import cli
from Functions.base.errors import UserError
from Functions.data import synthetic as S
from Functions.data import volumes as V
from Functions.engine.volumes import VolumeConfig, resume_volume_config, train_volumes

JIT = keras.backend.backend() == "jax"


@pytest.fixture(scope="module")
def volumes_dir(tmp_path_factory):
    """Six sample-like volumes (32x64x64, 3 x 1.5 x 1.5 mm, LPS) in the Decathlon layout."""
    out = tmp_path_factory.mktemp("vols")
    S.write_volumes(out, n=6, seed=3)
    return out / "volumes"


def tiny(volumes_dir, out, **kw):
    values = dict(data=str(volumes_dir), epochs=2, batch_size=2, out=str(out), patch_size=[16, 32, 32],
                  patches_per_volume=1, model_options={"depth": 2, "base_filters": 4}, jit_compile=JIT,
                  run_eagerly=not JIT, verbose=0, workers=1, seed=5, val_fraction=0.2, test_fraction=0.2)
    values.update(kw)
    return VolumeConfig(**values)


def test_synthetic_volume_sample_is_deterministic_and_well_formed(volumes_dir):
    a_img, a_lab = S.make_volume(2, seed=3)
    b_img, b_lab = S.make_volume(2, seed=3)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.shape == S.VOLUME_SHAPE and a_img.dtype == np.int16 and a_lab.dtype == np.uint8
    assert 500 < a_lab.sum() < 0.2 * a_lab.size
    assert a_img[a_lab == 1].mean() > a_img[(a_lab == 0) & (a_img > -500)].mean() + 50      # organ brighter
    ds = V.read_decathlon(volumes_dir)
    assert len(ds.cases) == 6 and ds.modality == {0: "CT"} and ds.labels == {0: "background", 1: "organ"}
    img = nib.load(str(ds.cases[2].image))
    assert img.header.get_zooms() == (1.5, 1.5, 3.0) and nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.header.get_xyzt_units()[0] == "mm" and int(img.header["sform_code"]) == 1
    # the file stores (i, j, k) = (W, H, D): reading it back gives the generator's (D, H, W) arrays
    np.testing.assert_array_equal(V.read_volume(ds.cases[2].image, canonical=False).array[..., 0], a_img)


def test_shipped_volume_sample_matches_the_generator():
    from Functions.base.paths import sample_dir

    ds = V.read_decathlon(sample_dir("volumes"))
    assert len(ds.cases) == S.DEFAULT_N_VOLUMES
    image, label = S.make_volume(7)
    case = ds.cases[7]
    stored = V.read_volume(case.image, canonical=False).array[..., 0]
    stored_label = V.read_volume(case.label, label=True, canonical=False).array[..., 0]
    # another CPU may round a transcendental function differently in the last bit: allow 1 HU on a few voxels
    assert np.abs(stored - image).max() <= 1 and np.mean(stored != image) < 1e-3
    assert np.mean(stored_label != label) < 1e-3 and stored_label.sum() > 500


def test_train_volumes_writes_a_scored_run_with_aligned_nifti_predictions(volumes_dir, tmp_path):
    res = train_volumes(tiny(volumes_dir, tmp_path / "run", epochs=1))
    run = res["run_dir"]
    for name in ("config.json", "split.json", "model.keras", "history.csv", "metrics.json", "test_metrics.csv",
                 "curves.png", "predictions.png", "report.md"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dims"] == 3 and cfg["patch_size"] == [16, 32, 32] and cfg["intensity"] == "ct"
    assert cfg["target_spacing"] == [3.0, 1.5, 1.5] and cfg["num_classes"] == 1
    split = json.loads((run / "split.json").read_text())
    assert sorted(len(split[k]) for k in ("train", "val", "test")) == [1, 1, 4]   # by volume
    assert split["split"] == "random (seeded)"                                 # the sample has no imagesTs/
    assert not set(split["train"]) & set(split["test"])
    table = pd.read_csv(run / "test_metrics.csv")
    assert list(table["id"]) == [V.volume_stem(p) for p in split["test"]]
    assert {"dice", "iou", "hd95", "assd"} <= set(table.columns) and table["spacing_mm"][0] == "3x1.5x1.5"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["unit"] == "mm" and 0 <= metrics["dice"] <= 1 and metrics["epochs_trained"] == 1
    # the finish step (engine/finish.py) writes what finish_volumes wrote before issue 36 (keys, columns, report
    # sections read from a run of that code); config.json holds no 2-D setting
    assert set(metrics) == {"dice", "iou", "precision", "recall", "specificity", "pixel_accuracy", "boundary_f1",
                            "hausdorff", "hd95", "assd", "split", "n_images", "unit", "epochs_trained",
                            "train_seconds", "parameters", "peak_rss_mb", "monitor", "best_epoch", "best_value",
                            "keep", "kept_epoch", "final_learning_rate", "summary"}
    assert list(table.columns) == ["id", "dice", "iou", "precision", "recall", "specificity", "pixel_accuracy",
                                   "boundary_f1", "hausdorff", "hd95", "assd", "spacing_mm"]
    assert [line for line in (run / "report.md").read_text().splitlines() if line.startswith("## ")] == [
        "## Settings", "## Data", "## Metrics", "## Figures"]
    assert not {"image_size", "normalization", "patch_sampling", "task", "progress_every"} & set(cfg)
    pred_file = run / "predictions" / f"{table['id'][0]}.nii.gz"
    src = nib.load(split["test"][0])
    pred = nib.load(str(pred_file))
    np.testing.assert_array_equal(pred.affine, src.affine)
    assert pred.shape == src.shape and pred.get_data_dtype() == np.uint8
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 16, 32, 32, 1)


def test_resume_continues_an_interrupted_volume_run(volumes_dir, tmp_path):
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    from dataclasses import asdict

    from Functions.base.runs import read_run_settings
    from Functions.inference.volumes import VolumeSettings

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_volumes(tiny(volumes_dir, out, overlap=0.0), callbacks=[Stop()])
    assert not (out / "metrics.json").exists()
    cfg = resume_volume_config(out)
    assert isinstance(cfg, VolumeConfig) and cfg.patch_size == [16, 32, 32]
    # --overlap 0 is a valid setting: the resumed run scores (and predict / evaluate tile) with it, not with 0.5
    assert cfg.overlap == 0.0
    assert VolumeSettings.from_config(asdict(cfg)).overlap == 0.0
    assert VolumeSettings.from_config(read_run_settings(out)).overlap == 0.0
    assert VolumeSettings.from_config({"patch_size": [16, 32, 32]}).overlap == 0.5        # only a missing one
    res = train_volumes(cfg, resume=True)
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [0, 1] and (out / "metrics.json").is_file()
    assert res["metrics"]["epochs_trained"] == 2


def test_volume_settings_errors_name_the_setting(volumes_dir, tmp_path):
    with pytest.raises(UserError, match="patch_size must be three sides"):
        train_volumes(tiny(volumes_dir, tmp_path / "a", patch_size=[16, 32]))
    with pytest.raises(UserError, match="2-D model"):
        train_volumes(tiny(volumes_dir, tmp_path / "b", model="unet"))
    with pytest.raises(UserError, match="not divisible"):
        train_volumes(tiny(volumes_dir, tmp_path / "c", patch_size=[18, 32, 32]))
    assert not any((tmp_path / n).exists() for n in "abc")


# ----------------------------------------------------------------------------- command line
CLI_TINY = ["--epochs", "1", "--patch-size", "16", "32", "32", "--patches-per-volume", "1", "--model-option",
            "depth=2", "--model-option", "base_filters=4", "--verbose", "0", "--workers", "1",
            "--val-fraction", "0.2", "--test-fraction", "0.2"]


def run_cli(*argv) -> subprocess.CompletedProcess:
    """``python -m Functions ARGV`` in a NEW process (nothing of this test process imported there)."""
    code = str(Path(__file__).resolve().parents[1] / "Code")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "Functions", *argv], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def cli_run(volumes_dir, tmp_path_factory):
    """``train`` on a Decathlon folder without --dims, in its own process: detected as volumes, 3-D defaults
    for untouched flags."""
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("train", "--data", str(volumes_dir), "--out", str(out), *CLI_TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_a_3d_run_predicts_and_evaluates_in_new_processes(cli_run, volumes_dir, tmp_path):
    # the run's model.keras names BCEDiceLoss and the U-Net blocks: a fresh process must register them before
    # loading (it stopped on "Could not locate class 'BCEDiceLoss'" when only these commands were run)
    case = V.read_decathlon(volumes_dir).cases[1]
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "vol.nii.gz").write_bytes(case.image.read_bytes())
    proc = run_cli("predict", "--model", str(cli_run), "--images", str(inputs), "--out", str(tmp_path / "pred"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    written, source = nib.load(str(tmp_path / "pred" / "vol.nii.gz")), nib.load(str(case.image))
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.shape == source.shape and set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
    proc = run_cli("evaluate", "--run", str(cli_run), "--split", "test", "--out", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "ev" / "metrics.csv")
    split = json.loads((cli_run / "split.json").read_text())
    assert list(table["id"]) == [V.volume_stem(p) for p in split["test"]]
    assert table["dice"].between(0, 1).all() and table["iou"].between(0, 1).all()
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert 0 <= summary["dice"] <= 1 and summary["dice"] == pytest.approx(table["dice"].mean())


def test_cli_train_detects_volumes_and_uses_3d_defaults(cli_run):
    cfg = json.loads((cli_run / "config.json").read_text())
    assert cfg["dims"] == 3 and cfg["model"] == "unet3d" and cfg["augment"] == "3d" and cfg["batch_size"] == 2
    assert cfg["patch_size"] == [16, 32, 32] and cfg["epochs"] == 1
    report = (cli_run / "report.md").read_text()
    assert "python -m Functions train" in report and "--dims 3" in report and "--patch-size 16 32 32" in report
    assert (cli_run / "metrics.json").is_file()


def test_cli_predict_nifti_and_dicom_series_write_aligned_nifti(cli_run, volumes_dir, tmp_path, capsys):
    from test_volumes import _write_series

    case = V.read_decathlon(volumes_dir).cases[0]
    image, _ = S.make_volume(0, seed=3)
    _write_series(tmp_path / "inputs" / "ct_series", (image.astype(np.int32) + 1024).astype(np.uint16),
                  spacing=(1.5, 1.5), dz=3.0, slope=1.0, intercept=-1024.0)
    nifti_dir = tmp_path / "inputs"
    (nifti_dir / "case.nii.gz").write_bytes(case.image.read_bytes())
    (nifti_dir / "._case.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    out = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(cli_run), "--images", str(nifti_dir), "--out", str(out)]) == 0
    assert "2 volume(s)" in capsys.readouterr().out
    table = pd.read_csv(out / "predictions.csv")
    assert sorted(table["prediction"]) == ["case.nii.gz", "ct_series.nii.gz"]
    written = nib.load(str(out / "case.nii.gz"))
    np.testing.assert_array_equal(written.affine, nib.load(str(case.image)).affine)
    assert written.shape == nib.load(str(case.image)).shape
    series = nib.load(str(out / "ct_series.nii.gz"))
    dicom = V.read_dicom_series(tmp_path / "inputs" / "ct_series")
    np.testing.assert_allclose(series.affine, dicom.affine, atol=1e-4)
    assert series.shape == (dicom.shape[2], dicom.shape[1], dicom.shape[0])
    assert cli.main(["predict", "--model", str(cli_run), "--images", str(nifti_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_evaluate_run_scores_each_volume_in_mm(cli_run, capsys):
    assert cli.main(["evaluate", "--run", str(cli_run), "--split", "val"]) == 0
    printed = capsys.readouterr().out
    assert "volume(s)" in printed and "mm" in printed
    table = pd.read_csv(cli_run / "evaluation-val" / "metrics.csv")
    split = json.loads((cli_run / "split.json").read_text())
    assert len(table) == len(split["val"]) and {"dice", "hd95", "assd"} <= set(table.columns)
    assert (cli_run / "evaluation-val" / "predictions").is_dir()


def test_cli_report_of_a_3d_run_is_in_mm_and_shows_the_worst_volumes(cli_run, tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(cli_run), "--split", "test", "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "worst.png").stat().st_size > 1000          # three planes of the lowest-Dice volume
    assert cli.main(["report", str(cli_run), "--evaluation", str(tmp_path / "ev"), "--out",
                     str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "distances in mm" in text and "| hd95 (mm) |" in text
    table = pd.read_csv(tmp_path / "ev" / "metrics.csv")
    assert f"| {table['id'][table['dice'].idxmin()]} | {table['dice'].min():.4f} |" in text
    assert "![the lowest-Dice test cases at native resolution](ev/worst.png)" in text
    assert "volumes with masks" in text and "HD95 and ASSD are in pixels" not in text
    assert "Export covers 2-D runs" in text


def test_cli_errors_are_one_line_naming_the_file_or_flag(cli_run, volumes_dir, tmp_path, capsys):
    assert cli.main(["train", "--dims", "3", "--model", "resunet", "--data", str(volumes_dir),
                     "--out", str(tmp_path / "r"), *CLI_TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model resunet is a 2-D model") and "\n" not in err
    four_d = tmp_path / "fourd.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4)), str(four_d))
    assert cli.main(["predict", "--model", str(cli_run), "--images", str(four_d), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "fourd.nii.gz holds a 4-D array" in err and "\n" not in err


# ----------------------------------------------------------------------------- one foreground setting, no silent flags
def test_foreground_fraction_sets_what_the_3d_patch_sampler_draws():
    from types import SimpleNamespace

    from Functions.engine.volumes import VOLUMES

    image = np.zeros((32, 32, 32, 1), np.float32)
    label = np.zeros((32, 32, 32, 1), np.uint8)
    label[2:5, 3:6, 25:28] = 1                              # 27 labelled voxels of 32768
    case = SimpleNamespace(id="v")
    data = {"train": ([image] * 2, [label] * 2, [case] * 2), "val": ([image], [label], [case]), "patch": (8, 8, 8)}
    model = SimpleNamespace(outputs=[None])

    def foreground_patches(fraction: float) -> int:
        config = VolumeConfig(foreground_fraction=fraction, patches_per_volume=20, augment=None, seed=4)
        train, _ = VOLUMES.batches(config, data, model, batch_size=8)
        return sum(int((y.reshape(len(y), -1) > 0).any(axis=1).sum()) for _, y in (train[b] for b in range(len(train))))

    everywhere, centred = foreground_patches(0.0), foreground_patches(1.0)
    assert centred == 40                                   # every patch centred on a labelled voxel holds one
    assert everywhere < 20                                 # a random 8^3 patch reaches the 3^3 block rarely


def test_old_run_config_with_foreground_probability_still_loads(tmp_path):
    cfg = json.loads(VolumeConfig(foreground_fraction=0.25).to_json())
    cfg["foreground_probability"] = cfg.pop("foreground_fraction")    # how runs before the shared field saved it
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = VolumeConfig.load(tmp_path)
    assert loaded.foreground_fraction == 0.25 and not hasattr(loaded, "foreground_probability")


@pytest.mark.parametrize("flags,flag", [(["--image-size", "64"], "--image-size"), (["--clahe"], "--clahe"),
                                        (["--patches-per-image", "4"], "--patches-per-image"),
                                        (["--normalization", "minmax"], "--normalization")])
def test_cli_refuses_a_2d_flag_that_3d_runs_would_ignore(volumes_dir, tmp_path, capsys, flags, flag):
    out = tmp_path / "run"
    assert cli.main(["train", "--dims", "3", "--data", str(volumes_dir), "--out", str(out), *CLI_TINY, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag} is a 2-D setting that 3-D runs do not read") and "\n" not in err
    assert not out.exists()


def test_cli_evaluate_run_repeats_the_runs_own_tta(cli_run, tmp_path, capsys):
    """A 3-D run trained with ``tta``: ``evaluate --run`` with no flag scores as the run did (flips on)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cli_run, run, ignore=shutil.ignore_patterns("evaluation-*", "predictions"))
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "tta": True}))
    scores = {}
    for name, flags in (("default", []), ("tta", ["--tta"]), ("plain", ["--no-tta"])):
        capsys.readouterr()
        assert cli.main(["evaluate", "--run", str(run), "--split", "test", "--out", str(tmp_path / name),
                         *flags]) == 0
        printed = capsys.readouterr().out
        assert ("scored its test split with test-time flips" in printed) == (name == "default"), name
        scores[name] = pd.read_csv(tmp_path / name / "metrics.csv")["dice"].to_numpy()
    np.testing.assert_array_equal(scores["default"], scores["tta"])
