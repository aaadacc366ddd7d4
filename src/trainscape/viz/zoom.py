"""Figures and reports of a boundary zoom (`sweep.zoom.Zoom`): the map at the finest level,
the box counts with the fitted dimension, the zoom strip, a written report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic
from ..sweep import zoom_grid as zg
from ..sweep.zoom import Zoom, is_zoom, outcome_names
from ..train.classify import LABELS


def _colors(by: str) -> list[str]:
    from .plots import LABEL_COLORS

    if by == "label":
        return [LABEL_COLORS[name] for name in LABELS]
    return [LABEL_COLORS["converged"], LABEL_COLORS["diverged"]]


def _extent(z: Zoom, level: int) -> tuple[list[float], list[str]]:
    """Image extent (log10 for geomspace axes, half a cell beyond the end points) and axis
    labels."""
    ext, names = [], []
    for ax in z.axes:
        lo, hi = ax.start, ax.stop
        log = ax.form == "geomspace"
        if log:
            lo, hi = np.log10(lo), np.log10(hi)
        half = (hi - lo) / (zg.lattice_size(ax.num, level) - 1) / 2
        ext += [lo - half, hi + half]
        names.append(f"log10 {ax.name}" if log else ax.name)
    return ext, names


def plot_map(z: Zoom, ax=None, level: int | None = None, computed: bool = True):
    """The map at `level` (default: the finest) as an image: every lattice point of the level
    shows its outcome; a point not computed takes the outcome of its enclosing computed cell.
    `computed`: a faint dot on each point that was trained."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .plots import _LEGEND_KW

    levels = z.settings["levels"]
    level = levels if level is None else level
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2), layout="constrained")
    s = zg.stride(level, levels)
    img = z.image()[::s, ::s]
    colors = _colors(z.by)
    ext, names = _extent(z, level)
    ax.imshow(img.T, origin="lower", extent=ext, aspect="auto", interpolation="nearest",
              cmap=ListedColormap(colors), vmin=-0.5, vmax=len(colors) - 0.5)
    if computed:
        pts = np.concatenate(z.refinement.points[:level + 1])
        pts = pts[(pts % s == 0).all(axis=1)]
        xy = []
        for d, a in enumerate(z.axes):
            v = a.values(pts[:, d], levels)
            xy.append(np.log10(v) if a.form == "geomspace" else v)
        ax.scatter(*xy, s=0.3, c="white", alpha=0.25, linewidths=0, rasterized=True)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"level {level}: {zg.lattice_size(z.axes[0].num, level)} x "
                 f"{zg.lattice_size(z.axes[1].num, level)} lattice")
    present = np.unique(img)
    # outside the map, as the heatmaps' legends: inside it covered a corner of the map
    ax.legend([Patch(color=colors[c]) for c in present],
              [outcome_names(z.by)[c] for c in present], **_LEGEND_KW)
    return ax


def plot_box_counts(z: Zoom, ax=None):
    """log N(cell size) against log 1 / cell size, with the fitted slope (the dimension)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    d = z.dimension
    if not len(z.refinement.finest_boundary):
        ax.text(0.5, 0.5, no_boundary(z), ha="center", va="center", wrap=True,
                transform=ax.transAxes, fontsize=9)
        ax.set_axis_off()
        ax.set_title("box counting of the finest boundary")
        return ax
    span = max(z.refinement.shape) - 1
    x = np.log10(span / np.asarray(d["sizes"], dtype=float))
    y = np.log10(np.asarray(d["counts"], dtype=float))
    ax.plot(x, y, "o", color="#0072B2", label="boundary boxes")
    if math.isfinite(d["estimate"]):  # one cell size (--levels 0): no slope to draw
        xx = np.linspace(x.min(), x.max(), 2)
        ax.plot(xx, (d["intercept"] + d["estimate"] * xx * np.log(10)) / np.log(10), "-",
                color="#D55E00", label=f"slope {d['estimate']:.3f}" + (
                    f" [{d['ci_low']:.3f}, {d['ci_high']:.3f}]" if math.isfinite(d["ci_low"])
                    else ""))
    ax.set_xlabel("log10 (1 / cell size)   (cell size as a fraction of the map's side)")
    ax.set_ylabel("log10 N (boxes holding boundary)")
    ax.legend(fontsize=8)
    ax.set_title("box counting of the finest boundary")
    return ax


def plot_strip(z: Zoom, axes=None):
    """The same map at every level, coarse to fine (a list of axes, one per level)."""
    import matplotlib.pyplot as plt

    n = z.settings["levels"] + 1
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), layout="constrained",
                               squeeze=False)
        axes = list(axes[0])
    for k, a in enumerate(axes):
        plot_map(z, ax=a, level=k, computed=True)
        a.set_title(f"level {k}: {len(z.refinement.points[k])} new runs", fontsize=9)
        if a.get_legend() is not None and k < len(axes) - 1:
            a.get_legend().remove()  # one legend, right of the last map
    return axes


def report(z: Zoom, out: str | Path | None = None) -> Path:
    """Figures (zoom-map.png, zoom-boxcount.png, zoom-strip.png) and report.md in `out`
    (default: the zoom folder): the map, the dimension with its interval, the counts per
    level and the cost against the dense grid."""
    from .summary import png_bytes

    out = atomic.path_arg(out, "out") if out is not None else z.path
    if out is None:
        raise InputError("report: give out=DIR for a zoom kept in memory")
    _check_report_folder(out)
    out.mkdir(exist_ok=True)
    for name, draw in (("zoom-map.png", lambda: plot_map(z).figure),
                       ("zoom-boxcount.png", lambda: plot_box_counts(z).figure),
                       ("zoom-strip.png", lambda: plot_strip(z)[0].figure)):
        atomic.write_bytes(png_bytes(draw(), dpi=130), out / name)
    f = out / REPORT_FILES[0]
    atomic.write_bytes(report_text(z).encode("utf-8"), f)
    return f


REPORT_FILES = ("report.md", "zoom-map.png", "zoom-boxcount.png", "zoom-strip.png")


def _check_report_folder(out: Path) -> None:
    """A zoom's report is a folder of four files: refuse, before drawing, a folder that
    cannot be made, or files that are not an earlier report's."""
    from .report import is_earlier_report

    where = f"out {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise InputError(f"{where}: is a file; a zoom's report is a folder (report.md and "
                         "its figures): give a folder")
    if not out.exists():
        if out.suffix.lower() in (".md", ".html", ".htm", ".markdown"):
            raise InputError(f"{where}: a zoom's report is a folder (report.md and its "
                             "figures), not one file: give a folder")
        if not out.parent.is_dir():
            raise InputError(f"{where}: folder {str(out.parent)!r} does not exist")
        return
    if (out / REPORT_FILES[0]).exists() and not is_earlier_report(out / REPORT_FILES[0]):
        raise InputError(f"{where}: its report.md is not an earlier trainscape report; a "
                         "report replaces only an earlier report: give another folder")
    if not (out / REPORT_FILES[0]).exists() and not is_zoom(out):  # a zoom's own: its figures
        taken = [n for n in REPORT_FILES[1:] if (out / n).exists()]
        if taken:
            raise InputError(f"{where}: {taken[0]!r} exists and is not part of an earlier "
                             "report: give another folder")


def no_boundary(z: Zoom) -> str:
    """What to say when the finest level has no boundary cell (no dimension to measure)."""
    codes = np.unique(z.image())
    same = (f"every computed point is {outcome_names(z.by)[codes[0]]}" if len(codes) == 1
            else "the outcome does not change from corner to corner of any computed cell")
    return f"no boundary at the finest level: {same}; widen the axes' ranges to enclose one"


_NO_INTERVAL = "no interval, which needs 3 cell sizes: 2 levels after level 0 or more"


def dimension_text(d: dict) -> str:
    """The fitted dimension with its interval, "1.585 [1.412, 1.758]"; a slope through two
    cell sizes has no interval, one cell size no slope (the fit's NaN never printed)."""
    if not math.isfinite(d["estimate"]):
        return (f"none: a slope needs 2 cell sizes, there is {len(d['sizes'])} (a level after "
                "level 0 or more)")
    if not math.isfinite(d["ci_low"]):
        return f"{d['estimate']:.3f}, {_NO_INTERVAL}"
    return f"{d['estimate']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def report_text(z: Zoom) -> str:
    d = z.dimension
    s = z.settings
    st = z.level_stats()
    axes = " x ".join(f"{a.name} {a.form} [{a.start:g}, {a.stop:g}] ({a.num} points)"
                      for a in z.axes)
    n = len(d["sizes"])
    fit = ("least-squares slope of log N against log 1/size over "
           + (f"the {n} levels' cell sizes" if n != 1 else "the one level's cell size"))
    fit = (f"{100 * d['confidence']:.0f}% interval {d['ci_low']:.3f} to {d['ci_high']:.3f}, "
           f"{fit}" if math.isfinite(d["ci_low"]) else f"{fit}; {_NO_INTERVAL}")
    lines = [
        f"# Boundary zoom: {z.config.name}", "",
        f"Axes: {axes}; {s['levels']} level{'s' * (s['levels'] != 1)} after level 0, margin "
        f"{s['margin']} cell{'s' * (s['margin'] != 1)}, outcome "
        f"`{s['by']}` ({' / '.join(outcome_names(s['by']))}).", "",
        f"Runs: {z.n_runs:,} of the {z.dense_runs:,} a dense "
        f"{z.refinement.shape[0]} x {z.refinement.shape[1]} grid needs "
        f"({100 * z.n_runs / z.dense_runs:.1f}%).", "",
        f"Box-counting dimension of the finest boundary: **{d['estimate']:.3f}** ({fit})."
        if math.isfinite(d["estimate"]) else
        f"Box-counting dimension: {dimension_text(d)}." if len(z.refinement.finest_boundary)
        else f"Box-counting dimension: none, {no_boundary(z)}.", "",
        "| level | cell size (finest cells) | new runs | boundary cells | cells refined | "
        "boxes holding finest boundary |",
        "|---|---|---|---|---|---|",
    ]
    for r, count in zip(st.itertuples(), d["counts"], strict=True):
        lines.append(f"| {r.level} | {r.cell_size} | {r.runs:,} | {r.boundary_cells:,} | "
                     f"{r.cells_refined:,} | {count:,} |")
    lines += ["", "![map](zoom-map.png)", "", "![box counting](zoom-boxcount.png)", "",
              "![zoom strip](zoom-strip.png)", ""]
    return "\n".join(lines)


def summary_text(z: Zoom) -> str:
    n, d = len(z.refinement.finest_boundary), z.dimension
    return (f"{z.n_runs:,} runs ({100 * z.n_runs / z.dense_runs:.1f}% of a dense "
            f"{z.refinement.shape[0]} x {z.refinement.shape[1]} grid, {z.dense_runs:,} runs); "
            + (f"{n:,} boundary cells at the finest level; dimension {dimension_text(d)}"
               if n else no_boundary(z)))
