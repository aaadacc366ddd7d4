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

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..train.loop import Static, init_params_of, train_one
from . import plan


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


# The name of the vmapped axis of the runs trained together (a group, `plan.sub_batch`): with
# early exit, `train_one` asks over it whether any run of its group is still alive.
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

    def one(hp, x, y, init_params, test=(), max_blocks=None, group=None):
        # the precision of every matmul is fixed when the program is traced ("default" leaves
        # JAX's own setting, which on GPUs is TF32 for float32)
        if static.matmul_precision == "default":
            return train_one(hp, x, y, static, init_params, group, test, max_blocks)
        with jax.default_matmul_precision(static.matmul_precision):
            return train_one(hp, x, y, static, init_params, group, test, max_blocks)

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
    # held-out data (`test`, () without it) and the probe's block limit are shared by every run
    in_group = functools.partial(one, group=GROUP_AXIS)
    per_run = jax.vmap(in_group, in_axes=(0, 0, None, ip_axis, None, None),
                       axis_name=GROUP_AXIS)
    shared = jax.vmap(in_group, in_axes=(0, None, None, ip_axis, None, None),
                      axis_name=GROUP_AXIS)
    platform = layout or (devices[0].platform if devices else None)

    def vmapped(hp, x, y, init_params, test, max_blocks):
        if plan.shares_data(static, x):
            return shared(hp, x, y, init_params, test, max_blocks)
        runs = jax.tree.leaves(hp)[0].shape[0]
        return per_run(hp, jnp.broadcast_to(x, (runs, *x.shape)), y, init_params, test,
                       max_blocks)

    def batched(hp, x, y, init_params, real, test=(), max_blocks=None):
        # The block's runs are trained `sub` at a time, one group after the other (see
        # `sub_batch`): a loop over groups, each a vmap over its runs. `real` marks the runs
        # that are not padding: a group of padding only is skipped (its outputs are zeros,
        # dropped by the caller), so a grid smaller than a block does not pay for the block.
        # `max_blocks`: see `train_one` (the engine passes it always, so that its probe and
        # its sweeps share one compiled program; None: no limit).
        runs = jax.tree.leaves(hp)[0].shape[0]
        sub = plan.sub_batch(static, x, platform)
        if sub >= runs or runs % sub:
            return vmapped(hp, x, y, init_params, test, max_blocks)
        own = {} if static.custom_init else {"init": init_params}

        def params_of(h):
            return init_params if static.custom_init else h["init"]

        def group(h):
            def train():
                if sub == 1:
                    return one(h["hp"], x, y, params_of(h), test, max_blocks)
                return vmapped(h["hp"], x, y, params_of(h), test, max_blocks)

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
                             in_specs=(P("runs"), P(), P(), ip_spec, P("runs"), P(), P()),
                             out_specs=P("runs"), check_vma=False))


# The init program runs once per block and its compile time is what a user waits for: XLA:CPU
# took 3.2-4.9 s to compile the threefry and normal-sampler kernels of a block's draws at its
# default LLVM optimization level (2), 0.8-1.6 s at level 1, with bit-identical draws for every
# built-in init in float32, float64 and bfloat16 (measured on a 2-core Zen 1; level 0 changed
# the normal sampler's last bits). tests/engine/test_engine.py checks level 1 against level 2.
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
