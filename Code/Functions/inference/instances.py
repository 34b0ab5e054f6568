"""From network outputs to instance label maps (0 = background, 1..n = objects).

* :func:`connected_components` - the baseline: threshold a foreground
  probability and label its connected pieces.  Touching objects merge.
* :func:`three_class_to_labels` - for a background / interior / boundary
  softmax ``(H, W, 3)``: markers are the connected pieces of the confident
  interior, and a marker-controlled **watershed** (scikit-image) on the
  interior probability grows them over the foreground (interior + boundary),
  so a boundary band between two touching objects is split between them;
  a foreground piece that holds no marker (a faint or small nucleus) is kept
  as an object of its own.
* :func:`distance_to_labels` - for a foreground probability plus a predicted
  distance map: markers at the distance peaks (regional maxima after an
  ``h``-maximum transform), watershed on the negative distance.

Every function returns an ``int32`` label map ``(H, W)`` with objects
numbered 1..n in raster order of their first pixel, and drops objects
smaller than ``min_size`` pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError


def _finish(labels: np.ndarray, min_size: int) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    lab = np.asarray(labels, np.int64)
    if min_size > 1 and lab.max(initial=0) > 0:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        lab = np.where(small[lab], 0, lab)
    # number objects in raster order of their first pixel
    flat = lab.ravel()
    values, first = np.unique(flat, return_index=True)
    keep = values != 0
    order = np.argsort(first[keep], kind="stable")
    lut = np.zeros(int(values.max(initial=0)) + 1, np.int64)
    lut[values[keep][order]] = np.arange(1, keep.sum() + 1)
    out = lut[lab]
    return relabel_sequential(out)[0].astype(np.int32)


def connected_components(probability: np.ndarray, threshold: float = 0.5, *, min_size: int = 1,
                         connectivity: int = 2) -> np.ndarray:
    """Foreground probability or mask ``(H, W)`` (or ``(H, W, 1)``) -> label map ``(H, W)`` int32."""
    p = np.asarray(probability)
    if p.ndim == 3:
        p = p[..., 0] if p.shape[-1] == 1 else 1.0 - p[..., 0]  # multi-class: 1 - P(background)
    fg = p >= threshold if np.issubdtype(p.dtype, np.floating) else p > 0
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, _ = ndimage.label(fg, structure=structure)
    return _finish(labels, min_size)


def three_class_to_labels(probabilities: np.ndarray, *, interior_threshold: float = 0.5,
                          foreground_threshold: float = 0.5, min_size: int = 4,
                          min_marker_size: int = 2) -> np.ndarray:
    """Background/interior/boundary probabilities ``(H, W, 3)`` -> label map ``(H, W)`` int32.

    Background/interior/rim/contact probabilities ``(H, W, 4)`` (``train --boundaries contact``) are decoded
    as the three classes with ``boundary = rim + contact``.

    ``interior_threshold``: interior probability a marker pixel needs;
    ``foreground_threshold``: ``1 - P(background)`` a pixel needs to belong
    to any object; markers smaller than ``min_marker_size`` pixels are
    dropped, as are final objects smaller than ``min_size``.  A connected piece of the foreground that
    holds no marker (a faint or small nucleus) becomes an object of its own rather than vanishing
    (:func:`with_unmarked_components`).  A one-hot
    class map (the ideal target) works as well as probabilities.
    """
    from skimage.segmentation import watershed

    p = np.asarray(probabilities, np.float32)
    if p.ndim != 3 or p.shape[-1] not in (3, 4):
        raise ValueError(f"expected (H, W, 3) background/interior/boundary or (H, W, 4) background/interior/"
                         f"rim/contact probabilities, got {p.shape}")
    if p.shape[-1] == 4:          # background/interior/rim/contact: rim and contact are one boundary
        p = np.concatenate([p[..., :2], p[..., 2:].sum(axis=-1, keepdims=True)], axis=-1)
    interior = p[..., 1]
    foreground = (1.0 - p[..., 0]) >= foreground_threshold
    seeds = (interior >= interior_threshold) & (interior > p[..., 2]) & foreground
    markers, _ = ndimage.label(seeds, structure=ndimage.generate_binary_structure(2, 1))
    if min_marker_size > 1 and markers.max() > 0:
        sizes = np.bincount(markers.ravel())
        markers = np.where(sizes[markers] < min_marker_size, 0, markers)
    labels = watershed(-interior, markers=markers, mask=foreground) if markers.max() > 0 else markers
    return _finish(with_unmarked_components(labels, foreground), min_size)


def distance_to_labels(foreground: np.ndarray, distance: np.ndarray, *, threshold: float = 0.5, h: float = 0.2,
                       min_size: int = 4) -> np.ndarray:
    """Foreground probability ``(H, W)`` + predicted distance ``(H, W)`` -> label map ``(H, W)`` int32.

    Markers are the regional maxima of ``distance`` that rise at least ``h``
    above their surroundings (``skimage.morphology.h_maxima``).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    fg = np.asarray(foreground, np.float32) >= threshold
    d = np.where(fg, np.asarray(distance, np.float32), 0.0)
    peaks = h_maxima(d.astype(np.float64), h) > 0
    markers, _ = ndimage.label(peaks & fg, structure=ndimage.generate_binary_structure(2, 2))
    labels = watershed(-d, markers=markers, mask=fg) if markers.max() > 0 else markers
    return _finish(with_unmarked_components(labels, fg), min_size)


def with_unmarked_components(labels: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """``labels`` (a marker-controlled watershed inside ``foreground``) plus, as objects of their own, the
    connected pieces of ``foreground`` that it left unlabelled.

    The watershed only grows markers: a foreground piece without one (a faint or small nucleus whose interior
    never reached the marker threshold) would otherwise vanish.  Pieces are 4-connected, as the watershed's
    flooding is, so a piece that touches a labelled object is never split off from it.
    """
    lab = np.asarray(labels, np.int64)
    rest, n = ndimage.label(np.asarray(foreground, bool) & (lab == 0),
                            structure=ndimage.generate_binary_structure(2, 1))
    if n == 0:
        return lab
    return np.where(rest > 0, rest + lab.max(initial=0), lab)


def colour_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Label map ``(H, W)`` -> RGB ``(H, W, 3)`` uint8, one random bright colour per object, black background."""
    lab = np.asarray(labels, np.int64)
    n = int(lab.max(initial=0))
    rng = np.random.default_rng(seed)
    hsv = np.stack([rng.permutation(np.linspace(0, 1, n, endpoint=False)) if n else np.zeros(0),
                    rng.uniform(0.6, 1.0, n), rng.uniform(0.75, 1.0, n)], axis=1)
    import matplotlib.colors as mcolors

    rgb = (mcolors.hsv_to_rgb(hsv) * 255).astype(np.uint8) if n else np.zeros((0, 3), np.uint8)
    table = np.concatenate([np.zeros((1, 3), np.uint8), rgb])
    return table[lab]


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45, seed: int = 0) -> np.ndarray:
    """Image ``(H, W)`` / ``(H, W, C)`` + label map ``(H, W)`` -> RGB uint8 ``(H, W, 3)``:
    each object tinted in its own colour, object outlines drawn solid."""
    from Functions.data.instance_targets import instance_boundaries

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    img = img.astype(np.float32)
    lo, hi = float(img.min(initial=0)), float(img.max(initial=0))
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
    colours = colour_labels(labels, seed).astype(np.float32) / 255.0
    inside = np.asarray(labels) > 0
    out = np.where(inside[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
    edges = instance_boundaries(np.asarray(labels))
    out[edges] = colours[edges]
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- with a trained model
#: The watershed decoder's settings (:func:`three_class_to_labels`) and their defaults; a run tuned on its
#: validation split stores its own in ``instance_decoder.json`` (:func:`decoder_settings`).
DECODER_DEFAULTS = {"interior_threshold": 0.5, "foreground_threshold": 0.5, "min_size": 4, "min_marker_size": 2}

def image_kind(image: np.ndarray) -> str:
    """Which kind of microscopy image ``image`` ``(H, W[, C])`` is, read from its pixels alone.

    ``"colour"``: the channels differ (stained tissue such as H&E);
    ``"bright"``: grey on a light background (brightfield); ``"dark"``: grey
    on a dark background (fluorescence).  On DSB2018 these are the three
    kinds whose nuclei differ most in size, texture and contrast, so one set
    of watershed thresholds rarely suits all three.
    """
    from Functions.data.imaging import is_grayscale
    from Functions.data.preprocessing import has_bright_background

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] >= 3 and not is_grayscale(img[..., :3]):
        return "colour"
    return "bright" if has_bright_background(img) else "dark"


def decoder_settings(decoder: dict | None = None, min_size: int | None = None, kind: str | None = None) -> dict:
    """:data:`DECODER_DEFAULTS` updated by ``decoder`` (a run's tuned values) and an explicit ``min_size``.

    ``decoder["by_kind"]`` (optional) maps an :func:`image_kind` to settings
    tuned on that kind of image; with ``kind`` given and present there, they
    replace the run's general settings.
    """
    decoder = decoder or {}
    chosen = (decoder.get("by_kind") or {}).get(kind) if kind is not None else None
    out = dict(DECODER_DEFAULTS)
    for source in (decoder, chosen or {}):
        out.update({k: v for k, v in source.items() if k in DECODER_DEFAULTS and v is not None})
    if min_size is not None:
        out["min_size"] = int(min_size)
    return out


def probabilities_to_labels(probabilities: np.ndarray, *, threshold: float = 0.5, min_size: int = 4,
                            interior_threshold: float = 0.5, foreground_threshold: float = 0.5,
                            min_marker_size: int = 2) -> np.ndarray:
    """One image's model output ``(H, W, C)`` -> label map ``(H, W)`` int32.

    ``C == 3``: background/interior/boundary, or ``C == 4``: background/interior/rim/contact, decoded by watershed
    (:func:`three_class_to_labels` with ``interior_threshold``,
    ``foreground_threshold`` and ``min_marker_size``); ``C == 1``: a foreground probability,
    decoded by connected components of ``p >= threshold`` (the baseline).
    """
    p = np.asarray(probabilities)
    if p.ndim != 3:
        raise ValueError(f"expected (H, W, C) probabilities, got {p.shape}")
    if p.shape[-1] in (3, 4):
        return three_class_to_labels(p, min_size=min_size, interior_threshold=interior_threshold,
                                     foreground_threshold=foreground_threshold,
                                     min_marker_size=int(min_marker_size))
    if p.shape[-1] == 1:
        return connected_components(p[..., 0], threshold, min_size=min_size)
    raise ValueError(f"instance decoding needs 3 classes (background/interior/boundary), 4 (background/interior/"
                     f"rim/contact) or 1 foreground channel, got {p.shape[-1]} channels")


def predict_instances(predictor, images, batch_size: int = 8, tta: bool = False, min_size: int | None = None) -> list:
    """Label maps ``(H, W)`` int32, one per image ``(H, W, C)``, at each image's own size, from a
    :class:`~Functions.inference.predictor.Predictor` (decoded with its run's ``decoder`` settings, for each
    image those of its :func:`image_kind` where the run tuned them, see :func:`decoder_settings`; ``min_size``
    overrides theirs)."""
    images = list(images)
    probs = predictor.probabilities(images, batch_size=batch_size, tta=tta)
    decoder = getattr(predictor, "decoder", None)
    by_kind = bool((decoder or {}).get("by_kind"))
    return [probabilities_to_labels(p, threshold=predictor.threshold,
                                    **decoder_settings(decoder, min_size, image_kind(im) if by_kind else None))
            for im, p in zip(images, probs)]


def check_instance_head(predictor, source) -> None:
    """UserError (one line naming ``source``) unless ``predictor``'s model has a head the watershed or connected
    components can decode: 1 foreground channel, 3 classes, or 4 when its run drew ``--boundaries contact``."""
    channels = int(predictor.model.outputs[-1].shape[-1])
    if channels in (1, 3) or (channels == 4 and predictor.boundaries == "contact"):
        return
    raise UserError(f"--task instance needs a model with a 3-class (background/interior/boundary), a 4-class "
                    f"(background/interior/rim/contact, trained with --boundaries contact) or a 1-channel head; "
                    f"{source} has {channels} output channels - train it with `train --task instance`")


def predict_folder_instances(model_path, images, out, *, overlay: bool = False, batch_size: int = 8,
                             tta: bool = False, min_size: int | None = None):
    """``predict --task instance``: ``out/<stem>.png`` 16-bit label maps (0 background, 1..n objects),
    with ``overlay`` also ``out/overlays/<stem>.png`` (one colour per object), and
    ``out/predictions.csv`` (``image, mask, width, height, foreground, objects``)."""
    import pandas as pd

    from Functions.data.imaging import read_image, write_image
    from Functions.data.instances import write_label_map
    from Functions.inference.predictor import check_new_folder, images_in_chunks, list_images, load_predictor

    out = check_new_folder(out)
    files = list_images(images)
    for f in files:  # fail before writing anything
        read_image(f)
    predictor = load_predictor(model_path)
    check_instance_head(predictor, model_path)
    rows = []
    for chunk, arrays in images_in_chunks(files, out, overlay, batch_size):
        for f, im, lab in zip(chunk, arrays, predict_instances(predictor, arrays, batch_size, tta, min_size)):
            write_label_map(out / f"{f.stem}.png", lab)
            if overlay:
                write_image(out / "overlays" / f"{f.stem}.png", overlay_labels(im, lab))
            rows.append({"image": str(f), "mask": f"{f.stem}.png", "width": im.shape[1], "height": im.shape[0],
                         "foreground": float(np.mean(lab > 0)), "objects": int(lab.max(initial=0))})
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    return table
