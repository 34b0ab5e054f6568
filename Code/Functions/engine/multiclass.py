"""Multi-class semantic and instance segmentation runs on the one training loop.

:func:`segmentation_task` picks the task of a :class:`~Functions.engine.segmentation.TrainConfig` (each a
:class:`~Functions.engine.segmentation.SegmentationTask` subclass that overrides only what differs):

* binary (``num_classes`` 1, or inferred as binary) - the plain :class:`SegmentationTask`;
* :class:`MultiClassTask` - ``num_classes K >= 2`` given, or inferred from the
  training masks' values (:func:`Functions.data.classes.infer_class_map`), or a
  ``class_map``: masks read as class maps ``0..K-1``, a softmax head, per-class
  Dice/IoU every epoch (``dice_1``, ``val_iou_2`` ... in ``history.csv``), and
  per-class, macro (empty classes excluded, MONAI ``ignore_empty``) and micro
  means on the test split (``metrics.json``, ``test_metrics.csv``,
  ``report.md``), a pixel confusion matrix and figures with a colour legend;
* :class:`InstanceTask` - ``task="instance"``: instance label maps
  (:func:`Functions.data.instances.read_instances`) become 3-class targets
  (background / interior / boundary) for a softmax U-Net; the test split is
  decoded by watershed and scored with the instance metrics (DSB2018 score,
  AP50/75, F1, PQ/SQ/RQ, AJI) and the pixel Dice of the foreground.

Both train on images resized to ``--image-size`` or, with ``--patch-size P``,
on random patches of the full-resolution images (class maps and 3-class
targets then come through a :class:`~Functions.data.native.MaskSpec`; the
instance boundaries are drawn at the training resolution).  Either way the
test split is scored where papers score it: each image predicted at its
original size (resized back, or by sliding window) against its masks as
stored.

The class mapping used is printed, saved in ``config.json`` (``class_map``,
``num_classes``) and ``classes.json``, and read back by ``predict``/``evaluate``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from Functions.base.errors import UserError
from Functions.base.runs import summary_json, write_json
from Functions.data.instance_targets import instance_class_names
from Functions.engine.finish import Scores, scored_split
from Functions.engine.fit import make_optimizer
from Functions.engine.segmentation import SegmentationTask, prepare_data

log = logging.getLogger("Functions")


# ----------------------------------------------------------------------------- choosing the task
def class_setup(config, samples) -> tuple[int, dict | None]:
    """``(num_classes, value -> class mapping or None)`` for a semantic run on ``samples``.

    ``config.class_map`` wins; else ``config.num_classes``; else the mapping
    inferred from the mask files (samples with one mask image each).
    """
    from Functions.data.classes import infer_class_map, parse_class_map

    mapping = parse_class_map(config.class_map) if config.class_map else None
    if mapping is not None:
        k = max(mapping.values()) + 1
        if config.num_classes not in (None, k) and not (config.num_classes == 1 and k == 2):
            raise UserError(f"--class-map gives {k} classes but --num-classes is {config.num_classes}; "
                            "make them agree or drop --num-classes", field="num_classes")
        return (1 if k == 2 else k), mapping
    files = [s.masks[0] for s in samples if getattr(s, "kind", "image") == "image" and len(s.masks) == 1]
    if config.num_classes is not None:
        if config.num_classes > 1 and files and len(files) == len(samples):
            inferred = infer_class_map(files)   # 0/128/255 masks with --num-classes 3: map the values in order
            if inferred is not None and len(inferred) == config.num_classes and max(inferred) >= config.num_classes:
                return config.num_classes, inferred
        return config.num_classes, None
    if len(files) < len(samples):   # several masks per image (instances, BUSI _mask_1) or volumes: binary
        return 1, None
    mapping = infer_class_map(files)
    if mapping is None:
        return 1, None
    return len(mapping), mapping


def segmentation_task(config) -> SegmentationTask:
    """The 2-D segmentation task for ``config`` (see the module docstring): one object per kind of run."""
    if getattr(config, "task", "semantic") == "instance":
        return InstanceTask()
    if getattr(config, "task", "semantic") == "panoptic":
        return PanopticTask()
    if config.class_map or (config.num_classes or 1) > 1:
        return MultiClassTask()
    if config.num_classes is None:
        return MultiClassTask()   # decides in prepare(): falls back to binary when the masks are binary
    return BinaryCheckedTask()


# ----------------------------------------------------------------------------- loading
def _samples(config):
    from Functions.data.sources import resolve_samples

    return resolve_samples(config.data, config.dataset, config.data_dir, sample="nuclei")


def _resized(mask: np.ndarray, size) -> np.ndarray:
    from Functions.data.preprocessing import resize_mask

    return resize_mask(np.asarray(mask), size) if size is not None else np.asarray(mask)


def replace_with_class_maps(data: dict, mapping: dict | None, num_classes: int, image_size) -> None:
    """Swap the binary masks of every split for class maps ``(N, H, W, 1)`` uint8 (nearest-neighbour resize)."""
    for name in ("train", "val", "test"):
        x, y, subset = data[name]
        if x is None:
            continue
        y = np.stack([_resized(read_class_map(s, None, mapping, num_classes), image_size)
                      for s in subset])[..., None].astype(np.uint8)
        data[name] = (x, y, subset)


def class_mask_spec(mapping: dict | None, num_classes: int):
    """The :class:`~Functions.data.native.MaskSpec` of multi-class patch training: each sample's class map."""
    from Functions.data.classes import format_class_map
    from Functions.data.native import MaskSpec

    return MaskSpec(key=f"classes:{num_classes}:{format_class_map(mapping)}",
                    read=lambda sample, shape: read_class_map(sample, shape, mapping, num_classes))


def read_class_map(sample, shape, mapping: dict | None, num_classes: int) -> np.ndarray:
    """The class map ``(H, W)`` of one image sample (one mask file), checked against the image's ``shape``
    ``(H, W)`` when given."""
    from Functions.data.classes import read_class_mask

    if getattr(sample, "kind", "image") != "image" or len(sample.masks) != 1:
        raise UserError(f"multi-class training reads one class-map image per sample; {sample.image} has "
                        f"{len(sample.masks)} mask files (or is a volume slice); pass --num-classes 1 for binary")
    m = read_class_mask(sample.masks[0], mapping, num_classes)
    if shape is not None and tuple(m.shape[:2]) != tuple(shape[:2]):
        raise UserError(f"mask {sample.masks[0]} is {m.shape[1]}x{m.shape[0]} but its image {sample.image} is "
                        f"{shape[1]}x{shape[0]}; masks must have their image's size")
    return m


def instance_mask_spec(width: int = 1, boundaries: str = "all"):
    """The :class:`~Functions.data.native.MaskSpec` of instance patch training: label maps -> class targets
    (3 classes, or 4 with ``boundaries="contact"``)."""
    from functools import partial

    from Functions.data.instance_targets import instance_class_target
    from Functions.data.instances import read_instances
    from Functions.data.native import MaskSpec

    n = len(instance_class_names(boundaries))
    return MaskSpec(key=f"instance-{n}class-w{width}{'' if boundaries == 'all' else '-' + boundaries}",
                    read=read_instances, target=partial(instance_class_target, width=width, boundaries=boundaries))


def check_binary(data: dict) -> None:
    """``--num-classes 1``: refuse a label map (3+ values) in any mask file of an image sample."""
    from Functions.data.classes import check_binary_mask, read_raw_mask

    for name in ("train", "val", "test"):
        for s in data[name][2]:
            if getattr(s, "kind", "image") == "image" and len(s.masks) == 1:
                check_binary_mask(read_raw_mask(s.masks[0]), s.masks[0])


def replace_with_instance_targets(data: dict, image_size, width: int = 1, boundaries: str = "all") -> None:
    """Swap the training and validation masks for class targets ``(N, H, W, 1)`` (3 classes, or 4 with
    ``boundaries="contact"``) drawn on the label maps resized to ``image_size`` (the test split is scored on its
    label maps as stored, see :func:`score_instance`)."""
    from Functions.data.instance_targets import instance_class_target
    from Functions.data.instances import read_instances

    for name in ("train", "val"):
        x, y, subset = data[name]
        if x is None:
            continue
        labels = []
        for s in subset:
            if getattr(s, "kind", "image") != "image":
                raise UserError(f"--task instance reads instance masks from image files; {s.image} is a "
                                f"{s.kind} sample")
            labels.append(_resized(read_instances(s).astype(np.int32), image_size))
        data[name] = (x, np.stack([instance_class_target(m, width, boundaries) for m in labels])[..., None],
                      subset)


# ----------------------------------------------------------------------------- tasks
class BinaryCheckedTask(SegmentationTask):
    """``--num-classes 1`` given: binary, refusing label-map masks with one clear error."""

    def prepare(self, config):
        data = prepare_data(config)
        check_binary(data)
        return data


class MultiClassTask(SegmentationTask):
    """Softmax over ``K`` classes; or binary when the class setup finds binary masks."""

    def prepare(self, config):
        from Functions.data.classes import format_class_map

        k, mapping = class_setup(config, _samples(config))
        several = k > 1 or mapping is not None
        patches = bool(getattr(config, "patch_size", None))
        data = prepare_data(config, masks=class_mask_spec(mapping, max(k, 2)) if several and patches else None)
        data["num_classes"], data["class_map"] = k, mapping
        if several:
            if not patches:
                replace_with_class_maps(data, mapping, max(k, 2), config.image_size)
            if config.num_classes is None or mapping is not None:
                print(f"classes: {max(k, 2)} from mask values {format_class_map(mapping)} "
                      f"(value:class; saved in config.json)", flush=True)
        return data

    def settle(self, config, data):
        from Functions.data.classes import format_class_map

        super().settle(config, data)
        config.num_classes = int(data.get("num_classes") or config.num_classes or 1)
        if data.get("class_map") is not None:
            config.class_map = format_class_map(data["class_map"])

    def run_files(self, config, data):
        if (config.num_classes or 1) <= 1:
            return {}
        k = config.num_classes
        return {"classes.json": {"num_classes": k, "class_map": config.class_map,
                                 "class_names": class_names(config)}}

    def compile(self, model, config):
        super().compile(model, config)
        compile_with_classes(model, config)

    def score(self, model, config, data, run_dir):
        if (config.num_classes or 1) <= 1:
            return super().score(model, config, data, run_dir)
        return score_multiclass(model, config, data)


class InstanceTask(MultiClassTask):
    """3-class (background/interior/boundary) U-Net, or 4-class (background/interior/rim/contact) with
    ``boundaries="contact"``, decoded by watershed into instance label maps."""

    def prepare(self, config):
        width, boundaries = config.boundary_width, config.boundaries
        if getattr(config, "patch_size", None):
            data = prepare_data(config, masks=instance_mask_spec(width, boundaries))
        else:
            data = prepare_data(config)
            replace_with_instance_targets(data, config.image_size, width=width, boundaries=boundaries)
        data["num_classes"], data["class_map"] = len(config.instance_names()), None
        return data

    def settle(self, config, data):
        super().settle(config, data)
        config.num_classes = len(config.instance_names())

    def score(self, model, config, data, run_dir):
        return score_instance(model, config, data, run_dir)


class PanopticTask(MultiClassTask):
    """One softmax head over background, object boundary, the interiors of the T object types and the S stuff
    classes (:func:`Functions.data.instance_targets.panoptic_target`), decoded into an instance map and a class
    map (:func:`Functions.inference.panoptic.decode_panoptic`) and scored with mPQ, mPQ+, bPQ and stuff IoU.

    Images larger than ``--image-size`` (CoNSeP's 1000x1000 tiles) are never squashed: training switches to random
    patches of that size at native resolution (:func:`auto_patches`, said on one line; ``--patch-size`` chooses
    another) and the test split is predicted whole by sliding window.  CoNSeP, PanNuke and CoNIC folders as
    published are read without preparation, their own split kept (:mod:`Functions.data.panoptic_published`)."""

    def prepare(self, config):
        from Functions.data.panoptic_published import split_note

        samples = _samples(config)
        if split_note(samples):
            print(split_note(samples), flush=True)
        t, s, names = panoptic_classes(config, {"train": (None, None, samples), "val": (None, None, []),
                                                "test": (None, None, [])})
        auto_patches(config, samples)
        width, boundaries = config.boundary_width, config.boundaries
        if config.patch_size:
            data = prepare_data(config, masks=panoptic_mask_spec(t, s, width, boundaries))
        else:
            data = prepare_data(config)
            replace_with_panoptic_targets(data, config.image_size, t, s, width, boundaries)
        data["num_classes"], data["class_map"] = 2 + t + s, None
        data["panoptic"] = (t, s, names)
        print(f"panoptic classes: {t} object type(s) {', '.join(names[:t])}; {s} stuff class(es) "
              f"{', '.join(names[t:]) or '-'} ({2 + t + s} output channels)", flush=True)
        return data

    def settle(self, config, data):
        super().settle(config, data)
        t, s, names = data["panoptic"]
        config.object_types, config.stuff_classes, config.panoptic_names = t, s, list(names)
        config.num_classes = 2 + t + s

    def score(self, model, config, data, run_dir):
        return score_panoptic(model, config, data)


def auto_patches(config, samples) -> None:
    """Images larger than ``--image-size``: train on random patches of that size at native resolution (and
    predict by sliding window) instead of squashing them; said on one line."""
    from Functions.data.native import native_shape

    if config.patch_size:
        return
    sizes = [hw for hw in (native_shape(x, 1.0) for x in samples[:2000]) if hw]
    big = max((max(hw) for hw in sizes), default=0)
    if big > config.image_size:
        config.patch_size = p = config.image_size
        if config.patches_per_image == 1:        # an epoch covers about each image's area, as the resize path does
            config.patches_per_image = int(min(64, max(1, round(np.mean([h * w for h, w in sizes]) / p ** 2))))
        print(f"panoptic: images up to {big} px exceed --image-size {p}; training on random {p}x{p} patches at "
              f"native resolution ({config.patches_per_image} per image and epoch) and predicting by sliding "
              "window (--patch-size and --patches-per-image choose others)", flush=True)


def panoptic_mask_spec(num_types: int, num_stuff: int, width: int = 1, boundaries: str = "all"):
    """The :class:`~Functions.data.native.MaskSpec` of panoptic patch training: each sample's
    :func:`~Functions.data.instance_targets.panoptic_target` at native resolution."""
    from Functions.data.native import MaskSpec

    return MaskSpec(key=f"panoptic-{num_types}t{num_stuff}s-w{width}-{boundaries}",
                    read=lambda sample, shape: panoptic_sample_target(sample, shape, num_types, num_stuff, width,
                                                                      boundaries))


def panoptic_sample_target(sample, shape, num_types: int, num_stuff: int, width: int = 1, boundaries: str = "all",
                           size=None) -> np.ndarray:
    """The panoptic target ``(H, W)`` uint8 of one sample (its maps resized, nearest, to ``size`` when given),
    refusing a class above ``T + S`` with one line naming the class map."""
    from Functions.data.instance_targets import panoptic_target
    from Functions.data.panoptic_io import sample_panoptic_maps

    inst, cls = sample_panoptic_maps(sample, shape)
    top = int(cls.max(initial=0))
    if top > num_types + num_stuff:
        raise UserError(f"the class map of {sample.image} holds class {top}, above the {num_types} object type(s) "
                        f"+ {num_stuff} stuff class(es); fix classes.json beside instances/ (num_classes, "
                        "stuff_classes)")
    try:
        return panoptic_target(_resized(inst, size), _resized(cls, size), num_types, width,
                               boundaries).astype(np.uint8)
    except ValueError as exc:
        raise UserError(f"{sample.image}: {exc}") from None


def panoptic_classes(config, data) -> tuple[int, int, list[str]]:
    """``(T, S, names)``: the config's, else the data folder's ``classes.json``, else inferred from the maps."""
    from Functions.data.panoptic_io import infer_panoptic_classes, panoptic_class_info, sample_panoptic_maps

    samples = [s for name in ("train", "val", "test") for s in data[name][2]]
    info = None
    if samples and getattr(samples[0], "instances", None) is not None:
        info = panoptic_class_info(Path(samples[0].instances).parent.parent)
    t, s = config.object_types, config.stuff_classes
    if t is None and info is not None:
        t, s = info["num_classes"], info["stuff_classes"] if s is None else s
    if t is None:
        t, s_found = infer_panoptic_classes(sample_panoptic_maps(x) for x in data["train"][2])
        s = s_found if s is None else s
    s = s or 0
    names = list(config.panoptic_names or (info or {}).get("class_names") or [])
    if not names:
        names = [f"type {k}" for k in range(1, t + 1)] + [f"stuff {k}" for k in range(1, s + 1)]
    if len(names) != t + s:
        raise UserError(f"{len(names)} class names for {t} object types + {s} stuff classes; classes.json beside "
                        "instances/ lists the types' names, then the stuff classes'")
    return int(t), int(s), names


def replace_with_panoptic_targets(data: dict, image_size, num_types: int, num_stuff: int, width: int = 1,
                                  boundaries: str = "all") -> None:
    """Swap the training and validation masks for :func:`~Functions.data.instance_targets.panoptic_target`
    class maps ``(N, H, W, 1)`` drawn on the maps resized (nearest) to ``image_size``."""
    for name in ("train", "val"):
        x, y, subset = data[name]
        if x is None:
            continue
        targets = [panoptic_sample_target(s, None, num_types, num_stuff, width, boundaries, image_size)
                   for s in subset]
        data[name] = (x, np.stack(targets)[..., None], subset)


def class_names(config) -> list[str]:
    """Names of the classes: ``background, interior, boundary`` (``rim, contact`` for ``boundaries="contact"``)
    for instance runs, else ``class 1..``."""
    if getattr(config, "task", "semantic") == "instance":
        return list(instance_class_names(getattr(config, "boundaries", "all")))
    if getattr(config, "task", "semantic") == "panoptic" and config.panoptic_names:
        return ["background", "boundary"] + list(config.panoptic_names)
    return ["background"] + [f"class {c}" for c in range(1, int(config.num_classes or 2))]


def compile_with_classes(model, config) -> None:
    """Compile a model the base task compiled again, with per-class metrics and class weights for K >= 2."""
    from Functions.losses import get_loss
    from Functions.metrics.class_streaming import per_class_metrics
    from Functions.metrics.streaming import segmentation_metrics

    k = int(model.outputs[-1].shape[-1])
    if k < 2 and not config.class_weights:
        return
    kwargs = {"class_weights": list(config.class_weights)} if config.class_weights else {}
    try:
        loss = get_loss(config.loss, **kwargs)
    except ValueError as exc:
        raise UserError(f"{exc} (class weights work with cce, cce_dice, dice and focal)", field="loss") from None
    n_out = len(model.outputs)
    metrics = segmentation_metrics(num_classes=k, threshold=config.threshold) + (per_class_metrics(k) if k > 1 else [])
    if n_out > 1:
        loss = [get_loss(config.loss, **kwargs) for _ in range(n_out)]
        metrics = [[] for _ in range(n_out - 1)] + [metrics]
    model.compile(optimizer=model.optimizer if model.optimizer is not None
                  else make_optimizer(config),
                  loss=loss, loss_weights=[1.0 / n_out] * n_out if n_out > 1 else None,
                  weighted_metrics=metrics, jit_compile=model.jit_compile, run_eagerly=config.run_eagerly)


# ----------------------------------------------------------------------------- scoring
def _predictor(model, config, data):
    from Functions.engine.native import predictor_for
    from Functions.models import single_output

    return predictor_for(single_output(model), config, data["channels"])


def _where(config) -> str:
    from Functions.evaluation.panoptic import prediction_note

    return prediction_note(asdict(config))


def score_multiclass(model, config, data) -> Scores:
    """Per-class, macro and micro test metrics at each image's original size, the confusion matrix, figures
    with a colour legend."""
    from Functions.data.classes import parse_class_map
    from Functions.evaluation.native import score_class_samples
    from Functions.metrics.segmentation import summarize
    from Functions.viz.plotting import plot_class_predictions, plot_confusion_matrix

    k = int(config.num_classes)
    samples, split_name = scored_split(data)
    mapping = parse_class_map(config.class_map) if config.class_map else None
    table, cm, shown = score_class_samples(
        _predictor(model, config, data), samples, lambda s, shape: read_class_map(s, shape, mapping, k), k,
        batch_size=config.batch_size, tta=config.tta)
    summary = summarize(table.drop(columns=["width", "height"], errors="ignore"))
    metrics = {c: float(summary.loc["mean", c]) for c in summary.columns}
    metrics["dice"], metrics["iou"] = metrics["macro_dice"], metrics["macro_iou"]
    names = class_names(config)
    figures = [lambda run_dir: plot_confusion_matrix(cm, names, path=run_dir / "confusion_matrix.png"),
               lambda run_dir: plot_class_predictions(
                   [sh[0] for sh in shown], [sh[1] for sh in shown], [sh[2] for sh in shown], names, n=len(shown),
                   titles=[s.id for s in samples[:len(shown)]], path=run_dir / "predictions.png")]
    per_class = "  ".join(f"{names[c]} {metrics.get(f'dice_{c}', float('nan')):.4f}" for c in range(1, k))
    return Scores(
        split=split_name, n_images=len(table), metrics=metrics, tables={"test_metrics.csv": table},
        after={"num_classes": k, "class_map": config.class_map, "class_names": names,
               "confusion_matrix": np.asarray(cm).tolist(), "scored_at": "original resolution",
               "summary": summary_json(summary)},
        figures=figures, where=", original resolution",
        note=f"Per-class Dice and IoU at the original resolution: {_where(config)}; classes absent from both truth "
             "and prediction are left out of an image's macro mean.",
        line=f"macro Dice {metrics['macro_dice']:.4f}  micro Dice {metrics['micro_dice']:.4f}  per class: "
             f"{per_class} ")


def score_instance(model, config, data, run_dir: Path) -> Scores:
    """Watershed-decoded test predictions at each image's original size, scored with the instance metrics +
    pixel Dice (the watershed tuned on validation first, saved as ``instance_decoder.json``)."""
    from Functions.evaluation.instance import (MIN_KIND_IMAGES, describe_decoder, predict_and_score, tune_decoder,
                                               worst_figure)

    samples, split_name = scored_split(data)
    predictor = _predictor(model, config, data)
    tuned = None
    if split_name == "test" and data["val"][2]:      # tuned on validation only, never on the images it is scored on
        tuned = tune_decoder(predictor, data["val"][2], batch_size=config.batch_size, tta=config.tta)
        write_json(run_dir / "instance_decoder.json", tuned)
        predictor.decoder = tuned["chosen"]
        print(f"Watershed tuned on the {tuned['n_images']} validation images: {describe_decoder(tuned['chosen'])} "
              f"(validation DSB score {tuned['chosen_score']:.4f}, {tuned['general_score']:.4f} with one setting "
              f"for all, {tuned['default_score']:.4f} with the defaults)", flush=True)
    table, worst = predict_and_score(predictor, samples, batch_size=config.batch_size, tta=config.tta)
    mean = table.iloc[-1]
    metrics = {c: float(mean[c]) for c in table.columns if c != "image"}
    metrics["dice"] = metrics["pixel_dice"]
    per_image = table["pixel_dice"].to_numpy()[:-1]
    metrics["iou"] = float(np.mean(per_image / np.maximum(2.0 - per_image, 1e-12)))  # IoU = D / (2 - D) per image
    note = (f"Instance metrics (DSB2018 score, AP, PQ, AJI) on label maps at the original resolution: "
            f"{_where(config)}, then decoded by marker-controlled watershed and compared with the true instances "
            "as stored. The figure shows the lowest-scoring test images.")
    if tuned:
        note += (f"\n\nThe watershed's thresholds and smallest object size were chosen on the validation split "
                 f"({tuned['n_images']} images, DSB score {tuned['default_score']:.4f} at the defaults, "
                 f"{tuned['general_score']:.4f} with one setting for all, {tuned['chosen_score']:.4f} chosen: "
                 f"{describe_decoder(tuned['chosen'])}); where the validation split held at least "
                 f"{MIN_KIND_IMAGES} images of a kind (fluorescence, brightfield, stained), that kind was tuned "
                 "on its own. `predict` and `evaluate` use them (instance_decoder.json).")
    return Scores(
        split=split_name, n_images=len(table) - 1, metrics=metrics, tables={"test_metrics.csv": table},
        after={"task": "instance", "scored_at": "original resolution",
               "decoder": tuned["chosen"] if tuned else None},
        figures=[lambda run_dir: worst_figure(run_dir / "predictions.png", table, worst)],
        note=note, where=", original resolution",
        line=f"DSB score {metrics['dsb_score']:.4f}  AP50 {metrics['ap50']:.4f}  PQ {metrics['pq']:.4f}  AJI "
             f"{metrics['aji']:.4f}  pixel Dice {metrics['pixel_dice']:.4f} ")


def score_panoptic(model, config, data) -> Scores:
    """Test images predicted at their original size, decoded into instance + class maps and scored with
    :func:`Functions.metrics.panoptic.panoptic_scores` (``test_metrics.csv`` per image, ``test_classes.csv`` per
    class, ``metrics.json`` with mPQ, mPQ+, bPQ, per-class PQ and stuff IoU)."""
    from Functions.evaluation.panoptic import predict_and_score_panoptic

    samples, split_name = scored_split(data)
    t, s = int(config.object_types), int(config.stuff_classes or 0)
    scores = predict_and_score_panoptic(_predictor(model, config, data), samples, t, s, config.panoptic_names,
                                        batch_size=config.batch_size, tta=config.tta)
    summ, dice = scores["summary"], scores["dice"]
    metrics = {"task": "panoptic", "mpq": summ["mpq"], "mpq_plus": summ["mpq_plus"], "bpq": summ["bpq"],
               "mean_stuff_iou": summ["mean_stuff_iou"], "per_class": summ["per_class"],
               "stuff_iou": summ["stuff_iou"], "dice": float(np.mean(dice)) if dice else float("nan")}
    metrics["iou"] = float(np.mean([d / (2.0 - d) for d in dice])) if dice else float("nan")
    how = f", sliding window {config.patch_size}x{config.patch_size}" if config.patch_size else ""
    return Scores(
        split=split_name, n_images=len(samples), metrics=metrics,
        tables={"test_metrics.csv": scores["images"], "test_classes.csv": scores["classes"]},
        after={"object_types": t, "stuff_classes": s, "class_names": list(config.panoptic_names or []),
               "scored_at": "original resolution", "prediction": _where(config), "patch_size": config.patch_size},
        note=f"Panoptic quality at the original resolution: {_where(config)}; objects separated by watershed on the "
             "folded 3-class head, each object typed by the majority of its pixels, stuff left semantic. mPQ as "
             "PanNuke (per image over the types present in its truth, then over images), mPQ+ as the CoNIC challenge "
             "(counts summed over images per type), bPQ class-agnostic (images with objects in the truth); "
             "definitions in Functions.metrics.panoptic.",
        where=f", original resolution{how}",
        line=f"bPQ {summ['bpq']:.4f}  mPQ {summ['mpq']:.4f}  mPQ+ {summ['mpq_plus']:.4f}"
             + (f"  stuff IoU {summ['mean_stuff_iou']:.4f}" if s else "") + " ")
