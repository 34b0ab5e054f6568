"""The planner (Functions.planning): fingerprints of small hand-made trees, the rules' choices and reasons,
the precedence defaults < plan < recipe file < flags on a real parse, recipe round trips and errors, and
``train --help`` / ``--help-all``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from Functions.cli import build_parser, main
from Functions.planning.fingerprint import fingerprint, image_modality, touching_objects
from Functions.planning.plan import make_plan
from Functions.base.errors import UserError
from Functions.planning.recipes import read_recipe, write_recipe
from Functions.planning.rules import plan_rules

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(array))


def _pairs(root: Path, images: dict) -> Path:
    """``images/<name>.png`` + ``masks/<name>.png`` (0/255) from ``{name: (image, mask)}``."""
    for name, (image, mask) in images.items():
        _write(root / "images" / f"{name}.png", image)
        _write(root / "masks" / f"{name}.png", (np.asarray(mask) > 0).astype(np.uint8) * 255)
    return root


def _fluorescence(shape=(32, 32), squares=((4, 4, 6), (20, 18, 8))):
    """Black background (10), bright squares (200): ``(image, mask)``; ``squares`` = (row, col, side)."""
    image = np.full(shape, 10, np.uint8)
    mask = np.zeros(shape, np.uint8)
    for r, c, s in squares:
        image[r:r + s, c:c + s] = 200
        mask[r:r + s, c:c + s] = 1
    return image, mask


def _parse(argv):
    args = build_parser("train").parse_args(["train", *argv])
    args.command_argv = list(argv)
    return args


# ----------------------------------------------------------------------------- fingerprints
def test_fluorescence_fingerprint_values_and_plan(tmp_path):
    root = _pairs(tmp_path / "fl", {f"f{i}": _fluorescence() for i in range(3)})
    fp = fingerprint(str(root), seed=0)
    # hand-computed: two squares of 36 and 64 px on 32 x 32 = 100 / 1024 foreground; none touching
    assert (fp.dims, fp.n_samples, fp.n_measured, fp.channels) == (2, 3, 3, 1)
    assert fp.size_median == [32, 32] and fp.size_spread == 1.0
    assert fp.modality == "fluorescence" and fp.modality_shares == {"fluorescence": 1.0}
    assert fp.mask_kind == "binary" and fp.n_classes == 2
    assert fp.foreground_share == pytest.approx(100 / 1024, abs=1e-4)
    assert fp.objects_per_image == 2 and fp.object_area_median == 50.0 and fp.touching_share == 0.0
    # identical pictures are near-duplicates of each other (all three), so the split keeps them together
    assert (fp.hashed, fp.near_duplicate_samples) == (3, 3)
    assert fp.intensity["p0_5"] == 10.0 and fp.intensity["p99_5"] == 200.0
    choices = {c.field: c for c in plan_rules(fp)}
    assert choices["patch_size"].value is None and "resize" in choices["patch_size"].reason
    assert choices["augment"].value == "light" and "fluorescence" in choices["augment"].reason
    assert choices["near_duplicates"].value is True and "3 of 3" in choices["near_duplicates"].reason
    assert (choices["tta"].value, choices["epochs"].value, choices["keep"].value) == (False, 25, "best")


def test_brightfield_and_ultrasound_modalities():
    image, mask = _fluorescence()
    bright = 255 - image                                  # dark objects on a light field
    assert image_modality(bright[..., None], mask) == "brightfield"
    assert image_modality(image[..., None], mask) == "fluorescence"
    dark_lesion = np.full((32, 32), 90, np.uint8)         # grey speckle field, a darker lesion, dark corners
    dark_lesion[:8] = 0
    dark_lesion[:20] = 0
    dark_lesion[22:28, 10:20] = 30
    lesion = np.zeros((32, 32), np.uint8)
    lesion[22:28, 10:20] = 1
    assert image_modality(dark_lesion[..., None], lesion) == "ultrasound"
    colour = np.stack([np.full((32, 32), 230, np.uint8), np.full((32, 32), 180, np.uint8),
                       np.full((32, 32), 220, np.uint8)], -1)
    colour[10:20, 10:20] = (120, 40, 160)                 # purple nuclei on a pink field: stained (H&E)
    assert image_modality(colour, None) == "stained"


def test_brightfield_tree_and_native_patches_for_mixed_sizes(tmp_path):
    small, big = _fluorescence((32, 32)), _fluorescence((64, 96), ((4, 4, 6), (30, 50, 10)))
    root = _pairs(tmp_path / "bf", {"a": (255 - small[0], small[1]), "b": (255 - big[0], big[1]),
                                    "c": (255 - small[0], small[1])})
    fp = fingerprint(str(root), seed=0)
    assert fp.modality == "brightfield"
    assert fp.size_min == [32, 32] and fp.size_max == [64, 96] and fp.size_median == [32, 32]
    assert fp.size_spread == 6.0                          # 64 * 96 / (32 * 32)
    plan = {c.field: c for c in plan_rules(fp, time_budget=10)}
    assert plan["patch_size"].value == 32 and "native" in plan["patch_size"].reason   # median side 32 < 128
    assert plan["patch_sampling"].value == "area" and plan["patches_per_image"].value == 2
    assert plan["model_options"].value == {"depth": 2} and "8 px across" in plan["model_options"].reason
    assert (plan["keep"].value, plan["tta"].value, plan["epochs"].value) == ("last", True, 200)
    assert "--image-size" in {c.field: c for c in plan_rules(fp, given={"image_size"})}["patch_size"].reason


def test_touching_instances_fingerprint_and_instance_plan(tmp_path):
    # DSB2018 layout: <id>/images/<id>.png and one mask file per object; objects 1 and 2 share an edge
    shapes = {"a": [(2, 2, 4, 4), (2, 6, 4, 4), (12, 12, 3, 3)]}
    root = tmp_path / "dsb"
    for i in range(3):
        sid = f"s{i}"
        image = np.full((20, 20), 5, np.uint8)
        for k, (r, c, h, w) in enumerate(shapes["a"]):
            image[r:r + h, c:c + w] = 180
            m = np.zeros((20, 20), np.uint8)
            m[r:r + h, c:c + w] = 255
            _write(root / sid / "masks" / f"m{k}.png", m)
        _write(root / sid / "images" / f"{sid}.png", image)
    fp = fingerprint(str(root), seed=0)
    assert fp.mask_kind == "instances" and fp.objects_per_image == 3
    assert fp.touching_share == pytest.approx(2 / 3, abs=1e-4)   # 2 of 3 objects touch, in every image
    assert fp.object_area_median == 16.0                           # areas 16, 16, 9
    assert fp.foreground_share == pytest.approx(41 / 400, abs=1e-4)
    plan = {c.field: c for c in plan_rules(fp, task="instance")}
    assert plan["boundaries"].value == "both" and plan["boundary_width"].value == 2
    assert plan["class_weights"].value == [1.0, 1.0, 5.0] and plan["loss"].value == "cce_dice"
    assert "67% of objects touch" in plan["class_weights"].reason
    semantic = {c.field: c for c in plan_rules(fp)}
    assert semantic["task"].value == "semantic" and "--task instance" in semantic["task"].reason
    assert "boundaries" not in semantic


def test_touching_objects_counts_face_neighbours_only():
    lab = np.zeros((6, 6), int)
    lab[0:2, 0:2], lab[0:2, 2:4] = 1, 2                  # share an edge
    lab[3, 3], lab[4, 4] = 3, 4                          # diagonal only: not touching
    assert touching_objects(lab) == (4, 2)


def test_decathlon_volume_fingerprint_and_plan(tmp_path):
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "Task99_Tiny"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([1.0, 1.5, 2.0, 1.0])               # x 1 mm, y 1.5 mm, z 2 mm (RAS)
    training = []
    for i in range(3):
        image = np.full((5, 6, 4), 100.0, np.float32)    # (x, y, z) in the file
        label = np.zeros((5, 6, 4), np.uint8)
        label[1:3, 2:4, 1:3] = 1                         # 2 x 2 x 2 = 8 voxels of 120
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"c{i}.nii.gz"))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": "Tiny", "modality": {"0": "MRI"},
                                                   "labels": {"0": "background", "1": "a"}, "training": training}))
    fp = fingerprint(str(root), seed=0)
    assert (fp.dims, fp.n_samples, fp.modality, fp.modality_source) == (3, 3, "MRI", "dataset.json")
    assert fp.size_median == [4, 6, 5] and fp.spacing_median == [2.0, 1.5, 1.0]    # (D, H, W), (z, y, x)
    assert fp.foreground_share == pytest.approx(8 / 120, abs=1e-4) and fp.object_area_median == 8.0
    plan = {c.field: c for c in plan_rules(fp)}
    assert plan["dims"].value == 3 and plan["intensity"].value == "mri" and plan["model"].value == "unet3d"
    assert plan["target_spacing"].value is None and "2 x 1.5 x 1 mm" in plan["target_spacing"].reason


def test_unreadable_image_names_the_file(tmp_path):
    root = _pairs(tmp_path / "bad", {f"f{i}": _fluorescence() for i in range(3)})
    (root / "images" / "f1.png").write_bytes(b"not a png")
    with pytest.raises(Exception) as info:
        fingerprint(str(root))
    assert "f1.png" in str(info.value)


# ----------------------------------------------------------------------------- precedence and recipes
def test_precedence_defaults_plan_file_flags(tmp_path):
    from Functions.commands.train import resolve

    small, big = _fluorescence((32, 32)), _fluorescence((64, 96), ((4, 4, 6), (30, 50, 10)))
    root = _pairs(tmp_path / "mixed", {"a": small, "b": big, "c": small})
    recipe = tmp_path / "r.toml"
    recipe.write_text('epochs = 7\nbatch_size = 4\n[sampling]\npatch_sampling = "image"\n'
                      '[model_options]\ndepth = 2\nbase_filters = 4\n')
    args, config_class, plan = resolve(_parse(["--data", str(root), "--config", str(recipe), "--epochs", "3",
                                               "--batch-size", "8", "--model-option", "depth=3"]))
    assert config_class.__name__ == "TrainConfig"
    assert args.epochs == 3                              # flag > file
    assert args.batch_size == 8                          # flag (the default's value, given) > file
    assert args.patch_sampling == "image"                # file > plan (area)
    assert args.patch_size == 32                         # plan > default (None)
    assert args.learning_rate == 2e-3                    # default: neither plan nor file nor flag
    assert dict(args.model_option) == {"depth": 3, "base_filters": 4}   # options merged, the flag wins
    applied = {c["field"]: c["applied"] for c in plan.to_dict()["choices"]}
    assert applied["patch_size"] is True and applied["patch_sampling"] is False and applied["batch_size"] is False
    assert any("(set by you)" in line and "batch_size" in line for line in plan.lines())
    args, _, none = resolve(_parse(["--data", str(root), "--no-plan"]))
    assert none is None and args.patch_size is None and args.patch_sampling == "image"


def test_recipe_round_trip_repeats_the_config(tmp_path):
    from Functions.commands.options import config_from_args
    from Functions.commands.train import resolve
    from Functions.engine.fit import write_run_recipe

    root = _pairs(tmp_path / "fl", {f"f{i}": _fluorescence() for i in range(3)})
    args, config_class, _ = resolve(_parse(["--data", str(root), "--task", "instance", "--ema", "0.99",
                                            "--model-option", "depth=2", "--foreground-fraction", "0.3333333",
                                            "--jit", "--out", str(tmp_path / "run0")]))
    first = config_from_args(config_class, args)
    (tmp_path / "run").mkdir()
    path = write_run_recipe(tmp_path / "run", first)
    text = path.read_text()
    assert "unset = [" in text and "[model_options]" in text and "out =" not in text
    args, config_class, _ = resolve(_parse(["--config", str(path), "--out", str(tmp_path / "run0")]))
    again = config_from_args(config_class, args)
    assert asdict(again) == asdict(first)
    assert first.loss == "cce_dice" and first.ema == 0.99 and first.model_options == {"depth": 2}  # planned, given


def test_recipe_writer_reads_back_every_kind_of_value(tmp_path):
    values = {"a": True, "b": 3, "c": 1 / 3, "d": "x \"quoted\" \\ path", "e": [1.0, 2.5], "f": None,
              "model_options": {"depth": 2, "name": "se"}}
    path = write_recipe(tmp_path / "r.toml", values, header=["a comment"])
    assert path.read_text().startswith("# a comment\n")
    assert read_recipe(path, known=values) == values


def test_unknown_recipe_key_is_one_line_naming_file_and_key(tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text("epoch = 3\n")
    assert main(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(recipe) in err[0] and "'epoch'" in err[0] and "did you mean 'epochs'" in err[0]
    recipe.write_text("epochs = [3\n")
    assert main(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid TOML" in err[0] and str(recipe) in err[0]


def test_repository_recipes_are_valid(tmp_path):
    from Functions.commands.options import config_from_args
    from Functions.commands.train import recipe_keys, resolve

    files = sorted((REPO / "recipes").glob("*.toml"))
    assert {f.stem for f in files} >= {"dsb2018_instance", "dsb2018_semantic", "msd_hippocampus", "sample_nuclei",
                                       "sample_volumes", "sample_tissue", "sample_ultrasound", "busi", "kvasir_seg",
                                       "drive", "msd_spleen"}
    anchors = {"busi": "F1 0.770", "kvasir_seg": "Dice 0.8133", "drive": "F1 0.816", "msd_spleen": "0.96"}
    for f in files:
        values = read_recipe(f, recipe_keys())
        head = f.read_text().split("\n\n")[0]
        assert "Figure" in head and ("not yet measured" in head or "Measured with" in head), f
        if f.stem in anchors:                            # the public sets: a published anchor, nothing measured
            assert "not yet measured here" in head and "Published anchor: " in head and anchors[f.stem] in head, f
            with pytest.raises(UserError, match="did you mean 'patches_per_image'"):   # the check can fail: a key that is no setting
                bad = tmp_path / f"{f.stem}.toml"
                bad.write_text(f.read_text() + "patches_per_imag = 3\n")
                read_recipe(bad, recipe_keys())
            if values.get("dims") != 3:                  # 2-D: the settings build a valid run config
                from tests.helpers import write_blob_pairs

                data = tmp_path / "d" if (tmp_path / "d").is_dir() else write_blob_pairs(tmp_path / "d", n=6, size=32)
                args, config_class, _ = resolve(_parse(["--config", str(f), "--no-plan", "--data", str(data)]))
                config_from_args(config_class, args).validate()
        if "data" in values:                             # the samples: resolve and validate without training
            args, config_class, _ = resolve(_parse(["--config", str(f), "--no-plan", "--data",
                                                    str(REPO / values["data"])]))
            config_from_args(config_class, args).validate()


def test_help_shows_the_common_flags_and_help_all_the_rest(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    short = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help-all"])
    full = capsys.readouterr().out
    for flag in ("--data", "--dataset", "--task", "--model", "--time-budget", "--epochs", "--out", "--config",
                 "--resume", "--dims", "--patch-size", "--seed", "--help-all"):
        assert flag in short and flag in full
    for flag in ("--boundary-width", "--patch-sampling", "--class-weights", "--mixed-precision", "--no-plan"):
        assert flag not in short and flag in full


def test_plan_command_writes_plan_json(tmp_path, capsys):
    root = _pairs(tmp_path / "fl", {f"f{i}": _fluorescence() for i in range(3)})
    out = tmp_path / "plan.json"
    assert main(["plan", "--data", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "patch_size = auto" in printed and "augment = light" in printed
    saved = json.loads(out.read_text())
    assert saved["fingerprint"]["n_samples"] == 3
    assert {c["field"] for c in saved["choices"]} >= {"patch_size", "augment", "loss", "epochs", "tta"}
    plan = make_plan(str(root))
    assert [c["value"] for c in saved["choices"]] == [c.value for c in plan.choices]


def test_mixed_2d_and_3d_data_is_one_line(tmp_path, capsys):
    nib = pytest.importorskip("nibabel")
    root = _pairs(tmp_path / "mixed", {"a": _fluorescence(), "b": _fluorescence()})
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), str(root / "images" / "v.nii.gz"))
    assert main(["plan", "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mixes 2-D images" in err[0] and "v.nii.gz" in err[0] and ".png" in err[0]


def test_few_large_images_get_patches_per_epoch_from_the_budget_and_keep_their_official_split():
    from Functions.planning.fingerprint import Fingerprint

    def fp(n, size, layout=None, roi=0):
        return Fingerprint(root="x", dims=2, n_samples=n, n_measured=min(n, 24), size_median=list(size),
                           size_min=list(size), size_max=list(size), size_spread=1.0, spacing_median=None,
                           channels=3, modality="fundus", modality_source="intensities",
                           layout_split=layout or {}, roi_samples=roi)

    drive = fp(40, (584, 565), {"train": 20, "val": 0, "test": 20}, roi=40)
    planned = {c.field: c for c in plan_rules(drive, time_budget=12)}
    # 2 x 584*565 / 128^2 = 40.3 -> 41 patches per image (cap 250 x 8 / 20 training images = 100)
    assert planned["patches_per_image"].value == 41 and "nnU-Net" in planned["patches_per_image"].reason
    assert planned["split"].value == "official" and "test 20" in planned["split"].reason
    assert planned["roi"].value == "field of view" and "scored inside the field-of-view mask" in planned["roi"].reason
    few = fp(60, (1024, 1024))                           # the nnU-Net cap: 250 x 8 / 60 = 33.3 -> 34 (cover: 128)
    assert {c.field: c.value for c in plan_rules(few, time_budget=12)}["patches_per_image"] == 34
    assert {c.field: c.value for c in plan_rules(drive)}["patches_per_image"] == 1          # no budget
    many = fp(664, (520, 696))                           # many images (DSB2018-like): the measured two
    values = {c.field: c.value for c in plan_rules(many, time_budget=12)}
    assert values["patches_per_image"] == 2 and values["split"] == "auto" and "roi" not in values


@pytest.mark.parametrize("name, shape, base, depth", [("unet", (128, 128, 3), 16, 4), ("unet", (64, 64, 1), 16, 2),
                                                      ("unet3d", (16, 32, 32, 1), 8, 3)])
def test_batch_memory_estimate_matches_the_built_model(name, shape, base, depth):
    from Functions.models import build_model
    from Functions.planning.rules import unet_sample_bytes

    model = build_model(name, shape, 1, base_filters=base, depth=depth)
    stored = sum(int(np.prod(layer.output.shape[1:])) for layer in model.layers)   # every map kept for backward
    dims = len(shape) - 1
    estimate = unet_sample_bytes(shape[:-1] if dims == 3 else shape[0], base, depth, dims=dims,
                                 channels=shape[-1]) / 8                           # bytes / (float32 x 2)
    assert estimate == pytest.approx(stored, rel=0.1)


def test_batch_size_comes_from_the_memory_target(monkeypatch):
    from Functions.planning import rules

    per_sample = rules.unet_sample_bytes(128, 16, 4, channels=3)
    # hand-computed: 15 maps x (128^2*16 + 64^2*32 + 32^2*64 + 16^2*128 + 8^2*256) + the 128^2*3 input, x 4 B x 2
    elements = 15 * (262144 + 131072 + 65536 + 32768 + 16384) + 49152
    assert per_sample == 8 * elements
    monkeypatch.setattr("Functions.base.runtime.total_memory_bytes", lambda: 64 * 2 ** 30)
    choice = rules.batch_rule(8, per_sample, "why")
    assert choice.value == 8 and "nnU-Net" in choice.reason and "8.0 GB" in choice.reason
    small = 4 * 3 * per_sample                     # a quarter of this RAM holds 3 samples
    monkeypatch.setattr("Functions.base.runtime.total_memory_bytes", lambda: small)
    choice = rules.batch_rule(8, per_sample, "why")
    assert choice.value == 3 and "a quarter of this machine's" in choice.reason and "3 fit" in choice.reason
    monkeypatch.setattr("Functions.base.runtime.total_memory_bytes", lambda: int(per_sample))
    assert rules.batch_rule(8, per_sample, "why").value == 1           # never below one sample
    monkeypatch.setattr("Functions.base.runtime.total_memory_bytes", lambda: None)
    assert rules.memory_target()[0] == rules.MEMORY_TARGET
