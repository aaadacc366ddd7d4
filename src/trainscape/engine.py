"""The single batching boundary: chunks of the run table -> `jit(vmap(train_one))` -> host arrays.

Nothing else in trainscape applies `vmap` or `jit` over runs. Each chunk is padded to the chunk
size (by repeating its last row, whose outputs are dropped) so every chunk reuses one compiled
program; compiled programs are cached per `Static` so a second sweep of the same shapes does not
recompile. Per-run randomness comes from each run's own `seed` value, never from its position in
a chunk, so results do not depend on the chunk size.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .train import Static, Trajectory, train_one

# Every compiled program trains exactly BLOCK runs per device. XLA's float rounding depends on
# the batch size it was compiled for (measured: a run's float32 gradient differs in the last
# bit between batches of 7, 9 and 64), and at large learning rates training is chaotic enough
# to amplify that into different labels. Fixing the per-device batch makes every run's result
# independent of the chunk size, the grid size and its position in the grid.
BLOCK = 32
DEFAULT_CHUNK = 4 * BLOCK  # runs per device per chunk (a chunk is the unit saved to disk)


@dataclass
class ChunkOutput:
    """Host copies of one chunk's trajectories (padding removed)."""

    index: int
    start: int
    stop: int
    traj: dict[str, np.ndarray]
    seconds: float


@functools.lru_cache(maxsize=64)
def compiled_sweep(static: Static):
    """`jit(vmap(train_one))` for one static configuration; cached so jit's own cache (keyed
    on shapes and dtypes) is reused across sweeps."""

    def one(hp, x, y, init_params):
        return train_one(hp, x, y, static, init_params)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def hparam_arrays(table: pd.DataFrame, names: tuple[str, ...], defaults: dict[str, Any],
                  dtype) -> dict[str, np.ndarray]:
    """One array per hyperparameter for the rows of `table`: the swept column where the axis is
    swept, else the default broadcast (so changing a default never recompiles)."""
    n = len(table)
    out = {}
    for name in names:
        col = table[name].to_numpy() if name in table.columns else np.full(n, defaults[name])
        out[name] = col.astype(np.int32 if name == "seed" else dtype)
    return out


def run_devices() -> list:
    """Devices the run axis is sharded over: every local device of the default backend."""
    return jax.local_devices()


def plan_chunks(n_runs: int, chunk_size: int | None, n_devices: int = 1) -> int:
    """Runs per chunk: `chunk_size` (default DEFAULT_CHUNK per device) balanced so the last chunk
    is not mostly padding, then rounded up to whole blocks (BLOCK runs on each device)."""
    group = BLOCK * n_devices
    cap = max(1, min(chunk_size or DEFAULT_CHUNK * n_devices, n_runs))
    n_chunks = -(-n_runs // cap)
    size = -(-n_runs // n_chunks)
    return -(-size // group) * group


def default_chunk_size(n_runs: int) -> int:
    return plan_chunks(n_runs, None, len(run_devices()))


def run_chunks(static: Static, hp: dict[str, np.ndarray], x, y, init_params=None,
               chunk_size: int | None = None, skip: set[int] | frozenset = frozenset(),
               ) -> Iterator[ChunkOutput]:
    """Train every run described by the hyperparameter arrays `hp`, chunk by chunk.

    Yields one :class:`ChunkOutput` per chunk as soon as it is on the host. Chunks whose index is
    in `skip` (already saved by an earlier, interrupted sweep) are not computed.
    """
    n = len(next(iter(hp.values())))
    devices = run_devices()
    group = BLOCK * len(devices)
    size = -(-(chunk_size or default_chunk_size(n)) // group) * group
    fn = compiled_sweep(static)
    dt = jnp.dtype(static.dtype)
    # runs are independent, so sharding the run axis needs no communication; data and the
    # caller's init params are replicated on every device
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    x = jax.device_put(jnp.asarray(x, dt), replicated)
    y = jax.device_put(jnp.asarray(y, jnp.int32 if static.loss == "cross_entropy" else dt),
                       replicated)
    if init_params is not None:
        init_params = jax.device_put(jax.tree.map(lambda p: jnp.asarray(p, dt), init_params),
                                     replicated)
    for index, start in enumerate(range(0, n, size)):
        if index in skip:
            continue
        stop = min(start + size, n)
        t0 = time.perf_counter()
        pending = []
        for g0 in range(start, stop, group):  # dispatched asynchronously, gathered below
            idx = np.arange(g0, g0 + group).clip(max=n - 1)  # pad by repeating the last run
            batch = {k: jax.device_put(v[idx], by_run) for k, v in hp.items()}
            traj: Trajectory = fn(batch, x, y, init_params)
            pending.append((min(g0 + group, stop) - g0, traj))
        parts = [{k: np.asarray(v)[:m] for k, v in t._asdict().items()} for m, t in pending]
        host = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        yield ChunkOutput(index, start, stop, host, time.perf_counter() - t0)


def n_chunks(n_runs: int, chunk_size: int) -> int:
    return -(-n_runs // chunk_size)
