"""Training engine: configs, the one fit loop (callbacks, resume, NaN guard, time budget, schedules,
distribution, mixed precision) and the segmentation and classification tasks built on it."""
