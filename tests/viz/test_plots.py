"""Tests for trainscape.plots on tiny synthetic result tables (Agg backend, no files written)."""

import itertools
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from trainscape.errors import InputError  # noqa: E402
from trainscape.train.classify import LABELS  # noqa: E402
from trainscape.viz import plots

LRS = np.geomspace(1e-3, 10.0, 5)  # 1e-3, 0.01, 0.1, 1, 10
SEEDS = (0, 1, 2)
BASE_LABEL = ("converged", "converged", "catapult", "oscillating", "diverged")
OVERRIDES = {(3, 2): "diverged", (2, 1): "stalled"}  # (lr index, seed) -> label
N_STEPS = 10


def _loss_curve(label: str, i: int) -> np.ndarray:
    t = np.arange(N_STEPS + 1, dtype=float)
    if label == "diverged":
        loss = 10.0**t
        loss[4] = np.inf  # the engine freezes at the first non-finite loss
        loss[5:] = np.nan
        return loss
    if label == "catapult":
        return 1.0 + 50.0 * np.exp(-((t - 3) ** 2)) - 0.09 * t
    if label == "oscillating":
        return 0.5 + 0.3 * (t % 2)
    return np.exp(-(i + 1) * 0.2 * t)


def _tables(lrs=LRS, seeds=SEEDS, label_of=None):
    rows, curve_rows = [], []
    for i, lr in enumerate(lrs):
        for seed in seeds:
            label = label_of(i, seed) if label_of else OVERRIDES.get((i, seed), BASE_LABEL[i])
            loss = _loss_curve(label, i)
            finite = loss[np.isfinite(loss)]
            run_id = len(rows)
            rows.append(
                dict(
                    run_id=run_id,
                    learning_rate=float(lr),
                    seed=seed,
                    initial_loss=loss[0],
                    final_loss=loss[-1],
                    min_loss=finite.min(),
                    max_loss=np.inf if label == "diverged" else finite.max(),
                    peak_step=int(np.argmax(finite)),
                    label=label,
                    diverged_step=4 if label == "diverged" else None,
                    recover_step=None if label == "diverged" else 2,
                )
            )
            curve_rows += [dict(run_id=run_id, step=s, loss=v) for s, v in enumerate(loss)]
    runs = pd.DataFrame(rows)
    for col in ("diverged_step", "recover_step"):
        runs[col] = pd.array(runs[col].tolist(), dtype="Int64")
    runs["run_id"] = runs["run_id"].astype("int64")
    runs["seed"] = runs["seed"].astype("int64")
    return runs, pd.DataFrame(curve_rows)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def tables():
    return _tables()


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _grid_array(ax, ny, nx):
    return np.ma.asarray(_mesh(ax).get_array()).reshape(ny, nx)


def _legend_texts(ax):
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _no_overlap(labels, horizontal: bool) -> bool:
    boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
    spans = sorted((b.x0, b.x1) if horizontal else (b.y0, b.y1) for b in boxes)
    return all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


# ---------------------------------------------------------------------------------- colours, fmt


def test_label_colors_cover_every_label_with_distinct_valid_colours():
    assert set(plots.LABEL_COLORS) == set(LABELS)
    rgb = [mcolors.to_rgb(plots.LABEL_COLORS[lab]) for lab in LABELS]
    assert len(set(rgb)) == len(LABELS)


# Machado, Oliveira & Fernandes (2009) matrices at severity 1, acting on linear RGB
_CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}


def _lab(srgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1], by the textbook formulas."""
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _as_seen(srgb: np.ndarray, matrix) -> np.ndarray:
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    out = np.clip(np.asarray(matrix) @ lin, 0, 1)
    return np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("vision", ["normal", *_CVD])
def test_label_colours_stay_apart_under_colour_vision_deficiencies(vision):
    """Every pair of label colours at least 15 CIELAB units apart as simulated for each
    dichromacy: the light grey once used for stalled was 9 from oscillating's reddish purple
    for a deuteranope."""
    seen = {lab: np.array(mcolors.to_rgb(c)) for lab, c in plots.LABEL_COLORS.items()}
    if vision != "normal":
        seen = {lab: _as_seen(c, _CVD[vision]) for lab, c in seen.items()}
    for a, b in itertools.combinations(LABELS, 2):
        assert np.linalg.norm(_lab(seen[a]) - _lab(seen[b])) >= 15, (vision, a, b)


@pytest.mark.parametrize(
    "value, text",
    [
        (1e-3, "1e-3"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (1.0, "1"),
        (10.0, "10"),
        (0.125, "0.125"),
        (np.sqrt(10) * 1e-3, "3.16e-3"),
        (0.0316227766, "0.0316"),
        (1e4, "1e4"),
        (3, "3"),
        (float("inf"), "inf"),
        (0.0, "0"),
    ],
)
def test_number_labels_are_short(value, text):
    assert plots._fmt(value) == text


# ---------------------------------------------------------------------------------- label heatmap


def test_label_heatmap_cells_hold_each_runs_label(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    z = _grid_array(ax, len(SEEDS), len(LRS))
    for row in runs.itertuples():
        i = int(np.flatnonzero(np.isclose(LRS, row.learning_rate))[0])
        assert z[row.seed, i] == LABELS.index(row.label)
    assert z[2, 3] == LABELS.index("diverged")  # the (lr=1, seed=2) override
    assert z[1, 2] == LABELS.index("stalled")


def test_label_heatmap_cells_are_centred_on_grid_values(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    coords = _mesh(ax).get_coordinates()
    x_edges, y_edges = coords[0, :, 0], coords[:, 0, 1]
    np.testing.assert_allclose(np.sqrt(x_edges[:-1] * x_edges[1:]), LRS)  # geometric midpoints
    np.testing.assert_allclose((y_edges[:-1] + y_edges[1:]) / 2, SEEDS)
    assert ax.get_xlim() == pytest.approx((x_edges[0], x_edges[-1]))


def test_label_heatmap_legend_lists_the_labels_present(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    assert _legend_texts(ax) == list(LABELS)  # all five appear in this table, in LABELS order
    no_stall = runs[runs["label"] != "stalled"]
    ax2 = plots.label_heatmap(no_stall)
    assert _legend_texts(ax2) == [lab for lab in LABELS if lab != "stalled"]


def test_log_axis_chosen_only_for_wide_positive_axes(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    narrow, _ = _tables(lrs=[0.1, 0.2, 0.5])
    assert plots.label_heatmap(narrow).get_xscale() == "linear"
    assert plots.label_heatmap(runs, log_x=False).get_xscale() == "linear"
    with pytest.raises(InputError):
        plots.label_heatmap(runs, log_y=True, y="seed")  # seed 0 cannot go on a log axis


@pytest.mark.parametrize("figsize", [(7, 4), (3.5, 2.5)])
def test_tick_labels_never_overlap_on_dense_grids(figsize):
    lrs = np.geomspace(1e-3, 10.0, 41)
    runs, _ = _tables(lrs=lrs, seeds=range(16), label_of=lambda i, s: LABELS[i % 5])
    fig, ax = plt.subplots(figsize=figsize, dpi=150, layout="constrained")
    plots.label_heatmap(runs, ax=ax)
    fig.canvas.draw()
    assert _no_overlap(ax.get_xticklabels(), horizontal=True)
    assert _no_overlap(ax.get_yticklabels(), horizontal=False)
    xt = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert 2 <= len(xt) < 41
    if figsize == (7, 4):
        assert xt == ["1e-3", "0.01", "0.1", "1", "10"]  # the round subset, not every 6th value
    yticks = ax.get_yticks()
    assert len(yticks) >= 2
    assert np.all(yticks == np.round(yticks)) and 0 in yticks  # integer seeds, ruler-like
    assert all(t.get_text().lstrip("-").isdigit() for t in ax.get_yticklabels() if t.get_text())


def test_majority_ties_go_to_the_later_label():
    # two runs per cell (init_scale aggregated away): one converged, one diverged
    runs, _ = _tables(lrs=[0.1], seeds=[0, 1], label_of=lambda i, s: ("converged", "diverged")[s])
    runs["init_scale"] = 1.0
    ax = plots.label_heatmap(runs, "learning_rate", "init_scale")
    assert _grid_array(ax, 1, 1)[0, 0] == LABELS.index("diverged")
    assert "2 runs per cell" in ax.get_title()


def test_weighted_rows_count_as_that_many_runs():
    # an aggregated table: one row per (cell, label) with its number of runs
    counts = pd.DataFrame({"learning_rate": [0.1, 0.1, 1.0, 1.0],
                           "label": ["converged", "diverged", "diverged", "converged"],
                           "n": [3, 1, 2, 2]})
    ax = plots.label_heatmap(counts, "learning_rate", None, weights="n")
    assert _grid_array(ax, 1, 2).tolist() == [[LABELS.index("converged"),
                                               LABELS.index("diverged")]]  # 3:1, tie -> later
    assert "4 runs per cell" in ax.get_title()
    ax = plots.label_heatmap(counts, "learning_rate", None, weights="n", aggregate="p_diverge")
    np.testing.assert_allclose(_grid_array(ax, 1, 2), [[0.25, 0.5]])
    for bad in ([1.5, 1, 2, 2], [3, -1, 2, 2]):
        with pytest.raises(InputError, match="weights column 'n'"):
            plots.label_heatmap(counts.assign(n=bad), "learning_rate", None, weights="n")


def test_a_counted_table_draws_the_same_map_as_its_runs(tables):
    runs, _ = tables
    # a third, categorical axis aggregated away: every run three times, labels varied
    many = pd.concat([runs.assign(opt=o) for o in ("sgd", "adam", "momentum")],
                     ignore_index=True)
    many.loc[many.index % 4 == 0, "label"] = "diverged"
    many["opt"] = pd.Categorical(many["opt"], ["sgd", "adam", "momentum"])
    counted = many.groupby(["learning_rate", "opt", "label"], observed=True).size()
    counted = counted.rename("runs").reset_index()
    for agg in ("majority", "p_diverge"):
        a = _grid_array(plots.label_heatmap(many, "learning_rate", "opt", aggregate=agg), 3, 5)
        b = _grid_array(plots.label_heatmap(counted, "learning_rate", "opt", aggregate=agg,
                                            weights="runs"), 3, 5)
        np.testing.assert_array_equal(np.ma.filled(a, -1), np.ma.filled(b, -1))


def test_p_diverge_gives_the_fraction_diverged(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs, "learning_rate", None, aggregate="p_diverge")
    np.testing.assert_allclose(_grid_array(ax, 1, len(LRS)), [[0, 0, 0, 1 / 3, 1]])
    assert len(ax.get_figure().axes) == 2  # the heatmap and its colorbar
    # uneven cells: drop one converged run at lr=1e-3 and one diverged run at lr=10
    uneven = runs.drop(index=[0, len(runs) - 1])
    ax_u = plots.label_heatmap(uneven, "learning_rate", None, aggregate="p_diverge")
    np.testing.assert_allclose(_grid_array(ax_u, 1, len(LRS)), [[0, 0, 0, 1 / 3, 1]])
    ax2 = plots.label_heatmap(runs, "learning_rate", None, aggregate="p_catapult")
    np.testing.assert_allclose(_grid_array(ax2, 1, len(LRS)), [[0, 0, 2 / 3, 0, 0]])
    with pytest.raises(InputError):
        plots.label_heatmap(runs, aggregate="p_exploded")


def test_single_value_axes_work(tables):
    runs, curves = tables
    one_lr = runs[np.isclose(runs["learning_rate"], 1.0)]
    ax = plots.label_heatmap(one_lr)
    z = _grid_array(ax, 3, 1)
    assert list(z[:, 0]) == [LABELS.index(lab) for lab in one_lr.sort_values("seed")["label"]]
    x0, x1 = ax.get_xlim()
    assert x0 < 1.0 < x1 and np.isfinite([x0, x1]).all()
    one_cell = one_lr[one_lr["seed"] == 0]
    plots.label_heatmap(one_cell)
    plots.metric_heatmap(one_cell, "final_loss", "learning_rate", "seed")
    plots.boundary_contour(one_lr, ax=plots.label_heatmap(one_lr))
    plots.loss_curves(curves, one_cell)


# ---------------------------------------------------------------------------------- metric heatmap


def test_metric_heatmap_keeps_finite_colour_limits_with_inf(tables):
    runs, _ = tables
    ax = plots.metric_heatmap(runs, "peak_ratio", "learning_rate", "seed")
    mesh = _mesh(ax)
    norm = mesh.norm
    assert np.isfinite([norm.vmin, norm.vmax]).all()
    z = np.ma.asarray(mesh.get_array()).reshape(3, 5)
    assert z[0, 4] > norm.vmax  # a diverged run's inf peak ratio: drawn in the "over" colour
    row = runs[(runs["seed"] == 0) & np.isclose(runs["learning_rate"], 0.1)].iloc[0]
    assert z[0, 2] == pytest.approx(row["max_loss"] / row["initial_loss"])
    assert mesh.colorbar.extend == "max"
    assert mcolors.to_hex(mesh.cmap.get_over()) != mcolors.to_hex(mesh.cmap(1.0))


def test_metric_heatmap_auto_norm_follows_the_value_range(tables):
    runs, _ = tables
    wide = runs.assign(span=np.geomspace(1e-4, 1.0, len(runs)))
    assert isinstance(_mesh(plots.metric_heatmap(wide, "span")).norm, mcolors.LogNorm)
    narrow = runs.assign(span=np.linspace(1.0, 2.0, len(runs)))
    norm = _mesh(plots.metric_heatmap(narrow, "span")).norm
    assert not isinstance(norm, mcolors.LogNorm)
    assert (norm.vmin, norm.vmax) == (1.0, 2.0)


def test_metric_heatmap_nan_cells_are_masked_and_aggregated(tables):
    runs, _ = tables
    ax = plots.metric_heatmap(runs, "recover_step", "learning_rate", None)
    z = _grid_array(ax, 1, len(LRS))
    assert list(np.ma.getmaskarray(z)[0]) == [False, False, False, True, True]  # NaN propagates
    ax2 = plots.metric_heatmap(runs, "recover_step", "learning_rate", None, agg="nanmedian")
    assert list(np.ma.getmaskarray(_grid_array(ax2, 1, len(LRS)))[0]) == [False] * 4 + [True]
    with pytest.raises(InputError):
        plots.metric_heatmap(runs, "no_such_metric", "learning_rate", "seed")


def test_all_diverged_table_never_crashes():
    runs, curves = _tables(label_of=lambda i, s: "diverged")
    ax = plots.label_heatmap(runs)
    assert _legend_texts(ax) == ["diverged"]
    for metric in ("final_loss", "peak_ratio", "recover_step"):
        mesh = _mesh(plots.metric_heatmap(runs, metric, "learning_rate", "seed"))
        assert np.isfinite([mesh.norm.vmin, mesh.norm.vmax]).all()
    plots.boundary_contour(runs, ax=ax)  # P == 1 everywhere: no contour, no error
    ax_c = plots.loss_curves(curves, runs)
    assert np.isfinite(ax_c.get_ylim()).all()
    axes = plots.seed_question_figure(runs, curves)
    assert axes[1].get_title() == "lr = 1: diverged 3/3"
    for a in (ax, ax_c, *axes):
        a.get_figure().canvas.draw()


def test_metric_heatmap_can_leave_diverged_runs_out_and_hatch_their_cells():
    # lr 0.1: two runs that spiked (3, 5) and one that blew up at once (spike_ratio 1);
    # lr 1: every run blew up; lr 10: one run that never rose
    runs = pd.DataFrame({
        "learning_rate": [0.1, 0.1, 0.1, 1.0, 1.0, 10.0],
        "spike_ratio": [3.0, 5.0, 1.0, 1.0, 1.0, 1.0],
        "label": ["catapult", "catapult", "diverged", "diverged", "diverged", "converged"],
    })
    plain = plots.metric_heatmap(runs, "spike_ratio", "learning_rate", None)
    np.testing.assert_allclose(_grid_array(plain, 1, 3), [[3.0, 1.0, 1.0]])  # medians of all
    assert not [c for c in plain.collections if c.get_gid() == "all-diverged"]
    ax = plots.metric_heatmap(runs, "spike_ratio", "learning_rate", None, skip_diverged=True)
    z = _grid_array(ax, 1, 3)
    assert z[0, 0] == pytest.approx(4.0) and z[0, 2] == pytest.approx(1.0)
    assert np.ma.getmaskarray(z)[0].tolist() == [False, True, False]
    (hatch,) = [c for c in ax.collections if c.get_gid() == "all-diverged"]
    assert hatch.get_hatch() and len(hatch.get_paths()) == 1
    # the lr = 1 cell: geometric midpoints 10^-0.5 .. 10^0.5 on the log lr axis, the strip's
    # -0.5 .. 0.5 across
    verts = hatch.get_paths()[0].vertices
    assert verts[:, 0].min() == pytest.approx(10**-0.5)
    assert verts[:, 0].max() == pytest.approx(10**0.5)
    assert (verts[:, 1].min(), verts[:, 1].max()) == pytest.approx((-0.5, 0.5))
    assert "all runs diverged" in _legend_texts(ax)
    assert ax.get_title() == ""  # not "grey cells: no value (NaN)": the cell has a meaning
    every = plots.metric_heatmap(runs.assign(label="diverged"), "spike_ratio", "learning_rate",
                                 None, skip_diverged=True)
    (hatch,) = [c for c in every.collections if c.get_gid() == "all-diverged"]
    assert len(hatch.get_paths()) == 3


# ---------------------------------------------------------------------------------- overlays


def test_boundary_contour_lies_between_the_safe_and_diverged_lrs(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    before = len(ax.lines)
    plots.boundary_contour(runs, ax=ax)
    new = ax.lines[before:]
    assert new, "P(diverged) goes from 0 to 1 along lr, so a boundary must be drawn"
    xs = np.concatenate([line.get_xdata() for line in new])
    assert xs.min() >= LRS[2] and xs.max() <= LRS[4]
    assert _legend_texts(ax)[-1] == "P(diverged) = 0.5"
    assert _legend_texts(ax)[:-1] == list(LABELS)  # heatmap entries kept


def test_boundary_contour_constant_p_draws_nothing(tables):
    runs, _ = tables
    calm = runs.assign(label="converged")
    ax = plots.label_heatmap(calm)
    plots.boundary_contour(calm, ax=ax)
    assert ax.lines == [] or len(ax.lines) == 0
    strip = plots.label_heatmap(runs, y=None)
    plots.boundary_contour(runs, y=None, ax=strip)  # single row: a vertical crossing line
    (line,) = [ln for ln in strip.lines if ln.get_gid() != "disagree"]  # not the heatmap's dots
    assert LRS[3] < line.get_xdata()[0] < LRS[4]


def test_threshold_lines_sit_at_two_and_four_over_lambda(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    sharpness = 8.0
    plots.threshold_lines(ax, predicted_lr=2 / sharpness, critical_lr=0.7)
    lines = ax.lines[-3:]
    assert [line.get_xdata()[0] for line in lines] == pytest.approx([0.25, 0.5, 0.7])
    assert [line.get_linestyle() for line in lines] == ["--", ":", "-"]
    texts = _legend_texts(ax)
    assert texts[: len(LABELS)] == list(LABELS)
    assert texts[len(LABELS) :] == ["2/λ = 0.25", "4/λ = 0.5", "critical lr = 0.7"]
    n = len(ax.lines)
    plots.threshold_lines(ax, predicted_lr=None, critical_lr=None)
    plots.threshold_lines(ax, critical_lr=float("nan"))
    assert len(ax.lines) == n


def test_threshold_lines_outside_a_heatmaps_axis_are_neither_drawn_nor_listed(tables):
    runs, _ = tables
    ax = plots.label_heatmap(runs)
    # the last lr cell (10) reaches half a decade further: 10 * sqrt(10) = 31.6
    before = len(ax.lines)
    plots.threshold_lines(ax, predicted_lr=20.0, critical_lr=50.0)
    assert _legend_texts(ax)[len(LABELS):] == ["2/λ = 20"]  # not 4/λ = 40, nor 50
    drawn = ax.lines[before:]
    assert [line.get_xdata()[0] for line in drawn] == [20.0]
    assert [line.get_gid() for line in drawn] == ["threshold-2/λ"]
    assert ax.get_xlim()[1] == pytest.approx(10 * np.sqrt(10))  # the view was not widened
    # on axes whose limits follow the data, every line is drawn (the view grows to show it)
    _, free = plt.subplots()
    plots.threshold_lines(free, predicted_lr=20.0)
    assert [line.get_xdata()[0] for line in free.lines] == [20.0, 40.0]


# ---------------------------------------------------------------------------------- curves


def test_loss_curves_colour_by_label_and_mark_divergence(tables):
    runs, curves = tables
    ax = plots.loss_curves(curves, runs)
    by_gid = {line.get_gid(): line for line in ax.lines}
    for row in runs.itertuples():
        line = by_gid[f"run-{row.run_id}"]
        assert mcolors.to_hex(line.get_color()) == mcolors.to_hex(plots.LABEL_COLORS[row.label])
    diverged = set(runs.loc[runs["label"] == "diverged", "run_id"])
    marked = {int(g.split("-")[1]) for g in by_gid if g and g.startswith("diverged-")}
    assert marked == diverged
    top = ax.get_ylim()[1]
    assert np.isfinite(top)
    for rid in diverged:
        marker = by_gid[f"diverged-{rid}"]
        assert marker.get_marker() == "x"
        assert marker.get_ydata()[0] <= top * (1 + 1e-9)
    assert ax.get_yscale() == "log"
    assert "left the plot" in _legend_texts(ax)


def test_loss_curves_run_ids_and_cap(tables):
    runs, curves = tables
    ax = plots.loss_curves(curves, runs, run_ids=[0, 1])
    assert {line.get_gid() for line in ax.lines} == {"run-0", "run-1"}
    capped = plots.loss_curves(curves, runs, max_runs=5)
    gids = [g for g in (line.get_gid() for line in capped.lines) if g.startswith("run-")]
    assert len(gids) <= 5
    drawn = {int(g.split("-")[1]) for g in gids}
    assert set(runs.loc[runs["run_id"].isin(drawn), "label"]) == set(LABELS)  # all kept
    ax_lin = plots.loss_curves(curves, log_y=False)
    assert ax_lin.get_yscale() == "linear" and np.isfinite(ax_lin.get_ylim()).all()


def test_curves_grid_one_panel_per_cell(tables):
    runs, curves = tables
    axes = plots.curves_grid(curves, runs, [{"learning_rate": 0.01}, {"learning_rate": 1.0}])
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    for ax in axes:
        assert len([line for line in ax.lines if line.get_gid().startswith("run-")]) == 3
    assert axes[0].get_title() == "lr = 0.01\nconverged 3/3"
    assert axes[1].get_title() == "lr = 1\noscillating 2/3, diverged 1/3"
    assert axes[0].get_ylim() == axes[1].get_ylim()
    fig, given = plt.subplots(1, 3)
    out = plots.curves_grid(curves, runs, [{"learning_rate": 0.1, "seed": 1}], axes=given)
    assert out[0] is given[0] and out[0].get_title() == "lr = 0.1, seed = 1\nstalled 1/1"


def test_seed_question_figure(tables):
    runs, curves = tables
    axes = plots.seed_question_figure(runs, curves)
    assert len(axes) == 2
    assert axes[0].get_title() == "lr = 0.01: converged 3/3"
    assert axes[1].get_title() == "lr = 1: oscillating 2/3, diverged 1/3"
    for ax in axes:
        assert ax.get_yscale() == "log"
        (median,) = [line for line in ax.lines if line.get_gid() == "median"]
        assert median.get_linewidth() > max(
            line.get_linewidth() for line in ax.lines if line.get_gid().startswith("run-")
        )
    # median at step 0 over the three lr=0.01 seeds equals their shared initial loss
    assert axes[0].lines[-1].get_ydata()[0] == pytest.approx(1.0)
    missing = plots.seed_question_figure(runs, curves, lrs=(0.02,))
    assert missing[0].get_title() == "lr = 0.02: no runs"


# ---------------------------------------------------------------------------------- contract


def test_functions_draw_on_the_given_axes_without_new_figures(tables):
    runs, curves = tables
    fig, axes = plt.subplots(2, 3)
    n_figs = len(plt.get_fignums())
    flat = axes.ravel()
    assert plots.label_heatmap(runs, ax=flat[0]) is flat[0]
    assert plots.metric_heatmap(runs, "final_loss", "learning_rate", "seed", ax=flat[1]) is flat[1]
    assert plots.boundary_contour(runs, ax=flat[0]) is flat[0]
    assert plots.threshold_lines(flat[0], predicted_lr=0.3) is flat[0]
    assert plots.loss_curves(curves, runs, ax=flat[2]) is flat[2]
    out = plots.seed_question_figure(runs, curves, axes=flat[3:5])
    assert list(out) == list(flat[3:5])
    assert len(plt.get_fignums()) == n_figs


def test_missing_columns_are_reported(tables):
    runs, curves = tables
    with pytest.raises(InputError, match="momentum"):
        plots.label_heatmap(runs, "momentum", "seed")
    with pytest.raises(InputError):
        plots.label_heatmap(runs, "seed", "seed")
    with pytest.raises(InputError, match="accuracy"):
        plots.loss_curves(curves, runs, metric="accuracy")


def test_count_text_names_only_labels_that_occur_even_for_categoricals():
    from trainscape.viz.plots import _count_text

    cat = pd.Series(pd.Categorical(["converged", "converged", "catapult"],
                                   categories=["converged", "catapult", "diverged"]))
    assert _count_text(cat) == "converged 2/3, catapult 1/3"
    assert _count_text(cat.astype(str)) == "converged 2/3, catapult 1/3"


# ---------------------------------------------------------------------------------- exit markers


def _hand_curves(losses: dict, labels: dict):
    """runs and curves tables for hand-written loss curves {run_id: losses}."""
    runs = pd.DataFrame({"run_id": list(losses), "learning_rate": 1.0,
                         "label": [labels[r] for r in losses]})
    curves = pd.DataFrame([{"run_id": r, "step": t, "loss": v}
                           for r, loss in losses.items() for t, v in enumerate(loss)])
    return runs, curves


def test_exit_marker_only_where_the_loss_left_the_plot_or_became_non_finite():
    inf, nan = np.inf, np.nan
    losses = {
        0: [1.0, 0.5, 0.2, 0.1],  # converged: sets the y-range (top = 3 x its max = 3)
        1: [1.0, 0.8, 1.1, 1.2],  # diverged by ending above its initial loss, never left
        2: [1.0, 2.0, inf, nan],  # non-finite at step 2, below the top until then
        3: [1.0, 1e3, 1e6, 1e8],  # finite, crosses the top between steps 0 and 1
    }
    labels = {0: "converged", 1: "diverged", 2: "diverged", 3: "diverged"}
    runs, curves = _hand_curves(losses, labels)
    ax = plots.loss_curves(curves, runs)
    marks = {line.get_gid(): line for line in ax.lines
             if (line.get_gid() or "").startswith("diverged-")}
    assert set(marks) == {"diverged-2", "diverged-3"}  # none for run 1
    lo, top = ax.get_ylim()
    assert top == pytest.approx(3.0)
    x2, y2 = marks["diverged-2"].get_xydata()[0]
    assert (x2, y2) == (1.0, 2.0)  # its last finite point
    x3, y3 = marks["diverged-3"].get_xydata()[0]
    assert 0.0 < x3 < 1.0 and y3 < top
    assert "left the plot" in _legend_texts(ax)
    # only the finite, in-range diverged run: no marker and no legend entry for one
    calm = plots.loss_curves(curves, runs, run_ids=[0, 1])
    assert not [ln for ln in calm.lines if (ln.get_gid() or "").startswith("diverged-")]
    assert "left the plot" not in _legend_texts(calm)


def _marker_tops(ax) -> list[tuple[float, float]]:
    """(top of each exit marker's glyph, top of the axes) in display pixels."""
    half = None
    out = []
    for line in ax.lines:
        if not (line.get_gid() or "").startswith("diverged-"):
            continue
        half = (line.get_markersize() + line.get_markeredgewidth()) / 2 * ax.figure.dpi / 72
        y = ax.transData.transform(line.get_xydata()[0])[1]
        out.append((y + half, ax.bbox.y1))
    return out


def test_exit_markers_stay_inside_the_axes_clear_of_the_title():
    runs, curves = _tables(label_of=lambda i, s: "diverged")  # 1, 10, 100, 1000, inf, ...
    axes = plots.seed_question_figure(runs, curves)
    grid = plots.curves_grid(curves, runs, [{"learning_rate": 1.0}])
    fig_s, fig_g = axes[0].figure, grid[0].figure
    fig_s.canvas.draw()
    fig_g.canvas.draw()
    for ax in (*axes, grid[0]):
        tops = _marker_tops(ax)
        assert len(tops) == 3  # three seeds blew up in every panel
        assert all(glyph <= axis_top for glyph, axis_top in tops), tops
        title = ax.title.get_window_extent()
        assert all(glyph <= title.y0 for glyph, _ in tops)


def test_step_ticks_are_whole_steps_even_for_runs_stopped_after_one_step():
    """A sweep where every run blew up at step 1 records steps 0 and 1 only; matplotlib's
    default ticks for that range are 0, 0.2, ..., 1, steps no run has."""
    t = np.arange(21.0)
    short = np.array([1.0, 1e3] + [np.nan] * 19)
    curves = pd.DataFrame({"run_id": 0, "step": t.astype(int), "loss": short})
    runs = pd.DataFrame({"run_id": [0], "label": ["diverged"]})
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    plots.loss_curves(curves.dropna(), runs, ax=ax)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [v for v in ax.get_xticks() if lo <= v <= hi]
    assert len(shown) >= 2 and all(float(v).is_integer() for v in shown)
    # and round ones on a longer run: 0, 5, ..., 30, not 0, 4, ..., 28
    curves = pd.DataFrame({"run_id": 0, "step": np.arange(31), "loss": np.geomspace(1, 0.1, 31)})
    fig, ax = plt.subplots(figsize=(4.4, 3.6), layout="constrained")
    plots.loss_curves(curves, runs.assign(label="converged"), ax=ax)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [v for v in ax.get_xticks() if lo <= v <= hi]
    assert shown[0] == 0 and shown[-1] == 30 and all(v % 5 == 0 for v in shown)
    # as few as fit: 2000 steps on a small multiple's narrow panel
    curves = pd.DataFrame({"run_id": 0, "step": np.arange(2001),
                           "loss": np.geomspace(1, 0.1, 2001)})
    axes = plots.curves_grid(curves, runs.assign(label="converged", lr=0.1),
                             [{"lr": 0.1}] * 3)
    axes[0].figure.canvas.draw()
    assert _no_overlap(axes[0].get_xticklabels(), horizontal=True)


def _boxes_apart(a, b) -> bool:
    return a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def test_panel_titles_with_long_names_stay_apart_and_inside_the_figure():
    """Long category names and five label counts made each panel's title wider than its panel:
    neighbouring titles ran into each other and off the figure's edge."""
    names = ["sgd_with_nesterov_momentum", "adam_with_decoupled_weight_decay", "rmsprop_centered",
             "lion_sign_momentum_optimizer"]
    runs, curves = _tables(lrs=[0.1] * 1, seeds=range(10), label_of=lambda i, s: LABELS[s % 5])
    runs = pd.concat([runs.assign(variant=n, run_id=runs["run_id"] + 100 * k)
                      for k, n in enumerate(names)], ignore_index=True)
    curves = pd.concat([curves.assign(run_id=curves["run_id"] + 100 * k)
                        for k in range(len(names))], ignore_index=True)
    axes = plots.curves_grid(curves, runs, [{"variant": n, "learning_rate": 0.1} for n in names])
    fig = axes[0].figure
    sq = plots.seed_question_figure(runs.loc[runs["variant"] == names[0]], curves,
                                    lrs=(0.1, 0.1))
    for f, panels in ((fig, axes), (sq[0].figure, sq)):
        f.canvas.draw()
        renderer = f.canvas.get_renderer()
        boxes = [ax.title.get_window_extent(renderer) for ax in panels]
        inside = f.bbox
        for b in boxes:
            assert b.x0 >= inside.x0 - 1 and b.x1 <= inside.x1 + 1
        for a, b in itertools.combinations(boxes, 2):
            assert _boxes_apart(a, b)
        for leg in [*f.legends, *(ax.get_legend() for ax in panels if ax.get_legend())]:
            lb = leg.get_window_extent(renderer)
            assert all(_boxes_apart(lb, b) for b in boxes)
    # every part of the text is still there, only broken into lines
    assert axes[0].get_title().replace("\n", " ").startswith(
        "variant = sgd_with_nesterov_momentum, lr = 0.1 converged 2/10, catapult 2/10")


def test_a_heatmap_title_naming_many_pooled_axes_stays_inside_the_figure():
    runs, _ = _tables()
    runs = runs.assign(variant=np.where(runs["seed"] == 0, "adam_with_decoupled_weight_decay",
                                        "sgd_with_nesterov_momentum"))
    pooled = ["seed", "weight_decay", "momentum", "init_scale", "batch_size"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    plots.label_heatmap(runs, "learning_rate", "variant", ax=ax, pooled=pooled)
    fig.canvas.draw()
    box = ax.title.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= fig.bbox.x0 - 1 and box.x1 <= fig.bbox.x1 + 1
    assert ax.get_title().replace("\n", " ").endswith("pooled over " + ", ".join(pooled))


def _shown(labels) -> list[str]:
    return [t.get_text() for t in labels if t.get_visible() and t.get_text()]


def test_every_value_of_an_unevenly_spaced_axis_is_labelled_when_the_labels_fit():
    """momentum 0, 0.5, 0.9, 0.99 on `trainscape run`'s heatmap was labelled 0, 0.9, 0.99:
    rounder than all four, but on an uneven grid the missing 0.5 cannot be read off the
    others."""
    rows = [dict(run_id=i, learning_rate=lr, momentum=m, label="converged")
            for i, (lr, m) in enumerate(itertools.product([0.01, 0.1, 1.0],
                                                          [0.0, 0.5, 0.9, 0.99]))]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    plots.label_heatmap(pd.DataFrame(rows), "learning_rate", "momentum", ax=ax)
    fig.canvas.draw()
    assert _shown(ax.get_yticklabels()) == ["0", "0.5", "0.9", "0.99"]
    assert _no_overlap(ax.get_yticklabels(), horizontal=False)


def test_long_category_names_on_x_are_all_labelled_slanted():
    """Five optimizer names on x: only the first and the last were labelled, side by side."""
    names = ["sgd_with_nesterov_momentum", "adam_with_decoupled_weight_decay", "rmsprop_centered",
             "lion_sign_momentum_optimizer", "adafactor_factored_second_moment"]
    rows = [dict(run_id=i, variant=n, learning_rate=lr, label="converged")
            for i, (n, lr) in enumerate(itertools.product(names, [0.01, 0.1, 1.0]))]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    plots.label_heatmap(pd.DataFrame(rows), "variant", "learning_rate", ax=ax)
    fig.canvas.draw()
    labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert [t.get_text() for t in labels] == names
    # slanted lines of text do not touch when their ticks are a line height / sin(angle) apart
    angle = math.radians(labels[0].get_rotation())
    line_px = 1.2 * labels[0].get_fontsize() * fig.dpi / 72
    px = ax.transData.transform(np.column_stack([ax.get_xticks(), np.zeros(5)]))[:, 0]
    assert 0 < angle < math.pi / 2
    assert np.min(np.diff(px)) * math.sin(angle) >= line_px
    # names that fit side by side stay level
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    short = pd.DataFrame(rows).assign(variant=lambda d: d["variant"].str[:4])
    plots.label_heatmap(short, "variant", "learning_rate", ax=ax)
    fig.canvas.draw()
    assert _shown(ax.get_xticklabels()) == [n[:4] for n in names]
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())


def test_shared_y_range_is_set_by_the_runs_that_did_not_diverge_in_any_panel():
    """A panel whose runs all blew up set the shared range to three decades above its start,
    squashing the other panels' curves into the bottom third."""
    runs, curves = _tables(lrs=[0.01, 10.0], seeds=(0, 1),
                           label_of=lambda i, s: ("converged", "diverged")[i])
    axes = plots.curves_grid(curves, runs, [{"learning_rate": 0.01}, {"learning_rate": 10.0}])
    calm = curves.loc[curves["run_id"].isin(runs.loc[runs["label"] == "converged", "run_id"])]
    lo, hi = axes[0].get_ylim()
    assert axes[1].get_ylim() == (lo, hi)
    assert calm["loss"].max() <= hi <= 10 * calm["loss"].max()  # loss_curves' 3x headroom
    # the diverged runs leave through the top, each marked where it left
    assert len([ln for ln in axes[1].lines if (ln.get_gid() or "").startswith("diverged-")]) == 2


@pytest.mark.parametrize("figsize", [(7, 4), (3.5, 2.5)])
def test_names_too_long_to_slant_stay_level_without_a_layout_warning(figsize):
    """Twelve 40-letter names slanted would hang below the map for most of the figure's
    height: constrained layout gave up ("axes sizes collapsed to zero") on a small figure,
    and squeezed the map to an inch on a 7 x 4 one."""
    import warnings

    names = [f"optimizer_variant_number_{i:02d}_with_a_long_name" for i in range(12)]
    rows = [dict(run_id=i, variant=n, learning_rate=lr, label="converged")
            for i, (n, lr) in enumerate(itertools.product(names, [0.01, 0.1, 1.0]))]
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.label_heatmap(pd.DataFrame(rows), "variant", "learning_rate", ax=ax)
        fig.canvas.draw()
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    assert ax.bbox.height > 0.4 * fig.bbox.height


def test_the_run_summary_counts_one_run_and_one_step_in_the_singular():
    """`trainscape run` printed "1 runs x 1 steps (one run)"."""
    import trainscape as ts
    from trainscape.viz.summary import text_summary

    runs = pd.DataFrame({"run_id": [0], "label": ["stalled"], "final_loss": [0.7]})
    one = ts.Results(runs=runs, curves=pd.DataFrame(), config=ts.parse(
        {"name": "one", "train": {"steps": 1}}), meta={})
    assert text_summary(one).splitlines()[0] == "one: 1 run x 1 step (one run)"
    two = ts.Results(runs=pd.concat([runs, runs.assign(run_id=1)]), curves=pd.DataFrame(),
                     config=ts.parse({"name": "two", "train": {"steps": 3},
                                      "sweep": {"seed": [0, 1]}}), meta={})
    assert text_summary(two).splitlines()[0] == "two: 2 runs x 3 steps (seed: 2)"
