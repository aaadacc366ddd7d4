"""Boundary zoom: refinement on oracle maps with known boundaries (cheap, no training), the
exactness of the level grids, and a small real zoom against dense `ts.run` of the same points."""

import numpy as np
import pytest

from trainscape import zoom_grid as zg


def _dense_boundary(codes):
    """Independent reference: cells of a full map whose four corners are not all equal."""
    out = set()
    n, m = codes.shape
    for a in range(n - 1):
        for b in range(m - 1):
            c = {codes[a, b], codes[a + 1, b], codes[a, b + 1], codes[a + 1, b + 1]}
            if len(c) > 1:
                out.add((a, b))
    return out


def _oracle(fn, n, m, levels):
    """evaluate(k, ij) of a map given as fn(x, y) on [0, 1]^2 (linspace lattice)."""
    nx, ny = zg.lattice_size(n, levels), zg.lattice_size(m, levels)

    def evaluate(k, ij):
        return fn(ij[:, 0] / (nx - 1), ij[:, 1] / (ny - 1)).astype(np.int64)

    full = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), -1).reshape(-1, 2)
    return evaluate, evaluate(0, full).reshape(nx, ny)


def _ols_slope(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()


def line(x, y):
    return x + 0.37 * y > 0.61


def circle(x, y):
    return (x - 0.45) ** 2 + (y - 0.52) ** 2 < 0.31**2


def test_straight_line_every_boundary_cell_dimension_one_cost_linear():
    runs = []
    for levels in (2, 3, 4):
        evaluate, dense = _oracle(line, 17, 17, levels)
        ref = zg.zoom_plan(17, 17, levels, 0, evaluate)
        want = _dense_boundary(dense)
        got = {tuple(c) for c in ref.finest_boundary}
        assert got == want  # a straight line crosses no cell without changing a corner
        runs.append(ref.n_runs)
        d = ref.dimension()
        sizes = 2.0 ** np.arange(levels, -1, -1)
        counts = [len({(a // s, b // s) for a, b in want}) for s in sizes.astype(int)]
        assert d["counts"] == counts
        assert d["estimate"] == pytest.approx(_ols_slope(np.log(1 / sizes), np.log(counts)))
        assert abs(d["estimate"] - 1) < 0.06
        assert d["ci_low"] <= d["estimate"] <= d["ci_high"]
    # cost grows with the side (x 2 a level), not with the area (x 4)
    assert 1.6 < runs[2] / runs[1] < 2.4 and 1.6 < runs[1] / runs[0] < 2.4


def test_circle_found_with_margin_one():
    evaluate, dense = _oracle(circle, 17, 17, 3)
    want = _dense_boundary(dense)
    ref = zg.zoom_plan(17, 17, 3, 1, evaluate)
    assert {tuple(c) for c in ref.finest_boundary} == want
    assert ref.n_runs < 0.35 * ref.dense_runs
    assert abs(ref.dimension()["estimate"] - 1) < 0.1


def test_island_inside_one_coarse_cell_is_missed():
    """Documented miss: an island whose whole boundary lies inside one coarse cell, far from
    the main boundary, changes no corner of any coarse cell and is never refined."""
    def island(x, y):
        c = 3.5 / 16  # centre of a level-0 cell; the disk touches none of its corners
        return line(x, y) | ((x - c) ** 2 + (y - c) ** 2 < 0.02**2)

    evaluate, dense = _oracle(island, 17, 17, 3)
    ref = zg.zoom_plan(17, 17, 3, 1, evaluate)
    _, dense_line = _oracle(line, 17, 17, 3)
    missed = _dense_boundary(dense) - {tuple(c) for c in ref.finest_boundary}
    assert missed and missed == _dense_boundary(dense) - _dense_boundary(dense_line)


def test_margin_recovers_what_corners_miss():
    """A thin wedge entering and leaving through one coarse edge: corner disagreement alone
    misses part of it; the margin finds more, never less."""
    def wiggly(x, y):
        return y > 0.5 + 0.08 * np.sin(40 * x)

    evaluate, dense = _oracle(wiggly, 9, 9, 3)
    want = _dense_boundary(dense)
    found = [len({tuple(c) for c in zg.zoom_plan(9, 9, 3, mg, evaluate).finest_boundary}
                 & want) for mg in (0, 1, 2)]
    assert found[0] <= found[1] <= found[2] == len(want)


@pytest.mark.parametrize("form", ["geomspace", "linspace"])
def test_level_points_equal_the_dense_grids(form):
    a, b, n, levels = 1e-3, 1e6, 33, 3
    ax = zg.Axis("learning_rate.0", form, a, b, n)
    ref = zg.zoom_plan(n, n, levels, 2, _oracle(circle, n, n, levels)[0])
    all_pts = np.concatenate(ref.points)
    # nothing computed twice, and every level's new points are new
    assert len({tuple(p) for p in all_pts}) == len(all_pts)
    for k in range(levels + 1):
        s = zg.stride(k, levels)
        pts = ref.points[k]
        assert (pts % s == 0).all()  # on level k's lattice
        nk = zg.lattice_size(n, k)
        got = ax.values(pts[:, 0], levels)
        # the level's own dense grid by the same formula: the same floats
        assert np.array_equal(got, ax.values(pts[:, 0] // s, k))
        # numpy's dense grid of level k: within 1 ulp (its log/pow arithmetic differs)
        dense = (np.geomspace if form == "geomspace" else np.linspace)(a, b, nk)
        np.testing.assert_allclose(got, dense[pts[:, 0] // s], rtol=4.5e-16, atol=0)


@pytest.mark.parametrize("form", ["geomspace", "linspace"])
def test_window_one_part_in_1e9(form):
    a = 0.37
    b = a * (1 + 1e-9)
    ax = zg.Axis("learning_rate", form, a, b, 33)
    v = ax.values(np.arange(ax.size(5)), 5)
    assert v.dtype == np.float64 and len(np.unique(v)) == len(v) == 1025
    assert (np.diff(v) > 0).all()
    np.testing.assert_allclose(v, np.linspace(a, b, 1025), rtol=1e-15, atol=0)
