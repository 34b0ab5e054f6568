"""Training targets that let a semantic network separate touching objects.

A network that predicts only "nucleus or not" cannot split two nuclei that
touch: their masks form one connected blob.  Two standard remedies, both
computed here from an instance label map ``(H, W)`` (0 = background):

* :func:`three_class_target` - every pixel is background (0), object
  interior (1) or object **boundary** (2).  A boundary pixel is an object
  pixel with a pixel of any *other* label (another object or background)
  within ``width`` pixels (4-connected steps), so between two touching
  objects a band of boundary pixels separates their interiors
  (``boundaries="all"``).  ``boundaries="touching"`` keeps only the band
  within ``width`` of *another object* (an isolated object's rim stays
  interior, so small objects keep their interiors whole), and
  ``boundaries="both"`` adds a 1-pixel rim on every object to that band.
  Trained
  with a 3-class softmax head; decoded by
  :func:`Functions.inference.instances.three_class_to_labels`.
* :func:`instance_class_target` - the same, and ``boundaries="contact"``:
  four classes, the band where objects meet (**contact**, 3) kept apart
  from the 1-pixel rim every object has (**rim**, 2), so the network learns
  the gap between two nuclei as a class of its own rather than as part of
  every outline.  The decoder adds the two back into one boundary
  probability.
* :func:`distance_target` - each object's Euclidean distance to its own
  edge, divided by the object's largest distance (so every object peaks at
  1.0); background 0.  Decoded by marker-controlled watershed from the
  distance peaks (:func:`Functions.inference.instances.distance_to_labels`).

Both are pure NumPy/SciPy and deterministic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Class indices of :func:`three_class_target` (and of ``boundaries="contact"``, whose boundary class is the rim).
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
#: The fourth class of ``boundaries="contact"``: the band where objects meet.
CONTACT = 3
THREE_CLASS_NAMES = ("background", "interior", "boundary")
FOUR_CLASS_NAMES = ("background", "interior", "rim", "contact")
#: Where the boundary class is drawn: every object's rim ``width`` wide; only the band where objects meet; that
#: band plus a 1-pixel rim on every object; or that band and the rim as two classes (4 classes in all).
BOUNDARY_MODES = ("all", "touching", "both", "contact")


def instance_class_names(boundaries: str = "all") -> tuple:
    """Names of the classes of :func:`instance_class_target` for ``boundaries`` (3, or 4 for ``"contact"``)."""
    if boundaries not in BOUNDARY_MODES:
        raise ValueError(f"boundaries must be one of {', '.join(BOUNDARY_MODES)}, got {boundaries!r}")
    return FOUR_CLASS_NAMES if boundaries == "contact" else THREE_CLASS_NAMES


def instance_boundaries(labels: np.ndarray, width: int = 1, touching: bool = False) -> np.ndarray:
    """Object pixels within ``width`` 4-connected steps of a pixel with another label: ``(H, W)`` bool.

    ``touching=True``: only another *object's* label counts (background does not), so the result is the band
    where objects meet or nearly meet (a gap of up to ``width - 1`` background pixels)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {lab.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    cross = ndimage.generate_binary_structure(2, 1)
    footprint = ndimage.iterate_structure(cross, width)
    # a pixel differs from a neighbour iff the neighbourhood's max or min differs from it
    hi = ndimage.maximum_filter(lab, footprint=footprint, mode="nearest")
    if touching:
        # background counts as +inf for the minimum, so a smaller value is always another object
        # (and a larger maximum, being above the pixel's own label >= 1, is too)
        lab = lab.astype(np.int64)
        lo = ndimage.minimum_filter(np.where(lab > 0, lab, np.iinfo(np.int64).max), footprint=footprint,
                                    mode="nearest")
    else:
        lo = ndimage.minimum_filter(lab, footprint=footprint, mode="nearest")
    return (lab > 0) & ((hi != lab) | (lo != lab))


def three_class_target(labels: np.ndarray, width: int = 1, boundaries: str = "all") -> np.ndarray:
    """Instance label map ``(H, W)`` -> class map ``(H, W)`` uint8: 0 background, 1 interior, 2 boundary.

    ``boundaries`` (:data:`BOUNDARY_MODES`): ``"all"`` - every object pixel within ``width`` of another label
    (object or background); ``"touching"`` - only those within ``width`` of another *object*; ``"both"`` - the
    touching band plus a 1-pixel rim on every object (see :func:`instance_boundaries`)."""
    if boundaries == "contact":
        raise ValueError("boundaries='contact' has four classes; use instance_class_target")
    return instance_class_target(labels, width, boundaries)


def instance_class_target(labels: np.ndarray, width: int = 1, boundaries: str = "all") -> np.ndarray:
    """Instance label map ``(H, W)`` -> class map ``(H, W)`` uint8 for ``boundaries`` (:data:`BOUNDARY_MODES`).

    ``"all"``, ``"touching"``, ``"both"``: as :func:`three_class_target` (0 background, 1 interior, 2 boundary).
    ``"contact"``: 0 background, 1 interior, 2 rim (the 1-pixel rim of every object), 3 contact (object pixels
    within ``width`` of *another* object; where the two overlap, contact wins).  Its object pixels are
    :func:`three_class_target`'s with ``"both"``, the boundary class split in two."""
    if boundaries not in BOUNDARY_MODES:
        raise ValueError(f"boundaries must be one of {', '.join(BOUNDARY_MODES)}, got {boundaries!r}")
    lab = np.asarray(labels)
    out = (lab > 0).astype(np.uint8) * INTERIOR
    if boundaries == "contact":
        out[instance_boundaries(lab, 1)] = BOUNDARY
        out[instance_boundaries(lab, width, touching=True)] = CONTACT
        return out
    if boundaries == "all":
        band = instance_boundaries(lab, width)
    else:
        band = instance_boundaries(lab, width, touching=True)
        if boundaries == "both":
            band |= instance_boundaries(lab, 1)
    out[band] = BOUNDARY
    return out


def distance_target(labels: np.ndarray) -> np.ndarray:
    """Instance label map ``(H, W)`` -> per-object normalised distance ``(H, W)`` float32 in [0, 1]."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, np.float32)
    objects = ndimage.find_objects(lab.astype(np.int64))
    for k, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        # pad by one pixel so the distance is measured to the object's own edge
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        inside = lab[sl] == k
        d = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        top = d[inside].max()
        if top > 0:
            out[sl][inside] = (d[inside] / top).astype(np.float32)
    return out


def panoptic_target(instances: np.ndarray, classes: np.ndarray, num_types: int, width: int = 1,
                    boundaries: str = "all") -> np.ndarray:
    """Instance + class maps -> one class map ``(H, W)`` uint8 for a single softmax head:
    0 background, 1 object boundary (as :func:`instance_class_target`), ``1 + t`` the interior of an object of
    type ``t`` (``t`` = 1..``num_types``), ``1 + c`` stuff class ``c`` (``c`` > ``num_types``) outside objects.
    So every class id ``c`` of the class map is channel ``c + 1``, and channel 1 is the boundary."""
    if boundaries == "contact":
        raise ValueError("the panoptic head has one boundary class; use boundaries all, touching or both")
    inst = np.asarray(instances)
    cls = np.asarray(classes).astype(np.int64)
    rings = instance_class_target(inst, width, boundaries)
    typed = np.where((cls >= 1) & (cls <= num_types), cls, 0)
    if ((inst > 0) & (typed == 0)).any():
        raise ValueError("every object pixel needs a type 1..num_types in the class map")
    out = np.where(inst > 0, typed + 1, np.where(cls > num_types, cls + 1, 0))
    out[rings == BOUNDARY] = 1
    return out.astype(np.uint8)
