"""Automatic chunk size: a memory budget and a short timing probe, cached per program shape.

A chunk is the unit a sweep saves to disk (and loses at most, when interrupted). Small chunks
cost per-chunk overhead (building its tables, two Parquet files, a checksum and an fsync: about
20-50 ms); big ones cost memory and lose more work on a kill. The automatic size aims at
`TARGET_CHUNK_SECONDS` of compute per chunk, from a probe that times one block of runs for
`PROBE_STEPS` steps, keeps a chunk's host tables under `MAX_CHUNK_TABLE_BYTES` (so peak host
memory stays flat as the grid grows), and is then cut to whole blocks that fit the memory
budget.

The probe result (seconds per run-step) is cached in `trainscape-probe.json` next to the
compile cache, keyed by everything that sets a run-step's cost (network, data shape, dtype,
optimizer, loss, batch size, devices, software), so a second sweep of the same shapes does not
probe again.
Chunk sizes only group runs: they never change a run's result (see engine.block_runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from . import __version__, engine, memory

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
    devices = engine.run_devices()
    parts = {
        "model": prep.model_name, "activation": prep.exp.model.activation,
        "parameterization": prep.exp.model.parameterization,
        "x": list(prep.x.shape), "dtypes": sorted({s.dtype for s, _ in prep.groups}),
        "batch": sorted(str(s.batch_size) for s, _ in prep.groups),
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


def _read(f: Path | None) -> dict:
    if f is None:
        return {}
    try:
        d = json.loads(f.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(f: Path | None, key: str, value: float) -> None:
    if f is None:
        return
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        d = _read(f)
        d[key] = value
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(d, indent=1, sort_keys=True))
        os.replace(tmp, f)
    except OSError:
        pass  # a read-only cache folder only costs a probe next time


def probe_seconds_per_run_step(prep) -> tuple[float, bool]:
    """(seconds per run-step on all devices, whether it came from the cache). Times one block
    of runs on every device (the first runs of the first program group; other groups differ
    only in dtype or batch size) for PROBE_STEPS steps, best of two calls after a warm-up
    call, without sharpness (a fixed per-run cost that longer chunks only amortize) and without
    early exit (runs that blow up at once would make every step look free)."""
    key, f = shape_key(prep), cache_file()
    if key is not None:
        hit = _read(f).get(key)
        if isinstance(hit, int | float) and hit > 0:
            return float(hit), True
    st, rows = prep.groups[0]
    steps = min(st.steps, PROBE_STEPS)
    probe = st._replace(steps=steps, record_every=steps, sharpness=False, sharpness_every=0,
                        early_exit=False)
    group = prep.block * len(engine.run_devices())
    rows = np.resize(rows, group)  # a grid smaller than one block repeats its runs

    def once() -> float:
        t0 = time.perf_counter()
        for _ in engine.run_chunks([(probe, np.arange(group))], prep.hparams(rows), prep.x,
                                   prep.y, prep.init_params, group):
            pass
        return time.perf_counter() - t0

    once()  # compile (or load from the persistent cache)
    rate = min(once(), once()) / (group * steps)
    if key is not None:
        _write(f, key, rate)
    return rate, False


def auto_chunk_size(prep, default: int, n_dev: int) -> tuple[int, dict]:
    """Runs per chunk for a sweep without an explicit chunk size: about TARGET_CHUNK_SECONDS of
    compute (from the probe), at least one block per device, at most the whole grid; grids of
    few chunks keep `default`. Returns (size, facts for the timings in meta.json)."""
    n = prep.n_runs
    if n <= PROBE_MIN_CHUNKS * default:
        return default, {"probe": None}
    rate, cached = probe_seconds_per_run_step(prep)
    want = int(TARGET_CHUNK_SECONDS / (rate * prep.static.steps))
    recorded = len(range(0, prep.static.steps, prep.static.record_every)) + 1
    cap = MAX_CHUNK_TABLE_BYTES // memory.host_results_bytes(1, recorded)
    size = engine.plan_chunks(n, max(min(want, cap), 1), n_dev, prep.block)
    return size, {"probe": {"seconds_per_run_step": rate, "cached": cached,
                            "target_chunk_seconds": TARGET_CHUNK_SECONDS}}
