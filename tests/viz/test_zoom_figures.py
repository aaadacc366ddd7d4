"""The zoom figures (viz/zoom.py) on a zoom planned over an oracle map: no training."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trainscape.sweep import zoom_grid as zg  # noqa: E402
from trainscape.sweep.zoom import Zoom  # noqa: E402
from trainscape.viz import zoom as vzoom  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _zoom(levels=2, n=9):
    """A zoom of lr x init_scale whose runs diverge above a line through the map's top left
    corner region, where a legend inside the axes sat."""
    size = zg.lattice_size(n, levels)

    def evaluate(k, ij):
        x, y = ij[:, 0] / (size - 1), ij[:, 1] / (size - 1)
        return (x + 0.8 * (1 - y) < 0.5).astype(np.int64)  # diverged in the top left corner

    axes = [zg.Axis("learning_rate", "geomspace", 1.0, 100.0, n),
            zg.Axis("init_scale", "linspace", 0.2, 3.0, n)]
    ref = zg.zoom_plan(n, n, levels, 1, evaluate)
    return Zoom({"levels": levels, "by": "diverged", "margin": 1}, axes, None, [], ref, None)


def _apart(a, b) -> bool:
    return a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def test_the_zoom_maps_legend_covers_no_part_of_a_map():
    z = _zoom()
    ax = vzoom.plot_map(z)
    axes = vzoom.plot_strip(z)
    for fig, maps in ((ax.figure, [ax]), (axes[0].figure, axes)):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [m.get_legend() for m in maps if m.get_legend() is not None]
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        assert all(_apart(box, m.get_window_extent(renderer)) for m in maps)
        assert [t.get_text() for t in legends[0].get_texts()] == ["not diverged", "diverged"]
