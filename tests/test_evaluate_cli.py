"""``python -m Functions evaluate --masks DIR --predictions DIR``: pairing, thresholds, CSV, errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from Functions.metrics import segmentation as M
from Functions.cli import main
from Functions.commands.evaluate import prediction_to_mask

COLUMNS = ["image", "dice", "iou", "precision", "recall", "specificity", "pixel_accuracy",
           "boundary_f1", "hd95", "assd"]


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def folders(tmp_path):
    """masks/ (0/255 PNG) and predictions/ in three storage formats; returns (root, truths, predictions)."""
    masks, preds = tmp_path / "masks", tmp_path / "preds"
    masks.mkdir()
    preds.mkdir()
    shape = (40, 48)
    truths, guesses = {}, {}
    # a: prediction stored as a 0/1 PNG (taken as is)
    t, p = disc(shape, 20, 24, 10), disc(shape, 21, 26, 9)
    cv2.imwrite(str(masks / "a.png"), t.astype(np.uint8) * 255)
    cv2.imwrite(str(preds / "a.png"), p.astype(np.uint8))
    truths["a"], guesses["a"] = t, p
    # b: 8-bit probabilities; 127 is background and 128 foreground
    t = disc(shape, 15, 15, 8)
    prob = np.where(disc(shape, 16, 16, 8), 128, 127).astype(np.uint8)
    prob[:3, :3] = 255
    prob[-3:, -3:] = 0
    cv2.imwrite(str(masks / "b.png"), t.astype(np.uint8) * 255)
    cv2.imwrite(str(preds / "b.png"), prob)
    truths["b"], guesses["b"] = t, prob >= 128
    # c: a different extension for the prediction (paired by stem), mask as 0/1 TIFF
    t, p = disc(shape, 25, 30, 6), disc(shape, 10, 10, 4)
    cv2.imwrite(str(masks / "c.tif"), t.astype(np.uint8))
    cv2.imwrite(str(preds / "c.bmp"), p.astype(np.uint8) * 255)
    truths["c"], guesses["c"] = t, p
    (preds / "extra.png").write_bytes((preds / "a.png").read_bytes())  # no mask: ignored
    (masks / "notes.txt").write_text("not an image")
    return tmp_path, truths, guesses


def run_cli(*args) -> int:
    return main(["evaluate", *map(str, args)])


def test_csv_rows_equal_library_values(folders, capsys):
    root, truths, guesses = folders
    out = root / "res" / "metrics.csv"
    assert run_cli("--masks", root / "masks", "--predictions", root / "preds", "--out", out) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    assert list(df["image"]) == ["a", "b", "c"]
    for _, row in df.iterrows():
        ref = M.binary_metrics(truths[row["image"]], guesses[row["image"]])
        for col in COLUMNS[1:]:
            assert row[col] == pytest.approx(ref[col], abs=1e-12), (row["image"], col)
    # the 127/128 rule: the prediction of b is the shifted disc plus the bright corner only
    assert df.loc[1, "precision"] == pytest.approx(M.precision(truths["b"], guesses["b"]))
    assert 0.5 < df.loc[1, "dice"] < 1
    printed = capsys.readouterr()
    assert "3 image(s)" in printed.out and "mean" in printed.out and "hd95" in printed.out
    assert str(out) in printed.out
    assert "1 prediction(s) without a mask" in printed.err


def test_tolerance_changes_boundary_f1(folders):
    root, truths, guesses = folders
    o1, o2 = root / "t0.csv", root / "t5.csv"
    run_cli("--masks", root / "masks", "--predictions", root / "preds", "--tolerance", 0, "--out", o1)
    run_cli("--masks", root / "masks", "--predictions", root / "preds", "--tolerance", 5, "--out", o2)
    f0, f5 = pd.read_csv(o1)["boundary_f1"], pd.read_csv(o2)["boundary_f1"]
    assert f0[0] == pytest.approx(M.boundary_f1(truths["a"], guesses["a"], tolerance=0))
    assert (f5 >= f0).all() and f5[0] > f0[0]


def test_spacing_scales_distances(folders):
    root, truths, guesses = folders
    o1 = root / "px.csv"
    o2 = root / "mm.csv"
    run_cli("--masks", root / "masks", "--predictions", root / "preds", "--out", o1)
    run_cli("--masks", root / "masks", "--predictions", root / "preds", "--spacing", 0.5, "--tolerance", 1,
            "--out", o2)
    px, mm = pd.read_csv(o1), pd.read_csv(o2)
    np.testing.assert_allclose(mm["hd95"], px["hd95"] / 2, atol=1e-12)
    np.testing.assert_allclose(mm["boundary_f1"], px["boundary_f1"], atol=1e-12)  # 1 mm = 2 px


def test_missing_prediction_is_a_user_error(folders, capsys):
    root, _, _ = folders
    (root / "preds" / "c.bmp").unlink()
    assert run_cli("--masks", root / "masks", "--predictions", root / "preds", "--out", root / "x.csv") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "c.tif" in err and "Traceback" not in err
    assert not (root / "x.csv").exists()


def test_size_mismatch_is_a_user_error(folders, capsys):
    root, _, _ = folders
    cv2.imwrite(str(root / "preds" / "a.png"), np.zeros((40, 47), np.uint8))
    assert run_cli("--masks", root / "masks", "--predictions", root / "preds", "--out", root / "x.csv") == 2
    err = capsys.readouterr().err
    assert "size mismatch" in err and "a.png" in err and "48x40" in err and "47x40" in err


def test_existing_out_is_never_overwritten(folders, capsys):
    root, _, _ = folders
    out = root / "metrics.csv"
    out.write_text("keep me")
    assert run_cli("--masks", root / "masks", "--predictions", root / "preds", "--out", out) == 2
    assert out.read_text() == "keep me"
    err = capsys.readouterr().err
    assert "already exists" in err and "metrics-1.csv" in err


def test_default_out_is_numbered(folders, monkeypatch):
    root, _, _ = folders
    monkeypatch.chdir(root)
    assert run_cli("--masks", "masks", "--predictions", "preds") == 0
    assert run_cli("--masks", "masks", "--predictions", "preds") == 0
    assert (root / "metrics.csv").is_file() and (root / "metrics-1.csv").is_file()
    assert pd.read_csv(root / "metrics.csv").equals(pd.read_csv(root / "metrics-1.csv"))


def test_bad_arguments(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(tmp_path / "m" / "x.png"), np.zeros((4, 4), np.uint8))
    assert run_cli("--masks", tmp_path / "m") == 2
    assert "--predictions" in capsys.readouterr().err
    assert run_cli("--masks", tmp_path / "m", "--predictions", tmp_path / "nope") == 2
    assert "is not a folder" in capsys.readouterr().err
    assert run_cli("--masks", tmp_path / "m", "--predictions", tmp_path / "empty") == 2
    assert "no image files" in capsys.readouterr().err
    assert run_cli("--masks", tmp_path / "m", "--predictions", tmp_path / "m", "--tolerance", -1) == 2
    assert "--tolerance" in capsys.readouterr().err


def test_empty_prediction_gives_inf_distances(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "p").mkdir()
    t = disc((20, 20), 10, 10, 5)
    cv2.imwrite(str(tmp_path / "m" / "x.png"), t.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / "p" / "x.png"), np.zeros((20, 20), np.uint8))
    cv2.imwrite(str(tmp_path / "m" / "y.png"), t.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / "p" / "y.png"), t.astype(np.uint8) * 255)
    assert run_cli("--masks", tmp_path / "m", "--predictions", tmp_path / "p", "--out", tmp_path / "o.csv") == 0
    df = pd.read_csv(tmp_path / "o.csv")
    assert math.isinf(df.loc[0, "hd95"]) and df.loc[0, "dice"] == 0.0
    assert df.loc[1, "dice"] == 1.0 and df.loc[1, "hd95"] == 0.0
    assert "1 image(s) have an empty mask or prediction" in capsys.readouterr().err


def test_prediction_threshold_rule():
    assert prediction_to_mask(np.array([[0, 1]], np.uint8)).tolist() == [[False, True]]
    assert prediction_to_mask(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[False, False, True, True]]
    assert prediction_to_mask(np.array([[2, 100]], np.uint8)).tolist() == [[False, False]]  # low probabilities
    assert prediction_to_mask(np.array([[200, 40000]], np.uint16)).tolist() == [[False, True]]
    assert prediction_to_mask(np.array([[0.49, 0.5]], np.float32)).tolist() == [[False, True]]
