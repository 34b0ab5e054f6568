"""Native resolution through the command line: predict by sliding window, and one-line errors for bad input."""

import json

import cv2
import numpy as np
import pytest

from Functions.cli import main
from helpers import cli_fails


def fails(capsys, argv, *needles):
    return cli_fails(capsys, argv, *needles)


def patch_run(tmp_path, patch=64, kernel=20.0, **settings):
    """A run folder with a fully convolutional 'model' (1x1 conv + sigmoid: p = sigmoid(k (x - 0.5)), k = 20, or
    with ``kernel=0.2`` p = sigmoid(0.2 (x - 128)) for raw 0-255 values)."""
    import keras

    run = tmp_path / "run"
    run.mkdir()
    bias = -10.0 if kernel == 20.0 else -128.0 * kernel
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(kernel),
                                  bias_initializer=keras.initializers.Constant(bias))(inputs)
    keras.Model(inputs, outputs).save(run / "model.keras")
    cfg = {"model": "tiny", "normalization": "none", "threshold": 0.5, "patch_size": patch, "overlap": 0.5,
           "channels": 1}
    cfg.update(settings)
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_predict_whole_image_by_sliding_window(tmp_path, capsys):
    run = patch_run(tmp_path)
    (tmp_path / "imgs").mkdir()
    img = np.zeros((150, 230), np.uint8)
    img[30:90, 40:200] = 1                            # normalisation "none": values 0/1 -> p = 0.00005 / 0.99995
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), img)
    assert main(["predict", "--model", str(run), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "out"), "--overlap", "0.25"]) == 0
    mask = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (150, 230)
    np.testing.assert_array_equal(mask > 0, img > 0)


def test_predictor_window_probabilities_match_the_formula(tmp_path):
    from Functions.inference.predictor import load_predictor

    predictor = load_predictor(patch_run(tmp_path, patch=32, scale=0.5))
    assert predictor.patch_size == 32 and predictor.scale == 0.5
    image = np.full((70, 90, 1), 0.6, np.float32)
    probs = predictor.probabilities([image])[0]
    assert probs.shape == (70, 90, 1)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-2.0)), rtol=1e-5)


def test_predict_image_many_windows_wide(tmp_path, capsys):
    """A field several 512-pixel windows wide and tall, neither side a multiple of the window or its stride, every
    pixel a coin toss: the whole image comes back, each pixel from the windows over it. (A 6000x4000 field takes
    the same path with more windows; the sliding window alone is run at 4000x3000 in test_sliding_window.py.)"""
    run = patch_run(tmp_path, patch=512)
    (tmp_path / "imgs").mkdir()
    img = (np.random.default_rng(0).uniform(size=(1300, 1700)) > 0.5).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "imgs" / "big.png"), img)
    assert main(["predict", "--model", str(run), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "out")]) == 0
    mask = cv2.imread(str(tmp_path / "out" / "big.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (1300, 1700)
    np.testing.assert_array_equal(mask > 0, img > 0)


def test_predict_bad_overlap(tmp_path, capsys):
    run = patch_run(tmp_path)
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((20, 20), np.uint8))
    fails(capsys, ["predict", "--model", str(run), "--images", str(tmp_path / "imgs"), "--out",
                   str(tmp_path / "o"), "--overlap", "1"], "--overlap", "[0, 1)")
    assert not (tmp_path / "o").exists()


def test_check_split_bad_max_distance(tmp_path, capsys):
    fails(capsys, ["check-split", str(tmp_path), "--max-distance", "64"], "--max-distance")


def test_score_samples_at_original_resolution_with_spacing(tmp_path):
    from Functions.data.discovery import Sample
    from Functions.evaluation.native import score_samples
    from Functions.inference.predictor import load_predictor

    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    img = np.zeros((90, 130), np.uint8)
    img[20:60, 30:100] = 1
    truth = np.zeros((90, 130), np.uint8)
    truth[20:60, 30:110] = 255                        # 10 columns more than the model will find
    cv2.imwrite(str(tmp_path / "d" / "images" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "d" / "masks" / "a.png"), truth)
    predictor = load_predictor(patch_run(tmp_path, patch=32))
    s = Sample(id="a", image=tmp_path / "d" / "images" / "a.png", masks=(tmp_path / "d" / "masks" / "a.png",))
    table = score_samples(predictor, [s, Sample(id="b", image=s.image, masks=s.masks, spacing=(0.5, 0.5))])
    # Dice = 2 * 40*70 / (40*70 + 40*80) at 90x130, hand-computed
    np.testing.assert_allclose(table["dice"], 2 * 2800 / (2800 + 3200), rtol=1e-6)
    assert table["width"].tolist() == [130, 130] and table["unit"].tolist() == ["px", "mm"]
    # the boundaries are up to 10 px apart; at 0.5 mm per pixel every distance halves
    assert 5 < table["hd95"].iloc[0] <= 10
    assert table["hd95"].iloc[1] == pytest.approx(table["hd95"].iloc[0] / 2)
    assert table["assd"].iloc[1] == pytest.approx(table["assd"].iloc[0] / 2)


def test_evaluate_scores_drive_inside_the_field_of_view(tmp_path):
    """A 'model' that thresholds the grey value at 128 finds every vessel (200) inside DRIVE's field of view and
    marks the white border outside it (255) as vessel too: inside the FOV it is perfect, over the image it is not."""
    from helpers import write_drive

    from Functions.data.samples import ROI_NOTE

    data = write_drive(tmp_path / "DRIVE", n_train=2, n_test=2, outside=255)
    run = patch_run(tmp_path, patch=16, kernel=0.2)
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--split", "all", "--out", str(out)]) == 0
    table = __import__("pandas").read_csv(out / "metrics.csv")
    assert len(table) == 4
    np.testing.assert_allclose(table["dice"], 1.0)
    np.testing.assert_allclose(table["pixel_accuracy"], 1.0)
    assert ROI_NOTE in (out / "report.md").read_text()


def test_train_on_drive_keeps_the_official_split_and_weights_the_field_of_view(tmp_path, capsys):
    """`train --data DRIVE`: the 4 official test images stay test, validation comes from the official training
    images, the loss runs with the field-of-view weights, and the figures say they were scored inside it."""
    from helpers import write_drive

    from Functions.data.samples import ROI_NOTE
    from Functions.data.splits import OFFICIAL

    data = write_drive(tmp_path / "DRIVE", n_train=4, n_test=2)
    run = tmp_path / "run"
    recipe = tmp_path / "eager.toml"
    recipe.write_text("run_eagerly = true\n")        # four steps: no graph to trace
    assert main(["train", "--data", str(data), "--patch-size", "16", "--epochs", "1", "--batch-size", "2",
                 "--model-option", "base_filters=4", "--model-option", "depth=2", "--progress-every", "0",
                 "--config", str(recipe), "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"Split: {OFFICIAL}: train 3, val 1 (drawn from the official training part, seeded), test 2" in printed
    split = json.loads((run / "split.json").read_text())
    assert split["split"] == OFFICIAL and sorted(p.rsplit("/", 1)[-1] for p in split["test"]) == [
        "01_test.tif", "02_test.tif"]
    assert all("/training/" in p for p in split["train"] + split["val"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["roi"] == ROI_NOTE and metrics["split"] == "test" and metrics["n_images"] == 2
    assert ROI_NOTE in (run / "report.md").read_text()
    plan = {c["field"]: c for c in json.loads((run / "plan.json").read_text())["choices"]}
    assert plan["split"]["value"] == "official" and plan["roi"]["value"] == "field of view"


def test_evaluate_test_split_of_other_data_is_its_official_test_part(tmp_path):
    from helpers import write_drive

    from Functions.evaluation.evaluate import run_samples

    data = write_drive(tmp_path / "DRIVE", n_train=6, n_test=3)
    chosen, split = run_samples(tmp_path, {"seed": 1}, data=str(data), split="test")
    assert split == "test" and sorted(s.id for s in chosen) == ["01_test", "02_test", "03_test"]
    randoms = [run_samples(tmp_path, {"seed": seed, "split": "random", "test_fraction": 0.3}, data=str(data),
                           split="test")[0] for seed in range(4)]
    assert all(len(c) == 3 for c in randoms) and any(s.split == "train" for c in randoms for s in c)
