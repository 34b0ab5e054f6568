"""``python -m Functions architectures``: table of every registered model.

Builds each architecture (random weights, nothing is downloaded) at the
requested input size and prints name, task, paper, parameter count and
forward GFLOP per image.
"""

from __future__ import annotations

NAME = "architectures"
HELP = "list every registered architecture with its paper, parameter count and GFLOP per image"

_COLUMNS = ("name", "task", "paper", "parameters", "GFLOP/image")


def add_arguments(parser) -> None:
    parser.add_argument("--image-size", type=int, default=256, help="input height and width (default 256)")
    parser.add_argument("--channels", type=int, default=1, help="input channels (default 1)")
    parser.add_argument("--num-classes", type=int, default=1, help="output classes (default 1: sigmoid)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2,
                        help="3: the volume models (unet3d, ...) on an N x N x N patch, N = --image-size "
                             "(use e.g. 64); 2: the image models (default)")


def architecture_rows(image_size: int = 256, channels: int = 1, num_classes: int = 1, dims: int = 2) -> list[dict]:
    """One dict per registered model: name, task, paper, parameters, gflops (``dims=3``: the volume models)."""
    import keras

    from Functions.models import MODEL_REGISTRY, VOLUME_REGISTRY, build_model, model_info
    from Functions.models.flops import count_flops
    from Functions.models.registry import offline_options

    rows = []
    for name in (MODEL_REGISTRY if dims == 2 else VOLUME_REGISTRY):
        info = model_info(name)
        model = build_model(name, (image_size,) * dims + (channels,), num_classes, **offline_options(name))
        rows.append({
            "name": name,
            "task": info["task"],
            "paper": info["paper"],
            "parameters": model.count_params(),
            "gflops": count_flops(model) / 1e9,
        })
        del model
        keras.backend.clear_session()
    return rows


def format_table(rows: list[dict], markdown: bool = False) -> str:
    cells = [[r["name"], r["task"], r["paper"], f"{r['parameters']:,}", f"{r['gflops']:.2f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join(["---", "---", "---", "---:", "---:"]) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_COLUMNS)]
    right = {3, 4}

    def fmt(row):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(_COLUMNS), fmt(["-" * w for w in widths]), *(fmt(c) for c in cells)])


def run(args) -> int:
    from Functions.base.errors import UserError

    if args.channels < 1:
        raise UserError(f"--channels must be >= 1, got {args.channels}")
    if args.num_classes < 1:
        raise UserError(f"--num-classes must be >= 1, got {args.num_classes}")
    if args.dims == 2 and (args.image_size < 32 or args.image_size % 32):
        raise UserError(
            f"--image-size {args.image_size} does not fit every model; use a multiple of 32 (e.g. 128, 256)"
        )
    if args.dims == 3 and (args.image_size < 8 or args.image_size % 8):
        raise UserError(f"--image-size {args.image_size} does not fit the 3-D models; use a multiple of 8 (e.g. 64)")
    try:
        rows = architecture_rows(args.image_size, args.channels, args.num_classes, dims=args.dims)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    side = "x".join([str(args.image_size)] * args.dims)
    print(f"input {side}x{args.channels}, {args.num_classes} class(es); "
          f"GFLOP = forward pass for one {'image' if args.dims == 2 else 'patch'} (multiply-add = 2 FLOPs)")
    print(format_table(rows, markdown=args.markdown))
    return 0
