"""The seed network against an independent hand-written NumPy implementation (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_mlp import gd_curve, loss_and_grads, seed_init

import trainscape as ts
from trainscape import losses
from trainscape.models import mlp_apply


@pytest.fixture(scope="module")
def cancer():
    x, y = ts.load_dataset({"name": "breast_cancer", "standardize": True})
    return x, y


def test_loss_and_gradients_match_numpy_backprop(cancer):
    x, y = cancer
    rng = np.random.default_rng(0)
    params = seed_init(rng, (30, 128, 64, 1))
    ref_loss, ref_g = loss_and_grads(params, x, y)

    def loss_fn(p):
        return losses.bce(mlp_apply(p, jnp.asarray(x), "tanh"), jnp.asarray(y))

    value, g = jax.value_and_grad(loss_fn)(jax.tree.map(jnp.asarray, params))
    assert abs(float(value) - ref_loss) <= 1e-12 * abs(ref_loss)
    for gl, rl in zip(g, ref_g, strict=True):
        for k in ("w", "b"):
            np.testing.assert_allclose(np.asarray(gl[k]), rl[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lr", [0.01, 0.3, 1.0])
def test_training_curves_match_numpy_gradient_descent(cancer, lr):
    x, y = cancer
    x, y = x[:200], y[:200]
    params = seed_init(np.random.default_rng(1), (30, 128, 64, 1))
    steps = 40
    ref = gd_curve(params, x, y, lr, steps)
    res = ts.run(
        {"model": {"hidden": [128, 64]}, "train": {"steps": steps, "dtype": "float64"},
         "sweep": {"learning_rate": [lr]}},
        data=(x, y), init_params=params, out=None, progress=False,
    )
    got = res.curves.sort_values("step")["loss"].to_numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    row = res.runs.iloc[0]
    assert row["initial_loss"] == pytest.approx(ref[0], rel=1e-12)
    assert row["final_loss"] == pytest.approx(ref[-1], rel=1e-8)
    assert row["max_loss"] == pytest.approx(ref.max(), rel=1e-8)
    assert row["min_loss"] == pytest.approx(ref.min(), rel=1e-8)
    assert row["peak_step"] == int(np.argmax(ref))


def test_seed_init_distribution():
    from trainscape.models import mlp_init

    p = mlp_init(jax.random.PRNGKey(3), (30, 128, 64, 1), init="seed", dtype="float64")
    w1, w2 = np.asarray(p[0]["w"]), np.asarray(p[1]["w"])
    assert w1.min() >= 0 and w1.max() < 1 and abs(w1.mean() - 0.5) < 0.02
    assert abs(w2.mean()) < 0.05 and abs(w2.std() - 1) < 0.05
    assert all(np.all(np.asarray(layer["b"]) == 0) for layer in p)
