"""Flax (linen) and Equinox modules as `Model`s: `Model.from_flax`, `Model.from_equinox`.

Both give the parameters as a list with one entry per layer, in the model's own order, so
`learning_rate.K` (a rate per top-level entry, `optim.top_level_map`) addresses layer K, and
`Model.layer_names` says which layer that is. Neither library is imported unless used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from ..runtime import x64
from .models import Model

# ------------------------------------------------------------------ Flax


@dataclass(frozen=True)
class _FlaxInit:
    module: Any
    names: tuple[str, ...]
    x_shape: tuple[int, ...]
    x_dtype: str

    def __call__(self, key):
        x = jnp.zeros(self.x_shape, jax.dtypes.canonicalize_dtype(self.x_dtype))
        params = self.module.init(key, x)["params"]
        return [params[n] for n in self.names]


@dataclass(frozen=True)
class _FlaxApply:
    module: Any
    names: tuple[str, ...]

    def __call__(self, params, x):
        return self.module.apply({"params": dict(zip(self.names, params, strict=True))}, x)


@x64  # a float64 param_dtype's init, as in a float64 sweep
def from_flax(module, example_x) -> Model:
    """A `flax.linen.Module` called as `module(x)` on a batch `x` of shape (n, d)."""
    try:
        import flax.linen as nn
    except ImportError:
        raise InputError("Model.from_flax: flax is not installed (pip install "
                         "'trainscape[flax]')") from None
    if not isinstance(module, nn.Module):
        raise InputError(f"Model.from_flax: expected a flax.linen.Module, got "
                         f"{type(module).__name__}")
    shape = tuple(np.shape(example_x))
    if len(shape) != 2:
        raise InputError(f"Model.from_flax: example_x must be a batch (n, d), got shape {shape}")
    x_shape, x_dtype = (1, *shape[1:]), str(np.asarray(example_x).dtype)
    # Run eagerly on one row: a traced init returns its dicts in sorted-key order
    # (Dense_10 before Dense_2); an eager one keeps the order the layers were created in.
    variables = module.init(jax.random.PRNGKey(0), np.zeros(x_shape, x_dtype))
    other = sorted(set(variables) - {"params"})
    if other:
        raise InputError(f"Model.from_flax: the module has variable collections {other} "
                         "besides 'params'; only parameters are trained (a module without "
                         "mutable state, e.g. no BatchNorm)")
    names = tuple(str(k) for k in variables.get("params", {}))
    if not names:
        raise InputError("Model.from_flax: the module has no parameters")
    return Model(init=_FlaxInit(module, names, x_shape, x_dtype),
                 apply=_FlaxApply(module, names), layer_names=names)


# ------------------------------------------------------------------ Equinox


class _EqxFixedInit:
    """Every run starts from the module's own arrays. Compared by identity (arrays are not
    hashable): reuse the Model object to reuse its compiled programs."""

    def __init__(self, entries):
        self.entries = entries

    def __call__(self, key):
        del key
        return jax.tree.map(jnp.asarray, self.entries)


@dataclass(frozen=True)
class _EqxInit:
    make: Any
    split: _EqxSplit

    def __call__(self, key):
        return self.split.entries(self.make(key))


@dataclass(frozen=True)
class _EqxSplit:
    """How a module's arrays (the parameters) are cut into layers and put back together with
    its static rest (activations, sizes, flags)."""

    static: Any          # the module with its arrays replaced by None
    treedef: Any         # of the array part
    groups: tuple[tuple[Any, ...], ...]  # path prefix of each entry

    def entries(self, module) -> list:
        import equinox as eqx

        arrays, _ = eqx.partition(module, eqx.is_array)
        return [_at(arrays, g) for g in self.groups]

    def module(self, entries):
        import equinox as eqx

        leaves = [leaf for e in entries for leaf in jax.tree.leaves(e)]
        return eqx.combine(jax.tree.unflatten(self.treedef, leaves), self.static)


@dataclass(frozen=True)
class _EqxApply:
    split: _EqxSplit

    def __call__(self, params, x):
        # Equinox modules act on one example; the batch is a vmap over samples
        return jax.vmap(self.split.module(params))(x)


def _at(tree, path):
    for k in path:
        tree = getattr(tree, k.name) if hasattr(k, "name") else tree[k.idx]
    return tree


def _name(path) -> str:
    return "".join(f"[{k.idx}]" if hasattr(k, "idx") else
                   (k.name if i == 0 else f".{k.name}") for i, k in enumerate(path))


def _is_shaped(leaf) -> bool:
    import equinox as eqx

    return eqx.is_array(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)


def _split(module) -> _EqxSplit:
    """Of a module, or of `eqx.filter_eval_shape`'s shapes of one (same structure)."""
    import equinox as eqx

    arrays, static = eqx.partition(module, _is_shaped)
    flat, treedef = jax.tree_util.tree_flatten_with_path(arrays)
    groups: list[tuple] = []
    for path, _ in flat:
        # a layer is a top-level field, or one element of a field holding a tuple/list of
        # them (eqx.nn.MLP.layers, eqx.nn.Sequential.layers)
        g = path[:2] if len(path) > 1 and hasattr(path[1], "idx") else path[:1]
        if not groups or groups[-1] != g:
            groups.append(g)
    if not groups:
        raise InputError("Model.from_equinox: the module has no arrays to train")
    return _EqxSplit(static, treedef, tuple(groups))


@x64
def from_equinox(module) -> Model:
    """An `equinox.Module` acting on one example (the batch is a vmap), or a function
    key -> module to draw each run's initial weights from its own seed."""
    try:
        import equinox as eqx
    except ImportError:
        raise InputError("Model.from_equinox: equinox is not installed (pip install "
                         "'trainscape[equinox]')") from None
    if isinstance(module, eqx.Module):
        split = _split(module)
        init = _EqxFixedInit(split.entries(module))
    elif callable(module):
        shaped = eqx.filter_eval_shape(module, jax.random.PRNGKey(0))
        if not isinstance(shaped, eqx.Module):
            raise InputError(f"Model.from_equinox: the function returned "
                             f"{type(shaped).__name__}, expected an equinox.Module")
        split = _split(shaped)
        init = _EqxInit(module, split)
    else:
        raise InputError(f"Model.from_equinox: expected an equinox.Module or a function "
                         f"key -> Module, got {type(module).__name__}")
    names = tuple(_name(g) for g in split.groups)
    return Model(init=init, apply=_EqxApply(split), layer_names=names)
