"""Runs chunks of the run table on the devices: hyperparameters in, host arrays out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..train.loop import Static, Trajectory
from . import plan
from .compile import compiled_init, compiled_sweep


@dataclass
class ChunkOutput:
    """Host copies of one chunk's trajectories (padding removed). `rows` are the positions
    in the run table of the chunk's runs (contiguous unless static axes such as dtype split
    the grid into several programs)."""

    index: int
    start: int
    stop: int
    traj: dict[str, np.ndarray]
    seconds: float
    rows: np.ndarray | None = None


def hparam_arrays(table: pd.DataFrame, names: tuple[str, ...], defaults: dict[str, Any],
                  dtype) -> dict[str, np.ndarray]:
    """One entry per hyperparameter: the swept column of `table` where the axis is swept, else
    its default as a 0-d array (broadcast per chunk by :func:`take`, so an unswept value costs
    no memory per run and changing a default never recompiles)."""
    out = {}
    for name in names:
        dt = np.int64 if name == "seed" else dtype
        out[name] = (table[name].to_numpy().astype(dt, copy=False) if name in table.columns
                     else np.asarray(defaults[name], dt))
    return out


def take(hp: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The hyperparameters of the runs at positions `idx` (0-d defaults broadcast)."""
    idx = np.asarray(idx)
    return {k: v[idx] if v.ndim else np.full(idx.shape, v) for k, v in hp.items()}


def run_chunks(static, hp: dict[str, np.ndarray], x, y, init_params=None,
               chunk_size: int | None = None, skip: set[int] | frozenset = frozenset(),
               layout: str | None = None, test: tuple = ()) -> Iterator[ChunkOutput]:
    """Train every run described by the hyperparameter arrays `hp`, chunk by chunk.

    `static` is one :class:`Static`, or a list of `(Static, rows)` groups when static axes
    (dtype, batch size) split the grid into several programs; chunks never straddle groups and
    are numbered across all groups in order. `test`: held-out `(x, y)` for programs whose
    static has `test` set (`train_one`). Yields one :class:`ChunkOutput` per chunk as soon
    as it is on the host. Chunks whose index is in `skip` (already saved) are not computed.
    `layout`: see `compile.compiled_sweep` (None: the devices' platform).
    """
    if not isinstance(static, list):
        n = max((len(v) for v in hp.values() if np.ndim(v)), default=1)
        static = [(static, np.arange(n))]
    groups = static
    n = sum(len(rows) for _, rows in groups)
    devices = plan.run_devices()
    platform = layout or devices[0].platform
    block = plan.groups_block(groups, x, platform)
    group_runs = block * len(devices)
    size = -(-(chunk_size or plan.default_chunk_size(n, block)) // group_runs) * group_runs
    placed: dict[Static, Placed] = {}
    for index, (st, rows) in enumerate(plan.chunk_layout(groups, size)):
        if index in skip:
            continue
        if st not in placed:
            placed[st] = place(st, devices, x, y, init_params, platform, test)
        p = placed[st]
        hdt = np.float32 if st.dtype == "bfloat16" else jnp.dtype(st.dtype)
        t0 = time.perf_counter()
        order, head = np.arange(len(rows)), None
        if st.early_exit:
            order, head = probe_order(p, hp, rows, hdt, plan.exit_probe_blocks(st))
        pending: list = []  # dispatched blocks not yet copied to the host, oldest first
        parts = [] if head is None else [head]  # the lead dispatch, computed by probe_order
        start = 0 if head is None else p.dispatch_runs
        ordered = rows[order]
        for g0 in range(start, len(rows), p.dispatch_runs):  # dispatched asynchronously
            pending.append(_dispatch(p, hp, ordered, g0, hdt, NO_LIMIT))
            if len(pending) > MAX_IN_FLIGHT:
                parts.append(_to_host(*pending.pop(0), p.order))
        parts += [_to_host(m, t, p.order) for m, t in pending]
        del pending
        back = np.argsort(order)
        host = {k: np.concatenate([q[k] for q in parts])[back] for k in parts[0]}
        yield ChunkOutput(index, int(rows[0]), int(rows[0]) + len(rows), host,
                          time.perf_counter() - t0, rows=rows)


# `max_blocks` of a sweep's programs (`train_one`): no limit. A traced int32 like the probe's,
# so that both calls share one compiled program.
NO_LIMIT = np.int32(np.iinfo(np.int32).max)


def _dispatch(p: Placed, hp: dict[str, np.ndarray], rows: np.ndarray, g0: int, hdt,
              max_blocks) -> tuple[int, Trajectory]:
    """Dispatch (asynchronously) the runs `rows[g0:g0 + p.dispatch_runs]`: (how many are
    real, their trajectories on the devices)."""
    batch, real = dispatch_inputs(hp, rows, g0, p.dispatch_runs, p.to_layout, hdt, p.by_run)
    # each run's own starting weights, from the init program (see compiled_init)
    ip = p.init(batch["seed"]) if p.init_params is None else p.init_params
    traj: Trajectory = p.train(batch, p.x, p.y, ip, real, p.test, max_blocks)
    return min(g0 + p.dispatch_runs, len(rows)) - g0, traj


def probe_order(p: Placed, hp: dict[str, np.ndarray], rows: np.ndarray, hdt,
                blocks: int) -> tuple[np.ndarray, dict | None]:
    """The order in which a chunk's runs `rows` are dispatched with early exit, so that runs
    which freeze at about the same step share a group: the loop over steps ends only when
    all of a group's runs are frozen (`train.loop._until_frozen`). Returns (the order, the
    host outputs of its first dispatch, already computed, or None).

    1. The lead: the dispatch of the highest learning rates is computed first, in full (its
       outputs are the chunk's). If none of its runs froze at any step, nothing is probed:
       lower learning rates rarely freeze sooner, so a grid where nothing blows up costs no
       step more than without early exit.
    2. The probe: otherwise the other runs, highest learning rate first, are computed for
       the first `blocks` recorded blocks (`plan.exit_probe_blocks`) by the sweep's own
       program, told to stop there, a dispatch at a time, until a dispatch in which no run
       froze. Its results are discarded.
    3. After the lead, the runs that froze in the probe come first, by the step they froze
       at, and the rest follow by learning rate (`exit_order`).

    On the `diverging` bench workload, where the seeds of one learning rate freeze at
    different steps or not at all, this raised the run-steps skipped from 30.5% (learning-rate
    order) to 39.8% (44.2% if every run stopped on its own; results/bench/README.md, "Early
    exit"). Only the order changes: each run's result depends on its own hyperparameters and
    seed, never on its place in a dispatch (blocks have a fixed size), and the tables keep the
    grid's order."""
    order = exit_order(hp, rows)
    if not blocks:
        return order, None
    rate = _rates(hp, rows)
    d = p.dispatch_runs
    lead, rest = order[::-1][:d], order[::-1][d:]  # rest: highest learning rate first
    head = _to_host(*_dispatch(p, hp, rows[lead], 0, hdt, NO_LIMIT), p.order)
    if (head["diverged_step"] < 0).all():
        return np.concatenate([lead, rest[::-1]]), head
    froze = np.full(len(rest), -1, np.int64)
    probed = rows[rest]
    for g0 in range(0, len(rest), d):
        m, traj = _dispatch(p, hp, probed, g0, hdt, np.int32(blocks))
        step = _to_host(m, traj, p.order)["diverged_step"]
        froze[g0:g0 + m] = step
        if (step < 0).all():
            break
    # primary: the step a run froze at in the probe (never or not probed: last); then its rate
    by = np.lexsort((rate[rest], np.where(froze >= 0, froze, np.iinfo(np.int64).max)))
    return np.concatenate([lead, rest[by]]), head


def exit_order(hp: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The order in which a chunk's runs `rows` are dispatched with early exit: by learning
    rate (stable, so grid order among equal rates). Runs of close learning rates tend to blow
    up at about the same step, so blocks of them are frozen all together and stop early,
    whichever axis the grid lists first. Results do not depend on a run's place in a block
    (each run's randomness comes from its own seed, and blocks have a fixed size); the tables
    keep the grid's order."""
    return np.argsort(_rates(hp, rows), kind="stable")


def _rates(hp: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The learning rates of the runs `rows` (zeros where the rate is not swept)."""
    lr = hp.get("learning_rate")
    return lr[rows] if lr is not None and np.ndim(lr) else np.zeros(len(rows))


def dispatch_inputs(hp: dict[str, np.ndarray], rows: np.ndarray, g0: int, group_runs: int,
                    to_layout: np.ndarray, dtype, sharding):
    """The hyperparameters of one dispatch, the runs `rows[g0:g0 + group_runs]`, and which of
    them are real, in device order (`plan.device_order`), on the devices. Padded by repeating the
    last run (its outputs are dropped). One transfer call for all of them: a call per
    hyperparameter cost more host time than the block's compute on small networks."""
    pos = np.arange(g0, g0 + group_runs)
    idx = rows[pos.clip(max=len(rows) - 1)]
    hps = {k: v.astype(np.int32 if k == "seed" else dtype)
           for k, v in take(hp, idx[to_layout]).items()}
    return jax.device_put((hps, (pos < len(rows))[to_layout]), sharding)


# Blocks of a chunk dispatched ahead of the one being copied back. Every dispatched block
# holds its buffers (on a CPU, XLA's working memory for its runs, about 15 KB per run of the
# memory bench's 2-4-1 network on 64 points) until it is copied to the host, so dispatching a
# whole chunk at once made peak memory grow with the chunk size (a sweep of 7,168-run chunks
# peaked 29 MiB above the same sweep in 5,056-run chunks). A few blocks ahead keep the device
# busy while Python copies.
MAX_IN_FLIGHT = 8


def _to_host(m: int, traj: Trajectory, order: np.ndarray) -> dict[str, np.ndarray]:
    """A dispatched block's outputs on the host, back in run order (`plan.device_order`), its
    first `m` runs (the rest are padding)."""
    return {k: v[order][:m] for k, v in jax.device_get(traj._asdict()).items()
            if v is not None}


class Placed(NamedTuple):
    """One program ready to run: compiled functions, shardings and the data on the devices."""

    train: Any  # compile.compiled_sweep
    init: Any  # compile.compiled_init
    by_run: Any  # sharding of per-run inputs over the run axis
    x: Any
    y: Any
    init_params: Any  # the caller's, replicated; None: each run draws its own
    dispatch_runs: int  # runs per dispatch: one block on every device
    order: np.ndarray  # plan.device_order of a dispatch
    to_layout: np.ndarray  # its inverse: run order -> device order (`dispatch_inputs`)
    test: tuple = ()  # held-out (x, y) on the devices, replicated; () without


def place(st: Static, devices: list, x, y, init_params, platform: str | None = None,
          test: tuple = ()) -> Placed:
    """Compiled program, shardings and device copies of the data (and of the held-out
    `test`) for one static config (`platform`: the grouping of runs the program uses, see
    `compile.compiled_sweep`)."""
    # runs are independent, so sharding the run axis needs no communication; data and the
    # caller's init params are replicated on every device
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    dt = jnp.dtype(st.dtype)
    xd = jax.device_put(jnp.asarray(x, dt), replicated)
    yd = jax.device_put(jnp.asarray(y, jnp.int32 if st.loss == "cross_entropy" else dt),
                        replicated)
    held = ()
    if st.test:  # labels in the training labels' dtype
        held = jax.device_put((jnp.asarray(test[0], dt), jnp.asarray(test[1], yd.dtype)),
                              replicated)
    ip = None
    if init_params is not None:
        ip = jax.device_put(jax.tree.map(lambda p: jnp.asarray(p, dt), init_params), replicated)
    platform = platform or devices[0].platform
    block = plan.block_of(st, x, platform)
    order = plan.device_order(block, len(devices), min(block, plan.sub_batch(st, x, platform)))
    layout = platform if platform != devices[0].platform else None
    program = st if st.unroll is not None else st._replace(unroll=plan.loop_unroll(platform))
    return Placed(compiled_sweep(program, tuple(devices), layout),
                  compiled_init(st.model, tuple(devices)), by_run, xd, yd, ip,
                  block * len(devices), order, np.argsort(order), held)


def probe_seconds_per_run_step(prep) -> tuple[float, bool]:
    """(seconds per run-step on all devices, whether it came from the cache). Times one block
    of runs on every device (the first runs of the first program group: with a width or depth
    axis, the network of its first value, so a wider network's chunks can take longer than
    the target, which spaces checkpoints and does not change speed) for plan.PROBE_STEPS
    steps, best of two calls after a warm-up call, without sharpness (a fixed per-run cost
    that longer chunks only amortize) and without early exit (runs that blow up at once would
    make every step look free)."""
    key, f = plan.shape_key(prep), plan.cache_file()
    if key is not None:
        hit = plan.read_probes(f).get(key)
        if isinstance(hit, int | float) and hit > 0:
            return float(hit), True
    st, rows = prep.groups[0]
    steps = min(st.steps, plan.PROBE_STEPS)
    probe = st._replace(steps=steps, record_every=steps, sharpness=False, sharpness_every=0,
                        early_exit=False, test=False)
    group = prep.block * len(plan.run_devices())
    rows = np.resize(rows[:group], group)  # a grid smaller than one block repeats its runs

    def once() -> float:
        t0 = time.perf_counter()
        for _ in run_chunks([(probe, np.arange(group))], prep.hparams(rows), prep.x,
                                   prep.y, prep.init_params, group):
            pass
        return time.perf_counter() - t0

    once()  # compile (or load from the persistent cache)
    rate = min(once(), once()) / (group * steps)
    if key is not None:
        plan.write_probe(f, key, rate)
    return rate, False
