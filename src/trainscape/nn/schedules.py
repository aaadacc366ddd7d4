"""Learning-rate schedules built from optax's schedule functions, with traced warmup lengths.

The learning rate of update t (t = 0 for the first update) of a run with peak rate `lr`,
`steps` updates, `warmup_steps` = w and `end_factor` = e is

    constant         lr
    warmup_constant  optax.warmup_constant_schedule(0, lr, w)
    warmup_cosine    optax.warmup_cosine_decay_schedule(0, lr, w, steps, e * lr)
    cosine           optax.cosine_decay_schedule(lr, steps, alpha=e)
    warmup_linear    optax.join_schedules([linear_schedule(0, lr, w),
                                           linear_schedule(lr, e * lr, steps - w)], [w])

`w` and `e` are sweep axes, traced like the learning rate, so a grid over warmup lengths shares
one compiled program. optax's constructors branch in Python on their step counts
(`transition_steps <= 0`, `decay_steps > 0`), which a traced `w` cannot answer, so each phase is
optax's schedule over one unit of time, evaluated at the phase's elapsed fraction
`(t - start) / length`, and the phases are joined by `optax.join_schedules` at `w` (a phase of
length 0 is never selected). The values equal optax's own schedules up to rounding;
tests/train/test_schedules.py checks them step by step against the optax calls above.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..spec import registry


def _phase(unit: Callable, start, length) -> Callable:
    """optax schedule `unit` (transition over one step) stretched over `length` steps that
    begin at `start`: its value at the fraction of the phase elapsed."""
    return lambda count: unit((count - start) / length)


def _warmup(peak, w) -> Callable:
    return _phase(optax.linear_schedule(0.0, peak, transition_steps=1), 0, w)


def _constant(peak) -> Callable:
    return optax.constant_schedule(peak)


def _cosine(peak, end_factor, start, length) -> Callable:
    return _phase(optax.cosine_decay_schedule(peak, decay_steps=1, alpha=end_factor),
                  start, length)


def _linear(peak, end_factor, start, length) -> Callable:
    return _phase(optax.linear_schedule(peak, end_factor * peak, transition_steps=1),
                  start, length)


def _after_warmup(warmup: Callable, rest: Callable, w) -> Callable:
    # join_schedules evaluates `rest` at count - w; the phases above take absolute counts
    return optax.join_schedules([warmup, lambda c: rest(c + w)], [w])


# schedule -> (peak, steps, warmup_steps, end_factor) -> optax schedule of the update count
BUILDERS: dict[str, Callable[..., Callable]] = {
    "constant": lambda lr, steps, w, e: _constant(lr),
    "warmup_constant": lambda lr, steps, w, e: _after_warmup(_warmup(lr, w), _constant(lr), w),
    "warmup_cosine": lambda lr, steps, w, e: _after_warmup(
        _warmup(lr, w), _cosine(lr, e, w, steps - w), w),
    "cosine": lambda lr, steps, w, e: optax.cosine_decay_schedule(lr, steps, alpha=e),
    "warmup_linear": lambda lr, steps, w, e: _after_warmup(
        _warmup(lr, w), _linear(lr, e, w, steps - w), w),
}


def schedule(name: str, peak, steps: int, warmup_steps=0, end_factor=0.0) -> Callable:
    """The learning rate as a function of the update count (t = 0 the first update), with peak
    rate `peak`; `warmup_steps` and `end_factor` may be traced scalars."""
    if name not in BUILDERS:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(registry.SCHEDULES)}")
    return BUILDERS[name](peak, steps, warmup_steps, end_factor)


def lr_at_step(name: str, learning_rate: float, steps: int, warmup_steps: int = 0,
               end_factor: float = 0.0, step=None) -> np.ndarray:  # ts.lr_at_step
    """The learning rate each update of a run used (float64): at `step` (an int or array), or
    at every update 0 .. steps - 1 when `step` is None. The same functions the training program
    evaluates, here in float64 on the host, for reports and plots."""
    t = np.arange(steps) if step is None else np.asarray(step)
    with jax.enable_x64(True):
        fn = schedule(name, jnp.float64(learning_rate), steps, jnp.float64(warmup_steps),
                      jnp.float64(end_factor))
        return np.asarray(fn(jnp.asarray(t, jnp.float64)), np.float64)
