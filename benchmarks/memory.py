"""Peak memory of loading a data set the way ``train`` does, against the size of the arrays it keeps.

    python benchmarks/memory.py --data ../shared/datasets/dsb2018/stage1_train --image-size 256

Prints one JSON object: the resident memory before loading (``rss_before_mb``,
Python + NumPy + OpenCV), the peak while loading (``peak_rss_mb``), the bytes
of the decoded arrays that training keeps (``arrays_mb``) and
``loading_overhead``: (peak - before) / arrays.  A loader that holds the data
set once stays near 1 (plus the few full-size images being decoded at any
moment); one that also keeps a list of per-image arrays before stacking them
approaches 2.  Keras and TensorFlow are not imported, so they do not blur
the figure.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of images and masks")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--channels", type=int, choices=(1, 3))
    p.add_argument("--normalization", default="dark_background")
    args = p.parse_args(argv)

    from Functions.base.runtime import peak_rss_mb
    from Functions.engine.segmentation import TrainConfig, prepare_data

    before = peak_rss_mb()
    t0 = time.perf_counter()
    data = prepare_data(TrainConfig(data=args.data, image_size=args.image_size, channels=args.channels,
                                    normalization=args.normalization, val_fraction=0.1, test_fraction=0.2))
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    arrays = sum(data[k][0].nbytes + data[k][1].nbytes for k in ("train", "val", "test") if data[k][0] is not None)
    arrays_mb = arrays / 2**20
    print(json.dumps({"data": args.data, "image_size": args.image_size, "channels": data["channels"],
                      "samples": data["n_samples"], "load_seconds": round(seconds, 1),
                      "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
                      "arrays_mb": round(arrays_mb, 1),
                      "loading_overhead": round((peak - before) / arrays_mb, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
