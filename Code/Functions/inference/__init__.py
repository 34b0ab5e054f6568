"""Inference layer: loading a trained model and predicting (test-time augmentation, whole folders,
classifiers, Grad-CAM).  Imports base, data, models, losses and metrics."""
