"""`train_one`: full-batch training of ONE run, as a `lax.scan` over steps.

It knows nothing about grids: `engine.py` is the only place that vmaps and jits it over runs.
Summaries (min, max, peak step, divergence step, recovery step, largest rebound) are computed
online in the scan carry, so a run never has to ship its whole curve to the host to be labelled.
A run whose loss becomes non-finite, or exceeds `BLOWUP_FACTOR` x its initial loss, is frozen
at that step: its parameters stop changing and later curve points are NaN, so garbage neither
spreads nor poisons the summaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from . import losses, optim
from .classify import BLOWUP_FACTOR, SPIKE_MIN_RISE
from .models import Model

TRACE_COUNT = {"train_one": 0}  # incremented at trace time: tests use it to detect recompiles


class Static(NamedTuple):
    """Everything that fixes the compiled program (hashable); swept values are NOT here."""

    model: Model
    loss: str
    optimizer: str
    steps: int
    record_every: int
    dtype: str
    accuracy: bool
    custom_init: bool  # start from caller-given init_params instead of model.init(key)


class Stats(NamedTuple):
    alive: jax.Array
    initial: jax.Array
    final: jax.Array
    min: jax.Array
    max: jax.Array
    peak_step: jax.Array
    diverged_step: jax.Array
    recover_step: jax.Array
    running_min: jax.Array
    rebound: jax.Array
    spike: jax.Array
    above_since: jax.Array
    final_acc: jax.Array


class Trajectory(NamedTuple):
    """One run's result. `loss_R` holds the recorded steps `record_steps(steps, record_every)`."""

    loss_R: jax.Array
    acc_R: jax.Array
    initial_loss: jax.Array
    final_loss: jax.Array
    min_loss: jax.Array
    max_loss: jax.Array
    peak_step: jax.Array
    diverged_step: jax.Array  # -1: never
    recover_step: jax.Array  # -1: never (first step after the peak back below initial)
    rebound: jax.Array
    spike_ratio: jax.Array
    above_since: jax.Array  # start of the final stretch above the initial loss; -1: none
    final_accuracy: jax.Array


def record_steps(steps: int, every: int) -> list[int]:
    """Steps at which the curve is recorded: 0, every, 2 every, ..., and always `steps`."""
    rec = list(range(0, steps, every))
    return [*rec, steps]


def stat_dtype(dtype: str):
    # bfloat16 runs keep their summaries in float32 so labels are not decided by rounding
    return jnp.float32 if dtype == "bfloat16" else jnp.dtype(dtype)


def _init_stats(dt) -> Stats:
    z = jnp.zeros((), dt)
    m1 = jnp.array(-1, jnp.int32)
    return Stats(jnp.array(True), z, z, jnp.array(jnp.inf, dt), jnp.array(-jnp.inf, dt),
                 jnp.array(0, jnp.int32), m1, m1, jnp.array(jnp.inf, dt), z,
                 jnp.ones((), dt), m1, z)


def _update_stats(s: Stats, loss, acc, t):
    """Fold the loss at step `t` into the summaries.

    Returns (stats, still_alive, recorded loss, recorded accuracy); the recorded values are
    NaN once the run was frozen at an earlier step."""
    initial = jnp.where(t == 0, loss, s.initial)
    ok = jnp.isfinite(loss) & (loss <= BLOWUP_FACTOR * initial)
    live = s.alive & ok
    dies = s.alive & ~ok
    new_peak = live & (loss > s.max)
    recovers = live & ~new_peak & (s.recover_step < 0) & (t > s.peak_step) & (loss < initial)
    running_min = jnp.where(live, jnp.minimum(s.running_min, loss), s.running_min)
    big_rise = live & (t > 0) & (loss - s.running_min >= SPIKE_MIN_RISE * initial)
    s2 = Stats(
        alive=live,
        initial=initial,
        final=jnp.where(s.alive, loss, s.final),
        min=jnp.where(live, jnp.minimum(s.min, loss), s.min),
        max=jnp.where(new_peak, loss, s.max),
        peak_step=jnp.where(new_peak, t, s.peak_step),
        diverged_step=jnp.where(dies, t, s.diverged_step),
        recover_step=jnp.where(new_peak, -1, jnp.where(recovers, t, s.recover_step)),
        running_min=running_min,
        rebound=jnp.where(live, jnp.maximum(s.rebound, loss - running_min), s.rebound),
        spike=jnp.where(big_rise, jnp.maximum(s.spike, loss / s.running_min), s.spike),
        above_since=jnp.where(~live, s.above_since, jnp.where(
            loss > initial, jnp.where(s.above_since < 0, t, s.above_since), -1)),
        final_acc=jnp.where(s.alive, acc, s.final_acc),
    )
    return s2, live, jnp.where(s.alive, loss, jnp.nan), jnp.where(s.alive, acc, jnp.nan)


def train_one(hp: dict[str, jax.Array], x_NxD, y, static: Static,
              init_params: Any = None) -> Trajectory:
    """Train one run with hyperparameters `hp` (scalars: `seed`, `learning_rate`, ...)."""
    TRACE_COUNT["train_one"] += 1
    dt = jnp.dtype(static.dtype)
    sdt = stat_dtype(static.dtype)
    key = jax.random.PRNGKey(hp["seed"])
    k_init, _k_rest = jax.random.split(key)  # _k_rest is reserved for batches / dropout

    params = init_params if static.custom_init else static.model.init(k_init)
    scale = hp["init_scale"]
    params = jax.tree.map(lambda p: (p * scale).astype(dt), params)
    hpt = {k: jnp.asarray(v, dt) for k, v in hp.items() if k != "seed"}
    opt = optim.make_optimizer(static.optimizer, hpt, optim.n_top_level(params))
    opt_state = opt.init(params)
    loss_of = losses.LOSSES[static.loss]

    def loss_fn(p):
        out = static.model.apply(p, x_NxD)
        return loss_of(out, y), out

    def acc_of(out):
        if not static.accuracy:
            return jnp.zeros((), sdt)
        return losses.accuracy(out, y, static.loss).astype(sdt)

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def step(carry, t):
        params, opt_state, stats = carry
        (loss, out), g = value_and_grad(params)
        stats, live, rec, rec_acc = _update_stats(stats, loss.astype(sdt), acc_of(out), t)
        upd, new_state = opt.update(g, opt_state, params)
        new_params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, upd)
        # a frozen run keeps its last finite parameters: no NaN spreading
        params = jax.tree.map(lambda a, b: jnp.where(live, a, b), new_params, params)
        opt_state = jax.tree.map(lambda a, b: jnp.where(live, a, b), new_state, opt_state)
        return (params, opt_state, stats), (rec, rec_acc)

    def block(carry, t0, length):
        carry, (rec, acc) = lax.scan(step, carry, t0 + jnp.arange(length, dtype=jnp.int32))
        return carry, (rec[0], acc[0])

    k, T = static.record_every, static.steps
    n_full, rem = divmod(T, k)
    carry = (params, opt_state, _init_stats(sdt))
    starts = jnp.arange(n_full, dtype=jnp.int32) * k
    carry, (rec_B, acc_B) = lax.scan(lambda c, t0: block(c, t0, k), carry, starts)
    recs, accs = [rec_B], [acc_B]
    if rem:
        carry, (r, a) = block(carry, jnp.int32(n_full * k), rem)
        recs.append(r[None])
        accs.append(a[None])
    params, _, stats = carry
    loss_T, out_T = loss_fn(params)
    stats, _, rec_T, acc_T = _update_stats(stats, loss_T.astype(sdt), acc_of(out_T),
                                           jnp.int32(T))
    recs.append(rec_T[None])
    accs.append(acc_T[None])
    return Trajectory(
        loss_R=jnp.concatenate(recs),
        acc_R=jnp.concatenate(accs),
        initial_loss=stats.initial,
        final_loss=stats.final,
        min_loss=stats.min,
        max_loss=stats.max,
        peak_step=stats.peak_step,
        diverged_step=stats.diverged_step,
        recover_step=stats.recover_step,
        rebound=stats.rebound,
        spike_ratio=stats.spike,
        above_since=stats.above_since,
        final_accuracy=stats.final_acc,
    )
