"""The classroom page: every trained run, live, in a browser (``python -m Functions app``; Gradio).

Choose a run from the runs folder (2-D, instance, panoptic, 3-D or classifier) and see its report card; upload
an image, a NIfTI / DICOM volume, a short video or pick an offline sample; see the overlay (threshold slider for
binary runs), the attention gates of an Attention U-Net over the image, object outlines with ids and a table
(instance runs; panoptic runs: one colour per object type, the stuff classes tinted, a legend, and each
object's type in the table), three orthogonal planes at the true aspect with sliders in slice numbers (volumes), every
frame of a video segmented (2-D runs), or Grad-CAM (classifiers).  A second run shows side by side with the
pixels where the two disagree marked.  Masks (PNG, NIfTI with the input's affine, or ``.npz`` for a video's
frames; a panoptic run's instance map and class map as ``predict --task panoptic`` writes them) and overlays
(PNG, ``.mp4``) download.

The page's work is plain Python (:func:`show`, :func:`choose_run`, :func:`refresh_runs`, over
:mod:`Functions.apps.live` and :mod:`Functions.apps.run_catalog`); Gradio is imported only in :func:`build`
and :func:`launch`.  In a notebook (Jupyter, Colab)::

    from Functions.apps.webapp import launch
    launch(runs="runs")          # the page appears inline under the cell

The server binds 127.0.0.1 only (in Colab the notebook's own proxy shows it); ``share=True`` asks Gradio for
a public link.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from Functions.base.errors import UserError

NONE = ""                       # the "no second run" choice
INSTALL_HINT = "the app needs Gradio: install the [app] extra with `pip install -e .[app]` (or `pip install gradio`)"


def require_gradio():
    """The ``gradio`` module, or a :class:`UserError` naming the ``[app]`` extra."""
    try:
        import gradio
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return gradio


# ----------------------------------------------------------------------------- callbacks (plain Python)
def run_choices(runs_root) -> list[tuple[str, str]]:
    """``(label, path)`` of every run under ``runs_root`` for the run menus."""
    from Functions.apps.run_catalog import find_runs

    return [(r.label, str(r.path)) for r in find_runs(runs_root)]


def refresh_runs(runs_root) -> tuple[list[tuple[str, str]], str]:
    """The run menu for ``runs_root`` and a message (how many runs, or why there are none)."""
    try:
        choices = run_choices(runs_root)
    except UserError as exc:
        return [], f"**error:** {exc}"
    if not choices:
        return [], (f"**No runs in {runs_root}.** Train one first, e.g. `python -m Functions train --epochs 1 "
                    f"--out {Path(runs_root) / 'first'}`, then press Refresh.")
    return choices, f"{len(choices)} run(s) in {runs_root}."


def choose_run(run_dir) -> tuple[str, float]:
    """A run's report card and the threshold the slider starts at (the run's, else 0.5)."""
    from Functions.apps.run_catalog import read_json, report_card

    if not run_dir:
        return "", 0.5
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return f"**error:** run {run_dir} does not exist; press Refresh", 0.5
    threshold = read_json(run_dir / "config.json").get("threshold")
    return report_card(run_dir), float(threshold) if isinstance(threshold, (int, float)) else 0.5


def uploaded_paths(upload) -> list[str]:
    """Gradio's upload value (a path, a list of paths or of file objects) as a list of paths."""
    if not upload:
        return []
    items = upload if isinstance(upload, (list, tuple)) else [upload]
    return [str(getattr(f, "name", f)) for f in items]


class Shown(NamedTuple):
    """What the page shows for one request (:func:`show`).

    ``message`` markdown (one ``**error:**`` line for bad input, never an exception); pictures uint8 RGB arrays
    or ``None``; tables DataFrames (objects, class probabilities or labelled pixels per class) or ``None``;
    ``files`` the downloads (masks and overlays) written under the work folder; ``gates`` ``(picture,
    caption)`` per attention gate of each run that has them; ``video`` run A's overlay video (a path) for a
    video input; ``slices`` for a volume ``((d, h, w), (D, H, W))``: the slice numbers drawn and the size of
    the volume in view (RAS), else ``None``.
    """

    message: str
    picture_a: object = None
    picture_b: object = None
    disagreement: object = None
    table_a: object = None
    table_b: object = None
    files: list | None = None
    gates: list | None = None
    video: str | None = None
    slices: tuple | None = None


def show(run_a, run_b, upload, sample, tta=False, threshold=None, axial=None, coronal=None, sagittal=None,
         workdir=None) -> Shown:
    """Everything the page shows for one request, as plain values (:class:`Shown`).  ``axial``, ``coronal``,
    ``sagittal``: the slice numbers of a volume to draw (``None``: the middle one; clipped to the volume)."""
    from Functions.apps import live

    position = (axial, coronal, sagittal)
    try:
        if not run_a:
            raise UserError("choose a run first (run A); press Refresh if the list is empty")
        paths = uploaded_paths(upload)
        if not paths and not sample:
            raise UserError("no input: upload an image or a volume, or pick one of the samples")
        workdir = Path(workdir or tempfile.mkdtemp(prefix="mip-app-"))
        workdir.mkdir(parents=True, exist_ok=True)
        item = live.read_input(paths or [sample], workdir=workdir)
        runs = [("A", run_a)] + ([("B", run_b)] if run_b and run_b != NONE else [])
        preds, pictures, tables, files, gates = [], [], [], [], []
        out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
        for tag, run in runs:
            pred = live.predict(run, item, tta=bool(tta))
            t = threshold if pred.kind in ("2-D", "3-D") and pred.run.classes == 1 else None
            preds.append((pred, t))
            picture = live.render(pred, t, position)
            pictures.append(live.caption(picture, caption_text(tag, pred, t)))
            tables.append(live.summary_table(pred, t))
            files += live.export(pred, out, f"{tag}-{Path(run).name}", t, position)
            gates += [(pic, f"{tag}: {text}") for pic, text in live.gate_pictures(pred)]
        lines = [f"**{item.name}**" + (" (sample)" if not paths else "") + (" with TTA" if tta else "")]
        lines += [describe(tag, p, t) for (tag, _), (p, t) in zip(runs, preds)]
        lines += [f"{tag}: {live.video_text(p)}" for (tag, _), (p, _) in zip(runs, preds) if p.is_video]
        if gates:
            lines.append(f"{len(gates)} attention gates below (finest first; red: the skip passes, blue: damped)")
        diff = None
        if len(preds) == 2:
            (a, ta), (b, tb) = preds
            diff, sentence = live.disagreement(a, b, ta, tb, position)
            lines.append(sentence)
            if diff is not None:
                diff = live.caption(diff, "A vs B: disagreement in yellow")
                files.append(out / f"{item.stem}_disagreement.png")
                from Functions.data.imaging import write_image

                write_image(files[-1], diff)
    except UserError as exc:
        return Shown(f"**error:** {exc}")
    except Exception as exc:  # noqa: BLE001 - the page stays up; the traceback goes to the server's log
        import logging

        logging.getLogger("Functions").exception("the page could not process this input")
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        return Shown(f"**error:** this input could not be processed ({type(exc).__name__}: {first}); check that "
                     "it is an image, volume or video the run can read")
    second = len(pictures) > 1
    first = preds[0][0]
    video = next((str(f) for f in files if str(f).endswith("_overlay.mp4")), None)
    slices = None
    if first.kind == "3-D":
        slices = (live.slice_point(first.image.shape, position), tuple(first.image.shape))
    return Shown("  \n".join(lines), pictures[0], pictures[1] if second else None, diff, tables[0],
                 tables[1] if second else None, [str(f) for f in files], gates, video, slices)


def caption_text(tag: str, pred, threshold) -> str:
    name = Path(pred.run.path).name
    return f"{tag}: {name}, threshold {threshold:.2f}" if threshold is not None else f"{tag}: {name} ({pred.kind})"


def describe(tag: str, pred, threshold) -> str:
    """One line per run under the pictures: objects, classes, or foreground."""
    name = Path(pred.run.path).name
    if pred.kind == "classifier":
        top = max(pred.scores, key=pred.scores.get)
        return f"{tag} **{name}**: {top} ({pred.scores[top]:.1%}); Grad-CAM shows where it looked"
    labels = pred.labels_at(threshold)
    if pred.kind == "instance":
        return f"{tag} **{name}**: {int(labels.max(initial=0))} objects"
    if pred.kind == "panoptic":
        from collections import Counter

        from Functions.apps.live import summary_table

        counts = Counter(summary_table(pred)["type"])
        types = ", ".join(f"{counts[n]} {n}" for n in pred.run.panoptic[2][:pred.run.panoptic[0]])
        return f"{tag} **{name}**: {sum(counts.values())} objects ({types})"
    unit = "voxels" if pred.kind == "3-D" else f"pixels over {len(labels)} frames" if pred.is_video else "pixels"
    return f"{tag} **{name}**: {int((labels > 0).sum()):,} foreground {unit} ({float((labels > 0).mean()):.1%})"


# ----------------------------------------------------------------------------- the page (Gradio)
def build(runs: str | os.PathLike = "runs", workdir: str | os.PathLike | None = None):
    """The Gradio ``Blocks`` of the page, listing the runs under ``runs``."""
    gr = require_gradio()
    from Functions.apps.live import MAX_FRAMES, sample_inputs

    runs = str(runs)
    workdir = str(workdir or tempfile.mkdtemp(prefix="mip-app-"))
    choices, note = refresh_runs(runs)
    first = choices[0][1] if choices else None
    card, thr = choose_run(first)
    samples = sample_inputs()

    with gr.Blocks(title="Medical image segmentation - live") as page:
        gr.Markdown("## Every model, live\nChoose a run, give it an image, a volume or a short video, see what it "
                    "sees. Pick a second run to compare the two on the same input.")
        with gr.Row():
            runs_box = gr.Textbox(value=runs, label="runs folder", scale=4, elem_id="runs-folder")
            refresh = gr.Button("Refresh", scale=1, elem_id="refresh")
        runs_note = gr.Markdown(note, elem_id="runs-note")
        with gr.Row():
            with gr.Column():
                run_a = gr.Dropdown(choices=choices, value=first, label="run A", elem_id="run-a")
                card_a = gr.Markdown(card, elem_id="card-a")
            with gr.Column():
                run_b = gr.Dropdown(choices=[("(none)", NONE)] + choices, value=NONE, label="run B (optional)",
                                    elem_id="run-b")
                card_b = gr.Markdown("", elem_id="card-b")
        with gr.Row():
            upload = gr.File(label=f"upload an image, a .nii/.nii.gz volume, the .dcm files of a series, or a short "
                                   f".mp4/.avi video (2-D runs; the first {MAX_FRAMES} frames)",
                             file_count="multiple", type="filepath", elem_id="upload", scale=3)
            with gr.Column(scale=2):
                sample = gr.Dropdown(choices=samples, value=samples[0][1] if samples else None,
                                     label="or an offline sample", elem_id="sample")
                tta = gr.Checkbox(False, label="test-time augmentation (flips; slower)", elem_id="tta")
                threshold = gr.Slider(0.05, 0.95, value=thr, step=0.05, label="threshold (binary runs)",
                                      elem_id="threshold")
                go = gr.Button("Segment", variant="primary", elem_id="segment")
        with gr.Accordion("slices (volumes): slice numbers of the volume in view; Segment starts at the middle",
                          open=True):
            with gr.Row():
                axial = gr.Slider(0, 1, value=0, step=1, label="axial slice d", elem_id="axial")
                coronal = gr.Slider(0, 1, value=0, step=1, label="coronal slice h", elem_id="coronal")
                sagittal = gr.Slider(0, 1, value=0, step=1, label="sagittal slice w", elem_id="sagittal")
        message = gr.Markdown("", elem_id="message")
        with gr.Row():
            picture = {"type": "numpy", "format": "png", "interactive": False, "show_label": False,
                       "buttons": ["fullscreen"]}
            pic_a = gr.Image(label="run A", elem_id="picture-a", **picture)
            pic_b = gr.Image(label="run B", elem_id="picture-b", **picture)
            pic_diff = gr.Image(label="where A and B disagree", elem_id="picture-diff", **picture)
        with gr.Row():
            table_a = gr.Dataframe(label="run A: objects / classes / labelled pixels", interactive=False,
                                   elem_id="table-a")
            table_b = gr.Dataframe(label="run B", interactive=False, elem_id="table-b")
        gates = gr.Gallery(label="attention gates (Attention U-Net): coefficients over the image, finest first",
                           columns=4, height="auto", visible=False, elem_id="gates")
        video = gr.Video(label="overlay video (run A; mp4v - if the browser does not play it, download it)",
                         interactive=False, visible=False, elem_id="video")
        downloads = gr.File(label="downloads: masks and overlays", file_count="multiple", interactive=False,
                            elem_id="downloads")

        def do_refresh(folder):
            new, text = refresh_runs(folder)
            return (gr.update(choices=new, value=new[0][1] if new else None),
                    gr.update(choices=[("(none)", NONE)] + new, value=NONE), text)

        def page_values(shown: Shown) -> list:
            sliders = [gr.update()] * 3
            if shown.slices is not None:
                point, shape = shown.slices
                sliders = [gr.update(maximum=size - 1, value=index) for index, size in zip(point, shape)]
            return (list(shown[:7]) + [gr.update(value=shown.gates or None, visible=bool(shown.gates)),
                                       gr.update(value=shown.video, visible=shown.video is not None)] + sliders)

        def do_segment(a, b, files, smp, use_tta, t):        # a new input: the middle slices
            return page_values(show(a, b, files, smp, use_tta, t, workdir=workdir))

        def do_show(a, b, files, smp, use_tta, t, ax, co, sa):
            return page_values(show(a, b, files, smp, use_tta, t, ax, co, sa, workdir=workdir))

        def do_card(run):
            return choose_run(run)[0]

        refresh.click(do_refresh, runs_box, [run_a, run_b, runs_note])
        run_a.change(choose_run, run_a, [card_a, threshold])
        run_b.change(do_card, run_b, card_b)
        inputs = [run_a, run_b, upload, sample, tta, threshold, axial, coronal, sagittal]
        outputs = [message, pic_a, pic_b, pic_diff, table_a, table_b, downloads, gates, video, axial, coronal,
                   sagittal]
        go.click(do_segment, inputs[:6], outputs)
        for slider in (threshold, axial, coronal, sagittal):
            slider.release(do_show, inputs, outputs)
    page.mip_workdir = workdir
    return page


def in_notebook() -> bool:
    """True inside Jupyter or Colab (an IPython kernel), where the page is shown inline."""
    if "google.colab" in sys.modules:
        return True
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and shell.get_ipython() is not None and \
            "IPKernelApp" in shell.get_ipython().config
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False


def launch(runs: str | os.PathLike = "runs", port: int | None = None, share: bool = False,
           inline: bool | None = None, block: bool | None = None, quiet: bool = False):
    """Start the page on 127.0.0.1 (``port``: default Gradio's first free one from 7860).

    ``inline`` (default: in a notebook) shows it under the cell; ``block`` (default: not in a notebook) keeps
    the call running until Ctrl-C.  Returns the Gradio ``Blocks`` (``.close()`` stops it).
    """
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    for name in ("NO_PROXY", "no_proxy"):             # the start-up check calls 127.0.0.1 directly
        os.environ[name] = ",".join(x for x in (os.environ.get(name, ""), "127.0.0.1,localhost") if x)
    notebook = in_notebook()
    inline = notebook if inline is None else bool(inline)
    block = (not notebook) if block is None else bool(block)
    page = build(runs)
    page.queue(default_concurrency_limit=2)
    page.launch(server_name="127.0.0.1", server_port=port, share=bool(share), inline=inline,
                prevent_thread_lock=not block, quiet=quiet, inbrowser=False, show_error=True,
                allowed_paths=[page.mip_workdir])
    return page
