"""What a new user meets first: caller arrays and [data] standardize, heatmap titles and ticks,
Flax and Equinox models, output-shape checks, config-relative paths, the CLI's small facts.
Networks are tiny and steps few: every distinct config costs a compile."""

import itertools

import numpy as np
import pytest
from configs import with_sections as _with

import trainscape as ts
from trainscape.viz import report

TINY = {"model": {"hidden": [4]}, "loss": {"name": "bce"},
        "train": {"steps": 5, "dtype": "float64"}, "sweep": {"learning_rate": [0.5]}}


@pytest.fixture(scope="module")
def raw_data():
    rng = np.random.default_rng(0)
    x = 100.0 * rng.standard_normal((40, 3)) + 7.0
    y = (x[:, 0] > 7.0).astype(np.float64)
    return x, y


def _losses(res):
    return res.curves.sort_values(["run_id", "step"])["loss"].to_numpy()


def test_caller_arrays_are_standardized_as_the_config_says(raw_data):
    """`[data] standardize` applies to `data=(x, y)`: the run on raw x equals the run on x
    standardized by hand (NumPy, population std) with standardize off, and the meta and the
    report's data row say which was done."""
    x, y = raw_data
    on = ts.run(TINY, data=(x, y), out=None, progress=False)
    off = ts.run(_with(TINY, data={"standardize": False}), data=(x, y), out=None,
                 progress=False)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    by_hand = ts.run(_with(TINY, data={"standardize": False}), data=(z, y), out=None,
                     progress=False)
    np.testing.assert_allclose(_losses(on), _losses(by_hand), rtol=1e-12)
    assert not np.allclose(_losses(on), _losses(off))
    assert on.config.data.standardize is True and off.config.data.standardize is False
    assert on.meta["data"]["standardized"] is True
    assert off.meta["data"]["standardized"] is False
    rows = dict(report._environment_rows(on))
    assert "standardized" in rows["data"] and "caller arrays" in rows["data"]
    assert "as given" in dict(report._environment_rows(off))["data"]


def test_values_beyond_the_training_dtype_are_refused_in_one_line(raw_data, tmp_path, capsys):
    """A float32 network would see inf (x of 1e40, an mse target of 1e40): refused, naming the
    array, the dtype and a way out; standardized, the same x trains (float32 and float64)."""
    from trainscape.cli.main import main
    from trainscape.errors import DataError

    x, y = raw_data
    f32 = _with(TINY, train={"dtype": "float32", "steps": 2})
    raw = _with(f32, data={"standardize": False})
    cases = [
        (raw, {"data": (x * 1e38, y)}, r"^x of data=\(x, y\): a value of magnitude 2\.\d+e\+40, "
         r"beyond float32's range \(largest 3\.4e\+38\); standardize them \(\[data\] "
         r"standardize = true\) or rescale them$"),
        (raw, {"data": (x, y), "test_data": (x[:5] * 1e38, y[:5])},
         r"^x of test_data=\(x, y\): .* float32's range"),
        (_with(f32, loss={"name": "mse"}), {"data": (x, y * 1e39 + 1)},
         r"^y of data=\(x, y\): a value of magnitude 1e\+39, .*; rescale them$"),
        (_with(f32, data={"name": "teacher", "noise": 1e200}, loss={"name": "mse"}), {},
         r"^dataset 'teacher': .*; give a smaller \[data\] noise$"),
    ]
    for cfg, kw, match in cases:
        with pytest.raises(DataError, match=match):
            ts.run(cfg, **kw, out=None, progress=False)
    for dtype in ("float32", "float64"):
        res = ts.run(_with(f32, train={"dtype": dtype}), data=(x * 1e38, y), out=None,
                     progress=False)
        assert np.isfinite(res.runs["final_loss"]).all()
    # from a file: exit 2, one line naming the file, nothing written
    pd = pytest.importorskip("pandas")
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": x[:, 0] * 1e38, "b": x[:, 1], "y": y}).to_csv(path, index=False)
    conf = tmp_path / "c.toml"
    conf.write_text(f"[data]\npath = '{path}'\nstandardize = false\n[model]\nhidden = [4]\n"
                    "[train]\nsteps = 2\n[sweep]\nlearning_rate = [0.5]\n")
    out = tmp_path / "out"
    assert main(["run", str(conf), "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"trainscape: error: the features of data file '{path}': a value of "
                           "magnitude 2.") and "float32" in line


def _dense_model(d_out):
    import jax
    import jax.numpy as jnp

    def init(key):
        return {"w": jax.random.normal(key, (3, d_out), jnp.float64)}

    def apply(params, x):
        return x @ params["w"]

    return ts.Model(init=init, apply=apply)


@pytest.mark.parametrize("loss, d_out, want", [
    ("bce", 3, "(40, 1) or (40,)"), ("mse", 2, "(40, 1) or (40,)"),
    ("cross_entropy", 1, "K >= 2")])
def test_custom_model_output_shape_is_checked_before_compiling(raw_data, loss, d_out, want):
    x, y = raw_data
    if loss == "cross_entropy":
        y = y.astype(np.int64)
    cfg = _with(TINY, loss={"name": loss})
    with pytest.raises(ts.InputError) as err:
        ts.run(cfg, data=(x, y), model=_dense_model(d_out), out=None, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("model=") and want in msg
    assert f"(40, {d_out})" in msg


def test_custom_model_of_the_right_shape_passes_the_check(raw_data):
    x, y = raw_data
    res = ts.run(TINY, data=(x, y), model=_dense_model(1), out=None, progress=False)
    assert len(res.runs) == 1


def _f(*args):
    return args[0]


@pytest.mark.parametrize("args, kwargs, match", [
    ((1, 2), {}, "ts.Model init: got 1; expected a function init"),
    ((None, _f), {}, "ts.Model init: got None"),
    ((_f, "x @ w"), {}, "ts.Model apply: got 'x @ w'; expected a function apply"),
    ((_f, _f), {"transposed_input": True}, "ts.Model transposed_input: got True; expected a "
                                           "function transposed_input"),
    ((_f, _f), {"apply_dropout": 3}, "ts.Model apply_dropout: got 3"),
    ((_f, _f), {"layer_names": "ab"}, "ts.Model layer_names: got 'ab'; expected a tuple or list "
                                      "of strings"),
    ((_f, _f), {"layer_names": ["a", 1]}, r"ts.Model layer_names: got \['a', 1\]"),
    ((_f, _f), {"layer_names": ["a", "a"]}, "names must be distinct \\('a' repeated\\)"),
])
def test_model_fields_are_checked_when_it_is_made(args, kwargs, match):
    with pytest.raises(ts.InputError, match=match) as err:
        ts.Model(*args, **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ts.InputError, match=match):  # _replace makes a Model the same way
        ts.Model(_f, _f)._replace(**dict(zip(("init", "apply"), args, strict=True)), **kwargs)


def test_model_layer_names_list_is_kept_as_a_tuple():
    m = ts.Model(_f, _f, layer_names=["a", "b"])
    assert m.layer_names == ("a", "b") and hash(m) == hash(ts.Model(_f, _f, None, None, ("a", "b")))


def _model_of(*shapes, dtype="float64", layer_names=None):
    import jax.numpy as jnp

    return ts.Model(init=lambda key: [jnp.zeros(s, dtype) for s in shapes],
                    apply=lambda p, x: x @ p[0], layer_names=layer_names)


@pytest.mark.parametrize("model, init_params, match", [
    (_model_of((3, 1)), [np.array([["a"], ["b"], ["c"]])], r"init_params=: \[0\] has dtype str"),
    (_model_of((3, 1)), [np.ones((3, 1)) * 1j], r"init_params=: \[0\] has dtype complex128"),
    (_model_of((3, 1), dtype="complex64"), None, r"model=: init\(key\) \[0\] has dtype complex64"),
    (_model_of((3, 1), (1,), layer_names=["a", "b", "c"]), None,
     r"layer_names has 3 names \('a', 'b', 'c'\); the params have 2 top-level entries"),
    # an init that fails is said in one line (its dtype check must not run it first)
    (ts.Model(init=lambda key: 1 / 0, apply=lambda p, x: x), None,
     r"model=: apply\(init\(key\), x\) fails .*ZeroDivisionError"),
])
def test_params_that_are_not_real_numbers_or_misnamed_are_refused(raw_data, model, init_params,
                                                                   match):
    x, y = raw_data
    with pytest.raises(ts.InputError, match=match) as err:
        ts.run(TINY, data=(x, y), model=model, init_params=init_params, out=None,
               progress=False)
    assert "\n" not in str(err.value)


def _gd_per_layer(params, x, y, lrs, steps, loss):
    """NumPy full-batch gradient descent with one learning rate per layer: losses 0..steps."""
    from numpy_mlp import loss_and_grads

    p = [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in params]
    curve = []
    for _ in range(steps):
        value, g = loss_and_grads(p, x, y, loss, "tanh")
        curve.append(value)
        for layer, gl, lr in zip(p, g, lrs, strict=True):
            for k in layer:
                layer[k] -= lr * gl[k]
    curve.append(loss_and_grads(p, x, y, loss, "tanh")[0])
    return np.array(curve)


def _per_layer_sweep(model, init_params, np_params, raw_data):
    x, y = raw_data
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    cfg = _with(TINY, data={"standardize": False},
                sweep={"learning_rate.0": [0.05, 2.0], "learning_rate.1": [0.3]})
    res = ts.run(cfg, data=(x, y), model=model, init_params=init_params, out=None,
                 progress=False)
    for _, run in res.runs.iterrows():
        lrs = (run["learning_rate.0"], run["learning_rate.1"])
        got = res.curves[res.curves.run_id == run["run_id"]].sort_values("step")["loss"]
        np.testing.assert_allclose(got.to_numpy(), _gd_per_layer(np_params, x, y, lrs, 5, "bce"),
                                   rtol=1e-10)
    return res


def test_flax_model_layers_in_creation_order_with_per_layer_learning_rates(raw_data):
    """learning_rate.K trains the K-th layer the module creates (names chosen so that sorted
    order differs), each run equal to NumPy gradient descent with those per-layer rates."""
    jnp = pytest.importorskip("jax.numpy")
    nn = pytest.importorskip("flax.linen")
    import jax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = jnp.tanh(nn.Dense(4, name="z_in", param_dtype=jnp.float64)(x))
            return nn.Dense(1, name="a_out", param_dtype=jnp.float64)(h)

    model = ts.Model.from_flax(Net(), raw_data[0])
    assert model == ts.Model.from_flax(Net(), raw_data[0])  # compiled programs are reused
    assert model.layer_names == ("z_in", "a_out")
    with jax.enable_x64(True):
        params = model.init(jax.random.PRNGKey(3))
    np_params = [{"w": np.asarray(p["kernel"]), "b": np.asarray(p["bias"])} for p in params]
    assert np_params[0]["w"].shape == (3, 4)
    res = _per_layer_sweep(model, params, np_params, raw_data)
    assert res.meta["learning_rate_entries"] == {"learning_rate.0": "z_in (bias 4, kernel 3x4)",
                                                 "learning_rate.1": "a_out (bias 1, kernel 4x1)"}
    cfg = _with(TINY, sweep={"learning_rate.2": [0.1]})
    with pytest.raises(ts.ConfigError, match=r"learning_rate.1 = a_out \(bias 1, kernel 4x1\)"):
        ts.run(cfg, data=raw_data, model=model, out=None, progress=False)


def test_equinox_model_arrays_trained_rest_static_per_layer_rates(raw_data):
    """An eqx.nn.MLP (activation and sizes static, a layer per element of .layers): per-layer
    runs equal NumPy gradient descent; a function key -> module draws each seed's weights."""
    eqx = pytest.importorskip("equinox")
    import jax
    import jax.numpy as jnp

    def make(key):
        return eqx.nn.MLP(3, "scalar", 4, 1, activation=jnp.tanh, dtype=jnp.float64, key=key)

    with jax.enable_x64(True):
        mlp = make(jax.random.PRNGKey(5))
    fixed = ts.Model.from_equinox(mlp)
    assert fixed.layer_names == ("layers[0]", "layers[1]")
    np_params = [{"w": np.asarray(layer.weight).T, "b": np.asarray(layer.bias)}
                 for layer in mlp.layers]
    res = _per_layer_sweep(fixed, None, np_params, raw_data)
    assert res.meta["learning_rate_entries"] == {
        "learning_rate.0": "layers[0] (weight 4x3, bias 4)",
        "learning_rate.1": "layers[1] (weight 1x4, bias 1)"}

    drawn = ts.Model.from_equinox(make)
    assert drawn == ts.Model.from_equinox(make)
    x, y = raw_data
    seeds = ts.run(_with(TINY, sweep={"seed": [0, 1]}), data=(x, y), model=drawn, out=None,
                   progress=False)
    first = seeds.curves[seeds.curves.step == 0].sort_values("run_id")["loss"].to_numpy()
    assert first[0] != first[1]  # each run's weights from its own seed


def test_relative_data_path_is_read_from_the_config_files_folder(tmp_path, monkeypatch):
    """`[data] path = "d.csv"` in sub/exp.toml reads sub/d.csv whatever the current folder."""
    sub = tmp_path / "sub"
    sub.mkdir()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2))
    lines = ["a,b,y"] + [f"{float(a)!r},{float(b)!r},{i % 2}" for i, (a, b) in enumerate(x)]
    (sub / "d.csv").write_text("\n".join(lines) + "\n")
    (sub / "exp.toml").write_text('[data]\npath = "d.csv"\nstandardize = false\n')
    monkeypatch.chdir(tmp_path)  # d.csv is not here
    exp = ts.parse("sub/exp.toml")
    assert exp.data.path == str(sub / "d.csv")
    got_x, got_y = ts.load_dataset(exp.data)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, np.arange(6) % 2)


def test_gradcheck_imports_a_module_from_the_current_folder(tmp_path, monkeypatch, capsys):
    """`trainscape gradcheck mynet` where mynet.py is: the console script's sys.path does not
    hold the current folder, so it must be added for the import (as python -m does)."""
    import sys

    from trainscape.cli.main import main

    (tmp_path / "nu_mynet.py").write_text(
        "import numpy as np\n"
        "def loss(p, x, y):\n    return float(np.sum((x @ p['w'] - y) ** 2))\n"
        "def grads(p, x, y):\n    return {'w': 2 * x.T @ (x @ p['w'] - y)}\n"
        "def example():\n    rng = np.random.default_rng(0)\n"
        "    return {'w': rng.standard_normal(3)}, rng.standard_normal((5, 3)), np.ones(5)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "nu_mynet", raising=False)
    assert main(["gradcheck", "nu_mynet"]) == 0, capsys.readouterr().err
    assert str(tmp_path) not in sys.path  # put back as it was


def test_version_flag(capsys):
    from trainscape.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"trainscape {ts.__version__}"


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_resume_says_how_many_runs_were_reused_and_computed(tmp_path, monkeypatch, capsys):
    """Stopped after 1 of 2 chunks (as Ctrl+C would), `--resume` says 64 runs were saved and
    64 remain before computing, and 64 reused / 64 computed at the end."""
    from trainscape.cli.main import main
    from trainscape.io import store

    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "nu"\n[data]\nname = "moons"\nn_samples = 16\n[model]\nhidden = [2]\n'
                   '[train]\nsteps = 2\n[sweep]\nseed = {range = 128}\n')
    out = tmp_path / "out"
    real = store.Store.save_chunk

    def save_then_stop(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(store.Store, "save_chunk", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            ts.run(str(cfg), out=out, chunk_size=64, progress=False)
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-plot"]) == 0
    got = capsys.readouterr()
    assert "resuming: 64 of 128 runs are saved (1 chunk), 64 to compute" in got.err
    assert "resumed: 64 runs reused from the saved chunks, 64 computed now" in got.out


# ------------------------------------------------------------------------ heatmaps


def _lr_scale_seed_runs(lrs, scales=(0.5, 1.0, 2.0, 4.0), seeds=range(4)):
    """One oscillating (init_scale, lr) pair among converged runs: the pooled map's trap."""
    import pandas as pd

    rows = []
    for i, lr in enumerate(lrs):
        for scale in scales:
            for s in seeds:
                odd = scale == 1.0 and i == len(lrs) - 2
                rows.append(dict(learning_rate=float(lr), init_scale=scale, seed=s,
                                 label="oscillating" if odd else "converged"))
    return pd.DataFrame(rows)


def test_summary_heatmap_title_says_how_cells_pool_and_shows_disagreement(tmp_path):
    """`trainscape run`'s heatmap of lr x init_scale x seed: init_scale on y (seeds pooled),
    a title naming the pooling, and a cell whose runs disagree marked."""
    import matplotlib.pyplot as plt

    from trainscape.viz import plots, summary

    runs = _lr_scale_seed_runs(np.geomspace(1e-3, 10, 6))
    # a cell of lr x seed pooling init_scale holds 3 converged and 1 oscillating run
    ax = plots.label_heatmap(runs, "learning_rate", "seed", pooled=["init_scale"])
    assert ax.get_title() == "majority label of 4 runs per cell, pooled over init_scale"
    dots = [ln for ln in ax.get_lines() if ln.get_gid() == "disagree"]
    assert len(dots) == 1 and len(dots[0].get_xdata()) == 4  # lr 3.98, every seed
    np.testing.assert_allclose(dots[0].get_xdata(), np.geomspace(1e-3, 10, 6)[4])
    assert "runs disagree" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")
    # cells that agree get no dot
    ax = plots.label_heatmap(runs, "learning_rate", "init_scale", pooled=["seed"])
    assert not [ln for ln in ax.get_lines() if ln.get_gid() == "disagree"]
    plt.close("all")

    res = ts.run({"name": "pool", "data": {"name": "moons", "n_samples": 16},
                  "model": {"hidden": [2]}, "train": {"steps": 2},
                  "sweep": {"learning_rate": [0.1, 1.0], "init_scale": [0.5, 1.0],
                            "seed": {"range": 2}}}, out=None, progress=False)
    seen = {}
    real = plots.label_heatmap

    def spy(counts, **kw):
        ax = real(counts, **kw)
        seen.update(kw, ax=ax)
        return ax

    plots.label_heatmap = spy
    try:
        summary.write_figures(res, tmp_path)
    finally:
        plots.label_heatmap = real
    assert (seen["x"], seen["y"], list(seen["pooled"])) == ("learning_rate", "init_scale",
                                                            ["seed"])
    assert seen["ax"].get_title() == "pool: majority label of 2 runs per cell, pooled over seed"


@pytest.mark.parametrize("num, figsize", [(12, (7.5, 4.5)), (12, (3.5, 2.5)), (9, (7, 4))])
def test_log_axis_labels_decades_and_both_ends(num, figsize):
    """geomspace [1e-3, 10] of 12 was labelled 1e-3, 0.0285, 0.811: neither 10 nor a decade.
    Now: the ends always, powers of ten between them (thinned only when labels would
    overlap), and unlabelled minor ticks at 2..9 x 10^k."""
    import matplotlib.pyplot as plt

    from trainscape.viz import plots

    lo, hi = (1e-3, 10.0) if num == 12 else (3e-3, 30.0)
    lrs = np.geomspace(lo, hi, num)
    runs = _lr_scale_seed_runs(lrs, scales=(1.0,))
    fig, ax = plt.subplots(figsize=figsize, dpi=150, layout="constrained")
    plots.label_heatmap(runs, "learning_rate", "seed", ax=ax)
    fig.canvas.draw()
    ticks = ax.get_xticks()
    shown = ticks[(ticks >= lrs[0] * (1 - 1e-9)) & (ticks <= lrs[-1] * (1 + 1e-9))]
    assert shown[0] == pytest.approx(lo) and shown[-1] == pytest.approx(hi)
    inner = shown[1:-1]
    np.testing.assert_allclose(np.log10(inner), np.round(np.log10(inner)), atol=1e-12)
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels[0] == plots._fmt(lo) and labels[-1] == plots._fmt(hi)
    assert len(labels) >= 3
    if figsize == (7.5, 4.5):
        assert labels == ["1e-3", "0.01", "0.1", "1", "10"]
    boxes = sorted((b.x0, b.x1) for b in (t.get_window_extent() for t in ax.get_xticklabels()
                                          if t.get_text()))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(boxes))  # no overlap
    minor = ax.xaxis.get_minorticklocs()
    assert np.any(np.isclose(minor, 2.0)) and np.any(np.isclose(minor, 0.005))
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())


def test_linear_grid_axis_labels_both_ends():
    import matplotlib.pyplot as plt

    from trainscape.viz import plots

    runs = _lr_scale_seed_runs([0.1, 1.0], scales=(1.0,), seeds=range(16))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=150, layout="constrained")
    plots.label_heatmap(runs, "learning_rate", "seed", ax=ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels[0] == "0" and labels[-1] == "15"


def test_a_module_passed_as_model_names_the_adapters(raw_data):
    class Module:  # what a Flax or Equinox module passed as it is looks like to trainscape
        pass

    with pytest.raises(ts.InputError, match=r"got Module .*ts.Model.from_equinox\(module\)"):
        ts.run(TINY, data=raw_data, model=Module(), out=None, progress=False)


def test_summary_heatmap_draws_a_geometric_width_axis_on_a_log_scale(tmp_path, monkeypatch):
    """`trainscape run`'s heatmap of lr x width (64 .. 1024, 1.2 decades): width on a log
    axis, so every width gets a row of the same height (it was linear: 64 and 128 a few
    pixels); seeds stay linear (names, not magnitudes)."""
    from trainscape.viz import plots, summary

    res = ts.run({"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [4]},
                  "train": {"steps": 2},
                  "sweep": {"learning_rate": [0.1, 1.0], "width": [2, 4, 8, 16]}},
                 out=None, progress=False)
    seen = {}
    real = plots.label_heatmap
    monkeypatch.setattr(plots, "label_heatmap",
                        lambda counts, **kw: seen.update(kw) or real(counts, **kw))
    summary.write_figures(res, tmp_path)
    assert seen["y"] == "width" and seen["log_y"] is True
    import pandas as pd

    assert plots.geometric(pd.DataFrame({"seed": [1, 2, 4, 8]}), "seed") is None
    assert plots.geometric(pd.DataFrame({"w": [64, 128, 256, 512]}), "w") is True
    assert plots.geometric(pd.DataFrame({"w": [64, 128, 192, 256]}), "w") is None


def test_summary_heatmap_of_a_single_axis_is_a_strip(tmp_path):
    """`trainscape run` of a learning-rate sweep alone drew its one row of cells 4.5 inches
    tall, like a map with a second axis; it is a strip, under half as tall as it is wide."""
    from PIL import Image

    from trainscape.viz import summary

    res = ts.run({"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [2]},
                  "train": {"steps": 2}, "sweep": {"learning_rate": [0.01, 0.1, 1.0]}},
                 out=None, progress=False)
    assert tmp_path / "heatmap.png" in summary.write_figures(res, tmp_path)
    width, height = Image.open(tmp_path / "heatmap.png").size
    assert height < 0.4 * width
