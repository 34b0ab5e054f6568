"""Where a run's samples come from: a folder (``--data``), a registered data set (``--dataset``) or the
offline sample shipped in ``Data/sample``.  One function for training, evaluation and classification."""

from __future__ import annotations

from Functions.base.paths import sample_dir
from Functions.data import datasets
from Functions.data.discovery import find_samples


def resolve_samples(data: str | None = None, dataset: str | None = None, data_dir: str | None = None,
                    sample: str = "nuclei") -> list:
    """The :class:`~Functions.data.discovery.Sample` list of ``dataset`` (a registry name, downloaded into
    ``data_dir``), else of the folder ``data``, else of the offline sample ``Data/sample/<sample>``."""
    if dataset:
        return datasets.load(dataset, data_dir=data_dir)
    if data:
        return find_samples(data)
    return find_samples(sample_dir(sample))


def seeded_subset(samples: list, subset: int | None, seed: int) -> list:
    """``subset`` samples chosen at random with ``seed`` (kept in their order), or all of them."""
    import numpy as np

    if subset is None or subset >= len(samples):
        return list(samples)
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), subset, replace=False))
    return [samples[i] for i in keep]
