"""The seed network against an independent hand-written NumPy implementation (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_mlp import gd_curve, loss_and_grads, seed_init

import trainscape as ts
from trainscape.nn import losses
from trainscape.nn.models import mlp_apply

# these tests compute float64 references with JAX themselves
pytestmark = pytest.mark.usefixtures("x64")


@pytest.fixture(scope="module")
def cancer():
    x, y = ts.load_dataset({"name": "breast_cancer", "standardize": True})
    return x, y


@pytest.mark.parametrize("layout", ["auto", "samples", "features"])
@pytest.mark.parametrize("sizes", [(30, 128, 64, 1), (30, 16, 16, 1), (3, 16, 16, 1)])
def test_loss_and_gradients_match_numpy_backprop(cancer, sizes, layout):
    """Both layouts of the forward pass (activations (n, width) or (width, n)) give the
    hand-written NumPy backprop's loss and gradients, for the seed network and narrow ones
    (with 3 inputs the feature-major first layer is written as multiply-adds)."""
    x, y = cancer
    x = x[:, :sizes[0]]
    rng = np.random.default_rng(0)
    params = seed_init(rng, sizes)
    ref_loss, ref_g = loss_and_grads(params, x, y)

    def loss_fn(p):
        return losses.bce(mlp_apply(p, jnp.asarray(x), "tanh", layout=layout), jnp.asarray(y))

    value, g = jax.value_and_grad(loss_fn)(jax.tree.map(jnp.asarray, params))
    assert abs(float(value) - ref_loss) <= 1e-12 * abs(ref_loss)
    for gl, rl in zip(g, ref_g, strict=True):
        for k in ("w", "b"):
            np.testing.assert_allclose(np.asarray(gl[k]), rl[k], rtol=1e-9, atol=1e-12)


def _sweep_lrs(x, y, params, hidden, lrs, steps, dtype):
    """The engine's runs of `lrs` from `params` (every run the same weights): the results and
    their curves, one row per run, one column per step."""
    res = ts.run(
        {"data": {"standardize": False}, "model": {"hidden": hidden},
         "train": {"steps": steps, "dtype": dtype},
         "sweep": {"learning_rate": list(lrs)}},
        data=(x, y), init_params=params, out=None, progress=False,
    )
    assert sorted(res.runs["learning_rate"]) == sorted(lrs)
    return res, res.curves.pivot(index="run_id", columns="step", values="loss")


# Every compiled program trains a whole block of runs (padded), so the learning rates of one
# network share one sweep: three cost what one does.
@pytest.mark.parametrize("lrs, hidden", [((0.01, 0.3, 1.0), [128, 64]), ((0.3, 1.0), [16, 16]),
                                         ((0.3,), [256, 32])])
def test_training_curves_match_numpy_gradient_descent(cancer, lrs, hidden):
    """The engine's training loop, feature-major ([128, 64] and [16, 16] on 200 samples, which
    also store the data transposed in the loop) and sample-major ([256, 32]: a layer wider
    than the samples), against NumPy gradient descent, run by run."""
    x, y = cancer
    x, y = x[:200], y[:200]
    params = seed_init(np.random.default_rng(1), (30, *hidden, 1))
    steps = 40
    res, curves = _sweep_lrs(x, y, params, hidden, lrs, steps, "float64")
    for _, row in res.runs.iterrows():
        ref = gd_curve(params, x, y, row["learning_rate"], steps)
        got = curves.loc[row["run_id"]].to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=str(row["learning_rate"]))
        assert row["initial_loss"] == pytest.approx(ref[0], rel=1e-12)
        assert row["final_loss"] == pytest.approx(ref[-1], rel=1e-8)
        assert row["max_loss"] == pytest.approx(ref.max(), rel=1e-8)
        assert row["min_loss"] == pytest.approx(ref.min(), rel=1e-8)
        assert row["peak_step"] == int(np.argmax(ref))


def test_seed_init_distribution():
    from trainscape.nn.models import mlp_init

    p = mlp_init(jax.random.PRNGKey(3), (30, 128, 64, 1), init="seed", dtype="float64")
    w1, w2 = np.asarray(p[0]["w"]), np.asarray(p[1]["w"])
    assert w1.min() >= 0 and w1.max() < 1 and abs(w1.mean() - 0.5) < 0.02
    assert abs(w2.mean()) < 0.05 and abs(w2.std() - 1) < 0.05
    assert all(np.all(np.asarray(layer["b"]) == 0) for layer in p)


def test_layout_choice():
    """Feature-major for networks whose hidden layers are all narrower than the number of
    samples (version 0.6.0; before, at most 16 wide); outputs keep the (n, k) shape."""
    from trainscape.nn.models import feature_major, mlp_init

    def fm(sizes, n):
        shapes = jax.eval_shape(lambda: mlp_init(jax.random.PRNGKey(0), sizes))  # no compute
        return feature_major(shapes, jnp.zeros((n, sizes[0])))

    assert fm((2, 16, 16, 1), 256) and fm((30, 4, 1), 64) and fm((30, 128, 64, 1), 569)
    assert fm((2, 255, 1), 256) and not fm((2, 256, 1), 256) and not fm((2, 8, 300, 1), 256)
    assert not fm((2, 16, 1), 16)  # no longer axis than the width
    assert not fm((2, 1), 256)  # no hidden layer
    p = mlp_init(jax.random.PRNGKey(0), (2, 8, 3))
    assert mlp_apply(p, jnp.ones((50, 2)), layout="features").shape == (50, 3)
    with pytest.raises(ValueError, match="layout"):
        mlp_apply(p, jnp.ones((50, 2)), layout="rows")


@pytest.mark.parametrize("layout", ["samples", "features"])
def test_hessian_of_both_layouts_matches_numpy_finite_differences(layout):
    """Second order (what the sharpness measures: forward mode over reverse mode) through both
    layouts, including the feature-major bias add's own derivative rule, against central
    differences of the NumPy backprop gradient."""
    from jax.flatten_util import ravel_pytree

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 3)), (rng.random(40) < 0.5).astype(float)
    params = [{"w": rng.normal(size=(a, b)) * 0.8, "b": rng.normal(size=b) * 0.3}
              for a, b in [(3, 6), (6, 5), (5, 1)]]
    flat, unravel = ravel_pytree(jax.tree.map(jnp.asarray, params))

    def loss_flat(f):
        return losses.bce(mlp_apply(unravel(f), jnp.asarray(x), "tanh", layout=layout),
                          jnp.asarray(y))

    hess = np.asarray(jax.jit(jax.hessian(loss_flat))(flat))
    h, cols = 1e-5, []
    for j in range(flat.size):
        e = np.zeros(flat.size)
        e[j] = h
        gp = ravel_pytree(loss_and_grads(jax.tree.map(np.asarray, unravel(flat + e)), x, y)[1])[0]
        gm = ravel_pytree(loss_and_grads(jax.tree.map(np.asarray, unravel(flat - e)), x, y)[1])[0]
        cols.append((np.asarray(gp) - np.asarray(gm)) / (2 * h))
    ref = np.stack(cols, axis=1)
    np.testing.assert_allclose(hess, 0.5 * (ref + ref.T), rtol=1e-6, atol=1e-8)


U32 = 2.0**-24  # float32 unit roundoff
K_STEP = 16  # relative float32 error one step adds to the loss, in units of U32 (see below)


def _rounded32(a):
    return np.asarray(a, np.float32).astype(np.float64)


@pytest.mark.parametrize("n, hidden, features", [(200, [128, 64], True), (200, [16, 16], True),
                                                 (100, [128, 64], False)])
def test_float32_training_tracks_the_float64_reference(cancer, n, hidden, features):
    """Default-dtype (float32) runs against the float64 NumPy reference, every learning rate,
    every step, in both layouts the engine picks on CPU (feature-major: hidden layers narrower
    than the samples; sample-major: the seed network on 100 samples).

    The reference starts from the float32-rounded weights and data the engine starts from, so
    what differs is float32 rounding along the run. Each step rounds every weight of the update
    to float32 (a relative perturbation of at most u = 2^-24 per weight) and computes the loss
    and gradient with a few roundings per operation. A(t) is how much a perturbation of one
    unit in every weight at step 0 has moved the loss by step t, measured on the reference
    itself: the running maximum of |loss'_t - loss_t| / (u loss_t) over two random-sign
    perturbations, at least 1. The t + 1 steps' roundings are independent in sign, so they add
    like a random walk, each carried at most A(t) far: |loss32_t - loss64_t| <=
    K_STEP u sqrt(t + 1) A(t) loss64_t, with K_STEP = 16 units per step for the loss's and
    gradient's own roundings on top of the weights'. Where training is stable (lr 0.01: A(40)
    is 4-6) the bound is about 600 units (4e-5 relative) at step 40; after a catapult (lr 1 on
    the seed network) A reaches 1e7 and the late steps are bounded only by the reference's own
    sensitivity."""
    from trainscape.nn.models import feature_major

    x, y = cancer
    x, y = x[:n], y[:n]
    lrs = (0.01, 0.3, 1.0)
    steps = 40
    params = seed_init(np.random.default_rng(1), (30, *hidden, 1))
    assert feature_major(params, x) == features
    res, curves = _sweep_lrs(x, y, params, hidden, lrs, steps, "float32")
    p32 = [{k: _rounded32(v) for k, v in layer.items()} for layer in params]
    x32 = _rounded32(x)
    rng = np.random.default_rng(0)
    t = np.arange(steps + 1)
    for _, row in res.runs.iterrows():
        lr = row["learning_rate"]
        ref = gd_curve(p32, x32, y, lr, steps)
        growth = np.ones(steps + 1)
        for _ in range(2):
            nudged = [{k: v * (1 + U32 * rng.choice([-1.0, 1.0], v.shape))
                       for k, v in layer.items()} for layer in p32]
            apart = np.abs(gd_curve(nudged, x32, y, lr, steps) - ref) / (U32 * ref)
            growth = np.maximum(growth, np.maximum.accumulate(apart))
        tol = K_STEP * U32 * np.sqrt(t + 1) * growth
        got = curves.loc[row["run_id"]].to_numpy()
        err = np.abs(got - ref) / ref
        assert np.all(err <= tol), (lr, int(np.argmax(err / tol)), (err / tol).max())
        assert row["initial_loss"] == pytest.approx(ref[0], rel=K_STEP * U32)
