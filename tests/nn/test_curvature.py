"""Sharpness checks against closed forms and an independent NumPy Hessian.

Reference spectra never come from JAX autodiff: least squares and quadratics have closed-form
Hessians, and the tanh network's Hessian is built by central finite differences of a
hand-written NumPy backward pass. Run this file as a script to print the accuracy table
quoted in docs/curvature.md:  python tests/nn/test_curvature.py
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainscape.nn.curvature import Eigenpair, hvp, top_eigenvalue

# these tests compute float64 references with JAX themselves
pytestmark = pytest.mark.usefixtures("x64")

# ---------------------------------------------------------------------------------------------
# Problems


def lsq_data(rng, n, d, k=None):
    """Features with unequal scales, so the top of the spectrum is spread out like real data."""
    x_nd = rng.normal(size=(n, d)) * np.linspace(0.3, 2.0, d)
    y = rng.normal(size=(n,) if k is None else (n, k))
    return x_nd, y


def lsq_loss(w_d, x_nd, y_n):
    """The project's MSE: mean of squared errors, no factor 1/2."""
    return jnp.mean(jnp.square(x_nd @ w_d - y_n))


def lsq_pytree_loss(params, x_nd, y_nk):
    layer = params[0]
    return jnp.mean(jnp.square(x_nd @ layer["w"] + layer["b"] - y_nk))


def lsq_pytree_hessian(x_nd, k):
    """Closed form in ravel_pytree order of [{"b": (k,), "w": (d, k)}] (dict keys sort b, w).

    With z = [1, x], output j only sees its own column (b_j, w_:j) and
    d2L / d theta_j^2 = 2 Z^T Z / (n k); outputs do not couple.
    """
    n, d = x_nd.shape
    z_nd1 = np.concatenate([np.ones((n, 1)), x_nd], axis=1)
    block = 2.0 * z_nd1.T @ z_nd1 / (n * k)  # (1 + d, 1 + d), index 0 = bias
    size = k * (1 + d)
    hess = np.zeros((size, size))

    def index(j, f):  # flat index of feature f (0 = bias) of output j
        return j if f == 0 else k + (f - 1) * k + j

    for j in range(k):
        idx = [index(j, f) for f in range(1 + d)]
        hess[np.ix_(idx, idx)] = block
    return hess


def rotated_quadratic(rng, eigs):
    """A = Q diag(eigs) Q^T with a random orthogonal Q; loss 0.5 p^T A p has Hessian A."""
    q, _ = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))
    return (q * np.asarray(eigs)) @ q.T


def quad_loss(p, a_dd):
    return 0.5 * p @ a_dd @ p


def mlp_init(rng, d_in, width, scale=1.0):
    return {
        "W1": scale * rng.normal(size=(d_in, width)) / np.sqrt(d_in),
        "b1": 0.5 * rng.normal(size=(width,)),
        "W2": scale * rng.normal(size=(width, 1)) / np.sqrt(width),
        "b2": 0.5 * rng.normal(size=(1,)),
    }


def mlp_loss(params, x_nd, y_n):
    """d_in -> width tanh -> 1, mean binary cross-entropy on logits."""
    z_n = (jnp.tanh(x_nd @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"])[:, 0]
    return jnp.mean(jnp.logaddexp(0.0, z_n) - y_n * z_n)


def mlp_grad_numpy(params, x_nd, y_n):
    """Hand-written backward pass of mlp_loss."""
    n = x_nd.shape[0]
    h_nw = np.tanh(x_nd @ params["W1"] + params["b1"])
    z_n = (h_nw @ params["W2"] + params["b2"])[:, 0]
    gz_n = (1.0 / (1.0 + np.exp(-z_n)) - y_n) / n
    ga_nw = gz_n[:, None] * params["W2"][:, 0] * (1.0 - h_nw**2)
    return {
        "W1": x_nd.T @ ga_nw,
        "b1": ga_nw.sum(0),
        "W2": h_nw.T @ gz_n[:, None],
        "b2": np.array([gz_n.sum()]),
    }


def np_ravel(tree):
    """Flatten a dict of arrays in ravel_pytree's order (sorted keys, C order), NumPy only."""
    return np.concatenate([np.ravel(tree[k]) for k in sorted(tree)])


def np_unravel(flat, like):
    out, start = {}, 0
    for k in sorted(like):
        size = np.size(like[k])
        out[k] = flat[start:start + size].reshape(np.shape(like[k]))
        start += size
    return out


def fd_hessian(params, x_nd, y_n, h=1e-5):
    """Central differences of the NumPy gradient, columns in ravel_pytree order, symmetrized."""
    flat = np_ravel(params)
    cols = []
    for j in range(flat.size):
        e = np.zeros_like(flat)
        e[j] = h
        g_plus = np_ravel(mlp_grad_numpy(np_unravel(flat + e, params), x_nd, y_n))
        g_minus = np_ravel(mlp_grad_numpy(np_unravel(flat - e, params), x_nd, y_n))
        cols.append((g_plus - g_minus) / (2 * h))
    hess = np.stack(cols, axis=1)
    return 0.5 * (hess + hess.T)


@functools.lru_cache
def mlp_hessian(seed):
    """NumPy finite-difference Hessian of mlp_problem(seed), computed once per test process."""
    return fd_hessian(*mlp_problem(seed))


def mlp_problem(seed, d_in=4, width=6, n=64, scale=1.5):
    rng = np.random.default_rng(seed)
    x_nd = rng.normal(size=(n, d_in))
    y_n = (rng.uniform(size=n) < 0.5).astype(np.float64)
    return mlp_init(rng, d_in, width, scale), x_nd, y_n


def rel(a, b):
    return abs(float(a) - float(b)) / abs(float(b))


def flat_vec(tree):
    """ravel_pytree order (tree_leaves order), in NumPy: eager JAX ops would each compile."""
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64))
                           for leaf in jax.tree_util.tree_leaves(tree)])


KEY = jax.random.key(0)

# Shared jitted entry points (data passed as arguments), so each configuration compiles once per
# test process: compiling the Lanczos loop costs ~1-2 s of CPU, more than any solve here.
lsq_top = jax.jit(lambda w, key, x, y: top_eigenvalue(lambda p: lsq_loss(p, x, y), w, key))
quad_all = jax.jit(lambda p, key, a: {
    **{which: top_eigenvalue(lambda q: quad_loss(q, a), p, key, which=which)
       for which in ("magnitude", "largest", "smallest")},
    "magnitude_tol": top_eigenvalue(lambda q: quad_loss(q, a), p, key, tol=1e-12),
})
mlp_top = jax.jit(
    lambda params, key, x, y: top_eigenvalue(lambda p: mlp_loss(p, x, y), params, key))

# ---------------------------------------------------------------------------------------------
# hvp


def test_hvp_matches_closed_form_on_pytree():
    rng = np.random.default_rng(1)
    x_nd, y_nk = lsq_data(rng, 50, 4, k=3)
    x, y = jnp.asarray(x_nd), jnp.asarray(y_nk)
    params = [{"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=3))}]
    v = [{"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=3))}]
    hv = jax.jit(lambda p, v: hvp(lambda q: lsq_pytree_loss(q, x, y), p, v))(params, v)
    assert jax.tree_util.tree_structure(hv) == jax.tree_util.tree_structure(params)
    expected = lsq_pytree_hessian(x_nd, 3) @ flat_vec(v)
    np.testing.assert_allclose(flat_vec(hv), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Closed-form Hessians


def test_least_squares_matches_eigvalsh():
    rng = np.random.default_rng(2)
    x_nd, y_n = lsq_data(rng, 200, 40)  # 40 params: 20 steps do not exhaust the Krylov space
    hess = 2.0 * x_nd.T @ x_nd / 200
    expected = np.linalg.eigvalsh(hess)[-1]
    res = lsq_top(jnp.zeros(40, jnp.float64), KEY, jnp.asarray(x_nd), jnp.asarray(y_n))
    assert isinstance(res, Eigenpair)
    assert rel(res.eigval, expected) < 1e-6
    v = np.asarray(res.eigvec)
    assert abs(np.linalg.norm(v) - 1.0) < 1e-12
    # the reported residual is the true one, and bounds the eigenvalue error
    true_res = np.linalg.norm(hess @ v - float(res.eigval) * v)
    assert abs(float(res.residual) - true_res) < 1e-9 * expected
    assert abs(float(res.eigval) - expected) <= float(res.residual) + 1e-12 * expected
    assert int(res.num_hvps) == 20


def test_rank_deficient_hessian_restarts_cleanly():
    # rank-5 features: the Krylov space is exhausted after 5 steps and Lanczos must restart
    rng = np.random.default_rng(6)
    x_nd = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 40))
    y_n = rng.normal(size=200)
    hess = 2.0 * x_nd.T @ x_nd / 200
    expected = np.linalg.eigvalsh(hess)[-1]
    res = lsq_top(jnp.zeros(40, jnp.float64), KEY, jnp.asarray(x_nd), jnp.asarray(y_n))
    assert rel(res.eigval, expected) < 1e-10
    v = np.asarray(res.eigvec)
    assert np.all(np.isfinite(v))
    assert np.linalg.norm(hess @ v - expected * v) < 1e-8 * expected


def test_least_squares_pytree_multi_output():
    rng = np.random.default_rng(3)
    d, k = 12, 3
    x_nd, y_nk = lsq_data(rng, 100, d, k=k)
    x, y = jnp.asarray(x_nd), jnp.asarray(y_nk)
    hess = lsq_pytree_hessian(x_nd, k)
    params = [{"w": jnp.asarray(rng.normal(size=(d, k))), "b": jnp.zeros(k, jnp.float64)}]
    res = jax.jit(lambda p, key: top_eigenvalue(lambda q: lsq_pytree_loss(q, x, y), p, key))(
        params, KEY)
    assert jax.tree_util.tree_structure(res.eigvec) == jax.tree_util.tree_structure(params)
    assert res.eigvec[0]["w"].shape == (d, k)
    expected = np.linalg.eigvalsh(hess)[-1]
    assert rel(res.eigval, expected) < 1e-6
    v = flat_vec(res.eigvec)
    # the top eigenvalue has multiplicity k; any vector of its eigenspace is a valid answer
    assert np.linalg.norm(hess @ v - expected * v) < 1e-6 * expected


def test_indefinite_quadratic_reports_documented_end():
    rng = np.random.default_rng(4)
    p0 = jnp.asarray(rng.normal(size=8))
    a_neg = rotated_quadratic(rng, [-10.0, 4.0, 3.0, 2.0, 1.0, 0.5, -0.3, -1.0])
    out = quad_all(p0, KEY, jnp.asarray(a_neg))
    assert rel(out["magnitude"].eigval, -10.0) < 1e-10  # largest |lambda|, sign kept
    assert rel(out["largest"].eigval, 4.0) < 1e-10
    assert rel(out["smallest"].eigval, -10.0) < 1e-10
    assert int(out["largest"].num_hvps) == 8  # Krylov dimension capped at the 8 params
    assert rel(out["magnitude_tol"].eigval, -10.0) < 1e-10  # early-stopping path
    for which, lam in [("magnitude", -10.0), ("largest", 4.0), ("smallest", -10.0),
                       ("magnitude_tol", -10.0)]:
        v = flat_vec(out[which].eigvec)
        np.testing.assert_allclose(a_neg @ v, lam * v, atol=1e-9)

    a_pos = rotated_quadratic(rng, [-3.0, 7.0, 1.0, 0.2, -0.5, 2.0, 0.0, -2.9])
    out = quad_all(p0, KEY, jnp.asarray(a_pos))
    assert rel(out["magnitude"].eigval, 7.0) < 1e-10
    assert rel(out["magnitude_tol"].eigval, 7.0) < 1e-10
    assert rel(out["smallest"].eigval, -3.0) < 1e-10

    # a zero Hessian breaks down at every step: answer 0 with a finite unit vector
    out = quad_all(p0, KEY, jnp.zeros((8, 8), jnp.float64))
    for res in out.values():
        assert float(res.eigval) == 0.0
        assert abs(np.linalg.norm(flat_vec(res.eigvec)) - 1.0) < 1e-12


def test_power_iteration_finds_largest_magnitude():
    rng = np.random.default_rng(5)
    a = jnp.asarray(rotated_quadratic(rng, [-10.0, 2.0, 1.0, -1.0, 0.5, 0.1]))
    res = jax.jit(lambda p, key: top_eigenvalue(lambda q: quad_loss(q, a), p, key,
                                                method="power", num_iters=40))(
        jnp.zeros(6, jnp.float64), KEY)
    # |lambda_2 / lambda_1| = 0.2: the Rayleigh quotient error shrinks 25x per step
    assert rel(res.eigval, -10.0) < 1e-12
    assert int(res.num_hvps) == 40


def test_power_iteration_reports_the_rayleigh_quotient_of_its_vector():
    """Stopped long before convergence (3 HVPs), the power method's eigval is still the
    Rayleigh quotient of the eigvec it returns, and residual is that pair's measured
    ||A v - eigval v||, both computed here in NumPy."""
    rng = np.random.default_rng(12)
    a = rotated_quadratic(rng, [-10.0, 9.0, 5.0, -4.0, 2.0, 1.0])
    res = jax.jit(lambda p, key: top_eigenvalue(lambda q: quad_loss(q, jnp.asarray(a)), p, key,
                                                method="power", num_iters=3))(
        jnp.zeros(6, jnp.float64), KEY)
    v = np.asarray(res.eigvec)
    assert abs(np.linalg.norm(v) - 1.0) < 1e-12
    assert float(res.eigval) == pytest.approx(v @ a @ v, rel=1e-12)
    assert float(res.residual) == pytest.approx(np.linalg.norm(a @ v - (v @ a @ v) * v),
                                                rel=1e-10)
    assert np.linalg.norm(a @ v - float(res.eigval) * v) > 1e-3  # not converged: a real check


def test_zero_hessian_power_iteration_keeps_a_unit_vector():
    res = jax.jit(lambda p, key: top_eigenvalue(lambda q: 0.0 * jnp.sum(q**2), p, key,
                                                method="power", num_iters=4))(
        jnp.ones(5, jnp.float64), KEY)
    assert float(res.eigval) == 0.0
    assert abs(np.linalg.norm(np.asarray(res.eigvec)) - 1.0) < 1e-12


def test_tol_is_relative_to_the_eigenvalue():
    """`tol` compares consecutive Ritz values relative to their size, so scaling the Hessian by
    a power of two (exact in floating point) scales the answer and leaves the number of HVPs
    unchanged, for curvatures of 1e-9 and of 1e6 alike."""
    rng = np.random.default_rng(13)
    a = rotated_quadratic(rng, np.r_[10.0, 7.0, rng.uniform(-3.0, 3.0, size=38)])
    top = jax.jit(lambda p, key, a: {
        method: top_eigenvalue(lambda q: quad_loss(q, a), p, key, method=method,
                               num_iters=60, tol=1e-8) for method in ("lanczos", "power")})
    p0 = jnp.zeros(40, jnp.float64)
    out = {c: top(p0, KEY, jnp.asarray(c * a)) for c in (1.0, 2.0**-30, 2.0**20)}
    for method in ("lanczos", "power"):
        base = out[1.0][method]
        assert 2 < int(base.num_hvps) < (40 if method == "lanczos" else 60)
        assert rel(base.eigval, 10.0) < 1e-6
        for c in (2.0**-30, 2.0**20):
            assert int(out[c][method].num_hvps) == int(base.num_hvps), (method, c)
            assert rel(out[c][method].eigval, c * float(base.eigval)) < 1e-12


def test_tol_stops_early_at_either_end_of_a_definite_spectrum():
    """Stopped by `tol` before the Krylov space is full, the wanted end of a definite spectrum
    is found, not an eigenvalue of the unfilled part of T: the largest (negative) eigenvalue of
    a negative definite Hessian, the smallest (positive) one of a positive definite one."""
    rng = np.random.default_rng(14)
    eigs = np.r_[-0.5, -1.5, rng.uniform(-10.0, -3.0, size=28)]
    a = rotated_quadratic(rng, eigs)
    both = jax.jit(lambda p, key, a: (
        top_eigenvalue(lambda q: quad_loss(q, a), p, key, which="largest", num_iters=40,
                       tol=1e-10),
        top_eigenvalue(lambda q: quad_loss(q, -a), p, key, which="smallest", num_iters=40,
                       tol=1e-10)))
    largest, smallest = both(jnp.zeros(30, jnp.float64), KEY, jnp.asarray(a))
    for res, lam, sign in ((largest, -0.5, 1.0), (smallest, 0.5, -1.0)):
        assert int(res.num_hvps) < 30  # stopped early
        assert rel(res.eigval, lam) < 1e-8
        v = flat_vec(res.eigvec)
        np.testing.assert_allclose(sign * a @ v, lam * v, atol=1e-6)


def test_an_exact_magnitude_tie_returns_the_positive_end():
    """|lambda_max| == |lambda_min| exactly (T = diag(2, -2), in either order): "magnitude"
    returns +2 with its own Ritz vector, in all three places that choose between the ends."""
    from trainscape.nn import curvature

    zero = jnp.zeros(2, jnp.float64)
    for alphas, e_pos in ((jnp.array([2.0, -2.0]), [1.0, 0.0]),
                          (jnp.array([-2.0, 2.0]), [0.0, 1.0])):
        assert float(curvature._ritz_value(alphas, zero, 2, "magnitude")) == 2.0
        for theta, s in (curvature._ritz_pair_full(alphas, zero, "magnitude"),
                         curvature._ritz_pair(alphas, zero, 2, "magnitude")):
            assert float(theta) == 2.0
            np.testing.assert_allclose(np.abs(np.asarray(s)), e_pos)


def test_start_vectors_are_uniform_on_minus_one_one():
    """The hashed start vector is uniform(-1, 1) as documented: both signs, mean 0 and variance
    1/3 (to within 5 sigma over 20000 draws), reproducible per key and different across keys."""
    from trainscape.nn import curvature

    u = np.asarray(curvature._hashed_uniform(KEY, (2, 10000), jnp.float64))
    assert -1.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean()) < 5 * np.sqrt(1 / 3 / u.size)
    assert abs(u.var() - 1 / 3) < 5 * np.sqrt(4 / 45 / u.size)  # var of U^2 is 4/45
    assert not np.array_equal(u[0], u[1])
    np.testing.assert_array_equal(np.asarray(curvature._hashed_uniform(KEY, (2, 10000),
                                                                       jnp.float64)), u)
    other = np.asarray(curvature._hashed_uniform(jax.random.key(1), (2, 10000), jnp.float64))
    assert not np.array_equal(other, u)


# ---------------------------------------------------------------------------------------------
# Nonlinear network against an independent NumPy Hessian


def test_tanh_network_matches_numpy_finite_difference_hessian():
    params_np, x_nd, y_n = mlp_problem(seed=8)
    hess = mlp_hessian(8)
    assert hess.shape == (37, 37)
    evals = np.linalg.eigvalsh(hess)
    assert evals[0] < 0 < evals[-1]  # away from a minimum the Hessian is indefinite
    params = jax.tree_util.tree_map(jnp.asarray, params_np)
    x, y = jnp.asarray(x_nd), jnp.asarray(y_n)

    res = mlp_top(params, KEY, x, y)
    expected = evals[np.argmax(np.abs(evals))]
    assert rel(res.eigval, expected) < 1e-6
    v = flat_vec(res.eigvec)
    assert np.linalg.norm(hess @ v - expected * v) < 1e-5 * abs(expected)


# ---------------------------------------------------------------------------------------------
# Inside vmap / jit / scan, and dtype


def test_vmap_equals_one_by_one():
    problems = [mlp_problem(seed=s) for s in range(8, 12)]
    x, y = jnp.asarray(problems[0][1]), jnp.asarray(problems[0][2])  # shared data, as in a grid
    params_b = jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)),
                                      *[p for p, _, _ in problems])
    keys = list(jax.random.split(KEY, 4))
    batched = jax.jit(jax.vmap(mlp_top, in_axes=(0, 0, None, None)))(
        params_b, jnp.stack(keys), x, y)
    assert batched.eigval.shape == (4,)
    batched = jax.device_get(batched)
    for i, (params_np, _, _) in enumerate(problems):
        single = mlp_top(jax.tree_util.tree_map(jnp.asarray, params_np), keys[i], x, y)
        np.testing.assert_allclose(batched.eigval[i], float(single.eigval), rtol=1e-10)
        v_batched = flat_vec(jax.tree_util.tree_map(lambda a, i=i: a[i], batched.eigvec))
        assert abs(abs(np.dot(flat_vec(single.eigvec), v_batched)) - 1.0) < 1e-8


def test_inside_vmapped_scan_of_gradient_descent_with_tol():
    """The intended use: sharpness at each step of a vmapped lax.scan train_one."""
    rng = np.random.default_rng(9)
    x_nd, y_n = lsq_data(rng, 200, 40)
    x, y = jnp.asarray(x_nd), jnp.asarray(y_n)

    def loss(w):
        return lsq_loss(w, x, y)

    def train_one(w, key, lr):
        def step(w, key_t):
            eig = top_eigenvalue(loss, w, key_t, which="largest", num_iters=40, tol=1e-10)
            return w - lr * jax.grad(loss)(w), (eig.eigval, eig.num_hvps)

        return jax.lax.scan(step, w, jax.random.split(key, 3))

    w0_b = jnp.asarray(rng.normal(size=(5, 40)))
    lrs = jnp.linspace(0.01, 0.1, 5, dtype=jnp.float64)
    _, (sharp_bt, hvps_bt) = jax.jit(jax.vmap(train_one))(w0_b, jax.random.split(KEY, 5), lrs)
    assert sharp_bt.shape == (5, 3)
    # a quadratic loss has the same Hessian at every step of every run
    expected = np.linalg.eigvalsh(2.0 * x_nd.T @ x_nd / 200)[-1]
    np.testing.assert_allclose(np.asarray(sharp_bt), expected, rtol=1e-8)
    # tol stopped well before the 40-step budget (the count is per run even under vmap)
    assert np.all(np.asarray(hvps_bt) < 40)


def test_float32_stays_float32():
    rng = np.random.default_rng(10)
    x_nd, y_n = lsq_data(rng, 200, 40)
    expected = np.linalg.eigvalsh(2.0 * x_nd.T @ x_nd / 200)[-1]
    x32, y32 = jnp.asarray(x_nd, jnp.float32), jnp.asarray(y_n, jnp.float32)
    res = lsq_top(jnp.zeros(40, jnp.float32), KEY, x32, y32)
    assert res.eigval.dtype == jnp.float32
    assert res.residual.dtype == jnp.float32
    assert res.eigvec.dtype == jnp.float32
    assert rel(res.eigval, expected) < 1e-5


def test_rejects_bad_arguments():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    p = jnp.ones(3, jnp.float64)
    with pytest.raises(ValueError, match="method"):
        top_eigenvalue(loss, p, KEY, method="arnoldi")
    with pytest.raises(ValueError, match="which"):
        top_eigenvalue(loss, p, KEY, which="top")
    with pytest.raises(ValueError, match="power"):
        top_eigenvalue(loss, p, KEY, method="power", which="largest")
    with pytest.raises(ValueError, match="num_iters"):
        top_eigenvalue(loss, p, KEY, num_iters=0)
    with pytest.raises(ValueError, match="tol"):
        top_eigenvalue(loss, p, KEY, tol=0.0)


# ---------------------------------------------------------------------------------------------
# Accuracy table for docs/curvature.md (not a test)


def _accuracy_cases():
    """(name, loss, params, exact spectrum, estimates to run) for the accuracy table."""
    all_rows = ("magnitude", "largest", "power")
    cases = []
    for d in (40, 100):
        rng = np.random.default_rng(100 + d)
        x_nd, y_n = lsq_data(rng, 400, d)
        x, y = jnp.asarray(x_nd), jnp.asarray(y_n)
        evals = np.linalg.eigvalsh(2.0 * x_nd.T @ x_nd / 400)
        cases.append((f"least squares, {d} params", lambda w, x=x, y=y: lsq_loss(w, x, y),
                      jnp.zeros(d, jnp.float64), evals, all_rows))
    for width in (6, 32):
        params_np, x_nd, y_n = mlp_problem(seed=11, width=width)
        evals = np.linalg.eigvalsh(fd_hessian(params_np, x_nd, y_n))
        for dtype in (jnp.float64, jnp.float32):
            x, y = jnp.asarray(x_nd, dtype), jnp.asarray(y_n, dtype)
            params = jax.tree_util.tree_map(lambda a, t=dtype: jnp.asarray(a, t), params_np)
            cases.append((f"tanh MLP 4-{width}-1 bce, {evals.size} params, "
                          f"{jnp.dtype(dtype).name}", lambda p, x=x, y=y: mlp_loss(p, x, y),
                          params, evals, all_rows if dtype == jnp.float64 else all_rows[:2]))
    rng = np.random.default_rng(7)
    eigs = np.concatenate([rng.normal(size=196), [8.0, 6.0, -12.0, -9.0]])
    a_np = rotated_quadratic(rng, eigs)
    a = jnp.asarray(a_np)
    cases.append(("indefinite quadratic, 200 params", lambda p: quad_loss(p, a),
                  jnp.zeros(200, jnp.float64), np.linalg.eigvalsh(a_np), all_rows))
    return cases


def _accuracy_table(iters=(5, 10, 15, 20, 30), num_keys=5):
    """Max relative error over num_keys start vectors, for k = num_iters HVPs."""
    print("| problem | estimate | " + " | ".join(f"k={k}" for k in iters) + " |")
    print("|---|---|" + "---|" * len(iters))
    spectra = []
    for name, loss, params, evals, rows in _accuracy_cases():
        targets = {"magnitude": evals[np.argmax(np.abs(evals))], "largest": evals[-1]}
        for row_name in rows:
            method, which = ("power", "magnitude") if row_name == "power" else ("lanczos", row_name)
            errs = []
            for k in iters:
                fn = jax.jit(jax.vmap(
                    lambda key, k=k, m=method, w=which, f=loss, p=params: top_eigenvalue(
                        f, p, key, num_iters=k, method=m, which=w).eigval))
                est = np.asarray(fn(jax.random.split(jax.random.key(1), num_keys)), np.float64)
                errs.append(np.max(np.abs(est - targets[which]) / abs(targets[which])))
            label = "power" if method == "power" else f"lanczos {which}"
            print(f"| {name} | {label} | " + " | ".join(f"{e:.0e}" for e in errs) + " |")
        spectra.append(f"{name}: lambda_max={evals[-1]:.4g}, lambda_2={evals[-2]:.4g}, "
                       f"lambda_min={evals[0]:.4g}")
    print("\n" + "\n".join(spectra))


if __name__ == "__main__":
    sys.exit(_accuracy_table())
