"""Configs made of sections (issue 36): sibling 2-D / 3-D / classification configs, old flat files, sectioned
recipes, and the one finish step every task shares.  No training here: each test runs in well under a second."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from types import SimpleNamespace

import pandas as pd
import pytest

from Functions.base.errors import UserError
from Functions.cli import build_parser, main
from Functions.commands.options import config_from_args
from Functions.engine.classification import ClassifyConfig
from Functions.engine.segmentation import TrainConfig
from Functions.engine.volumes import VolumeConfig, two_d_settings
from Functions.planning.recipes import recipe_text


def _parse(argv):
    args = build_parser("train").parse_args(["train", *argv])
    args.command_argv = list(argv)
    return args


def _config(argv):
    from Functions.commands.train import resolve

    args, config_class, _ = resolve(_parse([*argv, "--no-plan"]))
    return config_from_args(config_class, args)


# ----------------------------------------------------------------------------- sibling configs
def test_volume_config_has_no_2d_setting_and_the_siblings_share_only_their_sections():
    three = {f.name for f in fields(VolumeConfig)}
    two = {f.name for f in fields(TrainConfig)}
    for name in ("patch_sampling", "patches_per_image", "image_size", "normalization", "clahe", "task",
                 "boundary_width", "class_map", "split_by", "progress_every", "scale", "max_memory"):
        assert name not in three and name in two, name
    assert set(two_d_settings()) == two - three
    assert three - two == {"dims", "target_spacing", "intensity", "window", "patches_per_volume"}
    with pytest.raises(TypeError, match="patch_sampling"):
        VolumeConfig(patch_sampling="area")               # not a field: nothing is accepted and ignored
    classify = {f.name for f in fields(ClassifyConfig)}
    assert {"image_size", "normalization", "width", "label_smoothing"} <= classify
    assert not classify & {"loss", "threshold", "patch_size", "task", "split", "dims"}
    sections = TrainConfig.sections()
    assert list(sections) == ["data", "optimisation", "output", "images", "segmentation", "splits", "patches",
                              "instances"]
    assert sections["patches"][:2] == ["patch_size", "overlap"] and "progress_every" in sections["segmentation"]
    assert "monitor" in sections["optimisation"]          # re-declared with another default, still optimisation's
    assert sorted(f.name for f in fields(TrainConfig)) == sorted(k for keys in sections.values() for k in keys)
    assert list(VolumeConfig.sections()) == ["data", "optimisation", "output", "segmentation", "volumes"]
    assert ClassifyConfig.sections()["classifier"] == ["width", "pretrained", "freeze_backbone", "label_smoothing",
                                                       "class_weights", "gradcam_images"]


def test_section_defaults_and_checks_per_config():
    assert (TrainConfig().monitor, VolumeConfig().monitor, ClassifyConfig().monitor) == ("val_dice", "val_dice",
                                                                                         "val_loss")
    assert (TrainConfig().model, VolumeConfig().model, ClassifyConfig().model) == ("unet", "unet3d", "resnet18")
    with pytest.raises(UserError, match="^channels must be 1 or 3"):
        TrainConfig(channels=4).validate()
    VolumeConfig(channels=4).validate()                   # four MRI sequences are fine in 3-D
    with pytest.raises(UserError, match="^image_size must be at least 32"):
        ClassifyConfig(image_size=16).validate()
    TrainConfig(image_size=16).validate()
    with pytest.raises(UserError, match="^foreground_fraction must be between 0 and 1") as info:
        VolumeConfig(foreground_fraction=1.5).validate()
    assert info.value.field == "foreground_fraction"
    with pytest.raises(UserError, match="^monitor val_accuracy is not logged"):
        VolumeConfig(monitor="val_accuracy").validate()


def test_old_flat_config_json_files_still_load(tmp_path):
    """config.json as the flat configs wrote it: a 2-D run, and a 3-D run that also recorded every 2-D setting
    (and the even older foreground_probability)."""
    two = asdict(TrainConfig(epochs=3, patch_size=64, task="instance", class_weights=[1.0, 1.0, 5.0]))
    two["an_old_setting"] = 1                             # keys a config no longer has are ignored
    (tmp_path / "2d").mkdir()
    (tmp_path / "2d" / "config.json").write_text(json.dumps(two))
    loaded = TrainConfig.load(tmp_path / "2d")
    assert loaded.epochs == 3 and loaded.patch_size == 64 and loaded.class_weights == [1.0, 1.0, 5.0]
    assert asdict(loaded) == {k: v for k, v in two.items() if k != "an_old_setting"}
    three = {**{f.name: getattr(TrainConfig(), f.name) for f in fields(TrainConfig)}, "normalization": "none",
             "progress_every": 0, "dims": 3, "model": "unet3d", "augment": "3d", "patch_size": [16, 32, 32],
             "intensity": "ct",
             "target_spacing": [3.0, 1.5, 1.5], "patches_per_volume": 1, "window": None,
             "foreground_probability": 0.5}
    three.pop("foreground_fraction")
    (tmp_path / "3d").mkdir()
    (tmp_path / "3d" / "config.json").write_text(json.dumps(three))
    vol = VolumeConfig.load(tmp_path / "3d")
    assert (vol.patch_size, vol.target_spacing, vol.intensity, vol.foreground_fraction) == ([16, 32, 32],
                                                                                           [3.0, 1.5, 1.5], "ct", 0.5)
    assert not hasattr(vol, "normalization") and not hasattr(vol, "patch_sampling")
    vol.validate()


# ----------------------------------------------------------------------------- recipes: flat and sectioned
def test_sectioned_and_flat_recipes_give_equal_configs(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('epochs = 7\nbatch_size = 4\npatch_size = 64\npatches_per_image = 3\nsplit = "random"\n'
                    'loss = "dice"\ntask = "instance"\nimage_size = 96\nunset = ["time_budget"]\n'
                    '[model_options]\ndepth = 2\n')
    sectioned = tmp_path / "sectioned.toml"
    sectioned.write_text('unset = ["time_budget"]\n[optimisation]\nepochs = 7\nbatch_size = 4\n'
                         '[patches]\npatch_size = 64\npatches_per_image = 3\n[splits]\nsplit = "random"\n'
                         '[segmentation]\nloss = "dice"\n[instances]\ntask = "instance"\n[images]\nimage_size = 96\n'
                         '[model_options]\ndepth = 2\n')
    a, b = _config(["--config", str(flat)]), _config(["--config", str(sectioned)])
    assert asdict(a) == asdict(b)
    assert (a.epochs, a.patch_size, a.patches_per_image, a.split, a.loss, a.task, a.image_size) == (
        7, 64, 3, "random", "dice", "instance", 96)
    assert a.model_options == {"depth": 2} and a != TrainConfig()


def test_run_recipe_is_written_in_sections_and_reads_back_like_the_flat_one(tmp_path):
    from Functions.engine.fit import write_run_recipe

    config = _config(["--epochs", "3", "--patch-size", "48", "--task", "instance", "--model-option", "depth=2",
                      "--data", str(tmp_path / "data")])
    (tmp_path / "run").mkdir()
    text = write_run_recipe(tmp_path / "run", config).read_text()
    assert "\n[optimisation]\nmodel = \"unet\"\n" in text and "\n[patches]\npatch_size = 48\n" in text
    assert text.index("unset = [") < text.index("[data]") < text.index("[model_options]")
    again = _config(["--config", str(tmp_path / "run" / "recipe.toml")])
    values = {k: v for k, v in asdict(config).items() if k != "out"}
    (tmp_path / "flat.toml").write_text(recipe_text(values))             # how earlier runs wrote it
    assert "[optimisation]" not in (tmp_path / "flat.toml").read_text()
    flat = _config(["--config", str(tmp_path / "flat.toml")])
    assert asdict(again) == asdict(flat) == asdict(config)


def test_volume_recipe_round_trip(tmp_path):
    from Functions.engine.fit import write_run_recipe

    config = _config(["--dims", "3", "--patch-size", "16", "32", "32", "--intensity", "ct", "--epochs", "2"])
    assert isinstance(config, VolumeConfig) and config.patch_size == [16, 32, 32]
    (tmp_path / "run").mkdir()
    text = write_run_recipe(tmp_path / "run", config).read_text()
    assert "\n[volumes]\ndims = 3\npatch_size = [16, 32, 32]\n" in text and "image_size" not in text
    again = _config(["--config", str(tmp_path / "run" / "recipe.toml")])
    assert isinstance(again, VolumeConfig) and asdict(again) == asdict(config)


@pytest.mark.parametrize("body,words", [
    ("[optimisation]\nepoch = 3\n", ["[optimisation] has no key 'epoch'", "did you mean 'epochs'"]),
    ("[data]\nepochs = 3\n", ["[data] has no key 'epochs'", "it belongs in [optimisation]"]),
    ("[patches]\npatches_per_imag = 3\n", ["[patches] has no key 'patches_per_imag'", "'patches_per_image'"]),
])
def test_unknown_key_in_a_section_is_one_line_naming_file_and_key(tmp_path, capsys, body, words):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(body)
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(recipe) in err[0], err
    for w in words:
        assert w in err[0], err[0]
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 2-D settings on a 3-D run
def test_2d_settings_on_a_3d_run_are_refused_in_one_line_from_flags_and_recipes(tmp_path):
    from Functions.commands.train import resolve

    with pytest.raises(UserError, match="^patch_sampling is a 2-D setting that 3-D runs do not read") as info:
        resolve(_parse(["--dims", "3", "--patch-sampling", "area", "--no-plan"]))
    assert info.value.field == "patch_sampling"
    recipe = tmp_path / "r.toml"
    recipe.write_text("dims = 3\n[patches]\npatches_per_image = 4\n")
    with pytest.raises(UserError, match="use --patches-per-volume") as info:
        resolve(_parse(["--config", str(recipe), "--no-plan"]))
    assert info.value.field == "patches_per_image" and str(recipe) in str(info.value)
    # a 3-D run's recipe.toml from before the sibling configs holds every 2-D setting at the value it had then
    old = {k: v for k, v in asdict(TrainConfig()).items() if k != "out"}
    old.update(normalization="none", progress_every=0, dims=3, model="unet3d", epochs=2, batch_size=2,
               learning_rate=3e-3, augment="3d", patch_size=[16, 32, 32], target_spacing=None, intensity="auto",
               window=None, patches_per_volume=2)
    recipe.write_text(recipe_text(old))
    config = _config(["--config", str(recipe)])
    assert isinstance(config, VolumeConfig) and config.patch_size == [16, 32, 32] and config.epochs == 2


# ----------------------------------------------------------------------------- the one finish step
def test_finish_writes_tables_metrics_figures_report_and_one_line(tmp_path, capsys):
    """engine.finish.finish with a task whose scoring step is known: the files and keys every run shares."""
    from Functions.engine.finish import Scores, finish

    drawn = []
    table = pd.DataFrame({"image": ["a", "b"], "dice": [0.5, 0.75]})

    class Task:
        def score(self, model, config, data, run_dir):
            return Scores(split="test", n_images=2, metrics={"dice": 0.625, "iou": 0.5}, tables={"t.csv": table},
                          after={"summary": {"dice": {"mean": 0.625}}}, figures=[lambda d: drawn.append(d)],
                          sections="\n## Extra\n\nthe task's section\n", note="how it was scored.",
                          line="Dice 0.6250  ", where=", original resolution")

        def monitor_name(self, model, monitor):
            return monitor

        def reproduce(self, config):
            return "python -m Functions train --epochs 3"

    hist = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.8, 0.9], "dice": [0.1, 0.6, 0.6],
                         "val_loss": [0.9, 0.6, 0.7], "val_dice": [0.2, 0.7, 0.5], "learning_rate": [1e-3, 5e-4, 1e-4]})
    model = SimpleNamespace(count_params=lambda: 1234)
    config = TrainConfig(epochs=3)
    metrics = finish(Task(), model, config, {"train": (None, None, [1, 2]), "val": (None, None, [3]),
                                             "test": (None, None, [4, 5])}, tmp_path, hist, seconds=12.34)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    assert list(saved)[:10] == ["dice", "iou", "split", "n_images", "epochs_trained", "train_seconds", "parameters",
                                "peak_rss_mb", "monitor", "best_epoch"]
    assert (saved["n_images"], saved["epochs_trained"], saved["train_seconds"], saved["parameters"]) == (2, 3, 12.3,
                                                                                                        1234)
    assert (saved["best_epoch"], saved["best_value"], saved["kept_epoch"]) == (2, 0.7, 2)   # val_dice, max
    assert saved["final_learning_rate"] == 1e-4 and list(saved)[-1] == "summary"
    assert pd.read_csv(tmp_path / "t.csv").equals(table)
    assert drawn == [tmp_path] and (tmp_path / "curves.png").is_file()
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Extra") < report.index("## Figures") < report.index("## How the test figures")
    assert report.endswith("## How the test figures were computed\n\nhow it was scored.\n")
    assert "python -m Functions train --epochs 3" in report
    out = capsys.readouterr().out.strip()
    assert out == f"Test (test, 2 images, original resolution): Dice 0.6250  (12 s training) -> {tmp_path}"


def test_task_for_picks_one_task_object_per_kind_each_with_only_a_scoring_step():
    from Functions.engine import multiclass
    from Functions.engine.classification import ClassificationTask
    from Functions.engine.fit import Task
    from Functions.engine.segmentation import SegmentationTask
    from Functions.engine.tasks import task_for
    from Functions.engine.volumes import VolumeTask

    kinds = [(TrainConfig(), multiclass.MultiClassTask), (TrainConfig(num_classes=1), multiclass.BinaryCheckedTask),
             (TrainConfig(num_classes=3), multiclass.MultiClassTask), (TrainConfig(task="instance"),
                                                                       multiclass.InstanceTask),
             (TrainConfig(task="panoptic"), multiclass.PanopticTask), (VolumeConfig(), VolumeTask),
             (ClassifyConfig(), ClassificationTask)]
    for config, kind in kinds:
        task = task_for(config)
        assert type(task) is kind, (config, task)
        assert isinstance(task, SegmentationTask) == isinstance(config, TrainConfig)
        assert task.command == ("classify-train" if kind is ClassificationTask else "train")
        for cls in type(task).__mro__:                    # one finish step for all: no task writes its own
            assert "finish" not in vars(cls), cls
    assert "score" in vars(Task) and not hasattr(multiclass, "Delegating")
