"""What `trainscape run` prints and writes after a sweep: a label table and the heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import label_counts
from .classify import LABELS
from .results import Results


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


def text_summary(res: Results) -> str:
    """Per learning rate (or the first axis), how many runs ended in each label."""
    runs = res.runs
    axes = [a for a in res.axes if a != "seed"]
    by = "learning_rate" if "learning_rate" in axes else (axes[0] if axes else None)
    t = res.meta.get("timings", {})
    lines = [f"{res.config.name}: {len(runs)} runs x {res.config.train.steps} steps "
             f"({', '.join(f'{a}: {len(v)}' for a, v in res.config.sweep.items()) or 'one run'})"]
    if t.get("first_chunk_seconds") is not None:
        lines.append(f"time to first result {t['first_chunk_seconds']:.1f} s (includes "
                     f"compilation), total {t.get('total_seconds', 0):.1f} s, "
                     f"{t.get('run_steps_per_second') or 0:,.0f} run-steps/s on "
                     f"{res.meta.get('backend', '?')}")
    if by is None:
        lines.append(runs["label"].value_counts().to_string())
        return "\n".join(lines)
    counts = label_counts(runs, by)
    present = [lab for lab in LABELS if counts[lab].sum() > 0]
    width = max(len(by), 12)
    lines.append("")
    lines.append(f"{by:>{width}}  " + "  ".join(f"{lab:>11}" for lab in present) + "  total")
    for value, row in counts.iterrows():
        lines.append(f"{_fmt(value):>{width}}  " + "  ".join(f"{row[lab]:>11d}" for lab in present)
                     + f"  {row['total']:>5d}")
    return "\n".join(lines)


def write_figures(res: Results, folder: Path) -> list[Path]:
    """Label heatmap (and the seed-question figure when lr 0.01 and 1 are on the grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plots

    folder = Path(folder)
    written = []
    axes = list(res.axes)
    if axes:
        x = "learning_rate" if "learning_rate" in axes else axes[0]
        others = [a for a in axes if a != x]
        y = "seed" if "seed" in others else (others[0] if others else None)
        fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
        if y is None:
            plots.label_heatmap(res.runs, x=x, y=None, ax=ax)
        else:
            plots.label_heatmap(res.runs, x=x, y=y, ax=ax)
        ax.set_title(f"{res.config.name}: label per run")
        f = folder / "heatmap.png"
        fig.savefig(f, dpi=150)
        plt.close(fig)
        written.append(f)
    lrs = res.config.sweep.get("learning_rate", ())
    if any(np.isclose(lrs, 0.01)) and any(np.isclose(lrs, 1.0)):
        fig, axs = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        plots.seed_question_figure(res.runs, res.curves, lrs=(0.01, 1.0), axes=axs)
        f = folder / "seed_question.png"
        fig.savefig(f, dpi=150)
        plt.close(fig)
        written.append(f)
    return written
