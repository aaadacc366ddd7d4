"""Tick labels of the width-scaling figures (viz/scaling.py), on small synthetic tables."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import trainscape as ts  # noqa: E402
from trainscape.viz.scaling import plot_coord_check, plot_scaling  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labels(ax) -> list[tuple[str, str]]:
    ax.figure.canvas.draw()
    out = []
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        lo, hi = sorted(axis.get_view_interval())
        for minor in (False, True):
            for tick in axis.get_major_ticks() if not minor else axis.get_minor_ticks():
                text = tick.label1.get_text()
                if tick.label1.get_visible() and text and lo <= tick.get_loc() <= hi:
                    out.append((name, text))
    return out


def _plain(text: str) -> bool:
    try:
        float(text.replace("\N{MINUS SIGN}", "-"))
    except ValueError:
        return False
    return True


def test_scaling_figure_labels_its_ticks_with_plain_numbers():
    """A best lr between 3 and 40 was labelled 3 x 10^0, 4 x 10^0, ..., 10^1, 2 x 10^1,
    and the widths 2^2 ... 2^5."""
    widths = [4, 8, 16, 32]
    rows = [{"width": w, "seed": s, "critical_lr": 3.0 * w ** 0.7 * (1 + 0.05 * s),
             "bracket_ok": True} for w in widths for s in range(4)]
    ax = plot_scaling(ts.scaling(pd.DataFrame(rows), n_boot=50))
    shown = _labels(ax)
    assert shown and all(_plain(t) for _, t in shown), shown
    assert [t for a, t in shown if a == "x"] == ["4", "8", "16", "32"]
    assert len([t for a, t in shown if a == "y"]) >= 2
    # depth 1, 2, 3: base-2 ticks labelled 1 and 2 only
    rows = [{"depth": d, "seed": s, "critical_lr": 10.0 / d ** 2 * (1 + 0.05 * s),
             "bracket_ok": True} for d in (1, 2, 3) for s in range(4)]
    ax = plot_scaling(ts.scaling(pd.DataFrame(rows), by="depth", n_boot=50))
    assert [t for a, t in _labels(ax) if a == "x"] == ["1", "2", "3"]


def test_coord_check_figure_labels_its_ticks_with_plain_numbers():
    t = pd.DataFrame({"width": np.repeat([8, 16, 32], 4), "seed": 0,
                      "layer": np.tile([1, 1, 2, 2], 3), "step": np.tile([0, 1], 6),
                      "mean_abs": np.linspace(0.45, 0.62, 12),
                      "mean_abs_change": np.linspace(0.3, 4.0, 12)})
    for of in ("mean_abs", "mean_abs_change"):
        for ax in plot_coord_check(t, of):
            shown = _labels(ax)
            assert all(_plain(text) for _, text in shown), shown
            assert len([text for a, text in shown if a == "y"]) >= 2
