"""Figures for a sweep: label maps, metric maps, the divergence boundary and loss curves.

Every function draws on the ``ax``/``axes`` it is given, or creates a figure (constrained layout)
when that is None, and returns what it drew on. Nothing here saves files or calls ``plt.show``.

Conventions shared by all heatmaps:

* Cells sit at the grid's actual values. Cell edges are geometric midpoints on log axes and
  arithmetic midpoints on linear ones, so a geomspace grid gives equal-width cells on a log axis.
* An axis is drawn log when ``log_x``/``log_y`` is None, every value is positive and the values
  span at least two decades (``max / min >= 100``).
* Major ticks sit on grid values only. At draw time they are thinned to a regular subset whose
  labels cannot overlap, preferring the subset with the roundest labels (1e-3, 0.01, 0.1, 1...).
  A categorical axis, or one whose values are unevenly spaced on it, labels every value when
  all labels fit; names too long to sit side by side on x are slanted.
* Legends are placed outside the axes, to the right, so they never cover data; later calls
  (:func:`boundary_contour`, :func:`threshold_lines`) append to the existing legend.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import contourpy
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import patheffects, ticker
from matplotlib.axis import XAxis
from matplotlib.collections import PolyCollection
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import text_to_path

from ..errors import InputError
from ..train.classify import LABELS

__all__ = [
    "LABEL_COLORS",
    "DERIVED_METRICS",
    "label_heatmap",
    "metric_heatmap",
    "boundary_contour",
    "threshold_lines",
    "loss_curves",
    "curves_grid",
    "seed_question_figure",
]

# Okabe-Ito hues, chosen to stay distinguishable under the common colour-vision deficiencies;
# diverged is very dark so it also separates from everything else by lightness alone. Stalled is
# a dark grey: a light grey (#A8A8A8) has the lightness of the reddish purple, and the two look
# alike to a deuteranope (CIELAB distance 9 after simulation, against 17 or more for any other
# pair).
LABEL_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "converged": "#0072B2",  # blue
        "catapult": "#E69F00",  # orange
        "oscillating": "#CC79A7",  # reddish purple
        "stalled": "#585858",  # dark grey
        "diverged": "#5A0B14",  # very dark red
    }
)

DERIVED_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "peak_ratio": "max_loss / initial_loss",
        "final_ratio": "final_loss / initial_loss",
    }
)

# A NaN loss only ever comes from a run that blew up, so for these metrics NaN is read as +inf.
_LOSS_METRICS = frozenset(
    {"initial_loss", "final_loss", "min_loss", "max_loss", "peak_ratio", "final_ratio"}
)

_NAN_COLOR = "#D9D9D9"  # no value in the cell
_INF_COLOR = "#D55E00"  # +inf (a loss that diverged): outside every default colormap's hues
_NEGINF_COLOR = "#000000"
_LINE_COLOR = "#111111"
_HALO = [patheffects.withStroke(linewidth=3.5, foreground="white")]
_LEGEND_KW = dict(
    loc="upper left",
    bbox_to_anchor=(1.02, 1.0),
    borderaxespad=0.0,
    frameon=False,
    fontsize="small",
)


# ----------------------------------------------------------------------------------------------
# number formatting


def _sig_digits(v: float, cap: int = 6) -> int:
    """Fewest significant digits that reproduce ``v`` (``cap + 1`` if none up to ``cap`` do)."""
    if v == 0 or not math.isfinite(v):
        return 1
    for s in range(1, cap + 1):
        if math.isclose(float(f"{v:.{s - 1}e}"), v, rel_tol=1e-9):
            return s
    return cap + 1


def exact_text(v) -> str | None:
    """The text of a number that needs no rounding, as the figures and the report both show it
    (a bool, an integer, an integral float below 10^4, inf or nan); None for any other."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v.is_integer() and abs(v) < 1e4:
        return str(int(v))
    return None


def _fmt(v, sig: int = 3) -> str:
    """Short label for a number: 1e-3, 0.01, 0.0316, 1, 31.6, 1000, 1e4, 3.16e-5."""
    text = exact_text(v)
    if text is not None:
        return text
    v = float(v)
    s = min(_sig_digits(v, sig), sig)
    mantissa, exp = f"{v:.{s - 1}e}".split("e")
    e = int(exp)
    if -2 <= e <= 3:
        return f"{float(f'{v:.{s - 1}e}'):.{max(s - 1 - e, 0)}f}"
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{e}"


# ----------------------------------------------------------------------------------------------
# grid axes


@dataclass(frozen=True)
class _GridAxis:
    name: str | None
    positions: np.ndarray  # cell centres in data coordinates (indices for categorical axes)
    ticklabels: tuple[str, ...]
    log: bool
    edges: np.ndarray
    categorical: bool = False  # names in sweep order: no label can be read off its neighbours

    @property
    def size(self) -> int:
        return len(self.positions)


def _cell_edges(centres: np.ndarray, log: bool, integer: bool) -> np.ndarray:
    t = np.log10(centres) if log else centres.astype(float)
    if len(t) == 1:
        if log:
            half = 0.5  # half a decade
        elif integer or t[0] == 0:
            half = 0.5
        else:
            half = 0.1 * abs(t[0])
        e = np.array([t[0] - half, t[0] + half])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[t[0] - (t[1] - t[0]) / 2], mid, [t[-1] + (t[-1] - t[-2]) / 2]])
    return 10.0**e if log else e


def _auto_log(values: np.ndarray) -> bool:
    return len(values) > 1 and values[0] > 0 and values[-1] / values[0] >= 100 * (1 - 1e-9)


def _grid_axis(runs: pd.DataFrame, col: str | None, log: bool | None):
    """Return the axis description and each row's cell index along it (-1 where missing)."""
    if col is None:
        # a single pseudo-row, used when only one axis is plotted
        return (
            _GridAxis(None, np.array([0.0]), ("",), False, np.array([-0.5, 0.5])),
            np.zeros(len(runs), dtype=np.int64),
        )
    s = runs[col]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = pd.to_numeric(s).to_numpy(dtype=float, na_value=np.nan)
        ok = np.isfinite(vals)
        centres = np.unique(vals[ok])
        index = np.full(len(vals), -1, dtype=np.int64)
        index[ok] = np.searchsorted(centres, vals[ok])
        if log is None:
            log = _auto_log(centres)
        elif log and (len(centres) == 0 or centres[0] <= 0):
            raise InputError(f"log scale requested for {col!r}, but it has non-positive values")
        integer = pd.api.types.is_integer_dtype(s)
        labels = tuple(_fmt(int(c)) if integer else _fmt(c) for c in centres)
        edges = _cell_edges(centres, log, integer) if len(centres) else np.array([0.0, 1.0])
        return _GridAxis(col, centres, labels, bool(log), edges), index
    if log:
        raise InputError(f"log scale requested for {col!r}, which is not numeric")
    # categorical axis: keep sweep (first-appearance) order rather than sorting
    cats = pd.unique(s.dropna())
    index = pd.Categorical(s, categories=cats).codes.astype(np.int64)
    n = len(cats)
    return (
        _GridAxis(
            col,
            np.arange(n, dtype=float),
            tuple(str(c) for c in cats),
            False,
            np.arange(n + 1) - 0.5,
            categorical=True,
        ),
        index,
    )


def _require(df: pd.DataFrame, cols, what: str = "runs") -> None:
    for c in cols:
        if c is not None and c not in df.columns:
            raise InputError(f"{what} has no column {c!r}; columns are {list(df.columns)}")


def _cells(runs, x, y, log_x, log_y):
    if x == y:
        raise InputError(f"x and y must be different columns, both are {x!r}")
    _require(runs, [x, y])
    gx, ix = _grid_axis(runs, x, log_x)
    gy, iy = _grid_axis(runs, y, log_y)
    cell = np.where((ix >= 0) & (iy >= 0), iy * gx.size + ix, -1)
    return gx, gy, cell


def _label_counts(runs: pd.DataFrame, cell: np.ndarray, n_cells: int,
                  weights: str | None = None) -> np.ndarray:
    """(n_cells, len(LABELS)) counts; runs with a missing or unknown label are ignored.
    `weights` names a column giving how many runs each row stands for (an aggregated table)."""
    code = pd.Categorical(runs["label"], categories=list(LABELS)).codes
    ok = (cell >= 0) & (code >= 0)
    counts = np.zeros((n_cells, len(LABELS)), dtype=np.int64)
    if weights is None:
        w = np.ones(len(runs), dtype=np.int64)
    else:
        _require(runs, [weights])
        w = pd.to_numeric(runs[weights]).to_numpy()
        if w.dtype.kind not in "iu" or (w < 0).any():
            raise InputError(f"weights column {weights!r} must hold non-negative integer run "
                             f"counts; got dtype {runs[weights].dtype}")
    np.add.at(counts, (cell[ok], code[ok]), w[ok].astype(np.int64))
    return counts


class _GridTicks(ticker.Locator):
    """Major ticks on grid values, thinned when the axis is drawn so labels cannot overlap.

    Thinning happens at draw time because only then is the final axis length known (a colorbar
    or constrained layout may shrink the axes after the heatmap is drawn). Every value keeps its
    label when all fit on an axis where a missing label cannot be read off its neighbours: names
    (`every`), or numbers not evenly spaced on the axis (momentum 0, 0.5, 0.9, 0.99).
    `rotated`: the x labels are drawn at 45 degrees, so each needs less room along the axis.
    """

    def __init__(self, positions: np.ndarray, labels: Sequence[str], every: bool = False,
                 rotated: bool = False):
        self._pos = np.asarray(positions, float)
        self._labels = list(labels)
        self._every = every
        self._rotated = rotated
        # roundness of each label: fewer significant digits reads better (1e-3 beats 3.16e-3)
        self._digits = np.array(
            [
                _sig_digits(float(p)) if lab == _fmt(p) else 1
                for p, lab in zip(positions, labels, strict=True)
            ]
        )

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin, vmax):
        lo, hi = sorted((vmin, vmax))
        tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
        keep = np.flatnonzero((self._pos >= lo - tol) & (self._pos <= hi + tol))
        if len(keep) <= 1 or self.axis is None:
            return self._pos[keep]
        pix = self._pixels(self._pos[keep], lo, hi)
        need = self._label_extent([self._labels[i] for i in keep])
        gaps = np.abs(np.diff(pix))
        uneven = not np.allclose(gaps, gaps[0], rtol=1e-3)
        if (self._every or uneven) and np.min(gaps) >= need:
            return self._pos[keep]
        cost = self._cost_function(self._pos[keep], self._digits[keep])
        best = None
        first_ok = None
        for stride in self._strides(len(keep), need, pix):
            if first_ok is not None and stride > 2 * first_ok:
                break
            for offset in range(min(stride, len(keep), self.MAX_OFFSETS)):
                sel = np.arange(offset, len(keep), stride)
                if len(sel) > 1 and np.min(np.abs(np.diff(pix[sel]))) < need:
                    continue
                first_ok = stride if first_ok is None else first_ok
                # roundest labels first, then more ticks, then earlier offset
                score = (cost(sel, stride), -len(sel), offset)
                if best is None or score < best[0]:
                    best = (score, sel)
        sel = best[1] if best is not None else np.array([0])
        return self._pos[keep[self._with_ends(sel, len(keep), pix, need)]]

    @staticmethod
    def _with_ends(sel: np.ndarray, n: int, pix: np.ndarray, need: float) -> np.ndarray:
        """The chosen ticks plus the first and last grid value (the largest learning rate is
        the one a reader looks for), dropping chosen ticks that would overlap them."""
        ends = np.array([0, n - 1])
        if abs(pix[-1] - pix[0]) < need:  # no room for both ends' labels
            return sel
        near = np.min(np.abs(pix[sel][:, None] - pix[ends][None, :]), axis=1) < need
        return np.union1d(sel[~near], ends)

    MAX_OFFSETS = 64  # offsets tried per stride (a stride of 500 seeds tries 0..63)
    MANY = 200  # above this many grid values, only 1-2-2.5-5 strides are tried

    @classmethod
    def _strides(cls, n: int, need: float, pix: np.ndarray) -> list[int]:
        """Candidate strides in increasing order. A stride whose widest gap is still narrower
        than a label can never fit, so the search starts above it; a long axis (10,000 seeds)
        tries only round strides, keeping the search linear in the axis length."""
        widest = float(np.max(np.abs(np.diff(pix)))) if n > 1 else 0.0
        start = max(1, math.ceil(need / widest)) if widest > 0 else n
        if n <= cls.MANY:
            return list(range(min(start, n), n + 1))
        nice = sorted({int(m * 10**k) for k in range(int(math.log10(n)) + 2)
                       for m in (1, 2, 2.5, 5)} - {0})
        return [s for s in nice if start <= s <= n] or [n]

    def _cost_function(self, pos: np.ndarray, digits: np.ndarray):
        """How un-round a choice of ticks looks (lower is better)."""
        step = np.diff(pos)
        log = self.axis.get_scale() == "log"
        if log or len(step) == 0 or not np.allclose(step, step[0], rtol=1e-6, atol=0):
            return lambda sel, stride: float(np.mean(digits[sel]))

        # evenly spaced linear grid: like a ruler, ticks should sit on multiples of their
        # spacing (0, 5, 10 rather than 1, 6, 11) and the spacing should be 1, 2, 2.5 or 5 x 10^k
        def cost(sel, stride):
            spacing = stride * step[0]
            q = pos[sel] / spacing
            off_grid = float(np.mean(np.abs(q - np.round(q)) > 1e-6))
            mant = spacing / 10.0 ** math.floor(math.log10(spacing))
            nice = any(math.isclose(mant, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))
            return off_grid + (0.0 if nice else 0.5)

        return cost

    def _pixels(self, v, lo, hi):
        scale = self.axis.get_transform()
        t = scale.transform(np.asarray(v, float))
        t0, t1 = scale.transform(np.array([lo, hi], float))
        length = self._length()
        return (t - t0) / (t1 - t0) * length if t1 != t0 else np.zeros_like(t)

    def _length(self) -> float:
        bbox = self.axis.axes.bbox
        return bbox.width if isinstance(self.axis, XAxis) else bbox.height

    def _label_extent(self, labels) -> float:
        horizontal = isinstance(self.axis, XAxis)
        key = "xtick.labelsize" if horizontal else "ytick.labelsize"
        size_pt = FontProperties(size=plt.rcParams[key]).get_size_in_points()
        px_per_pt = self.axis.axes.figure.dpi / 72.0
        if horizontal and not self._rotated:
            # 0.65 em bounds the widest digit glyphs of the default fonts; 1 em of gap
            chars = max((len(s) for s in labels), default=1)
            return (0.65 * chars + 1.0) * size_pt * px_per_pt
        # a line of text and its gap across the axis; slanted lines sit 1/sin 45deg further
        # apart along it
        return 1.7 * size_pt * px_per_pt * (math.sqrt(2) if horizontal else 1.0)


class _LogGridTicks(_GridTicks):
    """A log grid axis: the powers of ten inside the grid (every second or third when labels
    would overlap) and always its two ends; a grid within one decade gets `_GridTicks`."""

    def tick_values(self, vmin, vmax):
        first, last = (float(self._pos[0]), float(self._pos[-1])) if len(self._pos) else (0, 0)
        if self.axis is None or first <= 0 or last <= first:
            return super().tick_values(vmin, vmax)
        k = np.arange(math.ceil(math.log10(first) - 1e-9), math.floor(math.log10(last) + 1e-9)
                      + 1)
        if len(k) < 2:
            return super().tick_values(vmin, vmax)
        lo, hi = sorted((vmin, vmax))
        ends = np.array([first, last])
        need = self._label_extent([_fmt(v) for v in (first, last, *(10.0 ** k))])
        end_pix = self._pixels(ends, lo, hi)
        for stride in range(1, len(k) + 1):
            decades = 10.0 ** k[k % stride == 0]
            pix = self._pixels(decades, lo, hi)
            # a decade on (or too near) an end gives way to the end, which is a grid value
            decades = decades[np.min(np.abs(pix[:, None] - end_pix[None, :]), axis=1) >= need]
            ticks = np.sort(np.concatenate([ends, decades]))
            if np.all(np.diff(self._pixels(ticks, lo, hi)) >= need):
                return ticks
        return ends


def _style_axis(axis, grid: _GridAxis, rotated: bool = False) -> None:
    lookup = dict(zip(grid.positions.tolist(), grid.ticklabels, strict=True))
    positions = grid.positions

    def fmt(v, pos=None):
        if v in lookup:
            return lookup[v]
        if len(positions):
            i = int(np.argmin(np.abs(positions - v)))
            if np.isclose(positions[i], v, rtol=1e-9, atol=0):
                return grid.ticklabels[i]
        return _fmt(v)

    log = grid.log and len(positions) and positions[0] > 0
    axis.set_major_locator((_LogGridTicks if log else _GridTicks)(
        grid.positions, grid.ticklabels, every=grid.categorical, rotated=rotated))
    axis.set_major_formatter(ticker.FuncFormatter(fmt))
    # a log axis reads between its labels by the minor ticks (2..9 x 10^k), never labelled;
    # on a linear cell grid they add nothing
    axis.set_minor_locator(ticker.LogLocator(subs=np.arange(2, 10), numticks=1000) if log
                           else ticker.NullLocator())
    axis.set_minor_formatter(ticker.NullFormatter())
    axis.set_label_text(grid.name or "")


def _slant_names(ax, grid: _GridAxis) -> bool:
    """Slant the x labels of a categorical axis whose names do not fit side by side (long
    optimizer names: only the first and last would be labelled). Returns whether it did."""
    if not grid.categorical or grid.size < 2:
        return False
    size_pt = FontProperties(size=plt.rcParams["xtick.labelsize"]).get_size_in_points()
    chars = max(len(s) for s in grid.ticklabels)
    need = (0.65 * chars + 1.0) * size_pt * ax.figure.dpi / 72.0  # as _GridTicks measures
    if need * grid.size <= ax.bbox.width:
        return False
    # slanted, the longest name (0.55 em a letter on average) hangs this far below the map;
    # past 0.45 of the figure's height the map itself would be squeezed out (constrained
    # layout gives up), so such names stay level and are thinned instead
    drop = 0.55 * chars * size_pt * ax.figure.dpi / 72.0 * math.sin(math.radians(45))
    if drop > 0.45 * ax.figure.bbox.height:
        return False
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():  # new ticks copy the first tick's alignment
        label.set_horizontalalignment("right")
    return True


def _setup_grid_axes(ax, gx: _GridAxis, gy: _GridAxis) -> None:
    ax.set_xscale("log" if gx.log else "linear")
    ax.set_yscale("log" if gy.log else "linear")
    _style_axis(ax.xaxis, gx, rotated=_slant_names(ax, gx))
    _style_axis(ax.yaxis, gy)
    if gy.name is None:
        ax.yaxis.set_major_locator(ticker.NullLocator())
    ax.set_xlim(gx.edges[0], gx.edges[-1])
    ax.set_ylim(gy.edges[0], gy.edges[-1])


def _new_axes(ax, figsize=(7, 4)):
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


_BREAK_AFTER = re.compile(r"(?<=, )|(?<=: )|(?<= = )")


def fit_title(ax, text: str, **kw):
    """Set `text` as the axes' title, each line broken after a ", ", ": " or " = " wherever it
    would be wider than the axes: a long cell name or five label counts would otherwise run
    into the next panel's title or off the figure. Returns the title's Text."""
    size = FontProperties(size=kw.get("fontsize", plt.rcParams["axes.titlesize"]))
    room = ax.bbox.width * 72.0 / ax.figure.dpi  # points

    def width(s: str) -> float:
        return text_to_path.get_text_width_height_descent(s, size, ismath=False)[0]

    lines = []
    for line in text.split("\n"):
        pieces = [p for p in _BREAK_AFTER.split(line) if p]
        cur = pieces[0] if pieces else ""
        for piece in pieces[1:]:
            if width(cur + piece) <= room:
                cur += piece
            else:
                lines.append(cur.rstrip())
                cur = piece
        lines.append(cur)
    return ax.set_title("\n".join(lines), **kw)


def _no_data(ax, message="no runs to show"):
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.4")
    return ax


def _mesh(ax, gx, gy, z, cmap, norm):
    return ax.pcolormesh(gx.edges, gy.edges, z, cmap=cmap, norm=norm, shading="flat")


def _legend(ax, handles: list, labels: list[str]) -> None:
    if handles:
        ax.legend(handles, labels, **_LEGEND_KW)


def _append_legend(ax, handles: list) -> None:
    """Add entries to the axes' legend, keeping the entries already there."""
    old = ax.get_legend()
    prev_h = list(old.legend_handles) if old is not None else []
    prev_l = [t.get_text() for t in old.get_texts()] if old is not None else []
    _legend(ax, prev_h + handles, prev_l + [h.get_label() for h in handles])


def geometric(runs: pd.DataFrame, col: str | None) -> bool | None:
    """True for a positive geometric grid, float or integer (0.25, 0.5, 1, 2; widths 64, 128,
    ..., 1024): equal cells on a log axis, where the plots' own rule (log only past two
    decades) would draw it linear. None: their rule."""
    s = None if col in (None, "seed") else runs[col]  # seeds are names, not magnitudes
    if s is None or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None
    v = pd.to_numeric(s).to_numpy(dtype=float, na_value=np.nan)
    v = np.unique(v[np.isfinite(v)])
    if len(v) < 3 or v[0] <= 0:
        return None
    r = v[1:] / v[:-1]
    return True if np.allclose(r, r[0], rtol=1e-2) and r[0] > 1.5 else None


def _runs_per_cell_text(n: np.ndarray) -> str:
    n = n[n > 0]
    if len(n) == 0:
        return ""
    lo, hi = int(n.min()), int(n.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


# ----------------------------------------------------------------------------------------------
# heatmaps


def _label_name(aggregate: str) -> str | None:
    if not aggregate.startswith("p_"):
        return None
    name = aggregate[2:]
    name = "diverged" if name == "diverge" else name
    return name if name in LABELS else None


def label_heatmap(
    runs: pd.DataFrame,
    x: str = "learning_rate",
    y: str | None = "seed",
    *,
    ax=None,
    aggregate: str = "majority",
    log_x: bool | None = None,
    log_y: bool | None = None,
    weights: str | None = None,
    title: str | None = None,
    pooled: Sequence[str] = (),
):
    """Grid of cells coloured by training outcome.

    Runs that share a cell (axes other than ``x`` and ``y`` vary; name them in ``pooled`` for
    the title) are aggregated:

    * ``"majority"``: the most common label. Ties go to the label that comes later in
      ``LABELS`` (so ``diverged`` wins any tie it is part of: a cell only looks safe when most of
      its runs are). A cell whose runs do not all share its label gets a dot (gid
      ``disagree``), so a minority outcome cannot vanish. The legend lists the labels that
      colour at least one cell, in ``LABELS`` order, and the dot when drawn. QuadMesh values
      are indices into ``LABELS``; empty cells are masked.
    * ``"p_diverge"`` (or ``"p_<label>"`` for any label): the fraction of runs with that label,
      drawn on a 0..1 colour scale with a colorbar.

    ``y=None`` draws a single strip over ``x``. Runs with a missing or unknown label are ignored.
    ``weights`` names a column holding how many runs each row stands for, so an aggregated
    table (one row per cell and label, e.g. ``Results.cell_counts``) draws the same map as the
    runs it counts; by default every row is one run.
    """
    _require(runs, ["label"])
    gx, gy, cell = _cells(runs, x, y, log_x, log_y)
    ax = _new_axes(ax)
    _setup_grid_axes(ax, gx, gy)
    counts = _label_counts(runs, cell, gx.size * gy.size, weights)
    n = counts.sum(axis=1)
    if n.sum() == 0:
        return _no_data(ax)
    per_cell = _runs_per_cell_text(n)
    shape = (gy.size, gx.size)
    if aggregate == "majority":
        winner = len(LABELS) - 1 - np.argmax(counts[:, ::-1], axis=1)
        z = np.ma.masked_array(winner, mask=n == 0).reshape(shape)
        cmap = mcolors.ListedColormap([LABEL_COLORS[lab] for lab in LABELS]).with_extremes(
            bad="none"
        )
        norm = mcolors.BoundaryNorm(np.arange(len(LABELS) + 1) - 0.5, len(LABELS))
        _mesh(ax, gx, gy, z, cmap, norm)
        present = [lab for i, lab in enumerate(LABELS) if np.any(winner[n > 0] == i)]
        handles = [Patch(facecolor=LABEL_COLORS[lab], label=lab) for lab in present]
        split = (n > 0) & (counts.max(axis=1) < n)
        if split.any():
            iy, ix = np.divmod(np.flatnonzero(split), gx.size)
            ax.plot(gx.positions[ix], gy.positions[iy], ls="none", marker="o", ms=3,
                    mfc="white", mec="black", mew=0.6, gid="disagree")
            handles.append(Line2D([], [], ls="none", marker="o", ms=4, mfc="white",
                                  mec="black", mew=0.6, label="runs disagree"))
        _legend(ax, handles, [h.get_label() for h in handles])
        default_title = ""
        if n.max() > 1:
            default_title = f"majority label of {per_cell} runs per cell" + (
                f", pooled over {', '.join(pooled)}" if pooled else "")
    else:
        name = _label_name(aggregate)
        if name is None:
            raise InputError(
                f"aggregate must be 'majority', 'p_diverge' or 'p_<label>' with a label in "
                f"{LABELS}; got {aggregate!r}"
            )
        k = LABELS.index(name)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = counts[:, k] / n
        z = np.ma.masked_array(frac, mask=n == 0).reshape(shape)
        cmap = mcolors.LinearSegmentedColormap.from_list(
            f"p_{name}", ["#F7F7F7", LABEL_COLORS[name]]
        ).with_extremes(bad="none")
        mesh = _mesh(ax, gx, gy, z, cmap, mcolors.Normalize(0.0, 1.0))
        ax.get_figure().colorbar(mesh, ax=ax, label=f"P({name})")
        runs_word = "run" if per_cell == "1" else "runs"
        default_title = f"fraction {name} of {per_cell} {runs_word} per cell" + (
            f", pooled over {', '.join(pooled)}" if pooled else "")
    if title is None:
        fit_title(ax, default_title)
    else:
        ax.set_title(title)
    return ax


def _metric_values(runs: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "peak_ratio":
        _require(runs, ["max_loss", "initial_loss"])
        num, den = runs["max_loss"], runs["initial_loss"]
    elif metric == "final_ratio":
        _require(runs, ["final_loss", "initial_loss"])
        num, den = runs["final_loss"], runs["initial_loss"]
    else:
        if metric not in runs.columns:
            raise InputError(
                f"unknown metric {metric!r}: not a column of runs ({list(runs.columns)}) nor a "
                f"derived metric ({list(DERIVED_METRICS)})"
            )
        col = runs[metric]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise InputError(f"metric {metric!r} is not numeric (dtype {col.dtype})")
        v = pd.to_numeric(col).to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isnan(v), np.inf, v) if metric in _LOSS_METRICS else v
    a = pd.to_numeric(num).to_numpy(dtype=float, na_value=np.nan)
    b = pd.to_numeric(den).to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = a / b
    return np.where(np.isnan(v), np.inf, v)


_AGGS: Mapping[str, Callable[[np.ndarray], float]] = MappingProxyType(
    {
        "median": np.median,
        "mean": np.mean,
        "min": np.min,
        "max": np.max,
        "nanmedian": np.nanmedian,
        "nanmean": np.nanmean,
        "nanmin": np.nanmin,
        "nanmax": np.nanmax,
    }
)


def _aggregate(values: np.ndarray, cell: np.ndarray, n_cells: int, func) -> np.ndarray:
    out = np.full(n_cells, np.nan)
    ok = cell >= 0
    order = np.argsort(cell[ok], kind="stable")
    c, v = cell[ok][order], values[ok][order]
    ids, starts = np.unique(c, return_index=True)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells, inf - inf
        for i, chunk in zip(ids, np.split(v, starts[1:]), strict=True):
            out[i] = float(func(chunk))
    return out


def _make_norm(norm, finite: np.ndarray):
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if isinstance(norm, mcolors.Normalize):
        if norm.vmin is None or norm.vmax is None:
            # autoscaling on data with inf would give an infinite vmax
            norm.autoscale_None(finite if finite.size else np.array([0.0, 1.0]))
        return norm
    positive = finite[finite > 0]
    if norm == "auto":
        use_log = finite.size > 0 and lo > 0 and hi / lo > 100
    elif norm in ("log", "linear"):
        use_log = norm == "log"
    else:
        raise InputError(f"norm must be 'auto', 'log', 'linear' or a Normalize; got {norm!r}")
    if use_log:
        if positive.size == 0:
            return mcolors.LogNorm(1.0, 10.0)
        lo, hi = float(positive.min()), float(positive.max())
        if lo == hi:
            lo, hi = lo / math.sqrt(10), hi * math.sqrt(10)
        return mcolors.LogNorm(lo, hi)
    if lo == hi:
        pad = 0.1 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - pad, hi + pad
    return mcolors.Normalize(lo, hi)


def metric_heatmap(
    runs: pd.DataFrame,
    metric: str,
    x: str = "learning_rate",
    y: str | None = "seed",
    *,
    ax=None,
    agg: str | Callable[[np.ndarray], float] = "median",
    norm: str | mcolors.Normalize = "auto",
    cmap: str | mcolors.Colormap | None = None,
    log_x: bool | None = None,
    log_y: bool | None = None,
    title: str | None = None,
    skip_diverged: bool = False,
):
    """Continuous heatmap of a numeric column, or a derived metric from ``DERIVED_METRICS``.

    ``agg`` combines the runs of one cell: a name from ``median, mean, min, max`` (a NaN in the
    cell makes the cell NaN: NaN means "never" or "undefined" and must not be averaged away),
    their ``nan*`` variants (which skip NaN), or a callable on a 1-D float array. For loss
    metrics (``*_loss``, ``peak_ratio``, ``final_ratio``) NaN is first read as +inf, since only a
    diverged run has a NaN loss.

    ``norm="auto"`` uses a LogNorm when the finite values are positive and span more than two
    decades. The colour limits come from finite values only; +inf cells get a distinct "over"
    colour (shown as the colorbar's extension triangle) and NaN cells a light grey "bad" colour.
    In the QuadMesh array +inf/-inf cells hold finite stand-ins just above vmax / below vmin
    (pcolormesh would mask inf) and NaN cells are masked. A Colormap object passed as ``cmap``
    is used as is (its own extremes); a name or None gets the extremes above.

    ``skip_diverged``: runs labelled ``diverged`` are left out of every cell's aggregate (for a
    metric such as ``spike_ratio``, whose value for a run that blew up leaves the blow-up out);
    a cell whose runs all diverged is drawn in the diverged label's colour, hatched (a
    PolyCollection with gid ``all-diverged``), with the legend entry "all runs diverged".
    """
    values = _metric_values(runs, metric)
    if isinstance(agg, str):
        if agg not in _AGGS:
            raise InputError(f"agg must be one of {list(_AGGS)} or a callable; got {agg!r}")
        func, agg_name = _AGGS[agg], agg
    else:
        func, agg_name = agg, getattr(agg, "__name__", "agg")
    gx, gy, cell = _cells(runs, x, y, log_x, log_y)
    ax = _new_axes(ax)
    _setup_grid_axes(ax, gx, gy)
    n_cells = gx.size * gy.size
    if not np.any(cell >= 0):
        return _no_data(ax)
    all_diverged = np.zeros(n_cells, dtype=bool)
    if skip_diverged:
        _require(runs, ["label"])
        n_all = np.bincount(cell[cell >= 0], minlength=n_cells)
        cell = np.where((runs["label"] == "diverged").to_numpy(dtype=bool, na_value=False),
                        -1, cell)
        all_diverged = (n_all > 0) & (np.bincount(cell[cell >= 0], minlength=n_cells) == 0)
    z = (_aggregate(values, cell, n_cells, func) if np.any(cell >= 0)
         else np.full(n_cells, np.nan))
    n = np.bincount(cell[cell >= 0], minlength=n_cells)
    finite = z[np.isfinite(z)]
    the_norm = _make_norm(norm, finite)
    if isinstance(cmap, mcolors.Colormap):
        the_cmap = cmap
    else:
        the_cmap = matplotlib.colormaps[cmap or "viridis"].with_extremes(
            bad=_NAN_COLOR, over=_INF_COLOR, under=_NEGINF_COLOR
        )
    # pcolormesh masks inf, which would paint it as NaN; finite stand-ins just outside the
    # colour limits get the "over"/"under" colours instead
    if isinstance(the_norm, mcolors.LogNorm):
        over, under = the_norm.vmax * 10.0, the_norm.vmin / 10.0
    else:
        span = max(the_norm.vmax - the_norm.vmin, 1.0)
        over, under = the_norm.vmax + span, the_norm.vmin - span
    has_over, has_neg_inf = bool(np.any(np.isposinf(z))), bool(np.any(np.isneginf(z)))
    z = np.where(np.isposinf(z), over, np.where(np.isneginf(z), under, z))
    if isinstance(the_norm, mcolors.LogNorm):
        z = np.where(z <= 0, under, z)  # LogNorm would mask these as if they were NaN
    masked = np.ma.masked_invalid(z)
    mesh = _mesh(ax, gx, gy, masked.reshape(gy.size, gx.size), the_cmap, the_norm)
    has_under = has_neg_inf or bool(np.any(masked.compressed() < the_norm.vmin))
    extend = {(False, False): "neither", (True, False): "max", (False, True): "min"}.get(
        (has_over, has_under), "both"
    )
    label = metric if n.max() <= 1 else f"{metric} ({agg_name} per cell)"
    if has_over:
        label += ";  ▲ = inf"
    ax.get_figure().colorbar(mesh, ax=ax, extend=extend, label=label)
    if all_diverged.any():
        _hatch_cells(ax, gx, gy, np.flatnonzero(all_diverged))
    if title is not None:
        ax.set_title(title)
    elif np.any(np.isnan(z[n > 0])):
        ax.set_title("grey cells: no value (NaN)", fontsize="small", color="0.35")
    return ax


_DIVERGED_HATCH = dict(facecolor=LABEL_COLORS["diverged"], edgecolor="white", hatch="///")


def _hatch_cells(ax, gx: _GridAxis, gy: _GridAxis, cells: np.ndarray) -> None:
    """Cover the given cells (flat indices, row-major over y then x) with the diverged colour,
    hatched, and add "all runs diverged" to the legend."""
    iy, ix = np.divmod(cells, gx.size)
    x0, x1, y0, y1 = gx.edges[ix], gx.edges[ix + 1], gy.edges[iy], gy.edges[iy + 1]
    verts = np.stack([np.column_stack(p) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))],
                     axis=1)
    ax.add_collection(PolyCollection(verts, linewidths=0, gid="all-diverged", zorder=2,
                                     **_DIVERGED_HATCH), autolim=False)
    _append_legend(ax, [Patch(linewidth=0, label="all runs diverged", **_DIVERGED_HATCH)])


def _transformed(grid: _GridAxis, ax_log: bool) -> np.ndarray:
    return np.log10(grid.positions) if ax_log else grid.positions


def boundary_contour(
    runs: pd.DataFrame,
    x: str = "learning_rate",
    y: str | None = "seed",
    *,
    ax=None,
    level: float = 0.5,
    log_x: bool | None = None,
    log_y: bool | None = None,
    weights: str | None = None,
    color: str = "white",
):
    """Draw the divergence boundary: the contour of P(diverged) at ``level``.

    Meant to go over :func:`label_heatmap` or :func:`metric_heatmap` on the same ``x``/``y``.
    The contour is interpolated between cell centres in the axes' own coordinates (log10 on log
    axes). With a single row or column it becomes a line across the strip at each crossing.
    Nothing is drawn, and no error raised, when P never crosses ``level`` (e.g. constant P).
    The line gets a legend entry appended to the axes' legend. ``weights``: as in
    :func:`label_heatmap`.
    """
    _require(runs, ["label"])
    gx, gy, cell = _cells(runs, x, y, log_x, log_y)
    if ax is None:
        ax = _new_axes(None)
        _setup_grid_axes(ax, gx, gy)
    lx = ax.get_xscale() == "log" if log_x is None else bool(log_x)
    ly = ax.get_yscale() == "log" if log_y is None else bool(log_y)
    lx = lx and gx.size > 0 and gx.positions[0] > 0
    ly = ly and gy.size > 0 and gy.positions[0] > 0
    counts = _label_counts(runs, cell, gx.size * gy.size, weights)
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts[:, LABELS.index("diverged")] / n
    p = np.ma.masked_array(p, mask=n == 0).reshape(gy.size, gx.size)
    tx, ty = _transformed(gx, lx), _transformed(gy, ly)
    lines: list[np.ndarray] = []
    if gx.size >= 2 and gy.size >= 2 and p.count() >= 2:
        gen = contourpy.contour_generator(x=tx, y=ty, z=p, line_type="Separate")
        lines = [seg for seg in gen.lines(level) if len(seg) >= 2]
    elif gx.size >= 2 or gy.size >= 2:
        along_x = gx.size >= 2
        t = tx if along_x else ty
        v = p[0, :] if along_x else p[:, 0]
        ext = gy.edges if along_x else gx.edges
        ext = np.log10(ext) if (ly if along_x else lx) else ext
        for i in range(len(t) - 1):
            a, b = v[i], v[i + 1]
            if np.ma.is_masked(a) or np.ma.is_masked(b) or a == b:
                continue
            if min(a, b) <= level <= max(a, b):
                c = t[i] + (level - a) / (b - a) * (t[i + 1] - t[i])
                pts = [[c, ext[0]], [c, ext[-1]]] if along_x else [[ext[0], c], [ext[-1], c]]
                lines.append(np.array(pts))
    label = f"P(diverged) = {_fmt(level)}"
    drawn = []
    for seg in lines:
        xs = 10.0 ** seg[:, 0] if lx else seg[:, 0]
        ys = 10.0 ** seg[:, 1] if ly else seg[:, 1]
        (line,) = ax.plot(
            xs,
            ys,
            color=color,
            lw=2.0,
            label=label if not drawn else "_nolegend_",
            path_effects=[patheffects.withStroke(linewidth=4.0, foreground=_LINE_COLOR)],
            zorder=3,
        )
        drawn.append(line)
    if drawn:
        _append_legend(ax, [drawn[0]])
    return ax


def threshold_lines(
    ax,
    *,
    predicted_lr: float | None = None,
    critical_lr: float | None = None,
    axis: str = "x",
):
    """Mark stability thresholds on a learning-rate axis.

    ``predicted_lr`` = 2/lambda (dashed) also adds 4/lambda = 2 * predicted_lr (dotted); the
    measured ``critical_lr`` is solid. None, non-finite, or (on a log axis) non-positive values
    are skipped, and so is a value outside the axis' limits when they are fixed (a heatmap's
    are): a line out of view would only be a legend entry. Each line drawn gets a legend entry
    appended to the axes' legend and the gid ``threshold-2/λ``, ``threshold-4/λ`` or
    ``threshold-critical``.
    """
    if axis not in ("x", "y"):
        raise InputError(f"axis must be 'x' or 'y'; got {axis!r}")
    log = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    fixed = not (ax.get_autoscalex_on() if axis == "x" else ax.get_autoscaley_on())
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())

    def usable(v):
        return v is not None and math.isfinite(float(v)) and (float(v) > 0 or not log)

    specs = []
    if usable(predicted_lr):
        p = float(predicted_lr)
        specs += [(p, "--", f"2/λ = {_fmt(p)}", "threshold-2/λ"),
                  (2 * p, ":", f"4/λ = {_fmt(2 * p)}", "threshold-4/λ")]
    if usable(critical_lr):
        c = float(critical_lr)
        specs.append((c, "-", f"critical lr = {_fmt(c)}", "threshold-critical"))
    draw = ax.axvline if axis == "x" else ax.axhline
    handles = [
        draw(v, color=_LINE_COLOR, linestyle=ls, lw=1.6, label=label, path_effects=_HALO, zorder=4,
             gid=gid)
        for v, ls, label, gid in specs
        if not fixed or lo <= v <= hi
    ]
    if handles:
        _append_legend(ax, handles)
    return ax


# ----------------------------------------------------------------------------------------------
# loss curves


@dataclass(frozen=True)
class _Curve:
    run_id: int
    label: str | None
    steps: np.ndarray
    values: np.ndarray  # NaN where not plottable (non-finite, or <= 0 on a log axis)
    diverged: bool
    exit_index: int | None  # first index that is non-finite; None if all finite


def _labels_of(runs: pd.DataFrame | None) -> dict:
    if runs is None or "label" not in runs.columns or "run_id" not in runs.columns:
        return {}
    return dict(zip(runs["run_id"].tolist(), runs["label"].tolist(), strict=True))


def _subsample(ids: np.ndarray, labels: dict, k: int) -> np.ndarray:
    """At most ``k`` ids, evenly spread over each label's runs so rare outcomes stay visible."""
    ids = np.sort(ids)
    keys = np.array([labels.get(i) if labels.get(i) in LABELS else "" for i in ids.tolist()])
    groups = [ids[keys == g] for g in (*LABELS, "") if np.any(keys == g)]
    sizes = np.array([len(g) for g in groups])
    quota = np.maximum(1, np.floor(k * sizes / sizes.sum()).astype(int))
    while quota.sum() > max(k, len(groups)):
        quota[np.argmax(quota)] -= 1
    picked = [
        g[np.unique(np.linspace(0, len(g) - 1, q).round().astype(int))]
        for g, q in zip(groups, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def _prepare(curves, runs, run_ids, metric, log_y, max_runs) -> list[_Curve]:
    _require(curves, ["run_id", "step", metric], what="curves")
    labels = _labels_of(runs)
    if run_ids is not None:
        ids = np.unique(np.asarray(run_ids))
    elif runs is not None:
        _require(runs, ["run_id"])
        ids = np.unique(runs["run_id"].to_numpy())
    else:
        ids = np.unique(curves["run_id"].to_numpy())
    if max_runs is not None and len(ids) > max_runs:
        ids = _subsample(ids, labels, max_runs)
    sub = curves.loc[curves["run_id"].isin(ids), ["run_id", "step", metric]]
    sub = sub.sort_values(["run_id", "step"], kind="stable")
    out = []
    for rid, g in sub.groupby("run_id", sort=True):
        steps = pd.to_numeric(g["step"]).to_numpy(dtype=float, na_value=np.nan)
        raw = pd.to_numeric(g[metric]).to_numpy(dtype=float, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(raw))
        plottable = np.isfinite(raw) & ((raw > 0) if log_y else True)
        label = labels.get(rid)
        out.append(
            _Curve(
                run_id=rid,
                label=label if label in LABELS else None,
                steps=steps,
                values=np.where(plottable, raw, np.nan),
                diverged=label == "diverged" or len(bad) > 0,
                exit_index=int(bad[0]) if len(bad) else None,
            )
        )
    return out


def _limits(prepared: Sequence[_Curve], log_y: bool) -> tuple[float, float] | None:
    """y-limits from the runs that did not diverge, so a blow-up leaves through the top."""
    calm = [c.values for c in prepared if not c.diverged]
    every = [c.values for c in prepared]
    if not every:
        return None
    all_v = np.concatenate(every)
    all_v = all_v[np.isfinite(all_v)]
    if all_v.size == 0:
        return None
    if calm and np.isfinite(np.concatenate(calm)).any():
        top_data = float(np.nanmax(np.concatenate(calm)))
        headroom = 3.0
    else:
        # everything diverged: show the first three decades of the blow-up
        starts = [
            c.values[np.isfinite(c.values)][0] for c in prepared if np.isfinite(c.values).any()
        ]
        top_data, headroom = float(max(starts)), 1e3
    lo = float(all_v.min())
    if log_y:
        lo, hi = lo / 1.5, max(top_data * headroom, lo * 10)
        if math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:
            # fewer than two powers of ten inside: widen to whole decades so the log axis gets
            # two labelled ticks instead of a few cryptic minor labels
            lo, hi = 10.0 ** math.floor(math.log10(lo)), 10.0 ** math.ceil(math.log10(hi))
        return lo, hi
    top = top_data + (0.05 * (top_data - lo) if headroom == 3.0 else 2 * abs(top_data))
    top = top if top > lo else lo + 1.0
    return lo - 0.05 * (top - lo), top


_MARK_BELOW_TOP = 0.04  # exit markers sit this fraction of the axis height below its top


def _exit_point(c: _Curve, lims: tuple[float, float], log_y: bool) -> tuple[float, float] | None:
    """Where a run leaves the plot, or None when it never does: where it crosses the top edge,
    else, when its loss became non-finite, its last finite point. The marker's y is kept
    `_MARK_BELOW_TOP` of the axis height below the top, so a marker drawn there stays inside
    the axes (clear of the title); the step is where the line crosses that height."""
    v, s = c.values, c.steps
    finite = np.isfinite(v)
    f = np.log10 if log_y else (lambda a: a)
    lo, top = lims
    level = f(top) - _MARK_BELOW_TOP * (f(top) - f(lo))
    mark = 10.0**level if log_y else level
    stop = len(v) if c.exit_index is None else c.exit_index
    above = np.flatnonzero(finite[:stop] & (v[:stop] > top))
    if len(above):
        k = int(above[0])
        if k == 0 or not np.isfinite(v[k - 1]):
            return s[k], mark
        w = np.clip((level - f(v[k - 1])) / (f(v[k]) - f(v[k - 1])), 0.0, 1.0)
        return s[k - 1] + w * (s[k] - s[k - 1]), mark
    if c.exit_index is None or not finite[:stop].any():
        return None  # finite and in range throughout: nothing left the plot
    last = int(np.flatnonzero(finite[:stop])[-1])
    return s[last], min(v[last], mark)


def _draw_curves(ax, prepared, lims, log_y, metric, linewidth=None, alpha=None):
    """Draw runs; return (labels present, whether any divergence marker was drawn)."""
    if log_y:
        ax.set_yscale("log", nonpositive="mask")
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        ax.set_yscale("linear")
    n = max(len(prepared), 1)
    lw = linewidth if linewidth is not None else (1.2 if n <= 20 else 0.7)
    a = alpha if alpha is not None else float(np.clip(4 / math.sqrt(n), 0.15, 0.9))
    rank = {lab: i for i, lab in enumerate(LABELS)}
    # later labels on top, so the rare bad outcomes are not buried under converged runs
    ordered = sorted(prepared, key=lambda c: rank.get(c.label, -1))
    present, marked = set(), False
    for c in ordered:
        kw = {"color": LABEL_COLORS[c.label]} if c.label else {}
        (line,) = ax.plot(c.steps, c.values, lw=lw, alpha=a, **kw)
        line.set_gid(f"run-{c.run_id}")
        present.add(c.label)
        if c.diverged and lims is not None:
            pt = _exit_point(c, lims, log_y)
            if pt is not None:
                ax.plot(
                    [pt[0]],
                    [pt[1]],
                    marker="x",
                    ms=7,
                    mew=1.8,
                    ls="none",
                    color=line.get_color(),
                    zorder=5,
                    gid=f"diverged-{c.run_id}",
                )
                marked = True
    if lims is not None:
        ax.set_ylim(*lims)
    # steps are whole numbers: a run stopped after 1 step would otherwise get ticks at 0.2, 0.4.
    # Integer ticks with the default 2.5 x 10^k spacing dropped give 0, 4, ..., 28 on 30 steps;
    # spacings 1, 2, 5 x 10^k give 0, 5, ..., 30
    ax.xaxis.set_major_locator(ticker.MaxNLocator("auto", integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    return present, marked


def _curve_legend_handles(present, marked) -> list:
    handles = [
        Line2D([], [], color=LABEL_COLORS[lab], lw=2, label=lab) for lab in LABELS if lab in present
    ]
    if marked:
        handles.append(
            Line2D([], [], color="0.2", marker="x", ls="none", mew=1.8, label="left the plot")
        )
    return handles


def loss_curves(
    curves: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    run_ids: Sequence[int] | None = None,
    *,
    ax=None,
    log_y: bool = True,
    max_runs: int | None = 200,
    metric: str = "loss",
    legend: bool = True,
    linewidth: float | None = None,
    alpha: float | None = None,
):
    """One line per run, coloured by the run's label (looked up in ``runs``).

    Runs drawn: ``run_ids`` if given, else every run in ``runs``, else every run in ``curves``;
    above ``max_runs`` an evenly spread subset per label is drawn (every label keeps at least one
    run). The y-range is set by the runs that did not diverge, so a diverged run leaves through
    the top; an 'x' just below the top edge marks where it left, or, when its loss jumped to
    inf/NaN without crossing the top, sits on its last finite point. A diverged run that stayed
    finite and inside the y-range (one that ended above its initial loss) gets no 'x'. Each
    run's Line2D has gid ``run-<run_id>``, each marker ``diverged-<run_id>``.
    """
    ax = _new_axes(ax)
    prepared = _prepare(curves, runs, run_ids, metric, log_y, max_runs)
    if not prepared:
        return _no_data(ax)
    present, marked = _draw_curves(
        ax, prepared, _limits(prepared, log_y), log_y, metric, linewidth, alpha
    )
    if legend:
        handles = _curve_legend_handles(present, marked)
        _legend(ax, handles, [h.get_label() for h in handles])
    return ax


def _match(runs: pd.DataFrame, cell: Mapping) -> np.ndarray:
    mask = np.ones(len(runs), dtype=bool)
    for key, value in cell.items():
        _require(runs, [key])
        col = runs[key]
        if pd.api.types.is_numeric_dtype(col) and isinstance(value, (int, float, np.number)):
            v = pd.to_numeric(col).to_numpy(dtype=float, na_value=np.nan)
            mask &= np.isclose(v, float(value), rtol=1e-5, atol=0.0)
        else:
            mask &= (col == value).to_numpy(dtype=bool, na_value=False)
    return mask


def _count_text(labels: pd.Series) -> str:
    total = len(labels)
    counts = labels.value_counts()
    # a categorical column counts its unused categories too: only labels that occur are named
    parts = [f"{lab} {int(counts[lab])}/{total}" for lab in LABELS
             if lab in counts.index and counts[lab] > 0]
    return ", ".join(parts) if parts else f"{total} runs"


def _cell_title(cell: Mapping) -> str:
    def one(key, value):
        name = "lr" if key == "learning_rate" else key
        shown = _fmt(value) if isinstance(value, (int, float, np.number)) else value
        return f"{name} = {shown}"

    return ", ".join(one(k, v) for k, v in cell.items())


def _axes_for(n: int, axes, ncols: int | None, panel=(3.4, 2.8)):
    if axes is not None:
        flat = np.asarray(axes, dtype=object).ravel()
        if len(flat) < n:
            raise InputError(f"need {n} axes, got {len(flat)}")
        return flat[:n], False
    if ncols is None:
        ncols = n if n <= 3 else math.ceil(math.sqrt(n))
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    # no sharex/sharey: shared y-limits are set explicitly, and every panel keeps its tick
    # labels (matplotlib would hide them on panels with no neighbour below)
    _, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(panel[0] * ncols + 1.6, panel[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    flat = grid.ravel()
    for extra in flat[n:]:
        extra.remove()
    return flat[:n], True


def curves_grid(
    curves: pd.DataFrame,
    runs: pd.DataFrame,
    cells: Sequence[Mapping],
    *,
    axes=None,
    ncols: int | None = None,
    log_y: bool = True,
    sharex: bool = True,
    sharey: bool = True,
    max_runs: int | None = 200,
    metric: str = "loss",
):
    """Small multiples: one panel per cell (dict of axis values, matched with np.isclose),
    showing every run in it (e.g. all seeds), titled with the cell and its label counts.

    With ``sharex``/``sharey`` all panels get the same step / loss range (set explicitly, so
    every panel keeps its tick labels) and compare directly. Returns the 1-D
    array of axes in the order of ``cells``. ``ncols=None`` picks up to 3 columns for up to 3
    panels, else a near-square grid. The legend is one figure legend when this function
    made the figure, otherwise it goes on the last axes.
    """
    if len(cells) == 0:
        raise InputError("cells is empty: give at least one dict of axis values")
    flat, own = _axes_for(len(cells), axes, ncols)
    subsets = [runs.loc[_match(runs, cell)] for cell in cells]
    prepared = [
        _prepare(curves, sub, None, metric, log_y, max_runs) if len(sub) else [] for sub in subsets
    ]
    # one y-range from every panel's runs together, by loss_curves' rule (set by the runs that
    # did not diverge): the union of each panel's own range let a panel whose runs all blew up
    # widen every panel to three decades above its start
    shared = _limits([c for p in prepared for c in p], log_y) if sharey else None
    steps = [c.steps for p in prepared for c in p if len(c.steps)]
    xlim = (np.nanmin(np.concatenate(steps)), np.nanmax(np.concatenate(steps))) if steps else None
    present, marked = set(), False
    for ax, cell, sub, prep in zip(flat, cells, subsets, prepared, strict=True):
        if not prep:
            _no_data(ax, "no runs in this cell")
            fit_title(ax, _cell_title(cell), fontsize="medium")
            continue
        lims = shared if sharey else _limits(prep, log_y)
        p, m = _draw_curves(ax, prep, lims, log_y, metric)
        if sharex and xlim is not None and xlim[1] > xlim[0]:
            ax.set_xlim(*xlim)
        present |= p
        marked |= m
        counts = _count_text(sub["label"]) if "label" in sub.columns else f"{len(sub)} runs"
        fit_title(ax, f"{_cell_title(cell)}\n{counts}", fontsize="medium")
    handles = _curve_legend_handles(present, marked)
    if handles:
        if own:
            flat[0].get_figure().legend(
                handles=handles, loc="outside right upper", frameon=False, fontsize="small"
            )
        else:
            _legend(flat[-1], handles, [h.get_label() for h in handles])
    return flat


def _median_curve(prepared: Sequence[_Curve], raw_curves: pd.DataFrame, metric: str):
    """Per-step median over runs, counting a run that has blown up as +inf from then on."""
    if not prepared:
        return None, None
    ids = [c.run_id for c in prepared]
    sub = raw_curves.loc[raw_curves["run_id"].isin(ids), ["run_id", "step", metric]]
    # a NaN row after divergence means "frozen at a blown-up loss" (+inf); a missing row means
    # the run was not logged at that step and is left out of that step's median
    sub = sub.drop_duplicates(["run_id", "step"]).assign(_logged=True)
    wide = sub.pivot(index="step", columns="run_id", values=[metric, "_logged"])
    vals = wide[metric].reindex(columns=ids).to_numpy(dtype=float, na_value=np.nan)
    logged = wide["_logged"].reindex(columns=ids).notna().to_numpy()
    vals = np.where(logged & ~np.isfinite(vals), np.inf, vals)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(vals, axis=1)
    med = np.where(np.isfinite(med), med, np.nan)
    return wide.index.to_numpy(dtype=float), med


def seed_question_figure(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    lrs: Sequence[float] = (0.01, 1.0),
    axes=None,
    lr_column: str = "learning_rate",
    log_y: bool = True,
    metric: str = "loss",
):
    """Does the seed matter? Loss vs step at each lr in ``lrs``, side by side: every run at that
    lr (all seeds, and any other axis) as a thin line coloured by label, the per-step median in
    bold black (a diverged run counts as +inf, so the median stops once half have blown up).
    Titles give the lr and the label counts, e.g. ``lr = 1: catapult 16/16``. Learning rates are
    matched with ``np.isclose(rtol=1e-5, atol=0)``; an lr with no runs gets an empty panel
    naming the nearest lr in the grid. Returns the 1-D array of axes.
    """
    _require(runs, [lr_column, "run_id"])
    flat, _ = _axes_for(len(lrs), axes, ncols=len(lrs), panel=(4.4, 3.6))
    grid_lrs = np.unique(pd.to_numeric(runs[lr_column]).to_numpy(dtype=float, na_value=np.nan))
    grid_lrs = grid_lrs[np.isfinite(grid_lrs)]
    present, marked = set(), False
    for ax, lr in zip(flat, lrs, strict=True):
        sub = runs.loc[_match(runs, {lr_column: lr})]
        prep = _prepare(curves, sub, None, metric, log_y, None) if len(sub) else []
        if not prep:
            ax.set_title(f"lr = {_fmt(lr)}: no runs", fontsize="medium")
            hint = ""
            if grid_lrs.size:
                nearest = (
                    grid_lrs[np.argmin(np.abs(np.log(grid_lrs / lr)))]
                    if lr > 0 and (grid_lrs > 0).all()
                    else grid_lrs[np.argmin(np.abs(grid_lrs - lr))]
                )
                hint = f"\n(nearest lr in the grid: {_fmt(nearest)})"
            _no_data(ax, f"no runs at lr = {_fmt(lr)}{hint}")
            continue
        p, m = _draw_curves(
            ax,
            prep,
            _limits(prep, log_y),
            log_y,
            metric,
            linewidth=0.8,
            alpha=0.55 if len(prep) > 4 else 0.8,
        )
        present |= p
        marked |= m
        steps, med = _median_curve(prep, curves, metric)
        if steps is not None:
            ax.plot(steps, med, color="black", lw=2.6, label="median", gid="median", zorder=6)
        counts = _count_text(sub["label"]) if "label" in sub.columns else f"{len(sub)} runs"
        fit_title(ax, f"lr = {_fmt(lr)}: {counts}", fontsize="medium")
    handles = _curve_legend_handles(present, marked)
    if present:
        handles.insert(
            len([h for h in handles if h.get_label() in LABELS]),
            Line2D([], [], color="black", lw=2.6, label="median"),
        )
        _legend(flat[-1], handles, [h.get_label() for h in handles])
    return flat
