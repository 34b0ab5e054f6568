"""Metrics: per-image segmentation measures in NumPy (:mod:`.segmentation`, re-exported here so
``from Functions import metrics; metrics.dice(t, p)`` works), streaming Keras metrics
(:mod:`.streaming`) and classification measures (:mod:`.classification`)."""

from Functions.metrics.segmentation import (  # noqa: F401
    BINARY_KEYS, METRIC_COLUMNS, assd, binary_metrics, boundary, boundary_f1, confusion, dice, hausdorff_distance,
    hd95, iou, mean_iou, mean_pixel_accuracy, multiclass_metrics, per_image_metrics, pixel_accuracy, precision,
    recall, specificity, summarize, surface_distances)
from Functions.metrics.instance import (  # noqa: F401, E402 - instance/panoptic measures on label maps
    DSB_THRESHOLDS, INSTANCE_COLUMNS, aji, average_precision, dsb_score, instance_metrics, instance_table,
    iou_matrix, panoptic_quality)
