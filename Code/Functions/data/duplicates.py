"""Near-duplicate images by perceptual hash (dHash + pHash, 64 bits each), in NumPy/OpenCV.

Two files of the same picture - resized, re-compressed, converted to
grayscale - have almost the same hashes, while different pictures differ in
about half of the 64 bits.  A pair counts as a near-duplicate when **both**
hashes differ in at most ``max_distance`` bits (default 10 of 64); requiring
both keeps images that merely look alike (two ultrasound scans with the same
dark fan) apart.

* :func:`dhash` - difference hash: the image shrunk to 9x8 (area
  interpolation), one bit per horizontal neighbour pair (left brighter than
  right).
* :func:`phash` - perceptual hash: the image shrunk to 32x32, its 2-D DCT,
  the 8x8 lowest frequencies (DC term included) compared with their median.
* :func:`duplicate_clusters` - connected components of the "near-duplicate"
  relation (transitively: a~b and b~c puts a, b, c in one cluster).
* :func:`is_blank` - a blank frame (:data:`BLANK_LEVEL`) has no picture to
  hash: constant frames hash alike (a black frame of any size: all 128 bits
  zero; a grey one: at most the DC bit, or rounding noise of the resizing),
  so hashing would put the blank frames of a data set in one
  "near-duplicate" group and a split would move them together.  Blank images
  are left out of hashing (each stays a group of its own) and counted, so the
  notice can say how many.

Data sets: BUSI is known to contain the same scan more than once; a split
that puts the copies in training and test inflates the test score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bits (of 64) in which two hashes of the same picture may differ.
MAX_DISTANCE = 10

#: An image is blank when its grey values (channel mean) span at most this fraction of their largest
#: magnitude - one grey level of 255 - or at most one step in an integer image (see :func:`is_blank`).
BLANK_LEVEL = 1 / 255

#: What :func:`sample_hashes` gives a blank image instead of its hashes.
BLANK = "blank"


def _gray(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W)`` float32 (channel mean; volumes not accepted)."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1) if x.shape[-1] > 1 else x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"a perceptual hash needs a 2-D image (H, W) or (H, W, C), got shape {np.shape(image)}")
    return x


def is_blank(image: np.ndarray) -> bool:
    """True when ``image`` ``(H, W[, C])`` is blank: constant or nearly so.

    Its grey values ``g`` (the channel mean) span ``max(g) - min(g)`` at most
    ``BLANK_LEVEL * max(|g|)`` (one grey level of 255 of its brightest value),
    or at most 1 in an integer image (a constant frame with one step of
    noise or dithering).  Empty images and images without a finite value are
    blank too.  Its hashes would be those of every other blank frame.
    """
    g = _gray(image).astype(np.float64)
    g = g[np.isfinite(g)]
    if not g.size:
        return True
    lo, hi = float(g.min()), float(g.max())
    step = 1.0 if np.issubdtype(np.asarray(image).dtype, np.integer) else 0.0
    return hi - lo <= max(BLANK_LEVEL * max(abs(lo), abs(hi)), step)


def _bits_to_int(bits: np.ndarray) -> int:
    return int(np.packbits(bits.astype(np.uint8).ravel()).view(">u8")[0])


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of ``image`` ``(H, W[, C])`` (an int in ``[0, 2**64)``)."""
    import cv2

    small = cv2.resize(_gray(image), (9, 8), interpolation=cv2.INTER_AREA)
    return _bits_to_int(small[:, :-1] > small[:, 1:])


def phash(image: np.ndarray) -> int:
    """64-bit perceptual (DCT) hash of ``image`` ``(H, W[, C])``."""
    import cv2

    small = cv2.resize(_gray(image), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8]
    return _bits_to_int(low > np.median(low))


def image_hashes(image: np.ndarray) -> tuple[int, int]:
    """``(dhash, phash)`` of one image."""
    return dhash(image), phash(image)


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return int(bin(int(a) ^ int(b)).count("1"))


def _distance_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(len(x), len(y))`` Hamming distances of uint64 hashes."""
    xor = x[:, None] ^ y[None, :]
    return np.bitwise_count(xor).astype(np.int16)


def near_duplicate_pairs(hashes_a: Sequence[tuple[int, int]], hashes_b: Sequence[tuple[int, int]] | None = None,
                         max_distance: int = MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)`` of near-duplicates between two hash lists (or within one, ``i < j``).

    ``distance`` is the larger of the two hash distances.  Memory: computed in
    row blocks, so thousands of images are fine.
    """
    a = np.asarray(hashes_a, dtype=np.uint64).reshape(-1, 2)
    same = hashes_b is None
    b = a if same else np.asarray(hashes_b, dtype=np.uint64).reshape(-1, 2)
    pairs = []
    for start in range(0, len(a), 512):
        blk = a[start:start + 512]
        d = np.maximum(_distance_matrix(blk[:, 0], b[:, 0]), _distance_matrix(blk[:, 1], b[:, 1]))
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii + start, jj):
            if not same or i < j:
                pairs.append((int(i), int(j), int(d[i - start, j])))
    return pairs


def duplicate_clusters(hashes: Sequence[tuple[int, int]], max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Cluster number per image ``(N,)`` int: images that are near-duplicates (transitively) share one.

    Clusters are numbered by their first member, so a unique image ``i`` has a
    cluster of its own.
    """
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in near_duplicate_pairs(hashes, None, max_distance):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def sample_hashes(samples, workers: int = 4) -> list[tuple[int, int] | str | None]:
    """``(dhash, phash)`` per :class:`~Functions.data.discovery.Sample`; :data:`BLANK` for a blank image
    (:func:`is_blank`), ``None`` for volumes / unreadable kinds."""
    from concurrent.futures import ThreadPoolExecutor

    from Functions.data.discovery import load_sample

    def one(sample):
        image = load_sample(sample)[0]
        if not (np.ndim(image) == 2 or (np.ndim(image) == 3 and image.shape[-1] <= 4)):
            return None
        return BLANK if is_blank(image) else image_hashes(image)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, samples))


def near_duplicate_groups(samples, max_distance: int = MAX_DISTANCE,
                          workers: int = 4) -> tuple[list[str | None], int]:
    """``(groups, blank)``: per sample, ``"duplicate:<id of the first copy>"`` when it has a near-duplicate in
    ``samples``, else ``None``; and how many blank images (:func:`is_blank`) were left out (their group: ``None``)."""
    samples = list(samples)
    hashes = sample_hashes(samples, workers)
    blank = sum(1 for h in hashes if h is BLANK)
    known = [i for i, h in enumerate(hashes) if h is not None and h is not BLANK]
    clusters = duplicate_clusters([hashes[i] for i in known], max_distance)
    sizes = np.bincount(clusters, minlength=len(known)) if len(known) else np.zeros(0, int)
    out: list[str | None] = [None] * len(samples)
    for k, i in enumerate(known):
        if sizes[clusters[k]] > 1:
            out[i] = f"duplicate:{samples[known[clusters[k]]].id}"
    return out, blank
