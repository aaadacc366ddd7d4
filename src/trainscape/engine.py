"""The single batching boundary: chunks of the run table -> `jit(vmap(train_one))` -> host arrays
(on CPU a block's runs are vmapped in groups, one group after the other: `sub_batch`).

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
from jax import lax

from .train import Static, Trajectory, init_params_of, train_one

# Every compiled program trains exactly `block_of(static, x)` runs per device: BLOCK on CPUs,
# more on GPUs and TPUs (`block_runs`). XLA's float rounding depends on the batch size it was
# compiled for (measured: a run's float32 gradient differs in the last bit between batches of 7,
# 9 and 64), and at large learning rates training is chaotic enough to amplify that into
# different labels. Fixing the per-device batch makes every run's result independent of the
# chunk size, the grid size and its position in the grid. The block depends only on the
# network, the data's shape and the platform.
BLOCK = 32
# A GPU needs far more runs per program than a CPU core: each step of a block is a chain of
# small kernels whose time is mostly launch latency, so blocks of 32 left an H200 nearly idle
# (measured, `small` bench workload: 0.07x the run-steps/s of a JAX step loop over all 4096
# runs at once). Blocks of 1024 for every network fixed that (0.55x) but padded the `seed`
# workload's 256 runs to 1024 (0.27x). So an accelerator's block is the smallest power of two
# from BLOCK up whose runs do ACCEL_BLOCK_FLOPS of work per step, at most ACCEL_BLOCK_MAX
# (results/bench/README.md, "GPU").
ACCEL_BLOCK_FLOPS = 8e9
ACCEL_BLOCK_MAX = 4096
DEFAULT_BLOCKS_PER_CHUNK = 4  # a chunk (the unit saved to disk) is this many blocks per device


def block_runs(platform: str | None = None, flops_per_run_step: float | None = None) -> int:
    """Runs per device in every compiled program on `platform` (default: JAX's default
    backend, which `run_devices` uses) for a network doing `flops_per_run_step` (6 x rows x
    parameters; None: the largest block of the platform)."""
    if (platform or jax.default_backend()) == "cpu":
        return BLOCK
    block = BLOCK
    while block < ACCEL_BLOCK_MAX and (flops_per_run_step is None
                                       or block * flops_per_run_step < ACCEL_BLOCK_FLOPS):
        block *= 2
    return block


def block_of(static, x, platform: str | None = None) -> int:
    """`block_runs` for one program: the network of `static` on data `x` (n, d)."""
    return block_runs(platform, run_step_flops(static, x))


def run_step_flops(static, x) -> int:
    """A run-step's work as the block and group rules count it: 6 x rows x parameters (forward
    2, backward 4), rows being the mini-batch or all of `x`."""
    return 6 * (static.batch_size or x.shape[0]) * n_params(static)


def groups_block(groups, x, platform: str | None = None) -> int:
    """The block chunks are counted in for a sweep of several programs (`(Static, rows)`
    groups, or one Static): the largest of theirs. Blocks are powers of two, so it is a whole
    number of every program's block."""
    statics = [groups] if isinstance(groups, Static) else [st for st, _ in groups]
    return max(block_of(st, x, platform) for st in statics)


# On CPU a block's runs are trained in groups doing at least this much work per step
# (`sub_batch`); the whole block at once on other platforms.
SUB_BATCH_FLOPS = 32e6


def _has_avx512(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:  # not Linux: no way to tell cheaply, keep XLA's defaults
        return False


# XLA options of every training program compiled for CPU devices (per program, through
# `jax.jit(compiler_options=...)`, so nothing else in the user's process changes); recorded in
# meta.json as `xla_compiler_options`.
# prefer_vector_width=512, on AVX-512 machines only: XLA:CPU's elementwise loops (tanh, its
# derivative, the updates) use 256-bit vectors by default even there; 512-bit ones measured
# 1.11-1.19x run-steps/s on the `small` bench workload and 1.02-1.08x on wider networks
# (results/bench/README.md). Sums vectorized differently change the last bits of results,
# hence engine version 0.4.0. Other CPUs keep XLA's defaults (not measured here).
CPU_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512} if _has_avx512() else {}


def compiler_options(platform: str | None = None) -> dict:
    """The XLA options training programs get on `platform` (default: JAX's default backend)."""
    return dict(CPU_COMPILER_OPTIONS) if (platform or jax.default_backend()) == "cpu" else {}


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


# The name of the vmapped axis of the runs trained together (a group, `sub_batch`): with early
# exit, `train_one` asks over it whether any run of its group is still alive.
GROUP_AXIS = "group"


@functools.lru_cache(maxsize=64)
def compiled_sweep(static: Static, devices: tuple = (), layout: str | None = None):
    """`jit(shard_map(vmap(train_one)))` for one static configuration; cached so jit's own
    cache (keyed on shapes and dtypes) is reused across sweeps. `layout`: the platform whose
    grouping of runs the program uses (default: the devices'; "gpu" on CPU devices builds the
    accelerator's program, whole blocks vmapped, for tests).

    `shard_map` over a 1-D mesh of `devices` gives each device its own block of runs and its own
    copy of the data, with no communication at all. (Letting the partitioner shard a plain
    `jit(vmap)` instead inserted cross-device collectives around LAPACK's eigh in the sharpness
    code. The hangs seen with the sharpness on CPU came from jaxlib's batched eigh itself;
    see `curvature._eigh`.)"""

    def one(hp, x, y, init_params, group=None):
        # the precision of every matmul is fixed when the program is traced ("default" leaves
        # JAX's own setting, which on GPUs is TF32 for float32)
        if static.matmul_precision == "default":
            return train_one(hp, x, y, static, init_params, group)
        with jax.default_matmul_precision(static.matmul_precision):
            return train_one(hp, x, y, static, init_params, group)

    # How the runs of a block see the data. Sample-major networks give every run its own
    # (broadcast) copy: with a shared x, vmap folds the run axis into the first layer's matmul
    # ((n, d) @ (d, runs*h)), whose (n, runs, h) result then has to be transposed to
    # (runs, n, h) for every later per-run matmul, in the forward and again in the backward
    # pass. On XLA:CPU those transposes and the mixed-layout fusions around them were 38% of a
    # step's time (measured: 1.4x run-steps/s on the `seed` workload, 1.5x on `small`).
    # Feature-major networks (`models.feature_major`) share one x: there the folded product,
    # (runs*h, d) @ (d, n), is already in the (runs, h, n) layout, and the first layer's weight
    # gradient becomes one (runs*h, n) @ (n, d) matmul instead of a batch of thin ones
    # (measured: 1.04x on `small`, whose 107 us weight gradient per block step took 38 us;
    # 1.21x on a 30-16-16-1 network on breast cancer; results/bench/README.md).
    # init params: the caller's, shared by every run (None), or each run's own draw (0)
    ip_axis = None if static.custom_init else 0
    in_group = functools.partial(one, group=GROUP_AXIS)
    per_run = jax.vmap(in_group, in_axes=(0, 0, None, ip_axis), axis_name=GROUP_AXIS)
    shared = jax.vmap(in_group, in_axes=(0, None, None, ip_axis), axis_name=GROUP_AXIS)
    platform = layout or (devices[0].platform if devices else None)

    def vmapped(hp, x, y, init_params):
        if shares_data(static, x):
            return shared(hp, x, y, init_params)
        runs = jax.tree.leaves(hp)[0].shape[0]
        return per_run(hp, jnp.broadcast_to(x, (runs, *x.shape)), y, init_params)

    def batched(hp, x, y, init_params, real):
        # The block's runs are trained `sub` at a time, one group after the other (see
        # `sub_batch`): a loop over groups, each a vmap over its runs. `real` marks the runs
        # that are not padding: a group of padding only is skipped (its outputs are zeros,
        # dropped by the caller), so a grid smaller than a block does not pay for the block.
        runs = jax.tree.leaves(hp)[0].shape[0]
        sub = sub_batch(static, x, platform)
        if sub >= runs or runs % sub:
            return vmapped(hp, x, y, init_params)
        own = {} if static.custom_init else {"init": init_params}

        def params_of(h):
            return init_params if static.custom_init else h["init"]

        def group(h):
            def train():
                if sub == 1:
                    return one(h["hp"], x, y, params_of(h))
                return vmapped(h["hp"], x, y, params_of(h))

            def skip():
                return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(train))

            return lax.cond(jnp.any(h["real"]), train, skip)

        if sub == 1:
            return lax.map(group, {"hp": hp, "real": real, **own})
        groups = jax.tree.map(lambda a: a.reshape(runs // sub, sub, *a.shape[1:]),
                              {"hp": hp, "real": real, **own})
        out = lax.map(group, groups)
        return jax.tree.map(lambda a: a.reshape(runs, *a.shape[2:]), out)

    options = compiler_options(devices[0].platform if devices else None)
    jit = functools.partial(jax.jit, compiler_options=options or None)
    if len(devices) <= 1:
        return jit(batched)
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    P = jax.sharding.PartitionSpec
    ip_spec = P() if static.custom_init else P("runs")
    return jit(jax.shard_map(batched, mesh=mesh,
                             in_specs=(P("runs"), P(), P(), ip_spec, P("runs")),
                             out_specs=P("runs"), check_vma=False))


# The init program runs once per block and its compile time is what a user waits for: XLA:CPU
# took 3.2-4.9 s to compile the threefry and normal-sampler kernels of a block's draws at its
# default LLVM optimization level (2), 0.8-1.6 s at level 1, with bit-identical draws for every
# built-in init in float32, float64 and bfloat16 (measured on a 2-core Zen 1; level 0 changed
# the normal sampler's last bits). tests/test_engine.py checks level 1 against level 2.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


@functools.lru_cache(maxsize=64)
def compiled_init(model, devices: tuple = ()):
    """`jit(vmap(train.init_params_of))` over a block's seeds: each run's starting weights.

    A program of its own, not part of the training program, for two reasons. The random
    kernels were 70-80% of a training program's compile time (5.6 s for a 2-8-8-1 network, 2.1
    s without them), and they are now compiled once per model instead of once per training
    configuration (steps, optimizer, metrics, ...). And a run's starting weights can no longer
    depend on how XLA fused the rest of the program: two configurations that share the model
    start every seed from the same bits by construction."""
    platform = devices[0].platform if devices else None
    options = INIT_COMPILER_OPTIONS if (platform or jax.default_backend()) == "cpu" else None
    def draw_init(seeds):
        return jax.vmap(lambda seed: init_params_of(model, seed))(seeds)

    if len(devices) <= 1:
        return jax.jit(draw_init, compiler_options=options)
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    P = jax.sharding.PartitionSpec
    return jax.jit(jax.shard_map(draw_init, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"),
                                 check_vma=False), compiler_options=options)


def sub_batch(static: Static, x, platform: str | None = None) -> int:
    """How many runs of a block are trained together (vmapped) on `platform` (default: JAX's
    default backend); the block's groups of that many runs are trained one after the other.

    On CPU, the smallest power of two (at most BLOCK) whose groups do at least
    SUB_BATCH_FLOPS of work per step, counted as 6 x rows x parameters per run. A run's
    activations then stay in the core's cache through the forward and backward pass instead of
    being streamed from memory for all 32 runs of the block in turn, while small networks
    still get enough runs per matmul to amortize each operation's fixed cost. Measured on a
    2-core AMD EPYC, compiled block against the whole block vmapped: the `seed` network (42
    MFLOP per run-step, so one run at a time) 1.38-1.43x run-steps/s; networks of 2.7 to 250
    MFLOP per run-step 1.03-1.40x; the `small` workload (0.52 MFLOP) keeps the whole block
    (results/bench/README.md). Other platforms vmap the whole block. The
    choice depends only on the network, the data's shape and the platform, never on the
    grid or the chunk size, so a run's result stays independent of both."""
    return group_size(run_step_flops(static, x), platform)


def group_size(flops_per_run_step: float, platform: str | None = None) -> int:
    """`sub_batch`'s rule on a run-step's work (6 x rows x parameters): the smallest power of
    two, at most BLOCK, whose group does at least SUB_BATCH_FLOPS per step on CPU; the whole
    block (`block_runs`) on other platforms."""
    if (platform or jax.default_backend()) != "cpu":
        return block_runs(platform, flops_per_run_step)
    sub = 1
    while sub < BLOCK and sub * flops_per_run_step < SUB_BATCH_FLOPS:
        sub *= 2
    return sub


@functools.lru_cache(maxsize=64)
def param_shapes(static: Static):
    """The shapes of one run's parameters (no computation; cached: tracing the model's init
    took about 3 ms, asked for per chunk and per sweep)."""
    return jax.eval_shape(static.model.init, jax.random.PRNGKey(0))


@functools.lru_cache(maxsize=64)
def n_params(static: Static) -> int:
    """Parameters per run (cached: the block and group rules ask for it once per chunk, and
    each answer traces the model's init)."""
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(param_shapes(static)))


def shares_data(static: Static, x) -> bool:
    """Whether the runs of one compiled block read a single shared copy of the data `x` (n, d)
    rather than one broadcast copy each: for models that read it transposed (the built-in MLP
    when `models.feature_major`; see `compiled_sweep`)."""
    wants_t = getattr(static.model.apply, "transposed_input", None)
    if wants_t is None:
        return False
    return bool(wants_t(param_shapes(static), x))


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


def group_devices(static: Static, devices: list) -> list:
    """Devices one program runs on: all of them. (Programs that measure sharpness used to be
    kept on one host CPU device because they hung at 0% CPU when sharded; the cause was
    jaxlib's batched LAPACK eigh deadlocking XLA's shared intra-op pool, avoided in
    `curvature._eigh`. The seed question with the sharpness gives identical results sharded
    over two CPU devices and on one.)"""
    return devices


def run_devices() -> list:
    """Devices the run axis is sharded over: every local device of the default backend."""
    return jax.local_devices()


def plan_chunks(n_runs: int, chunk_size: int | None, n_devices: int = 1,
                block: int = BLOCK) -> int:
    """Runs per chunk: `chunk_size` (default DEFAULT_BLOCKS_PER_CHUNK blocks per device) balanced
    so the last chunk is not mostly padding, then rounded up to whole blocks (`block` runs on
    each device; see `groups_block`)."""
    group = block * n_devices
    cap = max(1, min(chunk_size or DEFAULT_BLOCKS_PER_CHUNK * group, n_runs))
    n_chunks = -(-n_runs // cap)
    size = -(-n_runs // n_chunks)
    return -(-size // group) * group


def default_chunk_size(n_runs: int, block: int = BLOCK) -> int:
    return plan_chunks(n_runs, None, len(run_devices()), block)


def chunk_layout(groups: list, size: int) -> list[tuple]:
    """(static, run-table rows) of every chunk: `size` runs at a time within each program
    group, groups in order, never straddling two. The position in this list is the chunk's
    number, on disk and in `run_chunks`."""
    return [(st, rows[s:s + size]) for st, rows in groups for s in range(0, len(rows), size)]


def run_chunks(static, hp: dict[str, np.ndarray], x, y, init_params=None,
               chunk_size: int | None = None, skip: set[int] | frozenset = frozenset(),
               layout: str | None = None) -> Iterator[ChunkOutput]:
    """Train every run described by the hyperparameter arrays `hp`, chunk by chunk.

    `static` is one :class:`Static`, or a list of `(Static, rows)` groups when static axes
    (dtype, batch size) split the grid into several programs; chunks never straddle groups and
    are numbered across all groups in order. Yields one :class:`ChunkOutput` per chunk as soon
    as it is on the host. Chunks whose index is in `skip` (already saved) are not computed.
    `layout`: see `compiled_sweep` (None: the devices' platform).
    """
    if not isinstance(static, list):
        n = max((len(v) for v in hp.values() if np.ndim(v)), default=1)
        static = [(static, np.arange(n))]
    groups = static
    n = sum(len(rows) for _, rows in groups)
    devices = run_devices()
    platform = layout or devices[0].platform
    block = groups_block(groups, x, platform)
    group_runs = block * len(devices)
    size = -(-(chunk_size or default_chunk_size(n, block)) // group_runs) * group_runs
    placed: dict = {}  # per static: its devices, shardings, compiled program and data
    for index, (st, rows) in enumerate(chunk_layout(groups, size)):
        if index in skip:
            continue
        if st not in placed:
            placed[st] = _place(st, devices, x, y, init_params, platform)
        fn, init_fn, by_run, xd, yd, ip, group_runs, order = placed[st]
        to_layout = np.argsort(order)
        by_lr = exit_order(hp, rows) if st.early_exit else np.arange(len(rows))
        hdt = np.float32 if st.dtype == "bfloat16" else jnp.dtype(st.dtype)
        t0 = time.perf_counter()
        pending: list = []  # dispatched blocks not yet copied to the host, oldest first
        parts = []
        for g0 in range(0, len(rows), group_runs):  # dispatched asynchronously
            batch, real = dispatch_inputs(hp, rows[by_lr], g0, group_runs, to_layout, hdt,
                                          by_run)
            # each run's own starting weights, from the init program (see compiled_init)
            traj: Trajectory = fn(batch, xd, yd, init_fn(batch["seed"]) if ip is None else ip,
                                  real)
            pending.append((min(g0 + group_runs, len(rows)) - g0, traj))
            if len(pending) > MAX_IN_FLIGHT:
                parts.append(_to_host(*pending.pop(0), order))
        parts += [_to_host(m, t, order) for m, t in pending]
        del pending
        back = np.argsort(by_lr)
        host = {k: np.concatenate([p[k] for p in parts])[back] for k in parts[0]}
        yield ChunkOutput(index, int(rows[0]), int(rows[0]) + len(rows), host,
                          time.perf_counter() - t0, rows=rows)


def exit_order(hp: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The order in which a chunk's runs `rows` are dispatched with early exit: by learning
    rate (stable, so grid order among equal rates). Runs of close learning rates tend to blow
    up at about the same step, so blocks of them are frozen all together and stop early,
    whichever axis the grid lists first. Results do not depend on a run's place in a block
    (each run's randomness comes from its own seed, and blocks have a fixed size); the tables
    keep the grid's order."""
    lr = hp.get("learning_rate")
    if lr is None or np.ndim(lr) == 0:
        return np.arange(len(rows))
    return np.argsort(lr[rows], kind="stable")


def dispatch_inputs(hp: dict[str, np.ndarray], rows: np.ndarray, g0: int, group_runs: int,
                    to_layout: np.ndarray, dtype, sharding):
    """The hyperparameters of one dispatch, the runs `rows[g0:g0 + group_runs]`, and which of
    them are real, in device order (`device_order`), on the devices. Padded by repeating the
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
    """A dispatched block's outputs on the host, back in run order (`device_order`), its
    first `m` runs (the rest are padding)."""
    return {k: v[order][:m] for k, v in jax.device_get(traj._asdict()).items()}


def device_order(block: int, n_devices: int, sub: int) -> np.ndarray:
    """Where each run of a dispatch (`block` runs on each of `n_devices` devices, in run
    order) sits in the device-major layout the program is sharded in: its groups of `sub`
    runs (those trained together, `sub_batch`) are dealt to the devices in turn, each run
    keeping its place within its group. So a dispatch that is partly padding (the last of a
    grid) spreads its real groups over every device instead of leaving all but the first
    idle, and a run's group and place in it do not depend on the number of devices. With
    whole-block groups (GPUs and TPUs, small networks on CPU) this is the identity."""
    j = np.arange(block * n_devices)
    group = j // sub
    return (group % n_devices) * block + (group // n_devices) * sub + j % sub


def _place(st: Static, devices: list, x, y, init_params, platform: str | None = None):
    """Compiled program, shardings and device copies of the data for one static config
    (`platform`: the grouping of runs the program uses, see `compiled_sweep`)."""
    devs = group_devices(st, devices)
    # runs are independent, so sharding the run axis needs no communication; data and the
    # caller's init params are replicated on every device
    mesh = jax.sharding.Mesh(np.array(devs), ("runs",))
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    dt = jnp.dtype(st.dtype)
    xd = jax.device_put(jnp.asarray(x, dt), replicated)
    yd = jax.device_put(jnp.asarray(y, jnp.int32 if st.loss == "cross_entropy" else dt),
                        replicated)
    ip = None
    if init_params is not None:
        ip = jax.device_put(jax.tree.map(lambda p: jnp.asarray(p, dt), init_params), replicated)
    platform = platform or devs[0].platform
    block = block_of(st, x, platform)
    order = device_order(block, len(devs), min(block, sub_batch(st, x, platform)))
    layout = platform if platform != devs[0].platform else None
    return (compiled_sweep(st, tuple(devs), layout), compiled_init(st.model, tuple(devs)),
            by_run, xd, yd, ip, block * len(devs), order)


def n_chunks(n_runs: int, chunk_size: int) -> int:
    return -(-n_runs // chunk_size)
