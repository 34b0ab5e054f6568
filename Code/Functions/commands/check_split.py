"""``python -m Functions check-split RUN``: is any patient, volume, source image or near-duplicate picture
in both the training (or validation) and the test split of a run?

Prints the samples and groups of each split, every group shared between two
splits, and near-duplicate image pairs (perceptual hash, ``--max-distance``
bits of 64).  Exit status 0 when nothing is shared with the test split, 1
when something is (so a script can stop), 2 for bad input.
"""

from __future__ import annotations

NAME = "check-split"
HELP = "leakage check: groups (patients, volumes) or near-duplicate images shared between train and test"
DESCRIPTION = __doc__


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder written by `train` (holds split.json)")
    p.add_argument("--no-duplicates", action="store_true", help="skip the near-duplicate (perceptual hash) check")
    p.add_argument("--max-distance", type=int, default=None, metavar="BITS",
                   help="bits (of 64) in which two hashes of one picture may differ (default 10)")


def run(args) -> int:
    from Functions.base.errors import UserError
    from Functions.evaluation.leakage import check_split

    if args.max_distance is not None and not 0 <= args.max_distance < 32:
        raise UserError(f"--max-distance must be between 0 and 31 bits, got {args.max_distance}")
    report = check_split(args.run, near_duplicates=not args.no_duplicates, max_distance=args.max_distance)
    print("\n".join(report.lines()))
    return 1 if report.test_leaks else 0
