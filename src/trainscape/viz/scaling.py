"""Figures of width scaling: the coordinate check (the `mup` package's figure) and a fitted
power law of a learning rate against width. Each takes its axes (None: a new figure) and
returns them; only the command line and the report save files."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from .plots import _fmt, _GridTicks

_COORD_LABEL = {"mean_abs": "mean |activation|",
                "mean_abs_change": "mean |activation - initial|"}


class _PlainLog(ticker.LogFormatter):
    """matplotlib's choice of log ticks to label, written as plain numbers (0.3, 40, 1e-3)
    instead of 3 x 10^-1 beside 10^1."""

    def _num_to_string(self, x, vmin, vmax):
        return _fmt(x)


def _label_axes(ax, shapes) -> None:
    """x: a tick at each shape (width 4, 8, 16 or depth 1, 2, 3; base-2 ticks would show
    2^k only, leaving depth 3 unlabelled), as many as fit; y: plain numbers."""
    shapes = np.unique(np.asarray(shapes, dtype=np.float64))
    ax.xaxis.set_major_locator(_GridTicks(shapes, [_fmt(v) for v in shapes], every=True))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt(v)))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(_PlainLog())
    ax.yaxis.set_minor_formatter(_PlainLog())


def plot_coord_check(table, of: str = "mean_abs", axes=None):
    """One panel per layer: `of` (median over seeds, the band their range) against width on
    log axes, a line per step. `axes`: a sequence of at least as many axes as layers."""
    layers = sorted(table["layer"].unique())
    if axes is None:
        _, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.0),
                               squeeze=False, constrained_layout=True)
        axes = axes[0]
    steps = sorted(table["step"].unique())
    cmap = plt.get_cmap("viridis")
    last = max(table["layer"])
    for ax, layer in zip(axes, layers, strict=False):
        sel = table[table["layer"] == layer]
        for k, step in enumerate(steps):
            if of == "mean_abs_change" and step == 0:
                continue  # no change at initialization
            g = sel[sel["step"] == step].groupby("width")[of]
            med, lo, hi = g.median(), g.min(), g.max()
            color = cmap(k / max(1, len(steps) - 1))
            ax.plot(med.index, med.to_numpy(), "o-", ms=3, color=color, label=f"step {step}")
            ax.fill_between(med.index, lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        _label_axes(ax, sel["width"].to_numpy())
        ax.set_title("output" if layer == last else f"hidden layer {layer}")
    axes[0].set_ylabel(_COORD_LABEL.get(of, of))
    axes[0].legend(fontsize=7)
    return axes


def plot_scaling(fit, ax=None, label: str | None = None, color=None):
    """Log-log: each shape's value with its bootstrap interval, and the fitted power law with
    its exponent and interval in the legend; a dotted line at each shape without a value,
    which the fit leaves out."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.4), constrained_layout=True)
    p = fit.points
    x = p[fit.by].to_numpy(np.float64)
    y = p["value"].to_numpy()
    err = np.vstack([y - p["low"].to_numpy(), p["high"].to_numpy() - y])
    err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
    line = ax.errorbar(x, y, yerr=err, fmt="o", ms=4, capsize=3, color=color)
    fitted = x[np.isfinite(y)]  # the line spans the shapes it was fitted to
    xs = np.geomspace(fitted.min(), fitted.max(), 50)
    for k, v in enumerate(fit.left_out()):  # a shape without a value: a dotted line at it
        ax.axvline(v, ls=":", lw=1, color=line[0].get_color(),
                   label=f"{label + ': ' if label else ''}no value (left out)" if k == 0
                   else None)
    ci = (f" [{fit.low:.2f}, {fit.high:.2f}]" if np.isfinite(fit.low) else "")
    ax.plot(xs, fit.prefactor * xs**fit.exponent, "-", color=line[0].get_color(),
            label=f"{label + ': ' if label else ''}exponent {fit.exponent:.2f}{ci}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _label_axes(ax, x)
    ax.set_xlabel(fit.by)
    ax.set_ylabel(fit.of.replace("_", " "))
    ax.legend(fontsize=8)
    return ax
