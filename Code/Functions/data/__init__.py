"""Data layer: reading images and medical formats, finding samples, public data sets, synthetic samples,
splits, preprocessing, augmentation and the batch pipeline.  Imports only ``Functions.base``."""
