"""The classroom page (``python -m Functions app``): its callbacks as plain Python functions, and the page
driven end to end in a real headless Chromium (skipped, with the reason, where no browser is found)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from Functions.apps import live, webapp
from Functions.apps.run_catalog import find_runs, report_card, run_kind
from Functions.base.errors import UserError
from Functions.cli import main

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ----------------------------------------------------------------------------- tiny runs written by hand
def save_run(path: Path, model, config: dict, extra: dict | None = None) -> Path:
    path.mkdir(parents=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps(config))
    for name, value in (extra or {}).items():
        (path / name).write_text(json.dumps(value))
    return path


def tiny_2d(path: Path, seed: int = 0, channels: int = 1, config: dict | None = None) -> Path:
    """A two-layer segmentation model on 16x16 grey images, saved as a run folder."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(channels, 1, activation="softmax" if channels > 1 else "sigmoid")])
    return save_run(path, model, {"task": "semantic", "normalization": "minmax", "threshold": 0.5, **(config or {})})


def tiny_3d(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 16, 16, 1)), keras.layers.Conv3D(2, 3, padding="same", activation="relu"),
                              keras.layers.Conv3D(1, 1, activation="sigmoid")])
    return save_run(path, model, {"dims": 3, "patch_size": [8, 16, 16], "intensity": "ct", "num_classes": 1,
                                  "threshold": 0.5, "overlap": 0.5, "channels": 1, "model": "tiny3d",
                                  "target_spacing": [2.0, 1.25, 1.5]})   # resampled: back to the file by interpolation


def tiny_classifier(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
                              keras.layers.Activation("softmax")])
    return save_run(path, model, {"model": "tiny", "image_size": 16, "epochs": 2},
                    {"classes.json": {"classes": ["cat", "dog"], "image_size": 16, "channels": 1,
                                      "normalization": "minmax", "clahe": False}})


def tiny_attention(path: Path) -> Path:
    """An attention U-Net of depth 2 (gates at 16x16 and 8x8) on 16x16 grey images."""
    import keras

    from Functions.models.attention_unet import build_attention_unet

    keras.utils.set_random_seed(6)
    model = build_attention_unet((16, 16, 1), depth=2, base_filters=4, batch_norm=False)
    return save_run(path, model, {"task": "semantic", "normalization": "minmax", "threshold": 0.5,
                                  "model": "attention_unet"})


def grey_image(path: Path, shape=(20, 24), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    disc = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (min(shape) / 3) ** 2
    cv2.imwrite(str(path), np.clip(60 + 120 * disc + rng.normal(0, 25, shape), 0, 255).astype(np.uint8))
    return path


def nifti(path: Path, shape=(18, 20, 12), affine=None, ndim: int = 3) -> Path:
    """A CT-like volume (i, j, k) = ``shape`` with a bright box, anisotropic and flipped (LPS-like) affine."""
    import nibabel as nib

    rng = np.random.default_rng(1)
    data = rng.normal(-100, 60, shape).astype(np.float32)
    data[4:12, 5:15, 3:9] += 250
    if ndim == 2:
        data = data[:, :, 0]
    affine = np.diag([-1.5, -1.0, 3.0, 1.0]) if affine is None else affine
    affine[:3, 3] = (12.0, -7.0, 30.0)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("app_runs")
    tiny_2d(root / "binary", seed=0)
    tiny_2d(root / "binary_b", seed=1)
    tiny_2d(root / "objects", seed=2, channels=3, config={"task": "instance"})
    tiny_3d(root / "volumes")
    tiny_classifier(root / "classes")
    tiny_attention(root / "gated")
    tiny_2d(root / "bad_panoptic", seed=3, channels=3, config={"task": "panoptic", "object_types": 3,
                                                                "stuff_classes": 2})      # 3 channels, not 7
    return root


@pytest.fixture(scope="module")
def panoptic_run(tmp_path_factory) -> Path:
    """A panoptic run trained for real (``train --task panoptic``, 1 epoch, a tiny U-Net) on 8 of the offline
    sample's images."""
    run = tmp_path_factory.mktemp("app_panoptic") / "pan"
    assert main(["train", "--task", "panoptic", "--data", str(REPO / "Data" / "sample" / "panoptic"), "--out",
                 str(run), "--subset", "8", "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                 "--model-option", "base_filters=4", "--model-option", "depth=2", "--progress-every", "0",
                 "--verbose", "0", "--lr-schedule", "constant", "--seed", "0"]) == 0
    return run


def read_png(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def predict_cli(run: Path, image: Path, out: Path, *extra) -> Path:
    assert main(["predict", "--model", str(run), "--images", str(image), "--out", str(out), *extra]) == 0
    return out


# ----------------------------------------------------------------------------- the run catalog
def test_find_runs_names_each_kind_and_the_card_reads_the_run_files(tmp_path):
    root = tmp_path / "runs"
    (root / "seg").mkdir(parents=True)
    (root / "seg" / "config.json").write_text(json.dumps({"model": "unet", "epochs": 5, "data": "/data/nuclei",
                                                          "image_size": 128, "batch_size": 8, "threshold": 0.4}))
    (root / "seg" / "model.keras").write_bytes(b"")
    (root / "seg" / "split.json").write_text(json.dumps({"train": ["a"] * 7, "val": ["b"] * 2, "test": ["c"] * 3}))
    (root / "seg" / "metrics.json").write_text(json.dumps({"dice": 0.8125, "iou": 0.5, "hd95": 12.25, "n_images": 3,
                                                           "epochs_trained": 4, "train_seconds": 61.4,
                                                           "parameters": 12345}))
    (root / "seg" / "report.md").write_text("# Run seg\n\n**unet**: Dice 0.8125 on 3 test images.\n\n## Settings\n")
    (root / "inst").mkdir()          # a multi-class segmentation's classes.json is not a classifier's
    (root / "inst" / "config.json").write_text(json.dumps({"task": "instance", "num_classes": 3}))
    (root / "inst" / "classes.json").write_text(json.dumps({"num_classes": 3, "class_names": ["bg", "in", "edge"]}))
    (root / "compare" / "vol").mkdir(parents=True)
    (root / "compare" / "vol" / "config.json").write_text(json.dumps({"dims": 3, "patch_size": [16, 32, 32]}))
    (root / "pan").mkdir()           # a panoptic run's classes.json names classes too: not a classifier
    (root / "pan" / "config.json").write_text(json.dumps({"task": "panoptic", "object_types": 2, "stuff_classes": 1,
                                                          "panoptic_names": ["tumour", "immune", "necrosis"]}))
    (root / "pan" / "classes.json").write_text(json.dumps({"num_classes": 5, "class_names": ["bg", "edge", "t"]}))
    (root / "pan" / "metrics.json").write_text(json.dumps({"mpq_plus": 0.25, "bpq": 0.5, "n_images": 2}))
    (root / "cls").mkdir()
    (root / "cls" / "config.json").write_text(json.dumps({"model": "resnet18"}))
    (root / "cls" / "classes.json").write_text(json.dumps({"classes": ["a", "b"], "image_size": 64}))
    (root / "seg" / "backup").mkdir()                                   # never listed as a run
    (root / "seg" / "backup" / "config.json").write_text("{}")

    found = {r.name: r for r in find_runs(root)}
    assert sorted(found) == ["cls", "compare/vol", "inst", "pan", "seg"]
    assert {n: r.kind for n, r in found.items()} == {"cls": "classifier", "compare/vol": "3-D", "inst": "instance",
                                                      "pan": "panoptic", "seg": "2-D"}
    assert found["seg"].has_model and not found["inst"].has_model
    assert found["inst"].label == "inst (instance, no model)"

    card = report_card(root / "seg")
    for text in ("Dice 0.8125 on 3 test images", "| data set | nuclei |", "| split (train / val / test) | 7 / 2 / 3 |",
                 "dice 0.812, iou 0.500, hd95 12.2 on 3 test images", "4 of 5 epochs", "61 s of training",
                 "12,345 parameters", "| input size | 128 |"):
        assert text in card, (text, card)
    assert "cannot predict" in report_card(root / "inst")
    assert "| patch | 16 x 32 x 32 |" in report_card(root / "compare" / "vol")
    for text in ("mpq_plus 0.250, bpq 0.500 on 2 test images", "| object types | tumour, immune |",
                 "| stuff classes | necrosis |"):
        assert text in report_card(root / "pan"), text
    assert "| classes | a, b |" in report_card(root / "cls") and "not scored yet" in report_card(root / "cls")
    assert webapp.choose_run(str(root / "seg"))[1] == pytest.approx(0.4)
    with pytest.raises(UserError, match="does not exist"):
        find_runs(tmp_path / "missing")
    assert webapp.refresh_runs(tmp_path / "missing")[1].startswith("**error:**")


# ----------------------------------------------------------------------------- the callbacks, no browser
def test_show_gives_the_mask_predict_writes_and_redraws_a_threshold_without_the_network(runs, tmp_path):
    image = grey_image(tmp_path / "cells.png")
    want = read_png(predict_cli(runs / "binary", image, tmp_path / "pred") / "cells.png")
    assert 0 < (want > 0).mean() < 1                                  # a mask with both values: a real check

    message, pic_a, pic_b, diff, table_a, table_b, files, *_ = webapp.show(str(runs / "binary"), None, [str(image)],
                                                                        None, workdir=tmp_path / "w")
    assert message.startswith("**cells.png**") and pic_b is None and diff is None and table_b is None
    mask = next(f for f in files if f.endswith("_mask.png"))
    np.testing.assert_array_equal(read_png(mask), want)
    assert read_png(next(f for f in files if f.endswith("_overlay.png"))).shape == (20, 24, 3)
    assert int(table_a["pixels"].iloc[0]) == int((want > 0).sum())

    # another threshold: the kept probabilities, thresholded again (the network does not run twice)
    assert live.load_run(runs / "binary") is live.load_run(runs / "binary")       # loaded once
    first = live.predict(runs / "binary", live.read_input([image]))
    files = webapp.show(str(runs / "binary"), None, [str(image)], None, threshold=0.3, workdir=tmp_path / "w").files
    assert live.predict(runs / "binary", live.read_input([image])) is first
    low = read_png(predict_cli(runs / "binary", image, tmp_path / "pred03", "--threshold", "0.3") / "cells.png")
    np.testing.assert_array_equal(read_png(next(f for f in files if f.endswith("_mask.png"))), low)
    assert (low > 0).sum() > (want > 0).sum()


def test_two_runs_side_by_side_count_the_pixels_where_they_disagree(runs, tmp_path):
    image = grey_image(tmp_path / "two.png", seed=4)
    a = read_png(predict_cli(runs / "binary", image, tmp_path / "a") / "two.png") > 0
    b = read_png(predict_cli(runs / "binary_b", image, tmp_path / "b") / "two.png") > 0
    message, pic_a, pic_b, diff, _, _, files, *_ = webapp.show(str(runs / "binary"), str(runs / "binary_b"),
                                                               [str(image)], None, workdir=tmp_path / "w")
    n = int((a != b).sum())
    assert 0 < n < a.size
    assert f"disagree on {n:,} of {a.size:,} pixels" in message
    assert pic_a.shape == pic_b.shape and diff is not None
    assert sum(f.endswith("_mask.png") for f in files) == 2 and any(f.endswith("_disagreement.png") for f in files)
    # the marked pixels of the picture are those: drawn without enlarging, yellow exactly where they differ
    from Functions.data.imaging import read_image

    rgb = live.mark(np.repeat(read_image(image)[..., :1] / 255.0, 3, axis=-1), a != b)
    yellowish = (rgb[..., 0] > rgb[..., 2] + 0.3) & (rgb[..., 1] > rgb[..., 2] + 0.3)
    np.testing.assert_array_equal(yellowish, a != b)


def test_object_table_of_a_hand_made_label_map():
    labels = np.zeros((10, 12), np.int32)
    labels[1:4, 2:6] = 1               # 3 x 4 = 12 pixels, centre (2, 3.5)
    labels[6:9, 8:9] = 2               # 3 x 1 = 3 pixels, centre (7, 8)
    table = live.object_table(labels)
    assert table.to_dict("records") == [
        {"id": 1, "area_px": 12, "centre_y": 2.0, "centre_x": 3.5, "height": 3, "width": 4},
        {"id": 2, "area_px": 3, "centre_y": 7.0, "centre_x": 8.0, "height": 3, "width": 1}]
    assert live.object_table(np.zeros((4, 4), np.int32)).empty


def test_instance_run_gives_the_label_map_of_predict_and_one_row_per_object(runs, tmp_path):
    image = grey_image(tmp_path / "nuc.png", shape=(32, 40), seed=2)
    want = read_png(predict_cli(runs / "objects", image, tmp_path / "p") / "nuc.png")
    message, pic, _, _, table, _, files, *_ = webapp.show(str(runs / "objects"), None, [str(image)], None,
                                                      workdir=tmp_path / "w")
    got = read_png(next(f for f in files if f.endswith("_mask.png")))
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)
    assert len(table) == int(want.max()) and f"{int(want.max())} objects" in message
    assert table["area_px"].sum() == int((want > 0).sum())


def test_panoptic_run_gives_predicts_instance_and_class_maps_and_each_objects_majority_type(panoptic_run,
                                                                                             tmp_path):
    from Functions.inference.panoptic import TYPE_COLOURS

    run = panoptic_run
    assert run_kind(run) == "panoptic" and find_runs(run.parent)[0].label == "pan (panoptic)"
    card = report_card(run)
    assert "| object types | lymphocyte, epithelial, spindle |" in card and "| stuff classes | stroma, gland |" in card
    # an image off the training size (cropped to 101 x 90): predicted at its own size, as predict does
    source = cv2.imread(str(REPO / "Data" / "sample" / "panoptic" / "images" / "panoptic_003.png"))
    image = tmp_path / "tissue.png"
    cv2.imwrite(str(image), source[5:106, 20:110])
    pred = tmp_path / "pred"
    assert main(["predict", "--task", "panoptic", "--model", str(run), "--images", str(image), "--out", str(pred),
                 "--overlay"]) == 0
    want_inst, want_cls = read_png(pred / "instances" / "tissue.png"), read_png(pred / "classes" / "tissue.png")
    assert want_inst.shape == (101, 90) and want_inst.max() >= 2              # several objects: a real check

    shown = webapp.show(str(run), None, [str(image)], None, workdir=tmp_path / "w")
    files = {Path(f).name.rsplit("_", 1)[-1]: f for f in shown.files}
    assert sorted(files) == ["classes.png", "instances.png", "overlay.png"], shown.files
    got_inst, got_cls = read_png(files["instances.png"]), read_png(files["classes.png"])
    assert got_inst.dtype == want_inst.dtype == np.uint16 and got_cls.dtype == want_cls.dtype
    np.testing.assert_array_equal(got_inst, want_inst)
    np.testing.assert_array_equal(got_cls, want_cls)
    np.testing.assert_array_equal(read_png(files["overlay.png"]), read_png(pred / "overlays" / "tissue.png"))

    # the table: one row per object, its pixels, and the type most of its pixels vote for (computed here from
    # the network's probabilities, independently of the decoder)
    ids = np.unique(want_inst[want_inst > 0])
    from Functions.data.imaging import read_image

    probs = live.load_run(run).predictor.probabilities([read_image(image)])[0]
    votes = np.argmax(probs[..., 2:5], axis=-1) + 1
    names = ["lymphocyte", "epithelial", "spindle"]
    majority = [names[np.argmax(np.bincount(votes[want_inst == k], minlength=4)[1:])] for k in ids]
    table = shown.table_a
    assert list(table.columns) == ["id", "type", "pixels"]
    assert table["id"].tolist() == ids.tolist()
    assert table["pixels"].tolist() == [int((want_inst == k).sum()) for k in ids]
    assert table["type"].tolist() == majority and len(set(majority)) >= 2     # types differ: a real check
    assert f"{len(ids)} objects" in shown.message
    assert all(f"{majority.count(n)} {n}" in shown.message for n in names), shown.message
    # run B the same run: the two class maps agree everywhere
    both = webapp.show(str(run), str(run), [str(image)], None, workdir=tmp_path / "w")
    assert f"disagree on 0 of {want_inst.size:,} pixels" in both.message and both.table_b.equals(table)

    # the picture: enlarged image with a legend strip below it, objects drawn in their type's colour
    picture = shown.picture_a
    assert picture.shape[1] == live.MIN_DISPLAY and picture.shape[0] > 26 + round(101 * live.MIN_DISPLAY / 90) + 60
    height = round(101 * live.MIN_DISPLAY / 90)
    drawn = {tuple(int(v) for v in c) for c in picture[26:26 + height].reshape(-1, 3)}
    legend = {tuple(int(v) for v in c) for c in picture[26 + height:].reshape(-1, 3)}
    for k, n in enumerate(names):                        # outlines in the type's colour; every type in the legend
        assert (TYPE_COLOURS[k] in drawn) == (n in majority) and TYPE_COLOURS[k] in legend, n


def test_volume_run_gives_predicts_nifti_with_the_input_affine_and_planes_at_the_true_aspect(runs, tmp_path):
    import nibabel as nib

    volume = nifti(tmp_path / "ct.nii.gz")
    predict_cli(runs / "volumes", volume, tmp_path / "p")
    want = nib.load(str(tmp_path / "p" / "ct.nii.gz"))
    message, pic, _, _, table, _, files, *_ = webapp.show(str(runs / "volumes"), None, [str(volume)], None,
                                                      workdir=tmp_path / "w", axial=0, coronal=100, sagittal=8)
    assert not message.startswith("**error"), message
    got = nib.load(next(f for f in files if f.endswith("_mask.nii.gz")))
    np.testing.assert_allclose(got.affine, nib.load(str(volume)).affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(want.dataobj))
    voxels = int(np.count_nonzero(np.asarray(want.dataobj)))
    assert int(table["voxels"].iloc[0]) == voxels and table["ml"].iloc[0] == pytest.approx(voxels * 4.5 / 1000, 1e-3)
    # RAS volume (D, H, W) = (12, 20, 18) at (3, 1, 1.5) mm: coronal rows are 3 mm, columns 1.5 mm
    pred = live.predict(runs / "volumes", live.read_input([volume]))
    assert pred.image.shape == (12, 20, 18) and pred.spacing == (3.0, 1.0, 1.5)
    assert live.slice_point(pred.image.shape, (0, 100, 8)) == (0, 19, 8)       # slice numbers, clipped
    assert live.slice_point(pred.image.shape) == live.slice_point(pred.image.shape, (None,) * 3) == (6, 10, 9)
    assert live.enlarge(np.zeros((12, 18, 3), np.uint8), 3.0, 1.5, least=1).shape == (24, 18, 3)
    assert live.enlarge(np.zeros((12, 20, 3), np.uint8), 3.0, 1.0, least=60).shape == (108, 60, 3)


def test_dicom_series_uploaded_as_files_is_predicted_like_its_folder(runs, tmp_path):
    import nibabel as nib
    from test_volumes import _write_series

    rng = np.random.default_rng(2)
    stored = (rng.normal(900, 40, (10, 18, 20)) + 300 * (np.mgrid[:10, :18, :20][1] > 9)).astype(np.uint16)
    files = _write_series(tmp_path / "series", stored, spacing=(1.2, 0.8), dz=2.0)
    predict_cli(runs / "volumes", tmp_path / "series", tmp_path / "p")
    want = nib.load(str(tmp_path / "p" / "series.nii.gz"))
    message, pic, _, _, _, _, out, *_ = webapp.show(str(runs / "volumes"), None, [str(f) for f in files], None,
                                                workdir=tmp_path / "w")
    assert message.startswith(f"**DICOM series ({len(files)} files)**"), message
    got = nib.load(next(f for f in out if f.endswith("_mask.nii.gz")))
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(want.dataobj))


def test_classifier_run_gives_the_probabilities_of_classify_predict_and_a_grad_cam(runs, tmp_path):
    from Functions.inference.classifier import predict_images

    image = grey_image(tmp_path / "pet.png", shape=(16, 16))
    want = predict_images(runs / "classes", [image])
    message, pic, _, _, table, _, files, *_ = webapp.show(str(runs / "classes"), str(runs / "classes"), [str(image)],
                                                      None, workdir=tmp_path / "w")
    assert list(table["class"]) == ["cat", "dog"]
    np.testing.assert_allclose(table["probability"], [want["prob_cat"][0], want["prob_dog"][0]], atol=1e-4)
    assert f"A **classes**: {want['predicted'][0]}" in message and "the classifiers agree" in message
    assert pic.shape[2] == 3 and [Path(f).name for f in files] == ["pet_A-classes_gradcam.png",
                                                                    "pet_B-classes_gradcam.png"]


def test_attention_gates_the_page_returns_are_the_gate_layers_of_the_model(runs, tmp_path):
    import keras

    image = grey_image(tmp_path / "gated.png", shape=(16, 16), seed=3)   # the model's own size: no resizing
    shown = webapp.show(str(runs / "gated"), str(runs / "binary"), [str(image)], None, workdir=tmp_path / "w")
    assert not shown.message.startswith("**error"), shown.message
    # the reference: a sub-model ending at the gate layers, on the image min-max scaled by hand
    model = keras.saving.load_model(runs / "gated" / "model.keras")
    probe = keras.Model(model.inputs, [model.get_layer(f"attention_map_{i}").output for i in (1, 2)])
    grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    x = ((grey - grey.min()) / (grey.max() - grey.min()))[None, ..., None]
    want = [keras.ops.convert_to_numpy(m)[0, ..., 0] for m in probe(x)]
    assert [w.shape for w in want] == [(16, 16), (8, 8)] and want[0].std() > 1e-4

    got = live.predict(runs / "gated", live.read_input([image])).gates    # what the page drew (kept)
    assert len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    # one panel per gate, run A only (run B has no gates), captioned with the gate's own range
    assert [text for _, text in shown.gates] == [
        f"A: gate {i} ({w.shape[0]}x{w.shape[1]}): alpha {w.min():.2f}-{w.max():.2f}" for i, w in enumerate(want, 1)]
    assert all(pic.shape == (160, 160, 3) and pic.dtype == np.uint8 for pic, _ in shown.gates)
    assert "2 attention gates" in shown.message
    # the coarse gate's panel: the 8x8 map enlarged (bilinear) to the image, coloured over it
    from Functions.viz.plotting import heatmap_overlay

    up = cv2.resize(want[1], (16, 16), interpolation=cv2.INTER_LINEAR)
    panel = np.repeat(np.repeat(heatmap_overlay(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), up), 10, 0), 10, 1)
    assert np.abs(shown.gates[1][0] / 255.0 - panel).max() < 0.01


def synthetic_clip(path: Path, frames: int = 10, size: int = 64, fps: float = 10.0) -> Path:
    """A grey clip (written in colour by OpenCV, mp4v) of a bright disc moving right over noise."""
    rng = np.random.default_rng(8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    yy, xx = np.mgrid[:size, :size]
    for k in range(frames):
        disc = (yy - size / 2) ** 2 + (xx - 12 - 4 * k) ** 2 < 12 ** 2
        grey = np.clip(50 + 150 * disc + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def decode(path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_video_every_frame_gets_the_predictors_mask_and_an_overlay_video(runs, tmp_path, monkeypatch):
    from Functions.inference.predictor import load_predictor

    clip = synthetic_clip(tmp_path / "clip.mp4")
    frames = decode(clip)
    assert len(frames) == 10
    predictor = load_predictor(runs / "binary")                # a fresh load, not the page's
    want = predictor.predict(frames)
    assert 0 < np.mean(want) < 1 and not np.array_equal(want[0], want[9])     # the disc moves

    shown = webapp.show(str(runs / "binary"), None, [str(clip)], None, workdir=tmp_path / "w")
    assert "10 frames of 64x64 at 10.0 fps" in shown.message and "frames/s" in shown.message, shown.message
    masks = np.load(next(f for f in shown.files if f.endswith("_masks.npz")))["masks"]
    assert masks.shape == (10, 64, 64) and masks.dtype == np.uint8
    for k in range(10):
        np.testing.assert_array_equal(masks[k], want[k])
    overlay = decode(shown.video)
    assert shown.video in shown.files and len(overlay) == 10 and overlay[0].shape == (64, 64, 3)
    assert int(shown.table_a["pixels"].iloc[0]) == int(np.sum(want))

    low = webapp.show(str(runs / "binary"), None, [str(clip)], None, threshold=0.3, workdir=tmp_path / "w")
    masks = np.load(next(f for f in low.files if f.endswith("_masks.npz")))["masks"]
    np.testing.assert_array_equal(masks, np.stack(predictor.predict(frames, threshold=0.3)))

    monkeypatch.setattr(live, "MAX_FRAMES", 4)                 # the bound: the first frames only, and said so
    shutil.copy(clip, tmp_path / "long.mp4")
    cut = webapp.show(str(runs / "binary"), None, [str(tmp_path / "long.mp4")], None, workdir=tmp_path / "w")
    assert "4 frames (the first 4 of 10; at most 4)" in cut.message, cut.message
    np.testing.assert_array_equal(np.load(next(f for f in cut.files if f.endswith("_masks.npz")))["masks"], want[:4])

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    for run, needle in ((runs / "binary", "broken.mp4 could not be decoded as a video"),
                        (runs / "volumes", "2-D segmentation runs only")):
        bad = webapp.show(str(run), None, [str(tmp_path / ("broken.mp4" if "decoded" in needle else "clip.mp4"))],
                          None, workdir=tmp_path / "w")
        assert bad.message.startswith("**error:** ") and "\n" not in bad.message and needle in bad.message, bad.message
        assert bad.video is None and bad.files is None


def test_bad_input_gives_one_message_and_no_exception(runs, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    readme = tmp_path / "readme.txt"
    readme.write_text("hello")
    flat = nifti(tmp_path / "flat.nii.gz", ndim=2)
    image = grey_image(tmp_path / "ok.png")
    empty_run = tmp_path / "runs" / "unfinished"
    empty_run.mkdir(parents=True)
    (empty_run / "config.json").write_text("{}")
    cases = [
        ((str(runs / "binary"), None, [str(text)], None), ("cannot read image", "notes.png")),
        ((str(runs / "binary"), None, [str(readme)], None), ("readme.txt is neither an image",)),
        ((str(runs / "volumes"), None, [str(image)], None), ("segments 3-D volumes", "ok.png is a 2-D image")),
        ((str(runs / "volumes"), None, [str(flat)], None), ("flat.nii.gz", "2-D array")),
        ((str(runs / "binary"), None, [str(nifti(tmp_path / "v.nii.gz"))], None), ("v.nii.gz is a volume",)),
        ((str(empty_run), None, [str(image)], None), ("unfinished has no model.keras",)),
        ((str(runs / "bad_panoptic"), None, [str(image)], None), ("has 3 output channels", "(7 channels)")),
        ((str(runs / "binary"), None, [str(image), str(readme)], None), ("2 files uploaded",)),
        ((str(runs / "binary"), None, None, None), ("no input",)),
        ((None, None, [str(image)], None), ("choose a run first",)),
    ]
    for args, needles in cases:
        out = webapp.show(*args, workdir=tmp_path / "w")
        message = out[0]
        assert message.startswith("**error:** ") and "\n" not in message, message
        assert all(x is None for x in out[1:])
        for needle in needles:
            assert needle in message, (needle, message)


def test_app_command_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from helpers import cli_fails

    cli_fails(capsys, ["app", "--runs", str(tmp_path / "nowhere")], "--runs", "nowhere", "is not a folder")
    cli_fails(capsys, ["app", "--runs", str(tmp_path), "--port", "70000"], "--port")
    monkeypatch.setitem(sys.modules, "gradio", None)                    # as if the [app] extra were missing
    cli_fails(capsys, ["app", "--runs", str(tmp_path)], "pip install -e .[app]")


# ----------------------------------------------------------------------------- the page in a real browser
def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(runs: Path, port: int, log: Path) -> subprocess.Popen:
    """``python -m Functions app`` in a new process; returns once it serves the page (or fails the test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "Code"), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "Functions", "app", "--runs", str(runs), "--port", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app stopped (exit {proc.returncode}):\n{log.read_text()}")
        if f"http://127.0.0.1:{port}" in log.read_text():
            return proc
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"the app did not start within 240 s:\n{log.read_text()}")


def fetch(page, port: int, selector: str, old: str | None = None, timeout: float = 120_000) -> tuple[str, bytes]:
    """The link of the download ``selector`` once it is not ``old`` (a new request's file), and its bytes."""
    page.wait_for_function("([s, old]) => { const a = document.querySelector(s); "
                           "return a !== null && a.getAttribute('href') !== old; }", arg=[selector, old],
                           timeout=timeout)
    href = page.get_attribute(selector, "href")
    return href, page.request.get(href if href.startswith("http") else f"http://127.0.0.1:{port}{href}").body()


def upload(page, path: Path) -> None:
    """Put ``path`` (alone) into the page's upload box and wait until the box lists it."""
    if page.query_selector("#upload td.filename") is not None:
        page.click("#upload button[aria-label='Clear']")
        page.wait_for_selector("#upload td.filename", state="detached")
    page.set_input_files("#upload input[type=file]", str(path))
    page.wait_for_selector(f"#upload td.filename[aria-label='{path.name}']")


def move_slider(page, elem_id: str, value) -> None:
    """Type ``value`` into a Gradio slider's number box and leave it (the slider's release event)."""
    box = f"#{elem_id} input[type=number]"
    page.fill(box, str(value))
    page.press(box, "Tab")


def nifti_bytes(body: bytes, tmp_path: Path, name: str) -> np.ndarray:
    import nibabel as nib

    (tmp_path / name).write_bytes(body)
    return np.asarray(nib.load(str(tmp_path / name)).dataobj)


def test_page_in_headless_chromium_returns_predicts_mask_and_survives_bad_input(runs, tmp_path):
    pytest.importorskip("gradio", reason="the page needs Gradio: pip install -e .[app]")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright: pip install playwright")
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium found (apt-get install -y chromium); the page was not driven in a browser")
    only = tmp_path / "runs"
    shutil.copytree(runs / "binary", only / "binary")
    shutil.copytree(runs / "volumes", only / "volumes")
    image = grey_image(tmp_path / "upload.png", shape=(36, 44), seed=7)
    want = read_png(predict_cli(only / "binary", image, tmp_path / "pred") / "upload.png")
    low = read_png(predict_cli(only / "binary", image, tmp_path / "pred03", "--threshold", "0.4") / "upload.png")
    assert (want > 0).sum() < (low > 0).sum() < low.size
    volume = nifti(tmp_path / "hidden.nii.gz")
    want_3d = np.asarray(__import__("nibabel").load(str(predict_cli(only / "volumes", volume, tmp_path / "p3")
                                                           / "hidden.nii.gz")).dataobj)
    assert 0 < want_3d.mean() < 1
    bad = tmp_path / "broken.png"
    bad.write_text("not an image at all")

    port = free_port()
    proc = start_app(only, port, tmp_path / "app.log")
    try:
        # bound to 127.0.0.1 only: another address of this machine is refused
        other = socket.gethostbyname(socket.gethostname())
        if other != "127.0.0.1":
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=3).close()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.wait_for_selector("#segment")
            assert page.input_value("#run-a input") == "binary (2-D)"
            upload(page, image)
            page.click("#segment")
            href, body = fetch(page, port, "#downloads a[href*='_mask.png']", timeout=180_000)
            got = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(got, want)
            assert "upload.png" in page.inner_text("#message")

            # the threshold moved: the mask predict writes at that threshold
            move_slider(page, "threshold", 0.4)
            _, body = fetch(page, port, "#downloads a[href*='_mask.png']", old=href)
            np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED), low)

            # bad input: one clear message in the page, and the page keeps working
            upload(page, bad)
            page.click("#segment")
            page.wait_for_selector("#message >> text=error:", timeout=60_000)
            message = page.inner_text("#message")
            assert "broken.png" in message and "not an image" in message, message
            upload(page, image)
            page.click("#segment")
            page.wait_for_selector("#message >> text=foreground pixels", timeout=60_000)

            # a hidden NIfTI volume on the 3-D run, browsed slice by slice
            page.click("#run-a input")
            page.get_by_role("option", name="volumes (3-D)").click()
            page.wait_for_selector("#card-a >> text=tiny3d")
            upload(page, volume)
            page.click("#segment")
            href, body = fetch(page, port, "#downloads a[href*='_mask.nii.gz']")
            np.testing.assert_array_equal(nifti_bytes(body, tmp_path, "page.nii.gz"), want_3d)
            # the sliders count slices of the RAS volume (12, 20, 18) and start at the middle ones
            assert [page.get_attribute(f"#{s} input[type=range]", "max") for s in ("axial", "coronal", "sagittal")] \
                == ["11", "19", "17"]
            assert page.input_value("#axial input[type=number]") == "6"
            pred = live.predict(only / "volumes", live.read_input([volume]))
            overlay = "#downloads a[href*='_overlay.png']"
            href, body = fetch(page, port, overlay)
            first = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(first[..., ::-1], live.render(pred, 0.5, (6, 10, 9)))
            move_slider(page, "axial", 2)               # (downloads are named by content: the overlay changes)
            body = fetch(page, port, overlay, old=href)[1]
            moved = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            body = fetch(page, port, "#downloads a[href*='_mask.nii.gz']")[1]
            np.testing.assert_array_equal(nifti_bytes(body, tmp_path, "page2.nii.gz"), want_3d)
            np.testing.assert_array_equal(moved, live.render(pred, 0.5, (2, 10, 9)))    # axial slice 2 drawn
            assert not np.array_equal(moved, first[..., ::-1])
            assert page.input_value("#axial input[type=number]") == "2"
            browser.close()
        assert proc.poll() is None, "the app stopped"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
