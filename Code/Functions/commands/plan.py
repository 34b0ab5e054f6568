"""``python -m Functions plan``: fingerprint a data set and print the settings ``train`` would choose."""

from __future__ import annotations

import argparse

from Functions.commands.options import add_data_source

NAME = "plan"
HELP = "fingerprint a data set and print the training plan (each setting, its value and why); --out FILE writes it"
DESCRIPTION = ("Read a data set once (sizes, spacings, modality, intensities, objects, touching share, groups, "
               "near-duplicates) and print the plan `train` would use on it: each setting with its value and the "
               "measurement or published rule behind it (docs/planning.md).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_source(p, "nuclei")
    p.add_argument("--task", choices=("semantic", "instance", "panoptic"),
                   help="instance: plan the 3-class head + watershed; panoptic: typed objects (default: as train "
                        "chooses - panoptic when class maps lie beside the instance maps, else semantic)")
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="the training budget the plan fits")
    p.add_argument("--dims", type=int, choices=(2, 3), help="2-D images or 3-D volumes (default: from the folder)")
    p.add_argument("--seed", type=int, default=42, help="seed of the subset whose pixels are read (%(default)s)")
    p.add_argument("--out", metavar="FILE", help="also write the plan and fingerprint as JSON (plan.json)")


def run(args) -> int:
    from Functions.base.errors import UserError
    from Functions.planning.plan import make_plan

    if args.data and args.dataset:
        raise UserError("--data and --dataset were both given; give one of them, not both")
    plan = make_plan(args.data, args.dataset, args.data_dir, task=args.task, time_budget=args.time_budget,
                     dims=args.dims, seed=args.seed, given={"task"} if args.task else set())
    print("\n".join(plan.lines()))
    fp = plan.fingerprint
    print(f"Fingerprint: sizes {fp.size_min} to {fp.size_max} (median {fp.size_median}), spacing "
          f"{fp.spacing_median or 'not stored'}, {fp.channels} channel(s), intensities {fp.intensity}, "
          f"foreground {fp.foreground_share:.1%}, {fp.objects_per_image:g} objects per image (median area "
          f"{fp.object_area_median:g}), {fp.touching_share:.0%} touching, {fp.n_groups} groups, "
          f"{fp.near_duplicate_samples} of {fp.hashed} images with a near-duplicate")
    if args.out:
        print(f"plan written to {plan.write(args.out)}")
    return 0
