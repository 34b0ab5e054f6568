"""``python -m Functions datasets``: list the registered public datasets."""

from __future__ import annotations

NAME = "datasets"
HELP = "list the registered public datasets (size, licence, citation, automatic or manual download)"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", metavar="NAME", help="show only this dataset")
    p.add_argument("--data-dir", metavar="DIR", help="data directory to check for installed copies "
                   "(default $MIP_DATA_DIR, else Data/datasets)")


def run(args) -> int:
    from Functions.data import datasets

    infos = [datasets.get(args.name)] if args.name else list(datasets.REGISTRY.values())
    print("\n\n".join(datasets.describe(info, args.data_dir) for info in infos))
    if not args.name:
        print("\nLoad one in Python with Functions.datasets.load(NAME), or train on it with "
              "`python -m Functions train --dataset NAME`.")
    return 0
