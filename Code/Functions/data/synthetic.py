"""Synthetic medical-looking images with exact masks: the offline sample in ``Data/sample``.

Two seeded generators, written from scratch (no pixel comes from a real data set):

* :func:`make_nuclei` - fluorescence-microscopy nuclei in the style of the 2018
  Data Science Bowl fluorescence images: a dark, unevenly lit background, bright
  elliptical nuclei of varied size and brightness (some dim), chromatin texture,
  optical blur, and photon (Poisson) plus camera read (Gaussian) noise.
* :func:`make_ultrasound` - breast B-mode ultrasound in the style of the BUSI set:
  layered tissue (skin, subcutaneous fat, glandular tissue, chest-wall muscle)
  rendered with speckle and depth attenuation, in three classes - ``benign``
  (smooth oval hypoechoic lesion with posterior enhancement), ``malignant``
  (irregular, spiculated, taller-than-wide hypoechoic lesion with posterior
  shadowing) and ``normal`` (no lesion).

Every mask is exact: it is the set of pixel centres inside the drawn shape,
decided before blur, speckle and noise are applied.

Determinism: image ``i`` of a generator depends only on ``(seed, kind, i)``
(it draws from ``numpy.random.default_rng([seed, kind_code, i])``), so the first
images are the same whatever ``n`` is, and a run is repeatable byte for byte on
one machine.  Only NumPy and SciPy do the arithmetic; across CPUs with different
vector units a transcendental function may differ in its last bit, which can
move a rare pixel by one grey level.

:func:`write_sample` puts both sets on disk in the layouts the loaders read
(``nuclei/images`` + ``nuclei/masks``, and BUSI's ``<class> (<k>).png`` /
``<class> (<k>)_mask.png`` / ``<class> (<k>)_mask_1.png``).  The command
``python -m Functions make-sample`` calls it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from Functions.base.errors import UserError

#: Defaults used to build the committed ``Data/sample`` (documented in ``Data/README.md``).
DEFAULT_SEED = 0
DEFAULT_SIZE = 256
DEFAULT_N_NUCLEI = 100
DEFAULT_N_PER_CLASS = 40

#: The three BUSI classes, in the order they are generated.
ULTRASOUND_CLASSES = ("benign", "malignant", "normal")

#: BUSI file names: ``benign (12).png``, ``benign (12)_mask.png``, ``benign (12)_mask_1.png``.
BUSI_NAME_RE = re.compile(r"^(benign|malignant|normal) \((\d+)\)(_mask(?:_(\d+))?)?\.png$")
#: Nucleus sample file names: ``nuclei_000.png`` (same name in ``images/``, ``masks/`` and ``instances/``).
NUCLEI_NAME_RE = re.compile(r"^nuclei_(\d{3,})\.png$")
#: Multi-class tissue sample file names: ``tissue_000.png`` (same name in ``images/`` and ``masks/``).
TISSUE_NAME_RE = re.compile(r"^tissue_(\d{3,})\.png$")
#: Classes of the tissue sample, by mask value.
TISSUE_CLASSES = ("background", "gland", "lesion")
DEFAULT_N_TISSUE = 40
DEFAULT_TISSUE_SIZE = 96

_KIND_NUCLEI = 1
_KIND_ULTRASOUND = 2
_KIND_TISSUE = 3
_KIND_PANOPTIC = 5

#: Panoptic sample: ``panoptic_000.png`` in ``images/``, ``masks/``, ``instances/`` and ``classes/``.
PANOPTIC_NAME_RE = re.compile(r"^panoptic_(\d{3,})\.png$")
#: Nucleus types (class ids 1..3) then stuff classes (ids 4, 5) of the panoptic sample.
PANOPTIC_TYPES = ("lymphocyte", "epithelial", "spindle")
PANOPTIC_STUFF = ("stroma", "gland")
DEFAULT_N_PANOPTIC = 40
DEFAULT_PANOPTIC_SIZE = 128


class UltrasoundCase(NamedTuple):
    """One generated ultrasound image.

    ``label``: ``"benign"``, ``"malignant"`` or ``"normal"``.
    ``image``: ``uint8`` array ``(size, size)``.
    ``masks``: list of ``uint8`` arrays ``(size, size)`` with values 0/255, one per
    lesion (one or two); a ``normal`` case has a single all-zero mask, as in BUSI.
    """

    label: str
    image: np.ndarray
    masks: list


# --------------------------------------------------------------------------- shapes


def _rng(seed: int, kind: int, index: int, sub: int = 0) -> np.random.Generator:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng([int(seed), kind, int(index), sub])


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation.

    ``sigma`` (pixels, scalar or per axis) sets the correlation length.  Wide fields
    are drawn on a coarse grid and interpolated (bilinear), which is much faster and
    looks the same."""
    step = int(min(np.atleast_1d(sigma)) // 4)
    if step >= 2:
        coarse = tuple(n // step + 4 for n in shape)
        small = ndimage.gaussian_filter(rng.standard_normal(coarse), np.asarray(sigma) / step, mode="reflect")
        coords = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64) / step + 1.5
        field = ndimage.map_coordinates(small, coords, order=1, mode="reflect")
    else:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    field -= field.mean()
    sd = field.std()
    return field / sd if sd > 0 else field


def _radius_profile(
    rng: np.random.Generator,
    *,
    a: float,
    b: float,
    angle: float,
    roughness: float,
    n_harmonics: int = 5,
    spikes: int = 0,
    spike_length: float = 0.0,
):
    """A closed star-shaped outline ``r(theta)``: a rotated ellipse with semi-axes ``a``
    (along ``angle``) and ``b``, perturbed by low-order harmonics of relative size
    ``roughness`` and, optionally, by ``spikes`` narrow radial spikes."""
    ks = np.arange(2, 2 + n_harmonics)
    amps = roughness * rng.uniform(0.3, 1.0, n_harmonics) / ks
    phases = rng.uniform(0, 2 * np.pi, n_harmonics)
    spike_dir = rng.uniform(0, 2 * np.pi, spikes)
    spike_len = spike_length * rng.uniform(0.5, 1.0, spikes)
    spike_width = rng.uniform(0.025, 0.06, spikes)

    def radius(theta: np.ndarray) -> np.ndarray:
        t = theta - angle
        base = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
        wobble = np.ones_like(theta)
        for k, amp, phase in zip(ks, amps, phases):
            wobble = wobble + amp * np.cos(k * theta + phase)
        r = base * wobble
        for d, length, width in zip(spike_dir, spike_len, spike_width):
            delta = np.angle(np.exp(1j * (theta - d)))  # wrapped to (-pi, pi]
            r = r + length * np.exp(-0.5 * (delta / width) ** 2)
        return r

    reach = max(a, b) * (1.0 + roughness) + (spike_length if spikes else 0.0)
    return radius, reach


def _draw_shape(shape, cy: float, cx: float, radius, reach: float):
    """Pixels whose centres lie inside the outline.

    Returns ``(sl, inside, rho, theta)``: the bounding-box slices, the boolean mask
    inside the box, and the polar coordinates of every box pixel about the centre.
    ``sl`` is ``None`` when the shape lies fully outside the image."""
    h, w = shape
    y0, y1 = max(int(np.floor(cy - reach)) - 1, 0), min(int(np.ceil(cy + reach)) + 2, h)
    x0, x1 = max(int(np.floor(cx - reach)) - 1, 0), min(int(np.ceil(cx + reach)) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return None, None, None, None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    inside = rho <= radius(theta)
    return (slice(y0, y1), slice(x0, x1)), inside, rho, theta


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- nuclei


def _nucleus_image(rng: np.random.Generator, size: int):
    s = size / 256.0
    h = w = size
    # Per-image acquisition settings: magnification (nucleus size), density, exposure.
    r_mean = rng.uniform(8.0, 15.0) * s
    coverage = rng.uniform(0.08, 0.32)
    n_target = int(round(coverage * h * w / (np.pi * r_mean**2)))
    n_target = max(n_target, 3)
    clustered = rng.random() < 0.4

    # Centres: rejection sampling that allows touching and some overlap.
    centres, radii = [], []
    cluster_pts = rng.uniform(0.15 * size, 0.85 * size, size=(rng.integers(2, 5), 2))
    tries = 0
    while len(centres) < n_target and tries < 40 * n_target:
        tries += 1
        r = r_mean * float(np.clip(rng.normal(1.0, 0.18), 0.55, 1.6))
        if clustered and rng.random() < 0.6:
            c = cluster_pts[rng.integers(len(cluster_pts))] + rng.normal(0, 3.0 * r_mean, 2)
        else:
            c = rng.uniform(-0.5 * r, size + 0.5 * r, 2)
        if not (-0.6 * r < c[0] < h + 0.6 * r and -0.6 * r < c[1] < w + 0.6 * r):
            continue
        overlap_ok = 0.72 if rng.random() < 0.15 else 0.95
        if all(np.hypot(*(c - q)) > overlap_ok * (r + rq) for q, rq in zip(centres, radii)):
            centres.append(c)
            radii.append(r)

    labels = np.zeros((h, w), np.int32)
    signal = np.zeros((h, w), np.float64)
    texture = _smooth_noise(rng, (h, w), 1.2 * s)
    blobs = _smooth_noise(rng, (h, w), 2.5 * s)
    for k, ((cy, cx), r) in enumerate(zip(centres, radii), start=1):
        aspect = rng.uniform(1.0, 1.6)
        small_bright = rng.random() < 0.04  # compact, bright (mitotic-looking) nucleus
        if small_bright:
            r *= 0.65
            aspect = rng.uniform(1.0, 1.3)
        a, b = r * np.sqrt(aspect), r / np.sqrt(aspect)
        radius, reach = _radius_profile(rng, a=a, b=b, angle=rng.uniform(0, np.pi), roughness=rng.uniform(0.05, 0.22))
        sl, inside, rho, theta = _draw_shape((h, w), cy, cx, radius, reach)
        if sl is None or not inside.any():
            continue
        brightness = float(np.exp(rng.normal(0.0, 0.3)))
        if rng.random() < 0.25:
            brightness *= rng.uniform(0.25, 0.5)  # dim nucleus
        if small_bright:
            brightness *= 2.0
        rel = np.clip(rho / np.maximum(radius(theta), 1e-6), 0.0, 1.0)
        dome = 1.0 - 0.35 * rel**2
        tex_amp = rng.uniform(0.12, 0.3)
        chromatin = 1.0 + tex_amp * texture[sl] + 0.5 * tex_amp * blobs[sl]
        value = brightness * dome * np.clip(chromatin, 0.3, None)
        # Nucleoli: a few small darker spots.
        for _ in range(rng.integers(0, 3)):
            ny, nx = rng.normal(0, 0.35 * b), rng.normal(0, 0.35 * a)
            nr = rng.uniform(0.12, 0.22) * r
            yy, xx = np.mgrid[sl]
            d2 = (yy - cy - ny) ** 2 + (xx - cx - nx) ** 2
            value = value * (1.0 - 0.35 * np.exp(-0.5 * d2 / nr**2))
        signal[sl] += np.where(inside, value, 0.0)  # fluorescence adds where nuclei overlap
        labels[sl][inside] = k

    # Out-of-focus nuclei from other planes: faint, very blurred, not in the mask.
    ghosts = np.zeros((h, w), np.float64)
    for _ in range(rng.integers(0, 5)):
        gy, gx = rng.uniform(0, size, 2)
        ghosts[int(gy), int(gx)] = rng.uniform(0.15, 0.35) * 2 * np.pi * (r_mean * 0.8) ** 2
    ghosts = ndimage.gaussian_filter(ghosts, r_mean * 0.8, mode="constant")

    # Optics: blur by the point-spread function.
    signal = ndimage.gaussian_filter(signal, rng.uniform(0.7, 1.6) * s, mode="nearest")

    # Uneven illumination: a tilted, vignetted field plus slow random variation.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / size - 0.5
    tilt = rng.normal(0, 0.35, 2)
    vignette = rng.uniform(0.0, 0.8)
    illum = 1.0 + tilt[0] * yy + tilt[1] * xx - vignette * (yy**2 + xx**2) + 0.12 * _smooth_noise(rng, (h, w), 40 * s)
    illum = np.clip(illum, 0.35, None)

    # Background: camera offset + out-of-focus haze (stronger where the light is brighter).
    peak = rng.uniform(70.0, 150.0)  # grey level of a typical nucleus
    offset = rng.uniform(1.0, 5.0)
    haze = rng.uniform(1.5, 11.0) * np.clip(illum + 0.6 * _smooth_noise(rng, (h, w), 25 * s), 0, None)
    expected = offset + haze + peak * illum * (signal + ghosts)

    # Camera: photon shot noise (Poisson, in photo-electrons) and Gaussian read noise.
    gain = rng.uniform(0.3, 0.8)  # grey levels per photo-electron
    electrons = rng.poisson(np.clip(expected, 0, None) / gain)
    image = electrons * gain + rng.normal(0.0, rng.uniform(0.5, 1.5), (h, w))
    return _to_uint8(image), labels


def make_nuclei(n: int, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> list:
    """``n`` synthetic fluorescence images of nuclei.

    Returns a list of ``(image, labels)`` pairs: ``image`` is ``uint8`` with shape
    ``(size, size)`` (one channel), ``labels`` is ``int32`` ``(size, size)`` with 0
    for background and ``1..K`` for the nuclei (where two nuclei overlap, the
    pixel belongs to the one drawn last).  ``labels > 0`` is the semantic mask.
    """
    _check_counts(n=n, size=size)
    return [make_nucleus_image(i, size=size, seed=seed) for i in range(n)]


def make_nucleus_image(index: int, *, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED):
    """Image number ``index`` (from 0) of :func:`make_nuclei` for this ``seed``, alone:
    ``(image uint8 (size, size), labels int32 (size, size))``."""
    _check_counts(n=index + 1, size=size)
    return _nucleus_image(_rng(seed, _KIND_NUCLEI, index), size)


# --------------------------------------------------------------------------- ultrasound


def _field_of_view(rng: np.random.Generator, size: int):
    """Where the probe sees: a boolean mask, the top row of the field, and per-pixel depth 0..1."""
    h = w = size
    top = int(round(rng.uniform(0.04, 0.09) * size))
    bottom = size - int(round(rng.uniform(0.0, 0.06) * size))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    depth = (yy - top) / max(bottom - top, 1)
    if rng.random() < 0.3:
        # Curvilinear probe: a sector that fans out with depth.
        apex_y = top - rng.uniform(0.6, 1.2) * size
        half_angle = np.arctan2(rng.uniform(0.28, 0.36) * size, top - apex_y)
        cx = 0.5 * size
        r_top, r_bot = top - apex_y, bottom - apex_y
        rr = np.hypot(yy - apex_y, xx - cx)
        ang = np.arctan2(xx - cx, yy - apex_y)
        fov = (rr >= r_top) & (rr <= r_bot) & (np.abs(ang) <= half_angle)
        depth = (rr - r_top) / (r_bot - r_top)
    else:
        margin_l = int(round(rng.uniform(0.04, 0.12) * size))
        margin_r = int(round(rng.uniform(0.04, 0.12) * size))
        fov = (yy >= top) & (yy < bottom) & (xx >= margin_l) & (xx < w - margin_r)
    return fov, top, np.clip(depth, 0.0, 1.0)


def _wavy(rng: np.random.Generator, size: int, base: float, amp: float) -> np.ndarray:
    """A smooth random interface depth (0..1) as a function of column."""
    x = np.linspace(0, 1, size)
    out = np.full(size, base)
    for k in range(1, 4):
        out += amp / k * np.sin(2 * np.pi * (k * rng.uniform(0.3, 1.0) * x + rng.uniform(0, 1)))
    return out


def _tissue(rng: np.random.Generator, size: int, depth: np.ndarray) -> np.ndarray:
    """Echogenicity (mean backscatter amplitude, about 0..1) of normal breast tissue."""
    h = w = size
    s = size / 256.0
    z = depth
    skin = _wavy(rng, w, rng.uniform(0.025, 0.045), 0.006)[None, :]
    fat_end = _wavy(rng, w, rng.uniform(0.18, 0.32), 0.05)[None, :]
    gland_end = _wavy(rng, w, rng.uniform(0.62, 0.8), 0.06)[None, :]

    # Tissue planes run roughly parallel to the skin: structures are wider than tall.
    lobules = _smooth_noise(rng, (h, w), (5 * s, 11 * s))
    fine = _smooth_noise(rng, (h, w), (1.5 * s, 4 * s))
    # Subcutaneous fat: dark-grey lobules separated by brighter septa.
    fat = 0.16 + 0.05 * lobules + 0.25 * np.clip(1.0 - np.abs(lobules) * 4.0, 0, 1) ** 2
    # Glandular tissue: bright, heterogeneous, with darker fat islands.
    gland = 0.65 + 0.12 * fine + 0.16 * lobules
    gland = np.where(lobules < -0.9, 0.2, gland)
    # Chest wall: muscle with bright, roughly horizontal striations.
    stripes_phase = np.mgrid[0:h, 0:w][0] / (rng.uniform(4, 7) * s) + 1.5 * _smooth_noise(rng, (h, w), 12 * s)
    muscle = 0.18 + 0.35 * np.clip(np.sin(2 * np.pi * stripes_phase), 0, 1) ** 2 + 0.04 * fine

    soft = 0.012
    w_fat = 1 / (1 + np.exp(-(z - skin - 0.02) / soft))
    w_gland = 1 / (1 + np.exp(-(z - fat_end) / (2 * soft)))
    w_muscle = 1 / (1 + np.exp(-(z - gland_end) / (2 * soft)))
    echo = fat + w_gland * (gland - fat) + w_muscle * (muscle - gland)
    echo = np.where(z < skin - 0.012, 0.35, echo)
    # Skin: a bright echo at the top of the field; the darker dermis under it
    # (the 0.25 + 0.75 * w_fat factor) splits it into the usual double line.
    skin_line = 0.9 * np.exp(-0.5 * ((z - skin) / 0.006) ** 2)
    echo = (echo + skin_line) * (0.25 + 0.75 * w_fat) + skin_line
    # Cooper's ligaments: thin bright arcs in the fat.
    for _ in range(rng.integers(2, 5)):
        arc = _wavy(rng, w, rng.uniform(0.08, 0.28), 0.04)[None, :]
        echo = echo + 0.4 * np.exp(-0.5 * ((z - arc) / 0.005) ** 2) * (z < fat_end + 0.03)
    return np.clip(echo, 0.02, None)


def _scaled(radius, factor: float):
    return lambda theta: factor * radius(theta)


def _lesion(rng: np.random.Generator, size: int, kind: str, fov: np.ndarray, avoid=None):
    """Draw one lesion inside the field of view, away from the lesions in ``avoid``
    (a list of ``(cy, cx, reach)``; a second lesion is also smaller).

    Returns ``(mask bool (size, size), (cy, cx, reach))``, or ``None`` if no
    position was found."""
    s = size / 256.0
    for _ in range(50):
        cy = rng.uniform(0.32, 0.62) * size
        cx = rng.uniform(0.25, 0.75) * size
        if kind == "benign":
            width = rng.uniform(0.09, 0.2) * size
            height = width / rng.uniform(1.3, 2.1)  # wider than tall
            radius, reach = _radius_profile(rng, a=width, b=height, angle=rng.normal(0, 0.15),
                                            roughness=rng.uniform(0.02, 0.08), n_harmonics=3)
        else:
            width = rng.uniform(0.06, 0.14) * size
            height = width * rng.uniform(0.9, 1.5)  # taller than wide, on the whole
            radius, reach = _radius_profile(rng, a=width, b=height, angle=rng.normal(0, 0.3),
                                            roughness=rng.uniform(0.3, 0.55), n_harmonics=6,
                                            spikes=int(rng.integers(5, 12)), spike_length=rng.uniform(6, 14) * s)
        if avoid is not None:
            if any(np.hypot(cy - ay, cx - ax) < reach + ar + 6 * s for ay, ax, ar in avoid):
                continue
            reach_scale = rng.uniform(0.45, 0.7)  # a second lesion is smaller
            radius = _scaled(radius, reach_scale)
            reach *= reach_scale
        sl, inside, rho, theta = _draw_shape((size, size), cy, cx, radius, reach)
        if sl is None:
            continue
        mask = np.zeros((size, size), bool)
        mask[sl] = inside
        if mask.sum() < 30 * s * s or not fov[mask].all():
            continue
        return mask, (cy, cx, reach)
    return None


def _ultrasound_image(rng: np.random.Generator, size: int, label: str):
    h = w = size
    s = size / 256.0
    fov, top, depth = _field_of_view(rng, size)
    echo = _tissue(rng, size, depth)

    masks = []
    if label != "normal":
        n_lesions = 2 if rng.random() < 0.1 else 1
        placed = []
        for _ in range(n_lesions):
            got = _lesion(rng, size, label, fov, avoid=placed if placed else None)
            if got is None:
                continue
            mask, info = got
            masks.append(mask)
            placed.append(info)
        if not masks:  # never ship a lesion image with an empty mask
            raise RuntimeError(f"could not place a {label} lesion in a {size}x{size} image")
        for mask in masks:
            dist_in = ndimage.distance_transform_edt(mask)
            dist_out = ndimage.distance_transform_edt(~mask)
            inner = _smooth_noise(rng, (h, w), 3 * s)
            if label == "benign":
                # Mostly solid (fibroadenoma-like, low-level internal echoes); some cyst-like, nearly anechoic.
                level = rng.uniform(0.02, 0.045) if rng.random() < 0.3 else rng.uniform(0.05, 0.11)
                interior = level * (1.0 + 0.3 * inner)
                rim = rng.uniform(0.3, 0.6) * np.exp(-0.5 * (dist_out / (1.2 * s)) ** 2)  # thin capsule
            else:
                interior = rng.uniform(0.03, 0.08) * np.clip(1.0 + 0.6 * inner, 0.2, None)
                if rng.random() < 0.3:  # microcalcifications: a few bright specks inside
                    ys, xs = np.nonzero(mask & (dist_in > 2 * s))
                    if len(ys):
                        pick = rng.integers(0, len(ys), int(rng.integers(2, 7)))
                        interior = interior + np.where(
                            ndimage.binary_dilation(np.isin(np.arange(h * w), ys[pick] * w + xs[pick]).reshape(h, w)),
                            rng.uniform(0.4, 0.8), 0.0)
                halo_w = rng.uniform(2.0, 5.0) * s if rng.random() < 0.6 else 0.0
                rim = (rng.uniform(0.2, 0.45) * np.exp(-0.5 * (dist_out / max(halo_w, 1e-3)) ** 2)) if halo_w else 0.0
            # Soft blend (1-2 pixels) so the speckle pattern changes at the border as in real scans.
            edge = (1.5 if label == "benign" else 3.0) * s  # malignant margins are less distinct
            blend = np.clip(0.5 + (dist_in - dist_out) / edge, 0, 1)
            blend = np.where(mask, np.maximum(blend, 0.5), np.minimum(blend, 0.5))
            echo = (1 - blend) * (echo + rim * (1 - blend)) + blend * interior
            # What lies behind the lesion: enhancement (fluid-like, benign) or shadow (malignant).
            cols = mask.any(axis=0)
            bottom_row = np.where(cols, h - 1 - np.argmax(mask[::-1], axis=0), 0)
            frac = ndimage.gaussian_filter1d(mask.sum(0).astype(float) / max(mask.sum(0).max(), 1), 2 * s)
            frac = np.clip(frac * 1.5, 0, 1)
            below = np.arange(h)[:, None] - ndimage.maximum_filter1d(bottom_row, int(6 * s) + 1)[None, :]
            fall = np.where(below > 0, 1.0, 0.0) * np.exp(-np.clip(below, 0, None) / (rng.uniform(0.3, 0.8) * size))
            if label == "benign":
                echo = echo * (1 + rng.uniform(0.7, 1.3) * frac[None, :] * fall)
            else:
                echo = echo * (1 - rng.uniform(0.55, 0.85) * frac[None, :] * fall)

    # Depth attenuation, imperfectly corrected by time-gain compensation.
    echo = echo * np.exp(-rng.uniform(0.4, 1.4) * depth) * (1 + 0.1 * depth)

    # Speckle: random complex scatterers weighted by the echogenicity, blurred by an
    # anisotropic point-spread function (short axially, wide laterally); the envelope
    # has Rayleigh statistics.
    sig_ax, sig_lat = rng.uniform(0.8, 1.1) * s, rng.uniform(1.6, 2.4) * s
    field = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))) * echo
    env = np.abs(ndimage.gaussian_filter(field.real, (sig_ax, sig_lat)) + 1j * ndimage.gaussian_filter(field.imag, (sig_ax, sig_lat)))
    env = env / (np.sqrt(2) * 0.28 / np.sqrt(sig_ax * sig_lat) + 1e-12)
    env = env + 0.004 * np.abs(rng.standard_normal((h, w)))  # electronic noise floor

    # Log compression to 8 bits.
    dyn_range = rng.uniform(45.0, 55.0)
    gain_db = rng.uniform(-17.0, -11.0)
    db = 20 * np.log10(env + 1e-6) + gain_db
    image = 255.0 * (db + dyn_range) / dyn_range
    image = ndimage.gaussian_filter(image, 0.6 * s)  # scan conversion smoothing
    image = np.where(fov, image, 0.0)

    # Display furniture outside the field: depth ticks on the right, like a scanner screen.
    ticks = np.zeros((h, w))
    fov_cols = np.where(fov.any(axis=0))[0]
    tick_x = min(int(fov_cols.max()) + int(4 * s), w - 2)
    for y in range(top, h, max(int(round(rng.uniform(18, 26) * s)), 2)):
        ticks[y : y + max(int(s), 1), tick_x : tick_x + max(int(2 * s), 1)] = 200
    image = np.where(fov, image, ticks)
    return _to_uint8(image), [np.where(m, 255, 0).astype(np.uint8) for m in masks]


def make_ultrasound(n_per_class: int, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> list:
    """``n_per_class`` synthetic breast-ultrasound images for each of ``benign``,
    ``malignant`` and ``normal`` (in that order).

    Returns a list of :class:`UltrasoundCase` (``label``, ``image`` ``uint8``
    ``(size, size)``, ``masks``: a list of ``uint8`` 0/255 masks of the same shape,
    one per lesion; about 10% of lesion images have two; ``normal`` cases carry
    one all-zero mask).
    """
    _check_counts(n=n_per_class, size=size)
    return [make_ultrasound_image(label, i, size=size, seed=seed)
            for label in ULTRASOUND_CLASSES for i in range(n_per_class)]


def make_ultrasound_image(label: str, index: int, *, size: int = DEFAULT_SIZE,
                          seed: int = DEFAULT_SEED) -> UltrasoundCase:
    """Image number ``index`` (from 0) of class ``label`` in :func:`make_ultrasound`,
    alone.  On disk it is ``<label> (<index + 1>).png``."""
    if label not in ULTRASOUND_CLASSES:
        raise ValueError(f"label must be one of {ULTRASOUND_CLASSES}, got {label!r}")
    _check_counts(n=index + 1, size=size)
    rng = _rng(seed, _KIND_ULTRASOUND, index, sub=ULTRASOUND_CLASSES.index(label))
    image, masks = _ultrasound_image(rng, size, label)
    if not masks:  # normal: one empty mask, as BUSI ships it
        masks = [np.zeros((size, size), np.uint8)]
    return UltrasoundCase(label, image, masks)


# --------------------------------------------------------------------------- tissue (multi-class)


def _tissue_image(rng: np.random.Generator, size: int):
    """A stained-section-like grey image with three classes: 0 background tissue (mid grey, fine
    texture), 1 glands (bright round structures with a dark lumen ring), 2 lesion (one dark,
    irregular, coarse-textured region; absent in about one image in four)."""
    h = w = size
    s = size / 96.0
    labels = np.zeros((h, w), np.uint8)
    if rng.random() < 0.75:
        radius, reach = _radius_profile(rng, a=rng.uniform(12, 22) * s, b=rng.uniform(9, 16) * s,
                                        angle=rng.uniform(0, np.pi), roughness=rng.uniform(0.2, 0.45))
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
        sl, inside, _, _ = _draw_shape((h, w), cy, cx, radius, reach)
        if sl is not None:
            labels[sl][inside] = 2
    for _ in range(rng.integers(2, 7)):
        r = rng.uniform(5, 10) * s
        radius, reach = _radius_profile(rng, a=r * rng.uniform(1.0, 1.4), b=r, angle=rng.uniform(0, np.pi),
                                        roughness=0.1)
        cy, cx = rng.uniform(0, size, 2)
        sl, inside, _, _ = _draw_shape((h, w), cy, cx, radius, reach)
        if sl is not None:
            region = labels[sl]
            region[inside & (region == 0)] = 1  # glands never cover the lesion
    fine = _smooth_noise(rng, (h, w), 0.8 * s)
    coarse = _smooth_noise(rng, (h, w), 2.5 * s)
    light = 1.0 + 0.15 * _smooth_noise(rng, (h, w), 30 * s)
    base = np.choose(labels, [110.0, 175.0, 70.0])
    texture = np.choose(labels, [10.0 * fine, 8.0 * fine, 22.0 * coarse])
    gland = labels == 1
    ring = gland & ~ndimage.binary_erosion(gland, iterations=max(1, int(round(2 * s))))
    image = (base + texture) * light - 45.0 * ring
    image = ndimage.gaussian_filter(image, 0.8 * s) + rng.normal(0, 5.0, (h, w))
    return _to_uint8(image), labels


def make_tissue(n: int, size: int = DEFAULT_TISSUE_SIZE, seed: int = DEFAULT_SEED) -> list:
    """``n`` synthetic multi-class images: ``[(image uint8 (size, size), classes uint8 (size, size)), ...]``
    with class values 0 background, 1 gland, 2 lesion (:data:`TISSUE_CLASSES`)."""
    _check_counts(n=n, size=size)
    return [_tissue_image(_rng(seed, _KIND_TISSUE, i), size) for i in range(n)]


# --------------------------------------------------------------------------- panoptic (typed nuclei on tissue)
#: Per type: (semi-axis a range, semi-axis b range as a fraction of a, RGB colour, texture strength).
_NUCLEUS_LOOK = {
    1: ((2.6, 3.6), (0.85, 1.0), (45.0, 35.0, 120.0), 4.0),     # lymphocyte: small, round, dark blue
    2: ((5.0, 7.0), (0.6, 0.8), (135.0, 80.0, 170.0), 14.0),    # epithelial: large oval, pale purple, grainy
    3: ((6.5, 9.0), (0.22, 0.32), (150.0, 35.0, 95.0), 6.0),    # spindle: long and thin, magenta
}


def _panoptic_image(rng: np.random.Generator, size: int):
    """An H&E-like RGB tile: two tissue regions told apart by texture and tint - stroma (class 4: pink,
    fibrous streaks along one direction) and gland (class 5: lilac, blotchy) - with nuclei of three types
    (classes 1-3) that differ in size, shape and colour; each nucleus a separate instance, a one-pixel gap
    kept between nuclei.  Returns ``(image uint8 (H, W, 3), instances int32, classes uint8)``."""
    h = w = size
    s = size / 128.0
    region = _smooth_noise(rng, (h, w), 18 * s) > rng.uniform(-0.4, 0.4)
    classes = np.where(region, 5, 4).astype(np.uint8)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    streaks = np.sin(2 * np.pi * (-xx * np.sin(angle) + yy * np.cos(angle)) / (4.0 * s)
                     + 0.6 * _smooth_noise(rng, (h, w), 6 * s))
    fibres = 0.5 * streaks + 0.2 * np.sin(along / (9.0 * s))
    blotch = _smooth_noise(rng, (h, w), 2.0 * s)
    stroma = np.array([235.0, 160.0, 190.0])[None, None] + 22.0 * fibres[..., None] * np.array([0.2, 1.0, 0.6])
    gland = np.array([200.0, 170.0, 225.0])[None, None] + 20.0 * blotch[..., None] * np.array([1.0, 0.9, 0.4])
    image = np.where(region[..., None], gland, stroma)
    instances = np.zeros((h, w), np.int32)
    taken = np.zeros((h, w), bool)
    label = 0
    for _ in range(int(rng.integers(14, 24) * s * s)):
        # glands hold mostly epithelial nuclei, stroma mostly spindle cells and lymphocytes
        cy, cx = rng.uniform(4, size - 4, 2)
        in_gland = region[int(cy), int(cx)]
        typ = int(rng.choice([1, 2, 3], p=[0.25, 0.6, 0.15] if in_gland else [0.4, 0.1, 0.5]))
        (a_lo, a_hi), (b_lo, b_hi), colour, grain = _NUCLEUS_LOOK[typ]
        a = rng.uniform(a_lo, a_hi) * s
        radius, reach = _radius_profile(rng, a=a, b=a * rng.uniform(b_lo, b_hi), angle=rng.uniform(0, np.pi),
                                        roughness=0.08)
        sl, inside, _, _ = _draw_shape((h, w), cy, cx, radius, reach)
        if sl is None or not inside.any():
            continue
        grown = ndimage.binary_dilation(inside, iterations=2)
        if (taken[sl] & grown).any():
            continue                                     # keep nuclei apart (a one-pixel gap at least)
        label += 1
        instances[sl][inside] = label
        classes[sl][inside] = typ
        taken[sl] |= inside
        texture = grain * _smooth_noise(rng, inside.shape, 0.7 * s)
        patch = image[sl]
        patch[inside] = np.asarray(colour)[None] + texture[inside][:, None]
    image = ndimage.gaussian_filter(image, (0.6 * s, 0.6 * s, 0)) + rng.normal(0, 3.0, image.shape)
    return _to_uint8(image), instances, classes


def make_panoptic(n: int, size: int = DEFAULT_PANOPTIC_SIZE, seed: int = DEFAULT_SEED) -> list:
    """``n`` synthetic panoptic tiles ``[(image RGB uint8, instances int32, classes uint8), ...]``: class ids
    1-3 nucleus types (:data:`PANOPTIC_TYPES`), 4-5 stuff (:data:`PANOPTIC_STUFF`)."""
    _check_counts(n=n, size=size)
    return [_panoptic_image(_rng(seed, _KIND_PANOPTIC, i), size) for i in range(n)]


def write_panoptic_sample(out: str | os.PathLike, n: int = DEFAULT_N_PANOPTIC, *,
                          size: int = DEFAULT_PANOPTIC_SIZE, seed: int = DEFAULT_SEED,
                          overwrite: bool = False) -> int:
    """Write ``out/panoptic/{images,masks,instances,classes}/panoptic_000.png`` and ``classes.json``.

    ``images`` RGB, ``masks`` 0/255 nucleus foreground (so the semantic loaders read the set too),
    ``instances`` 16-bit instance ids, ``classes`` 16-bit class ids (1-3 types, 4-5 stuff) - the layout
    ``evaluate --task panoptic --masks out/panoptic`` reads.  Returns the number of images.
    """
    import json

    from Functions.data.instances import write_label_map

    folder = Path(out)
    _prepare(folder, "panoptic", overwrite)
    base = folder / "panoptic"
    for sub in ("images", "masks", "instances", "classes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    for i, (image, inst, cls) in enumerate(make_panoptic(n, size=size, seed=seed)):
        name = f"panoptic_{i:0{width}d}.png"
        _imwrite(base / "images" / name, image[..., ::-1])
        _imwrite(base / "masks" / name, np.where(inst > 0, 255, 0).astype(np.uint8))
        write_label_map(base / "instances" / name, inst)
        write_label_map(base / "classes" / name, cls)
    (base / "classes.json").write_text(json.dumps(
        {"num_classes": len(PANOPTIC_TYPES), "stuff_classes": len(PANOPTIC_STUFF),
         "class_names": list(PANOPTIC_TYPES + PANOPTIC_STUFF)}, indent=2) + "\n")
    return n


# --------------------------------------------------------------------------- on disk


def _check_counts(*, n: int, size: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"the number of images must be a positive integer, got {n!r}")
    if int(size) != size or size < 64:
        raise ValueError(f"size must be an integer >= 64 pixels, got {size!r}")


def _imwrite(path: Path, array: np.ndarray) -> None:
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED]
    if not cv2.imwrite(str(path), array, params):
        raise UserError(f"could not write {path}; check that the folder is writable")


def _our_files(folder: Path, kind: str) -> list:
    """Files in ``folder/<kind>`` that the generator itself would have written."""
    base = folder / kind
    if kind == "nuclei":
        dirs, pattern = [base / "images", base / "masks", base / "instances"], NUCLEI_NAME_RE
    elif kind == "tissue":
        dirs, pattern = [base / "images", base / "masks"], TISSUE_NAME_RE
    elif kind == "panoptic":
        dirs, pattern = [base / d for d in ("images", "masks", "instances", "classes")], PANOPTIC_NAME_RE
    else:
        dirs, pattern = [base / c for c in ULTRASOUND_CLASSES], BUSI_NAME_RE
    return sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file() and pattern.match(p.name))


def _prepare(folder: Path, kind: str, overwrite: bool) -> int:
    """Refuse a non-empty target unless ``overwrite``; then remove only our own files."""
    base = folder / kind
    if base.exists() and not base.is_dir():
        raise UserError(f"{base} is a file, not a folder; choose another --out")
    if base.is_dir() and any(base.iterdir()):
        if not overwrite:
            raise UserError(f"{base} is not empty; pass --overwrite to replace the generated files, or choose another --out")
        ours = _our_files(folder, kind)
        for p in ours:
            p.unlink()
        return len(ours)
    return 0


def write_nuclei(out: str | os.PathLike, n: int = DEFAULT_N_NUCLEI, *, size: int = DEFAULT_SIZE,
                 seed: int = DEFAULT_SEED, overwrite: bool = False) -> int:
    """Write ``out/nuclei/images/nuclei_000.png`` ..., the matching 0/255 masks in
    ``out/nuclei/masks`` and the instance label maps (16-bit PNG, 0 background,
    1..K one value per nucleus, touching and overlapping nuclei kept apart) in
    ``out/nuclei/instances``.  Returns the number of image files written."""
    folder = Path(out)
    _prepare(folder, "nuclei", overwrite)
    for sub in ("images", "masks", "instances"):
        (folder / "nuclei" / sub).mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    for i, (image, labels) in enumerate(make_nuclei(n, size=size, seed=seed)):
        name = f"nuclei_{i:0{width}d}.png"
        _imwrite(folder / "nuclei" / "images" / name, image)
        _imwrite(folder / "nuclei" / "masks" / name, np.where(labels > 0, 255, 0).astype(np.uint8))
        _imwrite(folder / "nuclei" / "instances" / name, _sequential_labels(labels).astype(np.uint16))
    return n


def _sequential_labels(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..K in order (a nucleus hidden by later ones disappears from the map)."""
    values = np.unique(labels)
    lut = np.zeros(int(values.max(initial=0)) + 1, np.int64)
    lut[values[values > 0]] = np.arange(1, int((values > 0).sum()) + 1)
    return lut[labels]


def write_tissue(out: str | os.PathLike, n: int = DEFAULT_N_TISSUE, *, size: int = DEFAULT_TISSUE_SIZE,
                 seed: int = DEFAULT_SEED, overwrite: bool = False) -> int:
    """Write ``out/tissue/images/tissue_000.png`` ... and class masks ``out/tissue/masks/<same name>``
    (8-bit, values 0 background, 1 gland, 2 lesion).  Returns the number of image files written."""
    folder = Path(out)
    _prepare(folder, "tissue", overwrite)
    for sub in ("images", "masks"):
        (folder / "tissue" / sub).mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    for i, (image, classes) in enumerate(make_tissue(n, size=size, seed=seed)):
        name = f"tissue_{i:0{width}d}.png"
        _imwrite(folder / "tissue" / "images" / name, image)
        _imwrite(folder / "tissue" / "masks" / name, classes)
    return n


def write_ultrasound(out: str | os.PathLike, n_per_class: int = DEFAULT_N_PER_CLASS, *, size: int = DEFAULT_SIZE,
                     seed: int = DEFAULT_SEED, overwrite: bool = False) -> int:
    """Write ``out/ultrasound/<class>/<class> (k).png`` with ``<class> (k)_mask.png``
    (and ``<class> (k)_mask_1.png`` for a second lesion), BUSI's layout, ``k`` from 1.
    Returns the number of image files written."""
    folder = Path(out)
    _prepare(folder, "ultrasound", overwrite)
    counters = {c: 0 for c in ULTRASOUND_CLASSES}
    for case in make_ultrasound(n_per_class, size=size, seed=seed):
        counters[case.label] += 1
        d = folder / "ultrasound" / case.label
        d.mkdir(parents=True, exist_ok=True)
        stem = f"{case.label} ({counters[case.label]})"
        _imwrite(d / f"{stem}.png", case.image)
        for j, m in enumerate(case.masks):
            _imwrite(d / (f"{stem}_mask.png" if j == 0 else f"{stem}_mask_{j}.png"), m)
    return sum(counters.values())


def write_sample(out: str | os.PathLike, *, kind: str = "all", n: int | None = None, size: int = DEFAULT_SIZE,
                 seed: int = DEFAULT_SEED, overwrite: bool = False) -> dict:
    """Write the offline sample (``kind`` = ``"nuclei"``, ``"ultrasound"``, ``"tissue"`` or ``"all"``) under ``out``.

    ``n`` is the number of nucleus images, the number of ultrasound images per
    class and the number of tissue images (defaults 100, 40 and 40; tissue
    images are 96 px unless another ``size`` than the default is given).  Refuses a non-empty ``out/<kind>`` unless
    ``overwrite``; with ``overwrite`` only files named like the generator's own
    output are removed first.  Returns ``{kind: images written}``.
    """
    if kind not in ("nuclei", "ultrasound", "tissue", "volumes", "panoptic", "all"):
        raise UserError(f"--kind {kind!r} is unknown; use nuclei, ultrasound, tissue, volumes, panoptic or all")
    kinds = ["nuclei", "ultrasound", "tissue", "volumes", "panoptic"] if kind == "all" else [kind]
    if not overwrite:  # check everything before writing anything
        for k in kinds:
            base = Path(out) / k
            if base.is_dir() and any(base.iterdir()):
                raise UserError(f"{base} is not empty; pass --overwrite to replace the generated files, or choose another --out")
    written = {}
    if "nuclei" in kinds:
        written["nuclei"] = write_nuclei(out, n or DEFAULT_N_NUCLEI, size=size, seed=seed, overwrite=overwrite)
    if "ultrasound" in kinds:
        written["ultrasound"] = write_ultrasound(out, n or DEFAULT_N_PER_CLASS, size=size, seed=seed, overwrite=overwrite)
    if "tissue" in kinds:
        # the tissue sample keeps its own small size unless asked for another (``size`` != the default)
        t_size = DEFAULT_TISSUE_SIZE if size == DEFAULT_SIZE else size
        written["tissue"] = write_tissue(out, n or DEFAULT_N_TISSUE, size=t_size, seed=seed, overwrite=overwrite)
    if "volumes" in kinds:   # volumes keep their own grid (VOLUME_SHAPE); ``size`` does not apply
        written["volumes"] = write_volumes(out, n or DEFAULT_N_VOLUMES, seed=seed, overwrite=overwrite)
    if "panoptic" in kinds:  # 128 px tiles unless another ``size`` than the default is given
        p_size = DEFAULT_PANOPTIC_SIZE if size == DEFAULT_SIZE else size
        written["panoptic"] = write_panoptic_sample(out, n or DEFAULT_N_PANOPTIC, size=p_size, seed=seed,
                                                    overwrite=overwrite)
    return written


# --------------------------------------------------------------------------- volumes (3-D, CT-like)
#: The volumetric sample: ``volumes/imagesTr/organ_000.nii.gz`` + ``labelsTr/`` + ``dataset.json`` (MSD layout).
DEFAULT_N_VOLUMES = 20
#: Voxel grid of the sample volumes ``(D, H, W)`` and their anisotropic spacing ``(z, y, x)`` in mm.
VOLUME_SHAPE = (32, 64, 64)
VOLUME_SPACING = (3.0, 1.5, 1.5)
VOLUME_NAME_RE = re.compile(r"^organ_(\d{3,})\.nii\.gz$")
_KIND_VOLUME = 4


def make_volume(index: int, *, seed: int = DEFAULT_SEED, shape=VOLUME_SHAPE, spacing=VOLUME_SPACING):
    """One synthetic CT-like volume and its label: ``(image int16 HU (D, H, W), label uint8 (D, H, W))``.

    Drawn in millimetres (so the anatomy keeps its size whatever the voxel
    grid): air (-1000 HU) around an elliptic body cylinder of soft tissue
    (about 20 HU) with a bright vertebra-like column behind (about 500 HU);
    inside, the labelled organ (label 1, about 120 HU, finely textured) is an
    ellipsoid of random size, position and in-plane angle whose surface is
    bent by smooth noise, and a second, unlabelled structure (a kidney-like
    ellipsoid of about 60 HU) sits beside it, so brightness alone does not
    find the organ.  Then slight blur and noise (sigma 12 HU).  The label is
    the voxel centres inside the organ, decided before blur and noise.
    Volume ``i`` depends only on ``(seed, i)``.
    """
    rng = _rng(seed, _KIND_VOLUME, index)
    shape = tuple(int(s) for s in shape)
    sz, sy, sx = (float(s) for s in spacing)
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, (sz, sy, sx))], indexing="ij")
    cz, cy, cx = (n * s / 2 for n, s in zip(shape, (sz, sy, sx)))
    y, x, z = y - cy, x - cx, z - cz                                   # mm from the centre
    body_a, body_b = rng.uniform(38, 44), rng.uniform(30, 36)          # half-width (x), half-depth (y)
    body = (x / body_a) ** 2 + (y / body_b) ** 2 <= 1.0
    hu = np.where(body, 20.0, -1000.0)
    spine = ((x - rng.uniform(-3, 3)) / 7.0) ** 2 + ((y - body_b * 0.72) / 7.0) ** 2 <= 1.0
    hu = np.where(spine, 500.0, hu)

    def ellipsoid(centre, radii, angle, bend):
        ca, sa = np.cos(angle), np.sin(angle)
        u = (x - centre[2]) * ca + (y - centre[1]) * sa
        v = -(x - centre[2]) * sa + (y - centre[1]) * ca
        w = z - centre[0]
        r = np.sqrt((w / radii[0]) ** 2 + (v / radii[1]) ** 2 + (u / radii[2]) ** 2)
        return r <= 1.0 + bend

    bend = 0.15 * _smooth_noise(rng, shape, (2.0, 5.0, 5.0))
    radii = (rng.uniform(12, 20), rng.uniform(10, 15), rng.uniform(14, 20))   # (z, y, x) mm
    side = rng.choice([-1.0, 1.0])
    centre = (rng.uniform(-8, 8), rng.uniform(-10, 4), side * rng.uniform(8, 16))
    organ = ellipsoid(centre, radii, rng.uniform(-0.6, 0.6), bend) & body & ~spine
    kidney_centre = (rng.uniform(-10, 10), body_b * 0.35, -side * rng.uniform(14, 20))
    kidney = ellipsoid(kidney_centre, (rng.uniform(10, 14), 7.0, 9.0), rng.uniform(-0.5, 0.5), 0.0)
    kidney &= body & ~spine & ~organ
    hu = np.where(kidney, 60.0, hu)
    hu = np.where(organ, 120.0 + 12.0 * _smooth_noise(rng, shape, 1.0), hu)
    hu = ndimage.gaussian_filter(hu, (0.5, 0.8, 0.8)) + rng.normal(0.0, 12.0, shape)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), organ.astype(np.uint8)


def volume_affine(shape=VOLUME_SHAPE, spacing=VOLUME_SPACING) -> np.ndarray:
    """The NIfTI affine of the sample volumes: LPS axes (i -> Left, j -> Posterior, k -> Superior), as many
    DICOM-converted scans are stored; the volume centre sits at the world origin."""
    sz, sy, sx = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    centre_ijk = np.array([shape[2] - 1, shape[1] - 1, shape[0] - 1]) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre_ijk
    return affine


def write_volumes(out: str | os.PathLike, n: int = DEFAULT_N_VOLUMES, *, seed: int = DEFAULT_SEED,
                  overwrite: bool = False) -> int:
    """Write ``out/volumes/`` in the Medical Segmentation Decathlon layout: ``imagesTr/organ_000.nii.gz``
    (int16 HU), ``labelsTr/organ_000.nii.gz`` (uint8, 1 = organ) and ``dataset.json``.  Returns ``n``."""
    import json

    from Functions.data.volumes import write_nifti

    folder = Path(out) / "volumes"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder; choose another --out")
    ours = [p for d in (folder / "imagesTr", folder / "labelsTr") if d.is_dir() for p in d.iterdir()
            if VOLUME_NAME_RE.match(p.name)]
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise UserError(f"{folder} is not empty; pass --overwrite to replace the generated files, or choose "
                            "another --out")
        for p in ours:
            p.unlink()
        if (folder / "dataset.json").is_file():
            (folder / "dataset.json").unlink()
    affine = volume_affine()
    width = max(3, len(str(n - 1)))
    training = []
    for i in range(n):
        image, label = make_volume(i, seed=seed)
        name = f"organ_{i:0{width}d}.nii.gz"
        write_nifti(folder / "imagesTr" / name, image, affine)
        write_nifti(folder / "labelsTr" / name, label, affine)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "SyntheticOrgan",
        "description": "Synthetic CT-like volumes with one labelled organ (Functions.data.synthetic.make_volume)",
        "reference": "generated by python -m Functions make-sample --kind volumes",
        "licence": "CC0 (synthetic)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ"},
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=4) + "\n")
    return n
