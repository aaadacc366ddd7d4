"""muP against a hand-written reference of Tensor Programs V's Table 3, and width/depth axes.

The reference below is written from the paper's Table 3 ("muP ... for general neural networks":
initial variance, SGD and Adam learning rate of input weights & all biases, output weights and
hidden weights, each scaled by fan_in / fan_out relative to base_width), in plain Python. The
implementation follows Table 8 (an output multiplier instead of a smaller output init), so the
comparison goes through the effective weights W_eff = multiplier * W, on which Table 3 speaks:
std(W_eff) = multiplier * std(W); SGD moves W_eff with lr_W * multiplier**2 (the gradient
with respect to W is multiplier times that with respect to W_eff); Adam's entrywise-normalized
step with lr_W * multiplier.
"""

import math

import numpy as np
import numpy_mlp as ref
import pandas as pd
import pytest

import trainscape as ts
from trainscape.errors import ConfigError


def table3(sizes, base, optimizer):
    """Per layer (std of W_eff under normal init, lr factor of W_eff, of its bias), Table 3,
    normalized so that every factor is the standard parameterization's at width == base."""
    out = []
    n_layers = len(sizes) - 1
    for i in range(n_layers):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        kind = "input" if i == 0 else "output" if i == n_layers - 1 else "hidden"
        # Init. Var.: 1/fan_in, except output weights: 1/fan_in^2 (SP 1/fan_in)
        var = 1.0 / fan_in if kind != "output" else base / fan_in**2
        bias_fan_out = fan_out if kind != "output" else None  # finite outputs: no width
        if optimizer == "sgd":
            # SGD LR: input weights & all biases fan_out, output weights 1/fan_in, hidden 1
            lr_w = {"input": fan_out / base, "hidden": 1.0, "output": base / fan_in}[kind]
            lr_b = bias_fan_out / base if bias_fan_out is not None else 1.0
        else:
            # Adam LR: input weights & all biases 1, output 1/fan_in, hidden 1/fan_in
            lr_w = {"input": 1.0, "hidden": base / fan_in, "output": base / fan_in}[kind]
            lr_b = 1.0
        out.append((math.sqrt(var), lr_w, lr_b))
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("width", [4, 8, 32])
def test_mup_rules_match_table3(optimizer, width):
    from trainscape.nn import mup
    from trainscape.nn.models import multipliers

    sizes, base = (5, width, width, 3), 8
    rules = mup.rules(sizes, base, optimizer)
    mults = multipliers(sizes, "mup", base)
    for i, ((std, lr_w, lr_b), r) in enumerate(zip(table3(sizes, base, optimizer), rules,
                                                   strict=True)):
        sp_std = 1.0 / math.sqrt(sizes[i])  # the standard normal init, N(0, 1/fan_in)
        assert r.mult == mults[i]
        assert r.mult * r.init * sp_std == pytest.approx(std, rel=1e-12)
        eff_lr = r.lr_w * r.mult**2 if optimizer == "sgd" else r.lr_w * r.mult
        assert eff_lr == pytest.approx(lr_w, rel=1e-12), (i, optimizer)
        assert r.lr_b == pytest.approx(lr_b, rel=1e-12), (i, optimizer)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_mup_rules_with_unequal_hidden_widths(optimizer):
    """Hidden layers of different widths, 16 -> 32 -> 24 at base 8 (m = 2, 4, 3), where a
    hidden layer's m_in and m_out differ: the factors of docs/mup.md's table (MuSGD: weights
    with two width dimensions x m_out / m_in, one x its m, biases x m_out; MuAdam: x 1 / m_in
    for two width dimensions), written out by hand per layer as (init, mult, lr_w, lr_b)."""
    from trainscape.nn import mup

    sgd = optimizer in ("sgd", "momentum")
    expected = [
        (1.0, 1.0, 2.0, 2.0) if sgd else (1.0, 1.0, 1.0, 1.0),  # input 5 -> 16
        (1.0, 1.0, 4 / 2, 4.0) if sgd else (1.0, 1.0, 1 / 2, 1.0),  # hidden 16 -> 32
        (1.0, 1.0, 3 / 4, 3.0) if sgd else (1.0, 1.0, 1 / 4, 1.0),  # hidden 32 -> 24
        (math.sqrt(3), 1 / 3, 3.0, 1.0) if sgd else (math.sqrt(3), 1 / 3, 1.0, 1.0),  # output
    ]
    got = mup.rules((5, 16, 32, 24, 3), 8, optimizer)
    np.testing.assert_allclose(np.array([tuple(r) for r in got]), np.array(expected),
                               rtol=1e-15)


def test_mup_init_scales_the_standard_draw():
    import jax

    from trainscape.nn.models import mlp_init

    sizes, base = (5, 32, 32, 3), 8
    key = jax.random.PRNGKey(4)
    sp = mlp_init(key, sizes, init="normal")
    mp = mlp_init(key, sizes, init="normal", parameterization="mup", base_width=base)
    factors = [1.0, 1.0, math.sqrt(32 / 8)]  # Table 8: only the readout, sqrt(fan_in / base)
    for a, b, f in zip(sp, mp, factors, strict=True):
        np.testing.assert_allclose(np.asarray(b["w"]), np.asarray(a["w"]) * f, rtol=1e-6)


def _teacher(n=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.tanh(x @ rng.normal(size=(d, 1)))[:, 0]
    return x, y


def _adam_ref(params, x, y, lrs, steps, b1=0.9, b2=0.999, eps=1e-30):
    """Loss at steps 0..steps of Adam (optax's scale_by_adam, bias-corrected) on W_eff, each
    leaf with its own learning rate lrs[i][k]."""
    p = ref.copy_params(params)
    m = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in p]
    v = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in p]
    curve = []
    for t in range(1, steps + 1):
        value, g = ref.loss_and_grads(p, x, y, "mse", "tanh")
        curve.append(value)
        for layer, gl, ml, vl, lr in zip(p, g, m, v, lrs, strict=True):
            for k in layer:
                ml[k] = b1 * ml[k] + (1 - b1) * gl[k]
                vl[k] = b2 * vl[k] + (1 - b2) * gl[k] ** 2
                mh, vh = ml[k] / (1 - b1**t), vl[k] / (1 - b2**t)
                layer[k] -= lr[k] * mh / (np.sqrt(vh) + eps)
    curve.append(ref.loss_and_grads(p, x, y, "mse", "tanh")[0])
    return np.array(curve)


def _sgd_ref(params, x, y, lrs, steps):
    p = ref.copy_params(params)
    curve = []
    for _ in range(steps):
        value, g = ref.loss_and_grads(p, x, y, "mse", "tanh")
        curve.append(value)
        for layer, gl, lr in zip(p, g, lrs, strict=True):
            for k in layer:
                layer[k] -= lr[k] * gl[k]
    curve.append(ref.loss_and_grads(p, x, y, "mse", "tanh")[0])
    return np.array(curve)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mup_training_matches_table3_reference(optimizer):
    """A 3-layer muP network trained by trainscape (float64) against the NumPy reference
    training the effective weights with Table 3's learning rates: the multipliers and the
    per-layer rates of the whole step, not just the table of factors."""
    x, y = _teacher()
    width, base, lr, steps = 16, 4, 0.05 if optimizer == "sgd" else 0.01, 4
    sizes = (3, width, width, 1)
    rng = np.random.default_rng(1)
    params = [{"w": rng.normal(size=(a, b)) / math.sqrt(a), "b": 0.1 * rng.normal(size=b)}
              for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    opt = {"name": optimizer, "learning_rate": lr, **({"eps": 1e-30} if optimizer == "adam"
                                                      else {})}
    res = ts.run({"data": {"name": "teacher", "standardize": False}, "loss": {"name": "mse"},
                  "optimizer": opt,
                  "model": {"hidden": [width, width], "parameterization": "mup",
                            "base_width": base},
                  "train": {"steps": steps, "dtype": "float64"}},
                 data=(x, y), init_params=params, out=None, progress=False)
    got = res.curves.sort_values("step")["loss"].to_numpy()
    # reference: W_eff = multiplier * W (only the readout's is not 1: base / fan_in)
    eff = ref.copy_params(params)
    eff[-1]["w"] = eff[-1]["w"] * (base / width)
    lrs = [{"w": lr * f_w, "b": lr * f_b} for _, f_w, f_b in table3(sizes, base, optimizer)]
    want = (_sgd_ref if optimizer == "sgd" else _adam_ref)(eff, x, y, lrs, steps)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def _runs_and_curves(config):
    r = ts.run(config, out=None, progress=False)
    return r.runs.drop(columns=["width"], errors="ignore"), r.curves


def test_mup_at_base_width_is_standard_bit_for_bit():
    base = {"data": {"name": "teacher", "n_samples": 32}, "loss": {"name": "mse"},
            "model": {"hidden": [8, 8]}, "train": {"steps": 6},
            "sweep": {"learning_rate": [0.05, 3.0], "seed": [0, 1]}}
    sp = _runs_and_curves(base)
    for optimizer in ("sgd", "adam"):
        cfg = {**base, "optimizer": {"name": optimizer},
               "model": {"hidden": [8, 8], "parameterization": "mup", "base_width": 8}}
        spo = sp if optimizer == "sgd" else _runs_and_curves({**base, "optimizer":
                                                             {"name": optimizer}})
        mp = _runs_and_curves(cfg)
        pd.testing.assert_frame_equal(mp[0], spo[0], check_exact=True)
        pd.testing.assert_frame_equal(mp[1], spo[1], check_exact=True)


# ------------------------------------------------------------------ width / depth axes


def test_width_depth_axes_make_uniform_hidden_layers(traces):
    """Each (width, depth) is its own program; the runs table has the columns; a run equals
    the same network run on its own (which, like a second sweep, compiles nothing)."""
    cfg = {"data": {"name": "moons", "n_samples": 32}, "model": {"hidden": [4, 4]},
           "train": {"steps": 5},
           "sweep": {"width": [3, 5], "depth": [1, 2], "learning_rate": [0.1, 2.0]}}
    r = ts.run(cfg, out=None, progress=False)
    assert list(r.runs.columns[1:4]) == ["width", "depth", "learning_rate"]
    assert r.runs["width"].dtype == np.int64 and len(r.runs) == 8
    n_traces = traces()
    assert n_traces == 4  # one program per shape
    one = ts.run({**cfg, "model": {"hidden": [5, 5]}, "sweep": {"learning_rate": [0.1, 2.0]}},
                 out=None, progress=False)
    sel = r.runs[(r.runs.width == 5) & (r.runs.depth == 2)]
    np.testing.assert_array_equal(sel["final_loss"].to_numpy(), one.runs["final_loss"])
    ts.run(cfg, out=None, progress=False)
    assert traces() == n_traces  # the [5, 5] network alone and again: the same program


def test_width_axis_needs_uniform_hidden():
    with pytest.raises(ConfigError, match=r"\[model\] hidden: got \[4, 6\]; sweeping width"):
        ts.run({"model": {"hidden": [4, 6]}, "sweep": {"width": [4, 8]}}, out=None, progress=False)
    with pytest.raises(ConfigError, match="base_width: parameterization 'mup' needs it"):
        ts.run({"model": {"parameterization": "mup"}}, out=None, progress=False)
    with pytest.raises(ConfigError, match="sweep.width"):
        ts.run({"sweep": {"width": [0, 8]}}, out=None, progress=False)


def test_width_axis_with_entry_lr_dropout_and_minibatches():
    """A width axis combined with learning_rate.K, dropout and mini-batches: every run equals
    the same hyperparameters run at that width alone."""
    cfg = {"data": {"name": "teacher", "n_samples": 32}, "loss": {"name": "mse"},
           "model": {"hidden": [4, 4], "dropout": 0.1, "parameterization": "mup",
                     "base_width": 4},
           "train": {"steps": 4, "batch_size": 8},
           "sweep": {"width": [4, 12], "learning_rate.1": [0.0, 0.2], "seed": [0, 1]}}
    r = ts.run(cfg, out=None, progress=False)
    assert (r.runs.groupby("width")["final_loss"].nunique() == 4).all()
    alone = ts.run({**cfg, "model": {**cfg["model"], "hidden": [12, 12]},
                    "sweep": {"learning_rate.1": [0.0, 0.2], "seed": [0, 1]}},
                   out=None, progress=False)
    np.testing.assert_array_equal(r.runs[r.runs.width == 12]["final_loss"].to_numpy(),
                                  alone.runs["final_loss"].to_numpy())


def test_depth_axis_checks_entry_lr_at_every_depth():
    with pytest.raises(ConfigError, match=r"sweep.learning_rate.2: the model's parameters have "
                                          r"2 top-level entries"):
        ts.run({"model": {"hidden": [4]}, "sweep": {"depth": [2, 1],
                                                     "learning_rate.2": [0.1]}},
               out=None, progress=False)
