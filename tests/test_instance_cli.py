"""``evaluate --task instance`` and ``predict --task instance`` from the command line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from Functions.cli import main
from Functions.data.instances import write_label_map
from Functions.metrics.instance import INSTANCE_COLUMNS, instance_metrics


def _squares(spec, shape=(16, 20)):
    m = np.zeros(shape, np.uint16)
    for label, r0, c0, h, w in spec:
        m[r0:r0 + h, c0:c0 + w] = label
    return m


CASES = {
    # name: (truth spec, prediction spec)
    "identical": ([(1, 0, 0, 4, 4), (2, 6, 8, 4, 4)], [(70, 0, 0, 4, 4), (3, 6, 8, 4, 4)]),
    "split": ([(1, 0, 0, 4, 4)], [(1, 0, 0, 4, 3), (2, 0, 3, 4, 1)]),
    "merged": ([(1, 0, 0, 4, 4), (2, 0, 4, 4, 4)], [(9, 0, 0, 4, 8)]),
    "empty_truth": ([], [(1, 0, 0, 4, 4)]),
    "both_empty": ([], []),
}


def _write_cases(root):
    for name, (t, p) in CASES.items():
        write_label_map(root / "masks" / f"{name}.png", _squares(t))
        write_label_map(root / "preds" / f"{name}.png", _squares(p))


def test_evaluate_instance_folders_csv(tmp_path, capsys):
    _write_cases(tmp_path)
    out = tmp_path / "inst.csv"
    rc = main(["evaluate", "--task", "instance", "--masks", str(tmp_path / "masks"), "--predictions",
               str(tmp_path / "preds"), "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out)
    for col in ["image", "n_true", "n_pred", "ap50", "ap75", "dsb_score", "f1_50", "pq", "sq", "rq", "aji"]:
        assert col in table.columns
    assert list(table["image"]) == sorted(CASES) + ["mean"]
    rows = table.set_index("image")
    for name, (t, p) in CASES.items():
        want = instance_metrics(_squares(t), _squares(p))
        for col in INSTANCE_COLUMNS:
            assert rows.loc[name, col] == pytest.approx(want[col], abs=1e-9), (name, col)
    assert rows.loc["split", "dsb_score"] == pytest.approx(0.25)
    assert rows.loc["merged", "aji"] == pytest.approx(0.5)
    assert rows.loc["both_empty", "dsb_score"] == 1.0 and rows.loc["empty_truth", "dsb_score"] == 0.0
    assert rows.loc["mean", "dsb_score"] == pytest.approx(np.mean([1.0, 0.25, 0.0, 0.0, 1.0]))
    assert "dsb_score" in capsys.readouterr().out


def test_evaluate_instance_errors_are_one_line(tmp_path, capsys):
    _write_cases(tmp_path)
    write_label_map(tmp_path / "preds" / "split.png", np.zeros((8, 8), np.uint16))  # wrong size
    assert main(["evaluate", "--task", "instance", "--masks", str(tmp_path / "masks"), "--predictions",
                 str(tmp_path / "preds"), "--out", str(tmp_path / "x.csv")]) == 2
    text = capsys.readouterr().err.strip()
    assert text.startswith("error: ") and "split" in text and "size mismatch" in text and "\n" not in text
    assert not (tmp_path / "x.csv").exists()


def test_evaluate_components_option_labels_binary_masks(tmp_path):
    t = np.zeros((12, 12), np.uint8)
    t[0:4, 0:4] = 255
    t[6:10, 6:10] = 255
    for d in ("m", "p"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "a.png"), t)
    out = tmp_path / "c.csv"
    assert main(["evaluate", "--task", "instance", "--components", "--masks", str(tmp_path / "m"),
                 "--predictions", str(tmp_path / "p"), "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["n_true"] == 2 and row["dsb_score"] == 1.0


def _tiny_instance_model(path, channels=3):
    """A two-layer model saved with a run's config.json: predicts on any 16x16 grey image."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(channels, 1, activation="softmax" if channels > 1 else "sigmoid")])
    path.mkdir(parents=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"task": "instance", "normalization": "minmax", "threshold": 0.5}))
    return model


def test_predict_task_instance_writes_16bit_label_maps_and_overlays(tmp_path):
    _tiny_instance_model(tmp_path / "run")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        cv2.imwrite(str(imgs / f"im{k}.png"), rng.integers(0, 255, (20, 24), dtype=np.uint8))
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(tmp_path / "run"), "--images", str(imgs), "--out", str(out),
                 "--overlay"]) == 0
    for k in range(2):
        lab = cv2.imread(str(out / f"im{k}.png"), cv2.IMREAD_UNCHANGED)
        assert lab.dtype == np.uint16 and lab.shape == (20, 24)
        ov = cv2.imread(str(out / "overlays" / f"im{k}.png"), cv2.IMREAD_UNCHANGED)
        assert ov.shape == (20, 24, 3)
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == ["image", "mask", "width", "height", "foreground", "objects"]
    # what was written is exactly the decoded model output
    from Functions.data.imaging import read_image
    from Functions.inference.instances import predict_instances
    from Functions.inference.predictor import load_predictor

    want = predict_instances(load_predictor(tmp_path / "run"), [read_image(imgs / "im0.png")])[0]
    np.testing.assert_array_equal(cv2.imread(str(out / "im0.png"), cv2.IMREAD_UNCHANGED), want)


def test_predict_task_instance_refuses_a_multiclass_model(tmp_path, capsys):
    _tiny_instance_model(tmp_path / "run", channels=4)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), np.zeros((16, 16), np.uint8))
    assert main(["predict", "--model", str(tmp_path / "run"), "--images", str(imgs), "--out", str(tmp_path / "o"),
                 "--task", "instance"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "4 output channels" in err and "\n" not in err


# ----------------------------------------------------------------------------- train --task instance
def _dsb_tree(root, n=8, size=16):
    """DSB2018 layout: <id>/images/<id>.png and <id>/masks/<k>.png, one PNG per nucleus (two touching)."""
    rng = np.random.default_rng(1)
    for i in range(n):
        sid = f"s{i:02d}"
        (root / sid / "images").mkdir(parents=True)
        (root / sid / "masks").mkdir()
        r = int(rng.integers(2, 8))
        a = np.zeros((size, size), np.uint8)
        a[r:r + 5, 2:7] = 255
        b = np.zeros((size, size), np.uint8)
        b[r:r + 5, 7:12] = 255  # touches a
        img = np.clip(20 + ((a | b) > 0) * 150 + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / sid / "images" / f"{sid}.png"), img)
        cv2.imwrite(str(root / sid / "masks" / "n1.png"), a)
        cv2.imwrite(str(root / sid / "masks" / "n2.png"), b)
    return root


TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "4", "--model-option", "base_filters=4",
        "--model-option", "depth=2", "--progress-every", "0", "--verbose", "0", "--lr-schedule", "constant"]


def test_train_task_instance_then_predict_and_evaluate_the_run(tmp_path, capsys):
    data = _dsb_tree(tmp_path / "stage1_train")
    run = tmp_path / "run"
    assert main(["train", "--task", "instance", "--data", str(data), "--out", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "DSB score" in out and "AP50" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "instance" and cfg["num_classes"] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("dsb_score", "ap50", "ap75", "f1_50", "pq", "sq", "rq", "aji", "pixel_dice"):
        assert 0.0 <= metrics[key] <= 1.0, key
    table = pd.read_csv(run / "test_metrics.csv")
    assert list(table["image"])[-1] == "mean" and "dsb_score" in table
    # predict: the run's task (instance) is read from config.json
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--images", str(data / "s00" / "images"), "--out", str(pred)]) == 0
    assert cv2.imread(str(pred / "s00.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    # evaluate --task instance --run: label maps at each image's own size, one row per test image + mean
    ev = tmp_path / "ev"
    assert main(["evaluate", "--task", "instance", "--run", str(run), "--out", str(ev)]) == 0
    ev_table = pd.read_csv(ev / "instance_metrics.csv")
    assert list(ev_table.columns)[:12] == ["image"] + INSTANCE_COLUMNS[:11]
    assert ev_table["n_true"].iloc[:-1].tolist() == [2] * (len(ev_table) - 1)


def test_train_task_instance_refuses_masks_of_another_size(tmp_path, capsys):
    data = _dsb_tree(tmp_path / "stage1_train")
    cv2.imwrite(str(data / "s03" / "masks" / "n2.png"), np.zeros((12, 16), np.uint8))
    assert main(["train", "--task", "instance", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "n2.png" in err and "s03" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def _dsb_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "dsb_instance.py"
    spec = importlib.util.spec_from_file_location("dsb_instance", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_dsb_instance_benchmark_recipes_give_each_model_its_flags(tmp_path):
    bench = _dsb_benchmark()
    tuned = bench.parse(["--root", "R", "--", "--class-weights", "1", "1", "10"])
    inst, base = bench.train_command(tuned, "instance", tmp_path / "i"), bench.train_command(tuned, "baseline", tmp_path / "b")
    assert inst[3:6] == ["train", "--task", "instance"] and "--task" not in base
    for cmd in (inst, base):
        assert cmd[cmd.index("--patch-sampling") + 1] == "area" and "--tta" in cmd and "--mixed-precision" in cmd
        assert cmd[cmd.index("--keep") + 1] == "last"
    assert inst[inst.index("--boundary-width") + 1] == "2" and "--boundary-width" not in base
    assert "--class-weights" not in base[:-4] and "--loss" not in base
    assert inst[-4:] == ["--class-weights", "1", "1", "10"]           # the user's flags come last and win
    plain = bench.parse(["--recipe", "defaults"])
    for kind in ("instance", "baseline"):
        cmd = bench.train_command(plain, kind, tmp_path / kind)
        assert not {"--tta", "--patch-sampling", "--loss", "--class-weights", "--boundary-width",
                    "--mixed-precision", "--keep"} & set(cmd)
    # the binary run is scored as instances with flips exactly when it was trained with them
    assert bench.score_baseline_command(tuned, tmp_path / "b", tmp_path / "s")[-1] == "--tta"
    assert "--tta" not in bench.score_baseline_command(plain, tmp_path / "b", tmp_path / "s")
    user = bench.parse(["--recipe", "defaults", "--", "--tta"])
    assert bench.score_baseline_command(user, tmp_path / "b", tmp_path / "s")[-1] == "--tta"


def test_dsb_instance_benchmark_runs_on_a_tiny_tree(tmp_path, capsys, monkeypatch):
    """benchmarks/dsb_instance.py end to end on 12 synthetic fields in the DSB2018 layout: both models trained with
    the tuned recipe, the binary one scored as instances, the table printed. The benchmark's commands run in this
    process (its ``run`` helper starts a fresh Python for each; the commands are the same)."""
    from Functions.cli import main

    bench = _dsb_benchmark()
    ran = []

    def in_process(cmd):
        assert cmd[1:3] == ["-m", "Functions"], cmd
        ran.append(cmd[3])
        assert main(cmd[3:]) == 0, cmd
        return 1.0

    monkeypatch.setattr(bench, "run", in_process)
    root = _dsb_tree(tmp_path / "stage1_train", n=12, size=32)
    out_dir = tmp_path / "bench"
    assert bench.main(["--root", str(root), "--epochs", "1", "--minutes", "1", "--patch", "16", "--out", str(out_dir),
                       "--", "--model-option", "depth=2", "--model-option", "base_filters=4"]) == 0
    assert ran == ["train", "evaluate", "train"]
    out = capsys.readouterr().out
    assert "3-class U-Net + watershed" in out and "binary U-Net + connected components" in out
    assert "recipe tuned, test-time flips" in out
    instance = json.loads((out_dir / "instance" / "metrics.json").read_text())
    assert instance["task"] == "instance" and instance["epochs_trained"] == 1
    table = pd.read_csv(out_dir / "binary-instances" / "instance_metrics.csv")
    assert list(table["image"])[-1] == "mean" and len(table) - 1 == instance["n_images"]
    for name in ("3-class U-Net + watershed", "binary U-Net + connected components"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        assert all(0 <= float(v) <= 1 for v in row.strip("| ").split(" | ")[4:]), row


def test_train_task_instance_on_patches_scores_label_maps_at_their_own_size(tmp_path, capsys):
    """--task instance --patch-size: 3-class targets from full-size label maps, scored at the original size."""
    data = _dsb_tree(tmp_path / "stage1_train", n=9, size=20)
    big = data / "s00"                        # one larger, non-square field with three nuclei, two touching
    lab = np.zeros((24, 36), np.int32)
    lab[4:10, 4:10], lab[4:10, 10:16], lab[14:20, 24:30] = 1, 2, 3
    for k in (1, 2, 3):
        cv2.imwrite(str(big / "masks" / f"n{k}.png"), ((lab == k) * 255).astype(np.uint8))
    cv2.imwrite(str(big / "images" / "s00.png"), ((lab > 0) * 170 + 20).astype(np.uint8))
    run = tmp_path / "run"
    tiny = [a for a in TINY if a not in ("--image-size", "16")]
    assert main(["train", "--task", "instance", "--data", str(data), "--out", str(run), "--patch-size", "16",
                 "--test-fraction", "0.34", *tiny]) == 0
    out = capsys.readouterr().out
    assert "original resolution" in out and "DSB score" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scored_at"] == "original resolution" and metrics["task"] == "instance"
    assert abs(metrics["iou"] - np.mean([d / (2 - d) for d in pd.read_csv(run / "test_metrics.csv")["pixel_dice"]
                                         .to_numpy()[:-1]])) < 1e-9
    table = pd.read_csv(run / "test_metrics.csv")
    split = json.loads((run / "split.json").read_text())
    expected = [3 if "s00" in p else 2 for p in split["test"]]
    assert table["n_true"].iloc[:-1].tolist() == expected     # true instances read at full size, not resized
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["patch_size"] == 16 and cfg["task"] == "instance"
    # the watershed was tuned on the validation split (never the test split) and the run keeps the choice
    tuned = json.loads((run / "instance_decoder.json").read_text())
    assert tuned["n_images"] == len(split["val"]) and tuned["chosen"] == metrics["decoder"]
    assert tuned["chosen_score"] >= tuned["default_score"] and "Watershed tuned on the" in out
    # predict by sliding window keeps the non-square field's own size
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--images", str(big / "images"), "--out", str(pred)]) == 0
    assert cv2.imread(str(pred / "s00.png"), cv2.IMREAD_UNCHANGED).shape == (24, 36)


def test_train_task_instance_contact_trains_four_classes_then_predicts_and_evaluates(tmp_path, capsys):
    """--boundaries contact: a 4-class head (background, interior, rim, contact) trained on patches; predict and
    evaluate read the run's settings and decode rim + contact as the boundary."""
    import keras

    data = _dsb_tree(tmp_path / "stage1_train", n=9, size=20)
    tiny = [a for a in TINY if a not in ("--image-size", "16")]
    run = tmp_path / "run"
    flags = ["train", "--task", "instance", "--data", str(data), "--patch-size", "16", "--boundaries", "contact",
             "--boundary-width", "2", "--loss", "cce_dice", *tiny]
    assert main([*flags, "--out", str(run), "--class-weights", "1", "1", "5", "5"]) == 0
    assert "DSB score" in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["num_classes"] == 4 and cfg["boundaries"] == "contact" and cfg["class_weights"] == [1, 1, 5, 5]
    assert json.loads((run / "classes.json").read_text())["class_names"] == ["background", "interior", "rim",
                                                                            "contact"]
    model = keras.saving.load_model(run / "model.keras", compile=False, safe_mode=True)
    assert model.outputs[-1].shape[-1] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "instance" and 0.0 <= metrics["dsb_score"] <= 1.0
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--images", str(data / "s00" / "images"), "--out", str(pred)]) == 0
    assert cv2.imread(str(pred / "s00.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    ev = tmp_path / "ev"
    assert main(["evaluate", "--task", "instance", "--run", str(run), "--out", str(ev)]) == 0
    assert pd.read_csv(ev / "instance_metrics.csv")["image"].iloc[-1] == "mean"
    capsys.readouterr()
    # three class weights for four classes, or --num-classes 3: one error line naming the flag, nothing written
    for bad, field in ((["--class-weights", "1", "1", "5"], "--class-weights"), (["--num-classes", "3"], "--num-classes")):
        assert main([*flags, "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and field in err and "contact" in err and "\n" not in err
        assert not (tmp_path / "bad").exists()


def test_predict_task_instance_decodes_a_four_class_contact_model(tmp_path):
    from Functions.inference.instances import predict_instances
    from Functions.inference.predictor import load_predictor

    _tiny_instance_model(tmp_path / "run", channels=4)
    cfg = tmp_path / "run" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "boundaries": "contact"}))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    image = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    cv2.imwrite(str(imgs / "a.png"), image)
    assert main(["predict", "--model", str(tmp_path / "run"), "--images", str(imgs), "--out", str(tmp_path / "o"),
                 "--task", "instance"]) == 0
    want = predict_instances(load_predictor(tmp_path / "run"), [image[..., None]])[0]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "o" / "a.png"), cv2.IMREAD_UNCHANGED), want)


def test_tune_decoder_picks_thresholds_on_validation_and_predict_uses_them(tmp_path):
    """Interior probabilities of 0.45: the default marker threshold (0.5) finds no marker, so each touching pair
    is one unmarked piece of foreground, kept as one merged object; 0.4 finds both nuclei."""
    from types import SimpleNamespace

    from Functions.data.discovery import find_samples
    from Functions.data.instances import read_instances
    from Functions.evaluation.instance import predict_and_score, tune_decoder

    data = _dsb_tree(tmp_path / "stage1_train", n=3, size=16)
    samples = find_samples(data)

    def probs_for(sample):
        lab = read_instances(sample)
        p = np.zeros(lab.shape + (3,), np.float32)
        p[..., 0] = 1.0
        fg = lab > 0
        edge = fg & (np.roll(lab, 1, axis=1) != lab) & (np.roll(lab, 1, axis=1) > 0)   # the shared edge
        p[fg] = (0.2, 0.45, 0.35)
        p[edge] = (0.2, 0.1, 0.7)
        return p

    table = {str(s.image): probs_for(s) for s in samples}
    images = {}
    for s in samples:
        from Functions.data.imaging import read_image
        images[read_image(s.image).tobytes()] = table[str(s.image)]
    fake = SimpleNamespace(threshold=0.5, decoder=None,
                           probabilities=lambda ims, batch_size=8, tta=False: [images[im.tobytes()] for im in ims])
    tuned = tune_decoder(fake, samples, grid={"min_size": (4,), "min_marker_size": (2,)})
    assert tuned["default_score"] == 0.0 and tuned["chosen_score"] == 1.0
    assert tuned["chosen"]["interior_threshold"] <= 0.4 and tuned["n_images"] == 3
    assert len(tuned["trials"]) == 1 + 8 * 5 - 1      # the default is one of the grid points: scored once
    # the chosen settings travel with the predictor: every nucleus found, each pair split
    fake.decoder = tuned["chosen"]
    scored, _ = predict_and_score(fake, samples)
    assert scored["n_pred"].iloc[:-1].tolist() == [2, 2, 2] and scored["dsb_score"].iloc[-1] == 1.0
    fake.decoder = None
    assert predict_and_score(fake, samples)[0]["n_pred"].iloc[:-1].tolist() == [1, 1, 1]     # the pair merged


def _kinds_tree(root, n_each=5):
    """DSB2018 layout with two kinds of image: grey fluorescence (``f..``: two nuclei side by side) and colour
    stain (``h..``: one wide nucleus).  Returns ``(samples, probabilities of each image by its bytes)``."""
    from Functions.data.discovery import find_samples
    from Functions.data.imaging import read_image

    probs = {}
    rng = np.random.default_rng(3)
    for i in range(2 * n_each):
        colour = i >= n_each
        sid = f"{'h' if colour else 'f'}{i:02d}"
        (root / sid / "images").mkdir(parents=True)
        (root / sid / "masks").mkdir()
        objects = [(4, 2, 10, 14)] if colour else [(4, 2, 10, 8), (4, 8, 10, 14)]   # rows r0:r1, columns c0:c1
        p = np.zeros((16, 16, 3), np.float32)
        p[..., 0] = 1.0
        for k, (r0, c0, r1, c1) in enumerate(objects):
            m = np.zeros((16, 16), np.uint8)
            m[r0:r1, c0:c1] = 255
            cv2.imwrite(str(root / sid / "masks" / f"n{k}.png"), m)
            p[r0:r1, c0:c1] = (0.02, 0.95, 0.03)
        # fluorescence: the two nuclei meet in columns 7-8 with interior 0.75 and no boundary (only a marker
        # threshold of 0.8 or more splits them); stain: the one nucleus has a 0.65 trough in columns 7-8
        # (a threshold above 0.65 cuts it in two)
        p[4:10, 7:9] = (0.05, 0.65, 0.30) if colour else (0.05, 0.75, 0.20)
        fg = np.zeros((16, 16), bool)
        for r0, c0, r1, c1 in objects:
            fg[r0:r1, c0:c1] = True
        base = np.where(fg, 200, 20).astype(np.uint8) + rng.integers(0, 5, (16, 16)).astype(np.uint8)
        img = (np.dstack([255 - base, 255 - base // 2, 255 - base // 3]) if colour
               else np.repeat(base[..., None], 3, axis=-1))
        cv2.imwrite(str(root / sid / "images" / f"{sid}.png"), img)
        probs[read_image(root / sid / "images" / f"{sid}.png").tobytes()] = p
    return find_samples(root), probs


def test_tune_decoder_tunes_each_kind_of_image_on_its_own(tmp_path):
    """No one marker threshold suits both kinds (fluorescence needs >= 0.8 to split a pair, stain <= 0.6 to keep
    a nucleus whole): the general search scores 0.5, each kind's own search 1.0, and prediction picks each
    image's settings by its kind."""
    from types import SimpleNamespace

    from Functions.evaluation.instance import describe_decoder, predict_and_score, tune_decoder
    from Functions.inference.instances import decoder_settings, image_kind

    samples, probs = _kinds_tree(tmp_path / "stage1_train")
    from Functions.data.imaging import read_image
    assert [image_kind(read_image(s.image)) for s in samples] == ["dark"] * 5 + ["colour"] * 5
    fake = SimpleNamespace(threshold=0.5, decoder=None,
                           probabilities=lambda ims, batch_size=8, tta=False: [probs[im.tobytes()] for im in ims])
    grid = {"min_size": (4,), "min_marker_size": (2,), "foreground_threshold": (0.5,)}
    tuned = tune_decoder(fake, samples, grid=grid)
    assert tuned["general_score"] == 0.5 and tuned["chosen_score"] == 1.0
    # the general search keeps the default 0.5 (ties keep the earlier setting): right for the stain, so only
    # fluorescence gets settings of its own
    assert tuned["chosen"]["interior_threshold"] == 0.5 and list(tuned["chosen"]["by_kind"]) == ["dark"]
    assert decoder_settings(tuned["chosen"], kind="dark")["interior_threshold"] >= 0.8
    assert decoder_settings(tuned["chosen"], kind="colour")["interior_threshold"] <= 0.6
    assert tuned["kinds"] == {"dark": {"n_images": 5, "general_score": 0.0, "chosen_score": 1.0},
                              "colour": {"n_images": 5, "general_score": 1.0, "chosen_score": 1.0}}
    assert "; dark images: interior_threshold 0.8" in describe_decoder(tuned["chosen"])
    assert decoder_settings(tuned["chosen"], kind="bright") == decoder_settings(tuned["chosen"])  # unseen kind
    fake.decoder = tuned["chosen"]
    scored, _ = predict_and_score(fake, samples)
    assert scored["n_pred"].iloc[:-1].tolist() == [2] * 5 + [1] * 5 and scored["dsb_score"].iloc[-1] == 1.0
    # a kind with fewer images than min_kind_images keeps the general settings
    few = tune_decoder(fake, samples, grid=grid, min_kind_images=6)
    assert "by_kind" not in few["chosen"] and few["chosen_score"] == few["general_score"] == 0.5
    assert tune_decoder(fake, samples, grid=grid, by_kind=False)["kinds"] == {}


@pytest.mark.parametrize("patch", [None, 16])
def test_boundary_width_reaches_the_training_targets(tmp_path, patch):
    """--boundary-width 2: the 3-class targets of the training split are three_class_target(labels, 2), on the
    resize path and on the native-resolution patch path; 0 is refused naming the flag."""
    from Functions.base.errors import UserError
    from Functions.data.instance_targets import three_class_target
    from Functions.data.instances import read_instances
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.tasks import task_for

    data = _dsb_tree(tmp_path / "stage1_train", n=6, size=16)
    config = TrainConfig(data=str(data), task="instance", image_size=16, patch_size=patch, boundary_width=2,
                         val_fraction=0.2, test_fraction=0.2, seed=0)
    config.validate()
    prepared = task_for(config).prepare(config)
    _, masks, samples = prepared["train"]
    for m, s in zip(masks, samples):
        want = three_class_target(read_instances(s, (16, 16)), 2)
        assert np.array_equal(np.asarray(m).reshape(16, 16), want)
        assert (want == 2).sum() > (three_class_target(read_instances(s, (16, 16)), 1) == 2).sum()
    with pytest.raises(UserError, match="boundary_width"):
        TrainConfig(task="instance", boundary_width=0).validate()
    with pytest.raises(UserError, match="--task instance"):
        TrainConfig(boundary_width=2).validate()                    # a binary run has no boundary class


@pytest.mark.parametrize("patch,mode", [(None, "touching"), (16, "touching"), (16, "both")])
def test_boundary_modes_reach_the_training_targets(tmp_path, patch, mode):
    """--boundaries touching / both: the training targets are three_class_target(labels, width, mode) on both data
    paths (touching: fewer boundary pixels than the default rims); a bad value or a binary run is refused."""
    from Functions.base.errors import UserError
    from Functions.data.instance_targets import three_class_target
    from Functions.data.instances import read_instances
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.tasks import task_for

    data = _dsb_tree(tmp_path / "stage1_train", n=6, size=16)
    config = TrainConfig(data=str(data), task="instance", image_size=16, patch_size=patch, boundary_width=2,
                         boundaries=mode, val_fraction=0.2, test_fraction=0.2, seed=0)
    config.validate()
    _, masks, samples = task_for(config).prepare(config)["train"]
    for m, s in zip(masks, samples):
        labels = read_instances(s, (16, 16))
        want = three_class_target(labels, 2, mode)
        assert np.array_equal(np.asarray(m).reshape(16, 16), want)
        if mode == "touching":
            assert (want == 2).sum() < (three_class_target(labels, 2) == 2).sum()
    with pytest.raises(UserError, match="boundaries"):
        TrainConfig(task="instance", boundaries="inner").validate()
    with pytest.raises(UserError, match="--task instance"):
        TrainConfig(boundaries="touching").validate()


@pytest.mark.parametrize("text", ['{"chosen": {"interior_threshold": 0.6, "by_kind": ["dark"]}}', '["chosen"]',
                                  '{"chosen": {"by_kind": {"dark": 0.7}}}'])
def test_a_damaged_instance_decoder_json_gets_one_line_naming_it(tmp_path, text):
    from Functions.base.errors import UserError
    from Functions.inference.predictor import run_settings

    (tmp_path / "instance_decoder.json").write_text(text)
    with pytest.raises(UserError, match="instance_decoder.json") as info:
        run_settings(tmp_path / "model.keras")
    assert "\n" not in str(info.value) and "repair it or move it away" in str(info.value)


def test_run_settings_read_the_kinds_of_a_tuned_decoder(tmp_path):
    from Functions.inference.instances import decoder_settings
    from Functions.inference.predictor import run_settings

    chosen = {"interior_threshold": 0.7, "min_size": 4, "by_kind": {"colour": {"interior_threshold": 0.5}}}
    (tmp_path / "instance_decoder.json").write_text(json.dumps({"chosen": chosen}))
    decoder = run_settings(tmp_path / "model.keras")["decoder"]
    assert decoder_settings(decoder, kind="colour")["interior_threshold"] == 0.5
    assert decoder_settings(decoder, kind="dark")["interior_threshold"] == 0.7
    assert decoder_settings(decoder, min_size=9, kind="colour")["min_size"] == 9


def test_evaluate_task_instance_refuses_a_run_whose_head_it_cannot_decode(tmp_path, capsys):
    """A 4-channel model whose run did not draw --boundaries contact: one line naming the run, nothing written."""
    _tiny_instance_model(tmp_path / "run", channels=4)
    data = _dsb_tree(tmp_path / "stage1_train", n=2)
    out = tmp_path / "ev"
    assert main(["evaluate", "--task", "instance", "--run", str(tmp_path / "run"), "--data", str(data),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert str(tmp_path / "run") in err and "4 output channels" in err and "train --task instance" in err
    assert not out.exists()
