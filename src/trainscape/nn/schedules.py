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

from ..errors import ConfigError
from ..spec import registry, schema


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
        raise ConfigError(f"schedule: {registry.allowed(name, registry.SCHEDULES)}")
    return BUILDERS[name](peak, steps, warmup_steps, end_factor)


def lr_at_step(name: str, learning_rate: float, steps: int, warmup_steps: int = 0,
               end_factor: float = 0.0, step=None) -> np.ndarray:  # ts.lr_at_step
    """The learning rate each update of a run used (float64), an array of the shape of `step`
    (an int or array of update counts >= 0), or of shape (steps,), the rate of every update
    0 .. steps - 1, when `step` is None. The same functions the training program evaluates,
    here in float64 on the host, for reports and plots.

    The arguments follow the config's rules for `[optimizer] schedule`, `learning_rate` (> 0),
    `warmup_steps` (a whole number >= 0, at most `steps`, below it when a decay follows),
    `end_factor` (in [0, 1]) and `[train] steps` (a positive integer); anything else is a
    one-line ConfigError."""
    _check_lr_args(name, learning_rate, steps, warmup_steps, end_factor)
    t = np.arange(steps) if step is None else _steps_of(step)
    with jax.enable_x64(True):
        fn = schedule(name, jnp.float64(learning_rate), steps, jnp.float64(warmup_steps),
                      jnp.float64(end_factor))
        # optax's constant schedule ignores the count: broadcast to one rate per update
        return np.broadcast_to(np.asarray(fn(jnp.asarray(t, jnp.float64)), np.float64),
                               t.shape).copy()


def _check_lr_args(name, learning_rate, steps, warmup_steps, end_factor) -> None:
    if not isinstance(name, str) or name not in registry.SCHEDULES:
        raise ConfigError(f"lr_at_step name: {registry.allowed(name, registry.SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or \
            not 0 < steps < schema.INT32_MAX:
        raise ConfigError(f"lr_at_step steps: got {steps!r}; must be a positive integer below "
                          f"{schema.INT32_MAX:,} (steps are counted in int32)")
    values = {}
    for key, v in (("learning_rate", learning_rate), ("warmup_steps", warmup_steps),
                   ("end_factor", end_factor)):
        # a NumPy or JAX scalar (a value read from a runs table, a 0-d array) is checked as
        # the number it holds; anything with more than one value is not one rate
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            if np.ndim(v) != 0:
                raise ConfigError(f"lr_at_step {key}: got an array of shape {np.shape(v)}; "
                                  "give one number")
            v = np.asarray(v).item()
        elif isinstance(v, list | tuple | set | dict):
            raise ConfigError(f"lr_at_step {key}: got {v!r}; give one number")
        values[key] = v
        schema.check_value(key, f"lr_at_step {key}", v)
    schema.check_warmup("lr_at_step warmup_steps", values["warmup_steps"], name, steps, "steps")


def _steps_of(step) -> np.ndarray:
    t = np.asarray(step)
    if t.dtype == bool or not (np.issubdtype(t.dtype, np.integer) or
                               np.issubdtype(t.dtype, np.floating)) or \
            not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        shown = step if t.size <= 5 else f"an array of {t.size} values"
        raise ConfigError(f"lr_at_step step: got {shown!r}; must be update counts: whole "
                          "numbers >= 0, or None for every update")
    return t
