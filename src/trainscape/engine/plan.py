"""The one owner of planning: runs per block, per group, per dispatch and per chunk.

Every compiled program trains a fixed number of runs per device (a block); a chunk (the unit a
sweep saves) is whole blocks on every device; a dispatch is the part of a chunk sent to the
devices at once (fewer blocks when memory is short); on CPU a block's runs are trained in
groups. These sizes depend only on the network, the data's shape and the platform, never on
the grid, so a run's result does not depend on how the grid was cut.

Chunk size. A chunk is the unit a sweep saves to disk (and loses at most, when interrupted).
Small chunks cost per-chunk overhead (building its tables, two Parquet files, a checksum and an
fsync: about 20-50 ms); big ones cost memory and lose more work on a kill. The automatic size
aims at `TARGET_CHUNK_SECONDS` of compute per chunk, from a probe that times one block of runs
for `PROBE_STEPS` steps (`execute.probe_seconds_per_run_step`), keeps a chunk's host tables
under `MAX_CHUNK_TABLE_BYTES` (so peak host memory stays flat as the grid grows), and is then
cut to whole blocks that fit the memory budget. The probe result is cached in
`trainscape-probe.json` next to the compile cache, keyed by everything that sets a run-step's
cost, so a second sweep of the same shapes does not probe again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np

from ..errors import InputError
from ..io import memory
from ..train.loop import Static
from ..version import __version__

if TYPE_CHECKING:
    from ..sweep.prepare import Prepared

# A probe of the training speed: () -> (seconds per run-step on all devices, from the cache?)
Probe = Callable[[], "tuple[float, bool]"]


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


# With early exit, each chunk's runs are first computed for the recorded blocks within this
# share of their steps (`exit_probe_blocks`), to learn which of them freeze that early
# (`execute.probe_order`).
EXIT_PROBE_SHARE = 1 / 32


def exit_probe_blocks(static: Static) -> int:
    """How many recorded blocks (`train.record_steps`) the early-exit probe computes: those
    that end within the first `EXIT_PROBE_SHARE` of the steps. 0 (no probe) without early
    exit, with the sharpness (it would be measured twice at step 0, costing more than the
    probe saves where few runs freeze), or when no whole block fits, as with a
    `record_every` above steps/32: the loop only stops between blocks, so a shorter probe
    could not tell which runs stop it."""
    if not static.early_exit or static.sharpness:
        return 0
    # block i covers steps i*k .. (i+1)*k - 1 (k = record_every), so m blocks end by step m*k,
    # never at the end: m*k <= steps/32
    return int(static.steps * EXIT_PROBE_SHARE // static.record_every)


# Recorded blocks computed per iteration of the early-exit loop (`train.loop._until_frozen`),
# per platform; 1 where absent. A loop with a data-dependent condition may cost one copy of
# the condition to the host per iteration on a GPU, which unrolling divides by the factor, at
# the price of that many copies of the step in the program (compile time) and up to factor - 1
# blocks computed and dropped at the loop's end. On a CPU (2-core Zen 4, `small`, the programs
# alone, `experiments/engine_gap.py --variants unroll4,unroll16`, best of 5 rounds) factors 4
# and 16 ran at 0.96x and 0.91x the speed of 1 and took 2.5x and 8.7x as long to compile
# (1.04 s for 1): 1 there.
# Not yet measured on a GPU (`experiments/gpu_bench.sh` does): 1 there until it is.
LOOP_UNROLL: dict[str, int] = {}


def loop_unroll(platform: str | None = None) -> int:
    """Recorded blocks per iteration of the early-exit loop on `platform` (`Static.unroll`;
    the same results for every value)."""
    return LOOP_UNROLL.get(platform or jax.default_backend(), 1)


# On CPU a block's runs are trained in groups doing at least this much work per step
# (`sub_batch`); the whole block at once on other platforms.
SUB_BATCH_FLOPS = 32e6


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
    wants_t = static.model.transposed_input
    if wants_t is None:
        return False
    return bool(wants_t(param_shapes(static), x))


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


def chunk_layout(groups: list, size: int) -> ChunkLayout:
    """(static, run-table rows) of every chunk: `size` runs at a time within each program
    group, groups in order, never straddling two. The position in this list is the chunk's
    number, on disk and in `run_chunks`."""
    return ChunkLayout(groups, size)


class ChunkLayout(Sequence):
    """`chunk_layout`'s list, built one chunk at a time when asked for: a grid of 10**9 runs
    in chunks of one block would otherwise hold millions of row arrays (or tuples) to plan
    and validate, before the first run is trained."""

    def __init__(self, groups: list, size: int):
        self.groups, self.size = list(groups), int(size)
        self.ends = np.cumsum([-(-len(rows) // self.size) for _, rows in self.groups])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _where(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"chunk {index} of {len(self)}")
        g = int(np.searchsorted(self.ends, index, side="right"))
        return g, (index - (int(self.ends[g - 1]) if g else 0)) * self.size

    def runs_in(self, index: int) -> int:
        """How many runs chunk `index` holds (without building its rows)."""
        g, start = self._where(index)
        return min(self.size, len(self.groups[g][1]) - start)

    def __getitem__(self, index: int) -> tuple:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        g, start = self._where(index + len(self) if index < 0 else index)
        st, rows = self.groups[g]
        return st, rows[start:start + self.size]


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


def memory_need(prep: Prepared, runs: int) -> int:
    """Estimated peak device bytes while `runs` runs are in flight, for the hungriest program
    group. CPU devices share the host's memory; other devices each hold their share."""
    devices = run_devices()
    cpu = devices[0].platform == "cpu"
    per_pool = runs if cpu else -(-runs // len(devices))
    need = 0
    for (static, _), sizes in zip(prep.groups, prep.group_sizes, strict=True):
        widths = (prep.d_out,) if prep.custom_model else tuple(sizes[1:])
        # Lanczos keeps a basis of min(sharpness_iters, parameters) vectors (nn.curvature)
        extra = min(static.sharpness_iters, n_params(static)) + 2 if static.sharpness else 0
        # a CPU device trains its blocks one group of runs at a time (GPU and TPU blocks are
        # vmapped whole; counted whole, as before)
        active = (sub_batch(static, prep.x, devices[0].platform) * len(devices)
                  if cpu else None)
        # held-out rows: their forward pass and their copy of the data, counted as samples
        held = len(prep.x_test) if static.test else 0
        need = max(need, memory.estimate_bytes(
            n_params(static), prep.x.shape[0] + held, prep.x.shape[1], widths,
            n_recorded(static), per_pool, static.dtype,
            extra_param_copies=extra, active_runs=active))
    return need


def check_memory(prep: Prepared, in_memory: bool = True, out: Path | None = None,
                 budget: float | None = None) -> None:
    """Refuse a grid whose smallest chunk (one block on every device) cannot fit on the device
    or in the caller's memory `budget` (the chunk is never cut below it), whose finished
    tables cannot fit in host memory (`in_memory`: results kept in memory), or whose files
    cannot fit on the disk holding `out`, before anything is compiled."""
    devices = run_devices()
    block = prep.block
    group = block * len(devices)
    available = memory.device_memory_bytes(devices[0])
    need = memory_need(prep, group)
    fmt = memory.format_bytes
    smallest = (f"its smallest chunk ({group} runs, {block} per device on {len(devices)} "
                f"{devices[0].platform} device(s))")
    reduce = "reduce [data] n_samples, [model] hidden or the recorded steps ([train] record_every)"
    if available is not None and need > available:
        raise InputError(f"grid too large for this machine: {smallest} needs about {fmt(need)}, "
                         f"but {fmt(available)} is available; {reduce}")
    with_tables = need + HOST_CHUNKS_AT_ONCE * memory.host_results_bytes(
        group, n_recorded(prep.static))  # as fit_budget counts it
    if budget is not None and with_tables > budget:
        raise InputError(f"memory budget (--memory-budget, memory_budget=): got "
                         f"{fmt(budget)}, but {smallest} needs about {fmt(with_tables)}; give "
                         f"at least that, or {reduce}")
    steps = n_recorded(prep.static)
    if in_memory:
        host = memory.host_available_bytes()
        need = memory.host_results_bytes(prep.n_runs, steps)
        if host is not None and need > host:
            raise InputError(
                f"grid too large for this machine: the results of {prep.n_runs} runs x "
                f"{steps} recorded steps need about {fmt(need)} of host memory, but "
                f"{fmt(host)} is available; write them to a folder (out=DIR), record fewer "
                "steps ([train] record_every) or split the grid")
    elif out is not None:
        free = memory.disk_free_bytes(out)
        need = memory.disk_results_bytes(prep.n_runs, steps)
        if free is not None and need > free:
            raise InputError(
                f"output folder {str(out)!r}: the results of {prep.n_runs} runs x {steps} "
                f"recorded steps need at least {fmt(need)} on disk, but {fmt(free)} is free; "
                "record fewer steps ([train] record_every), split the grid or choose another "
                "--out")


def n_recorded(static) -> int:
    """len(train.record_steps(steps, record_every)) without building the list (steps may be
    absurdly large in a config that is about to be refused)."""
    return len(range(0, static.steps, static.record_every)) + 1


def fit_dispatch(prep: Prepared, size: int) -> int:
    """Runs to dispatch at once: the chunk, or fewer whole blocks if the estimate says the
    whole chunk would not fit on the device."""
    devices = run_devices()
    group = prep.block * len(devices)
    fits = fit_runs(lambda k: memory_need(prep, k), size, group,
                           memory.device_memory_bytes(devices[0]))
    return fits or group


MEMORY_FRACTION = 0.5  # default chunk budget: this fraction of what the device can allocate


def choose_chunk_size(prep: Prepared, chunk_size: int | None, budget: float | None,
                      probe: Probe):
    """Runs per chunk, in whole blocks (`prep.block` runs on every device), as the engine dispatches
    them: the manifest then records the chunk size that numbers the chunks, whatever device
    count a resumed sweep runs on. Explicit: `chunk_size` rounded up to whole blocks.
    Automatic: `auto_chunk_size` (timing probe), then cut to the memory budget.
    Returns (size, facts for meta.json's timings)."""
    n = prep.n_runs
    n_dev = len(run_devices())
    step = prep.block * n_dev
    if chunk_size is not None:
        return -(-min(chunk_size, n) // step) * step, {}
    size, facts = auto_chunk_size(prep, plan_chunks(n, None, n_dev, prep.block), n_dev,
                                  probe)
    fitted = fit_budget(prep, size, n_dev, budget)
    return fitted, {**facts, "memory_budget_bytes": budget_bytes(budget)}


def budget_bytes(budget: float | None) -> int | None:
    if budget is None:
        free = memory.device_memory_bytes(run_devices()[0])
        budget = None if free is None else MEMORY_FRACTION * free
    return None if budget is None else int(budget)


# Chunks whose host tables are in memory at once: a chunk's tables are built and saved while
# the next chunk computes and comes back (sweep.runner: _HostWork).
HOST_CHUNKS_AT_ONCE = 2


def fit_budget(prep: Prepared, size: int, n_dev: int, budget: float | None) -> int:
    """Shrink the chunk (whole blocks) until the estimated memory of its computation and of the
    host tables of HOST_CHUNKS_AT_ONCE chunks fits `budget` bytes (default MEMORY_FRACTION of
    the device's free memory). One block per device always runs: a grid whose single block
    does not fit is refused by `check_memory`."""
    step = prep.block * n_dev
    recorded = n_recorded(prep.static)

    def need(runs: int) -> int:
        return memory_need(prep, runs) + \
            HOST_CHUNKS_AT_ONCE * memory.host_results_bytes(runs, recorded)

    return max(step, fit_runs(need, size, step, budget_bytes(budget)))


TARGET_CHUNK_SECONDS = 10.0


# A chunk's host tables (runs rows and long curves, see memory.host_results_bytes) stay under
# this, so a sweep's peak host memory does not grow with the grid: a million-run sweep holds
# no more of it at once than a sweep whose whole grid is one chunk this big.
MAX_CHUNK_TABLE_BYTES = 16 << 20


PROBE_STEPS = 20


# grids up to this many chunks of the default size are not worth a probe: the default is fine
PROBE_MIN_CHUNKS = 8


def cache_file() -> Path | None:
    """Where probe results are kept: in JAX's persistent compile cache folder (see
    `trainscape/__init__.py`), so TRAINSCAPE_NO_CACHE and --no-cache turn both off."""
    folder = jax.config.jax_compilation_cache_dir
    if not folder or not jax.config.jax_enable_compilation_cache:
        return None
    return Path(folder) / "trainscape-probe.json"


def shape_key(prep) -> str | None:
    """What a run-step's cost depends on; None for a custom model (its functions have no
    stable identity across processes, so its probe is not cached)."""
    if prep.custom_model:
        return None
    st = prep.static
    devices = run_devices()
    parts = {
        "model": prep.model_name, "activation": prep.exp.model.activation,
        "parameterization": prep.exp.model.parameterization,
        "x": list(prep.x.shape), "dtypes": sorted({s.dtype for s, _ in prep.groups}),
        "batch": sorted(str(s.batch_size) for s, _ in prep.groups),
        **({"shapes": sorted({"-".join(map(str, z)) for z in prep.group_sizes}),
            "base_width": prep.exp.model.base_width} if len(prep.shapes) > 1 or
           prep.exp.model.base_width is not None else {}),
        "loss": st.loss, "optimizer": st.optimizer, "dropout": st.dropout, "l2": st.l2,
        "clip": st.grad_clip, "accuracy": st.accuracy, "precision": st.matmul_precision,
        "devices": [len(devices), devices[0].platform, devices[0].device_kind],
        "jax": jax.__version__, "block": prep.block,
        # the engine's version too: a new one can run the same shapes at another speed (0.6.0
        # trains wide networks' runs in groups, 1.4x faster), and a stale probe sizes chunks
        # for the old speed
        "trainscape": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def read_probes(f: Path | None) -> dict:
    if f is None:
        return {}
    try:
        d = json.loads(f.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def write_probe(f: Path | None, key: str, value: float) -> None:
    if f is None:
        return
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        d = read_probes(f)
        d[key] = value
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(d, indent=1, sort_keys=True))
        os.replace(tmp, f)
    except OSError:
        pass  # a read-only cache folder only costs a probe next time


def auto_chunk_size(prep, default: int, n_dev: int, probe: Probe) -> tuple[int, dict]:
    """Runs per chunk for a sweep without an explicit chunk size: about TARGET_CHUNK_SECONDS of
    compute (from the probe), at least one block per device, at most the whole grid; grids of
    few chunks keep `default`. Returns (size, facts for the timings in meta.json)."""
    n = prep.n_runs
    if n <= PROBE_MIN_CHUNKS * default:
        return default, {"probe": None}
    rate, cached = probe()
    want = int(TARGET_CHUNK_SECONDS / (rate * prep.static.steps))
    recorded = len(range(0, prep.static.steps, prep.static.record_every)) + 1
    cap = MAX_CHUNK_TABLE_BYTES // memory.host_results_bytes(1, recorded)
    size = plan_chunks(n, max(min(want, cap), 1), n_dev, prep.block)
    return size, {"probe": {"seconds_per_run_step": rate, "cached": cached,
                            "target_chunk_seconds": TARGET_CHUNK_SECONDS}}


def fit_runs(need_of: Callable[[int], int], size: int, step: int, available: int | None) -> int:
    """Runs to dispatch at once: `size` rounded down to whole `step`s (at least one), halved
    until `need_of` fits in `available` bytes; 0 when even `step` runs do not fit. Unknown
    memory (None) fits anything."""
    blocks = max(1, size // step)
    while available is not None and blocks >= 1 and need_of(blocks * step) > available:
        blocks //= 2  # halving, as a retry after an allocation failure does
    return blocks * step
