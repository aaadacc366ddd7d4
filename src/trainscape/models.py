"""Pure-functional models: `init(key) -> params` and `apply(params, x_NxD) -> outputs_NxK`.

The built-in MLP's parameter layout is public: a list with one dict per layer,
``{"w": (fan_in, fan_out), "b": (fan_out,)}`` (no ``"b"`` when ``bias = false``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Model(NamedTuple):
    """A custom model: `init(key) -> params` (any pytree) and `apply(params, x) -> outputs`.

    Outputs are logits for `bce`/`cross_entropy` and predictions for `mse`, shape (n, k).
    """

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]


ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
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


def mlp_init(key, sizes: tuple[int, ...], *, init: str = "normal", bias: bool = True,
             dtype=jnp.float32) -> list[dict]:
    """Parameters of an MLP with layer sizes `sizes` = (d_in, *hidden, d_out); biases zero."""
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = {"w": _draw_w(keys[i], init, i, fi, fo, dtype)}
        if bias:
            layer["b"] = jnp.zeros((fo,), dtype=dtype)
        params.append(layer)
    return params


def mlp_apply(params: list[dict], x_NxD, activation: str = "tanh"):
    """Forward pass; the last layer is linear (logits / predictions)."""
    act = ACTIVATIONS[activation]
    h = x_NxD
    for i, layer in enumerate(params):
        h = h @ layer["w"]
        if "b" in layer:
            h = h + layer["b"]
        if i < len(params) - 1:
            h = act(h)
    return h


def builtin_mlp(sizes: tuple[int, ...], *, activation: str, init: str, bias: bool,
                dtype) -> Model:
    """The built-in MLP as a :class:`Model` (hashable pieces, so compiled programs are reused)."""
    return Model(
        init=_MlpInit(tuple(sizes), init, bias, jnp.dtype(dtype).name),
        apply=_MlpApply(activation),
    )


@dataclass(frozen=True)
class _MlpInit:
    sizes: tuple[int, ...]
    init: str
    bias: bool
    dtype: str

    def __call__(self, key):
        return mlp_init(key, self.sizes, init=self.init, bias=self.bias, dtype=self.dtype)


@dataclass(frozen=True)
class _MlpApply:
    activation: str

    def __call__(self, params, x):
        return mlp_apply(params, x, self.activation)
