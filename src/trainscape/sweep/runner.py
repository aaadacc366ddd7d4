"""`ts.run`: config -> validated experiment -> data -> run table -> engine -> Results.

Everything that can be wrong with the input is checked before anything is compiled or written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import platform
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..engine import execute, plan
from ..engine.compile import compiler_options
from ..engine.plan import check_memory, fit_dispatch
from ..errors import InputError
from ..io import atomic, memory, store
from ..io.results import META_FILE, Results, atomic_json, load
from ..nn.models import Model
from ..runtime import note_cpu_devices, x64
from ..spec.schema import resolve_config
from . import distributed as parallel
from .prepare import Prepared
from .tables import chunk_tables

DEFAULT_RESULTS_ROOT = Path("results")


@functools.cache
def _package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on, read once per process (the
    package metadata lookups took about 14 ms, on every `ts.run`)."""
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for pkg in ("jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return versions


def environment() -> dict:
    from ..version import __version__

    # trainscape's own version from the code that runs: an editable install's metadata keeps
    # the version it was installed at (stored studies once said 0.2.0 for a 0.4.0 engine), and
    # this version is part of the resume fingerprint
    return {
        "versions": {"trainscape": __version__, **_package_versions()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        # XLA options the training programs were compiled with (they can move the last bits)
        "xla_compiler_options": compiler_options(),
    }


def default_out(name: str, root: Path = DEFAULT_RESULTS_ROOT) -> Path:
    """A new folder under `root`, never an existing one: created here (mkdir fails on an
    existing name, a check would not), so two sweeps started in the same second get two
    folders (`-2`). It is empty until the sweep writes; `drop_if_empty` on the way out of a
    sweep that failed before that."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    p, k = base, 2
    while True:
        try:
            p.mkdir(parents=True)
            return p
        except FileExistsError:
            p = base.with_name(f"{base.name}-{k}")
            k += 1
        except OSError as e:
            raise InputError(f"cannot create the results folder {str(p)!r}: "
                             f"{e.strerror or e}; choose another with --out (out=DIR)") from None


def check_flag(name: str, value) -> None:
    if not isinstance(value, bool | np.bool_):  # "no" would count as True
        raise InputError(f"{name}: expected True or False, got {value!r}")


def drop_if_empty(path: Path) -> None:
    """Remove a `default_out` folder (and `root`, if that is empty too) that nothing was
    written into: bad input leaves nothing behind."""
    for d in (path, path.parent):
        try:
            d.rmdir()  # only ever removes an empty folder
        except OSError:
            return


# ------------------------------------------------------------------ run


@x64
def run(config=None, *, data=None, test_data=None, model: Model | None = None,
        init_params=None,
        chunk_size: int | None = None, out: str | Path | None = "auto", resume: bool = False,
        memory_budget: float | None = None,
        progress: bool = True, overrides: list[str] | None = None,
        table: pd.DataFrame | None = None, chunk_guard=None) -> Results:
    """Train every run of the sweep described by `config` and return its :class:`Results`.

    config: a TOML path, a dict, an Experiment, or None for the built-in `seed-question`.
    data: (x, y) arrays replacing the configured dataset (x: (n, d); y: (n,) or (n, k)).
    test_data: held-out (x, y) arrays, never trained on, evaluated at the recorded steps
        (`test_loss` and `test_accuracy` curves; `[data] holdout` splits the data instead).
    model: a :class:`~trainscape.Model` replacing the built-in MLP.
    init_params: start every run from these parameters instead of drawing them from its seed
        (`init_scale` still multiplies them).
    chunk_size: runs per compiled batch (default: chosen automatically, see docs/guide.md "Large
        grids": 4 blocks per device (128 runs on a CPU) for grids of up to 8 such chunks, else
        sized by a timing probe and the memory budget; balanced so the last chunk is not mostly
        padding). An explicit size is rounded up to whole blocks (32 runs on every CPU device;
        on a GPU or TPU 32 to 4096, by the network's work per step: `plan.block_runs`), as the
        engine dispatches them; a resumed sweep keeps the chunk size it started with.
    out: a results folder to write ("auto": a new folder under ./results/; None: keep
        everything in memory). A folder that already holds results is refused unless `resume`.
    resume: continue an interrupted sweep in `out`, recomputing only missing or corrupt chunks;
        refused (naming the difference) if `out` was written for another config, other data or
        other software versions. A sweep that already finished is returned as it is on disk.

    chunk_guard: a context manager factory entered around each chunk's computation and save
        (default: none). The command line passes `cli.signals.interrupts_deferred`, so that
        Ctrl+C waits for the chunk in progress; the library installs no signal handler.
    table: run these runs instead of the config's grid: a DataFrame with run_id 0..n-1 and a
        column per sweep axis (values used as given; extra columns are kept in the runs
        table). Chunks, store and resume are those of a grid (`sweep.zoom` uses it).

    Bad input, an unwritable `out` and a grid too large for the device are refused with an
    InputError before anything is compiled or written (see docs/reliability.md).
    """
    t_start = time.perf_counter()
    guard = chunk_guard or contextlib.nullcontext
    if memory_budget is not None and not (isinstance(memory_budget, int | float) and
                                          memory_budget > 0):
        raise InputError(f"memory_budget: expected a positive number of bytes, got "
                         f"{memory_budget!r}")
    exp = resolve_config(config, overrides)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int | np.integer) or
                                   chunk_size < 1):
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if out is not None and out != "auto":
        atomic.path_arg(out, "out")
    check_flag("progress", progress)
    check_flag("resume", resume)
    if resume and (out is None or out == "auto"):
        raise InputError("resume=True needs the folder of the interrupted sweep (out=DIR)")
    try:
        prep = Prepared(exp, data=data, model=model, init_params=init_params, table=table,
                        test_data=test_data)
    except MemoryError as e:  # e.g. a generated dataset of 10**12 samples
        why = str(e) or "out of memory"
        raise InputError(f"the data or the grid does not fit in host memory ({why}); "
                         "reduce [data] n_samples or the sweep") from None
    n = prep.n_runs
    note_cpu_devices(plan.run_devices())
    env = environment()
    path = None if out is None or out == "auto" else Path(out)
    # before anything is written/compiled ("auto": the folder is made once the grid is known
    # to fit, on the disk holding the default root)
    check_memory(prep, in_memory=out is None,
                  out=DEFAULT_RESULTS_ROOT if out == "auto" else path, budget=memory_budget)

    if out is None:
        size, probe = _chunk_size(prep, chunk_size, memory_budget)
        parts, timing = _sweep(prep, size, None, progress, chunk_guard=guard)
        return _finish(prep, parts, env, {**timing, **probe}, t_start, None)

    rank, n_proc = parallel.process()
    if n_proc > 1:
        return _run_distributed(prep, env, path, out, chunk_size, memory_budget, resume,
                                progress, t_start, rank, n_proc, guard)
    if out == "auto":
        path = default_out(exp.name)
    try:
        st = store.Store(path, fingerprint(prep, env), n, None, resume)  # refusals only
        probe = {}
        if st.chunk_size is None:  # a new sweep (a resumed one keeps its manifest's chunk size)
            st.chunk_size, probe = _chunk_size(prep, chunk_size, memory_budget)
        with st:
            if st.finished:  # resuming a sweep that already finished: nothing left to compute
                st.finish()
                return load(path)
            _, timing = _sweep(prep, st.chunk_size, st, progress, chunk_guard=guard)
            res = _finish(prep, None, env, {**timing, **probe}, t_start, path)
            _write_final(prep, st, res)
    except BaseException:
        if out == "auto":
            drop_if_empty(path)
        raise
    return res


def _write_final(prep: Prepared, st: store.Store, res: Results) -> None:
    """Every chunk saved: stream them into the final files, write meta.json, mark finished."""
    st.assemble(len(chunk_layout_of(prep, st.chunk_size)))
    atomic_json({**res.meta, "config": res.config.to_dict()}, st.path / META_FILE)
    st.finish()


_DISTRIBUTED_SWEEPS = [0]  # sweeps run so far by this process: keys of the coordinator's store


def _run_distributed(prep, env, path, out, chunk_size, memory_budget, resume, progress,
                     t_start, rank, n_proc, guard) -> Results:
    """One process's part of a sweep shared by `n_proc` processes (see sweep/distributed.py)."""
    _DISTRIBUTED_SWEEPS[0] += 1
    key = f"sweep{_DISTRIBUTED_SWEEPS[0]}"
    fp = fingerprint(prep, env)
    if rank == 0:
        try:
            if out == "auto":  # the others cannot guess process 0's time stamp
                path = default_out(prep.exp.name)
            st = store.Store(path, fp, prep.n_runs, None, resume)
            probe = {}
            if st.chunk_size is None:
                st.chunk_size, probe = _chunk_size(prep, chunk_size, memory_budget)
            st.__enter__()
        except InputError as e:
            if out == "auto" and path is not None:
                drop_if_empty(path)
            parallel.publish(f"{key}/verdict", {"error": str(e).splitlines()[0]})
            raise
        parallel.publish(f"{key}/verdict", {"path": str(path), "finished": st.finished})
    else:
        verdict = parallel.fetch(f"{key}/verdict")
        if "error" in verdict:
            raise InputError(f"{verdict['error']} (reported by process 0)")
        path, probe = Path(verdict["path"]), {}
        st = store.Store(path, fp, prep.n_runs, None, True, process=rank)
        st.__enter__()
    try:
        if not st.finished:
            _, timing = _sweep(prep, st.chunk_size, st, progress, share=(rank, n_proc),
                               chunk_guard=guard)
            parallel.barrier(f"{key}/swept")
            if rank == 0:
                missing = set(range(len(chunk_layout_of(prep, st.chunk_size)))) - st.done_chunks()
                if missing:
                    raise store.WriteError(
                        f"{len(missing)} chunks of {str(path)!r} are missing after every "
                        f"process finished (first: {min(missing)}); resume the sweep")
                res = _finish(prep, None, env, {**timing, **probe, "processes": n_proc},
                              t_start, path)
                _write_final(prep, st, res)
        elif rank == 0:
            st.finish()
        parallel.barrier(f"{key}/finished")  # the folder now reads as one result
    finally:
        st.__exit__(None, None, None)
    return load(path)


# A sweep on disk hands its freed memory back this often (`memory.release_free_memory`):
# after every chunk it cost the memory bench's sweep about 4% of its speed.
RELEASE_EVERY_SECONDS = 10.0

# Build a chunk's tables and save it in a thread of its own while the next chunk computes
# (False: one after the other, for comparison). The host's part of a sweep (tables, Parquet,
# checksums) was 40% of a small network's sweep on a 2-core CPU; see _HostWork.
OVERLAP_HOST_WORK = True

# Write a new sweep's final runs.parquet and curves.parquet as its chunks are saved, instead of
# reading every chunk file back after the last one (`store.Store.stream_final`; False: the
# assembly after the last chunk, as a resumed or distributed sweep always does).
STREAM_FINAL_FILES = True


class _HostWork:
    """What the host does with a computed chunk: its runs and curves tables, and with a store
    the chunk's files and journal record. With OVERLAP_HOST_WORK this runs in one worker
    thread while the main thread computes the next chunk, so the devices do not wait for it.

    At most one chunk is in the worker at a time: `submit` first `settle`s the one before, in
    chunk order. A chunk whose save fails (a full disk, a KeyboardInterrupt raised by a test)
    raises from `settle`, and no later chunk is submitted, so the chunks on disk are still the
    first ones to finish, as without the thread. `close` waits for the chunk in the worker
    even when the main thread is unwinding (Ctrl+C, an error): a computed chunk is saved, not
    dropped; the only wait this adds to a second Ctrl+C is one chunk's save.

    The worker starts on a submitted chunk only at `start`, which the sweep calls once it is
    inside the next chunk's `chunk_guard`. Between two guards the process's own signal
    handlers are back; a worker busy there (holding the GIL) stretched that moment from
    microseconds to milliseconds, and a SIGTERM landing in it ended the command at once
    instead of after the chunk in progress."""

    def __init__(self, prep: Prepared, st: store.Store | None, done):
        self.prep, self.st, self.done = prep, st, done
        self.pool = futures.ThreadPoolExecutor(1, thread_name_prefix="trainscape-host") \
            if OVERLAP_HOST_WORK else None
        self.pending: tuple[execute.ChunkOutput, futures.Future] | None = None
        self.released = time.perf_counter()
        self.go = threading.Event()  # set: the worker may start on the submitted chunk

    def _tables(self, out: execute.ChunkOutput):
        runs, curves = chunk_tables(self.prep, out)
        if self.st is None:
            return runs, curves
        self.st.save_chunk(out.index, runs, curves)
        if time.perf_counter() - self.released > RELEASE_EVERY_SECONDS:
            memory.release_free_memory()
            self.released = time.perf_counter()
        return None  # a stored chunk lives on disk only

    def _when_started(self, out: execute.ChunkOutput):
        self.go.wait()
        return self._tables(out)

    def submit(self, out: execute.ChunkOutput) -> None:
        """Hand `out` to the worker, which begins on it at `start` (the previous chunk settled
        first); without the worker, build and save it now."""
        self.settle()
        if self.pool is None:
            self.done(out, self._tables(out))
        else:
            self.go.clear()
            self.pending = (out, self.pool.submit(self._when_started, out))

    def start(self) -> None:
        self.go.set()

    def settle(self) -> None:
        """Wait for the chunk in the worker; `done(out, tables)` once it is built or saved."""
        if self.pending is not None:
            self.start()
            out, job = self.pending
            self.pending = None
            self.done(out, job.result())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _sweep(prep: Prepared, size: int, st: store.Store | None, progress: bool,
           share: tuple[int, int] = (0, 1), chunk_guard=contextlib.nullcontext):
    """Train every chunk not already saved. In memory (`st` None) every chunk's tables are
    kept and returned; with a store each chunk goes to disk as soon as it is done and only its
    timing stays in memory, so host memory does not grow with the grid. `share` (k, m): only
    the chunks whose number is k modulo m (process k of m in a distributed sweep). A chunk's
    tables are built and saved while the next one computes (`_HostWork`)."""
    layout = chunk_layout_of(prep, size)  # built chunk by chunk: nothing here is per run

    def mine(i: int) -> bool:
        return i % share[1] == share[0]

    n = prep.n_runs if share[1] == 1 else \
        sum(layout.runs_in(i) for i in range(share[0], len(layout), share[1]))
    parts: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}
    saved: set[int] = set()
    if st is not None:
        for i in st.done_chunks():
            # checksums prove a file is intact, this that it holds the runs its number means
            # (a run's position in the grid is its run_id)
            if i < len(layout) and mine(i) and \
                    np.array_equal(st.chunk_run_ids(i), layout[i][1]):
                saved.add(i)
    already = sum(layout.runs_in(i) for i in saved)
    dispatch = fit_dispatch(prep, size)
    timing = {"chunk_size": size, "dispatch_size": dispatch, "chunk_seconds": [],
              "first_chunk_seconds": None, "resumed_runs": already, "computed_runs": 0,
              "run_steps_skipped": 0}
    if saved and progress:
        chunks = f"{len(saved)} chunk{'s' * (len(saved) != 1)}"
        print(f"resuming: {already} of {n} runs are saved ({chunks}), {n - already} to compute",
              file=sys.stderr)
    desc = prep.exp.name + (f" [process {share[0]}/{share[1]}]" if share[1] > 1 else "")
    bar = tqdm(total=n, initial=already, unit="run", desc=desc, disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    # the first chunk waits for its program: compiled (seconds to minutes for deep networks)
    # or loaded from the compile cache; said on the bar so that a long wait does not look hung
    bar.set_postfix_str("compiling or loading the program", refresh=True)

    def done(out: execute.ChunkOutput, tables) -> None:  # a chunk's tables built or saved
        if st is None:
            parts[out.index] = tables
        timing["computed_runs"] += len(out.rows)

    if STREAM_FINAL_FILES and st is not None and not saved and share[1] == 1:
        st.stream_final()  # every chunk computed here, in order: final files written as saved
    host = _HostWork(prep, st, done)
    try:
        for index in range(share[0], len(layout), share[1]):
            if index in saved:
                continue
            static, rows = layout[index]
            with chunk_guard():  # the chunk computed and handed to the host
                host.start()  # the previous chunk's tables and files, beside this one
                out, dispatch = compute_chunk(prep, index, static, rows, dispatch)
                if timing["first_chunk_seconds"] is None:
                    timing["first_chunk_seconds"] = out.seconds
                    bar.set_postfix_str("", refresh=False)
                timing["chunk_seconds"].append(out.seconds)
                timing["run_steps_skipped"] += skipped_run_steps(out.traj, static.steps)
                bar.update(len(rows))  # computed; saved by the host worker a moment later
                host.submit(out)
                del out
        with chunk_guard():
            host.settle()
    finally:
        try:
            host.settle()  # unwinding: the chunk computed last is still saved
        finally:
            host.close()
            bar.close()
    timing["chunk_size_settled"] = dispatch
    return parts, timing


def skipped_run_steps(traj: dict[str, np.ndarray], steps: int) -> int:
    """Run-steps early exit did not compute in a chunk's trajectories: of the `steps` + 1
    evaluations each run's loop makes (the one at `steps` included), those its group skipped
    once all its runs were frozen."""
    return int(np.sum(steps + 1 - traj["steps_computed"].astype(np.int64)))


def _finish(prep, parts, env, timing, t_start, path) -> Results:
    """The Results of a finished sweep: assembled in memory from `parts`, or (path given)
    read lazily from the folder, whose final files `Store.assemble` streams from the chunks."""
    total = time.perf_counter() - t_start
    computed = sum(timing["chunk_seconds"])
    run_steps = timing["computed_runs"] * prep.static.steps  # by this process
    meta = {
        **env,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "data": {"source": prep.data_source, "n_samples": int(prep.x.shape[0]),
                 "n_features": int(prep.x.shape[1]), "task": prep.task,
                 "standardized": bool(prep.exp.data.standardize), **held_out_facts(prep)},
        "model": prep.model_name,
        # the parameters learning_rate.K (K = 0, 1, ...) trains, by name and shape
        "learning_rate_entries": {f"learning_rate.{k}": name
                                  for k, name in enumerate(prep.entry_names)},
        # what the compiled matmuls used: the config's choice, else JAX's global setting
        "matmul_precision": (prep.exp.train.matmul_precision
                             if prep.exp.train.matmul_precision != "default"
                             else env["matmul_precision"]),
        "engine": engine_facts(prep),
        "timings": {
            **{k: v for k, v in timing.items() if k != "chunk_seconds"},
            "n_chunks": len(timing["chunk_seconds"]),
            "compute_seconds": computed,
            "total_seconds": total,
            "run_steps_per_second": run_steps / computed if computed > 0 else None,
            "peak_host_memory_bytes": memory.peak_rss_bytes(),
        },
    }
    if path is not None:
        return Results(config=prep.exp, meta=meta, path=path)
    keys = sorted(parts)
    runs = pd.concat([parts[k][0] for k in keys], ignore_index=True)
    curves = pd.concat([parts[k][1] for k in keys], ignore_index=True)
    runs = runs.sort_values("run_id", kind="stable").reset_index(drop=True)
    if len(prep.groups) > 1:  # chunks of several programs arrive grouped, not in run order
        curves = curves.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    return Results(runs=runs, curves=curves, config=prep.exp, meta=meta, path=None)


def held_out_facts(prep: Prepared) -> dict:
    """meta.json's record of the held-out rows: which rows of the dataset `[data] holdout`
    held out (positions in the dataset's row order, as `ts.load_dataset` returns it), or how
    many the caller's `test_data` had; nothing without held-out data."""
    if prep.test_rows is not None:
        return {"holdout": {"fraction": prep.exp.data.holdout, "seed": prep.exp.data.data_seed,
                            "n_test": len(prep.test_rows),
                            "test_rows": [int(i) for i in prep.test_rows]}}
    if prep.x_test is not None:
        return {"test_data": {"source": "caller arrays", "n_samples": int(prep.x_test.shape[0])}}
    return {}


def engine_facts(prep: Prepared) -> dict:
    """How the engine ran each program: runs per device in a block, how many of them were
    trained together (`plan.sub_batch`) and the layout of the built-in MLP's activations."""
    platform = plan.run_devices()[0].platform
    programs = []
    for (st, _), sizes in zip(prep.groups, prep.group_sizes, strict=True):
        programs.append({
            "dtype": st.dtype, "batch_size": st.batch_size,
            **({"sizes": list(sizes)} if len(prep.shapes) > 1 else {}),
            "runs_trained_together": plan.sub_batch(st, prep.x, platform),
            "layout": ("custom model" if prep.custom_model else
                       "features" if plan.shares_data(st, prep.x) else "samples"),
        })
    return {"block_runs_per_device": prep.block, "programs": programs,
            # whether a group of runs stops computing once all are frozen ([train] early_exit)
            "early_exit": prep.exp.train.early_exit,
            # recorded blocks per iteration of the early-exit loop (`plan.loop_unroll`)
            "loop_unroll": plan.loop_unroll(platform)}


# ------------------------------------------------------------------ reliability helpers


def fingerprint(prep: Prepared, env: dict) -> dict:
    """What a resumed sweep must share with the interrupted one: config, data, model, and the
    software and backend, since another XLA may round differently and a resumed table must
    equal an uninterrupted one bit for bit."""
    v = env["versions"]
    soft = {k: v.get(k) for k in ("trainscape", "jax", "jaxlib")}
    return {**prep.fingerprint(), "software": {**soft, "backend": env["backend"]}}


def chunk_layout_of(prep: Prepared, size: int) -> plan.ChunkLayout:
    """(static, run-table rows) of every chunk, numbered as in `execute.run_chunks`."""
    return plan.chunk_layout(prep.groups, size)


def compute_chunk(prep: Prepared, index: int, static, rows: np.ndarray, dispatch: int):
    """One chunk, `dispatch` runs at a time. On an allocation failure the dispatch is halved
    (whole blocks, at least one) and the chunk retried; its number and rows never change, so
    the chunks already saved stay valid. Returns the chunk and the dispatch size that worked."""
    block = prep.block
    group = block * len(plan.run_devices())
    t0 = time.perf_counter()
    while True:
        try:
            parts = [o.traj for o in execute.run_chunks(
                [(static, np.arange(len(rows)))], prep.hparams(rows), prep.x, prep.y,
                prep.init_params, dispatch, test=prep.test)]
            break
        except Exception as e:  # noqa: BLE001 - only allocation failures are retried
            if not memory.is_allocation_error(e):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if dispatch <= group:
                raise memory.OutOfMemory(
                    f"chunk {index} ran out of memory even at {dispatch} runs at a time "
                    f"({block} per device): {first}; reduce [data] n_samples, "
                    "[model] hidden or the recorded steps ([train] record_every)") from None
            dispatch = max(group, dispatch // group // 2 * group)
            print(f"trainscape: out of memory in chunk {index} ({first}); retrying "
                  f"{dispatch} runs at a time", file=sys.stderr)
    traj = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = execute.ChunkOutput(index, int(rows[0]), int(rows[-1]) + 1, traj,
                             time.perf_counter() - t0, rows=rows)
    return out, dispatch


def _chunk_size(prep: Prepared, chunk_size: int | None, budget: float | None):
    """`plan.choose_chunk_size`, its timing probe run by the engine."""
    return plan.choose_chunk_size(prep, chunk_size, budget,
                                  probe=lambda: execute.probe_seconds_per_run_step(prep))
