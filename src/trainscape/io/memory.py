"""How much memory a sweep needs, how much the machine has, and what an allocation failure
looks like.

`ts.run` checks these before compiling anything: a grid whose smallest chunk (`engine.block_runs()`
runs per device) cannot fit is refused with the estimate, and a chunk the estimate says will not
fit is dispatched a few blocks at a time. The estimate is deliberately rough (right within a
small factor, erring high); a chunk that still fails to allocate is retried in halves by
`api._sweep`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Per run, alive at once inside one training step: parameters, their gradients, the updated
# parameters, up to two optimizer moments (adam) and the scan carry's copy of the parameters.
PARAM_COPIES = 6
# Per run, sample and unit: pre-activation and activation kept for backprop, and their gradients.
ACTIVATION_COPIES = 4
# Per run and recorded step: loss, accuracy and sharpness curves (kept in at least float32).
CURVE_ARRAYS = 3
# Per run: the online summaries (min, max, peak, divergence, ...) and hyperparameters.
SUMMARY_SCALARS = 32
# Host bytes per curve point in the results table: run_id, step, loss, accuracy, sharpness
# (8 bytes each), held twice while the chunks are concatenated.
HOST_CURVE_BYTES = 5 * 8 * 2
HOST_RUN_BYTES = 40 * 8 * 2  # a runs row: axes and summaries, twice

# Substrings of an allocation failure: XLA's status code, and the wording of the GPU/TPU
# allocators ("Out of memory while trying to allocate ...", "Allocator (GPU_0_bfc) ran out").
ALLOCATION_MARKERS = ("resource_exhausted", "out of memory", "allocator", "failed to allocate")


class OutOfMemory(RuntimeError):
    """A chunk failed to allocate even when dispatched one block at a time."""


def itemsize(dtype) -> int:
    """Bytes per element of a dtype name ("float32", "bfloat16", ...) without importing JAX."""
    return {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}.get(str(dtype), 8)


def estimate_bytes(n_params: int, n_samples: int, d_in: int, widths: Sequence[int],
                   steps_recorded: int, chunk_runs: int, dtype, *,
                   extra_param_copies: int = 0, active_runs: int | None = None) -> int:
    """Device bytes one chunk of `chunk_runs` runs needs at its peak.

    n_params: parameters of one run's model; widths: every layer's output width (hidden layers
    and the output); steps_recorded: curve points per run; extra_param_copies: further
    parameter-sized vectors per run (e.g. the Krylov basis of a sharpness estimate);
    active_runs: runs whose activations are alive at once (default: all of them; on a CPU a
    device trains a block's runs a group at a time, `engine.sub_batch`, so only one group's
    activations per device exist at any moment).
    """
    b = itemsize(dtype)
    curve_b = max(b, 4)
    active = chunk_runs if active_runs is None else min(active_runs, chunk_runs)
    per_run = (PARAM_COPIES + extra_param_copies) * n_params * b
    per_run += (CURVE_ARRAYS * steps_recorded + SUMMARY_SCALARS) * curve_b
    activations = ACTIVATION_COPIES * n_samples * sum(widths) * b
    # x and y are shared by the chunk's runs (replicated, not batched)
    shared = n_samples * (d_in + (widths[-1] if widths else 1)) * b
    return int(chunk_runs) * int(per_run) + int(active) * int(activations) + int(shared)


def host_results_bytes(n_runs: int, steps_recorded: int) -> int:
    """Host bytes of the finished runs and curves tables while they are assembled."""
    return int(n_runs) * (int(steps_recorded) * HOST_CURVE_BYTES + HOST_RUN_BYTES)


# Bytes per recorded curve point on disk while a sweep finishes: the chunk files and the final
# curves.parquet coexist until the chunks are removed, and a float64 loss rarely compresses.
DISK_CURVE_BYTES = 2 * 8


def disk_results_bytes(n_runs: int, steps_recorded: int) -> int:
    """A lower bound on the disk bytes of a sweep's files at their peak (see DISK_CURVE_BYTES)."""
    return int(n_runs) * int(steps_recorded) * DISK_CURVE_BYTES


def disk_free_bytes(path) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    import shutil
    from pathlib import Path

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (Linux and macOS), or None."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


_LIBC: list = []  # glibc, loaded on first use; [None] where there is none


def release_free_memory() -> None:
    """Hand memory that is allocated no more back to the operating system: Arrow's memory pool
    and, on glibc, `malloc_trim`. Freed blocks otherwise stay in the process (glibc keeps them
    in per-thread arenas, spread over XLA's and Arrow's threads), so a long sweep's resident
    memory crept up with every chunk it saved. Takes a few milliseconds, but memory handed
    back has to be faulted in again when it is next used: called once per chunk it slowed the
    memory bench's sweep by about 4%, so it runs before a sweep's files are assembled (where
    the peak was) and between their row groups, not between chunks."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if not _LIBC:
        _LIBC.append(None)
        import sys

        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _LIBC[0] = libc.malloc_trim  # absent on musl: AttributeError
            except (OSError, AttributeError):
                pass
    if _LIBC[0] is not None:
        _LIBC[0](0)


def device_memory_bytes(device=None) -> int | None:
    """Bytes one device can still allocate: its allocator's limit minus what is in use (GPU,
    TPU), else the host's available RAM (CPU devices share it); None when unknown."""
    if device is None:
        import jax

        device = jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends that do not implement memory_stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes()


def host_available_bytes() -> int | None:
    """RAM a new allocation can get: MemAvailable (or sysconf), capped by a cgroup limit, since
    in a container /proc/meminfo reports the host's memory, not the container's."""
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    cg = _cgroup_available()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
              "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_f, used_f in pairs:
        try:
            limit = Path(limit_f).read_text().strip()
            used = int(Path(used_f).read_text().strip())
        except (OSError, ValueError):
            continue
        # "max" (v2) or a huge number (v1) means no limit
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(int(limit) - used, 0)
        return None
    return None


def is_allocation_error(e: BaseException) -> bool:
    """Whether `e` is a failed allocation (worth retrying with fewer runs) rather than a bug."""
    if isinstance(e, MemoryError):
        return True
    if not isinstance(e, RuntimeError) or isinstance(e, OutOfMemory):
        return False
    text = str(e).lower()
    return any(m in text for m in ALLOCATION_MARKERS)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
