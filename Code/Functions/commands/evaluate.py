"""``python -m Functions evaluate``: score predicted masks against true masks, one CSV row per image.

Folder mode (``--masks DIR --predictions DIR``)
    Files are paired by stem (``case_07.png`` with ``case_07.tif``); any
    image extension works.  Every mask needs a prediction; predictions
    without a mask are ignored (and counted).
    Masks are read with :func:`Functions.imaging.read_mask` (0/1, 0/255 and
    label images: non-zero is foreground).
    Predictions: an image holding only the values 0 and 1 is taken as is;
    otherwise it is a probability map and foreground is ``value >= half the
    full scale`` - 128 for 8-bit (so ``round(255 * p)`` is foreground for
    ``p >= 0.5``), 32768 for 16-bit, 0.5 for floating point.  Colour images
    use their brightest channel.
    Writes ``image, dice, iou, precision, recall, specificity,
    pixel_accuracy, boundary_f1, hd95, assd`` per image to ``--out`` (default
    ``metrics.csv``, or ``metrics-1.csv``... when that exists; an explicit
    ``--out`` that exists is an error, never overwritten) and prints the mean,
    standard deviation and median of each column.  Conventions (boundaries,
    empty masks, HD95) are those of :mod:`Functions.metrics`.

Instance mode (``--task instance --masks DIR --predictions DIR [--out FILE.csv] [--components]``)
    Both folders hold instance label maps (8- or 16-bit PNG/TIFF, 0 =
    background, each other value one object; colour-coded maps: one object
    per colour), paired by stem as above.  Writes ``image, n_true, n_pred,
    ap50, ap75, dsb_score, precision_50, recall_50, f1_50, pq, sq, rq, aji``
    per image and a final ``mean`` row (definitions and empty-image
    conventions in :mod:`Functions.metrics.instance`).  ``--components``
    labels each file's 8-connected components instead (binary masks).
    With ``--run RUN_DIR`` the run's model predicts label maps (watershed on a
    3-class model, connected components on a binary one), scored against each
    sample's true instances at its own size (``instance_metrics.csv`` and
    ``worst_instances.png`` in ``--out``, default ``RUN_DIR/evaluation-instance-<split>``).

Panoptic mode (``--task panoptic --masks DIR --predictions DIR [--num-classes T] [--stuff-classes S]``)
    Both sides hold an instance map and a class map per image, read by
    :func:`Functions.data.panoptic_io.read_panoptic_folder`: ``instances/`` +
    ``classes/`` 16-bit PNG pairs, or ``.npy`` files of shape ``(H, W, 2)`` /
    ``(N, H, W, 2)`` (CoNIC).  Class ids ``1..T`` are object types,
    ``T+1..T+S`` stuff classes (``T`` defaults to the largest class id in the
    truth when ``S`` is 0).  Writes ``per_image.csv``, ``per_class.csv`` and
    ``summary.json`` (mPQ as PanNuke, mPQ+ as CoNIC, bPQ, per-class
    PQ/SQ/RQ/F1, stuff IoU; definitions in :mod:`Functions.metrics.panoptic`)
    to a new folder ``--out`` (default ``panoptic-metrics``, numbered if it exists).

    With ``--run RUN_DIR`` (a ``train --task panoptic`` run) the run's model
    predicts its ``test`` split (from ``split.json``; ``--split``, ``--data``
    as in run mode) at each image's own size - by sliding window for a
    patch-trained run - and the same files go to ``RUN_DIR/evaluation-panoptic-<split>``.

Run mode (``--run RUN_DIR [--data DIR | --dataset NAME] [--split S] [--tta]``)
    Predicts with the run's ``model.keras`` (preprocessed as in training,
    masks resized back to each image's own size) and scores against the true
    masks.  Default data: the run's own, its ``test`` split from
    ``split.json``.  Writes ``metrics.csv`` (same columns), ``summary.csv``,
    ``worst.png`` (lowest-Dice images with overlays) and ``report.md`` to a
    new folder (``--out``, default ``RUN_DIR/evaluation-<split>``).
    ``--tta`` averages the four flips and prints the change it makes.  For a 3-D run and with ``--task instance``
    or ``panoptic``, without ``--tta`` or ``--no-tta`` the run's own setting (``tta`` in its ``config.json``)
    decides, so the run's test figure is repeated; a 2-D semantic run is scored plain unless ``--tta`` asks for
    both figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from Functions.base.errors import UserError

NAME = "evaluate"
HELP = "score predicted masks against true masks (Dice, IoU, boundary F1, HD95, ASSD...) and write a CSV"

#: Extensions read as images when scanning the folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--masks", metavar="DIR", help="folder of true masks (needs --predictions)")
    source.add_argument("--run", metavar="RUN_DIR",
                        help="a training run folder: predict with its model.keras and score against true masks")
    parser.add_argument("--predictions", metavar="DIR",
                        help="folder of predicted masks or 8-bit probability maps, paired with --masks by file stem")
    parser.add_argument("--task", choices=("semantic", "instance", "panoptic"), default="semantic",
                        help="semantic (default): foreground masks, Dice/IoU/HD95...; instance: label maps on both "
                             "sides (0 = background, each other value one object), scored per object: DSB2018 "
                             "score, AP50/AP75, F1, PQ/SQ/RQ, AJI; panoptic: instance + class maps (instances/ + "
                             "classes/ 16-bit PNGs or .npy H x W x 2), scored as mPQ, mPQ+, bPQ, per-class PQ, stuff IoU")
    parser.add_argument("--num-classes", type=int, metavar="K",
                        help="folder mode, semantic: masks and predictions are class maps 0..K-1 (K >= 3); writes "
                             "per-class Dice/IoU/..., macro means (classes empty in the truth left out, as MONAI's "
                             "ignore_empty) and micro means. With --task panoptic: the number T of object "
                             "types (class ids 1..T; default: the largest id in the truth)")
    parser.add_argument("--stuff-classes", type=int, default=0, metavar="S",
                        help="with --task panoptic: class ids T+1..T+S are stuff (tissue regions), scored by IoU "
                             "(%(default)s); --num-classes T is then the number of object types")
    parser.add_argument("--class-names", metavar="A,B,...",
                        help="with --task panoptic: names of the T object types then the S stuff classes")
    parser.add_argument("--class-map", metavar="V:C,...",
                        help="with --num-classes: mask value -> class for the true masks, e.g. 0:0,128:1,255:2")
    parser.add_argument("--components", action="store_true",
                        help="with --task instance: turn each file into objects by its 8-connected components "
                             "(for binary masks) instead of reading its values as object labels")
    parser.add_argument("--tolerance", type=float, default=2.0, metavar="PX",
                        help="boundary F1 distance tolerance in pixels (%(default)s)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="S",
                        help="pixel size (one value, or one per axis: rows cols) to report HD95/ASSD and "
                             "the tolerance in physical units instead of pixels")
    parser.add_argument("--out", metavar="CSV",
                        help="per-image CSV to write (default metrics.csv in the current folder, "
                             "numbered if it exists); an existing file is never overwritten. With --run: a new "
                             "folder (default RUN_DIR/evaluation-<split>)")
    trained = parser.add_argument_group("with --run")
    trained.add_argument("--data", metavar="DIR", help="images and masks to score on (default: the run's own data)")
    trained.add_argument("--dataset", metavar="NAME", help="a registered dataset instead of --data")
    trained.add_argument("--data-dir", metavar="DIR", help="where registered datasets are stored")
    trained.add_argument("--split", choices=("train", "val", "test", "all"),
                         help="which part to score (default: test for the run's own data, all for other data)")
    trained.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                         help="test-time augmentation: average the four flips and print its effect (default: "
                              "plain for a 2-D semantic run; a 3-D run and --task instance or panoptic as the run "
                              "scored its own test split, its config's tta; --no-tta: the plain prediction)")
    trained.add_argument("--batch-size", type=int, default=8, metavar="N", help="(%(default)s)")


def run_tta(run_dir) -> bool:
    """Whether run ``run_dir`` scored its test split with test-time flips (``tta`` in its ``config.json``).

    ``evaluate --run`` uses it when neither ``--tta`` nor ``--no-tta`` is given, so that a new process
    repeats the run's own test figure.  A run without a readable ``config.json`` counts as no TTA.
    """
    import json
    from pathlib import Path

    try:
        return bool(json.loads((Path(run_dir) / "config.json").read_text()).get("tta", False))
    except (OSError, ValueError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    from Functions.inference.volumes import is_volume_run

    one_figure = getattr(args, "task", "semantic") in ("instance", "panoptic") or (
        getattr(args, "run", None) and is_volume_run(args.run))
    if getattr(args, "run", None) and getattr(args, "tta", False) is None and one_figure:
        args.tta = run_tta(args.run)                   # 3-D, instance, panoptic: repeat the run's own test figure
        if args.tta:
            print(f"{args.run} scored its test split with test-time flips (tta in config.json): so does this "
                  "evaluation; --no-tta for the plain prediction")
    elif getattr(args, "tta", None) is None:           # 2-D semantic: the plain figure; --tta prints both
        args.tta = False
    if getattr(args, "task", "semantic") == "panoptic":
        if getattr(args, "run", None):
            return _run_panoptic_trained(args)
        return _run_panoptic_folders(args)
    if getattr(args, "task", "semantic") == "instance":
        if getattr(args, "masks", None):
            return _run_instance_folders(args)
        return _run_instance_trained(args)
    if getattr(args, "components", False):
        raise UserError("--components belongs to --task instance (label maps); add --task instance or drop it")
    if getattr(args, "masks", None) and (getattr(args, "num_classes", None) or 0) > 1:
        return _run_class_folders(args)
    if getattr(args, "masks", None):
        return _run_folders(args)
    if getattr(args, "run", None):
        if is_volume_run(args.run):                   # a `train --dims 3` run: scored per volume, in mm
            return _run_volumes(args)
        return _run_trained(args)
    raise UserError("pass --masks DIR together with --predictions DIR, or --run RUN_DIR")


def _run_volumes(args) -> int:
    from Functions.evaluation.volumes import evaluate_volume_run

    if args.data or args.dataset:
        raise UserError("--data/--dataset are not supported for a 3-D run yet; it is scored on its own split")
    result = evaluate_volume_run(args.run, split=args.split or "test", out=args.out, tta=args.tta,
                                 batch_size=args.batch_size)
    summary = result["summary"]
    cols = [c for c in ("dice", "iou", "hd95", "assd", "precision", "recall") if c in summary.columns]
    print(f"{len(result['table'])} volume(s) of {args.run} ({args.split or 'test'}; hd95/assd in mm) -> "
          f"{result['out']}")
    print(summary.loc[["mean", "std", "median"], cols].T.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


# ----------------------------------------------------------------------------
# folder mode
# ----------------------------------------------------------------------------
def _run_folders(args) -> int:
    from Functions.metrics.segmentation import METRIC_COLUMNS, per_image_metrics, summarize

    if not args.predictions:
        raise UserError("--masks needs --predictions DIR (the folder of predicted masks to score)")
    if args.tolerance is None or args.tolerance < 0:
        raise UserError(f"--tolerance must be a distance >= 0 in pixels, got {args.tolerance}")
    spacing = _check_spacing(args.spacing)
    pairs = _paired_files(args)
    out = _output_path(args.out)

    names, trues, guesses = _read_pairs(pairs, _read_truth, _read_prediction)

    table = per_image_metrics(trues, guesses, names=names, spacing=spacing, tolerance=args.tolerance)
    table = table[["image"] + METRIC_COLUMNS]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)

    summary = summarize(table)
    unit = "px" if spacing is None else "units of --spacing"
    print(f"{len(table)} image(s): {args.masks} vs {args.predictions}  (boundary tolerance {args.tolerance:g} "
          f"{unit}; hd95/assd in {unit})")
    print(summary.loc[["mean", "std", "median"]].T.to_string(float_format=lambda v: f"{v:.4f}"))
    n_inf = int(len(table) - summary.loc["n", "hd95"]) if len(table) else 0
    if n_inf:
        print(f"note: {n_inf} image(s) have an empty mask or prediction (but not both): their hd95/assd are "
              "inf and left out of the summary", file=sys.stderr)
    print(f"per-image metrics -> {out}")
    return 0


def _paired_files(args) -> list[tuple[str, Path, Path]]:
    """``(stem, mask path, prediction path)`` for every mask, checked as in the module docstring."""
    if not args.predictions:
        raise UserError("--masks needs --predictions DIR (the folder of predicted masks to score)")
    masks = _image_files(Path(args.masks), "--masks")
    preds = _image_files(Path(args.predictions), "--predictions")
    missing = [path for stem, path in masks.items() if stem not in preds]
    if missing:
        names = ", ".join(p.name for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(
            f"{len(missing)} mask(s) in {args.masks} have no prediction with the same name in "
            f"{args.predictions}: {names}; predict them or remove the masks"
        )
    extra = sorted(set(preds) - set(masks))
    if extra:
        print(f"note: {len(extra)} prediction(s) without a mask were ignored (e.g. {extra[0]})", file=sys.stderr)
    return [(stem, masks[stem], preds[stem]) for stem in sorted(masks)]


def _read_pairs(pairs, read_truth, read_prediction, what: str = "mask"):
    """``(names, truths, predictions)`` read from :func:`_paired_files`' pairs; each pair must match in size."""
    names, trues, guesses = [], [], []
    for stem, mask_path, pred_path in pairs:
        t, p = read_truth(mask_path), read_prediction(pred_path)
        if t.shape != p.shape:
            raise UserError(
                f"size mismatch for {stem}: {what} {mask_path} is {t.shape[1]}x{t.shape[0]} but prediction "
                f"{pred_path} is {p.shape[1]}x{p.shape[0]} (width x height); predict at the mask's size"
            )
        names.append(stem)
        trues.append(t)
        guesses.append(p)
    return names, trues, guesses


def _run_instance_folders(args) -> int:
    """``--task instance --masks DIR --predictions DIR``: instance/panoptic metrics per image + a mean row."""
    from Functions.data.instances import components, read_label_map
    from Functions.metrics.instance import INSTANCE_COLUMNS, instance_table

    out = _output_path(args.out)
    read = (lambda path: components(read_label_map(path))) if args.components else read_label_map
    names, trues, guesses = _read_pairs(_paired_files(args), read, read, what="label map")
    table = instance_table(trues, guesses, names=names)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    mean = table.iloc[-1]
    print(f"{len(names)} image(s): {args.masks} vs {args.predictions} (instance label maps; "
          f"{'8-connected components' if args.components else 'each label value one object'})")
    print("  ".join(f"{c} {mean[c]:.4f}" for c in INSTANCE_COLUMNS))
    print(f"per-image instance metrics (last row: mean) -> {out}")
    return 0


def _run_panoptic_folders(args) -> int:
    """``--task panoptic``: per-image and per-class CSVs + summary.json (see the module docstring)."""
    import json

    from Functions.data.panoptic_io import read_panoptic_folder
    from Functions.evaluation.panoptic import clean
    from Functions.metrics.panoptic import panoptic_scores

    if not args.masks or not args.predictions:
        raise UserError("--task panoptic needs --masks DIR with --predictions DIR (instance + class maps), or "
                        "--run RUN_DIR")
    stuff = args.stuff_classes
    if stuff is None or stuff < 0:
        raise UserError(f"--stuff-classes must be 0 or more, got {stuff}")
    out = _output_dir(args.out, "panoptic-metrics")
    files: dict = {"truth": {}, "prediction": {}}
    truth = read_panoptic_folder(args.masks, "--masks", sources=files["truth"])
    preds = read_panoptic_folder(args.predictions, "--predictions", sources=files["prediction"])
    missing = [n for n in truth if n not in preds]
    if missing:
        raise UserError(f"{len(missing)} image(s) in {args.masks} have no prediction in {args.predictions} "
                        f"(e.g. {missing[0]}); predict them or remove them")
    extra = sorted(set(preds) - set(truth))
    if extra:
        print(f"note: {len(extra)} prediction(s) without a truth were ignored (e.g. {extra[0]})", file=sys.stderr)
    k = args.num_classes
    if k is None:
        if stuff:
            raise UserError("--stuff-classes needs --num-classes T (the number of object types before them)")
        k = max(1, max(int(c.max(initial=0)) for _, c in truth.values()))
    if k < 1:
        raise UserError(f"--num-classes must be at least 1 object type, got {k}")
    top = k + stuff
    names = sorted(truth)
    for side, maps in (("truth", truth), ("prediction", preds)):
        for n in names:
            inst, cls = maps[n]
            if int(cls.max(initial=0)) > top:
                raise UserError(f"{side} {files[side][n]} has class id {int(cls.max())}, above the {k} object "
                                f"type(s) + {stuff} stuff class(es); check --num-classes/--stuff-classes")
    for n in names:
        if truth[n][0].shape != preds[n][0].shape:
            t, p = truth[n][0].shape, preds[n][0].shape
            raise UserError(f"size mismatch for {n}: truth {files['truth'][n]} is {t[1]}x{t[0]} but prediction "
                            f"{files['prediction'][n]} is {p[1]}x{p[0]} (width x height); predict at the truth's size")
    class_names = [c.strip() for c in args.class_names.split(",")] if args.class_names else None
    if class_names is not None and len(class_names) != top:
        raise UserError(f"--class-names lists {len(class_names)} name(s) but there are {k} object type(s) + "
                        f"{stuff} stuff class(es) = {top}")
    result = panoptic_scores([truth[n] for n in names], [preds[n] for n in names], k, stuff, names=names,
                             class_names=class_names)
    out.mkdir(parents=True)
    result["images"].to_csv(out / "per_image.csv", index=False)
    result["classes"].to_csv(out / "per_class.csv", index=False)

    summary = result["summary"]
    (out / "summary.json").write_text(json.dumps(clean(summary), indent=2) + "\n")
    print(f"{len(names)} image(s): {args.masks} vs {args.predictions} ({k} object type(s), {stuff} stuff class(es))")
    print(f"mPQ (PanNuke) {summary['mpq']:.4f}  mPQ+ (CoNIC) {summary['mpq_plus']:.4f}  bPQ {summary['bpq']:.4f}"
          + (f"  mean stuff IoU {summary['mean_stuff_iou']:.4f}" if stuff else ""))
    for name, row in summary["per_class"].items():
        print(f"  {name}: PQ {row['pq']:.4f}  SQ {row['sq']:.4f}  RQ/F1 {row['rq']:.4f}")
    print(f"per_image.csv, per_class.csv, summary.json -> {out}")
    return 0


def _run_panoptic_trained(args) -> int:
    """``--task panoptic --run RUN``: the run's model on its test split (or ``--split``/other data)."""
    from Functions.evaluation.panoptic import evaluate_panoptic_run

    if args.predictions:
        raise UserError("--predictions belongs to --masks mode; with --run the run's model makes the predictions")
    if args.data and args.dataset:
        raise UserError("give either --data DIR or --dataset NAME, not both")
    result = evaluate_panoptic_run(args.run, data=args.data, dataset=args.dataset, data_dir=args.data_dir,
                                   split=args.split, out=args.out, batch_size=args.batch_size, tta=args.tta)
    summary = result["summary"]
    print(f"{result['n']} image(s) of the {result['split']} split of {args.run}, original resolution: "
          f"{summary['prediction']}{' (TTA: 4 flips averaged)' if args.tta else ''}")
    print(f"mPQ (PanNuke) {summary['mpq']:.4f}  mPQ+ (CoNIC) {summary['mpq_plus']:.4f}  bPQ {summary['bpq']:.4f}")
    for name, row in summary["per_class"].items():
        print(f"  {name}: PQ {row['pq']:.4f}  SQ {row['sq']:.4f}  RQ/F1 {row['rq']:.4f}")
    print(f"per_image.csv, per_class.csv, summary.json -> {result['out']}")
    return 0


def _output_dir(out, default: str) -> Path:
    """A new folder for several output files: ``out`` must not exist; the default is numbered if it does."""
    if out:
        path = Path(out).expanduser()
        if path.exists():
            raise UserError(f"--out {path} already exists and is never overwritten; choose another name, "
                            f"e.g. --out {_free_name(path)}")
        return path
    path = Path(default)
    return _free_name(path) if path.exists() else path


def _run_class_folders(args) -> int:
    """``--masks DIR --predictions DIR --num-classes K``: per-class and macro/micro metrics of class maps."""
    from Functions.data.classes import parse_class_map, read_class_mask
    from Functions.metrics.segmentation import confusion_matrix, per_image_metrics, summarize

    k = args.num_classes
    mapping = parse_class_map(args.class_map)
    out = _output_path(args.out)
    names, trues, guesses = _read_pairs(_paired_files(args), lambda path: read_class_mask(path, mapping, k),
                                        lambda path: read_class_mask(path, None, k))
    table = per_image_metrics(trues, guesses, names=names, num_classes=max(k, 3), tolerance=args.tolerance,
                              spacing=_check_spacing(args.spacing))
    if k == 2:
        table = table[[c for c in table.columns if not c.endswith("_2")]]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    summary = summarize(table)
    cm = sum(confusion_matrix(t, p, k) for t, p in zip(trues, guesses))
    print(f"{len(table)} image(s), {k} classes: {args.masks} vs {args.predictions}")
    cols = [c for c in summary.columns if c.split("_")[0] in ("dice", "iou")] + [
        "macro_dice", "micro_dice", "macro_iou", "micro_iou", "pixel_accuracy"]
    print(summary.loc[["mean", "std", "median"], cols].T.to_string(float_format=lambda v: f"{v:.4f}"))
    print("pixel confusion matrix (rows: true class, columns: predicted):")
    print(cm)
    print(f"per-image metrics -> {out}")
    return 0


def _run_instance_trained(args) -> int:
    if not getattr(args, "run", None):
        raise UserError("--task instance needs --masks DIR with --predictions DIR, or --run RUN_DIR")
    from Functions.evaluation.instance import evaluate_instance_run

    result = evaluate_instance_run(args.run, data=args.data, dataset=args.dataset, data_dir=args.data_dir,
                                   split=args.split, out=args.out, batch_size=args.batch_size, tta=args.tta)
    mean = result["table"].iloc[-1]
    print(f"{len(result['table']) - 1} image(s) of the {result['split']} split of {args.run}")
    print("  ".join(f"{c} {mean[c]:.4f}" for c in ("dsb_score", "ap50", "ap75", "f1_50", "pq", "aji")))
    print(f"per-image instance metrics -> {result['out']}")
    return 0


def _check_spacing(spacing):
    if spacing is None:
        return None
    if len(spacing) not in (1, 2) or any(not (s > 0) for s in spacing):
        raise UserError(f"--spacing takes one or two positive numbers (rows cols), got {' '.join(map(str, spacing))}")
    return spacing[0] if len(spacing) == 1 else tuple(spacing)


def _image_files(folder: Path, flag: str) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder``."""
    if not folder.is_dir():
        raise UserError(f"{flag} {folder} is not a folder; pass the folder that holds the image files")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in found:
            raise UserError(
                f"{flag} {folder} holds two files named {path.stem} ({found[path.stem].name}, {path.name}); "
                "keep one so masks and predictions pair unambiguously"
            )
        found[path.stem] = path
    if not found:
        raise UserError(f"{flag} {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def _output_path(out) -> Path:
    if out:
        path = Path(out).expanduser()
        if path.exists():
            alt = _free_name(path)
            raise UserError(f"--out {path} already exists and is never overwritten; choose another name, "
                            f"e.g. --out {alt}")
        return path
    path = Path("metrics.csv")
    return _free_name(path) if path.exists() else path


def _free_name(path: Path) -> Path:
    k = 1
    while (alt := path.with_name(f"{path.stem}-{k}{path.suffix}")).exists():
        k += 1
    return alt


def _read_truth(path: Path):
    """A true mask as ``(H, W)`` bool (non-zero / bright = foreground)."""
    from Functions.data.imaging import read_mask

    return read_mask(path).astype(bool)


def _read_prediction(path: Path):
    """A prediction as ``(H, W)`` bool, by the rule in the module docstring."""
    from Functions.data.imaging import read_image

    arr = read_image(path)
    arr = arr.max(axis=-1) if arr.ndim == 3 else arr
    return prediction_to_mask(arr)


def prediction_to_mask(arr):
    """Binarize a stored prediction: {0, 1} as is; else ``>= half the full scale`` (128 for 8-bit)."""
    import numpy as np

    a = np.asarray(arr)
    if a.dtype == bool:
        return a
    if a.size and np.isin(a, (0, 1)).all():
        return a.astype(bool)
    if np.issubdtype(a.dtype, np.floating):
        return a >= 0.5
    if a.dtype == np.uint16 or (a.dtype != np.uint8 and a.max(initial=0) > 255):
        return a >= 32768
    return a >= 128


# ----------------------------------------------------------------------------
# run mode
# ----------------------------------------------------------------------------
def _run_trained(args) -> int:
    from Functions.evaluation.evaluate import evaluate_run

    for flag in ("predictions",):
        if getattr(args, flag, None):
            raise UserError(f"--{flag} belongs to --masks mode; with --run the run's model makes the predictions")
    if args.data and args.dataset:
        raise UserError("give either --data DIR or --dataset NAME, not both")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.tolerance is None or args.tolerance < 0:
        raise UserError(f"--tolerance must be a distance >= 0 in pixels, got {args.tolerance}")
    result = evaluate_run(args.run, data=args.data, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                          tta=args.tta, out=args.out, batch_size=args.batch_size, tolerance=args.tolerance,
                          spacing=_check_spacing(args.spacing))
    summary = result["summary"]
    print(f"{len(result['table'])} image(s) of the {result['split']} split of {args.run}"
          f"{' (TTA: 4 flips averaged)' if args.tta else ''}")
    print(summary.loc[["mean", "std", "median"]].T.to_string(float_format=lambda v: f"{v:.4f}"))
    if result["plain"] is not None:
        for k in ("dice", "iou", "hd95"):
            before, after = result["plain"][k], float(summary.loc["mean", k])
            print(f"TTA effect on mean {k}: {before:.4f} -> {after:.4f} ({after - before:+.4f})")
    print(f"per-image metrics, summary, worst.png and report.md -> {result['out']}")
    return 0
