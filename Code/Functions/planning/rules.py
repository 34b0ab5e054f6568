"""The written rules that turn a :class:`~Functions.planning.fingerprint.Fingerprint` into ``train`` settings.

Each rule returns :class:`Choice` ``(field, value, reason)``; the reason names the measurement it rests on
(``benchmarks/LOG.md`` sections and runs) or the published source (nnU-Net: Isensee et al., Nature Methods
18, 203-211, 2021).  ``docs/planning.md`` lists every rule.  Rules whose field the user set (a flag or a recipe
key, ``given``) still run - their line says ``(set by you)`` - but their value is not applied
(:func:`Functions.planning.plan.apply_plan`).  Rules never read the clock or the machine's load: the same
fingerprint, task and budget give the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Largest / smallest image area at or above which 2-D images are trained on native-resolution patches.
NATIVE_SPREAD = 2.0
#: A median image side at or above which images are trained on native patches even when all share one size.
NATIVE_SIDE = 512
#: Patch side for native training (128 measured best on DSB2018; 192 scored lower, run AE).
PATCH = 128
#: Share of objects touching another at or above which instance targets get the 2-px contact band.
TOUCHING = 0.1
#: Share of images with a near-duplicate at or above which the split keeps near-duplicates together.
DUPLICATES = 0.01
#: A time budget (minutes) at or above which the planned run spends time on test-time flips and bfloat16.
LONG_BUDGET = 5.0
#: Epoch cap when a time budget decides the length (the cosine schedule is fitted to the epochs that fit).
BUDGET_EPOCHS = 200

#: Few large images (at most this many, each at least :data:`LARGE_IMAGE` patches of area): under a time budget the
#: patches per image come from the image area instead of the fixed two (DRIVE: 20 training images of 565x584).
FEW_IMAGES = 100
LARGE_IMAGE = 4
#: Patches per epoch cover every training pixel this many times on average (few large images, time budget) ...
COVERAGE = 2
#: ... but an epoch holds at most nnU-Net's 250 iterations x the batch size patches.
NNUNET_ITERATIONS = 250

#: Memory one training batch may fill with activations and their gradients: nnU-Net's 8 GB GPU target, at most a
#: quarter of this machine's RAM (a laptop learner's CPU).
MEMORY_TARGET = 8 * 2 ** 30
#: Feature maps a U-Net level keeps for the backward pass, per element of its map (two conv + normalisation +
#: activation in the encoder and again in the decoder, pooling, up-sampling, concatenation): the estimate is within
#: 7 % of the summed layer outputs of the built Keras U-Nets (2-D and 3-D; tests/test_planning.py).
UNET_TENSORS = 15

BENCH = "benchmarks/LOG.md"
NNUNET = "nnU-Net (Isensee et al. 2021, Nature Methods)"
MICROSCOPY = ("fluorescence", "brightfield", "stained")


@dataclass(frozen=True)
class Choice:
    """One planned setting: the config field, its value and the one-line reason."""

    field: str
    value: object
    reason: str


def _size(values) -> str:
    return "x".join(str(int(v)) for v in values)


# ----------------------------------------------------------------------------- 2-D
def image_rules(fp, *, task: str, time_budget: float | None, given: set) -> list[Choice]:
    """The plan for 2-D images."""
    from Functions.data.augmentation import preset_for

    long = bool(time_budget) and time_budget >= LONG_BUDGET
    task = image_task(fp, task, given)
    out = [Choice("dims", 2, f"{fp.n_samples} 2-D images (no dataset.json + imagesTr/ volume layout)")]
    sizes = f"{_size(fp.size_min)} to {_size(fp.size_max)}, median {_size(fp.size_median)}"
    side_median = min(fp.size_median)
    # objects scored one by one are never shrunk: images above 128 px keep their size (whole, when square and a
    # multiple of 16, else as native patches)
    counted = task in ("instance", "panoptic") and side_median > PATCH and "image_size" not in given
    whole = (counted and fp.size_spread == 1.0 and fp.size_median[0] == fp.size_median[1]
             and side_median % 16 == 0)
    native = "image_size" not in given and (fp.size_spread >= NATIVE_SPREAD or side_median >= NATIVE_SIDE
                                             or (counted and not whole))
    shrink = (f"--task {task} scores objects one by one: resizing to 128 px would shrink a median object of "
              f"{fp.object_area_median:g} px to {fp.object_area_median * (PATCH / side_median) ** 2:.0f} px, where "
              f"touching ones merge")
    if native:
        side = min(PATCH, max(16, (side_median // 16) * 16))
        why = (f"image sizes {sizes} (areas differ {fp.size_spread:g}x)" if fp.size_spread >= NATIVE_SPREAD
               or side_median >= NATIVE_SIDE else f"image sizes {sizes}; {shrink}")
        out.append(Choice("patch_size", side,
                          f"{why}: native {side}-px patches, whole images by sliding window; DSB2018 Dice 0.9097 "
                          f"native vs 0.9006 resized to 128 ({BENCH} 'Native resolution (issue 17)'); 192-px patches "
                          "scored lower (run AE)"))
        out.append(Choice("patch_sampling", "area",
                          f"patches in proportion to image area; DSB2018 Dice 0.9097 vs 0.8965 per image, "
                          f"1024x1024 fields 0.40 -> 0.83 ({BENCH} 'Native resolution', runs A-B)"))
        out.append(patches_per_image(fp, side, time_budget))
    elif whole:
        out.append(Choice("patch_size", None, f"every image {sizes}: trained whole at its own size"))
        out.append(Choice("image_size", side_median,
                          f"{shrink}; the images keep their own {side_median} px (no resize; DSB2018 Dice 0.9097 at "
                          f"native resolution vs 0.9006 resized to 128, {BENCH} 'Native resolution (issue 17)'; "
                          "HoVer-Net trains PanNuke's 256-px tiles at 256)"))
    else:
        why = ("--image-size given: resize" if "image_size" in given
               else f"image sizes {sizes} (areas differ {fp.size_spread:g}x, below {NATIVE_SPREAD:g}x): resize")
        out.append(Choice("patch_size", None, f"{why} every image to --image-size (128 by default; "
                          f"DSB2018 Dice 0.90 at 128x128, {BENCH} 'Accuracy per budget')"))
    shares = ", ".join(f"{k} {v:.0%}" for k, v in fp.modality_shares.items())
    out.append(Choice("normalization", "auto",
                      f"modality {fp.modality} ({shares} of {fp.n_measured} images, {fp.modality_source}): auto picks "
                      f"dark_background when dark-on-light and light-on-dark objects mix (DSB2018), else minmax "
                      f"({BENCH} 'Accuracy per budget')"))
    if fp.modality in MICROSCOPY:
        out.append(Choice("augment", "light", f"{fp.modality} microscopy: flips and 90-degree turns; stronger presets "
                          f"scored lower or the same on DSB2018 ({BENCH} issue 9 table, run S)"))
    else:
        preset = preset_for(fp.modality)
        seen = ("; on the ultrasound sample Dice 0.9464 against 0.8194 with light (one run each, docs/planning.md)"
                if preset == "ultrasound" else "; not measured here")
        out.append(Choice("augment", preset, f"{fp.modality}: the modality's preset (Functions.data.augmentation."
                          f"MODALITY_PRESETS){seen}"))
    objects = (f"{fp.objects_per_image:g} objects per image, median area {fp.object_area_median:g} px, "
               f"{fp.touching_share:.0%} touching another")
    if task == "instance":
        out.append(Choice("task", "instance", f"--task instance asked; masks hold {fp.mask_kind} ({objects})"))
        out.append(Choice("loss", "cce_dice", f"3-class head: Dice + cross-entropy (DSB2018 run D: +0.013 DSB score "
                                              f"over cross-entropy alone, {BENCH} runs C-D)"))
        touching = fp.touching_share >= TOUCHING
        out.append(Choice("class_weights", [1.0, 1.0, 5.0] if touching else None,
                          f"{fp.touching_share:.0%} of objects touch: boundary class weighted 5 (run F; 3 in D, 10 "
                          f"in X scored lower)" if touching else
                          f"{fp.touching_share:.0%} of objects touch (below {TOUCHING:.0%}): unweighted classes"))
        out.append(Choice("boundaries", "both" if touching else "all",
                          "band where objects meet plus a 1-px rim on every object (runs K-L: DSB 0.5729, the best "
                          "mode)" if touching else "objects rarely touch: every object's rim is boundary"))
        out.append(Choice("boundary_width", 2 if touching else 1,
                          "2-px band where objects meet (run E: AP50 0.7463 -> 0.7570)" if touching
                          else "1-px rim (the default)"))
        out.append(Choice("decoder", "tuned", "watershed thresholds, smallest marker and object tuned on the "
                          "validation split, again per kind of image with 5 or more (train does it; runs M-O: test "
                          "AP50 +0.013)"))
    elif task == "panoptic":
        out += panoptic_rules(fp, given)
    else:
        hint = {"instances": "; --task instance trains a 3-class head + watershed",
                "typed instances": "; --task panoptic trains the object types too"}.get(fp.mask_kind, "")
        out.append(Choice("task", "semantic", f"masks hold {fp.mask_kind} ({objects}){hint}"))
        out.append(Choice("loss", "bce_dice", f"BCE + soft Dice, the measured default ({BENCH} 'Accuracy per budget')"))
    out.append(Choice("model", "unet", f"U-Net base 16, depth 4 (1.95 M parameters); wider deep levels (run AG) and "
                                       f"the Attention U-Net (AH-AI) stayed inside its spread ({BENCH})"))
    side = chosen(out, "patch_size")
    if side and side < PATCH:
        depth = max(2, min(4, (side // 8).bit_length() - 1))
        out.append(Choice("model_options", {"depth": depth},
                          f"{side}-px patches: depth {depth}, so the deepest level is still {side // 2 ** depth} px "
                          f"across, as 128-px patches at depth 4 leave 8 px ({NNUNET}: pool while the map is "
                          "at least 4-8 px)"))
    side = chosen(out, "patch_size") or chosen(out, "image_size", PATCH)
    depth = chosen(out, "model_options", {}).get("depth", 4)
    out.append(batch_rule(8, unet_sample_bytes(side, 16, depth, dims=2, channels=fp.channels),
                          f"batch 8 at most; batch 4 scored lower (0.8969 vs 0.9017 Dice, {BENCH} issue 9 table; "
                          "run AF)"))
    out += _schedule(time_budget, native, default_epochs=25)
    out.append(Choice("tta", long, f"test-time flips: +0.0016 Dice / +0.005 DSB score for 4x the prediction time "
                                   f"({BENCH} run F)" + ("" if long else f"; off below a {LONG_BUDGET:g}-minute "
                                                                          "budget")))
    out += _precision(long)
    if native:
        out.append(Choice("overlap", 0.5, f"sliding-window overlap 0.5 ({NNUNET}); 0.75 gave AP50 0.7962 vs 0.7960 "
                                          f"(run Y, {BENCH})"))
    out += layout_rules(fp)
    dup_share = fp.near_duplicate_samples / fp.hashed if fp.hashed else 0.0
    group_note = (f"{fp.n_groups} groups ({fp.grouped_samples} samples) stay in one split" if fp.n_groups
                  else "no groups known")
    out.append(Choice("split_by", "group", f"{group_note}; split by group (no patient or picture in two splits)"))
    out.append(Choice("near_duplicates", dup_share >= DUPLICATES,
                      f"{fp.near_duplicate_samples} of {fp.hashed} hashed images have a near-duplicate "
                      f"({dup_share:.1%}; grouped from {DUPLICATES:.0%}, BUSI has copies)"))
    return out


def chosen(choices: list[Choice], field: str, default=None):
    """The value the plan so far gives ``field``, else ``default``."""
    return next((c.value for c in choices if c.field == field), default)


def unet_sample_bytes(side, base: int, depth: int, dims: int = 2, channels: int = 1) -> float:
    """Estimated training memory of one sample in a U-Net (float32 activations kept for the backward pass and
    their gradients): :data:`UNET_TENSORS` maps per level of ``base * 2**level`` channels, at ``side / 2**level``
    per axis; ``side`` one number or one per axis."""
    sides = [float(side)] * dims if np.isscalar(side) else [float(v) for v in side]
    elements = sum(np.prod([v / 2 ** level for v in sides]) * base * 2 ** level for level in range(depth + 1))
    return 2 * 4 * (UNET_TENSORS * elements + np.prod(sides) * channels)


def memory_target() -> tuple[float, str]:
    """``(bytes, why)``: :data:`MEMORY_TARGET`, or a quarter of this machine's RAM when that is less."""
    from Functions.base.runtime import total_memory_bytes

    ram = total_memory_bytes()
    if ram and ram / 4 < MEMORY_TARGET:
        return ram / 4, f"a quarter of this machine's {ram / 2 ** 30:.0f} GB of RAM"
    return float(MEMORY_TARGET), f"{NNUNET}'s 8 GB target"


def batch_rule(most: int, per_sample: float, why: str) -> Choice:
    """The batch size: ``most`` unless fewer samples fit :func:`memory_target` (at least 1)."""
    budget, where = memory_target()
    n = int(max(1, min(most, budget // per_sample)))
    return Choice("batch_size", n, f"{why}; one sample needs about {per_sample / 2 ** 20:.0f} MB for activations and "
                                   f"gradients, so {int(budget // per_sample)} fit {budget / 2 ** 30:.1f} GB "
                                   f"({where}): batch {n}")


def image_task(fp, task: str, given: set) -> str:
    """The task of a 2-D plan: the one asked for, or ``panoptic`` when the user named none and the masks are
    typed instances (class maps beside the instance maps).  UserError (one line) for ``--task panoptic`` on data
    without class maps."""
    if task == "panoptic" and fp.mask_kind != "typed instances":
        from Functions.base.errors import UserError

        raise UserError(f"--task panoptic needs typed objects, but the masks of {fp.root} hold {fp.mask_kind}: give "
                        "instances/<name>.png and classes/<name>.png beside images/ (make-sample --kind panoptic "
                        "shows the layout; CoNSeP, PanNuke and CoNIC folders as published work too), or drop --task")
    if "task" not in given and task == "semantic" and fp.mask_kind == "typed instances":
        return "panoptic"
    return task


def panoptic_rules(fp, given: set) -> list[Choice]:
    """Task, loss and class weights for typed instances (``--task panoptic``)."""
    shares = ", ".join(f"{k} {v:.0%}" for k, v in fp.type_shares.items()) or "none measured"
    why = ("--task panoptic asked" if "task" in given else
           "the masks are typed instances (a class map beside each instance map): nothing asked, so the plan "
           "keeps the types")
    stuff = (f"{fp.stuff_classes} stuff class(es) {', '.join(fp.class_names[fp.object_types:]) or ''}".rstrip()
             if fp.stuff_classes else "no stuff class")
    out = [Choice("task", "panoptic",
                  f"{why}; {fp.object_types} object type(s) ({shares} of the measured objects), {stuff} "
                  f"({fp.types_source}), {fp.objects_per_image:g} objects per image: one softmax head over "
                  "background, boundary, each type's interior and the stuff, decoded by watershed and each object's "
                  "majority type (HoVer-Net's rule); test mPQ, bPQ, mPQ+; --task semantic or instance drops the "
                  "types"),
           Choice("loss", "cce_dice", f"softmax head of {2 + fp.object_types + fp.stuff_classes} classes: "
                                      f"cross-entropy + soft Dice (panoptic sample: mPQ 0.962, bPQ 0.970; on "
                                      f"instances +0.013 DSB score over cross-entropy alone, {BENCH} runs C-D)")]
    rare = min(fp.type_shares.values(), default=1.0)
    out.append(Choice("class_weights", None,
                      f"unweighted classes: the rarest type holds {rare:.0%} of the measured objects; weighting "
                      "rare types is not measured here (mPQ averages the types, so a rare type counts as much as a "
                      "common one: a user may try --class-weights)"))
    return out


def patches_per_image(fp, side: int, time_budget) -> Choice:
    """Training patches per image and epoch (native patches).

    Few large images under a time budget (at most :data:`FEW_IMAGES` images of at least :data:`LARGE_IMAGE`
    patches' area, e.g. DRIVE): enough patches that an epoch covers the training pixels :data:`COVERAGE` times,
    at most nnU-Net's :data:`NNUNET_ITERATIONS` iterations x batch 8 per epoch - one patch per image would leave
    an epoch of 2-3 batches and most of the budget unused.  Otherwise two under a budget (DSB2018 recipe), one
    without.
    """
    import math

    area = int(fp.size_median[0]) * int(fp.size_median[1])
    per_image = area / side ** 2
    if time_budget and fp.n_samples <= FEW_IMAGES and per_image >= LARGE_IMAGE:
        n_train = max(1, int(fp.layout_split.get("train", fp.n_samples)))
        cover = math.ceil(COVERAGE * per_image)
        cap = max(1, math.ceil(NNUNET_ITERATIONS * 8 / n_train))
        n = max(2, min(cover, cap))
        return Choice("patches_per_image", n,
                      f"{fp.n_samples} images of median {_size(fp.size_median)} ({per_image:.1f} {side}-px patches "
                      f"each) under --time-budget {time_budget:g}: {n} patches per image and epoch, so an epoch "
                      f"covers the training pixels {COVERAGE} times (at most {NNUNET}'s {NNUNET_ITERATIONS} "
                      f"iterations x batch 8 = {NNUNET_ITERATIONS * 8} patches); one patch per image would make "
                      "epochs of a few batches. Rule from nnU-Net and the image area, not yet measured here")
    if time_budget:
        return Choice("patches_per_image", 2, f"two patches per image and epoch under a time budget, as in the "
                                              f"DSB2018 recipe ({BENCH} runs A-Y)")
    return Choice("patches_per_image", 1, "one patch per image and epoch (the default) without a time budget, so an "
                                          "epoch stays short")


def layout_rules(fp) -> list[Choice]:
    """The split and the region of interest the layout gives (2-D and 3-D)."""
    from Functions.data.splits import OFFICIAL

    parts = fp.layout_split
    note = f"; {fp.layout_note}" if fp.layout_note else ""
    if parts:
        counts = ", ".join(f"{k} {v}" for k, v in parts.items() if v)
        val = "" if parts.get("val") else "; validation drawn from the official training part (seeded, by group)"
        test = "" if parts.get("test") else "; test drawn from the training part (the layout has none)"
        out = [Choice("split", "official",
                      f"{OFFICIAL}: {counts}. Published scores use it (DRIVE: 20 training / 20 test images), so "
                      f"the official test part stays test{val}{test}; --split random ignores it{note}")]
    else:
        out = [Choice("split", "auto", f"the layout names no test or validation part: a seeded random split by "
                                       f"--val-fraction / --test-fraction{note}")]
    if fp.roi_samples:
        from Functions.data.samples import ROI_NOTE

        out.append(Choice("roi", "field of view",
                          f"{fp.roi_samples} of {fp.n_samples} images ship a field-of-view mask (DRIVE mask/): the "
                          f"loss gives weight 0 outside it (patch training) and test figures are {ROI_NOTE}, as "
                          "DRIVE papers score; always on when the masks are there"))
    return out


def _schedule(time_budget, native: bool, default_epochs: int) -> list[Choice]:
    if time_budget:
        out = [Choice("epochs", BUDGET_EPOCHS, f"--time-budget {time_budget:g} min decides the epochs (cap "
                                               f"{BUDGET_EPOCHS}); the cosine schedule is fitted to those that fit")]
    else:
        out = [Choice("epochs", default_epochs, f"{default_epochs} epochs (the default; give --time-budget to fit "
                                                "the run to minutes)")]
    out.append(Choice("lr_schedule", "cosine", "one warm-up epoch, cosine decay to 1% ("
                                               f"{BENCH} 'Accuracy per budget')"))
    keep = "last" if native and time_budget else "best"
    out.append(Choice("keep", keep, "the last epoch: patch-level validation picks an early epoch by chance "
                                    f"(run O kept 6 of 26; {BENCH} runs P-R)" if keep == "last" else
                      "the best epoch by validation Dice (whole validation images: a reliable pick)"))
    return out


def _precision(long: bool) -> list[Choice]:
    from Functions.base.runtime import cpu_has_bf16

    if long and cpu_has_bf16():
        return [Choice("mixed_precision", True, "this CPU computes bfloat16 natively: faster epochs, same scores "
                                                f"({BENCH} runs M-O)")]
    why = "no bfloat16 instructions on this CPU" if long else f"a run under {LONG_BUDGET:g} minutes"
    return [Choice("mixed_precision", False, f"float32 ({why}; a GPU user may add --mixed-precision)")]


# ----------------------------------------------------------------------------- 3-D
def volume_rules(fp, *, task: str, time_budget: float | None, given: set) -> list[Choice]:
    """The plan for volumes (``--dims 3``)."""
    long = bool(time_budget) and time_budget >= LONG_BUDGET
    out = [Choice("dims", 3, f"{fp.n_samples} labelled volumes (dataset.json + imagesTr/, or images/ + labels/ "
                             "of NIfTI/DICOM)")]
    spacing = fp.spacing_median
    aniso = max(spacing) / min(spacing) if spacing and min(spacing) > 0 else 1.0
    out.append(Choice("target_spacing", None,
                      f"the median spacing of the training volumes ({NNUNET}); {' x '.join(f'{s:g}' for s in spacing)} "
                      f"mm on {fp.n_measured} volumes" + (f" (anisotropic {aniso:.1f}x: kept as measured)" if aniso > 3
                                                          else "")))
    out.append(Choice("patch_size", None, f"median volume {_size(fp.size_median)} voxels: the patch is that shape, "
                                          "at most 48x96x96, in multiples of 2**depth (data.volumes.auto_patch; "
                                          f"{NNUNET})"))
    modality = fp.modality.lower()
    intensity = "ct" if modality == "ct" else ("mri" if modality in ("mri", "mr") else "auto")
    out.append(Choice("intensity", intensity,
                      {"ct": "CT (dataset.json): Hounsfield window to [0, 1]",
                       "mri": "MRI (dataset.json): percentile clip + z-score per volume "
                              f"({NNUNET})"}.get(intensity, f"modality {fp.modality}: chosen from the intensities")))
    out.append(Choice("model", "unet3d", "3-D U-Net, 8 base filters, depth 3 (sample Dice 0.9608 with the 3-D "
                                         "defaults, README 'Volumes')"))
    from Functions.data.volumes import auto_patch

    out.append(batch_rule(2, unet_sample_bytes(auto_patch([fp.size_median], 3), 8, 3, dims=3, channels=fp.channels),
                          f"two patches per batch at most ({NNUNET}: batch 2)"))
    classes = fp.n_classes - 1
    out.append(Choice("task", "semantic", f"{classes} labelled structure(s), foreground {fp.foreground_share:.1%} of "
                                          "the voxels: one in three patches centred on a structure"))
    out += _schedule(time_budget, False, default_epochs=15)
    out.append(Choice("tta", long, "test-time flips (not measured on volumes here)" if long
                      else f"no test-time flips below a {LONG_BUDGET:g}-minute budget"))
    out.append(Choice("overlap", 0.5, f"sliding-window overlap 0.5 ({NNUNET})"))
    out += layout_rules(fp)
    return out


def plan_rules(fp, *, task: str = "semantic", time_budget: float | None = None,
               given: set | frozenset = frozenset()) -> list[Choice]:
    """Every planned setting for the fingerprint ``fp`` (2-D or 3-D rules by ``fp.dims``)."""
    rules = volume_rules if fp.dims == 3 else image_rules
    return rules(fp, task=task or "semantic", time_budget=time_budget, given=set(given))
