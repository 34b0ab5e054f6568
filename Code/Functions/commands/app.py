"""``python -m Functions app``: the classroom page - every trained run, live, in a browser.

Opens a local web page (Gradio, the ``[app]`` extra: ``pip install -e .[app]``) on
http://127.0.0.1:PORT: choose a run from the runs folder with its report card,
upload an image, a volume or a short video (or pick an offline sample), see the
mask, objects, planes (slice by slice), attention gates or Grad-CAM, compare two
runs side by side, download masks and overlays.
In a notebook call ``Functions.apps.webapp.launch(runs=...)`` instead.
"""

from __future__ import annotations

import argparse

NAME = "app"
HELP = "open the classroom web page: any trained run, live, on uploaded images, volumes and videos (Gradio)"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="folder that holds the training runs (searched a few levels deep; %(default)s)")
    p.add_argument("--port", type=int, default=None, metavar="N",
                   help="port on 127.0.0.1 (default: the first free one from 7860)")
    p.add_argument("--share", choices=("no", "yes"), default="no",
                   help="yes: also ask Gradio for a temporary public link (%(default)s)")


def run(args) -> int:
    from pathlib import Path

    from Functions.base.errors import UserError

    if args.port is not None and not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if not Path(args.runs).expanduser().is_dir():
        raise UserError(f"--runs {args.runs} is not a folder; pass the folder that holds your training runs "
                        "(train --out)")
    from Functions.apps.webapp import launch, require_gradio

    require_gradio()
    print(f"classroom page for the runs in {args.runs}; Ctrl-C stops it")
    launch(runs=args.runs, port=args.port, share=args.share == "yes", inline=False, block=True)
    return 0
