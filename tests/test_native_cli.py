"""Native resolution through the command line: predict by sliding window, and one-line errors for bad input."""

import json

import cv2
import numpy as np
import pytest

from Functions.cli import main
from helpers import cli_fails


def fails(capsys, argv, *needles):
    return cli_fails(capsys, argv, *needles)


def patch_run(tmp_path, patch=64, **settings):
    """A run folder with a fully convolutional 'model' (1x1 conv + sigmoid: p = sigmoid(20 (x - 0.5)))."""
    import keras

    run = tmp_path / "run"
    run.mkdir()
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(20.0),
                                  bias_initializer=keras.initializers.Constant(-10.0))(inputs)
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
