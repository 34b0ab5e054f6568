"""Test metrics where papers compute them: each image at its original resolution, distances in mm when the
format stores the pixel spacing.

:func:`score_samples` predicts every sample with a
:class:`~Functions.inference.predictor.Predictor` (sliding window for a run
trained on patches, resize-and-back for a run trained with ``--image-size``;
either way the mask comes back at the image's own size), and scores it
against the mask as stored - never a resized mask.  HD95 and ASSD are in
millimetres for samples whose reader knows the spacing (DICOM, NIfTI, or a
``spacing`` given for all), otherwise in pixels of the original image; the
``unit`` column says which.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from Functions.data.discovery import load_roi, load_sample
from Functions.metrics.segmentation import per_image_metrics

#: The sentence ``report.md`` uses for how the figures were computed.
NATIVE_NOTE = ("Metrics are computed on each test image at its original resolution (predicted masks are "
               "brought back to the image's own size before scoring); HD95 and ASSD are in millimetres where the "
               "pixel spacing is known (column unit = mm), otherwise in pixels of the original image (px).")


def score_samples(predictor, samples: Sequence, *, batch_size: int = 8, tta: bool = False,
                  threshold: float | None = None, tolerance: float = 2.0, spacing=None,
                  num_classes: int | None = None):
    """One row per sample: ``image``, the metric columns, ``width``, ``height``, ``unit`` (mm or px).

    Images are decoded one batch at a time (``batch_size``), so memory does not
    grow with the number of samples.  ``spacing`` (``(row, col)`` or one
    number) overrides the samples' own spacing.  A binary sample with a
    region of interest (``Sample.roi``, DRIVE's field of view) is scored on
    the pixels inside it only (column ``roi`` True).
    """
    import pandas as pd

    rows = []
    samples = list(samples)
    for start in range(0, len(samples), max(1, int(batch_size))):
        chunk = samples[start:start + batch_size]
        pairs = [load_sample(s) for s in chunk]
        preds = predictor.predict([p[0] for p in pairs], batch_size=batch_size, tta=tta, threshold=threshold)
        for s, (image, truth), pred in zip(chunk, pairs, preds):
            sp = spacing if spacing is not None else getattr(s, "spacing", None)
            if sp is not None and np.ndim(sp) == 0:
                sp = (float(sp), float(sp))
            t = np.asarray(truth)
            t = t[..., 0] if t.ndim == 3 else t
            binary = (num_classes or 1) <= 1
            roi = load_roi(s, t.shape) if binary else None
            table = per_image_metrics([(t > 0).astype(np.uint8) if binary else t], [pred], names=[s.id],
                                      num_classes=None if binary else num_classes, tolerance=tolerance, spacing=sp,
                                      rois=[roi])
            row = table.iloc[0].to_dict()
            row.update(width=int(t.shape[1]), height=int(t.shape[0]), unit="mm" if sp is not None else "px")
            if roi is not None:
                row["roi"] = True
            rows.append(row)
    return pd.DataFrame(rows)


def score_class_samples(predictor, samples: Sequence, read_truth, num_classes: int, *, batch_size: int = 8,
                        tta: bool = False, keep: int = 4):
    """Multi-class runs: every sample predicted at its original size and scored per class.

    ``read_truth(sample, (H, W))`` returns the true class map ``(H, W)``
    (values ``0..num_classes-1``).  Images are read a batch at a time.
    Returns ``(table, confusion, shown)``: one row per image with the
    per-class, macro and micro columns of
    :func:`Functions.metrics.segmentation.per_image_metrics` (plus ``width``,
    ``height``), the summed pixel confusion matrix ``(K, K)`` and the first
    ``keep`` ``(image, truth, prediction)`` for a figure.
    """
    import pandas as pd

    from Functions.data.imaging import read_image
    from Functions.metrics.segmentation import confusion_matrix

    k = int(num_classes)
    rows, shown = [], []
    confusion = np.zeros((k, k), np.int64)
    samples = list(samples)
    for start in range(0, len(samples), max(1, int(batch_size))):
        chunk = samples[start:start + batch_size]
        images = [read_image(s.image) for s in chunk]
        truths = [np.asarray(read_truth(s, im.shape[:2])) for s, im in zip(chunk, images)]
        preds = predictor.predict(images, batch_size=batch_size, tta=tta)
        for s, image, t, p in zip(chunk, images, truths, preds):
            table = per_image_metrics([t], [p], names=[s.id], num_classes=max(k, 3))
            if k == 2:    # two classes are scored as binary otherwise: keep the multi-class columns
                table = table[[c for c in table.columns if not c.endswith("_2")]]
            rows.append({**table.iloc[0].to_dict(), "width": int(t.shape[1]), "height": int(t.shape[0])})
            confusion += confusion_matrix(t, p, k)
            if len(shown) < keep:
                shown.append((image, t, p))
    return pd.DataFrame(rows), confusion, shown
