"""Helpers the test files share: tiny synthetic images and the folders they are written to.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``); ``conftest.py`` holds
only fixtures and the command-line switches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def blob_pair(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a noisy dark background and its exact mask (uint8 image, 0/1 mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.12, size * 0.25)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
    image = np.clip(40 + 150 * mask + rng.normal(0, 12, mask.shape), 0, 255).astype(np.uint8)
    return image, mask


def write_blob_pairs(root: Path, n: int = 12, size: int = 32, seed: int = 0, names=None) -> Path:
    """``root/images/<name>.png`` + ``root/masks/<name>.png`` (0/255) for ``n`` blob pairs (seeds ``seed + i``).

    ``names`` defaults to ``case_00``, ``case_01``, ...; returns ``root``.
    """
    import cv2

    names = list(names) if names is not None else [f"case_{i:02d}" for i in range(n)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        image, mask = blob_pair(size, seed=seed + i)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask * 255)
    return root


def cli_fails(capsys, argv, *needles) -> str:
    """Run the CLI in-process; it must return 2 and print exactly one line, `error: ...`, containing ``needles``."""
    from Functions.cli import main

    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def kill_after_epochs(cmd: list, history: Path, env: dict, epochs_done: int = 1, timeout: float = 240):
    """Start ``cmd`` (a training command line), SIGKILL it once ``history`` holds ``epochs_done`` rows."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= epochs_done + 1:
            time.sleep(0.1)
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    return proc


def consep_tree(root, n=2, shape=(20, 24)):
    """CoNSeP/Train/{Images,Labels}: nucleus k has original type k (1..7) in image 0."""
    import cv2
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    truth = {}
    for split in ("Train", "Test"):
        (root / split / "Images").mkdir(parents=True)
        (root / split / "Labels").mkdir(parents=True)
        for i in range(n):
            inst = np.zeros(shape, np.float64)
            types = []
            for k in range(1, 8):
                r, c = (k - 1) // 4 * 8 + 1, (k - 1) % 4 * 6 + 1
                inst[r:r + 4, c:c + 3] = k
                types.append(k if i == 0 else 8 - k)
            type_map = np.zeros(shape)
            for k, t in enumerate(types, start=1):
                type_map[inst == k] = t
            centroids = np.array([[np.argwhere(inst == k)[:, 1].mean(), np.argwhere(inst == k)[:, 0].mean()]
                                  for k in range(1, 8)])
            savemat(root / split / "Labels" / f"{split.lower()}_{i + 1}.mat",
                    {"inst_map": inst, "type_map": type_map, "inst_type": np.array(types, float)[:, None],
                     "inst_centroid": centroids})
            rgba = rng.integers(0, 255, size=shape + (4,), dtype=np.uint8)
            cv2.imwrite(str(root / split / "Images" / f"{split.lower()}_{i + 1}.png"), rgba)
            truth[(split, i)] = (inst.astype(int), np.array(types), rgba[..., [2, 1, 0]])
    return truth


def pannuke_fold(root, n=3, k=1):
    """PanNuke's `Fold k/images/foldk/images.npy`, `masks.npy` (N x 16 x 16 x 6) and `types.npy`."""
    fold = root / f"Fold {k}"
    (fold / "images" / f"fold{k}").mkdir(parents=True)
    (fold / "masks" / f"fold{k}").mkdir(parents=True)
    images = np.random.default_rng(1).uniform(0, 255, size=(n, 16, 16, 3))
    masks = np.zeros((n, 16, 16, 6))
    masks[..., 5] = 1
    masks[0, 0:4, 0:4, 0] = 7          # neoplastic nucleus id 7
    masks[0, 8:12, 8:12, 1] = 7        # inflammatory nucleus reusing id 7: a second nucleus
    masks[0, 0:3, 10:14, 4] = 2        # epithelial
    masks[1, 5:9, 5:9, 3] = 1          # dead
    masks[..., 5] = (masks[..., :5].sum(-1) == 0)
    np.save(fold / "images" / f"fold{k}" / "images.npy", images)
    np.save(fold / "masks" / f"fold{k}" / "masks.npy", masks)
    np.save(fold / "images" / f"fold{k}" / "types.npy", np.array(["Breast", "Colon", "Breast"]))
    return images, masks


# ----------------------------------------------------------------------------- DRIVE in miniature
SIDE = 24


def drive_fov() -> np.ndarray:
    """A round field of view (255 inside), as DRIVE's mask/ files."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return (((yy - SIDE / 2 + 0.5) ** 2 + (xx - SIDE / 2 + 0.5) ** 2) <= (SIDE / 2 - 2) ** 2).astype(np.uint8) * 255


def write_drive(root: Path, test_folder: str = "test", n_train: int = 6, n_test: int = 4, outside: int = 0) -> Path:
    """DRIVE as published (numbers 21.. for training, 01.. for test): tiny colour images with one vessel (200 on
    a background below 60), ``outside`` beyond the round field of view; ``.gif`` labels and FOV masks."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, numbers, kind in (("training", range(21, 21 + n_train), "training"),
                                 (test_folder, range(1, 1 + n_test), "test")):
        for n in numbers:
            base = root / split
            for sub in ("images", "1st_manual", "mask"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 60, (SIDE, SIDE, 3), dtype=np.uint8)
            vessel = np.zeros((SIDE, SIDE), np.uint8)
            vessel[4:20, 6 + n % 8] = 255
            img[vessel > 0] = 200
            img[drive_fov() == 0] = outside
            Image.fromarray(img).save(base / "images" / f"{n:02d}_{kind}.tif")
            Image.fromarray(vessel).save(base / "1st_manual" / f"{n:02d}_manual1.gif")
            Image.fromarray(drive_fov()).save(base / "mask" / f"{n:02d}_{kind}_mask.gif")
    return root
