"""Bad input to train, predict, evaluate --run and compare.

Each must give one `error:` line naming the culprit and the fix, exit status 2, no traceback, and leave
existing files untouched.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from Functions.cli import main
from helpers import cli_fails


def fails(capsys, argv, *needles):
    return cli_fails(capsys, argv, *needles)


def write_pairs(root, n=4, size=32, names=None):
    from helpers import write_blob_pairs

    return write_blob_pairs(root, size=size, names=names or [f"case_{k}" for k in range(n)])


@pytest.fixture
def fake_run(tmp_path):
    """A folder that looks like a run (config.json, no model yet)."""
    run = tmp_path / "fake_run"
    run.mkdir()
    (run / "config.json").write_text('{"model": "unet", "epochs": 2, "data": "/nowhere"}')
    return run


@pytest.fixture
def not_a_model(tmp_path):
    path = tmp_path / "x.keras"
    path.write_text("this is a text file, not a model\n")
    return path


# ----------------------------------------------------------------------------- train
def test_train_missing_unpaired_and_corrupted_data(tmp_path, capsys):
    fails(capsys, ["train", "--data", str(tmp_path / "missing")], "missing", "--data")
    unpaired = write_pairs(tmp_path / "unpaired")
    (unpaired / "masks" / "case_3.png").unlink()
    fails(capsys, ["train", "--data", str(unpaired), "--out", str(tmp_path / "o1")], "case_3.png", "without a mask")
    corrupted = write_pairs(tmp_path / "corrupted")
    (corrupted / "images" / "case_2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    fails(capsys, ["train", "--data", str(corrupted), "--out", str(tmp_path / "o2")], "case_2.png", "corrupted")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.backend
def test_train_settings_the_model_cannot_take(tiny_pairs_dir, tmp_path, capsys):
    out = tmp_path / "o"
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--image-size", "100", "--out", str(out)],
          "--image-size 100", "96 or 112")
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--model", "resnet18", "--image-size", "32",
                   "--out", str(out)], "resnet18", "classifier")
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--model", "no_such_net", "--out", str(out)],
          "no_such_net")
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--model-option", "depht=3", "--image-size", "32",
                   "--out", str(out)], "depht")
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--monitor", "val_accuracy"], "--monitor val_accuracy")
    fails(capsys, ["train", "--val-fraction", "0.6", "--test-fraction", "0.5"], "--val-fraction")
    fails(capsys, ["train", "--lr", "0"], "--lr")
    fails(capsys, ["train", "--ema", "1.5"], "--ema", "momentum below 1")
    assert not out.exists()


def test_train_unknown_choice_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:          # argparse's own check, through the CLI's one-line error
        main(["train", "--keep", "worst"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: argument --keep: invalid choice: 'worst'") and "\n" not in err, err
    assert "'best', 'last'" in err


def test_train_never_overwrites_an_existing_folder(tiny_pairs_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    fails(capsys, ["train", "--data", str(tiny_pairs_dir), "--image-size", "32", "--out", str(out)],
          str(out), "already holds files")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_train_resume_errors(tmp_path, fake_run, capsys):
    fails(capsys, ["train", "--resume", str(tmp_path / "gone")], "gone", "not a folder")
    (tmp_path / "plain").mkdir()
    fails(capsys, ["train", "--resume", str(tmp_path / "plain")], "no config.json")
    fails(capsys, ["train", "--resume", str(fake_run), "--lr", "0.1"], "drop --lr")
    (fake_run / "metrics.json").write_text("{}")
    fails(capsys, ["train", "--resume", str(fake_run)], "already finished")


# ----------------------------------------------------------------------------- predict
def test_predict_bad_models(tmp_path, not_a_model, capsys):
    images = write_pairs(tmp_path / "d") / "images"
    out = tmp_path / "out"
    fails(capsys, ["predict", "--model", str(tmp_path / "none.keras"), "--images", str(images), "--out", str(out)],
          "none.keras", "does not exist")
    fails(capsys, ["predict", "--model", str(not_a_model), "--images", str(images), "--out", str(out)],
          "x.keras", "could not be loaded")
    txt = tmp_path / "weights.txt"
    txt.write_text("1 2 3")
    fails(capsys, ["predict", "--model", str(txt), "--images", str(images), "--out", str(out)], "weights.txt")
    fails(capsys, ["predict", "--model", str(tmp_path / "d"), "--images", str(images), "--out", str(out)],
          "without model.keras")
    assert not out.exists()


def test_predict_bad_images_and_outputs(tmp_path, not_a_model, capsys):
    out = tmp_path / "out"
    model = str(not_a_model)                 # image problems are found before the model is even loaded
    fails(capsys, ["predict", "--model", model, "--images", str(tmp_path / "nothing"), "--out", str(out)],
          "nothing", "does not exist")
    (tmp_path / "empty").mkdir()
    fails(capsys, ["predict", "--model", model, "--images", str(tmp_path / "empty"), "--out", str(out)],
          "no image files")
    images = write_pairs(tmp_path / "d", names=["a", "b", "c"]) / "images"
    (images / "b.png").write_bytes(b"not an image at all")
    fails(capsys, ["predict", "--model", model, "--images", str(images), "--out", str(out)], "b.png", "corrupted")
    (images / "b.png").unlink()
    cv2.imwrite(str(images / "a.jpg"), np.zeros((8, 8), np.uint8))
    fails(capsys, ["predict", "--model", model, "--images", str(images), "--out", str(out)], "a.jpg", "a.png")
    assert not out.exists()
    out.mkdir()
    (out / "keep.png").write_bytes(b"precious")
    fails(capsys, ["predict", "--model", model, "--images", str(images / "c.png"), "--out", str(out)],
          "already holds files")
    assert (out / "keep.png").read_bytes() == b"precious" and len(list(out.iterdir())) == 1
    fails(capsys, ["predict", "--model", model, "--images", str(images / "c.png"), "--out", str(tmp_path / "o2"),
                   "--threshold", "2"], "--threshold")


# ----------------------------------------------------------------------------- evaluate --run
def test_evaluate_run_errors(tmp_path, fake_run, capsys):
    fails(capsys, ["evaluate", "--run", str(tmp_path / "gone")], "gone", "not a folder")
    (tmp_path / "plain").mkdir()
    fails(capsys, ["evaluate", "--run", str(tmp_path / "plain")], "no config.json")
    fails(capsys, ["evaluate", "--run", str(fake_run)], "no model.keras")
    fails(capsys, ["evaluate", "--run", str(fake_run), "--predictions", str(tmp_path)], "--predictions")
    fails(capsys, ["evaluate", "--run", str(fake_run), "--data", "a", "--dataset", "b"], "not both")


# ----------------------------------------------------------------------------- compare
def test_compare_errors(tiny_pairs_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    fails(capsys, ["compare", "--models", "unet,nonet", "--data", str(tiny_pairs_dir), "--out", str(out)], "nonet")
    fails(capsys, ["compare", "--models", "unet,unet", "--data", str(tiny_pairs_dir), "--out", str(out)],
          "more than once")
    fails(capsys, ["compare", "--models", "unet", "--data", str(tmp_path / "missing"), "--out", str(out)], "missing")
    # 40x40 does not suit depth 4 (multiples of 16 needed): refused before anything is trained
    fails(capsys, ["compare", "--models", "unet,unet_plus_plus", "--data", str(tiny_pairs_dir), "--image-size", "40",
                   "--epochs", "1", "--out", str(out)], "--image-size 40")
    assert not out.exists()
    out.mkdir()
    (out / "old.csv").write_text("keep")
    fails(capsys, ["compare", "--models", "unet", "--data", str(tiny_pairs_dir), "--image-size", "32",
                   "--out", str(out)], "already holds files")
    assert (out / "old.csv").read_text() == "keep"


# ----------------------------------------------------------------------------- real processes
@pytest.mark.parametrize("argv,needle", [
    (["train", "--data", "{data}", "--image-size", "100", "--out", "{tmp}/o"], "--image-size 100"),
    (["predict", "--model", "{model}", "--images", "{data}/images", "--out", "{tmp}/p"], "could not be loaded"),
    (["evaluate", "--run", "{tmp}/nothing"], "not a folder"),
])
def test_subprocess_prints_one_line_and_no_traceback(argv, needle, tiny_pairs_dir, not_a_model, tmp_path):
    argv = [a.format(data=tiny_pairs_dir, tmp=tmp_path, model=not_a_model) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "Functions", *argv], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- fast, quiet failures
BACKENDS = ("keras", "tensorflow", "jax", "torch")


def run_cli_and_list_backends(argv, tmp_path, backend=None):
    """``python -m Functions ARGV`` in a fresh process.

    Returns (return code, stderr, backends imported by the end).  How long the answer takes: benchmarks/bounds.py.
    """
    import json

    report = tmp_path / "modules.json"
    code = ("import atexit, json, runpy, sys\n"
            f"atexit.register(lambda: open({str(report)!r}, 'w').write(json.dumps("
            f"[m for m in {BACKENDS!r} if m in sys.modules])))\n"
            f"sys.argv = ['Functions', *{list(argv)!r}]\n"
            "runpy.run_module('Functions', run_name='__main__', alter_sys=True)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MIP_VERBOSE")}
    if backend:
        env["KERAS_BACKEND"] = backend
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stderr, json.loads(report.read_text())


@pytest.mark.parametrize("argv,needle", [
    (["predict", "--model", "{tmp}/none.keras", "--images", "{tmp}/missing", "--out", "{tmp}/p"], "--images"),
    (["evaluate", "--run", "{tmp}/nothing"], "not a folder"),
    (["evaluate", "--masks", "{tmp}/missing", "--predictions", "{tmp}/p"], "--masks"),
    (["classify-predict", "--model", "{tmp}/none.keras", "--images", "{tmp}"], "--model"),
    (["benchmark", "--out", "{tmp}/taken.md"], "never overwritten"),
    (["benchmark", "--steps", "1"], "--steps"),
    (["download", "no-such-set"], "no-such-set"),
    (["architectures", "--image-size", "33"], "--image-size 33"),
    (["train", "--epochs", "many"], "--epochs"),
    (["train", "--no-such-flag"], "--no-such-flag"),
])
def test_bad_input_fails_fast_without_a_backend(argv, needle, tmp_path):
    """One `error:` line, status 2, and no Keras/TensorFlow/JAX/PyTorch import (what that saves in seconds:
    benchmarks/bounds.py)."""
    (tmp_path / "taken.md").write_text("keep")
    argv = [a.format(tmp=tmp_path) for a in argv]
    rc, err, imported = run_cli_and_list_backends(argv, tmp_path)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert imported == [], imported
    assert (tmp_path / "taken.md").read_text() == "keep"


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_train_missing_data_is_one_fast_line_on_every_backend(backend, tmp_path):
    """The issue's check: `train --data /nonexistent` prints exactly one line and starts no backend."""
    rc, err, imported = run_cli_and_list_backends(
        ["train", "--data", str(tmp_path / "nonexistent")], tmp_path, backend=backend)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and "nonexistent" in err, err
    assert imported == [], imported


def test_noise_lines_are_recognised_and_real_ones_kept():
    from Functions.base.quiet import filter_lines, is_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795929054.370841   14637 port.cc:153] oneDNN custom operations are on. You may see slightly "
        "different numerical results due to floating-point round-off errors from different computation orders.",
        "I0000 00:00:1795929054.371165   14637 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.",
        "E0000 00:00:1795928867.352012   11681 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
    ]
    real = [
        "/x/keras/src/models/functional.py:237: UserWarning: The structure of `inputs` doesn't match",
        "E0000 00:00:1795928867.352012   11681 conv_ops.cc:12] Conv2D failed: out of memory",
        "W0000 00:00:1795928867.352012   11681 op_kernel.cc:1857] OP_REQUIRES failed at save_restore.cc",
        "Traceback (most recent call last):",
    ]
    assert all(is_noise(line) for line in noise)
    assert not any(is_noise(line) for line in real)
    assert filter_lines("\n".join(noise + real) + "\n") == "\n".join(real) + "\n"


def test_filtered_stderr_keeps_real_lines_from_cpp_and_python(tmp_path):
    code = ("import os, sys\n"
            "from Functions.base.quiet import FilteredStderr\n"
            "with FilteredStderr():\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
            "    os.write(2, b'I0000 00:00:1.5   7 port.cc:153] oneDNN custom operations are on.\\n')\n"
            "    os.write(2, b'E0000 00:00:1.5   7 conv_ops.cc:12] a real error\\n')\n"
            "    print('a python warning', file=sys.stderr)\n"
            "print('after', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == ["E0000 00:00:1.5   7 conv_ops.cc:12] a real error", "a python warning",
                                        "after"]


def test_backend_import_is_silent_but_real_warnings_show(tmp_path):
    """The default backend imported behind the hook prints nothing of its own; a warning after it still shows."""
    code = ("from Functions.base import quiet\n"
            "quiet.install(verbose=False)\n"
            "import keras\n"
            "keras.ops.add(1.0, 2.0)\n"
            "import warnings\n"
            "warnings.warn('a real warning')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MIP_VERBOSE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["<string>:6: UserWarning: a real warning"], proc.stderr


def test_verbose_leaves_the_backend_lines_alone(monkeypatch, capsys):
    from Functions.base import quiet

    was = quiet.installed()
    try:
        quiet.uninstall()
        assert quiet.install(verbose=True) is False and not quiet.installed()
        monkeypatch.setenv("MIP_VERBOSE", "1")
        assert quiet.install() is False and not quiet.installed()
        monkeypatch.setenv("MIP_VERBOSE", "0")
        assert quiet.install() is True and quiet.install() is True and quiet.installed()
        quiet.uninstall()
        # the global flag comes before the command; the command's own --verbose is unaffected
        monkeypatch.delenv("MIP_VERBOSE")
        assert main(["--verbose", "architectures", "--image-size", "33"]) == 2
        assert not quiet.installed()
        assert "--image-size 33" in capsys.readouterr().err
        assert main(["architectures", "--image-size", "33"]) == 2 and quiet.installed()
    finally:
        quiet.uninstall()
        if was:
            quiet.install(verbose=False)


def test_evaluate_run_takes_the_runs_own_tta_unless_told(tmp_path):
    """``evaluate --run`` repeats the run's test figure: no flag means the run's ``tta``; the flags override it."""
    import json

    from Functions.cli import build_parser
    from Functions.commands.evaluate import run_tta

    on, off, broken = tmp_path / "on", tmp_path / "off", tmp_path / "broken"
    for folder, text in ((on, json.dumps({"tta": True})), (off, json.dumps({"tta": False})), (broken, "{not json")):
        folder.mkdir()
        (folder / "config.json").write_text(text)
    assert run_tta(on) is True and run_tta(off) is False
    assert run_tta(broken) is False and run_tta(tmp_path / "missing") is False
    parser = build_parser()
    assert parser.parse_args(["evaluate", "--run", str(on)]).tta is None          # None: the run decides
    assert parser.parse_args(["evaluate", "--run", str(on), "--no-tta"]).tta is False
    assert parser.parse_args(["evaluate", "--run", str(off), "--tta"]).tta is True
