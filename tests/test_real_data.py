"""The project notebooks' real-data path (issue 39, item 5), without network and without training.

* Every project notebook has ``DATASET = None`` in its parameters cell (None: the offline sample), and every data
  set a notebook names for ``DATASET`` is registered and has a recipe with a reference figure
  (:mod:`Functions.planning.references`); the figures there are the ones the recipe files, README.md and
  benchmarks/LOG.md state, and the notebook's "Real data" section states the same ones.
* The section's cells are executed as written: with a data set named they install it through
  ``datasets.ensure`` (the downloader replaced by one that writes a tiny tree in the published layout; a set
  that needs a manual step stops with one line saying how) and call ``train --config recipes/X.toml --dataset
  NAME`` (the CLI replaced by one that parses the arguments with the real ``train`` parser, reads the recipe and
  writes a ``metrics.json``), then print the comparison; with ``DATASET = None`` or ``SMOKE = True`` they only
  describe.
* ``datasets.ensure`` downloads through the real code path (a local HTTP server stands in for the publisher)
  once, and finds the installed copy the second time.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import nbformat
import pytest

from Functions.base.errors import UserError
from Functions.data import datasets
from Functions.planning import references
from tests.test_datasets import _zip_dir, local_server, make_busi, make_dsb, make_kvasir  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
#: project notebook -> (task of its real run, the architecture it passes to the recipe, or None for the recipe's)
PROJECTS = {
    "03_projects_unet.ipynb": ("semantic", None),
    "05_projects_unet_plus_plus.ipynb": ("semantic", "unet_plus_plus"),
    "07_projects_resunet.ipynb": ("semantic", "resunet"),
    "08_attention_unet_breast_ultrasound.ipynb": ("semantic", "attention_unet"),
    "10_projects_resunet_plus_plus.ipynb": ("semantic", "resunet_plus_plus"),
    "13_instance_segmentation.ipynb": ("instance", None),
    "14_volumes.ipynb": ("semantic", None),
    "16_panoptic_segmentation.ipynb": ("panoptic", None),
}
QUOTED = re.compile(r'"([A-Za-z0-9_-]+)"')
ASSIGNED = re.compile(r'DATASET\s*=\s*\\?"([A-Za-z0-9_-]+)')
DECIMAL = re.compile(r"\b0\.\d+")


def _read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _parameters(nb):
    return next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))


def _named(nb) -> list[str]:
    """The data sets a notebook names for DATASET: quoted in the parameters cell's DATASET line, and any
    ``DATASET = "name"`` anywhere in its cells."""
    line = next(l for l in _parameters(nb).source.splitlines() if l.startswith("DATASET"))
    names = QUOTED.findall(line)
    for cell in nb.cells:
        names += [n for n in ASSIGNED.findall(cell.source) if n not in names]
    return names


def _real_section(nb):
    """The "Real data" markdown cell and the two code cells after it."""
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Real data"))
    code = [c for c in nb.cells[at + 1:at + 3] if c.cell_type == "code"]
    assert len(code) == 2, "the Real data section is one markdown cell and two code cells"
    return nb.cells[at], code


# ----------------------------------------------------------------------------- the parameters and the names
@pytest.mark.parametrize("name", PROJECTS)
def test_dataset_none_beside_smoke_in_the_parameters_cell(name):
    cell = _parameters(_read(name))
    values = {t.id: n.value for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name)}
    for key in ("SMOKE", "DATASET", "DATA_DIR"):
        assert key in values and isinstance(values[key], ast.Constant), f"{name}: {key} missing"
    assert values["SMOKE"].value is False and values["DATASET"].value is None and values["DATA_DIR"].value is None


@pytest.mark.parametrize("name", PROJECTS)
def test_every_named_dataset_is_registered_with_a_recipe_and_its_figure_is_stated(name):
    nb = _read(name)
    task, _ = PROJECTS[name]
    named = _named(nb)
    assert named, f"{name}: the parameters cell names no real data set"
    markdown, _ = _real_section(nb)
    for dataset in named:
        ref = references.for_dataset(dataset, task)             # UserError: not registered, or no recipe
        assert ref.path.is_file() and datasets.get(dataset).name == ref.dataset
        assert f"`{ref.recipe}.toml`" in markdown.source, f"{name}: the section does not name {ref.recipe}.toml"
        if ref.value is None:
            assert "not yet measured here" in markdown.source
        else:
            assert f"{ref.value:.4f} ± {ref.tolerance:g}" in markdown.source, f"{name}: {ref.recipe}'s figure"
        for number in DECIMAL.findall(ref.anchor):
            assert number in markdown.source, f"{name}: {ref.recipe}'s anchor {number}"


def test_names_without_a_recipe_are_refused_in_one_line():
    with pytest.raises(UserError, match=r"^membrane has no recipe for the semantic task .* dsb2018 \(semantic\)"):
        references.for_dataset("membrane")
    with pytest.raises(UserError, match="no recipe for the panoptic task"):
        references.for_dataset("dsb2018", "panoptic")
    with pytest.raises(UserError, match="unknown dataset 'dsb2019'"):
        references.for_dataset("dsb2019")
    assert references.for_dataset("kvasir_seg").recipe == "kvasir_seg"           # the aliases of the registry
    assert references.for_dataset("hippocampus").recipe == "msd_hippocampus"
    assert references.for_dataset("dsb", "instance").recipe == "dsb2018_instance"


def test_reference_figures_are_those_the_recipes_and_the_logs_state():
    recorded = (REPO / "README.md").read_text() + (REPO / "benchmarks" / "LOG.md").read_text()
    assert set(references.REFERENCES) <= {p.stem for p in (REPO / "recipes").glob("*.toml")}
    for ref in references.REFERENCES.values():
        head = ref.path.read_text().split("\n\n")[0]
        assert ref.dataset in datasets.REGISTRY
        if ref.value is None:
            assert "not yet measured here" in head and ref.tolerance is None, ref.recipe
        else:
            assert "Measured with" in head and f"{ref.value:.4f}" in head + recorded, ref.recipe
            assert 0 < ref.tolerance < 0.05
        for number in DECIMAL.findall(ref.anchor):             # the anchor: as the recipe or the README quotes it
            assert number in head + recorded, (ref.recipe, number)
    # the instance figure is the mean of the recipe's three runs, each of which the recipe states
    runs = [float(x) for x in ("0.5792", "0.5759", "0.5784")]
    assert all(f"{r:.4f}" in references.REFERENCES["dsb2018_instance"].path.read_text() for r in runs)
    assert round(sum(runs) / 3, 4) == references.REFERENCES["dsb2018_instance"].value


def test_the_pannuke_recipe_builds_a_valid_panoptic_run():
    """The new recipe, resolved as ``train --config`` resolves it, on the offline panoptic sample (PanNuke's own
    layout needs the real data)."""
    from Functions.cli import build_parser
    from Functions.commands.options import config_from_args
    from Functions.commands.train import resolve

    argv = ["train", "--config", str(references.REFERENCES["pannuke"].path), "--no-plan",
            "--data", str(REPO / "Data" / "sample" / "panoptic")]
    args, config_class, _ = resolve(build_parser("train").parse_args(argv))
    config = config_from_args(config_class, args)
    config.validate()
    assert (config.task, config.loss, config.image_size, config.time_budget) == ("panoptic", "cce_dice", 256, 15.0)


def test_compare_prints_the_tolerance_and_the_verdict():
    ref = references.REFERENCES["dsb2018_semantic"]                        # Dice 0.9129 ± 0.01
    assert ref.compare({"dice": 0.9050}) == \
        "test dice 0.9050 against 0.9129 ± 0.01 (difference -0.0079): within the tolerance"
    assert ref.compare({"dice": 0.8900}).endswith("(difference -0.0229): below the tolerance")
    assert ref.compare({"dice": 0.9300}).endswith("(difference +0.0171): above the tolerance")
    assert ref.compare({"dice": 0.9129}, model="resunet").endswith(
        "within the tolerance; the reference is unet's, this run trained resunet")
    assert ref.compare({"iou": 0.8}) == "the run's metrics hold no finite 'dice': nothing to compare"
    assert ref.compare({"dice": float("nan")}).startswith("the run's metrics hold no finite")
    busi = references.REFERENCES["busi"]
    assert busi.compare({"dice": 0.71234}) == ("test dice 0.7123; no figure measured here to compare with "
                                               f"(published anchor: {busi.anchor})")


def test_train_args_and_description(tmp_path):
    ref = references.for_dataset("kvasir-seg")
    assert ref.train_args() == ["train", "--config", str(REPO / "recipes" / "kvasir_seg.toml"), "--dataset",
                                "kvasir-seg"]
    assert ref.train_args(model="unet", data_dir=tmp_path, out=tmp_path / "run")[4:] == \
        ["kvasir-seg", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]   # the recipe's model: no flag
    assert ref.train_args(model="resunet_plus_plus")[-2:] == ["--model", "resunet_plus_plus"]
    text = ref.describe(model="resunet_plus_plus")
    assert "recipes/kvasir_seg.toml (unet)" in text and "not yet measured here" in text and "0.8133" in text
    assert "python -m Functions train --config recipes/kvasir_seg.toml --dataset kvasir-seg --model " \
           "resunet_plus_plus" in text and "automatic (python -m Functions download kvasir-seg)" in text
    drive = references.for_dataset("drive").describe()
    assert "manual: DRIVE needs a free account" in drive and "download drive --archive FILE" in drive
    assert references.for_dataset("msd-hippocampus").model == "unet3d"


# ----------------------------------------------------------------------------- the section, executed
def _write_tree(name: str, data_dir: Path) -> None:
    """A tiny copy of data set ``name`` in its published layout, where ``datasets.install`` would put it."""
    target = data_dir / name
    if name == "dsb2018":
        make_dsb(target / "stage1_train")
    elif name == "kvasir-seg":
        make_kvasir(target)
    elif name == "busi":
        make_busi(target)
    elif name.startswith("msd-"):
        task = target / {"msd-hippocampus": "Task04_Hippocampus", "msd-spleen": "Task09_Spleen"}[name]
        (task / "imagesTr").mkdir(parents=True)
        (task / "dataset.json").write_text("{}")
    elif name == "pannuke":                                 # the layout is told by this path alone
        (target / "Fold 1" / "masks" / "fold1").mkdir(parents=True)
        (target / "Fold 1" / "masks" / "fold1" / "masks.npy").write_bytes(b"")
    else:
        raise AssertionError(f"no fixture tree for {name}")


def _run_cells(cells, ns) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in cells:
            exec(cell.source, ns)
    return out.getvalue()


@pytest.mark.parametrize("name", PROJECTS)
def test_the_real_data_section_installs_the_set_and_trains_its_recipe(name, tmp_path, monkeypatch):
    from Functions import cli
    from Functions.commands.train import recipe_keys
    from Functions.planning.recipes import read_recipe

    nb = _read(name)
    task, model = PROJECTS[name]
    dataset = _named(nb)[0]
    ref = references.for_dataset(dataset, task)
    data_dir = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    downloads, trainings = [], []
    real_download = datasets.download

    def download(set_name, data_dir=None, force=False, log=print):   # datasets.download, without the network
        info = datasets.get(set_name)
        if not info.automatic:                              # the real refusal: a manual step
            return real_download(set_name, data_dir=data_dir, force=force, log=log)
        downloads.append((set_name, data_dir))
        _write_tree(info.name, Path(data_dir))
        return Path(data_dir) / info.name

    def train(argv):                                        # the CLI: real parser and recipe, no training
        args = cli.build_parser("train").parse_args(argv)
        assert args.command == "train" and read_recipe(args.config, recipe_keys())
        out = Path(args.out)
        assert out.is_dir() and not any(out.iterdir()), "train --out takes a new (empty) folder"
        trainings.append(argv)
        (out / "metrics.json").write_text(json.dumps({ref.metric: ref.value or 0.5}))
        return 0

    monkeypatch.setattr(datasets, "download", download)
    monkeypatch.setattr(cli, "main", train)
    _, (describe, run) = _real_section(nb)
    ns: dict = {}
    exec(_parameters(nb).source, ns)

    # the committed default (DATASET = None), and a smoke run with a data set named: describe only
    printed = _run_cells([describe, run], ns)
    assert printed.startswith("Real data: ") and "No real run" in printed and not downloads and not trainings
    ns.update(DATASET=dataset, SMOKE=True, DATA_DIR=str(data_dir))
    assert "No real run" in _run_cells([describe, run], ns) and not downloads and not trainings

    ns["SMOKE"] = False
    if not datasets.get(dataset).automatic:                # a manual step: one line saying how, nothing trained
        with pytest.raises(UserError, match=f"^{ref.dataset} cannot be downloaded automatically: .*by hand"):
            _run_cells([describe, run], ns)
        assert not trainings
        _write_tree(ref.dataset, data_dir)                 # ... installed by hand: found, not downloaded
    printed = _run_cells([describe, run], ns)
    assert downloads == ([(ref.dataset, str(data_dir))] if datasets.get(dataset).automatic else [])
    argv = trainings[0]
    assert argv[:5] == ["train", "--config", str(REPO / "recipes" / f"{ref.recipe}.toml"), "--dataset", ref.dataset]
    assert argv[argv.index("--data-dir") + 1] == str(data_dir)
    assert ("--model" in argv) == (model is not None and model != ref.model)
    if "--model" in argv:
        assert argv[argv.index("--model") + 1] == model
    out = Path(argv[argv.index("--out") + 1])
    assert not out.is_absolute() and out.parts[0] == "runs" and (tmp_path / out / "metrics.json").is_file()
    assert ref.compare({ref.metric: ref.value or 0.5}, model=model) in printed

    before = list(downloads)
    _run_cells([describe, run], ns)                       # a second run: the installed copy is used, a new folder
    assert downloads == before and len(trainings) == 2 and trainings[1] != trainings[0]


# ----------------------------------------------------------------------------- the library steps
def test_ensure_downloads_once_then_finds_the_installed_copy(tmp_path, monkeypatch, local_server):
    www, url = local_server
    _zip_dir(make_kvasir(tmp_path / "src").parent, www / "kvasir-seg.zip")
    info = datasets.get("kvasir-seg")
    monkeypatch.setitem(datasets.REGISTRY, "kvasir-seg", dataclasses.replace(
        info, files=(datasets.Remote(f"{url}/kvasir-seg.zip", "kvasir-seg.zip"),)))
    said = []
    root = datasets.ensure("kvasir-seg", tmp_path / "data", log=said.append)
    assert root == tmp_path / "data" / "kvasir-seg" / "Kvasir-SEG"
    assert len(datasets.load("kvasir-seg", tmp_path / "data")) == 3
    assert any(s.startswith("installed kvasir-seg: 3 samples") for s in said)
    (www / "kvasir-seg.zip").unlink()                      # the publisher is gone, the cache too
    for cached in (tmp_path / "data" / ".cache").rglob("*.zip"):
        cached.unlink()
    assert datasets.ensure("kvasir-seg", tmp_path / "data", log=said.append) == root
    assert said[-1] == f"kvasir-seg: found in {root}"
    with pytest.raises(UserError, match="^drive cannot be downloaded automatically: DRIVE needs a free account"):
        datasets.ensure("drive", tmp_path / "data")
    assert not (tmp_path / "data" / "drive").exists()


def test_load_or_sample_with_no_name_takes_the_sample_without_looking(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be downloaded for DATASET = None")

    monkeypatch.setattr(datasets, "download", no_network)
    said = []
    choice = datasets.load_or_sample(None, tmp_path, log=said.append)
    assert not choice.real and choice.name == "sample/nuclei" and len(choice.samples) == 100
    assert choice.source == {"data": str(REPO / "Data" / "sample" / "nuclei")} and choice.augment == "microscopy"
    assert said == ["Using the synthetic offline sample Data/sample/nuclei (100 samples): no data set named "
                    "(DATASET = None); name a registered one for real data."]
    choice = datasets.load_or_sample(None, tmp_path, fallback="ultrasound", log=said.append)
    assert choice.name == "sample/ultrasound" and len(choice.samples) == 120 and choice.augment == "ultrasound"
