"""The planner on typed instances (panoptic data): the fingerprint finds the class maps beside the instance
maps and counts the types, the plan trains ``--task panoptic`` unless told otherwise, objects are never shrunk,
and the published layouts (PanNuke, CoNSeP) plan the same way with no preparation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import cli_fails, consep_tree, pannuke_fold

from Functions.base.errors import UserError
from Functions.cli import build_parser, main
from Functions.planning.fingerprint import fingerprint
from Functions.planning.rules import plan_rules

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Data" / "sample" / "panoptic"


def _write(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(array))


def typed_tree(root: Path, side: int = 32, n: int = 3, stuff: bool = True, info: bool = True) -> Path:
    """``images/``, ``instances/``, ``classes/`` (16-bit) and ``masks/``: three objects per image, types 1, 1, 2
    (two of type 1 for each of type 2), class 3 (stuff) on the left third of the background when ``stuff``."""
    for i in range(n):
        image = np.full((side, side, 3), (230, 180, 220), np.uint8)   # pink field, purple nuclei: H&E-like
        inst = np.zeros((side, side), np.uint16)
        cls = np.zeros((side, side), np.uint16)
        if stuff:
            cls[:, : side // 3] = 3
        for k, (r, c, t) in enumerate(((2, 14, 1), (12, 20, 1), (22, 14, 2)), start=1):
            inst[r:r + 6, c:c + 6] = k
            cls[r:r + 6, c:c + 6] = t
            image[r:r + 6, c:c + 6] = (120, 40, 160)
        _write(root / "images" / f"t{i}.png", image)
        _write(root / "instances" / f"t{i}.png", inst)
        _write(root / "classes" / f"t{i}.png", cls)
        _write(root / "masks" / f"t{i}.png", (inst > 0).astype(np.uint8) * 255)
    if info:
        (root / "classes.json").write_text(json.dumps({"num_classes": 2, "stuff_classes": 1 if stuff else 0,
                                                       "class_names": ["round", "long", "stroma"][:3 if stuff else 2]}))
    return root


def _parse(argv):
    args = build_parser("train").parse_args(["train", *argv])
    args.command_argv = list(argv)
    return args


def test_typed_instances_fingerprint_counts_types_and_stuff(tmp_path):
    fp = fingerprint(str(typed_tree(tmp_path / "typed")), seed=0)
    assert fp.mask_kind == "typed instances" and fp.types_source == "classes.json"
    assert (fp.object_types, fp.stuff_classes, fp.class_names) == (2, 1, ["round", "long", "stroma"])
    # hand-counted: per image two objects of type 1 and one of type 2
    assert fp.type_shares == {"round": pytest.approx(2 / 3, abs=1e-3), "long": pytest.approx(1 / 3, abs=1e-3)}
    assert fp.objects_per_image == 3 and fp.object_area_median == 36.0
    # no classes.json: types and stuff read off the class maps (ids inside objects, other ids outside)
    bare = fingerprint(str(typed_tree(tmp_path / "bare", info=False)), seed=0)
    assert (bare.mask_kind, bare.types_source, bare.object_types, bare.stuff_classes) == (
        "typed instances", "class maps", 2, 1)
    assert bare.type_shares == {"type 1": pytest.approx(0.667, abs=1e-3), "type 2": pytest.approx(0.333, abs=1e-3)}
    # instance maps without class maps are plain instances
    plain = tmp_path / "plain"
    typed_tree(plain, info=False)
    for f in (plain / "classes").iterdir():
        f.unlink()
    (plain / "classes").rmdir()
    assert fingerprint(str(plain), seed=0).mask_kind == "instances"


def test_typed_instances_plan_panoptic_unless_a_task_is_given(tmp_path):
    fp = fingerprint(str(typed_tree(tmp_path / "typed")), seed=0)
    plan = {c.field: c for c in plan_rules(fp)}
    assert plan["task"].value == "panoptic" and "nothing asked" in plan["task"].reason
    assert "2 object type(s) (round 67%, long 33% of the measured objects)" in plan["task"].reason
    assert "1 stuff class(es) stroma" in plan["task"].reason
    assert plan["loss"].value == "cce_dice" and "5 classes" in plan["loss"].reason     # 2 + 2 types + 1 stuff
    assert plan["class_weights"].value is None and "33%" in plan["class_weights"].reason
    assert "boundaries" not in plan and "decoder" not in plan            # instance-only settings stay out
    asked = {c.field: c for c in plan_rules(fp, task="panoptic", given={"task"})}
    assert asked["task"].value == "panoptic" and "--task panoptic asked" in asked["task"].reason
    semantic = {c.field: c for c in plan_rules(fp, task="semantic", given={"task"})}
    assert semantic["task"].value == "semantic" and "--task panoptic trains the object types" in semantic["task"].reason
    assert semantic["loss"].value == "bce_dice"
    instance = {c.field: c.value for c in plan_rules(fp, task="instance", given={"task"})}
    assert instance["task"] == "instance" and instance["loss"] == "cce_dice"


def test_panoptic_on_masks_without_types_is_one_line(tmp_path, capsys):
    plain = tmp_path / "plain"
    for i in range(2):
        image, mask = np.full((32, 32), 10, np.uint8), np.zeros((32, 32), np.uint8)
        mask[4:10, 4:10] = 255
        _write(plain / "images" / f"p{i}.png", image)
        _write(plain / "masks" / f"p{i}.png", mask)
    with pytest.raises(UserError, match="--task panoptic needs typed objects"):
        plan_rules(fingerprint(str(plain), seed=0), task="panoptic", given={"task"})
    cli_fails(capsys, ["plan", "--data", str(plain), "--task", "panoptic"], "masks of", "hold binary",
              "classes/<name>.png")


def test_objects_are_never_shrunk_when_scored_one_by_one(tmp_path):
    whole = fingerprint(str(typed_tree(tmp_path / "w", side=160)), seed=0)
    plan = {c.field: c for c in plan_rules(whole, time_budget=15)}
    # square, a multiple of 16: trained whole at 160 px; a median object of 36 px would keep 36 * (128/160)^2 = 23
    assert plan["image_size"].value == 160 and plan["patch_size"].value is None
    assert "shrink a median object of 36 px to 23 px" in plan["image_size"].reason
    odd = fingerprint(str(typed_tree(tmp_path / "o", side=150)), seed=0)
    plan = {c.field: c for c in plan_rules(odd, time_budget=15)}
    assert plan["patch_size"].value == 128 and "image_size" not in plan      # 150 px: native 128-px patches
    assert "to 26 px" in plan["patch_size"].reason and plan["patch_sampling"].value == "area"
    semantic = {c.field: c for c in plan_rules(whole, task="semantic", given={"task"})}
    assert semantic["patch_size"].value is None and "image_size" not in semantic   # semantic: resized as before
    mine = {c.field: c for c in plan_rules(whole, given={"image_size"})}
    assert "image_size" not in mine and mine["patch_size"].value is None


def test_offline_sample_resolves_to_a_panoptic_run_and_flags_still_win():
    from Functions.commands.train import resolve

    args, config_class, plan = resolve(_parse(["--data", str(SAMPLE)]))
    assert config_class.__name__ == "TrainConfig" and plan.task == "panoptic"
    assert (args.task, args.loss, args.image_size, args.patch_size) == ("panoptic", "cce_dice", 128, None)
    assert plan.fingerprint.class_names == ["lymphocyte", "epithelial", "spindle", "stroma", "gland"]
    assert "masks typed instances (3 types, 2 stuff)" in plan.lines()[0]
    args, _, plan = resolve(_parse(["--data", str(SAMPLE), "--task", "semantic"]))
    assert (args.task, args.loss, plan.task) == ("semantic", "bce_dice", "semantic")
    args, _, none = resolve(_parse(["--data", str(SAMPLE), "--no-plan"]))
    assert none is None and args.task == "semantic"                     # the built-in default, as before


def test_published_layouts_plan_panoptic_with_their_own_types(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIP_DATA_DIR", str(tmp_path / "d"))
    for k in (1, 2, 3):
        pannuke_fold(tmp_path / "PanNuke", n=3, k=k)
    out = tmp_path / "plan.json"
    assert main(["plan", "--data", str(tmp_path / "PanNuke"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "masks typed instances (5 types, 0 stuff)" in printed and "task = panoptic" in printed
    saved = json.loads(out.read_text())
    assert saved["task"] == "panoptic"
    fp = saved["fingerprint"]
    assert fp["class_names"] == ["neoplastic", "inflammatory", "connective", "dead", "epithelial"]
    # fixture: image 0 holds a neoplastic, an inflammatory and an epithelial nucleus, image 1 a dead one
    assert fp["type_shares"] == {"neoplastic": 0.25, "inflammatory": 0.25, "connective": 0.0, "dead": 0.25,
                                 "epithelial": 0.25}
    choices = {c["field"]: c for c in saved["choices"]}
    assert choices["split"]["value"] == "official" and "train 3, val 3, test 3" in choices["split"]["reason"]
    consep_tree(tmp_path / "CoNSeP", n=2, shape=(60, 75))
    assert main(["plan", "--data", str(tmp_path / "CoNSeP")]) == 0
    printed = capsys.readouterr().out
    assert "masks typed instances (4 types, 0 stuff)" in printed
    assert "task = panoptic" in printed and "test 2" in printed


def test_train_with_no_task_flag_trains_and_scores_the_types_and_evaluate_repeats_it(tmp_path):
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    tiny = ["--epochs", "2", "--batch-size", "4", "--model-option", "base_filters=4", "--model-option", "depth=2",
            "--progress-every", "0", "--verbose", "0", "--image-size", "64", "--tta"]
    assert main(["train", "--data", str(SAMPLE), "--out", str(run), *tiny]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["loss"], config["object_types"], config["stuff_classes"], config["tta"]) == (
        "panoptic", "cce_dice", 3, 2, True)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("mpq", "bpq", "mpq_plus"):
        assert 0.0 <= metrics[key] <= 1.0, key
    planned = json.loads((run / "plan.json").read_text())
    assert planned["task"] == "panoptic"
    applied = {c["field"]: c["applied"] for c in planned["choices"]}
    assert applied["task"] and applied["loss"] and not applied["batch_size"] and not applied["tta"]
    # a new process: evaluate --task panoptic --run takes the run's own test-time flips and repeats its figure
    env = dict(os.environ, PYTHONPATH=str(REPO / "Code"))
    proc = subprocess.run([sys.executable, "-m", "Functions", "evaluate", "--task", "panoptic", "--run", str(run)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test-time flips (tta in config.json)" in proc.stdout and "(TTA: 4 flips averaged)" in proc.stdout
    summary = json.loads((run / "evaluation-panoptic-test" / "summary.json").read_text())
    assert summary["tta"] is True
    for key in ("mpq", "bpq", "mpq_plus"):
        assert summary[key] == pytest.approx(metrics[key], abs=1e-9), key
    proc = subprocess.run([sys.executable, "-m", "Functions", "evaluate", "--task", "panoptic", "--run", str(run),
                           "--no-tta", "--out", str(tmp_path / "plain")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TTA" not in proc.stdout and json.loads((tmp_path / "plain" / "summary.json").read_text())["tta"] is False


def test_an_unreadable_class_map_is_one_line_naming_it(tmp_path, capsys):
    root = typed_tree(tmp_path / "typed")
    (root / "classes" / "t1.png").write_bytes(b"not a png")
    err = cli_fails(capsys, ["plan", "--data", str(root)], str(root / "classes" / "t1.png"), "replace or remove")
    assert "t0.png" not in err                    # the broken file is named, not its neighbour
