"""Classification: class-folder discovery, stratified splits, NumPy metrics vs scikit-learn, the
classify-train job end to end and classify-predict."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from Functions.engine.classification import ClassifyConfig, prepare_classification_data, spread_by_class
from Functions.metrics.classification import classification_metrics, confusion_matrix, roc_auc, roc_curve
from Functions.data.labelled import (
    balanced_class_weights,
    encode_labels,
    find_labelled_images,
    is_mask_name,
    labelled_samples,
    one_hot,
)
from Functions.data.discovery import Sample
from Functions.base.errors import UserError

CLASSES = ("blank", "disc", "stripes")


def shape_image(kind: str, size: int = 32, seed: int = 0) -> np.ndarray:
    """A noisy ``uint8`` image: a bright disc, vertical stripes, or noise only."""
    rng = np.random.default_rng(seed)
    img = rng.normal(60, 15, (size, size))
    yy, xx = np.mgrid[:size, :size]
    if kind == "disc":
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (size * 0.22) ** 2] += 150
    elif kind == "stripes":
        period = int(rng.integers(4, 7))
        img[:, (xx[0] + int(rng.integers(0, period))) % period < period // 2] += 150
    return np.clip(img, 0, 255).astype(np.uint8)


def write_class_folders(root: Path, counts=(12, 12, 12), size: int = 32, busi_masks: bool = True,
                        names=CLASSES) -> Path:
    """``root/<class>/<class> (k).png`` (+ BUSI-style ``_mask`` files that must be ignored).

    ``names`` renames the three classes (blank, disc, stripes images).
    """
    for kind, c, n in zip(CLASSES, names, counts):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            cv2.imwrite(str(root / c / f"{c} ({k + 1}).png"), shape_image(kind, size, seed=1000 * len(kind) + k))
            if busi_masks:
                cv2.imwrite(str(root / c / f"{c} ({k + 1})_mask.png"), np.zeros((size, size), np.uint8))
                if k == 0:
                    cv2.imwrite(str(root / c / f"{c} ({k + 1})_mask_1.png"), np.zeros((size, size), np.uint8))
    return root


# ----------------------------------------------------------------------------- discovery
def test_busi_layout_with_wrapper_folder_and_masks_ignored(tmp_path):
    root = write_class_folders(tmp_path / "download" / "Dataset_BUSI_with_GT", counts=(3, 2, 4))
    (root / ".hidden").mkdir()
    cv2.imwrite(str(root / ".hidden" / "x.png"), np.zeros((8, 8), np.uint8))      # not a class
    samples, classes = find_labelled_images(tmp_path / "download")
    assert classes == ["blank", "disc", "stripes"]
    assert len(samples) == 9
    assert not any("_mask" in s.image.name for s in samples)
    assert [s.label for s in samples].count("stripes") == 4
    assert all(s.image.parent.name == s.label and s.masks == () for s in samples)
    assert samples == sorted(samples, key=lambda s: str(s.image))
    assert is_mask_name("benign (3)_mask_1.png") and not is_mask_name("benign (3).png")


def test_split_folders_are_merged_by_class(tmp_path):
    write_class_folders(tmp_path / "data" / "train", counts=(2, 2, 2), busi_masks=False)
    write_class_folders(tmp_path / "data" / "test", counts=(1, 1, 1), busi_masks=False)
    samples, classes = find_labelled_images(tmp_path / "data")
    assert classes == list(CLASSES) and len(samples) == 9


def test_discovery_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        find_labelled_images(tmp_path / "missing")
    root = write_class_folders(tmp_path / "a", counts=(2, 2, 2))
    (root / "empty").mkdir()
    cv2.imwrite(str(root / "empty" / "x_mask.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match=r"class folder .*empty holds no images"):
        find_labelled_images(root)
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    (one / "other_stuff").mkdir()
    cv2.imwrite(str(one / "only" / "a.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(one / "other_stuff" / "b.png"), np.zeros((8, 8), np.uint8))
    find_labelled_images(one)  # two classes: fine
    (one / "other_stuff" / "b.png").unlink()
    (one / "other_stuff").rmdir()
    with pytest.raises(UserError, match="at least two"):
        find_labelled_images(one)
    seg = tmp_path / "seg"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    with pytest.raises(UserError, match="segmentation layout"):
        find_labelled_images(seg)


def test_labelled_samples_from_a_loader():
    s = [Sample("a", Path("a.png"), masks=(Path("a_mask.png"),), label="x"),
         Sample("b", Path("b.png"), label="y")]
    out, classes = labelled_samples(s)
    assert classes == ["x", "y"] and out[0].masks == ()
    with pytest.raises(UserError, match="no class label"):
        labelled_samples([Sample("c", Path("c.png"))])
    with pytest.raises(UserError, match="at least two"):
        labelled_samples([s[0]])


def test_offline_ultrasound_sample_is_a_classification_set():
    from Functions.base.paths import sample_dir

    samples, classes = find_labelled_images(sample_dir("ultrasound"))
    assert classes == ["benign", "malignant", "normal"]
    counts = {c: sum(s.label == c for s in samples) for c in classes}
    assert min(counts.values()) >= 10
    assert not any(is_mask_name(s.image) for s in samples)


# ----------------------------------------------------------------------------- split, labels, weights
def test_stratified_split_keeps_class_ratios_in_every_split(tmp_path):
    write_class_folders(tmp_path / "d", counts=(40, 20, 10), size=8, busi_masks=False)
    cfg = ClassifyConfig(data=str(tmp_path / "d"), image_size=32, val_fraction=0.2, test_fraction=0.2, seed=5)
    data = prepare_classification_data(cfg)
    assert data["classes"] == list(CLASSES) and data["channels"] == 1
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        x, y, samples = data[name]
        assert x.shape == (len(y), 32, 32, 1) and x.dtype == np.float32
        assert list(np.bincount(y, minlength=3)) == [round(40 * share), round(20 * share), round(10 * share)]
        assert [data["classes"][k] for k in y] == [s.label for s in samples]
    # seeded: the same split again, a different one for another seed
    again = prepare_classification_data(cfg)
    assert [s.image for s in again["test"][2]] == [s.image for s in data["test"][2]]
    cfg.seed = 6
    assert [s.image for s in prepare_classification_data(cfg)["test"][2]] != [s.image for s in data["test"][2]]


def test_busi_like_images_of_any_size_and_rgb_load_as_one_gray_shape(tmp_path):
    root = tmp_path / "Dataset_BUSI_with_GT"
    rng = np.random.default_rng(0)
    for c in ("benign", "malignant", "normal"):
        (root / c).mkdir(parents=True)
        for k in range(1, 5):
            gray = rng.integers(0, 255, (int(rng.integers(40, 90)), int(rng.integers(40, 90))), dtype=np.uint8)
            cv2.imwrite(str(root / c / f"{c} ({k}).png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))  # RGB, R=G=B
            cv2.imwrite(str(root / c / f"{c} ({k})_mask.png"), np.zeros(gray.shape, np.uint8))
    data = prepare_classification_data(ClassifyConfig(data=str(tmp_path), image_size=32, val_fraction=0.25,
                                                      test_fraction=0.25))
    assert data["channels"] == 1 and data["classes"] == ["benign", "malignant", "normal"]
    assert [data[k][0].shape for k in ("train", "val", "test")] == [(6, 32, 32, 1), (3, 32, 32, 1), (3, 32, 32, 1)]
    assert all(0 <= data[k][0].min() and data[k][0].max() <= 1 for k in ("train", "val", "test"))


def test_dataset_option_takes_labels_from_the_registry(tmp_path):
    datasets = pytest.importorskip("Functions.data.datasets")
    if "busi" not in datasets.names():
        pytest.skip("no BUSI entry in the dataset registry")
    write_class_folders(tmp_path / "Dataset_BUSI_with_GT", counts=(4, 3, 3), size=16,
                        names=("benign", "malignant", "normal"))
    data = prepare_classification_data(ClassifyConfig(dataset="busi", data_dir=str(tmp_path), image_size=32))
    assert data["classes"] == ["benign", "malignant", "normal"] and data["n_samples"] == 10
    assert all(s.masks == () and s.label in data["classes"] for k in ("train", "val", "test") for s in data[k][2])


def test_labels_one_hot_and_balanced_weights():
    y = encode_labels(["b", "a", "c", "a"], ["a", "b", "c"])
    assert y.tolist() == [1, 0, 2, 0]
    np.testing.assert_array_equal(one_hot(y, 3), np.eye(3)[[1, 0, 2, 0]])
    # 6 images, 3 classes: n / (K n_k) = 6/(3*3), 6/(3*2), 6/(3*1)
    w = balanced_class_weights(np.array([0, 0, 0, 1, 1, 2]), 3)
    assert w == pytest.approx({0: 2 / 3, 1: 1.0, 2: 2.0})
    # every class then carries the same total weight
    assert 3 * w[0] == pytest.approx(2 * w[1]) == pytest.approx(w[2])
    assert balanced_class_weights(np.array([0, 0]), 2)[1] == 1.0
    with pytest.raises(ValueError, match="not one of the classes"):
        encode_labels(["z"], ["a"])


def test_batches_of_labels_augment_only_the_images():
    from Functions.data.augmentation import Augmenter
    from Functions.data.pipeline import make_batches

    x = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8, 1)
    y = one_hot(np.array([0, 2, 1, 2]), 3)
    flip = Augmenter(hflip=1.0, vflip=0.0, rotate90=0.0)
    batches = make_batches(x, y, batch_size=3, augmenter=flip, workers=1)
    assert len(batches) == 2
    bx, by = batches[0]
    np.testing.assert_array_equal(bx, x[:3, :, ::-1])            # every image flipped left-right
    np.testing.assert_array_equal(by, y[:3])                     # labels untouched
    assert by.dtype == np.float32 and batches[1][0].shape == (1, 8, 8, 1)


def test_spread_by_class_takes_classes_in_turn():
    y = np.array([0, 0, 0, 1, 1, 2])
    assert spread_by_class(y, 4).tolist() == [0, 1, 3, 5]
    assert spread_by_class(y, 10).tolist() == list(range(6))


# ----------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    y = [0, 0, 1, 1, 2]
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .8, .1], [.5, .2, .3]])
    m = classification_metrics(y, probs, ["a", "b", "c"])
    # predictions 0, 1, 1, 1, 0
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8,
                                                  "roc_auc": 1.0, "support": 2})
    assert m["per_class"]["c"]["precision"] == 0 and m["per_class"]["c"]["f1"] == 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    # class a: positives score .8, .3; negatives .2, .1, .5 -> pairs won 3 + 2 of 6
    assert m["per_class"]["a"]["roc_auc"] == pytest.approx(5 / 6)
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5          # a tie counts half
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    json.dumps(m)  # JSON-ready


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (4, 2)])
def test_metrics_agree_with_scikit_learn(k, seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 1)                          # many ties
    probs[:, -1] = 1 - probs[:, :-1].sum(axis=1)
    if k == 4:
        probs[:, 3] = np.minimum(probs[:, 3], 0.01)     # class 3 is never predicted: zero_division path
        probs /= probs.sum(axis=1, keepdims=True)
    m = classification_metrics(y, probs)
    pred = probs.argmax(axis=1)
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per = [m["per_class"][str(c)] for c in labels]
    np.testing.assert_allclose([d["precision"] for d in per], p)
    np.testing.assert_allclose([d["recall"] for d in per], r)
    np.testing.assert_allclose([d["f1"] for d in per], f)
    assert [d["support"] for d in per] == s.tolist()
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    for c in labels:
        assert per[c]["roc_auc"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
    expected = skm.roc_auc_score(y, probs[:, 1]) if k == 2 else \
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels)
    assert m["roc_auc"] == pytest.approx(expected)
    # accuracy is the confusion matrix's trace over its sum
    cm = np.array(m["confusion_matrix"])
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    fpr, tpr, thr = roc_curve(y == 0, probs[:, 0])
    sk_fpr, sk_tpr, _ = skm.roc_curve(y == 0, probs[:, 0], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_confusion_matrix_checks():
    assert confusion_matrix([0, 1, 1], [1, 1, 0], 2).tolist() == [[0, 1], [1, 1]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 2)


def test_config_validation():
    with pytest.raises(UserError, match="^epochs must be at least 1"):
        ClassifyConfig(epochs=0).validate()
    with pytest.raises(UserError, match="not both"):
        ClassifyConfig(data="a", dataset="b").validate()
    with pytest.raises(UserError, match="^class_weights must be"):
        ClassifyConfig(class_weights="inverse").validate()
    with pytest.raises(UserError, match="^val_fraction and test_fraction"):
        ClassifyConfig(val_fraction=0.6, test_fraction=0.5).validate()


# ----------------------------------------------------------------------------- the job end to end
@pytest.mark.backend
def test_classify_train_separable_set_and_predict(tmp_path):
    from Functions.engine.classification import train_classifier
    from Functions.cli import main

    data = write_class_folders(tmp_path / "shapes", counts=(15, 15, 15))
    out = tmp_path / "run"
    cfg = ClassifyConfig(data=str(data), image_size=32, epochs=8, batch_size=12, learning_rate=3e-3, width=8,
                         normalization="scale", augment="light", out=str(out), verbose=0,
                         val_fraction=0.2, test_fraction=0.25, gradcam_images=3, workers=1)
    result = train_classifier(cfg)
    for name in ("model.keras", "history.csv", "metrics.json", "classes.json", "config.json", "split.json",
                 "predictions.csv", "confusion_matrix.png", "roc.png", "gradcam.png", "curves.png", "report.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(CLASSES) and metrics["n_images"] == 12
    assert metrics["accuracy"] >= 0.9, metrics
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 12 and cm.sum(axis=1).tolist() == [4, 4, 4]
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    for key in ("balanced_accuracy", "macro_f1", "roc_auc"):
        assert 0 <= metrics[key] <= 1
    assert set(metrics["per_class"]["disc"]) == {"precision", "recall", "f1", "roc_auc", "support"}
    assert json.loads((out / "config.json").read_text())["model_options"] == {"base_filters": 8}
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == list(range(8)) and {"accuracy", "val_accuracy", "val_loss"} <= set(hist)
    table = pd.read_csv(out / "predictions.csv")
    assert (table["truth"] == table["predicted"]).mean() == pytest.approx(metrics["accuracy"])
    report = (out / "report.md").read_text()
    assert "## Confusion matrix" in report and "![Grad-CAM](gradcam.png)" in report
    assert json.loads((out / "classes.json").read_text())["classes"] == list(CLASSES)
    assert result["metrics"]["accuracy"] == metrics["accuracy"]

    # a second run into the same folder is refused, the first is untouched
    before = (out / "model.keras").read_bytes()
    with pytest.raises(UserError, match="already holds files"):
        train_classifier(cfg)
    assert (out / "model.keras").read_bytes() == before

    # classify-predict on the whole folder (run folder as --model, masks skipped) -> CSV and Grad-CAM;
    # the test images get the probabilities the run reported
    csv = tmp_path / "pred.csv"
    assert main(["classify-predict", "--model", str(out), "--images", str(data), "--out", str(csv),
                 "--gradcam", str(tmp_path / "cam.png")]) == 0
    assert (tmp_path / "cam.png").is_file()
    got = pd.read_csv(csv)
    probs = ["prob_blank", "prob_disc", "prob_stripes"]
    assert list(got.columns) == ["image", "predicted", "probability"] + probs
    assert len(got) == 45 and not got["image"].str.contains("_mask").any()
    np.testing.assert_allclose(got[probs].sum(axis=1), 1, atol=1e-5)
    same = got.set_index("image").loc[table["image"]]
    np.testing.assert_allclose(same[probs].to_numpy(), table[probs].to_numpy(), atol=1e-4)
    truth = got["image"].map(lambda p: Path(p).parent.name)
    assert (got["predicted"] == truth).mean() >= 0.9


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "Functions", "classify-train", "--data", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: data folder") and "Traceback" not in proc.stderr
    (tmp_path / "m").mkdir()
    proc = subprocess.run([sys.executable, "-m", "Functions", "classify-predict", "--model", str(tmp_path / "m"),
                           "--images", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "model.keras" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "m" / "model.keras").write_text("not a model")
    proc = subprocess.run([sys.executable, "-m", "Functions", "classify-predict", "--model", str(tmp_path / "m"),
                           "--images", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "classes.json" in proc.stderr


def test_model_choice_errors(tmp_path):
    from Functions.engine.classification import build_classifier

    with pytest.raises(UserError, match="segmentation model"):
        build_classifier(ClassifyConfig(model="unet"), (32, 32, 1), 3)
    with pytest.raises(UserError, match="unknown"):
        build_classifier(ClassifyConfig(model="resnet999"), (32, 32, 1), 3)
    with pytest.raises(UserError, match="no pretrained weights"):
        build_classifier(ClassifyConfig(model="resnet18", pretrained=True), (32, 32, 1), 3)
    with pytest.raises(UserError, match="--freeze-backbone"):
        build_classifier(ClassifyConfig(model="resnet18", freeze_backbone=True), (32, 32, 1), 3)
    with pytest.raises(UserError, match="base_filterz"):
        build_classifier(ClassifyConfig(model_options={"base_filterz": 8}), (32, 32, 1), 3)


def test_default_run_on_the_ultrasound_sample(tmp_path):
    """No --data: the offline ultrasound sample, split, trained, scored and explained (Grad-CAM). One epoch of a
    4-filter ResNet-18 at 32x32: the path, not the fit."""
    from Functions.engine.classification import train_classifier

    result = train_classifier(ClassifyConfig(epochs=1, image_size=32, width=4, gradcam_images=2,
                                             out=str(tmp_path / "run"), verbose=0))
    m = result["metrics"]
    assert m["classes"] == ["benign", "malignant", "normal"] and m["epochs_trained"] == 1
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == m["n_images"] == len(pd.read_csv(tmp_path / "run" / "predictions.csv"))
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert (tmp_path / "run" / "gradcam.png").is_file()
