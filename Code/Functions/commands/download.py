"""``python -m Functions download NAME``: download (or install from an archive) a registered dataset."""

from __future__ import annotations

NAME = "download"
HELP = "download a registered dataset, or install an archive you downloaded (--archive)"
DESCRIPTION = (
    "Download dataset NAME into DIR/NAME (default data dir: $MIP_DATA_DIR, else Data/datasets) and check its "
    "layout. For sets that need registration (drive) or when offline, download the archive by hand and pass it "
    "with --archive. Archives are checked member by member: absolute paths, '..' and links leaving the folder are "
    "refused and nothing is written outside the data dir."
)


def add_arguments(p) -> None:
    p.add_argument("name", metavar="NAME", help="dataset name (see `python -m Functions datasets`)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are stored (default $MIP_DATA_DIR, "
                   "else Data/datasets)")
    p.add_argument("--archive", nargs="+", metavar="FILE", help="install from ZIP/TAR file(s) downloaded by hand "
                   "instead of downloading")
    p.add_argument("--force", action="store_true", help="replace an existing installation")


def run(args) -> int:
    from Functions.data import datasets

    datasets.install(args.name, archives=args.archive, data_dir=args.data_dir, force=args.force)
    return 0
