"""``report.md`` for every run folder: settings, data, metrics and figures, readable on GitHub."""

from __future__ import annotations

from pathlib import Path

FIGURES = (("curves.png", "Training curves"), ("predictions.png", "Test predictions"),
           ("progress.png", "Validation predictions during training"), ("worst.png", "Lowest-Dice test cases"),
           ("confusion_matrix.png", "Confusion matrix"), ("roc.png", "ROC curves"), ("gradcam.png", "Grad-CAM"),
           ("comparison.png", "Comparison"))


def markdown_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = ".4f") -> str:
    """A GitHub markdown table from a list of dicts."""
    if not rows:
        return "_(none)_\n"
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, config: dict, data: dict | None = None, metrics: dict | None = None,
                 title: str | None = None, command: str | None = None) -> Path:
    """Write ``run_dir/report.md``: summary, settings, data, metrics and every figure present in the folder.

    ``command``: the command line that repeats the run, shown in a code block.
    """
    run_dir = Path(run_dir)
    out = [f"# {title or 'Run ' + run_dir.name}\n"]
    if metrics and "dice" in metrics:
        line = (f"**{config.get('model', 'model')}**: Dice {metrics['dice']:.4f}, IoU {metrics.get('iou', float('nan')):.4f} "
                f"on {metrics.get('n_images', '?')} {metrics.get('split', 'test')} images")
        if metrics.get("best_epoch") and metrics.get("keep") == "last":
            line += (f"; last epoch kept ({metrics.get('kept_epoch')} of {metrics.get('epochs_trained', '?')}, "
                     f"--keep last; best {metrics.get('monitor')} {metrics['best_value']:.4f} at epoch "
                     f"{metrics['best_epoch']})")
        elif metrics.get("best_epoch"):
            line += (f"; best epoch {metrics['best_epoch']} of {metrics.get('epochs_trained', '?')} by "
                     f"{metrics.get('monitor')} ({metrics['best_value']:.4f})")
        if config.get("ema"):
            line += f"; the weights' moving average was validated and kept (--ema {config['ema']:g})"
        if metrics.get("train_seconds") is not None:
            line += f"; {metrics['train_seconds']:.0f} s of training"
        out.append(line + ".\n")
    if command:
        out.append("Repeat it with:\n\n```bash\n" + command + "\n```\n")
    out.append("## Settings\n")
    out.append(markdown_table([{"setting": k, "value": v} for k, v in config.items()]))
    if data:
        out.append("\n## Data\n")
        rows = [{"split": k, "images": len(data[k][2])} for k in ("train", "val", "test") if k in data]
        out.append(markdown_table(rows))
        if "channels" in data:
            out.append(f"\nChannels: {data['channels']}; samples found: {data.get('n_samples', '?')}.\n")
    if metrics:
        out.append("\n## Metrics\n")
        summary = metrics.get("summary", {})
        if summary:
            rows = [{"metric": k, **{s: (v if v is not None else float('nan')) for s, v in stats.items()}}
                    for k, stats in summary.items()]
            out.append(markdown_table(rows))
        extra = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list)) and k not in summary}
        if extra:
            out.append("\n" + markdown_table([{"item": k, "value": v} for k, v in extra.items()]))
    figs = [(f, t) for f, t in FIGURES if (run_dir / f).exists()]
    if figs:
        out.append("\n## Figures\n")
        out += [f"\n### {t}\n\n![{t}]({f})\n" for f, t in figs]
    path = run_dir / "report.md"
    path.write_text("\n".join(out))
    return path
