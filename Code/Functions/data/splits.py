"""Seeded train / validation / test splits by fractions, optionally stratified and group-aware.

Groups: slices of one volume, images of one patient, tiles of one source image
and copies of one picture are not independent; a split that puts one of them
in training and another in test measures memory, not generalisation.  With
``groups`` :func:`split_indices` moves whole groups: no group is in two splits.
:func:`sample_groups` gives each :class:`~Functions.data.discovery.Sample`
its group (its ``group`` field, optionally merged with near-duplicate
clusters from :mod:`Functions.data.duplicates`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("Functions")


def split_indices(n: int, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                  stratify: Sequence | None = None,
                  groups: Sequence | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted ``(train, val, test)`` index arrays.

    Sizes: ``round(n * test_fraction)`` test and ``round(n * val_fraction)``
    validation items (at least one each when the fraction is positive and
    ``n`` allows it), the rest training.  With ``stratify`` (one label per
    item) the fractions apply within every class, so each split keeps the
    class ratios.  The same ``seed`` always gives the same split.

    ``groups`` (one hashable per item; ``None`` entries are groups of their
    own): whole groups are assigned, so no group is in two splits; the sizes
    are then as close to the fractions as whole groups allow (groups in a
    random order, the prefix whose item count is nearest the target).  With
    ``stratify`` as well, each group is stratified by its most common label.
    Groups that are all distinct give exactly the split without ``groups``.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    if stratify is not None and len(stratify) != n:
        raise ValueError(f"stratify has {len(stratify)} labels for {n} items")
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} items")
        keys = group_keys(groups)
        if len(set(keys)) < n:
            warn_dominant_group(keys)
            return _split_groups(keys, val_fraction, test_fraction, seed, stratify)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else [
        np.flatnonzero(np.asarray(stratify, dtype=object) == c) for c in sorted(set(stratify), key=str)]
    parts = ([], [], [])
    for idx in groups:
        idx = rng.permutation(idx)
        m = len(idx)
        n_test = _count(m, test_fraction)
        n_val = _count(m - n_test, val_fraction / (1 - test_fraction) if test_fraction < 1 else 0)
        if n_test + n_val >= m and m > 0:
            n_val = max(0, m - n_test - 1)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)).astype(int) for p in parts)  # type: ignore[return-value]


def _count(m: int, fraction: float) -> int:
    if fraction <= 0 or m < 2:
        return 0
    return min(m - 1, max(1, int(round(m * fraction))))


def dominant_group(groups: Sequence) -> tuple[str, int] | None:
    """``(group, count)`` when one group holds more than half the items (``None`` entries are their own), else None."""
    keys = group_keys(groups)
    if not keys:
        return None
    name, count = Counter(keys).most_common(1)[0]
    return (name, count) if count > len(keys) / 2 else None


def warn_dominant_group(groups: Sequence) -> None:
    """Log a warning when one group holds more than half the items: whole groups move, so the split cannot
    follow the fractions - often an anonymiser's constant DICOM ``PatientID``."""
    top = dominant_group(groups)
    if top is not None:
        log.warning("one group (%s) holds %d of %d samples; whole groups go to one split, so the split cannot "
                    "follow the fractions (an anonymiser may have written one PatientID for every scan)",
                    top[0], top[1], len(groups))


def group_keys(groups: Sequence) -> list[str]:
    """One string key per item: its group, or ``"#<index>"`` for ``None`` / empty entries (a group of its own)."""
    return [f"#{i}" if g is None or (isinstance(g, str) and not g) else str(g) for i, g in enumerate(groups)]


def _prefix(sizes: np.ndarray, target: int, at_least: int, at_most: int) -> int:
    """How many of the leading groups (``sizes`` in order) bring the item count nearest ``target``."""
    if at_most <= 0 or target <= 0:
        return 0
    cum = np.concatenate([[0], np.cumsum(sizes)])
    k = np.arange(len(cum))
    ok = (k >= at_least) & (k <= at_most)
    cost = np.where(ok, np.abs(cum - target), np.iinfo(np.int64).max)
    return int(np.argmin(cost))


def _split_groups(keys: list[str], val_fraction: float, test_fraction: float, seed: int,
                  stratify: Sequence | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from collections import Counter, defaultdict

    members: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        members[k].append(i)
    names = sorted(members)
    if stratify is None:
        strata = {"": names}
    else:
        labels = np.asarray(stratify, dtype=object)
        strata = defaultdict(list)
        for g in names:
            counts = Counter(str(labels[i]) for i in members[g])
            top = max(counts.values())
            strata[min(c for c, v in counts.items() if v == top)].append(g)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in sorted(strata):
        order = [strata[label][j] for j in rng.permutation(len(strata[label]))]
        sizes = np.array([len(members[g]) for g in order])
        m, n_groups = int(sizes.sum()), len(order)
        want_test = int(round(m * test_fraction)) if test_fraction > 0 else 0
        n_test = _prefix(sizes, want_test, 1 if want_test and n_groups >= 2 else 0, n_groups - 1)
        rest = sizes[n_test:]
        want_val = int(round(m * val_fraction)) if val_fraction > 0 else 0
        n_val = _prefix(rest, want_val, 1 if want_val and len(rest) >= 2 else 0, len(rest) - 1)
        for part, chosen in zip(parts, (order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test])):
            part.extend(i for g in chosen for i in members[g])
    return tuple(np.sort(np.asarray(p, dtype=int)) for p in parts)  # type: ignore[return-value]


def sample_groups(samples: Sequence, near_duplicates: bool = False, max_distance: int | None = None,
                  notes: list[str] | None = None) -> list[str | None]:
    """The group of each sample (``Sample.group``; ``None``: a group of its own).

    With ``near_duplicates`` the images are also hashed
    (:func:`Functions.data.duplicates.near_duplicate_groups`) and every
    cluster of near-duplicates is merged with the groups of its members, so
    the copies of one picture - and everything grouped with any copy - stay
    together.  Blank images are not hashed (every blank frame would match
    every other); when ``notes`` is a list, a line saying how many were left
    out is appended to it.
    """
    groups: list[str | None] = [getattr(s, "group", None) for s in samples]
    if not near_duplicates:
        return groups
    from Functions.data.duplicates import MAX_DISTANCE, near_duplicate_groups

    dups, blank = near_duplicate_groups(samples, MAX_DISTANCE if max_distance is None else max_distance)
    if blank and notes is not None:
        notes.append(f"{blank} blank image(s) left out of the near-duplicate check (each stays a group of its own)")
    if not any(dups):
        return groups
    # components of "same group" or "same duplicate cluster", named by their smallest real name
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = group_keys(groups)
    for k, d in zip(keys, dups):
        find(k)
        if d is not None:
            a, b = find(k), find(d)
            if a != b:
                parent[max(a, b)] = min(a, b)
    names: dict[str, str] = {}
    for x in list(parent):
        if not x.startswith("#"):
            r = find(x)
            names[r] = min(names.get(r, x), x)
    return [names.get(find(k)) if names.get(find(k)) else g for g, k in zip(groups, keys)]


def describe_groups(groups: Sequence, parts: Sequence[Sequence[int]],
                    names: Sequence[str] = ("train", "val", "test")) -> str:
    """``"groups: train 40, val 8, test 9 (57 groups for 120 samples)"`` for a split."""
    keys = group_keys(groups)
    counts = [len({keys[i] for i in p}) for p in parts]
    total = len(set(keys))
    return ("groups: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts))
            + f" ({total} groups for {len(keys)} samples)")


def known_groups(groups: Sequence) -> bool:
    """True when at least two items share a group (the data set has structure a per-image split would break)."""
    keys = [str(g) for g in groups if g is not None and g != ""]
    return len(set(keys)) < len(keys)


def shared_groups(groups: Sequence, a: Sequence[int], b: Sequence[int]) -> list[str]:
    """Groups (sorted) that have items in both index sets ``a`` and ``b``; ``None`` entries never count."""
    ga = {str(groups[i]) for i in a if groups[i] is not None and groups[i] != ""}
    gb = {str(groups[i]) for i in b if groups[i] is not None and groups[i] != ""}
    return sorted(ga & gb)


SPLIT_BY = ("group", "image")
#: ``--split``: ``auto`` keeps a split the layout gives (``training/``/``testing/``, ``train/``/``val/``/``test/``,
#: Decathlon ``imagesTs/`` with ``labelsTs/``) and draws a random one otherwise; ``official`` insists on the
#: layout's split; ``random`` ignores it.
SPLIT_MODES = ("auto", "official", "random")
#: The words split.json and the printed split line use for a split the layout gives.
OFFICIAL = "official split (from the layout)"


def layout_parts(tags: Sequence) -> dict[str, list[int]]:
    """``{"train": [...], "val": [...], "test": [...]}``: the indices each layout tag names (``None`` -> train)."""
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, t in enumerate(tags):
        parts[t if t in ("val", "test") else "train"].append(i)
    return parts


def has_layout_split(tags: Sequence) -> bool:
    """True when the layout names a validation or test part (a ``training/`` folder alone is no split)."""
    return any(t in ("val", "test") for t in tags)


def official_split(tags: Sequence, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                   stratify: Sequence | None = None, groups: Sequence | None = None
                   ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], str]:
    """The data set's own split: ``(train, val, test)`` indices and the words that say how each part was made.

    ``tags``: one ``"train"``/``"val"``/``"test"``/``None`` per item (``Sample.split``).  The official test
    part stays test; the official validation part stays validation.  What the layout lacks is drawn from its
    training part, seeded and by group (:func:`split_indices` with ``val_fraction``, and ``test_fraction``
    only when there is no official test part).
    """
    parts = layout_parts(tags)
    train = np.asarray(parts["train"], int)

    def sub(seq):
        return None if seq is None else [seq[i] for i in train]

    want_val = 0.0 if parts["val"] else val_fraction
    want_test = 0.0 if parts["test"] else test_fraction
    tr, va, te = split_indices(len(train), want_val, want_test, seed, stratify=sub(stratify), groups=sub(groups))
    val = np.sort(np.concatenate([np.asarray(parts["val"], int), train[va]])).astype(int)
    test = np.sort(np.concatenate([np.asarray(parts["test"], int), train[te]])).astype(int)
    how = [f"train {len(tr)}",
           f"val {len(val)}" + ("" if parts["val"] else " (drawn from the official training part, seeded)"),
           f"test {len(test)}" + ("" if parts["test"] else " (drawn from the training part: the layout has none)")]
    return (train[tr].astype(int), val, test), ", ".join(how)


def split_samples(samples: Sequence, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                  stratify: Sequence | None = None, split_by: str = "group", allow_shared_groups: bool = False,
                  near_duplicates: bool = False,
                  split: str = "auto") -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list, str]:
    """The engine's split: ``(train, val, test)`` indices, the group of each sample, and the line to print.

    ``split_by="group"`` (the default) keeps every group (:func:`sample_groups`;
    with ``near_duplicates`` also clusters of near-identical pictures) in one
    split.  ``split_by="image"`` splits sample by sample; on data with known
    groups (slices of one volume, images of one patient) that leaks and is
    refused with :class:`~Functions.base.errors.UserError` unless
    ``allow_shared_groups`` (to show the leakage effect on purpose).

    ``split`` (:data:`SPLIT_MODES`): ``auto`` keeps the data set's own split where the layout gives one
    (``Sample.split``; :func:`official_split`: the validation part, when the layout has none, is drawn from the
    official training part with ``val_fraction``), ``official`` requires it, ``random`` ignores it.
    """
    from Functions.base.errors import UserError

    if split_by not in SPLIT_BY:
        raise UserError(f"--split-by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if split not in SPLIT_MODES:
        raise UserError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    tags = [getattr(s, "split", None) for s in samples]
    if split == "official" and not has_layout_split(tags):
        raise UserError("--split official: the data layout names no test or validation part (folders such as "
                        "training/ + testing/, or train/ + val/ + test/); use --split random or --split auto")
    notes: list[str] = []
    groups = sample_groups(samples, near_duplicates=near_duplicates, notes=notes)
    grouped = known_groups(groups)
    if split_by == "image" and grouped and not allow_shared_groups:
        keys = [g for g in groups if g]
        raise UserError(f"--split-by image would put samples of one group in different splits: the data hold "
                        f"{len(set(keys))} groups (e.g. {sorted(set(keys))[0]}) for {len(samples)} samples, so test "
                        "scores would be inflated; use --split-by group (the default), or add "
                        "--allow-shared-groups to split by image on purpose")
    use = groups if split_by == "group" else None
    if split != "random" and has_layout_split(tags):
        idx, how = official_split(tags, val_fraction, test_fraction, seed, stratify=stratify, groups=use)
        message = f"Split: {OFFICIAL}: {how}"
        if grouped:
            message += "; " + describe_groups(groups, idx)
        return idx, groups, "; ".join([message, *notes])
    idx = split_indices(len(samples), val_fraction, test_fraction, seed, stratify=stratify, groups=use)
    if grouped:
        how = "by group" if split_by == "group" else "by image (groups shared on purpose)"
        message = f"Split {how}, " + describe_groups(groups, idx)
    else:
        message = f"Split: no groups known ({len(samples)} independent samples)"
    return idx, groups, "; ".join([message, *notes])
