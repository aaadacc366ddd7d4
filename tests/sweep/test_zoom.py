"""Boundary zoom: refinement on oracle maps with known boundaries (cheap, no training), the
exactness of the level grids, and a small real zoom against dense `ts.run` of the same points."""

import re

import numpy as np
import pytest

from trainscape.sweep import zoom_grid as zg


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


# ---------------------------------------------------------------- a real zoom (tiny network)

TINY = {"name": "tiny-zoom", "data": {"name": "moons", "n_samples": 32},
        "model": {"hidden": [4]}, "loss": {"name": "bce"}, "train": {"steps": 8},
        "sweep": {"learning_rate": {"geomspace": [0.3, 300.0], "num": 5},
                  "init_scale": {"linspace": [0.5, 3.0], "num": 5}}}


def _dense_run(levels):
    """Every point of the finest lattice in one ordinary sweep of the same float64 values,
    computed here from the raw spec (not through the zoom's own helpers)."""
    import trainscape as ts

    n = 2**levels * 4 + 1
    lr = 0.3 * (300.0 / 0.3) ** (np.arange(n) / (n - 1))
    sc = 0.5 + (3.0 - 0.5) * (np.arange(n) / (n - 1))
    cfg = {**TINY, "sweep": {"learning_rate": lr.tolist(), "init_scale": sc.tolist()}}
    res = ts.run(cfg, out=None, progress=False)
    return res.runs["label"].to_numpy().reshape(n, n), lr, sc


def test_real_zoom_matches_dense_and_resumes(tmp_path, monkeypatch):
    import trainscape as ts
    from trainscape.sweep import runner

    computed = []
    real_chunk = runner.compute_chunk

    def counting(prep, index, static, rows, dispatch):
        computed.append(len(rows))
        return real_chunk(prep, index, static, rows, dispatch)

    monkeypatch.setattr(runner, "compute_chunk", counting)
    real_run = runner.run

    def killed_after_level0(*a, **kw):
        if kw["table"]["level"].iloc[0] == 1:
            raise KeyboardInterrupt
        return real_run(*a, **kw)

    out = tmp_path / "z"
    monkeypatch.setattr(runner, "run", killed_after_level0)
    with pytest.raises(KeyboardInterrupt):
        ts.zoom(TINY, 2, margin=1, out=out, progress=False)
    assert sum(computed) == 25 and (out / "level-0" / "runs.parquet").is_file()
    with pytest.raises(ts.InputError, match="already holds a zoom"):
        ts.zoom(TINY, 2, margin=1, out=out, progress=False)
    with pytest.raises(ts.InputError, match="margin"):
        ts.zoom(TINY, 2, margin=2, out=out, resume=True, progress=False)
    monkeypatch.setattr(runner, "run", real_run)
    computed.clear()
    z = ts.zoom(TINY, 2, margin=1, out=out, resume=True, progress=False)
    # only the points of levels 1 and 2 were trained (chunks hold whole runs, no padding)
    assert sum(computed) == z.n_runs - 25 == len(z.runs) - 25
    assert z.dense_runs == 17 * 17

    labels, lr, sc = _dense_run(2)
    runs = z.runs
    assert runs["run_id"].is_unique and not runs[["i", "j"]].duplicated().any()
    np.testing.assert_array_equal(runs["learning_rate"].to_numpy(), lr[runs["i"]])
    np.testing.assert_array_equal(runs["init_scale"].to_numpy(), sc[runs["j"]])
    # every computed point's outcome equals the dense grid's at that point
    np.testing.assert_array_equal(runs["label"].to_numpy(), labels[runs["i"], runs["j"]])
    div = (labels == "diverged").astype(int)
    want = _dense_boundary(div)
    got = {(int(a), int(b)) for a, b in zip(z.boundary["i"], z.boundary["j"], strict=True)}
    assert got <= want and len(got) >= 0.9 * len(want)
    img = z.image()
    pts = runs[["i", "j"]].to_numpy()
    np.testing.assert_array_equal(img[pts[:, 0], pts[:, 1]], div[pts[:, 0], pts[:, 1]])

    back = ts.load(out)
    assert isinstance(back, ts.Zoom) and back.n_runs == z.n_runs
    assert back.dimension == z.dimension
    pd_runs = back.runs.drop(columns="convergence_measure")
    assert pd_runs.equals(runs.drop(columns="convergence_measure"))


def test_convergence_measure_against_the_papers_formula():
    from trainscape.sweep.zoom import convergence_measure

    loss = np.array([[2.0, 1.0, 0.5, 0.5],  # trainable: -(1 + .5 + .25 + .25)
                     [2.0, 3.0, np.inf, np.nan],  # blown up: sum 1/v, inf -> cap
                     [1.0, 1e9, 2.0, 2.0]])  # above the cap for one step
    got = convergence_measure(loss, tail=2)
    cap = 1e6
    want = [-(1 + 0.5 + 0.25 + 0.25),
            1 + 1 / 1.5 + 2 / cap + 2 / cap,  # nonfinite -> cap before dividing by 2
            1 + 1 / cap + 0.5 + 0.5]
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_zoom_config_errors():
    import trainscape as ts

    one = {**TINY, "sweep": {"learning_rate": {"geomspace": [0.3, 300.0], "num": 5}}}
    with pytest.raises(ts.ConfigError, match="exactly two axes"):
        ts.zoom(one, 1, out=None)
    three = {**TINY, "sweep": {**TINY["sweep"], "seed": {"range": 2}}}
    with pytest.raises(ts.ConfigError, match="sweep.seed"):
        ts.zoom(three, 1, out=None)
    with pytest.raises(ts.ConfigError, match="record_every"):
        ts.zoom({**TINY, "train": {"steps": 8, "record_every": 2}}, 1, by="measure", out=None)
    with pytest.raises(ts.InputError, match="by"):
        ts.zoom(TINY, 1, by="loss", out=None)


def test_window_one_part_in_1e9_through_the_config():
    """The config parser rounds grids to 12 digits (which would merge these points); the
    zoom reads the raw spec and runs the exact values."""
    from trainscape.sweep.zoom import level_table, zoom_spec

    cfg = {**TINY, "sweep": {"learning_rate": {"geomspace": [1.0, 1.000000001], "num": 33},
                             "init_scale": {"linspace": [2.0, 2.000000002], "num": 33}}}
    _, axes, exp = zoom_spec(cfg)
    ij = zg.level0_points(33, 33, 3) + 1  # odd points: only on the finest level
    t = level_table(exp, axes, ij, 3, 3)
    for col in ("learning_rate", "init_scale"):
        assert t[col].dtype == np.float64 and t[col].nunique() == 33
    assert (np.diff(np.unique(t["learning_rate"])) > 0).all()


def test_cli_zoom_and_report(tmp_path, capsys):
    from trainscape.cli.main import main

    toml = tmp_path / "z.toml"
    toml.write_text(
        'name = "tiny-zoom"\n[data]\nname = "moons"\nn_samples = 32\n[model]\nhidden = [4]\n'
        '[train]\nsteps = 8\n[sweep]\nlearning_rate = {geomspace = [0.3, 300.0], num = 5}\n'
        'init_scale = {linspace = [0.5, 3.0], num = 5}\n')
    out = tmp_path / "out"
    assert main(["zoom", str(toml), "--levels", "1", "--out", str(out), "--no-progress",
                 "--margin", "0"]) == 0
    said = capsys.readouterr().out
    assert "dimension" in said and (out / "zoom-map.png").is_file()
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Box-counting dimension" in text and (tmp_path / "rep" / "zoom-strip.png").is_file()
    assert main(["zoom", str(toml), "--levels", "1", "--out", str(out)]) == 2  # exists
    assert "(zoom.json, level-0/ ... level-1/)" in said
    # two cell sizes: a slope but no interval; one (--levels 0): no slope. Neither prints nan
    import trainscape as ts
    from trainscape.viz.zoom import report_text

    d = ts.load(out).dimension
    assert np.isfinite(d["estimate"]) and np.isnan(d["ci_low"])
    assert f"dimension {d['estimate']:.3f}, no interval, which needs 3 cell sizes" in said
    assert "nan" not in said and "nan" not in text and "no interval" in text
    assert "; 1 level after level 0, margin 0 cells, outcome" in text  # --levels 1 --margin 0
    assert "over the 2 levels' cell sizes" in text
    assert main(["zoom", str(toml), "--levels", "0", "--out", str(tmp_path / "out0"),
                 "--no-progress", "--no-plot"]) == 0
    said = capsys.readouterr().out
    assert "dimension none: a slope needs 2 cell sizes, there is 1" in said and "nan" not in said
    assert "nan" not in report_text(ts.load(tmp_path / "out0"))


def test_a_zoom_without_boundary_says_so_and_names_only_the_folders_written(tmp_path, capsys):
    """Every run of level 0 diverges: no cell to refine, so only level-0/ is written, and
    there is no dimension to print or plot (no nan, no log of zero counts)."""
    import warnings

    from trainscape.cli.main import main

    toml = tmp_path / "z.toml"
    toml.write_text(
        'name = "all-diverge"\n[data]\nname = "moons"\nn_samples = 32\n[model]\nhidden = [4]\n'
        '[train]\nsteps = 8\n[sweep]\nlearning_rate = {geomspace = [1e4, 1e6], num = 3}\n'
        'init_scale = {linspace = [0.5, 3.0], num = 3}\n')
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["zoom", str(toml), "--levels", "2", "--out", str(out),
                     "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "nan" not in said and "(zoom.json, level-0/)" in said, said
    assert "no boundary at the finest level: every computed point is diverged" in said
    assert sorted(p.name for p in out.glob("level-*")) == ["level-0"]
    report = (out / "report.md").read_text()
    assert "nan" not in report and "Box-counting dimension: none, no boundary" in report
    import trainscape as ts

    back = ts.load(out)
    assert back.n_runs == 9 and back.boundary.empty


def test_a_zoom_folder_report_and_explore_refuse_what_they_cannot_write(tmp_path, capsys):
    """`report ZOOM --out`: a folder of four files, checked before drawing (a file, a path
    under a file, a name ending in .html, a folder holding someone else's report.md or
    figure, and --format html were tracebacks, or a folder named like a file); `explore
    ZOOM` names a level to explore (was an AttributeError)."""
    from trainscape.cli.main import main

    toml = tmp_path / "z.toml"
    toml.write_text(
        'name = "tiny-zoom"\n[data]\nname = "moons"\nn_samples = 32\n[model]\nhidden = [4]\n'
        '[train]\nsteps = 4\n[sweep]\nlearning_rate = {geomspace = [0.3, 300.0], num = 3}\n'
        'init_scale = {linspace = [0.5, 3.0], num = 3}\n')
    z = tmp_path / "z"
    assert main(["zoom", str(toml), "--levels", "1", "--out", str(z), "--no-progress"]) == 0
    capsys.readouterr()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "report.md").write_text("# their notes\n")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "zoom-map.png").write_bytes(b"theirs")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for args in (["--out", "afile"], ["--out", "afile/x"], ["--out", "new.html"],
                 ["--out", "nodir/x"], ["--out", "theirs"], ["--out", "figs"],
                 ["--format", "html"]):
        args = [a if a.startswith("--") or a == "html" else str(tmp_path / a) for a in args]
        assert main(["report", str(z), *args]) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert main(["explore", str(z)]) == 2
    assert "explore one level" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new.html").exists() and not (tmp_path / "nodir").exists()
    # its own report, again, and in a new folder
    assert main(["report", str(z)]) == 0
    assert main(["report", str(z), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "zoom-strip.png").is_file()
    assert main(["explore", str(z / "level-0")]) == 0


def test_a_zoom_refused_at_level_0_leaves_nothing_and_its_folder_usable(tmp_path, monkeypatch,
                                                                         capsys):
    """Input that level 0 refuses (a missing data file) leaves neither zoom.json nor a new
    folder, with --out and without; the same --out then takes the corrected zoom."""
    from trainscape.cli.main import main

    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "z.toml"
    toml.write_text(
        'name = "tiny-zoom"\n[data]\nname = "moons"\nn_samples = 32\n[model]\nhidden = [4]\n'
        '[train]\nsteps = 4\n[sweep]\nlearning_rate = {geomspace = [0.3, 300.0], num = 3}\n'
        'init_scale = {linspace = [0.5, 3.0], num = 3}\n')
    (tmp_path / "empty").mkdir()
    for out in (["--out", "new"], ["--out", "empty"], []):
        assert main(["zoom", str(toml), "--levels", "1", "--no-progress", *out,
                     "--set", "data.path=nosuch.csv"]) == 2
        assert "nosuch.csv" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty", "z.toml"]
    assert main(["zoom", str(toml), "--levels", "1", "--no-progress", "--no-plot",
                 "--out", "empty"]) == 0
    assert (tmp_path / "empty" / "level-1").is_dir()


def test_explicit_table_is_checked_before_anything_runs(tmp_path):
    import pandas as pd

    import trainscape as ts

    cfg = {**TINY, "sweep": {"learning_rate": [0.3, 300.0], "init_scale": [0.5, 3.0]}}
    good = pd.DataFrame({"run_id": [0, 1], "learning_rate": [0.3, 1.0], "init_scale": [1.0, 2.0]})
    with pytest.raises(ts.InputError, match="run_id must be"):
        ts.run(cfg, out=tmp_path / "a", table=good.assign(run_id=[1, 0]))
    with pytest.raises(ts.InputError, match="init_scale"):
        ts.run(cfg, out=tmp_path / "b", table=good.drop(columns="init_scale"))
    assert not any(tmp_path.iterdir())


def test_a_zoom_resumes_with_the_other_early_exit_value_and_nothing_else(tmp_path):
    """Early exit changes no result, so a zoom folder written with one value resumes with
    the other; any other change of the config is refused, naming the key."""
    from trainscape.errors import InputError
    from trainscape.sweep import zoom

    def settings(**train):
        raw = {"name": "z", "train": {"steps": 40, **train}}
        return zoom._settings(raw, [], 2, 2, "measure")

    zoom._write_state(tmp_path, settings(early_exit=True), [], False)
    zoom._open_folder(tmp_path, settings(early_exit=False), resume=True)
    zoom._open_folder(tmp_path, settings(), resume=True)
    with pytest.raises(InputError, match="holds a zoom of another config; resume it"):
        zoom._open_folder(tmp_path, settings(early_exit=False, steps=41), resume=True)


def test_a_refused_call_leaves_a_finished_zoom_as_it_was(tmp_path):
    """A resume refused at level 0 (bad data) or for its arguments rewrote zoom.json as an
    unfinished zoom with no levels, so the finished folder no longer loaded."""
    import trainscape as ts

    two_axes = {**TINY, "sweep": {"learning_rate": {"geomspace": [0.3, 300.0], "num": 3},
                                  "init_scale": {"linspace": [0.5, 3.0], "num": 3}}}
    out = tmp_path / "z"
    n = ts.zoom(two_axes, 1, out=out, progress=False).n_runs
    before = (out / "zoom.json").read_bytes()
    with pytest.raises(ts.InputError, match="resume: expected True or False"):
        ts.zoom(two_axes, 1, out=out, resume="no", progress=False)
    x, y = np.full((8, 2), np.nan), np.zeros(8)
    with pytest.raises(ts.InputError, match="NaN"):
        ts.zoom(two_axes, 1, out=out, resume=True, progress=False, data=(x, y))
    assert (out / "zoom.json").read_bytes() == before and ts.load(out).n_runs == n


def test_non_square_grid_finds_the_dense_boundary_and_fills_the_dense_map():
    """n != m: the level-0 points, the cells of every level and the lookup width follow each
    axis's own size; the filled image equals the dense map point by point."""
    n, m, levels = 5, 9, 3
    evaluate, dense = _oracle(circle, n, m, levels)
    assert dense.shape == (33, 65)
    ref = zg.zoom_plan(n, m, levels, 1, evaluate)
    assert ref.shape == dense.shape and ref.dense_runs == 33 * 65
    level0 = {(i, j) for i in range(0, 33, 8) for j in range(0, 65, 8)}
    assert {tuple(p) for p in ref.points[0]} == level0
    assert {tuple(c) for c in ref.finest_boundary} == _dense_boundary(dense)
    # every computed point is a lattice point; the image is the dense map everywhere
    pts = np.concatenate(ref.points)
    assert (pts[:, 0] < 33).all() and (pts[:, 1] < 65).all() and len(pts) == ref.n_runs
    np.testing.assert_array_equal(ref.image(), dense)
    transposed = zg.zoom_plan(m, n, levels, 1, _oracle(lambda x, y: circle(y, x), m, n,
                                                       levels)[0])
    assert {(b, a) for a, b in transposed.finest_boundary} == _dense_boundary(dense)


def test_outcomes_refuse_a_point_twice_and_an_unknown_point():
    out = zg.Outcomes(10)
    out.add(np.array([[0, 0], [1, 2]]), np.array([1, 0]))
    assert list(out.codes(np.array([[1, 2], [0, 0]]))) == [0, 1]
    with pytest.raises(ValueError, match="twice"):
        out.add(np.array([[1, 2]]), np.array([1]))
    with pytest.raises(ValueError, match="twice"):
        out.add(np.array([[3, 3], [3, 3]]), np.array([1, 1]))
    for unknown in ([[0, 1]], [[9, 9]], [[1, 1]]):
        with pytest.raises(KeyError):
            out.codes(np.array(unknown))


def test_box_counting_fit_against_ordinary_least_squares():
    """The dimension's slope and intercept (sizes as fractions of the map's side) on the
    counts of a circle's dense boundary, and the t-interval of the slope (textbook formulas)
    on counts off a straight line."""
    from scipy import stats

    n, levels = 17, 3
    evaluate, dense = _oracle(circle, n, n, levels)
    ref = zg.zoom_plan(n, n, levels, 1, evaluate)
    want = _dense_boundary(dense)
    sizes = np.array([8, 4, 2, 1])
    counts = np.array([len({(a // s, b // s) for a, b in want}) for s in sizes])
    x, y = np.log(128 / sizes), np.log(counts)  # the map is 128 finest cells wide
    d = ref.dimension()
    assert d["sizes"] == sizes.tolist() and d["counts"] == counts.tolist()
    assert d["estimate"] == pytest.approx(_ols_slope(x, y), rel=1e-12)
    assert d["intercept"] == pytest.approx(y.mean() - _ols_slope(x, y) * x.mean(), rel=1e-12)

    counts = np.array([3, 7, 12, 30])
    x, y = np.log(128 / sizes), np.log(counts)
    slope = _ols_slope(x, y)
    resid = y - y.mean() - slope * (x - x.mean())
    se = np.sqrt((resid**2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    for confidence in (0.95, 0.5):
        half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * se
        d = zg.fit_dimension(sizes, counts, 128, confidence)
        assert half > 0.05 and d["estimate"] == pytest.approx(slope, rel=1e-12)
        assert d["ci_low"] == pytest.approx(slope - half, rel=1e-12)
        assert d["ci_high"] == pytest.approx(slope + half, rel=1e-12)


def test_zoom_boundary_table_gives_each_cells_two_ends():
    """`Zoom.boundary`: a finest boundary cell (i, j) spans lattice points i .. i+1 and
    j .. j+1, at the dense grids' values (geomspace and linspace by their formulas)."""
    from trainscape.sweep.zoom import Zoom

    n, m, levels = 5, 9, 2
    axes = [zg.Axis("learning_rate", "geomspace", 0.3, 300.0, n),
            zg.Axis("init_scale", "linspace", 0.5, 3.0, m)]
    ref = zg.zoom_plan(n, m, levels, 1, _oracle(circle, n, m, levels)[0])
    b = Zoom({"levels": levels}, axes, None, [], ref, None).boundary
    assert len(b) == len(ref.finest_boundary) > 0
    assert list(b.columns) == ["i", "j", "learning_rate_low", "learning_rate_high",
                               "init_scale_low", "init_scale_high"]
    i, j = b["i"].to_numpy(), b["j"].to_numpy()
    assert {(a, c) for a, c in zip(i, j, strict=True)} == {tuple(c) for c in ref.finest_boundary}
    lr = 0.3 * 1000.0 ** (np.arange(17) / 16)
    sc = 0.5 + 2.5 * np.arange(33) / 32
    np.testing.assert_allclose(b["learning_rate_low"], lr[i], rtol=1e-15)
    np.testing.assert_allclose(b["learning_rate_high"], lr[i + 1], rtol=1e-15)
    np.testing.assert_allclose(b["init_scale_low"], sc[j], rtol=1e-15)
    np.testing.assert_allclose(b["init_scale_high"], sc[j + 1], rtol=1e-15)


def test_zoom_arguments_are_checked():
    from trainscape.errors import InputError
    from trainscape.sweep import zoom

    zoom._check_args(20, 0, "label")
    zoom._check_args(0, 3, "measure")
    for levels, margin, by, match in ((21, 2, "diverged", "at most 20"),
                                      (-1, 2, "diverged", "levels"),
                                      (2, -1, "diverged", "margin"),
                                      (True, 2, "diverged", "levels"),
                                      (2, 2, "loss", "by")):
        with pytest.raises(InputError, match=match):
            zoom._check_args(levels, margin, by)


@pytest.mark.parametrize("key, value", [("levels", 3), ("margin", 1), ("by", "label"),
                                        ("axes", [])])
def test_a_zoom_resumes_only_with_the_same_settings(tmp_path, key, value):
    from trainscape.errors import InputError
    from trainscape.sweep import zoom

    axes = [zg.Axis("learning_rate", "geomspace", 0.3, 300.0, 5),
            zg.Axis("init_scale", "linspace", 0.5, 3.0, 5)]
    settings = zoom._settings({"name": "z"}, axes, 2, 2, "diverged")
    zoom._write_state(tmp_path, settings, [], False)
    zoom._open_folder(tmp_path, settings, resume=True)
    made = re.escape(f"made with {key} = {settings[key]!r} (here {value!r}); resume it")
    with pytest.raises(InputError, match=made):
        zoom._open_folder(tmp_path, {**settings, key: value}, resume=True)
    with pytest.raises(InputError, match="not finished"):
        zoom.load(tmp_path)


def test_dilate_is_the_chebyshev_square_clipped_to_the_level():
    """`dilate` against a scan of every cell of the level: the cells within `margin` of one
    given cell in both axes (each side, the edges clipped), for margins 0 to 3."""
    shape = (7, 11)
    given = np.array([[0, 0], [3, 5], [6, 9], [3, 6]])
    for margin in range(4):
        want = {(a, b) for a in range(shape[0]) for b in range(shape[1])
                if any(max(abs(a - p), abs(b - q)) <= margin for p, q in given)}
        got = zg.dilate(given, margin, shape)
        assert len(got) == len(want) and {tuple(c) for c in got} == want
        assert [tuple(c) for c in got] == sorted(want)  # unique rows in (a, b) order


def test_box_counts_against_a_scan_of_the_boxes():
    """`box_counts` against the set of boxes (a // s, b // s) a cell falls in, on cells at the
    ends of both axes (a box in the last column next to one in the first of the next row)."""
    cells = np.array([[0, 7], [1, 0], [3, 7], [4, 0], [4, 1], [2, 3]])
    sizes = [1, 2, 4, 8]
    want = [len({(a // s, b // s) for a, b in cells}) for s in sizes]
    assert want == [6, 5, 3, 1]
    assert zg.box_counts(cells, sizes).tolist() == want


def test_box_counting_fit_on_two_sizes():
    """Two sizes: the slope and intercept of the line through the two points, and no interval
    (no degree of freedom is left for the slope's standard error)."""
    d = zg.fit_dimension([2, 1], [3, 7], 8)
    assert d["estimate"] == pytest.approx(np.log(7 / 3) / np.log(2), rel=1e-12)
    assert d["intercept"] == pytest.approx(np.log(3) - 2 * np.log(7 / 3), rel=1e-12)
    assert np.isnan(d["ci_low"]) and np.isnan(d["ci_high"])


def test_dense_boundary_against_the_scan_of_every_cell():
    """`dense_boundary` equals the independent scan, on maps where a cell's corners differ
    only across a diagonal (a single point of another outcome, and a checkerboard corner)."""
    dot = np.zeros((4, 5), np.int64)
    dot[2, 3] = 1
    checker = np.indices((3, 3)).sum(axis=0) % 2
    for codes in (dot, checker, _oracle(circle, 9, 9, 0)[1]):
        got = {tuple(c) for c in zg.dense_boundary(codes)}
        assert got == _dense_boundary(codes) and len(got) == len(zg.dense_boundary(codes))
    assert {tuple(c) for c in zg.dense_boundary(dot)} == {(1, 2), (1, 3), (2, 2), (2, 3)}


def test_convergence_measure_trainable_only_when_the_last_tail_averages_below_one():
    """The mean of exactly the last `tail` normalized losses decides: a mean of exactly 1 is
    not trainable, and a large loss just before the tail does not count."""
    from trainscape.sweep.zoom import convergence_measure

    loss = np.array([[2.0, 1.0, 2.0, 2.0],  # v = 1, .5, 1, 1: tail mean 1, untrainable
                     [2.0, 8.0, 1.0, 1.0],  # v = 1, 4, .5, .5: tail mean .5 (with 4: 1.67)
                     [4.0, 0.5, 5.0, 5.0]])  # v = 1, 1/8, 1.25, 1.25: 1.25 (with 1/8: .875)
    want = [1 + 2 + 1 + 1, -(1 + 4 + 0.5 + 0.5), 1 + 8 + 0.8 + 0.8]
    np.testing.assert_allclose(convergence_measure(loss, tail=2), want, rtol=1e-14)
