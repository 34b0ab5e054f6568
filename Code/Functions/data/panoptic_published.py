"""CoNSeP, PanNuke and CoNIC/Lizard folders read as they are published: ``train --data DIR`` without preparation.

:func:`detect_published_panoptic` is a layout detector of
:func:`Functions.data.discovery.find_samples`: when ``DIR`` shows one of the
published layouts (:func:`Functions.data.panoptic_layouts.panoptic_layout`),
its images and labels are converted once into the library's panoptic folder -
``images/<name>.png``, ``masks/<name>.png`` (foreground), ``instances/<name>.png``
and ``classes/<name>.png`` (16-bit) and ``classes.json`` (the layout's type
names, :data:`Functions.data.panoptic_layouts.CLASS_NAMES`) - under
``<data dir>/.converted/<layout>-<key>/`` (``$MIP_DATA_DIR`` or ``Data/datasets``;
never inside ``DIR``, which stays untouched).  The key hashes each source
file's path, size and modification time, so a later run reuses the folder and
an edited source is converted anew.

Every sample keeps the data set's own split in :attr:`Sample.split`
(:func:`Functions.data.splits.layout_split` applies it):

* **CoNSeP** - ``Train/`` is ``train`` (validation drawn from it with the
  seed), ``Test/`` is ``test``, as in the HoVer-Net paper.
* **PanNuke** - the conventional fold split of the PanNuke papers (Gamper et
  al. 2019/2020) and HoVer-Net's PanNuke experiments: fold 1 trains, fold 2
  validates, fold 3 tests.  With two folds, fold 1 trains (validation drawn
  from it) and fold 2 tests; with one fold there is no split to keep.
* **CoNIC / Lizard** - no official split: the patches are split by the seed,
  grouped by their source image (``patch_info.csv`` of the CoNIC release, or
  a ``source``/``image``/``filename`` column of ``counts.csv``: the name up to
  its last ``-``, ``consep_1-0003`` -> ``consep_1``), so patches of one
  Lizard image never fall into two splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.data.samples import Sample

#: Bumped when the conversion changes what a converted folder holds.
CONVERT_VERSION = 1
#: Columns of ``counts.csv`` / ``patch_info.csv`` that name a patch's source image.
SOURCE_COLUMNS = ("patch_info", "source", "image", "filename", "file", "name")


def converted_root() -> Path:
    """Where converted folders live: ``<default data dir>/.converted``."""
    from Functions.base.paths import default_data_dir

    return default_data_dir() / ".converted"


def _source_files(root: Path, kind: str) -> list[Path]:
    if kind == "consep":
        return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".mat"))
    if kind == "pannuke":
        return sorted(p for p in root.rglob("*.npy") if p.name in ("images.npy", "masks.npy", "types.npy"))
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".npy", ".csv"))


def _key(root: Path, kind: str, files: list[Path]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([kind, CONVERT_VERSION]).encode())
    for f in files:
        st = f.stat()
        h.update(json.dumps([str(f.relative_to(root)), st.st_size, st.st_mtime_ns]).encode())
    h.update(str(root.resolve()).encode())
    return h.hexdigest()


def conic_sources(root: Path, n: int) -> list[str | None]:
    """The source image of each of the ``n`` CoNIC patches, from ``patch_info.csv`` or a name column of
    ``counts.csv`` (``None`` each when neither names them)."""
    import pandas as pd

    for name in ("patch_info.csv", "counts.csv"):
        path = root / name
        if not path.is_file():
            continue
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path} as CSV ({exc})") from None
        cols = {c.lower().strip(): c for c in table.columns}
        col = next((cols[c] for c in SOURCE_COLUMNS if c in cols), None)
        if col is None:
            continue
        if len(table) != n:
            raise UserError(f"{path} lists {len(table)} patches but images.npy holds {n}; they must match row "
                            "for row")
        return [str(v).rsplit("-", 1)[0] if "-" in str(v) else str(v) for v in table[col]]
    return [None] * n


def _items(root: Path, kind: str):
    """``(name, image, instances, classes, split, group)`` of every image of the layout."""
    from Functions.data import panoptic_layouts as pl
    from Functions.data.public_layouts import child_dir

    if kind == "consep":
        for folder, split in (("Train", "train"), ("Test", "test")):
            if child_dir(root, folder) is None:
                continue
            for name, image, inst, cls in pl.read_consep(root, folder):
                yield f"{split}_{name}" if not name.lower().startswith(split) else name, image, inst, cls, split, None
    elif kind == "pannuke":
        folds = pannuke_folds(root)
        roles = (["train", "val", "test"] + ["train"] * max(0, len(folds) - 3)) if len(folds) >= 3 else \
            (["train", "test"] if len(folds) == 2 else [None])
        for fold, role in zip(folds, roles):
            for name, image, inst, cls, tissue in pl.read_pannuke_fold(fold):
                yield name, image, inst, cls, role, None
    else:
        items = list(pl.read_conic(root))
        for (name, image, inst, cls), source in zip(items, conic_sources(root, len(items))):
            yield name, image, inst, cls, None, source


def pannuke_folds(root: Path) -> list[Path]:
    """The fold folders of a PanNuke tree (``root`` itself when it is one fold), in fold order."""
    import re

    if any(root.glob("masks/*/masks.npy")):
        return [root]
    folds = sorted({p.parents[2] for p in root.glob("*/masks/*/masks.npy")},
                   key=lambda p: (int(m.group()) if (m := re.search(r"\d+", p.name)) else 0, p.name))
    return folds


def convert(root: Path, kind: str, out: Path) -> dict:
    """Write the panoptic folder of ``root`` (layout ``kind``) into ``out``; returns the manifest fields."""
    from Functions.data.imaging import write_image
    from Functions.data.panoptic_layouts import CLASS_NAMES

    names = CLASS_NAMES[kind]
    for sub in ("images", "masks", "instances", "classes"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for name, image, inst, cls, split, group in _items(root, kind):
        if int(cls.max(initial=0)) > len(names):
            raise UserError(f"{root}: image {name} holds type {int(cls.max())}, above the {len(names)} types of "
                            f"{kind} ({', '.join(names)}); the file is damaged or from another release")
        if int(inst.max(initial=0)) > 65535:
            raise UserError(f"{root}: image {name} holds more than 65535 nuclei; relabel it")
        for sub, arr in (("images", image), ("masks", np.where(inst > 0, 255, 0).astype(np.uint8)),
                         ("instances", inst.astype(np.uint16)), ("classes", cls.astype(np.uint16))):
            write_image(out / sub / f"{name}.png", arr)
        rows.append({"name": name, "split": split, "group": group})
    if not rows:
        raise UserError(f"{root} holds no images in its {kind} layout")
    (out / "classes.json").write_text(json.dumps({"num_classes": len(names), "stuff_classes": 0,
                                                  "class_names": list(names), "source": str(root),
                                                  "layout": kind}, indent=2) + "\n")
    return {"layout": kind, "source": str(root), "items": rows}


def detect_published_panoptic(root: Path) -> list[Sample] | None:
    """Layout detector (see the module docstring): the samples of a CoNSeP / PanNuke / CoNIC folder, or ``None``."""
    from Functions.data.array_cache import cached_entry
    from Functions.data.panoptic_layouts import panoptic_layout

    root = Path(root)
    kind = panoptic_layout(root)
    if kind not in ("consep", "pannuke", "conic"):
        return None
    files = _source_files(root, kind)
    key = _key(root, kind, files)
    cache = converted_root()
    if not (cache / f"{kind}-{key[:16]}" / "manifest.json").is_file():
        print(f"{kind} layout found in {root}: converting it once to images/, instances/, classes/ PNGs in "
              f"{cache} (later runs reuse them; {root} is not changed)", flush=True)
    try:
        entry, _ = cached_entry(cache, key, 0, lambda out: convert(root, kind, out), prefix=kind)
    except OSError as exc:
        raise UserError(f"cannot write the converted copy of {root} under {cache} ({exc}); set MIP_DATA_DIR to a "
                        "writable folder") from None
    manifest = json.loads((entry / "manifest.json").read_text())
    return [Sample(id=row["name"], image=entry / "images" / f"{row['name']}.png",
                   masks=(entry / "masks" / f"{row['name']}.png",), group=row["group"], split=row["split"],
                   instances=entry / "instances" / f"{row['name']}.png")
            for row in manifest["items"]]


#: The split each published layout keeps, as ``train`` prints it.
SPLIT_NOTES = {
    "consep": "CoNSeP's own split kept: Train/ trains (validation drawn from it with the seed), Test/ tests, as in "
              "the HoVer-Net paper",
    "pannuke": "PanNuke's conventional fold split kept (PanNuke papers, Gamper et al. 2019/2020): fold 1 trains, "
               "fold 2 validates, fold 3 tests",
    "conic": "CoNIC has no official split: patches split with the seed, whole source images kept in one split",
}


def split_note(samples) -> str | None:
    """The line saying which split a converted published data set keeps (:data:`SPLIT_NOTES`), else ``None``."""
    kind = layout_of(samples)
    if kind == "pannuke" and len({s.split for s in samples}) < 3:
        return "PanNuke with fewer than three folds: " + (
            "fold 1 trains (validation drawn from it with the seed), the next fold tests"
            if any(s.split for s in samples) else "one fold, split with the seed")
    if kind == "conic" and not any(s.group for s in samples):
        return ("CoNIC has no official split and no patch_info.csv naming each patch's source image: patches split "
                "one by one with the seed (patches of one Lizard image may fall into two splits)")
    return SPLIT_NOTES.get(kind) if kind else None


def layout_of(samples) -> str | None:
    """The published layout the samples were converted from (``classes.json`` beside them), else ``None``."""
    if not samples or getattr(samples[0], "instances", None) is None:
        return None
    path = Path(samples[0].instances).parent.parent / "classes.json"
    try:
        return json.loads(path.read_text()).get("layout") if path.is_file() else None
    except (OSError, ValueError):
        return None

