"""Pure-functional models: `init(key) -> params` and `apply(params, x_NxD) -> outputs_NxK`.

The built-in MLP's parameter layout is public: a list with one dict per layer,
``{"w": (fan_in, fan_out), "b": (fan_out,)}`` (no ``"b"`` when ``bias = false``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ..errors import InputError
from . import mup


class _ModelFields(NamedTuple):
    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]
    apply_dropout: Callable[[Any, jax.Array, jax.Array, Any], jax.Array] | None = None
    transposed_input: Callable[[Any, jax.Array], bool] | None = None
    layer_names: tuple[str, ...] | None = None


class Model(_ModelFields):
    """The interface of a model trainscape trains: two pure functions, and optional capabilities
    as fields (None: the model does not have it).

    init(key) -> params: any pytree; each run calls it with its own key.
    apply(params, x_NxD) -> outputs_NxK: logits for `bce`/`cross_entropy`, predictions for
        `mse`; checked once against the loss and the targets before anything is compiled.
    apply_dropout(params, x_NxD, key, rate) -> outputs_NxK: the forward pass with dropout at
        `rate` (a traced scalar), used for training steps when `[model] dropout` is set or
        swept; a model without it refuses dropout.
    transposed_input(params, x_NxD) -> bool: True when `apply` reads the data as x.T (the
        built-in MLP's feature-major layout, `feature_major`): the training loop then stores x
        transposed once, outside the step loop, and a block's runs share one copy of it.
    layer_names: the name of each top-level entry of the params, in order (the layer that
        `learning_rate.K` addresses is `layer_names[K]`): distinct strings, one per entry
        (a list is kept as a tuple); None: named from the params pytree.

    The constructor checks the fields' types (a one-line InputError naming the field); what
    the functions compute is checked against the data and the loss before anything compiles.

    Every field must be hashable and compare equal across calls with the same meaning (plain
    functions, or frozen dataclasses as the built-in MLP's are): compiled programs are cached
    by it, so a second sweep of the same model does not compile again.
    """

    __slots__ = ()

    def __new__(cls, init, apply, apply_dropout=None, transposed_input=None, layer_names=None):
        for field, fn, what in (("init", init, "init(key) -> params"),
                                ("apply", apply, "apply(params, x) -> outputs"),
                                ("apply_dropout", apply_dropout,
                                 "apply_dropout(params, x, key, rate) -> outputs, or None"),
                                ("transposed_input", transposed_input,
                                 "transposed_input(params, x) -> bool, or None")):
            if not callable(fn) and (fn is not None or field in ("init", "apply")):
                raise InputError(f"ts.Model {field}: got {_shown(fn)}; expected a function "
                                 f"{what}")
        if layer_names is not None:
            if isinstance(layer_names, str) or not isinstance(layer_names, list | tuple) or \
                    not all(isinstance(n, str) for n in layer_names):
                raise InputError(f"ts.Model layer_names: got {_shown(layer_names)}; expected a "
                                 "tuple or list of strings (one per top-level params entry), "
                                 "or None")
            if len(set(layer_names)) != len(layer_names):
                dup = sorted({n for n in layer_names if layer_names.count(n) > 1})
                raise InputError(f"ts.Model layer_names: got {_shown(layer_names)}; names must "
                                 f"be distinct ({', '.join(map(repr, dup))} repeated)")
            layer_names = tuple(layer_names)
        return super().__new__(cls, init, apply, apply_dropout, transposed_input, layer_names)

    @classmethod
    def _make(cls, iterable) -> Model:  # _replace builds through it: checked as well
        return cls(*iterable)

    @staticmethod
    def from_flax(module, example_x) -> Model:
        """A `flax.linen.Module` (called as `module(x)` on a batch x (n, d)); `example_x`
        gives the input's shape for `module.init`. Params: a list of the layers' parameter
        dicts in the order the layers were created (`layer_names`: their Flax names).
        Needs the `flax` extra."""
        from .adapters import from_flax

        return from_flax(module, example_x)

    @staticmethod
    def from_equinox(module) -> Model:
        """An `equinox.Module` acting on one example (vmapped over the batch), or a function
        key -> Module (each run's weights drawn from its own seed; a module itself starts
        every run from its own weights). Its arrays are the params, everything else is kept
        static; one entry per top-level field, a tuple/list field one entry per element (the
        layers of `eqx.nn.MLP`). Needs the `equinox` extra."""
        from .adapters import from_equinox

        return from_equinox(module)


def _shown(v, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


# XLA:CPU's float32 tanh, written out as JAX operations: tanh(x) = x for |x| < 0.0004, else an
# odd rational function of x clamped to +-7.9988 (XLA's own clamp and coefficients, so the
# result is bit-identical: tests/nn/test_models.py compares every bit on 2 M inputs). XLA:CPU
# emits its tanh as a call the loop fusions cannot vectorize; the same arithmetic written out is
# vectorized and fused, measured 2.2x faster per element (results/bench/README.md).
_TANH_SMALL = 0.0004
_TANH_CLAMP = 7.99881172180175781
_TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
             5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
             4.89352455891786e-03)
_TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
             4.89352518554385e-03)


def _horner(coefs, z):
    acc = z * coefs[0] + coefs[1]
    for c in coefs[2:]:
        acc = z * acc + c
    return acc


def _tanh_f32_cpu(x):
    c = jnp.clip(x, -_TANH_CLAMP, _TANH_CLAMP)
    c2 = c * c
    rational = c * _horner(_TANH_NUM, c2) / _horner(_TANH_DEN, c2)
    return jnp.where(jnp.abs(x) < _TANH_SMALL, x, rational)


@jax.custom_jvp
def tanh(x):
    """`jnp.tanh`, bit for bit, with a vectorizable float32 form on CPU (see `_TANH_NUM`)."""
    if jnp.result_type(x) != jnp.float32:
        return jnp.tanh(x)
    return lax.platform_dependent(x, cpu=_tanh_f32_cpu, default=jnp.tanh)


@tanh.defjvp
def _tanh_jvp(primals, tangents):
    (x,), (g,) = primals, tangents
    ans = tanh(x)
    return ans, (g + g * ans) * (1 - ans)  # the same expression as JAX's rule for lax.tanh


ACTIVATIONS: dict[str, Callable] = {
    "tanh": tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
}


def _draw_w(key, kind: str, layer: int, fan_in: int, fan_out: int, dtype):
    shape = (fan_in, fan_out)
    if kind == "seed":
        # the question's init: first layer U[0, 1), every other layer standard normal
        if layer == 0:
            return jax.random.uniform(key, shape, dtype=dtype)
        return jax.random.normal(key, shape, dtype=dtype)
    if kind == "normal":
        return jax.random.normal(key, shape, dtype=dtype) / jnp.sqrt(fan_in).astype(dtype)
    if kind == "lecun":
        return jax.nn.initializers.lecun_normal()(key, shape, dtype)
    if kind == "he":
        return jax.random.normal(key, shape, dtype=dtype) * jnp.sqrt(2.0 / fan_in).astype(dtype)
    if kind == "glorot":
        std = jnp.sqrt(2.0 / (fan_in + fan_out)).astype(dtype)
        return jax.random.normal(key, shape, dtype=dtype) * std
    raise ValueError(f"unknown init {kind!r}")


def multipliers(sizes: tuple[int, ...], parameterization: str,
                base_width: int | None = None) -> tuple[float, ...]:
    """Forward multiplier of each layer's weights.

    standard:   1 (the scale lives in the init; see `init`).
    ntk:        1/sqrt(fan_in) for every layer, weights N(0, 1) (Jacot, Gabriel & Hongler 2018,
                "Neural Tangent Kernel", eq. 1).
    mean_field: 1/sqrt(fan_in) for hidden layers and 1/fan_in for the output layer, weights
                N(0, 1) (Mei, Montanari & Nguyen 2018, "A mean field view of the landscape of
                two-layer neural networks": f(x) = (1/n) sum_i a_i sigma(w_i . x); the setting of
                Sohl-Dickstein 2024, "The boundary of neural network trainability is fractal").
    mup:        1 except the output layer's, base_width / fan_in (`nn.mup`; weights drawn as
                the standard parameterization's).
    """
    fan_in = sizes[:-1]
    if parameterization == "standard":
        return tuple(1.0 for _ in fan_in)
    if parameterization == "ntk":
        return tuple(1.0 / math.sqrt(f) for f in fan_in)
    if parameterization == "mean_field":
        return tuple([1.0 / math.sqrt(f) for f in fan_in[:-1]] + [1.0 / fan_in[-1]])
    if parameterization == "mup":
        return tuple(r.mult for r in mup.rules(tuple(sizes), base_width, "sgd"))
    raise ValueError(f"unknown parameterization {parameterization!r}")


def mlp_init(key, sizes: tuple[int, ...], *, init: str = "normal", bias: bool = True,
             dtype=jnp.float32, parameterization: str = "standard",
             base_width: int | None = None) -> list[dict]:
    """Parameters of an MLP with layer sizes `sizes` = (d_in, *hidden, d_out); biases zero.
    Under the ntk and mean_field parameterizations every weight is N(0, 1); under mup the
    standard draw, the output layer's times sqrt(fan_in / base_width) (`nn.mup`).

    Weights are drawn in float32 whatever `dtype`, then cast to it: JAX's samplers turn the
    same key into unrelated numbers in float32, float64 and bfloat16, so runs that differed
    only in dtype used to start from different weights, and comparing precisions measured the
    draw as much as the rounding. Now a float64 run starts from exactly the float32 run's
    weights, a bfloat16 run from them rounded (version 0.7.0)."""
    keys = jax.random.split(key, len(sizes) - 1)
    scales = ([r.init for r in mup.rules(tuple(sizes), base_width, "sgd")]
              if parameterization == "mup" else None)
    params = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if parameterization in ("standard", "mup"):
            w = _draw_w(keys[i], init, i, fi, fo, jnp.float32)
            if scales is not None and scales[i] != 1.0:
                w = w * jnp.float32(scales[i])
        else:
            w = jax.random.normal(keys[i], (fi, fo), dtype=jnp.float32)
        layer = {"w": w.astype(dtype)}
        if bias:
            layer["b"] = jnp.zeros((fo,), dtype=dtype)
        params.append(layer)
    return params


def feature_major(params: list[dict], x_NxD) -> bool:
    """Whether `mlp_apply` computes this network feature-major, activations as (width, n):
    whenever it has hidden layers and every one is narrower than the n samples (version 0.6.0;
    before, only networks at most 16 wide).

    In the sample-major layout, (n, width), two things cost on XLA:CPU. Its elementwise loops
    (the activation, its derivative) vectorize along the last axis only, which is then the
    width: with 16 features they ran 3-4x slower per element than along the samples. And the
    weight gradient, h.T @ dZ, contracts the first axis of its left operand, a form XLA:CPU
    hands to Eigen instead of its small-matrix library: 145 us per run-step for the `seed`
    network's layer 2 against about 90 for each of its other products of that size. In the
    feature-major layout every product takes the fast form (`_linear_fm`). Measured with
    0.6.0's groups of runs (`engine.sub_batch`), on a 2-core AMD EPYC, compiled block:
    the `seed` network 1.10-1.16x run-steps/s, 30-64-64-1 1.16x, 2-24-24-1 on moons 1.78x,
    2-32-32-1 1.07-1.11x, 256-64-64-1 1.21-1.23x, 30-256-256-1 1.04-1.07x (results/bench/
    README.md). With whole blocks vmapped (before 0.6.0) wide networks had been 7-27% slower
    feature-major on an Intel Xeon (2026-11-29), hence the old limit. The math
    is the same either way; float sums may be ordered differently inside XLA's matmuls, so
    the last bits of a result can differ."""
    hidden = [layer["w"].shape[-1] for layer in params[:-1]]
    return bool(hidden) and max(hidden) < x_NxD.shape[0]


@jax.custom_jvp
def _add_bias_fm(h, b):
    """h + b[:, None] for feature-major activations h (width, n). Its derivative with respect to
    b is written as an outer product with a row of ones, so reverse mode computes the bias
    gradient as a matrix-vector product, dZ @ ones(n), instead of XLA:CPU's pairwise
    reduce-window sum, which took 13% of a step on the `small` bench workload (measured 1.05x
    to 1.14x run-steps/s from this; in the sample-major layout the same trick was 0.8x)."""
    return h + b[:, None]


@_add_bias_fm.defjvp
def _add_bias_fm_jvp(primals, tangents):
    h, b = primals
    dh, db = tangents
    ones = jnp.ones((1, h.shape[1]), h.dtype)
    return h + b[:, None], dh + lax.dot_general(db[:, None], ones, (((1,), (0,)), ((), ())))


# Feature-major layers with at most this many inputs are computed as multiply-adds.
FM_UNROLL_MAX_FAN_IN = 4


@jax.custom_jvp
def _linear_fm(w, h):
    """w.T @ h, (fan_out, n), for feature-major activations h (fan_in, n) and weights w
    (fan_in, fan_out).

    XLA:CPU hands a batched matmul to its fast small-matrix library (YNNPACK) only when the left
    operand's contracted axis is its last one. `w.T @ h` contracts w's first axis, so it went to
    Eigen's transposed-operand path instead: 253 us per block step on the `small` bench workload
    against about 110 for the same product from YNNPACK. Here the transposed weights are
    materialized first (a copy of fan_in x fan_out numbers; `optimization_barrier` keeps XLA from
    folding the transpose back into the matmul), so the forward product is the fast kind. The
    derivative rule below is written with the untransposed w, so that reverse mode's
    input gradient, w @ dy, is the fast kind too (a plain transpose rule would have given
    w.T.T @ dy, the slow kind again). Measured 1.09-1.11x run-steps/s on `small`
    (results/bench/README.md).

    With at most FM_UNROLL_MAX_FAN_IN inputs (2-D data such as moons) the product is written
    as that many multiply-adds instead, which XLA fuses into the activation's loop: 1.05-1.08x
    on `small`, 1.05x with 4 inputs, no change with 8. The derivative rule is the same."""
    if w.shape[0] <= FM_UNROLL_MAX_FAN_IN:
        out = w[0][:, None] * h[0][None, :]
        for i in range(1, w.shape[0]):
            out = out + w[i][:, None] * h[i][None, :]
        return out
    wt = lax.optimization_barrier(jnp.swapaxes(w, 0, 1))
    return lax.dot_general(wt, h, (((1,), (0,)), ((), ())))


@functools.partial(_linear_fm.defjvp, symbolic_zeros=True)
def _linear_fm_jvp(primals, tangents):
    w, h = primals
    dw, dh = tangents
    y = _linear_fm(w, h)
    zero = jax.custom_derivatives.SymbolicZero
    parts = []  # the data x has no tangent: no product is formed for it
    if type(dw) is not zero:
        parts.append(lax.dot_general(dw, h, (((0,), (0,)), ((), ()))))
    if type(dh) is not zero:
        parts.append(lax.dot_general(w, dh, (((0,), (0,)), ((), ()))))
    return y, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(y)


@jax.custom_jvp
def _affine_fm_data(w, b, x):
    """w.T @ x + b[:, None], (fan_out, n): the first layer of a feature-major network, whose
    input x (fan_in, n) is the data. The value is `_linear_fm` then `_add_bias_fm`, bit for bit.

    The derivative rule forms the weight and bias tangents as one product, [dw; db].T @ [x; 1],
    so reverse mode computes both gradients in a single matmul with the data and a row of
    ones: with the data shared by the block's runs (`engine.shares_data`) that is one
    (runs x fan_out, n) @ (n, fan_in + 1) product, one pass over the layer's output gradient
    instead of two (1.02-1.03x run-steps/s on `small`; results/bench/README.md)."""
    return _add_bias_fm(_linear_fm(w, x), b)


@functools.partial(_affine_fm_data.defjvp, symbolic_zeros=True)
def _affine_fm_data_jvp(primals, tangents):
    w, b, x = primals
    dw, db, dx = tangents
    y = _affine_fm_data(w, b, x)
    zero = jax.custom_derivatives.SymbolicZero
    parts = []
    if type(dw) is not zero or type(db) is not zero:
        dw = jnp.zeros_like(w) if type(dw) is zero else dw
        db = jnp.zeros_like(b) if type(db) is zero else db
        x1 = jnp.concatenate([x, jnp.ones((1, x.shape[1]), x.dtype)], axis=0)
        dwb = jnp.concatenate([dw, db[None, :]], axis=0)
        parts.append(lax.dot_general(dwb, x1, (((0,), (0,)), ((), ()))))
    if type(dx) is not zero:  # the data has no tangent in training; kept for completeness
        parts.append(lax.dot_general(w, dx, (((0,), (0,)), ((), ()))))
    return y, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(y)


def mlp_apply(params: list[dict], x_NxD, activation: str = "tanh",
              mults: tuple[float, ...] | None = None, drop_key=None, rate=None,
              layout: str = "auto"):
    """Forward pass; the last layer is linear (logits / predictions). With `drop_key`, inverted
    dropout at `rate` on every hidden activation. `layout` is "samples" (activations (n, width)),
    "features" ((width, n)) or "auto" (`feature_major` decides); outputs are (n, k) either way."""
    act = ACTIVATIONS[activation]
    if layout == "auto":
        layout = "features" if feature_major(params, x_NxD) else "samples"
    elif layout not in ("samples", "features"):
        raise ValueError(f"layout: expected 'auto', 'samples' or 'features', got {layout!r}")
    transposed = layout == "features"
    h = x_NxD.T if transposed else x_NxD
    for i, layer in enumerate(params):
        w = layer["w"]
        if mults is not None and mults[i] != 1.0:
            w = w * jnp.asarray(mults[i], w.dtype)
        if transposed and i == 0 and "b" in layer:  # (fan_out, n) = w.T @ x + b
            h = _affine_fm_data(w, layer["b"], h)
        elif transposed:  # (fan_out, n) = w.T @ h
            h = _linear_fm(w, h)
            if "b" in layer:
                h = _add_bias_fm(h, layer["b"])
        else:
            h = h @ w
            if "b" in layer:
                h = h + layer["b"]
        if i < len(params) - 1:
            h = act(h)
            if drop_key is not None:
                keep = 1.0 - rate
                mask = jax.random.uniform(jax.random.fold_in(drop_key, i), h.shape) >= rate
                h = jnp.where(mask, h / keep.astype(h.dtype), jnp.zeros((), h.dtype))
    return h.T if transposed else h


def layer_outputs(params: list[dict], x_NxD, activation: str = "tanh",
                  mults: tuple[float, ...] | None = None) -> list:
    """Every layer's output, (n, width) each: the hidden activations after the nonlinearity,
    then the network's output; the same arithmetic as `mlp_apply`'s sample-major layout (the
    coordinate check, `analysis.coord_check`, reads them)."""
    act = ACTIVATIONS[activation]
    outs, h = [], x_NxD
    for i, layer in enumerate(params):
        w = layer["w"]
        if mults is not None and mults[i] != 1.0:
            w = w * jnp.asarray(mults[i], w.dtype)
        h = h @ w
        if "b" in layer:
            h = h + layer["b"]
        if i < len(params) - 1:
            h = act(h)
        outs.append(h)
    return outs


def builtin_mlp(sizes: tuple[int, ...], *, activation: str, init: str, bias: bool,
                dtype, parameterization: str = "standard",
                base_width: int | None = None) -> Model:
    """The built-in MLP as a :class:`Model` (hashable pieces, so compiled programs are reused)."""
    mults = multipliers(tuple(sizes), parameterization, base_width)
    return Model(
        init=_MlpInit(tuple(sizes), init, bias, jnp.dtype(dtype).name, parameterization,
                      base_width),
        apply=_MlpApply(activation, mults),
        apply_dropout=_MlpDropout(activation, mults),
        transposed_input=feature_major,
    )


@dataclass(frozen=True)
class _MlpInit:
    sizes: tuple[int, ...]
    init: str
    bias: bool
    dtype: str
    parameterization: str = "standard"
    base_width: int | None = None

    def __call__(self, key):
        return mlp_init(key, self.sizes, init=self.init, bias=self.bias, dtype=self.dtype,
                        parameterization=self.parameterization, base_width=self.base_width)


@dataclass(frozen=True)
class _MlpApply:
    activation: str
    mults: tuple[float, ...] = ()

    def __call__(self, params, x):
        return mlp_apply(params, x, self.activation, self.mults or None)


@dataclass(frozen=True)
class _MlpDropout:
    activation: str
    mults: tuple[float, ...] = ()

    def __call__(self, params, x, key, rate):
        return mlp_apply(params, x, self.activation, self.mults or None, key, rate)
