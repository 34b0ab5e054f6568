"""The leakage effect: the same training with a patient-level split and with a slice-level split.

    python benchmarks/leakage.py --dataset brain-tumor [--epochs 15] [--image-size 128] [--subset N]
    python benchmarks/leakage.py --data DIR_OF_NIFTI_OR_DICOM ...

Two runs of ``train`` with identical settings and seed, differing only in the split:

* ``--split-by group``: no patient (brain-tumour ``PID``, DICOM ``PatientID``) or volume in two splits;
* ``--split-by image --allow-shared-groups``: slice by slice, as the package did before issue 17.

Prints the test Dice of both, the number of groups each test split shares with its training split
(``check-split``), and the difference.  The slice-level figure is optimistic by that difference: the model
has seen other slices of the test patients.  Needs data with groups (the brain-tumour set is 3,064 slices of
233 patients); it refuses data without any.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--dataset")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--subset", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="runs/leakage")
    args = parser.parse_args()

    from Functions.data.sources import resolve_samples
    from Functions.data.splits import known_groups, sample_groups
    from Functions.engine.segmentation import TrainConfig
    from Functions.engine.tasks import train
    from Functions.evaluation.leakage import check_split

    samples = resolve_samples(args.data, args.dataset, args.data_dir)
    if not known_groups(sample_groups(samples)):
        raise SystemExit("these data carry no groups (patients or volumes); the comparison needs them")
    rows = []
    for name, options in (("patient-level (--split-by group)", {"split_by": "group"}),
                          ("slice-level (--split-by image)", {"split_by": "image", "allow_shared_groups": True})):
        t = time.perf_counter()
        config = TrainConfig(data=args.data, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                             image_size=args.image_size, subset=args.subset, seed=args.seed,
                             out=f"{args.out}-{options['split_by']}", verbose=2, **options)
        result = train(config)
        report = check_split(result["run_dir"], near_duplicates=False)
        rows.append((name, result["metrics"]["dice"], len(report.shared.get("train/test", [])),
                     time.perf_counter() - t))
    for name, dice, shared, seconds in rows:
        print(f"{name}: test Dice {dice:.4f}; {shared} group(s) shared between train and test; {seconds:.0f} s")
    print(f"leakage effect (slice-level minus patient-level Dice): {rows[1][1] - rows[0][1]:+.4f}")


if __name__ == "__main__":
    main()
