"""Paths of the engine that had no independent check, each against the hand-written float64
NumPy MLP (tests/numpy_mlp.py) or a closed form: softmax cross-entropy (multiclass), the
relu / identity / sigmoid / gelu activations, the weight initializers and `init_scale`,
mini-batches (an epoch is a permutation), dropout (inverted, per sample and unit), and the
edge-of-stability relabelling end to end.

Every `ts.run` here compiles one program (seconds, cold): each test sweeps all its values in one
run, and the networks are tiny."""

import itertools
import math

import jax
import numpy as np
import pandas as pd
import pytest
from numpy_mlp import (
    accuracy,
    act,
    dact,
    gd_trajectory,
    loss_and_dout,
    loss_and_grads,
    loss_and_grads_dropout,
    scaled,
    sgd_step,
)

import trainscape as ts
from trainscape.errors import ConfigError
from trainscape.nn.models import mlp_init
from trainscape.train import classify

RTOL = 1e-8  # float64 engine vs float64 NumPy over a short trajectory
MATCH_RTOL = 1e-10  # one step: which of the candidate batches / masks the engine used


def random_params(rng, sizes, bias_scale=0.1):
    """Weights N(0, 1/fan_in), biases N(0, bias_scale^2) (non-zero, so their gradients count)."""
    return [{"w": rng.standard_normal((fi, fo)) / math.sqrt(fi),
             "b": bias_scale * rng.standard_normal(fo)}
            for fi, fo in zip(sizes[:-1], sizes[1:], strict=True)]


def curves_by_run(res, column="loss"):
    c = res.curves.sort_values(["run_id", "step"])
    return {int(rid): g[column].to_numpy() for rid, g in c.groupby("run_id")}


def run(cfg, data, init_params=None):
    # the NumPy references train on the arrays as given
    cfg = {**cfg, "data": {"standardize": False, **cfg.get("data", {})}}
    return ts.run(cfg, data=data, init_params=init_params, out=None, progress=False)


# ------------------------------------------------------------ the reference itself


@pytest.mark.parametrize("activation, loss", [
    ("relu", "bce"), ("identity", "mse"), ("sigmoid", "bce"), ("gelu", "cross_entropy"),
    ("gelu_erf", "mse"), ("tanh", "cross_entropy")])
def test_numpy_reference_backprop_matches_its_own_finite_differences(activation, loss):
    """The new branches of the NumPy reference (activations, softmax cross-entropy) are right:
    hand-written backprop against central differences of its own loss."""
    rng = np.random.default_rng(11)
    k = 3 if loss == "cross_entropy" else 1
    x = rng.standard_normal((7, 3))
    y = {"bce": (rng.random(7) < 0.5).astype(float), "mse": rng.standard_normal(7),
         "cross_entropy": rng.integers(0, k, 7)}[loss]
    params = random_params(rng, (3, 5, 4, k), bias_scale=0.5)
    _, grads = loss_and_grads(params, x, y, loss, activation)
    h = 1e-6
    for layer, g in zip(params, grads, strict=True):
        for key in ("w", "b"):
            num = np.zeros_like(layer[key])
            for idx in np.ndindex(layer[key].shape):
                old = layer[key][idx]
                layer[key][idx] = old + h
                up = loss_and_grads(params, x, y, loss, activation)[0]
                layer[key][idx] = old - h
                down = loss_and_grads(params, x, y, loss, activation)[0]
                layer[key][idx] = old
                num[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(g[key], num, rtol=1e-6, atol=1e-9)


def test_numpy_reference_closed_forms():
    """Values the reference's formulas must give (independent of its backprop): softmax
    cross-entropy of equal logits is log k; gelu(1) = Phi(1) (exact) and its tanh form is
    within 1e-3; dropout with an all-ones mask and rate 0 is plain backprop."""
    out = np.zeros((4, 3))
    value, d = loss_and_dout(out, np.array([0, 1, 2, 1]), "cross_entropy")
    assert value == pytest.approx(math.log(3), rel=1e-15)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-15)  # softmax - onehot sums to 0
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert act("gelu_erf", np.array([1.0]))[0] == pytest.approx(phi1, rel=1e-15)
    assert abs(act("gelu", np.array([1.0]))[0] - phi1) < 1e-3
    assert act("gelu", np.array([1.0]))[0] != pytest.approx(phi1, rel=1e-6)
    z = np.array([0.3])
    assert dact("sigmoid", z, act("sigmoid", z))[0] == pytest.approx(
        math.exp(-0.3) / (1 + math.exp(-0.3)) ** 2, rel=1e-14)
    rng = np.random.default_rng(0)
    params = random_params(rng, (3, 4, 1))
    x, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    v0, g0 = loss_and_grads(params, x, y, "mse")
    v1, g1 = loss_and_grads_dropout(params, x, y, [np.ones((5, 4))], 0.0, "mse")
    assert v0 == v1
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_array_equal(a["w"], b["w"])


# ------------------------------------------------------------ activations, cross-entropy


@pytest.fixture(scope="module")
def moons():
    return ts.load_dataset({"name": "moons", "n_samples": 100, "data_seed": 3})


@pytest.fixture(scope="module")
def blobs3():
    """Three classes in 5 features (the first layer then is a real matmul, not the
    multiply-adds of 2-D data)."""
    return ts.load_dataset({"name": "blobs", "n_classes": 3, "n_features": 5,
                            "n_samples": 90, "data_seed": 1})


# Each pair is one compiled program; cross_entropy rides on two of the activations so that
# the multiclass path costs no extra compile.
ACT_CASES = [("relu", "bce"), ("identity", "bce"), ("sigmoid", "cross_entropy"),
             ("gelu", "cross_entropy")]


@pytest.mark.parametrize("activation, loss", ACT_CASES)
def test_activation_loss_and_init_scale_against_numpy(moons, blobs3, activation, loss):
    """Training curves (hidden [16, 16], float64, 20 steps) for every learning rate x
    init_scale, the accuracy at every step and `final_accuracy` (logit > 0 for bce, argmax for
    cross_entropy), against NumPy gradient descent from init_scale x the given parameters."""
    x, y = moons if loss == "bce" else blobs3
    k = 1 if loss == "bce" else 3
    assert loss == "bce" or sorted(set(y.tolist())) == [0, 1, 2]
    params = random_params(np.random.default_rng(2), (x.shape[1], 16, 16, k))
    steps, lrs, scales = 20, [0.05, 0.5, 2.0], [0.5, 1.0, 2.0]
    res = run({"model": {"hidden": [16, 16], "activation": activation},
               "loss": {"name": loss}, "train": {"steps": steps, "dtype": "float64"},
               "sweep": {"learning_rate": lrs, "init_scale": scales}}, (x, y), params)
    assert len(res.runs) == len(lrs) * len(scales)
    got, got_acc = curves_by_run(res), curves_by_run(res, "accuracy")
    firsts, blown = [], []
    for _, row in res.runs.iterrows():
        rid, lr, s = int(row["run_id"]), row["learning_rate"], row["init_scale"]
        with np.errstate(over="ignore", invalid="ignore"):
            ref, hist = gd_trajectory(scaled(params, s), x, y, lr, steps, loss, activation)
            acc = np.array([accuracy(p, x, y, loss, activation) for p in hist])
        # a run is frozen at the first step whose loss is non-finite or above 1000 x the
        # initial loss (README, Labels): its curve is NaN after that step
        bad = ~np.isfinite(ref) | (ref > classify.BLOWUP_FACTOR * ref[0])
        end = int(np.argmax(bad)) if bad.any() else steps
        blown.append(bool(bad.any()))
        assert row["initial_loss"] == pytest.approx(ref[0], rel=1e-12)
        np.testing.assert_allclose(got[rid][:end + 1], ref[:end + 1], rtol=RTOL,
                                   err_msg=f"lr={lr} scale={s}")
        assert np.all(np.isnan(got[rid][end + 1:]))
        np.testing.assert_allclose(got_acc[rid][:end + 1], acc[:end + 1], atol=1e-6,
                                   err_msg=f"lr={lr} s={s}")
        assert row["final_accuracy"] == pytest.approx(acc[end], abs=1e-6)
        assert (row["label"] == "diverged") if bad.any() else pd.isna(row["diverged_step"])
        if bad.any():
            assert row["diverged_step"] == end
        firsts.append(ref[1])
    assert sum(blown) <= 2  # the grid is mostly about training, not blowing up
    assert len(set(np.round(firsts, 12))) == len(firsts)  # every swept value mattered


def test_gelu_is_the_tanh_approximation_not_erf(blobs3):
    """`gelu` is jax.nn.gelu's default, the tanh approximation: the engine's curve is far
    (relative to float64 rounding) from NumPy with the exact erf form. Reuses the program of
    the gelu case above."""
    x, y = blobs3
    params = random_params(np.random.default_rng(2), (x.shape[1], 16, 16, 3))
    res = run({"model": {"hidden": [16, 16], "activation": "gelu"},
               "loss": {"name": "cross_entropy"}, "train": {"steps": 20, "dtype": "float64"},
               "sweep": {"learning_rate": [2.0]}}, (x, y), params)
    got = curves_by_run(res)[0]
    tanh_form, _ = gd_trajectory(params, x, y, 2.0, 20, "cross_entropy", "gelu")
    erf_form, _ = gd_trajectory(params, x, y, 2.0, 20, "cross_entropy", "gelu_erf")
    np.testing.assert_allclose(got, tanh_form, rtol=RTOL)
    assert np.max(np.abs(got / erf_form - 1)) > 1e-5


def test_bce_accuracy_counts_a_zero_logit_as_class_0():
    """As the NumPy reference has it, a bce prediction is 1 where the logit is > 0: a logit of
    exactly 0 (a zero readout, e.g. at init_scale 0) predicts class 0, whatever its sign bit."""
    import jax.numpy as jnp

    from trainscape.nn import losses

    z = np.array([[0.0], [0.0], [-0.0], [2.0], [-3.0]])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    expected = np.mean((z[:, 0] > 0).astype(np.float64) == y)  # 3 of 5
    assert expected == 0.6
    assert float(losses.accuracy(jnp.asarray(z), jnp.asarray(y), "bce")) == pytest.approx(
        expected, rel=1e-7)


@pytest.mark.parametrize("z, y", [(40.0, 1.0), (-40.0, 0.0), (800.0, 1.0), (-800.0, 0.0),
                                  (3.0, 0.0), (-3.0, 1.0), (0.0, 1.0)])
def test_bce_is_accurate_for_large_logits(z, y):
    """bce is softplus(-z) for label 1 and softplus(z) for label 0: for a confident correct
    logit (|z| = 40) that is about e^-40 ~ 4e-18, representable in float32, not a rounded 0;
    for |z| = 800 neither inf nor NaN. Reference: NumPy's float64 logaddexp."""
    import jax.numpy as jnp

    from trainscape.nn import losses

    expected = np.logaddexp(0.0, -z if y == 1 else z)
    got = float(losses.bce(jnp.array([[z]], jnp.float32), jnp.array([y], jnp.float32)))
    assert got == pytest.approx(expected, rel=1e-6, abs=0)


def test_bce_and_cross_entropy_refuse_the_wrong_labels(blobs3, moons):
    """bce on 3-class labels and cross_entropy on real-valued targets are ConfigErrors naming
    the key and the task, raised before anything is compiled."""
    x, y = blobs3
    with pytest.raises(ConfigError, match=r"\[loss\] name: 'bce' needs binary labels in "
                       r"\{0, 1\}, but y of data=\(x, y\) makes the task multiclass"):
        run({"model": {"hidden": [4]}, "loss": {"name": "bce"}}, (x, y))
    xr = moons[0]
    yr = np.random.default_rng(0).standard_normal(len(xr))
    with pytest.raises(ConfigError, match=r"'cross_entropy' needs integer class labels, but y "
                       r"of data=\(x, y\) makes the task regression"):
        run({"model": {"hidden": [4]}, "loss": {"name": "cross_entropy"}}, (xr, yr))


def test_the_wrong_labels_are_named_by_where_they_come_from(tmp_path):
    """A data file's refusal names the file and its target column, a built-in dataset's names
    the dataset (both raised before anything is compiled)."""
    f = tmp_path / "d.csv"
    f.write_text("a,b,t\n0.1,0.2,0.5\n0.3,0.4,1.5\n0.5,0.6,2.5\n")
    with pytest.raises(ConfigError) as info:
        ts.run({"data": {"path": str(f), "target": "t"}}, progress=False)
    assert str(info.value) == (f"[loss] name: 'bce' needs binary labels in {{0, 1}}, but column "
                               f"'t' of data file '{f}' makes the task regression; use "
                               "'cross_entropy' for classes or 'mse' for regression")
    with pytest.raises(ConfigError, match=r"^\[loss\] name: 'cross_entropy' needs integer "
                       r"class labels, but dataset 'teacher' makes the task regression; use "
                       r"'mse'$"):
        ts.run({"data": {"name": "teacher", "n_samples": 8},
                "loss": {"name": "cross_entropy"}}, progress=False)


# ------------------------------------------------------------ initializers


def _truncated_std(c):
    """Standard deviation of N(0, 1) truncated to [-c, c]: 1 - 2 c phi(c) / (2 Phi(c) - 1)."""
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * c * phi / math.erf(c / math.sqrt(2)))


# Standard deviation of each init's weights (biases are zero):
#   normal: N(0, 1/fan_in) (the README's table);
#   lecun:  LeCun et al. 1998, "Efficient BackProp", sec. 4.6: variance 1/fan_in; here a
#           normal truncated at 2 of its own standard deviations, rescaled to that variance;
#   he:     He et al. 2015, "Delving Deep into Rectifiers", eq. 10: variance 2/fan_in;
#   glorot: Glorot & Bengio 2010, eq. 12: variance 2/(fan_in + fan_out).
INIT_STD = {
    "normal": lambda fi, fo: math.sqrt(1 / fi),
    "lecun": lambda fi, fo: math.sqrt(1 / fi),
    "he": lambda fi, fo: math.sqrt(2 / fi),
    "glorot": lambda fi, fo: math.sqrt(2 / (fi + fo)),
}


@pytest.mark.parametrize("init", list(INIT_STD))
def test_init_weight_distribution_matches_its_formula(init, x64):
    """For layers of 400 x 300 and 300 x 100 weights: the empirical mean and standard deviation
    against the formula (6 standard errors), zero biases, and the tails: lecun's weights lie
    within its truncation bound (and reach near it), the others' are not truncated."""
    sizes = (400, 300, 100)
    p = mlp_init(jax.random.PRNGKey(7), sizes, init=init, dtype="float64")
    for layer, fi, fo in zip(p, sizes[:-1], sizes[1:], strict=True):
        w = np.asarray(layer["w"])
        assert w.shape == (fi, fo) and w.dtype == np.float64
        n, std = w.size, INIT_STD[init](fi, fo)
        assert abs(w.mean()) < 6 * std / math.sqrt(n), (init, fi, fo)
        # standard error of a sample standard deviation: about std / sqrt(2 n) (less when
        # truncated: lighter tails)
        assert abs(w.std() / std - 1) < 6 / math.sqrt(2 * n), (init, fi, fo, w.std(), std)
        assert np.all(np.asarray(layer["b"]) == 0) and layer["b"].shape == (fo,)
        top = np.abs(w).max() / std
        if init == "lecun":
            bound = 2 / _truncated_std(2.0)  # 2 standard deviations of the untruncated normal
            assert bound == pytest.approx(2 / 0.87962566103423978, rel=1e-12)
            assert top <= bound * (1 + 1e-6) and top > 0.98 * bound, (top, bound)
        else:
            assert top > 3.5, top  # P(max of 30,000 normals < 3.5 sd) ~ 1e-6
    assert all("b" not in layer for layer in mlp_init(jax.random.PRNGKey(0), sizes, init=init,
                                                      bias=False))


# ------------------------------------------------------------ mini-batches


def test_minibatch_steps_are_halves_of_a_permutation():
    """N = 8, batch_size 4 (float64): the loss after step 1 is NumPy's full-batch loss after
    one gradient step on exactly one of the C(8, 4) = 70 half-batches, and step 2 steps on
    its complement (an epoch is a permutation, without replacement); steps 3 and 4 are the
    next epoch, drawn again. The recorded loss is the full-batch one throughout."""
    rng = np.random.default_rng(21)
    n, d = 8, 3
    x = rng.standard_normal((n, d))
    y = np.tanh(x @ rng.standard_normal(d)) + 0.3 * rng.standard_normal(n)
    params = random_params(rng, (d, 4, 1), bias_scale=0.3)
    lr, seeds = 0.7, list(range(8))
    res = run({"model": {"hidden": [4]}, "loss": {"name": "mse"},
               # 6 steps (3 epochs; the first two are checked): test_generality's program
               "train": {"steps": 6, "dtype": "float64", "batch_size": 4},
               "sweep": {"learning_rate": [lr], "seed": seeds}}, (x, y), params)
    got = curves_by_run(res)
    halves = [frozenset(c) for c in itertools.combinations(range(n), 4)]
    assert len(halves) == 70
    chosen, first = [], None  # every run starts from `params`: step 1's candidates are shared
    for rid, curve in got.items():
        p = params
        assert curve[0] == pytest.approx(loss_and_grads(p, x, y, "mse")[0], rel=1e-13)
        picks = []
        for t in (1, 3):  # the first step of each epoch: any half; the second: its complement
            cands = first if t == 1 and first is not None else []
            for half in halves if not cands else []:
                idx = sorted(half)
                q = sgd_step(p, loss_and_grads(p, x[idx], y[idx], "mse")[1], lr)
                cands.append((loss_and_grads(q, x, y, "mse")[0], half, q))
            if t == 1:
                first = cands
            values = np.array([c[0] for c in cands])
            hits = np.nonzero(np.isclose(values, curve[t], rtol=MATCH_RTOL, atol=0))[0]
            assert len(hits) == 1, (rid, t, curve[t], np.sort(np.abs(values / curve[t] - 1))[:3])
            _, half, p = cands[hits[0]]
            rest = sorted(set(range(n)) - half)
            p = sgd_step(p, loss_and_grads(p, x[rest], y[rest], "mse")[1], lr)
            assert curve[t + 1] == pytest.approx(loss_and_grads(p, x, y, "mse")[0],
                                                 rel=MATCH_RTOL), (rid, t + 1)
            picks.append(half)
        chosen.append(picks)
    firsts = {c[0] for c in chosen}
    assert len(firsts) > 1  # the seed draws the order (8 seeds, 70 halves)
    assert any(a != b for a, b in chosen)  # each epoch draws a new permutation


# ------------------------------------------------------------ dropout


def test_dropout_is_inverted_per_sample_and_unit():
    """Dropout (models.mlp_apply) draws one keep/drop per hidden activation entry, i.e. per
    sample and unit, keeps with probability 1 - rate and scales kept entries by 1/(1 - rate);
    only the gradient sees it. With 2 samples and hidden [4] that is 2^8 = 256 masks: the loss
    after each of 2 steps must equal the NumPy full-batch loss after a step under exactly one
    of them (followed step by step), for rates 0.25 and 0.5 and 8 seeds. The kept fraction of
    the identified masks must be 1 - rate (5 binomial standard errors), and each step draws its
    own: a run repeats its first mask at step 2 with probability 0.625^8 ~ 2% (rate 0.25) or
    0.5^8 (rate 0.5), not always."""
    rng = np.random.default_rng(5)
    n, d, width = 2, 3, 4
    x = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    params = random_params(rng, (d, width, 1), bias_scale=0.3)
    lr, steps, rates, seeds = 0.2, 2, [0.25, 0.5], list(range(8))
    res = run({"model": {"hidden": [width]}, "loss": {"name": "mse"},
               "train": {"steps": steps, "dtype": "float64"},
               "sweep": {"learning_rate": [lr], "dropout": rates, "seed": seeds}},
              (x, y), params)
    got = curves_by_run(res)
    masks = [np.array(bits, dtype=np.float64).reshape(n, width)
             for bits in itertools.product((0, 1), repeat=n * width)]
    kept = {r: [] for r in rates}
    repeats = 0
    first = {}  # every run starts from `params`: step 1's candidates depend only on the rate
    for _, row in res.runs.iterrows():
        rid, rate = int(row["run_id"]), row["dropout"]
        curve, p = got[rid], params
        assert curve[0] == pytest.approx(loss_and_grads(p, x, y, "mse")[0], rel=1e-13)
        for t in range(1, steps + 1):
            cands = first.get(rate, []) if t == 1 else []
            for m in masks if not cands else []:
                q = sgd_step(p, loss_and_grads_dropout(p, x, y, [m], rate, "mse")[1], lr)
                cands.append((loss_and_grads(q, x, y, "mse")[0], m, q))
            if t == 1:
                first[rate] = cands
            values = np.array([c[0] for c in cands])
            hits = np.nonzero(np.isclose(values, curve[t], rtol=MATCH_RTOL, atol=0))[0]
            assert len(hits) == 1, (rid, rate, t, curve[t],
                                    np.sort(np.abs(values / curve[t] - 1))[:3])
            _, m, p = cands[hits[0]]
            repeats += t > 1 and np.array_equal(m, kept[rate][-1])
            kept[rate].append(m)
    assert repeats <= 3, repeats  # of 16 runs; about 0.2 expected
    for rate, ms in kept.items():
        frac = np.mean(ms)
        se = math.sqrt(rate * (1 - rate) / np.size(ms))
        assert abs(frac - (1 - rate)) < 5 * se, (rate, frac)


# ------------------------------------------------------------ edge of stability


@pytest.mark.parametrize("opt, relabels", [
    ("sgd", True),
    # a second sharpness program (about 8 s of compiling on 2 cores)
    pytest.param("momentum", False, marks=pytest.mark.slow),
])
def test_edge_of_stability_relabels_only_plain_gradient_descent(opt, relabels, monkeypatch,
                                                                moons):
    """With EOS_FACTOR patched to 0 every run with positive final sharpness is 'above the edge':
    plain SGD runs labelled converged become oscillating (and no other label changes), while
    the same sweep with momentum keeps every label (the relabelling is for plain GD only).
    Unpatched, each label is the curve's own label (`classify.label_curve`, from the recorded
    curve, not the engine's online summaries) except plain-GD converged runs with
    sharpness_final x lr / 2 > 1.05, which are oscillating. Each optimizer's program is
    compiled once and run twice (labels are assigned on the host). The momentum half is
    marked slow."""
    x, y = moons
    params = random_params(np.random.default_rng(4), (2, 8, 1))
    base = {"model": {"hidden": [8]}, "train": {"steps": 30, "dtype": "float64"},
            "metrics": {"sharpness": True},
            "sweep": {"learning_rate": [0.01, 0.1, 2.0, 8.0, 30.0]}}
    cfg = {**base, "optimizer": {"name": opt}}
    res = run(cfg, (x, y), params)
    before = res.runs.set_index("run_id")
    with monkeypatch.context() as m:
        m.setattr(classify, "EOS_FACTOR", 0.0)
        after = run(cfg, (x, y), params).runs.set_index("run_id")
    curves = curves_by_run(res)
    for rid, row in before.iterrows():
        own = classify.label_curve(curves[rid])
        edge = row["sharpness_final"] * row["learning_rate"] / 2 > 1.05
        want = "oscillating" if relabels and own == "converged" and edge else own
        assert row["label"] == want, (opt, rid, own, row["label"])
    conv = before["label"] == "converged"
    assert conv.sum() >= 1 and (~conv).sum() >= 1, (opt, before["label"].tolist())
    assert (before.loc[conv, "sharpness_final"] > 0).all()
    np.testing.assert_array_equal(after["sharpness_final"], before["sharpness_final"])
    expect = before["label"].where(~conv, "oscillating") if relabels else before["label"]
    assert after["label"].tolist() == expect.tolist(), (opt, before["label"].tolist())


def _numpy_sharpness(params, x, y):
    """Top eigenvalue of the loss's Hessian: central differences of the NumPy backprop
    gradient (h = 1e-5, symmetrized), then numpy.linalg.eigvalsh."""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    flat = np.asarray(flat, np.float64)

    def grad(f):
        p = jax.tree.map(np.asarray, unravel(f))
        return np.asarray(ravel_pytree(loss_and_grads(p, x, y)[1])[0], np.float64)

    h, cols = 1e-5, []
    for j in range(flat.size):
        e = np.zeros(flat.size)
        e[j] = h
        cols.append((grad(flat + e) - grad(flat - e)) / (2 * h))
    hess = np.stack(cols, axis=1)
    return float(np.linalg.eigvalsh(0.5 * (hess + hess.T))[-1])


@pytest.mark.cpu_only("needs two host CPU devices")
def test_sharpness_on_both_devices_of_a_sharded_sweep_matches_numpy(moons, x64):
    """The sharpness program sharded over this process's two host CPU devices: 36 runs fill the
    first device's block of 32 and spill onto the second, learning rates 0.01, 0.1, 0.5, 2 at
    positions 0-3 and, times 1 + 2^-40 (a grid point appears once), at 32-35, the same place
    in each device's block. Runs on both devices match the NumPy reference: the top
    eigenvalue of a finite-difference Hessian at the initial weights and at the weights after
    30 steps of NumPy gradient descent; each twin on the second device equals the first
    device's run to 1e-9. The config is the edge-of-stability test's (plain SGD), so this
    reuses its compiled program."""
    assert len(jax.local_devices()) == 2
    x, y = moons
    params = random_params(np.random.default_rng(4), (2, 8, 1))
    lrs = [0.01, 0.1, 0.5, 2.0]
    sweep = lrs + list(np.linspace(0.02, 0.09, 28)) + [lr * (1 + 2.0**-40) for lr in lrs]
    cfg = {"model": {"hidden": [8]}, "train": {"steps": 30, "dtype": "float64"},
           "metrics": {"sharpness": True}, "sweep": {"learning_rate": sweep},
           "optimizer": {"name": "sgd"}}
    runs = run(cfg, (x, y), params).runs.set_index("run_id")
    assert (runs["label"] != "diverged").all()
    np.testing.assert_array_equal(runs["learning_rate"], sweep)  # the grid's own order
    cols = ["learning_rate", "sharpness_init", "sharpness_final", "final_loss"]
    first, second = runs.loc[:3, cols], runs.loc[32:35, cols]
    np.testing.assert_allclose(second.to_numpy(), first.to_numpy(), rtol=1e-9, atol=0)
    assert runs.loc[32:35, "label"].tolist() == runs.loc[:3, "label"].tolist()
    lam0 = _numpy_sharpness(params, x, y)
    for i, lr in enumerate(lrs):
        _, history = gd_trajectory(params, x, y, lr, 30)
        for rid in (i, 32 + i):
            assert runs.loc[rid, "sharpness_init"] == pytest.approx(lam0, rel=1e-6)
            assert runs.loc[rid, "sharpness_final"] == pytest.approx(
                _numpy_sharpness(history[-1], x, y), rel=1e-6), (rid, lr)
