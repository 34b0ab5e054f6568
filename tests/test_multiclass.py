"""Multi-class semantic segmentation: class masks, class maps, losses with class weights,
macro/micro metrics with the empty-class convention, colour legends."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

import Functions.losses as L
from Functions.base.errors import UserError
from Functions.data.classes import (apply_class_map, balanced_class_weights, check_binary_mask, class_pixel_counts,
                                    infer_class_map, parse_class_map, read_class_mask, read_raw_mask)
from Functions.metrics.segmentation import confusion_matrix, macro_micro, multiclass_metrics


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# ----------------------------------------------------------------------------- class maps
def test_parse_class_map():
    assert parse_class_map("0:0,128:1,255:2") == {0: 0, 128: 1, 255: 2}
    assert parse_class_map(None) is None
    for bad in ("0:0,128", "0:1,128:2", "0:0,255:2", "a:b"):
        with pytest.raises(UserError):
            parse_class_map(bad)


def test_infer_class_map_from_values(tmp_path):
    a = np.zeros((8, 8), np.uint8)
    a[:2] = 128
    b = np.zeros((8, 8), np.uint8)
    b[:2] = 255
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "b.png"), b)
    assert infer_class_map([tmp_path / "b.png"]) is None  # 0/255: binary
    mapping = infer_class_map([tmp_path / "a.png", tmp_path / "b.png"])
    assert mapping == {0: 0, 128: 1, 255: 2}
    got = read_class_mask(tmp_path / "a.png", mapping, 3)
    assert got.dtype == np.uint8 and set(np.unique(got)) == {0, 1}
    # many values (an instance label map) stay binary, as before
    many = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "many.png"), many)
    assert infer_class_map([tmp_path / "many.png"]) is None
    # three common values plus a rare one (anti-aliasing) are ambiguous: one line asking for --class-map
    big = np.zeros((200, 100), np.uint8)
    big[:50] = 128
    big[50:100] = 255
    big[0, 0] = 3  # 1 pixel in 20000 < 0.01 %
    cv2.imwrite(str(tmp_path / "rare.png"), big)
    with pytest.raises(UserError, match="--class-map") as err:
        infer_class_map([tmp_path / "rare.png"])
    assert "\n" not in str(err.value)


def test_palette_png_indices_are_classes(tmp_path):
    from PIL import Image

    idx = np.zeros((6, 6), np.uint8)
    idx[0:2, :] = 2
    idx[4:, :] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_raw_mask(tmp_path / "p.png"), idx)


def test_class_value_above_k_is_one_error_naming_the_file(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[0, 0] = 3
    cv2.imwrite(str(tmp_path / "bad.png"), m)
    with pytest.raises(UserError) as err:
        read_class_mask(tmp_path / "bad.png", None, 3)
    msg = str(err.value)
    assert "bad.png" in msg and "class 3" in msg and "--num-classes 4" in msg and "\n" not in msg
    with pytest.raises(UserError, match="not in the class map"):
        apply_class_map(np.array([[0, 7]]), {0: 0, 128: 1}, "x.png", 2)


def test_label_map_where_binary_expected_is_one_error():
    check_binary_mask(np.array([[0, 255]]), "ok.png")
    with pytest.raises(UserError) as err:
        check_binary_mask(np.array([[0, 1, 2]]), "labels.png")
    msg = str(err.value)
    assert "labels.png" in msg and "--num-classes 3" in msg and "\n" not in msg


def test_class_weights_helpers():
    counts = class_pixel_counts([np.array([[0, 0, 1], [0, 2, 2]])], 3)
    np.testing.assert_array_equal(counts, [3, 1, 2])
    np.testing.assert_allclose(balanced_class_weights(counts), [6 / 9, 2.0, 1.0])


# ----------------------------------------------------------------------------- losses
T3 = np.array([[0, 1], [2, 2]], np.int32).reshape(1, 2, 2)
P3 = np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
               [[0.2, 0.2, 0.6], [0.25, 0.25, 0.5]]], np.float32).reshape(1, 2, 2, 3)


def test_sparse_categorical_crossentropy_by_hand():
    want = -np.mean(np.log([0.7, 0.8, 0.6, 0.5]))
    assert float(_np(L.categorical_crossentropy(T3, P3))[0]) == pytest.approx(want, rel=1e-5)
    onehot = np.eye(3, dtype=np.float32)[T3]
    assert float(_np(L.categorical_crossentropy(onehot, P3))[0]) == pytest.approx(want, rel=1e-5)
    w = [1.0, 2.0, 0.5]
    want_w = -np.mean([1 * np.log(0.7), 2 * np.log(0.8), 0.5 * np.log(0.6), 0.5 * np.log(0.5)])
    assert float(_np(L.categorical_crossentropy(T3, P3, class_weights=w))[0]) == pytest.approx(want_w, rel=1e-5)
    assert float(_np(L.get_loss("sparse_categorical_crossentropy", class_weights=w)(T3, P3))) == pytest.approx(
        want_w, rel=1e-5)


def test_weighted_dice_and_focal_by_hand():
    onehot = np.eye(3, dtype=np.float32)[T3][0]
    p = P3[0]
    per = [(2 * (onehot[..., c] * p[..., c]).sum() + 1) / (onehot[..., c].sum() + p[..., c].sum() + 1)
           for c in range(3)]
    w = np.array([0.0, 1.0, 3.0])
    want = 1 - (per[1] * 1 + per[2] * 3) / 4
    got = float(_np(L.dice_loss(T3, P3, class_weights=w.tolist()))[0])
    assert got == pytest.approx(want, rel=1e-5)
    # focal with gamma 0 and weights = weighted cross-entropy
    f = float(_np(L.focal_loss(T3, P3, gamma=0.0, class_weights=[1.0, 2.0, 0.5]))[0])
    assert f == pytest.approx(float(_np(L.categorical_crossentropy(T3, P3, class_weights=[1.0, 2.0, 0.5]))[0]),
                              rel=1e-5)
    with pytest.raises(ValueError, match="3 classes"):
        L.dice_loss(T3, P3, class_weights=[1.0, 1.0])


def test_weighted_losses_serialize():
    for name in ("cce", "cce_dice", "dice", "focal"):
        loss = L.get_loss(name, class_weights=[0.5, 1.0, 2.0])
        blob = keras.saving.serialize_keras_object(loss)
        again = keras.saving.deserialize_keras_object(blob, safe_mode=True)
        assert again.get_config() == loss.get_config()
        assert float(_np(again(T3, P3))) == pytest.approx(float(_np(loss(T3, P3))), abs=1e-7)


# ----------------------------------------------------------------------------- metrics
def test_macro_excludes_classes_empty_in_truth_micro_pools():
    t = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1]])
    p = np.array([[0, 2, 1, 1],
                  [0, 0, 1, 0]])
    # class 1: tp 3, fn 1, fp 0 -> dice 6/7, iou 3/4; class 2: absent from truth, 1 false pixel
    m = macro_micro(t, p, 3)
    assert m["macro_dice"] == pytest.approx(6 / 7)       # class 2 excluded (MONAI ignore_empty)
    assert m["macro_iou"] == pytest.approx(3 / 4)
    # micro over classes 1, 2: tp 3, fp 1 (class 2), fn 1 -> dice 6/8, iou 3/5
    assert m["micro_dice"] == pytest.approx(6 / 8)
    assert m["micro_iou"] == pytest.approx(3 / 5)
    full = multiclass_metrics(t, p, 3)
    assert full["dice_1"] == pytest.approx(6 / 7) and full["dice_2"] == 0.0
    assert full["macro_dice"] == pytest.approx(6 / 7)
    # no foreground class anywhere: perfect; a false alarm only: 0
    z = np.zeros((2, 2), int)
    assert macro_micro(z, z, 3) == {"macro_dice": 1.0, "macro_iou": 1.0, "micro_dice": 1.0, "micro_iou": 1.0}
    assert macro_micro(z, np.array([[0, 2], [0, 0]]), 3)["macro_dice"] == 0.0


def test_confusion_matrix_counts_pixels():
    t = np.array([0, 0, 1, 2, 2])
    p = np.array([0, 1, 1, 2, 0])
    np.testing.assert_array_equal(confusion_matrix(t, p, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


# ----------------------------------------------------------------------------- figures
def test_class_colours_and_legend(tmp_path):
    from Functions.viz.plotting import class_palette, colour_classes, plot_class_predictions

    pal = class_palette(3)
    assert pal.shape == (3, 3) and (pal[0] == 0).all() and not np.allclose(pal[1], pal[2])
    c = np.array([[0, 1], [2, 2]])
    rgb = colour_classes(c, 3)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and (rgb[0, 0] == 0).all()
    fig = plot_class_predictions(np.zeros((1, 8, 8, 1)), c[None].repeat(4, 1).repeat(4, 2),
                                 c[None].repeat(4, 1).repeat(4, 2), ["background", "gland", "lesion"],
                                 path=tmp_path / "f.png")
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["0: background", "1: gland", "2: lesion"]
    assert (tmp_path / "f.png").stat().st_size > 0


# ----------------------------------------------------------------------------- train / predict from the command line
def _class_tree(root, n=8, size=16, values=(0, 128, 255)):
    """images/ + masks/ with two square classes written as the mask values ``values``."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size // 2, 2)
        m[r:r + 5, c:c + 5] = values[1]
        m[size - 5:, size - 5:] = values[2]
        img = np.clip(30 + (m > 0) * 100 + (m == values[2]) * 80 + rng.normal(0, 5, m.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"c{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), m)
    return root


TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "4", "--model-option", "base_filters=4",
        "--model-option", "depth=2", "--progress-every", "0", "--verbose", "0", "--lr-schedule", "constant"]


def test_train_infers_classes_from_mask_values_and_predict_writes_class_maps(tmp_path, capsys):
    import json

    from Functions.cli import main

    data = _class_tree(tmp_path / "d")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "classes: 3 from mask values 0:0,128:1,255:2" in out and "macro Dice" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["num_classes"] == 3 and cfg["class_map"] == "0:0,128:1,255:2"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("dice_1", "dice_2", "iou_1", "iou_2", "macro_dice", "micro_dice", "macro_iou", "micro_iou"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert np.asarray(metrics["confusion_matrix"]).shape == (3, 3)
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"dice_1", "dice_2", "val_dice_1", "val_dice_2", "val_iou_2"} <= set(history)
    report = (run / "report.md").read_text()
    assert "macro_dice" in report and "dice_2" in report and "confusion_matrix.png" in report
    import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.outputs[-1].shape[-1] == 3
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--images", str(data / "images"), "--out", str(pred),
                 "--overlay"]) == 0
    m = cv2.imread(str(pred / "c0.png"), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and m.shape == (16, 16) and m.max() <= 2
    assert cv2.imread(str(pred / "overlays" / "c0.png")).shape == (16, 16, 3)


def test_train_class_map_and_bad_class_values(tmp_path, capsys):
    from Functions.cli import main

    data = _class_tree(tmp_path / "d", values=(0, 1, 2))
    # a class value above K: one error line naming the file
    assert main(["train", "--data", str(data), "--num-classes", "2", "--out", str(tmp_path / "r1"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "class 2" in err and ".png" in err and "\n" not in err
    # a label map where a binary mask is expected
    assert main(["train", "--data", str(data), "--num-classes", "1", "--out", str(tmp_path / "r2"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "binary mask is expected" in err and "--num-classes 3" in err and "\n" not in err
    # a class map that misses a value
    assert main(["train", "--data", str(data), "--class-map", "0:0,1:1", "--out", str(tmp_path / "r3"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "not in the class map" in err and "\n" not in err
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_evaluate_class_folders_per_class_macro_micro(tmp_path, capsys):
    import pandas as pd

    from Functions.cli import main

    t = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    p = np.array([[0, 2, 1, 1], [0, 0, 1, 0]], np.uint8)
    for d, arr in (("m", t * 128), ("p", p)):  # truth stored as 0/128(/255), predictions as class indices
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "a.png"), arr)
    out = tmp_path / "c.csv"
    assert main(["evaluate", "--masks", str(tmp_path / "m"), "--predictions", str(tmp_path / "p"),
                 "--num-classes", "3", "--class-map", "0:0,128:1,255:2", "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["dice_1"] == pytest.approx(6 / 7) and row["dice_2"] == 0.0
    assert row["macro_dice"] == pytest.approx(6 / 7) and row["micro_dice"] == pytest.approx(6 / 8)
    assert "confusion" in capsys.readouterr().out
    # a predicted class above K is one error line naming the file
    cv2.imwrite(str(tmp_path / "p" / "a.png"), p * 2)
    assert main(["evaluate", "--masks", str(tmp_path / "m"), "--predictions", str(tmp_path / "p"),
                 "--num-classes", "3", "--class-map", "0:0,128:1,255:2", "--out", str(tmp_path / "d.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a.png" in err and "class 4" in err and "\n" not in err


def test_train_multiclass_on_patches_scores_each_image_at_its_own_size(tmp_path, capsys):
    """--patch-size with class maps: patches of the class maps, scored at each image's original size."""
    import json

    import pandas as pd

    from Functions.cli import main

    data = _class_tree(tmp_path / "d", n=9, size=24)
    # two images of another, non-square size: the test table must keep their own sizes
    rng = np.random.default_rng(5)
    for i in (0, 1):
        m = np.zeros((20, 30), np.uint8)
        m[3:9, 4:10], m[12:18, 20:28] = 128, 255
        img = np.clip(30 + (m > 0) * 100 + (m == 255) * 80 + rng.normal(0, 5, m.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(data / "images" / f"c{i}.png"), img)
        cv2.imwrite(str(data / "masks" / f"c{i}.png"), m)
    run = tmp_path / "run"
    tiny = [a for a in TINY if a not in ("--image-size", "16")]
    assert main(["train", "--data", str(data), "--out", str(run), "--patch-size", "16", "--test-fraction", "0.34",
                 "--patch-sampling", "area", "--verbose", "1", *tiny]) == 0
    out = capsys.readouterr().out
    assert "classes: 3 from mask values 0:0,128:1,255:2" in out and "original resolution" in out
    assert "patch(es) per image and epoch (drawn in proportion to image area)" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scored_at"] == "original resolution" and metrics["num_classes"] == 3
    table = pd.read_csv(run / "test_metrics.csv")
    split = json.loads((run / "split.json").read_text())
    sizes = {cv2.imread(p, cv2.IMREAD_UNCHANGED).shape for p in split["test"]}
    assert {(h, w) for h, w in zip(table["height"], table["width"])} == sizes
    assert {"dice_1", "dice_2", "macro_dice", "micro_dice"} <= set(table.columns)
    # the confusion matrix counts every pixel of every test image once, at its own size
    assert np.asarray(metrics["confusion_matrix"]).sum() == sum(h * w for h, w in zip(table["height"], table["width"]))
    assert "sliding window" in (run / "report.md").read_text()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["patch_size"] == 16 and cfg["class_map"] == "0:0,128:1,255:2" and cfg["patch_sampling"] == "area"


def test_class_map_of_another_size_is_one_error_naming_both_files(tmp_path):
    from Functions.base.errors import UserError
    from Functions.data.discovery import find_samples
    from Functions.engine.multiclass import read_class_map

    data = _class_tree(tmp_path / "d", n=3, values=(0, 1, 2))
    cv2.imwrite(str(data / "masks" / "c1.png"), np.zeros((12, 16), np.uint8))
    sample = [s for s in find_samples(data) if str(s.image).endswith("c1.png")][0]
    with pytest.raises(UserError) as err:
        read_class_map(sample, (16, 16), None, 3)
    message = str(err.value)
    assert "c1.png" in message and "16x12" in message and "16x16" in message and "\n" not in message
