"""Leakage check of a run's split: groups (patients, volumes, source images) or near-duplicate
pictures shared between training (or validation) and test.

``python -m Functions check-split RUN`` calls :func:`check_split`.  The groups
come from ``split.json`` (``"groups": {"train": [...], ...}`` written by
``train``); for runs written before groups were recorded they are recovered
by finding the run's data again (DICOM ``PatientID``, brain-tumour ``PID``,
NIfTI volume), and a file listed in two splits (slices of one volume) always
counts as one group.  Near-duplicates are found by perceptual hash
(:mod:`Functions.data.duplicates`) among the plain image files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from Functions.base.errors import UserError
from Functions.base.runs import read_run_settings

PAIRS = (("train", "test"), ("val", "test"), ("train", "val"))


@dataclass
class LeakageReport:
    """What :func:`check_split` found.

    ``counts``: samples per split; ``groups``: distinct groups per split;
    ``shared``: ``{"train/test": [group, ...]}``; ``duplicates``:
    ``{"train/test": [(file_a, file_b, bits), ...]}``; ``hashed``: how many
    images were hashed (``None`` when the near-duplicate check was off);
    ``blank``: how many blank images were left out of it (every blank frame
    hashes alike, see :func:`Functions.data.duplicates.is_blank`);
    ``group_source``: where the groups came from.
    """

    counts: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    duplicates: dict = field(default_factory=dict)
    hashed: int | None = None
    blank: int = 0
    group_source: str = ""

    @property
    def test_leaks(self) -> bool:
        """True when any group or near-duplicate is shared with the test split."""
        return any(self.shared.get(f"{a}/{b}") or self.duplicates.get(f"{a}/{b}")
                   for a, b in PAIRS if b == "test")

    def lines(self) -> list[str]:
        """The report as printed by ``check-split``."""
        out = ["split: " + ", ".join(f"{k} {self.counts.get(k, 0)} samples in {self.groups.get(k, 0)} groups"
                                      for k in ("train", "val", "test")) + f" (groups from {self.group_source})"]
        for a, b in PAIRS:
            key = f"{a}/{b}"
            shared, dups = self.shared.get(key, []), self.duplicates.get(key, [])
            status = "LEAK" if (shared or dups) and b == "test" else ("shared" if shared or dups else "ok")
            out.append(f"{key}: {status}: {len(shared)} shared group(s)"
                       + (f", {len(dups)} near-duplicate pair(s)" if self.hashed is not None else ""))
            for g in shared[:10]:
                out.append(f"  group {g}")
            if len(shared) > 10:
                out.append(f"  ... ({len(shared) - 10} more groups)")
            for fa, fb, d in dups[:10]:
                out.append(f"  near-duplicate ({d} bits of 64): {fa} ~ {fb}")
            if len(dups) > 10:
                out.append(f"  ... ({len(dups) - 10} more pairs)")
        if self.hashed is not None:
            out.append(f"near-duplicate check: {self.hashed} images hashed (dHash + pHash)"
                       + (f", {self.blank} blank image(s) left out" if self.blank else ""))
        out.append("result: " + ("LEAKAGE - the test score is optimistic; retrain with a group-aware split "
                                 "(train --split-by group)" if self.test_leaks else "no group or near-duplicate "
                                 "shared with the test split"))
        return out


def _entry_path(entry) -> str:
    return entry if isinstance(entry, str) else str(entry.get("image", entry))


def _recover_groups(settings: dict, split: dict) -> tuple[dict, str]:
    """Groups per split entry from the run's data, by image path (and order for repeated paths)."""
    from Functions.data.sources import resolve_samples

    try:
        samples = resolve_samples(settings.get("data"), settings.get("dataset"), settings.get("data_dir"))
    except (UserError, OSError):
        return {}, ""
    by_path: dict[str, list] = {}
    for s in samples:
        by_path.setdefault(str(s.image), []).append(s.group)
    if not any(g for gs in by_path.values() for g in gs):
        return {}, ""
    out = {}
    for k in ("train", "val", "test"):
        groups = []
        for e in split.get(k, []):
            gs = by_path.get(_entry_path(e))
            groups.append(gs[0] if gs else None)   # all samples of one file share its group
        out[k] = groups
    return out, "the data's readers"


def check_split(run_dir, near_duplicates: bool = True, max_distance: int | None = None) -> LeakageReport:
    """Check the ``split.json`` of ``run_dir`` for groups and near-duplicates shared between splits."""
    from Functions.data.duplicates import MAX_DISTANCE, image_hashes, is_blank, near_duplicate_pairs
    from Functions.data.imaging import is_image_file, read_image

    run_dir = Path(run_dir).expanduser()
    split_file = run_dir / "split.json"
    if not split_file.is_file():
        raise UserError(f"run {run_dir} has no split.json; pass a run folder written by `train`")
    try:
        split = json.loads(split_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{split_file} is not valid JSON; it cannot be checked") from None
    settings = read_run_settings(run_dir) if (run_dir / "config.json").is_file() else {}

    report = LeakageReport()
    files = {k: [_entry_path(e) for e in split.get(k, [])] for k in ("train", "val", "test")}
    groups = split.get("groups") if isinstance(split.get("groups"), dict) else None
    report.group_source = "split.json" if groups else ""
    if not groups:
        groups, report.group_source = _recover_groups(settings, split)
    if not groups:
        report.group_source = "file names only"
        groups = {k: [None] * len(v) for k, v in files.items()}
    # A file in two splits is one group whatever the readers said (slices of one volume, one .mat per slice).
    keyed = {k: [str(g) if g else f"file:{f}" for g, f in zip(groups.get(k, []), files[k])]
             for k in files}
    for k in files:
        keyed[k] += [f"file:{f}" for f in files[k][len(keyed[k]):]]
    for k in files:
        report.counts[k] = len(files[k])
        report.groups[k] = len(set(keyed[k]))
    file_sets = {k: {f"file:{f}" for f in v} for k, v in files.items()}
    for a, b in PAIRS:
        shared = (set(keyed[a]) | file_sets[a]) & (set(keyed[b]) | file_sets[b])
        report.shared[f"{a}/{b}"] = sorted(shared)

    if near_duplicates:
        limit = MAX_DISTANCE if max_distance is None else int(max_distance)
        hashes: dict[str, list] = {}
        names: dict[str, list] = {}
        for k, fs in files.items():
            hashes[k], names[k] = [], []
            for f in dict.fromkeys(fs):
                if is_image_file(f) and Path(f).is_file():
                    image = read_image(f)
                    if is_blank(image):                 # would match every other blank frame
                        report.blank += 1
                        continue
                    hashes[k].append(image_hashes(image))
                    names[k].append(f)
        report.hashed = sum(len(v) for v in hashes.values())
        for a, b in PAIRS:
            pairs = near_duplicate_pairs(hashes[a], hashes[b], limit) if hashes[a] and hashes[b] else []
            report.duplicates[f"{a}/{b}"] = [(names[a][i], names[b][j], d) for i, j, d in pairs]
    return report
