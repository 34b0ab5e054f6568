"""Model probabilities for a batch of images, optionally with test-time augmentation (flips), and masks."""

from __future__ import annotations

import numpy as np


def predict_probabilities(model, images: np.ndarray, batch_size: int = 8, tta: bool = False) -> np.ndarray:
    """Model probabilities ``(N, H, W, C)`` for ``images`` ``(N, H, W, C_in)``.

    Deep-supervision models are reduced to their last head.  With ``tta`` the
    prediction is the mean over the identity, horizontal, vertical and both
    flips (each flipped back before averaging).
    """
    from Functions.models import single_output

    model = single_output(model)
    if not tta:
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    total = None
    for axes in ((), (2,), (1,), (1, 2)):
        x = np.flip(images, axis=axes) if axes else images
        p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
        p = np.flip(p, axis=axes) if axes else p
        total = p if total is None else total + p
    return total / 4.0


def probabilities_to_masks(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(N, H, W, C)`` probabilities -> ``(N, H, W)`` integer masks: threshold for C == 1, argmax otherwise."""
    if probs.shape[-1] == 1:
        return (probs[..., 0] >= threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)
