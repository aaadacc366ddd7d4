"""Beyond one network: per-layer learning rates, custom models, optimizer axes, mini-batches,
dropout, parameterizations and precision, each against a hand-written NumPy reference (float64)
or an exact identity. Networks are tiny and steps few: every distinct config costs a compile."""

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpy_mlp import loss_and_grads

import trainscape as ts
from trainscape.analysis.compare import compare, compare_dtypes, format_summary
from trainscape.cli.commands import compare_precision
from trainscape.nn.models import mlp_init

N, D = 8, 3
RTOL = 1e-10


@pytest.fixture(scope="module")
def reg():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, D))
    y = np.sin(x @ rng.standard_normal(D)) + 0.1 * rng.standard_normal(N)
    return x, y


def mlp_params(rng, sizes, bias=True):
    params = []
    for fi, fo in zip(sizes[:-1], sizes[1:], strict=True):
        layer = {"w": rng.standard_normal((fi, fo)) / math.sqrt(fi)}
        if bias:
            layer["b"] = 0.1 * rng.standard_normal(fo)
        params.append(layer)
    return params


def sweep(cfg, data, init_params=None, model=None):
    base = {"data": {"standardize": False}, "loss": {"name": "mse"},
            "train": {"dtype": "float64"}}
    for k, v in cfg.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) and k != "sweep" else v
    return ts.run(base, data=data, init_params=init_params, model=model, out=None,
                  progress=False)


def curves_by_run(res) -> dict[int, np.ndarray]:
    c = res.curves.sort_values(["run_id", "step"])
    return {rid: g["loss"].to_numpy() for rid, g in c.groupby("run_id")}


def copy_params(params):
    return [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in params]


def np_gd(params, x, y, lrs, steps, activation="tanh", mults=None):
    """Full-batch GD on mse with a learning rate per layer and optional forward multipliers
    (the network computes with w * mults[l]; the gradient of w is mults[l] x that of w * m)."""
    p = copy_params(params)
    mults = mults or [1.0] * len(p)
    curve = []
    for t in range(steps + 1):
        eff = [{**layer, "w": layer["w"] * m} for layer, m in zip(p, mults, strict=True)]
        value, g = loss_and_grads(eff, x, y, "mse", activation)
        curve.append(value)
        if t == steps:
            break
        for layer, gl, lr, m in zip(p, g, lrs, mults, strict=True):
            layer["w"] = layer["w"] - lr * m * gl["w"]
            if "b" in layer:
                layer["b"] = layer["b"] - lr * gl["b"]
    return np.array(curve)


# ------------------------------------------------------------ per-layer learning rates


def test_per_layer_learning_rates(reg):
    x, y = reg
    params = mlp_params(np.random.default_rng(0), (D, 4, 1))
    model = {"hidden": [4], "activation": "tanh"}
    steps, lr = 6, 0.3  # the steps of the mini-batch test below: one compiled program
    glob = sweep({"model": model, "train": {"steps": steps},
                  "sweep": {"learning_rate": [lr]}}, (x, y), params)
    per = sweep({"model": model, "train": {"steps": steps},
                 "sweep": {"learning_rate.0": [0.0, lr], "learning_rate.1": [0.0, lr]}},
                (x, y), params)
    assert {"learning_rate.0", "learning_rate.1"} <= set(per.runs.columns)
    cg = curves_by_run(glob)[0]
    cp = curves_by_run(per)
    for rid, row in per.runs.set_index("run_id").iterrows():
        lrs = [row["learning_rate.0"], row["learning_rate.1"]]
        if lrs == [lr, lr]:
            np.testing.assert_array_equal(cp[rid], cg)  # same arithmetic, bit for bit
        np.testing.assert_allclose(cp[rid], np_gd(params, x, y, lrs, steps), rtol=RTOL)
    frozen = per.runs[(per.runs["learning_rate.0"] == 0) & (per.runs["learning_rate.1"] == 0)]
    assert np.all(cp[int(frozen["run_id"].iloc[0])] == cg[0])


def test_per_entry_learning_rates_of_a_dict_follow_its_sorted_keys():
    """`learning_rate.K` of a dict of parameters is the K-th key in sorted order (the order JAX
    flattens dicts in), not the order the dict was built in; the step is -lr_K x gradient."""
    from trainscape.nn import optim

    params = {"z": jnp.ones(2), "a": jnp.ones(3)}
    grads = {"z": jnp.full(2, 2.0), "a": jnp.full(3, 4.0)}
    hp = {"learning_rate": 1.0, "learning_rate.0": 0.5, "learning_rate.1": 0.25,
          "weight_decay": 0.0}
    for schedule in ("constant", "cosine"):  # at update 0 the cosine's rate is its peak
        opt = optim.make_optimizer("sgd", hp, 2, schedule=schedule, steps=4)
        upd, _ = opt.update(grads, opt.init(params), params)
        np.testing.assert_array_equal(np.asarray(upd["a"]), np.full(3, -0.5 * 4.0))
        np.testing.assert_array_equal(np.asarray(upd["z"]), np.full(2, -0.25 * 2.0))


def test_a_learning_rate_axis_that_trains_no_entry_is_refused():
    """With learning_rate.0 and learning_rate.1 on a 2-layer MLP, the learning_rate axis's
    runs differed in name only and the report described each of its values as its own
    learning rate. Refused unless some entry (of the deepest network) trains at it; a
    single value is the config's learning rate, unused, as `optimizer.learning_rate` is."""
    from trainscape.errors import ConfigError
    from trainscape.sweep.prepare import Prepared

    base = {"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [4]},
            "sweep": {"learning_rate": [0.1, 1.0], "learning_rate.0": [0.1],
                      "learning_rate.1": [0.5, 1.0]}}
    with pytest.raises(ConfigError, match=r"^sweep.learning_rate: learning_rate.0, "
                                          r"learning_rate.1 give every parameter entry"):
        ts.run(base, out=None, progress=False)
    deeper = {**base, "sweep": {**base["sweep"], "depth": [1, 2]}}
    assert Prepared(ts.parse(deeper)).shared_lr_entries == [2]  # depth 2's last layer
    fewer = {**base, "sweep": {"learning_rate": [0.1, 1.0], "learning_rate.1": [0.5]}}
    assert Prepared(ts.parse(fewer)).shared_lr_entries == [0]


# ------------------------------------------------------------ custom model


def _my_init(key):
    k0, k1 = jax.random.split(key)
    return [{"w": jax.random.normal(k0, (2, 5), jnp.float64), "b": jnp.zeros(5, jnp.float64)},
            {"w": jax.random.normal(k1, (5, 1), jnp.float64), "b": jnp.zeros(1, jnp.float64)}]


def _my_apply(params, x):
    h = jnp.tanh(x @ params[0]["w"] + params[0]["b"])
    return h @ params[1]["w"] + params[1]["b"]


def test_custom_model_reimplementing_the_mlp_gives_the_same_table():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float64)
    params = mlp_params(rng, (2, 5, 1))
    cfg = {"model": {"hidden": [5]}, "loss": {"name": "bce"}, "train": {"steps": 8},
           "sweep": {"learning_rate": [0.1, 3.0, 30.0], "learning_rate.1": [0.5, 5.0]}}
    built = sweep(cfg, (x, y), params)
    custom = sweep(cfg, (x, y), params, model=ts.Model(init=_my_init, apply=_my_apply))
    assert "final_accuracy" in custom.runs.columns
    assert built.runs["label"].nunique() > 1  # the grid exercises more than one label
    pd.testing.assert_frame_equal(custom.runs, built.runs, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(custom.curves, built.curves, check_exact=False, rtol=1e-12)


# ------------------------------------------------------------ mini-batches


def test_minibatch_of_n_equals_full_batch_and_seeds_reorder(reg):
    x, y = reg
    params = mlp_params(np.random.default_rng(1), (D, 4, 1))
    cfg = {"model": {"hidden": [4]}, "train": {"steps": 6},
           "sweep": {"learning_rate": [0.2], "seed": [0, 1]}}
    full = curves_by_run(sweep(cfg, (x, y), params))
    whole = curves_by_run(sweep({**cfg, "train": {"steps": 6, "batch_size": N}}, (x, y), params))
    for rid in full:
        np.testing.assert_allclose(whole[rid], full[rid], rtol=RTOL)
    half_cfg = {**cfg, "train": {"steps": 6, "batch_size": N // 2}}
    half = curves_by_run(sweep(half_cfg, (x, y), params))
    assert half[0][0] == full[0][0]  # recorded on the full batch
    assert not np.allclose(half[0], full[0], rtol=1e-6)  # it is stochastic
    assert not np.allclose(half[0], half[1], rtol=1e-6)  # the seed draws the order
    again = curves_by_run(sweep({**half_cfg, "sweep": {"learning_rate": [0.2], "seed": [1]}},
                                (x, y), params))
    np.testing.assert_array_equal(again[0], half[1])


# ------------------------------------------------------------ optimizer axes


def np_optimizer_curve(name, hp, theta, xa, y, steps=2):
    """Loss at steps 0..steps of the linear model out = xa @ theta (bias = last column of ones),
    trained with optax's update rules written out by hand."""
    n = len(y)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    theta = theta.copy()

    def loss_grad(th):
        r = xa @ th - y
        value = np.mean(r * r) + 0.5 * hp["l2"] * th @ th
        return value, 2 * xa.T @ r / n + hp["l2"] * th

    curve = []
    for t in range(1, steps + 2):
        value, g = loss_grad(theta)
        curve.append(value)
        if t > steps:
            break
        c = hp["grad_clip"]
        norm = np.sqrt(g @ g)
        if c > 0 and not norm < c:
            g = g / norm * c
        if name == "sgd":
            u = g
        elif name in ("momentum", "nesterov"):
            m = g + hp["momentum"] * m
            u = m if name == "momentum" else g + hp["momentum"] * m
        elif name in ("adam", "adamw"):
            m = hp["b1"] * m + (1 - hp["b1"]) * g
            v = hp["b2"] * v + (1 - hp["b2"]) * g * g
            mh, vh = m / (1 - hp["b1"] ** t), v / (1 - hp["b2"] ** t)
            u = mh / (np.sqrt(vh) + hp["eps"])
        elif name == "rmsprop":
            v = hp["decay"] * v + (1 - hp["decay"]) * g * g
            u = g / np.sqrt(v + hp["eps"])
        u = u + hp["weight_decay"] * theta
        theta = theta - hp["learning_rate"] * u
    return np.array(curve)


OPT_CASES = {
    "sgd": ("sgd", {"learning_rate": [0.05, 0.3]}),
    "sgd-weight_decay": ("sgd", {"weight_decay": [0.0, 0.5]}),
    "momentum": ("momentum", {"momentum": [0.5, 0.9]}),
    "nesterov": ("nesterov", {"momentum": [0.5, 0.9]}),
    "adam": ("adam", {"b1": [0.5, 0.9], "b2": [0.9, 0.999], "eps": [1e-8, 0.3]}),
    "adamw": ("adamw", {"weight_decay": [0.0, 0.2], "b1": [0.8]}),
    "rmsprop": ("rmsprop", {"decay": [0.5, 0.9], "eps": [1e-8, 0.3]}),
    "l2": ("sgd", {"l2": [0.0, 0.7]}),
    "grad_clip": ("momentum", {"grad_clip": [0.0, 0.05, 1e3]}),
}


@pytest.mark.parametrize("case", list(OPT_CASES))
def test_optimizer_axis_against_numpy(reg, case):
    x, y = reg
    name, axes = OPT_CASES[case]
    theta = np.random.default_rng(2).standard_normal(D + 1)
    params = [{"w": theta[:D, None].copy(), "b": theta[D:].copy()}]
    res = sweep({"model": {"hidden": []}, "optimizer": {"name": name, "learning_rate": 0.1},
                 "train": {"steps": 2}, "sweep": axes}, (x, y), params)
    assert set(axes) <= set(res.runs.columns)
    xa = np.hstack([x, np.ones((N, 1))])
    defaults = res.config.optimizer.model_dump()
    got = curves_by_run(res)
    for rid, row in res.runs.set_index("run_id").iterrows():
        hp = {**defaults, **{a: float(row[a]) for a in axes}}
        ref = np_optimizer_curve(name, hp, theta, xa, y)
        np.testing.assert_allclose(got[rid], ref, rtol=RTOL, err_msg=f"{case} {hp}")
    finals = res.runs["run_id"].map(lambda r: got[r][-1])
    if case == "grad_clip":  # 0 is "off", and a norm far above the gradient's never clips
        off, far = (finals[res.runs["grad_clip"] == c].item() for c in (0.0, 1e3))
        assert off == far and finals.nunique() == 2
    else:  # every swept value mattered
        assert finals.nunique() == len(finals)


# ------------------------------------------------------------ dropout


@pytest.mark.cpu_only("float64 equal to NumPy bit for bit; 1 ulp apart on an H200")
def test_dropout(reg):
    x, y = reg
    params = mlp_params(np.random.default_rng(4), (D, 6, 1))
    cfg = {"model": {"hidden": [6]}, "train": {"steps": 5},
           "sweep": {"learning_rate": [0.2], "seed": [0, 1]}}
    plain = sweep(cfg, (x, y), params)
    drop = sweep({**cfg, "sweep": {**cfg["sweep"], "dropout": [0.0, 0.5]}}, (x, y), params)
    cp, cd = curves_by_run(plain), curves_by_run(drop)
    runs = drop.runs.set_index("run_id")
    for rid, row in runs.iterrows():
        ref = cp[int(plain.runs.loc[plain.runs["seed"] == row["seed"], "run_id"].iloc[0])]
        assert cd[rid][0] == ref[0]  # the recorded loss is dropout-free
        if row["dropout"] == 0:
            np.testing.assert_array_equal(cd[rid], ref)
        else:
            assert not np.allclose(cd[rid][1:], ref[1:], rtol=1e-6)
    masked = runs[runs["dropout"] == 0.5].index
    assert not np.allclose(cd[masked[0]], cd[masked[1]])  # masks come from the run's seed


# ------------------------------------------------------------ parameterizations


@pytest.mark.parametrize("param,bias", [("standard", True), ("ntk", True), ("mean_field", True),
                                        ("mean_field", False)])
def test_parameterization_against_numpy(reg, param, bias):
    x, y = reg
    sizes = (D, 6, 5, 1)
    params = mlp_params(np.random.default_rng(5), sizes, bias=bias)
    for layer in params:  # ntk / mean_field weights are N(0, 1): undo the 1/sqrt(fan_in)
        layer["w"] = layer["w"] * math.sqrt(layer["w"].shape[0])
    fan_in = sizes[:-1]
    mults = {"standard": [1.0] * 3,
             "ntk": [1 / math.sqrt(f) for f in fan_in],
             "mean_field": [1 / math.sqrt(fan_in[0]), 1 / math.sqrt(fan_in[1]), 1 / fan_in[2]]}
    lr = 0.5
    res = sweep({"model": {"hidden": [6, 5], "parameterization": param, "bias": bias},
                 "train": {"steps": 3}, "sweep": {"learning_rate": [lr]}}, (x, y), params)
    ref = np_gd(params, x, y, [lr] * 3, 3, mults=mults[param])
    np.testing.assert_allclose(curves_by_run(res)[0], ref, rtol=RTOL)


def test_ntk_and_mean_field_init_is_standard_normal(x64):
    for param in ("ntk", "mean_field"):
        p = mlp_init(jax.random.PRNGKey(0), (200, 300, 1), bias=False, dtype="float64",
                     parameterization=param)
        w = np.asarray(p[0]["w"])
        assert w.dtype == np.float64
        assert abs(w.std() - 1) < 0.01 and abs(w.mean()) < 0.01
        assert all("b" not in layer for layer in p)


# ------------------------------------------------------------ precision


@pytest.mark.parametrize("init", ["normal", "seed", "he"])
def test_every_dtype_starts_from_the_float32_draw(init, x64):
    """The same key gives the same weights in every dtype: exactly in float64, rounded in
    bfloat16 (JAX's samplers draw unrelated numbers per dtype, so this fails if any layer is
    drawn in the run's own dtype)."""
    key, sizes = jax.random.PRNGKey(5), (3, 7, 5, 1)
    ref = mlp_init(key, sizes, init=init, dtype="float32")
    for dt in ("float64", "bfloat16"):
        p = mlp_init(key, sizes, init=init, dtype=dt)
        for a, b in zip(p, ref, strict=True):
            assert a["w"].dtype == jnp.dtype(dt)
            np.testing.assert_array_equal(np.asarray(a["w"]),
                                          np.asarray(b["w"].astype(dt)))


def test_runs_that_differ_only_in_dtype_start_alike(reg):
    """Through the public API, built-in init: float32 and float64 runs of one seed have the
    same initial loss up to float32 rounding (they once differed by up to 20%)."""
    x, y = reg
    res = sweep({"model": {"hidden": [8]}, "train": {"steps": 2},
                 "sweep": {"dtype": ["float32", "float64"], "seed": {"range": 3},
                           "learning_rate": [0.01]}}, (x, y))
    r = res.runs.pivot(index="seed", columns="dtype", values="initial_loss")
    np.testing.assert_allclose(r["float64"], r["float32"], rtol=1e-6)


def test_dtype_axis_runs_each_precision(reg):
    x, y = reg
    params = mlp_params(np.random.default_rng(6), (D, 4, 1))
    cfg = {"model": {"hidden": [4]}, "train": {"steps": 20},
           "sweep": {"dtype": ["float32", "float64"],
                     "learning_rate": {"geomspace": [0.1, 10.0], "num": 6}}}
    both = sweep(cfg, (x, y), params)
    only64 = sweep({**cfg, "sweep": {"learning_rate": cfg["sweep"]["learning_rate"]}},
                   (x, y), params)
    r64 = both.runs[both.runs["dtype"] == "float64"].reset_index(drop=True)
    np.testing.assert_array_equal(r64["final_loss"], only64.runs["final_loss"])
    assert (r64["label"].to_numpy() == only64.runs["label"].to_numpy()).all()
    r32 = both.runs[both.runs["dtype"] == "float32"].reset_index(drop=True)
    ok = np.isfinite(r64["final_loss"]) & np.isfinite(r32["final_loss"])
    gap = np.abs(r32["final_loss"] - r64["final_loss"])[ok] / r64["final_loss"][ok]
    assert gap.max() > 1e-12 and gap.min() < 1e-3  # float32 arithmetic, same problem
    # every loss a float32 run recorded is a float32 number; float64 runs' mostly are not
    c = both.curves.merge(both.runs[["run_id", "dtype"]], on="run_id")
    c = c[np.isfinite(c["loss"])]
    as32 = c["loss"].astype(np.float32).astype(np.float64) == c["loss"]
    assert as32[c["dtype"] == "float32"].all()
    assert as32[c["dtype"] == "float64"].mean() < 0.1
    df = compare_dtypes(both)
    assert df.attrs["n_compared"] == 6
    assert df.attrs["n_differ"] == (r32["label"] != r64["label"]).sum() == len(df)


def fake_results(labels, dtype="float32", lrs=(0.1, 1.0, 10.0), seeds=(0, 1)):
    exp = ts.parse({"train": {"dtype": dtype},
                    "sweep": {"learning_rate": list(lrs), "seed": list(seeds)}})
    lr, seed = np.meshgrid(lrs, seeds, indexing="ij")
    runs = pd.DataFrame({"run_id": np.arange(lr.size), "learning_rate": lr.ravel(),
                         "seed": seed.ravel(), "final_loss": np.linspace(0.1, 1.0, lr.size),
                         "label": labels})
    return ts.Results(runs=runs, curves=pd.DataFrame(), config=exp)


def test_compare_lists_runs_whose_label_differs(tmp_path):
    la = ["converged", "converged", "catapult", "catapult", "diverged", "diverged"]
    lb = ["converged", "converged", "catapult", "diverged", "diverged", "oscillating"]
    a, b = fake_results(la), fake_results(lb, dtype="float64")
    b.runs = b.runs.iloc[::-1].reset_index(drop=True)  # joined on axes, not on row order
    df = compare(a, b)
    assert list(df.columns) == ["learning_rate", "seed", "label_a", "label_b", "final_loss_a",
                                "final_loss_b"]
    assert df[["learning_rate", "seed"]].values.tolist() == [[1.0, 1], [10.0, 1]]
    assert df["label_b"].tolist() == ["diverged", "oscillating"]
    assert df.attrs["n_compared"] == 6 and df.attrs["fraction_differs"] == pytest.approx(2 / 6)
    assert df.attrs["name_a"] == "float32" and df.attrs["name_b"] == "float64"
    assert compare(a, a).attrs["n_differ"] == 0
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    out = io.StringIO()
    assert compare_precision(tmp_path / "a", tmp_path / "b", stream=out) == 0
    text = out.getvalue()
    assert "2 of 6 cells (33.3%)" in text and "oscillating" in text
    assert df.attrs["config_differences"] == [] and "note:" not in text


def test_compare_says_when_more_than_the_precision_differs():
    a = fake_results(["converged"] * 6)
    b = fake_results(["converged"] * 6, dtype="float64")
    b.config = ts.parse({"model": {"activation": "relu"},
                         "train": {"dtype": "float64", "steps": 50},
                         "sweep": {"learning_rate": [0.1, 1.0, 10.0], "seed": [0, 1]}})
    df = compare(a, b)
    assert df.attrs["config_differences"] == ["model.activation", "train.steps"]
    text = format_summary(df)
    assert "note: the configs also differ in model.activation, train.steps" in text
    same = compare(a, fake_results(["converged"] * 6))
    assert same.attrs["config_differences"] == []
    assert "note: both sweeps are float32" in format_summary(same)


def test_compare_names_the_matmul_precision_when_it_differs():
    """Two float32 sweeps at matmul precision "highest" and "default" (TF32 on a GPU) differ in
    precision: the sides are named by it and no note says the precision is the same."""
    a = fake_results(["converged"] * 5 + ["catapult"])
    b = fake_results(["converged"] * 5 + ["oscillating"])
    b.config = ts.parse({"train": {"matmul_precision": "default"},
                         "sweep": {"learning_rate": [0.1, 1.0, 10.0], "seed": [0, 1]}})
    df = compare(a, b)
    assert (df.attrs["name_a"], df.attrs["name_b"]) == ("float32 matmul highest",
                                                         "float32 matmul default")
    assert df.attrs["config_differences"] == [] and df.attrs["notes"] == []
    text = format_summary(df)
    assert "1 of 6 cells (16.7%) have a different label in float32 matmul default" in text
    assert "catapult (float32 matmul highest) -> oscillating (float32 matmul default)" in text
    b.config = ts.parse({"train": {"matmul_precision": "default", "steps": 50},
                         "sweep": {"learning_rate": [0.1, 1.0, 10.0], "seed": [0, 1]}})
    assert compare(a, b).attrs["config_differences"] == ["train.steps"]


def test_compare_precision_picks_two_of_three_dtypes(tmp_path):
    dts = ["float32", "float64", "bfloat16"]
    exp = ts.parse({"sweep": {"dtype": dts, "learning_rate": [0.1, 1.0]}})
    runs = pd.DataFrame({"run_id": np.arange(6), "dtype": np.repeat(dts, 2),
                         "learning_rate": [0.1, 1.0] * 3, "final_loss": np.linspace(0.1, 1, 6),
                         "label": ["converged", "catapult", "converged", "catapult",
                                   "converged", "diverged"]})
    ts.Results(runs=runs, curves=pd.DataFrame(), config=exp).save(tmp_path / "r")
    out = io.StringIO()
    assert compare_precision(tmp_path / "r", dtypes="float32,bfloat16", stream=out) == 0
    assert "float32 vs bfloat16" in out.getvalue() and "1 of 2 cells" in out.getvalue()
    with pytest.raises(ts.InputError, match="--dtypes A,B"):
        compare_precision(tmp_path / "r", stream=out)
    with pytest.raises(ts.InputError, match="--dtypes: got"):
        compare_precision(tmp_path / "r", dtypes="float32", stream=out)
    with pytest.raises(ts.InputError, match="'float16' is not in the sweep"):
        compare_precision(tmp_path / "r", dtypes="float32,float16", stream=out)
    with pytest.raises(ts.InputError, match=r"\(did you mean 'bfloat16'\?\)"):
        compare_precision(tmp_path / "r", dtypes="float32,blfoat16", stream=out)
    with pytest.raises(ts.InputError, match="leave it out"):
        compare_precision(tmp_path / "r", tmp_path / "r", dtypes="float32,float64", stream=out)


def test_compare_refuses_grids_that_do_not_match():
    a = fake_results(["converged"] * 6)
    with pytest.raises(ts.InputError, match="grids do not match") as e:
        compare(a, fake_results(["converged"] * 6, lrs=(0.1, 1.0, 3.0)))
    # the example cell keeps each axis's type (the integer seed printed as 0.0 before)
    assert "(e.g. {'learning_rate': 10.0, 'seed': 0} only in a)" in str(e.value)
    with pytest.raises(ts.InputError, match="axes"):
        compare(a, fake_results(["converged"] * 3, seeds=(0,)).__class__(
            runs=a.runs.drop(columns="seed").iloc[:3], curves=pd.DataFrame(),
            config=ts.parse({"sweep": {"learning_rate": [0.1, 1.0, 10.0]}})))
    with pytest.raises(ts.InputError, match="dtype"):
        compare_dtypes(a)


def test_compare_refuses_a_grid_contained_in_the_other_and_repeated_cells():
    """Every cell must be in both sweeps: a grid that holds only part of the other is
    refused whichever side it is on, as is a side with two runs of one cell."""
    a = fake_results(["converged"] * 6)
    part = fake_results(["converged"] * 4, lrs=(0.1, 1.0))
    with pytest.raises(ts.InputError, match="2 cells only in a, 0 only in b"):
        compare(a, part)
    with pytest.raises(ts.InputError, match="0 cells only in a, 2 only in b"):
        compare(part, a)
    twice = fake_results(["converged"] * 6)
    twice.runs.loc[1, "seed"] = 0
    with pytest.raises(ts.InputError, match="b holds several runs per grid cell"):
        compare(a, twice)


def test_compare_dtypes_keeps_a_on_the_left():
    exp = ts.parse({"sweep": {"dtype": ["float32", "float64"], "learning_rate": [0.1, 1.0]}})
    runs = pd.DataFrame({"run_id": np.arange(4), "dtype": ["float32"] * 2 + ["float64"] * 2,
                         "learning_rate": [0.1, 1.0] * 2, "final_loss": [1.0, 2.0, 3.0, 4.0],
                         "label": ["converged", "catapult", "converged", "diverged"]})
    res = ts.Results(runs=runs, curves=pd.DataFrame(), config=exp)
    df = compare_dtypes(res, a="float32", b="float64")
    cols = ["learning_rate", "label_a", "label_b", "final_loss_a", "final_loss_b"]
    assert df[cols].values.tolist() == [[1.0, "catapult", "diverged", 2.0, 4.0]]
    assert df.attrs["transitions"] == {"catapult -> diverged": 1}
    back = compare_dtypes(res, a="float64", b="float32")
    assert back[["label_a", "label_b"]].values.tolist() == [["diverged", "catapult"]]
