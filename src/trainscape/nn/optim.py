"""optax optimizers whose swept hyperparameters are traced arrays.

Every optimizer is `direction` (optax's own transforms: identity, trace, scale_by_adam, ...)
followed by decoupled weight decay and then a step of `-learning_rate`, applied per top-level
entry of the parameter pytree so `learning_rate.K` axes can give entry K its own rate. Because
the hyperparameters are arrays rather than Python floats, one compiled program serves every
grid point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from . import schedules

# each optimizer's direction (spec.registry names them and the hyperparameters they read)
DIRECTIONS: dict[str, Callable[[Mapping], optax.GradientTransformation]] = {
    "sgd": lambda hp: optax.identity(),
    "momentum": lambda hp: optax.trace(decay=hp["momentum"], nesterov=False),
    "nesterov": lambda hp: optax.trace(decay=hp["momentum"], nesterov=True),
    "adam": lambda hp: optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]),
    "adamw": lambda hp: optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]),
    "rmsprop": lambda hp: optax.scale_by_rms(decay=hp["decay"], eps=hp["eps"]),
}


def top_level_map(fn: Callable, tree):
    """Apply `fn(k, subtree)` to the K-th top-level entry of `tree` (list, tuple or dict in
    sorted-key order, as JAX flattens dicts); a bare array is entry 0."""
    if isinstance(tree, list | tuple):
        return type(tree)(fn(k, sub) for k, sub in enumerate(tree))
    if isinstance(tree, Mapping):
        return {key: fn(k, tree[key]) for k, key in enumerate(sorted(tree))}
    return fn(0, tree)


def n_top_level(tree) -> int:
    if isinstance(tree, list | tuple | Mapping):
        return len(tree)
    return 1


def entry_learning_rates(hp: Mapping, n_entries: int) -> list:
    """Learning rate of each top-level entry: `learning_rate.K` if swept, else `learning_rate`."""
    return [hp.get(f"learning_rate.{k}", hp["learning_rate"]) for k in range(n_entries)]


def scale_by_entry_lr(lrs: list) -> optax.GradientTransformation:
    """Multiply the updates of top-level entry K by -lrs[K] (gradient descent step)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        out = top_level_map(lambda k, u: jax.tree.map(lambda g: -lrs[k] * g, u), updates)
        return out, state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_entry_schedule(lrs: list, schedule: str, steps: int,
                            hp: Mapping) -> optax.GradientTransformation:
    """Multiply the updates of top-level entry K by minus the learning rate of `schedule` with
    peak lrs[K] at the update count (0 for the first update), which the state counts as
    optax's `scale_by_schedule` does. Every entry follows the same schedule, each scaled to its
    own peak."""
    fns = [schedules.schedule(schedule, lr, steps, hp.get("warmup_steps", 0),
                              hp.get("end_factor", 0.0)) for lr in lrs]

    def init_fn(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        # the rate in the peak's dtype (float32 for bfloat16 runs, as the constant rate)
        rate = [fn(state.count.astype(jnp.result_type(lr))) for fn, lr in zip(fns, lrs,
                                                                               strict=True)]
        out = top_level_map(lambda k, u: jax.tree.map(lambda g: -rate[k] * g, u), updates)
        return out, optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_leaf(scale) -> optax.GradientTransformation:
    """Multiply the updates of leaf `name` of top-level entry K by the constant `f` of
    `scale[K]` = ((name, f), ...): muP's static per-layer learning-rate factors (`nn.mup`)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params

        def entry(k, u):
            factors = dict(scale[k])
            return {name: g * jnp.asarray(factors[name], g.dtype) if factors.get(name, 1.0)
                    != 1.0 else g for name, g in u.items()}
        return top_level_map(entry, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(name: str, hp: Mapping, n_entries: int, clip: bool = False,
                   schedule: str = "constant", steps: int = 0,
                   lr_scale=None) -> optax.GradientTransformation:
    """The optimizer `name` with hyperparameters taken from `hp` (scalars, possibly traced).

    Order: clip the gradient's global norm (when `clip`), the optimizer's direction, the
    static per-leaf factors `lr_scale` (`scale_by_leaf`; muP), decoupled weight decay
    (`+ weight_decay * p`, as optax's adamw), then `-learning_rate` per entry, following
    `schedule` over a run of `steps` updates (nn.schedules; "constant" keeps the stateless
    step, so runs without a schedule compute what they always did).
    """
    if name not in DIRECTIONS:
        raise ValueError(f"unknown optimizer {name!r}")
    direction = DIRECTIONS[name](hp)
    # grad_clip = 0 means "off" for that run; an infinite threshold never rescales
    limit = jnp.where(hp["grad_clip"] > 0, hp["grad_clip"], jnp.inf) if clip else None
    pre = [optax.clip_by_global_norm(limit)] if clip else []
    return optax.chain(
        *pre,
        direction,
        *([scale_by_leaf(lr_scale)] if lr_scale is not None else []),
        optax.add_decayed_weights(hp["weight_decay"]),
        scale_by_entry_lr(entry_learning_rates(hp, n_entries)) if schedule == "constant"
        else scale_by_entry_schedule(entry_learning_rates(hp, n_entries), schedule, steps, hp),
    )
