"""``python -m Functions make-sample``: regenerate the offline sample in ``Data/sample``."""

from __future__ import annotations

import time

NAME = "make-sample"
HELP = ("regenerate the synthetic offline sample (nuclei with instances, breast ultrasound, 3-class tissue, "
        "volumes, typed nuclei on tissue) from its seed")
DESCRIPTION = (
    "Write the synthetic sample that ships in Data/sample: fluorescence-like nuclei "
    "(nuclei/images + nuclei/masks + 16-bit instance label maps in nuclei/instances), BUSI-like breast "
    "ultrasound (ultrasound/{benign,malignant,normal}) and a 3-class tissue set (tissue/images + "
    "tissue/masks with values 0 background, 1 gland, 2 lesion) and CT-like volumes in the Medical "
    "Segmentation Decathlon layout (volumes/imagesTr + volumes/labelsTr + dataset.json, NIfTI) and H&E-like "
    "typed nuclei on two tissue regions (panoptic/images + instances + classes: 1-3 nucleus types, 4-5 stuff). "
    "The output depends only on --seed, --n and --size. "
    "A non-empty target folder is refused unless --overwrite is given; even then only files "
    "named like the generator's own output are replaced."
)


def add_arguments(parser) -> None:
    from Functions.data.synthetic import DEFAULT_N_NUCLEI, DEFAULT_N_PER_CLASS, DEFAULT_SEED, DEFAULT_SIZE

    parser.add_argument("--out", default=None, help="sample root folder (default: <repo>/Data/sample)")
    parser.add_argument("--kind", choices=("nuclei", "ultrasound", "tissue", "volumes", "panoptic", "all", "video"),
                        default="all", help="which set to write (default: all; video: a 60-frame 320x240 "
                                            "ultrasound-like clip with a moving lesion, video/clip.mp4 + "
                                            "video/masks/, written only when asked for)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"nucleus images, or ultrasound images per class "
                             f"(default: {DEFAULT_N_NUCLEI} and {DEFAULT_N_PER_CLASS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"image side in pixels (default: {DEFAULT_SIZE})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the generated files in a non-empty target folder")


def run(args) -> int:
    from pathlib import Path

    from Functions.base.errors import UserError
    from Functions.base.paths import repo_root
    from Functions.data.synthetic import write_sample

    if args.out is None:
        root = repo_root()
        if root is None:
            raise UserError("cannot find the repository's Data/ folder from this installation; pass --out DIR")
        out = root / "Data" / "sample"
    else:
        out = Path(args.out).expanduser()
    if args.n is not None and args.n < 1:
        raise UserError(f"--n {args.n} must be a positive number of images")
    if args.size < 64:
        raise UserError(f"--size {args.size} is too small; use 64 pixels or more")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed} must be 0 or more")
    start = time.perf_counter()
    if args.kind == "video":
        from Functions.data.synthetic_video import DEFAULT_FRAMES, write_clip

        written = {"video": write_clip(out, n_frames=args.n or DEFAULT_FRAMES, seed=args.seed,
                                       overwrite=args.overwrite)}
    else:
        written = write_sample(out, kind=args.kind, n=args.n, size=args.size, seed=args.seed,
                               overwrite=args.overwrite)
    parts = ", ".join(f"{k}: {v} images" for k, v in written.items())
    print(f"wrote {parts} to {out} (seed {args.seed}, {time.perf_counter() - start:.1f} s)")
    return 0
