"""Issue 37's targets in one run: UNeXt against U-Net at 256² under one training budget, the batch-1
latency table (every runtime and precision), and ``predict --video`` on a 640x480, 900-frame clip.

    python benchmarks/realtime.py --out-dir runs/realtime --budget 4

Steps (each a ``python -m Functions`` command in a new process, printed before it runs):
1. the synthetic BUSI-layout sample (``Data/sample/ultrasound``, 256x256 images) trained with
   ``--model unet``, ``--model unext`` and ``--model lite_unet`` at ``--image-size 256`` for the same ``--time-budget``;
2. ``benchmark --latency`` over the three runs (Keras, ONNX Runtime, LiteRT float32 and int8; batch 1;
   test Dice on the run's held-out split at each image's own size);
3. a 640x480, 900-frame clip made with ``Functions.data.synthetic_video`` (15 frames/s), then
   ``predict --video`` with the UNeXt run through each runtime; frames per second are read from its output.

Figures are wall-clock on the machine at hand; run it alone (no other load) and compare rows of one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(args: list[str]) -> str:
    print("$ python -m Functions " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "Functions", *args], cwd=REPO, text=True,
                         capture_output=True)
    text = out.stdout + out.stderr
    if out.returncode:
        sys.exit(f"failed ({out.returncode}):\n{text[-3000:]}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="runs/realtime", help="new folder for the runs and the clip")
    parser.add_argument("--budget", type=float, default=4.0, help="training minutes per model (4)")
    parser.add_argument("--frames", type=int, default=900, help="clip length (900)")
    parser.add_argument("--data", default=str(REPO / "Data" / "sample" / "ultrasound"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out_dir)
    if not out.is_absolute():
        out = REPO / out
    out.mkdir(parents=True, exist_ok=True)

    runs = {}
    for model in ("unet", "unext", "lite_unet"):
        run = out / f"{model}-s{args.seed}"
        if not (run / "metrics.json").exists():
            text = sh(["train", "--data", args.data, "--model", model, "--image-size", "256",
                       "--time-budget", str(args.budget), "--seed", str(args.seed), "--out", str(run)])
            print("\n".join(line for line in text.splitlines() if "Dice" in line or "epoch" in line.lower())[-1500:])
        runs[model] = run

    table = out / "latency.md"
    if not table.exists():
        latency = [arg for model in ("unext", "lite_unet", "unet") for arg in ("--latency", str(runs[model]))]
        print(sh(["benchmark", *latency, "--out", str(table)])[-4000:])
    print(table.read_text())

    clip = out / "clip640x480.mp4"
    if not clip.exists():
        sys.path.insert(0, str(REPO / "Code"))
        from Functions.data.synthetic_video import make_clip, write_video

        frames, _ = make_clip(n_frames=args.frames, size=(480, 640), seed=args.seed)
        write_video(clip, frames)
    for runtime in ("litert", "onnx", "keras"):
        video = out / f"video-{runtime}.mp4"
        if video.exists():
            continue
        text = sh(["predict", "--model", str(runs["unext"]), "--video", str(clip), "--out", str(video),
                   "--runtime", runtime])
        lines = [line for line in text.splitlines() if "frames/s overall" in line]
        print(f"video {runtime}: " + (lines[-1] if lines else text[-600:]), flush=True)


if __name__ == "__main__":
    main()
