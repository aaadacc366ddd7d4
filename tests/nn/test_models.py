"""The built-in activations against independent references.

`models.tanh` is XLA:CPU's float32 tanh written out as JAX operations (it vectorizes; XLA's own
call does not). It must stay bit-identical to `jnp.tanh`, or stored studies would stop matching
a rerun; and its derivatives must be the closed forms 1 - tanh^2 and -2 tanh (1 - tanh^2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainscape.nn import models

# these tests compute float64 references with JAX themselves
pytestmark = pytest.mark.usefixtures("x64")


def _inputs(dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(0)
    scales = (1e-6, 1e-4, 4e-4, 1e-2, 0.3, 1.0, 3.0, 7.99, 10.0, 1e4)
    z = [rng.standard_normal(200_000).astype(dtype) * dtype(s) for s in scales]
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-38, -1e-45, 0.0004, 0.00039999998,
             7.998811721801758, 7.9988117, 8.0, -8.0, 3.4e38]
    return np.concatenate([*z, np.array(edges, dtype)])


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.int32 if a.dtype == np.float32 else np.int64)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the written-out form is CPU-only")
def test_tanh_is_bit_identical_to_jnp_tanh_on_cpu():
    z = _inputs()
    ours = np.asarray(jax.jit(models.tanh)(z))
    xla = np.asarray(jax.jit(jnp.tanh)(z))
    differ = _bits(ours) != _bits(xla)
    assert not differ.any(), (z[differ][:5], ours[differ][:5], xla[differ][:5])


def test_tanh_matches_numpy_to_float32_rounding():
    z = _inputs()
    ours = np.asarray(jax.jit(models.tanh)(z), np.float64)
    ref = np.tanh(z.astype(np.float64))
    finite = np.isfinite(z)
    err = np.abs(ours[finite] - ref[finite]) / np.maximum(np.abs(ref[finite]), 1e-30)
    assert err.max() < 5e-7  # a couple of float32 ulps
    assert np.isnan(ours[np.isnan(z)]).all()
    assert (ours[np.isposinf(z)] == 1).all() and (ours[np.isneginf(z)] == -1).all()


def test_tanh_first_and_second_derivatives_are_the_closed_forms():
    x = np.linspace(-6, 6, 2001).astype(np.float32)
    t = np.tanh(x.astype(np.float64))
    d1 = np.asarray(jax.vmap(jax.grad(models.tanh))(x), np.float64)
    d2 = np.asarray(jax.vmap(jax.grad(jax.grad(models.tanh)))(x), np.float64)
    # absolute tolerance: 1 - tanh(x) in float32 cancels to a few ulps of 1 for large |x|
    np.testing.assert_allclose(d1, 1 - t * t, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(d2, -2 * t * (1 - t * t), rtol=5e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_tanh_other_dtypes_are_jnp_tanh(dtype):
    z = jnp.asarray(np.linspace(-5, 5, 101), dtype)
    np.testing.assert_array_equal(np.asarray(models.tanh(z), np.float64),
                                  np.asarray(jnp.tanh(z), np.float64))


@pytest.mark.parametrize("platform", ["cuda", "rocm", "tpu"])
def test_tanh_lowers_to_the_native_op_on_accelerators(platform):
    # lowered for another platform without running it: GPUs and TPUs keep their own tanh
    from jax import export

    x = jax.ShapeDtypeStruct((8,), jnp.float32)
    for f in (models.tanh, jax.grad(lambda v: models.tanh(v).sum())):
        text = export.export(jax.jit(f), platforms=[platform])(x).mlir_module()
        assert "stablehlo.tanh" in text and "stablehlo.divide" not in text
    cpu = export.export(jax.jit(models.tanh), platforms=["cpu"])(x).mlir_module()
    assert "stablehlo.tanh" not in cpu and "stablehlo.divide" in cpu


def test_feature_major_first_layer_derivatives_are_the_closed_forms():
    """`models._affine_fm_data` (w.T @ x + b with its own derivative rule, the weight and bias
    tangents formed as one product): every tangent against NumPy's closed forms, float64."""
    rng = np.random.default_rng(0)
    w, dw = rng.standard_normal((2, 2, 5))
    b, db = rng.standard_normal((2, 5))
    x, dx = rng.standard_normal((2, 2, 40))
    with jax.enable_x64():
        f = models._affine_fm_data
        y, t = jax.jvp(f, (w, b, x), (dw, db, dx))
        np.testing.assert_allclose(y, w.T @ x + b[:, None], rtol=1e-12)
        np.testing.assert_allclose(t, dw.T @ x + db[:, None] + w.T @ dx, rtol=1e-12)
        _, t_w = jax.jvp(lambda w: f(w, b, x), (w,), (dw,))
        np.testing.assert_allclose(t_w, dw.T @ x, rtol=1e-12)
        # reverse mode, the training path: gradient of <g, y> is (x g.T, g 1, w g)
        g = rng.standard_normal((5, 40))
        gw, gb, gx = jax.grad(lambda w, b, x: jnp.sum(g * f(w, b, x)), argnums=(0, 1, 2))(w, b, x)
        np.testing.assert_allclose(gw, x @ g.T, rtol=1e-12)
        np.testing.assert_allclose(gb, g.sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(gx, w @ g, rtol=1e-12)
