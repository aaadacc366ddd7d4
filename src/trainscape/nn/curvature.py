"""Hessian sharpness: Hessian-vector products and the top Hessian eigenvalue.

Everything here is a pure function of ``(loss_fn, params, key)`` built from ``lax`` loops, with
no Python control flow on traced values, so it can run inside a ``jax.vmap``-ed, ``jax.jit``-ed
``train_one``. Gradient descent with step ``lr`` is linearly unstable along any direction whose
curvature exceeds ``2 / lr``; compare ``top_eigenvalue(..., which="largest").eigval`` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

PyTree = Any
LossFn = Callable[[PyTree], jax.Array]

METHODS = ("lanczos", "power")
WHICH = ("magnitude", "largest", "smallest")

# Reorthogonalization must be exact to working precision; TF32/bf16 matmuls would undo it.
_HIGHEST = lax.Precision.HIGHEST


def _eigh_unbatched(t: jax.Array):
    return tuple(jnp.linalg.eigh(t))  # (ascending eigenvalues, eigenvectors)


@jax.custom_batching.custom_vmap
def _eigh(t: jax.Array):
    """`jnp.linalg.eigh` of a small symmetric matrix: (ascending eigenvalues, eigenvectors).

    On CPU a batch of these is solved one matrix at a time. jaxlib's batched LAPACK kernel
    splits its batch over XLA's intra-op thread pool and waits for the pieces from inside a
    thread of that same pool; when the executor runs two such kernels at once (e.g. on a
    2-core machine, where the pool has two threads) each waits for work that no free thread
    is left to run, and the program hangs at 0% CPU (seen with `metrics.sharpness` on a
    vmapped sweep). A k x k tridiagonal eigenproblem with k ~ 20 costs microseconds, so the
    sequential loop is cheap; other platforms keep the batched solver.
    """
    return _eigh_unbatched(t)


@_eigh.def_vmap
def _eigh_vmap(axis_size, in_batched, t):
    (batched,) = in_batched
    if not batched:
        return _eigh(t), (False, False)
    out = lax.platform_dependent(t, cpu=lambda m: lax.map(_eigh, m),
                                 default=jax.vmap(_eigh_unbatched))
    return out, (True, True)


class Eigenpair(NamedTuple):
    """An estimated Hessian eigenpair.

    eigval: scalar in the params' dtype, with its sign.
    eigvec: pytree shaped like params, unit Euclidean norm over all leaves (sign arbitrary).
    residual: ||H eigvec - eigval eigvec||; the exact spectrum has an eigenvalue within this
        distance of eigval (Lanczos: the free estimate |beta_m s_m|; power: measured).
    num_hvps: int32, Hessian-vector products spent (< num_iters only when tol stopped early).
    """

    eigval: jax.Array
    eigvec: PyTree
    residual: jax.Array
    num_hvps: jax.Array


def hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product H(params) @ v by forward-over-reverse (jvp of grad).

    ``v`` has the structure and dtypes of ``params``; the result does too. Costs about as much
    as two to three gradient evaluations and never forms H.
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def top_eigenvalue(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    num_iters: int = 20,
    tol: float | None = None,
    method: str = "lanczos",
    which: str = "magnitude",
) -> Eigenpair:
    """Extreme eigenpair of the Hessian of ``loss_fn`` at ``params`` from at most num_iters HVPs.

    which:
      "magnitude" (default): the eigenvalue of largest |lambda|, returned with its sign (a
          large negative curvature is reported as a negative number). On an exact tie
          |lambda_max| == |lambda_min| the positive one is returned.
      "largest": the largest algebraic eigenvalue lambda_max, the "sharpness" of the
          edge-of-stability literature; GD with step lr is unstable along it when > 2 / lr.
      "smallest": the smallest algebraic eigenvalue (most negative curvature).
    method:
      "lanczos" (default): Lanczos with full reorthogonalization; Krylov dimension
          min(num_iters, number of parameters). Gives both spectrum ends, any ``which``.
      "power": power iteration on H; converges to the largest |lambda| only, so it accepts
          only which="magnitude", and stalls when lambda_max ~ -lambda_min.
    tol: if given, stop once the target Ritz value changes by <= tol * |value| between two
        consecutive iterations (under vmap the loop runs until every run has stopped).

    The start vector (uniform(-1, 1) entries) is a hash of ``key``'s bits, so each key gives a
    different, reproducible start. Iterations run in the params' dtype (ravelled to
    one vector); the k x k tridiagonal eigenproblem is solved with ``jnp.linalg.eigh``. Lanczos
    stores a (k, num_params) basis per call. Not reverse-differentiable (uses while_loop).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if method == "power" and which != "magnitude":
        raise ValueError("power iteration only finds the largest-|lambda| eigenvalue; "
                         "use method='lanczos' for which='largest' or 'smallest'")
    if int(num_iters) != num_iters or num_iters < 1:
        raise ValueError(f"num_iters must be a positive integer, got {num_iters!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be positive or None, got {tol!r}")

    flat_params, unravel = ravel_pytree(params)
    dtype = flat_params.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"params must be floating point, got {dtype}")
    grad_fn = jax.grad(loss_fn)

    def flat_hvp(v_flat: jax.Array) -> jax.Array:
        hv = jax.jvp(grad_fn, (params,), (unravel(v_flat),))[1]
        return ravel_pytree(hv)[0].astype(dtype)

    draws_2n = _hashed_uniform(key, (2,) + flat_params.shape, dtype)  # start vector, restarts
    v0 = draws_2n[0]
    tol_arr = None if tol is None else jnp.asarray(tol, dtype)
    if method == "power":
        theta, vec, residual, n_used = _power(flat_hvp, v0, int(num_iters), tol_arr)
    else:
        # Beyond num_params steps the Krylov space is all of R^n; more would only add noise.
        k = min(int(num_iters), flat_params.shape[0])
        theta, vec, residual, n_used = _lanczos(flat_hvp, v0, draws_2n[1], k, tol_arr, which)
    return Eigenpair(theta, unravel(vec), residual, n_used.astype(jnp.int32))


def _lowbias32(x: jax.Array) -> jax.Array:
    """C. Wellons' "lowbias32" uint32 hash: a bijection with near-ideal avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _hashed_uniform(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Uniform(-1, 1) entries from an integer hash of the key's bits.

    Any generic vector starts Lanczos equally well; jax.random's threefry would be the single
    most expensive thing to compile here (~1 s on CPU, ~2 s under vmap), so hash instead.
    Works for typed keys and legacy uint32 keys of any PRNG implementation.
    """
    words = jax.random.key_data(key).astype(jnp.uint32).reshape(-1)
    seed = jnp.uint32(0x9E3779B9)
    for j in range(words.shape[0]):  # 2 or 4 words: a static loop
        seed = _lowbias32(seed ^ words[j])
    count = 1
    for size in shape:
        count *= size
    # odd multiplier: distinct indices stay distinct before the bijective hash
    bits = _lowbias32(jnp.arange(count, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + seed)
    unit_interval = (bits >> 8).astype(dtype) * jnp.asarray(2.0**-24, dtype)  # 24 exact bits
    return (2 * unit_interval - 1).reshape(shape)


def _unit(v: jax.Array) -> jax.Array:
    """v / ||v||, leaving an all-zero v at zero instead of NaN."""
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, jnp.ones_like(norm))


def _orthogonalize(w: jax.Array, basis_kn: jax.Array) -> jax.Array:
    """Remove from w (n,) or (b, n) its components along the rows of basis_kn.

    Unfilled (zero) rows of basis_kn contribute nothing.

    Two classical Gram-Schmidt passes ("twice is enough") keep the basis orthonormal to
    working precision, which is what makes the Ritz values trustworthy without restarts.
    """
    for _ in range(2):
        w = w - jnp.matmul(jnp.matmul(w, basis_kn.T, precision=_HIGHEST), basis_kn,
                           precision=_HIGHEST)
    return w


def _tridiagonal(alphas: jax.Array, betas: jax.Array, m: jax.Array, pad: jax.Array) -> jax.Array:
    """k x k matrix holding T_m (the leading m x m Lanczos matrix) and pad on the rest.

    The padded block is decoupled from T_m, so its eigenvalues are exactly ``pad``.
    """
    k = alphas.shape[0]
    idx = jnp.arange(k)
    diag = jnp.where(idx < m, alphas, pad)
    off = jnp.where(idx[:-1] < m - 1, betas[:-1], jnp.zeros_like(betas[:-1]))
    return jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _pick(hi: jax.Array, lo: jax.Array, which: str) -> jax.Array:
    """Target Ritz value from the top (hi) and bottom (lo) ones; ties in |.| go to hi."""
    if which == "largest":
        return hi
    if which == "smallest":
        return lo
    return jnp.where(hi >= -lo, hi, lo)


def _ritz_value(alphas, betas, m, which) -> jax.Array:
    """Target eigenvalue of T_m only (cheap, for the convergence test).

    Pads with alpha_0 = e_1^T T_m e_1, which lies inside T_m's spectrum, so the padding cannot
    become the max, min or max-|.| eigenvalue.
    """
    evals = _eigh(_tridiagonal(alphas, betas, m, alphas[0]))[0]
    return _pick(evals[-1], evals[0], which)


def _ritz_pair_full(alphas, betas, which):
    """Target eigenpair of the full k x k T (no padding, so one eigh serves both ends)."""
    k = alphas.shape[0]
    evals, evecs = _eigh(_tridiagonal(alphas, betas, k, alphas[0]))
    theta = _pick(evals[-1], evals[0], which)
    if which == "largest":
        return theta, evecs[:, -1]
    if which == "smallest":
        return theta, evecs[:, 0]
    return theta, jnp.where(evals[-1] >= -evals[0], evecs[:, -1], evecs[:, 0])


def _ritz_pair(alphas, betas, m, which):
    """Target eigenpair (theta, s) of T_m, s of length k with ~zeros past m.

    Each end is found with the padding pushed strictly beyond the Gershgorin disc of T_m, so
    the padded block can never tie with (and steal the eigenvector of) the wanted end.
    """
    radius = jnp.max(jnp.abs(alphas)) + 2 * jnp.max(jnp.abs(betas))
    far = 2 * radius + 1

    def end(top: bool):
        evals, evecs = _eigh(_tridiagonal(alphas, betas, m, -far if top else far))
        j = -1 if top else 0
        return evals[j], evecs[:, j]

    if which == "largest":
        return end(True)
    if which == "smallest":
        return end(False)
    (hi, s_hi), (lo, s_lo) = end(True), end(False)
    take_hi = hi >= -lo
    return jnp.where(take_hi, hi, lo), jnp.where(take_hi, s_hi, s_lo)


def _lanczos(matvec, v0, pool, k, tol, which):
    """k-step Lanczos with full reorthogonalization; returns (theta, vec, residual, steps)."""
    n = v0.shape[0]
    dtype = v0.dtype
    eps = jnp.finfo(dtype).eps
    basis0 = jnp.zeros((k, n), dtype).at[0].set(_unit(v0))
    zeros_k = jnp.zeros((k,), dtype)

    def step(i, carry):
        basis, alphas, betas, scale = carry
        q = lax.dynamic_index_in_dim(basis, i, keepdims=False)
        w = matvec(q)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        alpha = jnp.vdot(q, w)
        # Orthogonalize the new direction together with a restart candidate (one batched pass;
        # cyclic shifts of one random vector are generically independent, so no new draws).
        # Projecting on the whole basis also removes alpha q_i and beta q_{i-1}.
        w, fresh = _orthogonalize(jnp.stack([w, jnp.roll(pool, i + 1)]), basis)
        beta = jnp.linalg.norm(w)
        # Invariant subspace found (e.g. a low-rank Hessian): continue from the fresh direction;
        # T gets a 0 coupling, which is then exact.
        breakdown = beta <= eps * scale
        q_next = jnp.where(breakdown, _unit(fresh),
                           w / jnp.where(breakdown, jnp.ones_like(beta), beta))
        beta = jnp.where(breakdown, jnp.zeros_like(beta), beta)
        # dynamic_update_slice compiles faster than scatter. The last step has no row left for
        # q_next, so it rewrites row k - 1 with its own value q.
        last = i + 1 >= k
        basis = lax.dynamic_update_index_in_dim(basis, jnp.where(last, q, q_next),
                                                jnp.where(last, i, i + 1), 0)
        alphas = lax.dynamic_update_index_in_dim(alphas, alpha, i, 0)
        betas = lax.dynamic_update_index_in_dim(betas, beta, i, 0)
        return basis, alphas, betas, scale

    init = (basis0, zeros_k, zeros_k, jnp.zeros((), dtype))
    if tol is None:
        basis, alphas, betas, _ = lax.fori_loop(0, k, step, init)
        m = jnp.int32(k)
        theta, s = _ritz_pair_full(alphas, betas, which)
    else:
        def body(carry):
            i, inner, theta_prev, _ = carry
            inner = step(i, inner)
            theta = _ritz_value(inner[1], inner[2], i + 1, which)
            done = (i >= 1) & (jnp.abs(theta - theta_prev) <= tol * jnp.abs(theta))
            return i + 1, inner, theta, done

        def cond(carry):
            return (carry[0] < k) & ~carry[-1]

        m, (basis, alphas, betas, _), _, _ = lax.while_loop(
            cond, body, (jnp.int32(0), init, jnp.zeros((), dtype), jnp.bool_(False)))
        theta, s = _ritz_pair(alphas, betas, m, which)

    vec = _unit(jnp.matmul(s, basis, precision=_HIGHEST))
    # H Q_m s - theta Q_m s = beta_m s_m q_{m+1}: the residual norm comes for free.
    residual = jnp.abs(betas[m - 1] * s[m - 1])
    return theta, vec, residual, m


def _power(matvec, v0, k, tol):
    """Power iteration; returns (theta, vec, residual, steps) for the last Rayleigh quotient."""
    dtype = v0.dtype

    def body(carry):
        i, v, _, theta_prev, _, _ = carry
        w = matvec(v)
        theta = jnp.vdot(v, w)  # Rayleigh quotient keeps the sign that |.|-growth loses
        residual = jnp.linalg.norm(w - theta * v)
        v_next = jnp.where(jnp.linalg.norm(w) > 0, _unit(w), v)
        if tol is None:
            done = jnp.bool_(False)
        else:
            done = (i >= 1) & (jnp.abs(theta - theta_prev) <= tol * jnp.abs(theta))
        return i + 1, v_next, v, theta, residual, done

    def cond(carry):
        return (carry[0] < k) & ~carry[-1]

    v = _unit(v0)
    zero = jnp.zeros((), dtype)
    init = (jnp.int32(0), v, v, zero, zero, jnp.bool_(False))
    n_used, _, vec, theta, residual, _ = lax.while_loop(cond, body, init)
    return theta, vec, residual, n_used
