"""What `trainscape run` prints and writes after a sweep: a label table and the heatmaps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import atomic
from ..io.results import Results
from ..train.classify import LABELS


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


MAX_ROWS = 40  # longer tables print their first and last rows (the full one is in runs.parquet)


def text_summary(res: Results, timings: bool = True) -> str:
    """Per learning rate (or the first axis), how many runs ended in each label; `timings`:
    also the sweep's time to first result, total time and rate (from its meta.json, so leave
    them out for a sweep this call did not compute)."""
    axes = [a for a in res.axes if a != "seed"]
    by = "learning_rate" if "learning_rate" in axes else (axes[0] if axes else None)
    t = res.meta.get("timings", {})
    n, steps = res.n_runs, res.config.train.steps
    lines = [f"{res.config.name}: {n} run{'s' * (n != 1)} x {steps} step{'s' * (steps != 1)} "
             f"({', '.join(f'{a}: {len(v)}' for a, v in res.config.sweep.items()) or 'one run'})"]
    if timings and t.get("first_chunk_seconds") is not None:
        lines.append(f"time to first result {t['first_chunk_seconds']:.1f} s (includes "
                     f"compilation), total {t.get('total_seconds', 0):.1f} s, "
                     f"{t.get('run_steps_per_second') or 0:,.0f} run-steps/s on "
                     f"{res.meta.get('backend', '?')}")
    if by is None:
        counts = res.read_runs(["label"])["label"].value_counts()
        lines.append(counts[counts > 0].to_string())
        return "\n".join(lines)
    counts = res.label_counts(by)
    present = [lab for lab in LABELS if counts[lab].sum() > 0]
    width = max(len(by), 12)
    lines.append("")
    lines.append(f"{by:>{width}}  " + "  ".join(f"{lab:>11}" for lab in present) + "  total")
    shown = range(len(counts))
    if len(counts) > MAX_ROWS:
        half = MAX_ROWS // 2
        shown = [*range(half), None, *range(len(counts) - half, len(counts))]
    for i in shown:
        if i is None:
            lines.append(f"{'...':>{width}}  ({len(counts) - 2 * half} more values of {by})")
            continue
        value, row = counts.index[i], counts.iloc[i]
        lines.append(f"{_fmt(value):>{width}}  " + "  ".join(f"{row[lab]:>11d}" for lab in present)
                     + f"  {row['total']:>5d}")
    return "\n".join(lines)


# A heatmap row needs a pixel or more: an axis with more values than this (10,000 seeds) is
# aggregated into a strip over x instead, which also keeps the figure's memory independent of
# the grid size (a 100 x 10,000 map would hold a million cells).
MAX_HEATMAP_ROWS = 512


def png_bytes(fig, dpi: int = 150) -> bytes:
    """`fig` drawn in memory as a PNG (and closed), for `atomic.write_bytes` to write whole or
    not at all."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _save(fig, f: Path) -> None:
    """Draw `fig` in memory, then write it whole or not at all (`atomic.write_bytes`)."""
    atomic.write_bytes(png_bytes(fig), f)


def write_figures(res: Results, folder: Path) -> list[Path]:
    """Label heatmap (and the seed-question figure when lr 0.01 and 1 are on the grid)."""
    import matplotlib.pyplot as plt

    from ..viz import plots

    folder = Path(folder)
    written = []
    axes = list(res.axes)
    if axes:
        x = "learning_rate" if "learning_rate" in axes else axes[0]
        others = [a for a in axes if a != x]
        # seeds are what a cell pools best (repeats of one setting); an axis such as
        # init_scale pooled into a majority would hide its effect
        y = next((a for a in others if a != "seed"), "seed" if others else None)
        if y is not None and len(res.config.sweep[y]) > MAX_HEATMAP_ROWS:
            y = None  # more rows than the figure has pixels: one strip, runs aggregated
        # a single row (one swept axis, or rows aggregated) is a strip, not a map: drawn
        # 4.5 inches tall it read as a second dimension
        fig, ax = plt.subplots(figsize=(7.5, 4.5 if y is not None else 2.4),
                               layout="constrained")
        # one row per (cell, label), counted a row group at a time: a million-run folder
        # draws its map without loading its runs
        counts = res.cell_counts([c for c in (x, y) if c is not None])
        plots.label_heatmap(counts, x=x, y=y, ax=ax, weights="runs",
                            pooled=[a for a in axes if a not in (x, y)],
                            log_x=plots.geometric(counts, x), log_y=plots.geometric(counts, y))
        # the plot's own title says how each cell aggregates its runs (rebroken to fit with
        # the name in front)
        own = ax.get_title().replace("\n", " ") or "label per run"
        plots.fit_title(ax, f"{res.config.name}: {own}")
        f = folder / "heatmap.png"
        _save(fig, f)
        written.append(f)
    lrs = res.config.sweep.get("learning_rate", ())
    if any(np.isclose(lrs, 0.01)) and any(np.isclose(lrs, 1.0)):
        fig, axs = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        runs = res.read_runs(["run_id", "learning_rate", "label"])
        runs = runs.loc[np.isclose(runs["learning_rate"].to_numpy()[:, None], [0.01, 1.0],
                                   rtol=1e-5, atol=0).any(axis=1)]
        curves = res.read_curves(runs["run_id"].to_numpy())
        plots.seed_question_figure(runs, curves, lrs=(0.01, 1.0), axes=axs)
        f = folder / "seed_question.png"
        _save(fig, f)
        written.append(f)
    return written
