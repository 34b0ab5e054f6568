"""``python -m Functions predict``: masks for new images of any size with a trained model.

Each image is prepared as in training (the run's ``config.json`` beside the
model: channels, normalisation, CLAHE), resized to the model's input, and
its mask is resized back to the image's own size.  Masks are written as
``OUT/<image name>.png`` (0 background, 255 foreground); ``--overlay`` adds
``OUT/overlays/<image name>.png``; ``OUT/predictions.csv`` lists every image
with its size and foreground fraction.  A multi-class model writes class maps
(value = class index) and overlays coloured by class; ``--task instance``
writes 16-bit instance label maps and overlays with one colour per object.
"""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "predict masks for an image or a folder of images (any size) with a trained model"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="FILE",
                   help="model.keras written by `train` (or its run folder)")
    p.add_argument("--images", metavar="PATH", help="an image file or a folder of images")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="new folder for the masks (never overwritten); with --video/--camera a new .mp4/.avi file")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="probability threshold (default: the run's, else 0.5)")
    p.add_argument("--overlay", action="store_true", help="also write each image with its mask drawn on it")
    p.add_argument("--tta", action="store_true", help="average the predictions over flips (4x slower)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="(%(default)s)")
    p.add_argument("--overlap", type=float, default=None, metavar="F",
                   help="for a model trained on patches (train --patch-size): fraction of a tile shared with its "
                        "neighbour in sliding-window prediction, in [0, 1) (default: the run's, else 0.5)")
    p.add_argument("--task", choices=("semantic", "instance", "panoptic"), default=None,
                   help="instance: write 16-bit label maps (one value per object, watershed on a 3-class "
                        "model, connected components on a binary one) and overlays with one colour per object; "
                        "panoptic: instances/ + classes/ 16-bit maps (object types, then stuff classes) and "
                        "overlays with a legend, from a `train --task panoptic` run "
                        "(default: the run's task from config.json, else semantic)")
    p.add_argument("--npy", action="store_true",
                   help="with --task panoptic: one <stem>.npy of shape (H, W, 2) [instance, class] per image "
                        "(CoNIC's layout) instead of the PNG pairs")
    p.add_argument("--runtime", choices=("keras", "onnx", "litert"), default="keras",
                   help="run the Keras model, or the run's exported file (`export`: RUN/export/model.onnx / "
                        "model.tflite, or that file as --model) with the same preprocessing and outputs")
    p.add_argument("--video", metavar="FILE", help="segment every frame of a video; --out is the overlay video")
    p.add_argument("--camera", type=int, metavar="N",
                   help="segment camera N (0 = the first) frame by frame until Ctrl-C or --max-frames; "
                        "--out is the overlay video")
    p.add_argument("--smooth", type=float, metavar="ALPHA",
                   help="video: exponential moving average of the probabilities over frames, ALPHA = weight of "
                        "the newest frame in (0, 1] (e.g. 0.5; default: none)")
    p.add_argument("--max-frames", type=int, metavar="N", help="video/camera: stop after N frames")


def run(args) -> int:
    from Functions.base.errors import UserError
    from Functions.inference.predictor import predict_folder

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    sources = [flag for flag, value in (("--images", args.images), ("--video", args.video),
                                        ("--camera", args.camera)) if value is not None]
    if len(sources) != 1:
        raise UserError("give exactly one of --images, --video and --camera" + (f" (got {', '.join(sources)})"
                                                                              if sources else ""))
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.images is None:
        return run_video(args)
    from Functions.inference.volumes import is_volume_run

    if args.runtime != "keras" and (is_volume_run(args.model) or (args.task or run_task(args.model)) in ("instance", "panoptic")):
        raise UserError(f"--runtime {args.runtime} runs 2-D semantic segmentation runs; use --runtime keras here")
    if is_volume_run(args.model):                     # a `train --dims 3` run: NIfTI / DICOM in, NIfTI out
        from Functions.inference.volumes import predict_volume_files

        table = predict_volume_files(args.model, args.images, args.out, threshold=args.threshold,
                                     batch_size=args.batch_size, tta=args.tta, overlap=args.overlap)
        print(f"{len(table)} volume(s) -> {args.out} (NIfTI with each input's affine and header)")
        return 0
    task = args.task or run_task(args.model)
    if args.npy and task != "panoptic":
        raise UserError("--npy belongs to --task panoptic (instance + class maps); drop it or add --task panoptic")
    if task == "panoptic":                            # instances/ + classes/ (or .npy H x W x 2), legend overlays
        from Functions.inference.panoptic import predict_folder_panoptic

        table = predict_folder_panoptic(args.model, args.images, args.out, overlay=args.overlay,
                                        batch_size=args.batch_size, tta=args.tta, npy=args.npy)
        print(f"{len(table)} image(s) -> {args.out} (instance + class maps{' as .npy' if args.npy else ''}; "
              f"{int(table['objects'].sum())} objects)")
        return 0
    if task == "instance":   # 16-bit label maps, one colour per object
        from Functions.inference.instances import predict_folder_instances

        table = predict_folder_instances(args.model, args.images, args.out, overlay=args.overlay,
                                         batch_size=args.batch_size, tta=args.tta)
    else:
        table = predict_folder(args.model, args.images, args.out, threshold=args.threshold, overlay=args.overlay,
                               batch_size=args.batch_size, tta=args.tta, overlap=args.overlap, runtime=args.runtime)
    sizes = {(int(r.width), int(r.height)) for r in table.itertuples()}
    objects = f"; {int(table['objects'].sum())} objects" if "objects" in table else ""
    print(f"{len(table)} mask(s) -> {args.out} ({len(sizes)} image size(s); mean foreground "
          f"{table['foreground'].mean():.1%}{objects})")
    return 0


def run_task(model) -> str:
    """The task recorded in the run's ``config.json`` beside the model (``semantic`` when none)."""
    from pathlib import Path

    from Functions.inference.predictor import run_settings

    path = Path(model).expanduser()
    return run_settings(path / "model.keras" if path.is_dir() else path).get("task") or "semantic"


def run_video(args) -> int:
    """``--video`` / ``--camera``: the overlay video, and the frame rate it ran at."""
    from Functions.inference.video import predict_video

    stats = predict_video(args.model, args.video if args.video is not None else args.camera, args.out,
                          runtime=args.runtime, smooth=args.smooth, threshold=args.threshold,
                          max_frames=args.max_frames)
    print(f"{stats['frames']} frame(s) {stats['width']}x{stats['height']} -> {stats['out']}: {stats['fps']:.1f} "
          f"frames/s overall, {stats['model_fps']:.1f} frames/s in the model ({args.runtime})")
    return 0
