"""Large grids: the run table computed per chunk, results streamed to disk, lazy Results,
automatic chunk size (probe, cache, caps)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from configs import SCALE_TINY as TINY

import trainscape as ts
from trainscape.engine import execute, plan
from trainscape.io import store
from trainscape.spec import grid
from trainscape.sweep import prepare, runner


def tiny(n_seeds: int = 8, **sweep) -> dict:
    return {**TINY, "sweep": {**TINY["sweep"], "seed": {"range": n_seeds}, **sweep}}


def test_grid_rows_are_the_cartesian_product_in_config_order():
    exp = ts.parse({**TINY, "optimizer": {"name": "momentum"},
                    "sweep": {"learning_rate": [0.1, 0.2, 0.3], "seed": {"range": 4},
                              "momentum": [0.0, 0.5]}})
    want = list(itertools.product([0.1, 0.2, 0.3], range(4), [0.0, 0.5]))
    table = grid.expand(exp)
    assert [tuple(r) for r in table[["learning_rate", "seed", "momentum"]]
            .itertuples(index=False)] == want
    assert table["run_id"].tolist() == list(range(24))
    pos = np.array([23, 0, 7, 11])
    sub = grid.rows(exp, pos)
    assert sub["run_id"].tolist() == pos.tolist()
    assert [tuple(r) for r in sub[["learning_rate", "seed", "momentum"]]
            .itertuples(index=False)] == [want[i] for i in pos]
    np.testing.assert_array_equal(grid.axis_positions(exp, "momentum", 0.5),
                                  [i for i, w in enumerate(want) if w[2] == 0.5])


def test_grid_columns_keep_their_axis_types():
    """Integer axes (seed, batch_size, width, depth) are int64 columns, the others float64,
    dtype strings; each value as the config lists it."""
    exp = ts.parse({**TINY, "model": {"hidden": [4]},
                    "sweep": {"seed": [3, 1], "batch_size": [8], "width": [2, 4],
                              "depth": [1, 3], "learning_rate": [0.5],
                              "dtype": ["float32", "float64"]}})
    table = grid.expand(exp)
    want = list(itertools.product([3, 1], [8], [2, 4], [1, 3], [0.5], ["float32", "float64"]))
    assert [tuple(r) for r in table[list(exp.sweep)].itertuples(index=False)] == want
    for col in ("seed", "batch_size", "width", "depth"):
        assert table[col].dtype == np.int64, col
    assert table["learning_rate"].dtype == np.float64


def test_group_positions_index_like_the_array_they_stand_for():
    """A lazy `Positions` answers p[k] (negative k from the end, out of range refused),
    slices and index arrays as the int64 array of its positions does."""
    exp = ts.parse({**TINY, "optimizer": {"name": "momentum"},
                    "sweep": {"learning_rate": [0.1, 0.2, 0.3], "seed": {"range": 4},
                              "momentum": [0.0, 0.5]}})
    p = grid.group_positions(exp, {"seed": 2})
    want = [i for i, (_, s, _) in enumerate(
        itertools.product(range(3), range(4), range(2))) if s == 2]
    assert want == [4, 5, 12, 13, 20, 21] and len(p) == 6
    assert [p[k] for k in range(-6, 6)] == want + want
    assert p[1:5:2].tolist() == want[1:5:2] and p[np.array([5, 0])].tolist() == [21, 4]
    for k in (6, -7):
        with pytest.raises(IndexError):
            p[k]


def test_disk_sweep_streams_and_equals_in_memory(tmp_path, monkeypatch):
    cfg = tiny()
    mem = ts.run(cfg, out=None, progress=False, chunk_size=plan.BLOCK * 2)

    def no_concat(*a, **k):  # a sweep written to disk never assembles its tables in memory
        raise AssertionError("pd.concat of chunk tables")

    monkeypatch.setattr(runner.pd, "concat", no_concat)
    res = ts.run(cfg, out=tmp_path / "r", progress=False, chunk_size=plan.BLOCK * 2)
    monkeypatch.undo()
    assert res._runs is None and res._curves is None  # lazy until used
    pd.testing.assert_frame_equal(res.runs, mem.runs, check_exact=True)
    pd.testing.assert_frame_equal(res.curves, mem.curves, check_exact=True)
    assert not (tmp_path / "r" / "chunks").exists()
    f = pq.ParquetFile(tmp_path / "r" / "curves.parquet")
    assert f.metadata.num_rows == len(mem.curves)


def test_cell_counts_stream_the_folder_and_the_heatmap_never_loads_runs(tmp_path,
                                                                        monkeypatch):
    from trainscape.io import results
    from trainscape.viz import summary

    cfg = tiny(n_seeds=4, dtype=["float64", "float32"])  # a categorical axis, not sorted
    res = ts.run(cfg, out=tmp_path / "r", progress=False)
    monkeypatch.setattr(results.Results, "read_runs",
                        lambda *a, **k: pytest.fail("the heatmap read the runs table"))
    batches = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *a, **k):
        batches.append(k.get("batch_size"))
        return real(self, *a, **k)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    counts = res.cell_counts(["learning_rate", "dtype"])
    assert summary.write_figures(res, tmp_path) == [tmp_path / "heatmap.png"]
    monkeypatch.undo()
    assert batches and all(b is not None for b in batches)  # streamed, not read whole
    runs = pd.read_parquet(tmp_path / "r" / "runs.parquet")
    want = runs.groupby(["learning_rate", "dtype", "label"]).size()
    got = counts.set_index(["learning_rate", "dtype", "label"])["runs"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    assert counts["runs"].sum() == res.n_runs
    assert list(pd.unique(counts["dtype"])) == ["float64", "float32"]
    # an axis with more values than the figure has rows of pixels is aggregated into a strip
    seen = []
    real_counts = results.Results.cell_counts
    monkeypatch.setattr(results.Results, "cell_counts",
                        lambda self, by: seen.append(by) or real_counts(self, by))
    monkeypatch.setattr(summary, "MAX_HEATMAP_ROWS", 1)  # dtype (2 values) is the y axis
    summary.write_figures(res, tmp_path)
    monkeypatch.undo()
    assert seen == [["learning_rate"]]


def test_static_axis_sweep_on_disk_reads_back_in_run_order(tmp_path):
    cfg = tiny(n_seeds=4, dtype=["float32", "float64"])
    mem = ts.run(cfg, out=None, progress=False)
    res = ts.run(cfg, out=tmp_path / "r", progress=False, chunk_size=plan.BLOCK * 2)
    raw = pd.read_parquet(tmp_path / "r" / "runs.parquet")
    assert not raw["run_id"].is_monotonic_increasing  # written group by group...
    loaded = ts.load(tmp_path / "r")
    # ...read back in run order
    pd.testing.assert_frame_equal(loaded.runs, mem.runs, check_exact=True)
    pd.testing.assert_frame_equal(loaded.curves, mem.curves, check_exact=True)
    assert res.n_runs == len(mem.runs)


def test_save_refuses_the_lock_and_chunks_of_a_sweep_killed_at_its_start(tmp_path):
    """A folder holding only a killed sweep's lock and chunk folder counts as new to a sweep,
    but Results.save takes only an empty folder: its files would make an unfinished one."""
    from trainscape.io.results import Results

    res = Results(runs=pd.DataFrame({"run_id": [0], "label": ["converged"]}),
                  curves=pd.DataFrame({"run_id": [0], "step": [0], "loss": [1.0]}),
                  config=ts.parse({}))
    d = tmp_path / "r"
    (d / "chunks").mkdir(parents=True)
    (d / ".lock").write_text("{}")
    with pytest.raises(ts.InputError, match="is not empty"):
        res.save(d)
    assert sorted(p.name for p in d.iterdir()) == [".lock", "chunks"]
    assert res.save(tmp_path / "new") == tmp_path / "new"


def test_in_memory_results_read_the_curves_of_the_runs_asked_for():
    from trainscape.io.results import Results

    curves = pd.DataFrame({"run_id": [0, 0, 1, 1, 2], "step": [0, 1, 0, 1, 0],
                           "loss": [1.0, 0.5, 2.0, 1.5, 3.0]})
    res = Results(runs=pd.DataFrame({"run_id": [0, 1, 2], "label": ["converged"] * 3}),
                  curves=curves, config=ts.parse({}))
    assert res.read_curves([2, 0])["loss"].tolist() == [1.0, 0.5, 3.0]
    assert res.read_curves(np.array([1]), columns=["loss"])["loss"].tolist() == [2.0, 1.5]


def test_lazy_results_read_subsets(tmp_path):
    ts.run(tiny(), out=tmp_path / "r", progress=False)
    res = ts.load(tmp_path / "r")
    full = pd.read_parquet(tmp_path / "r" / "runs.parquet")
    counts = res.label_counts("learning_rate")
    assert res._runs is None  # counted from two columns, the runs table never loaded
    pd.testing.assert_frame_equal(counts, ts.label_counts(full, "learning_rate"))
    sub = res.read_runs(["learning_rate", "label"])
    assert list(sub.columns) == ["learning_rate", "label"] and len(sub) == len(full)
    assert (sub["label"].astype(str).to_numpy() == full["label"].to_numpy()).all()
    ids = full["run_id"].to_numpy()[[3, 40, 77]]
    curves = pd.read_parquet(tmp_path / "r" / "curves.parquet")
    want = curves[curves["run_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(res.read_curves(ids), want)


def _peak_traced(cfg, out, chunk):
    tracemalloc.start()
    try:
        ts.run(cfg, out=out, progress=False, chunk_size=chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_peak_host_memory_does_not_grow_with_the_grid(tmp_path, monkeypatch):
    """Python/NumPy/pandas allocations (tracemalloc) of a sweep 16x larger, same chunk size:
    assembling every curve in memory would make the peak grow ~16x; streaming keeps it flat.
    60 steps, so the large sweep's curves (12 MB) dwarf one chunk's working set (about 1.5 MB).
    Both sweeps have at least two chunks, since a chunk is saved while the next one computes
    (two chunks' tables at once, where a one-chunk sweep has one). The final files' row groups
    are cut at one chunk's runs (256 rows): a new sweep's final files are written as its
    chunks are saved, holding the tables of up to a row group (store.ROW_GROUP rows of runs
    and of curves, a constant: about 12 MB at the default 65,536) that the small sweep here
    would never fill, so that the large one's peak would grow until it had filled them."""
    monkeypatch.setattr(runner.store, "ROW_GROUP", 256)
    chunk = plan.BLOCK * 2 * 4

    def cfg(n_seeds):
        return {**tiny(n_seeds=n_seeds), "train": {"steps": 60, "record_every": 1}}

    ts.run(cfg(16), out=None, progress=False, chunk_size=chunk)  # compile outside
    small = _peak_traced(cfg(32), tmp_path / "a", chunk)  # 512 runs, two chunks
    # 8192 runs, 32 chunks; the smaller of two sweeps, because a one-off interpreter
    # allocation can land in either (in the full suite: a 7.7 MB resize of Python's table of
    # interned strings, triggered by a pathlib call in the middle of the sweep)
    large = min(_peak_traced(cfg(512), tmp_path / b, chunk) for b in ("b", "c"))
    curves_large = 8192 * 61 * 8 * 3  # bytes of the large sweep's run_id/step/loss columns
    assert large < 1.5 * small, (small, large)
    assert large < curves_large / 3  # it never held its curves at once


def _probe(prep):
    """The probe a sweep gives the planner (sweep.runner): the engine timing a block."""
    return lambda: execute.probe_seconds_per_run_step(prep)


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_auto_chunk_size_probe_cache_and_caps(tmp_path, monkeypatch):
    cache = tmp_path / "probe.json"
    monkeypatch.setattr(plan, "cache_file", lambda: cache)
    prep = prepare.Prepared(ts.parse(tiny(n_seeds=512)))  # 8192 runs
    default = plan.plan_chunks(prep.n_runs, None, len(plan.run_devices()))
    calls = []
    real = execute.run_chunks

    def counting(*a, **k):
        calls.append(1)
        yield from real(*a, **k)

    monkeypatch.setattr(execute, "run_chunks", counting)
    size, facts = plan.auto_chunk_size(prep, default, len(plan.run_devices()), _probe(prep))
    assert facts["probe"]["cached"] is False and calls
    rate = facts["probe"]["seconds_per_run_step"]
    assert json.loads(cache.read_text()) == {plan.shape_key(prep): rate}
    group = plan.BLOCK * len(plan.run_devices())
    assert size % group == 0 and group <= size <= -(-prep.n_runs // group) * group
    calls.clear()
    size2, facts2 = plan.auto_chunk_size(prep, default, len(plan.run_devices()), _probe(prep))
    assert facts2["probe"]["cached"] is True and not calls and size2 == size
    # the cap on a chunk's host tables: a tiny cap forces the smallest chunk
    monkeypatch.setattr(plan, "MAX_CHUNK_TABLE_BYTES", 1)
    assert plan.auto_chunk_size(prep, default, len(plan.run_devices()), _probe(prep))[0] == group
    # a grid of a few default chunks is not probed
    few = prepare.Prepared(ts.parse(tiny(n_seeds=2)))
    assert plan.auto_chunk_size(few, 64, 1, _probe(few)) == (64, {"probe": None})


def test_probe_cache_key_changes_with_the_engine_version(monkeypatch):
    """A probe timed by another engine version is not reused: 0.6.0 runs the same shapes
    at another speed, and a stale rate would size chunks for the old one."""
    prep = prepare.Prepared(ts.parse(tiny(n_seeds=2)))
    key = plan.shape_key(prep)
    monkeypatch.setattr(plan, "__version__", "0.0.1")
    assert plan.shape_key(prep) != key


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_auto_chunk_size_targets_the_chunk_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "probe_seconds_per_run_step", lambda prep: (1e-6, True))
    prep = prepare.Prepared(ts.parse(tiny(n_seeds=4096)))  # 65536 runs x 6 steps
    n_dev = len(plan.run_devices())
    group = plan.BLOCK * n_dev
    size, _ = plan.auto_chunk_size(prep, group, n_dev, _probe(prep))
    want = plan.TARGET_CHUNK_SECONDS / (1e-6 * 6)  # runs in 10 s at 1 us per run-step
    cap = plan.MAX_CHUNK_TABLE_BYTES // runner.memory.host_results_bytes(1, 7)
    limit = min(want, cap)
    assert limit / 2 <= size <= limit + 2 * group


def test_disk_check_refuses_a_grid_larger_than_the_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.memory, "disk_free_bytes", lambda p: 1000)
    with pytest.raises(ts.InputError, match="on disk"):
        ts.run(tiny(), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_store_assemble_casts_a_chunk_with_another_schema(tmp_path):
    """A chunk whose nullable column is all null still joins the final file's schema."""
    s = store.Store(tmp_path / "r", {"x": 1}, 4, 2, False)
    with s:
        a = pd.DataFrame({"run_id": [0, 1], "v": pd.array([1, None], dtype="Int64")})
        b = pd.DataFrame({"run_id": [2, 3], "v": pd.array([None, None], dtype="Int64")})
        c = pd.DataFrame({"run_id": [0], "step": [0], "loss": [1.0]})
        s.save_chunk(0, a, c)
        s.save_chunk(1, b, c.assign(run_id=2))
        s.assemble(2)
    got = pd.read_parquet(tmp_path / "r" / "runs.parquet")
    pd.testing.assert_frame_equal(got, pd.concat([a, b], ignore_index=True))


CACHE_SCRIPT = """
import json, sys
import jax
import trainscape as ts
ts.configure()
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == '/jax/compilation_cache/cache_hits' else None)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)  # the tiny program counts
ts.run(json.loads(sys.argv[1]), out=None, progress=False)
print('HITS', len(hits), jax.config.jax_compilation_cache_dir)
"""


def test_persistent_compile_cache_is_hit_by_a_second_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRAINSCAPE_NO_CACHE"}
    env["TRAINSCAPE_CACHE_DIR"] = str(tmp_path / "cache")
    cfg = json.dumps(tiny(n_seeds=2))

    def hits():
        p = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, cfg], env=env,
                           capture_output=True, text=True, timeout=300, check=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("HITS")][-1].split()
        assert line[2] == str(tmp_path / "cache")
        return int(line[1])

    assert hits() == 0  # empty cache: everything compiled, and written
    assert any((tmp_path / "cache").iterdir())
    assert hits() >= 1  # the second process loads the sweep's program from disk


def test_a_kill_during_assembly_is_finished_by_resume_without_compute(tmp_path, monkeypatch):
    out = tmp_path / "r"
    cfg = tiny()
    real = store.Store.assemble

    def dies_halfway(self, n_chunks):
        (self.path / "runs.parquet.tmp").write_bytes(b"PAR1 cut short")
        raise KeyboardInterrupt

    monkeypatch.setattr(store.Store, "assemble", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ts.run(cfg, out=out, progress=False, chunk_size=plan.BLOCK * 2)
    monkeypatch.setattr(store.Store, "assemble", real)
    assert store.folder_state(out) == "interrupted"
    computed = []
    monkeypatch.setattr(runner, "compute_chunk", lambda *a, **k: computed.append(1))
    res = ts.run(cfg, out=out, progress=False, resume=True)
    monkeypatch.undo()
    assert not computed and res.meta["timings"]["resumed_runs"] == 128
    mem = ts.run(cfg, out=None, progress=False)
    pd.testing.assert_frame_equal(ts.load(out).runs, mem.runs, check_exact=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.parquet", "manifest.json", "meta.json", "runs.parquet"]


def test_blocks_dispatched_a_few_at_a_time_give_the_same_bits(monkeypatch):
    """A chunk's blocks are copied back while later ones are still being dispatched
    (execute.MAX_IN_FLIGHT): whatever the limit, every run's outputs are the same bits, in run
    order, with the padding of the last block dropped."""
    prep = prepare.Prepared(ts.parse(tiny(n_seeds=20)))  # 320 runs: 5 blocks of 64, the last short
    rows = np.arange(300)

    def chunk(limit: int) -> dict:
        monkeypatch.setattr(execute, "MAX_IN_FLIGHT", limit)
        (out,) = execute.run_chunks([(prep.static, rows)], prep.hp, prep.x, prep.y,
                                   chunk_size=len(rows))
        return out.traj

    whole, one = chunk(10**9), chunk(1)
    assert set(whole) == set(one)
    for k in whole:
        assert whole[k].shape[0] == len(rows), k
        np.testing.assert_array_equal(one[k], whole[k], err_msg=k)
    # each run trained alone (its own padded block) is the same run inside the chunk: the
    # outputs are in run order, first and last blocks included
    for i in (0, 63, 64, 200, 256, 270, 299):
        (alone,) = execute.run_chunks([(prep.static, rows[i:i + 1])], prep.hp, prep.x, prep.y,
                                     chunk_size=1)
        for k in whole:
            np.testing.assert_array_equal(alone.traj[k][0], one[k][i], err_msg=f"{k} run {i}")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_free_memory_hands_freed_heap_back():
    """Blocks freed in the middle of the heap stay resident (the heap's top is still in use)
    until memory.release_free_memory hands them back."""
    from trainscape.io import memory

    blocks = [bytearray(64 << 10) for _ in range(3200)]  # 200 MiB of heap, under the mmap cut
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    keep = blocks[-1]
    del blocks  # all but the last: nothing can be trimmed from the top
    before = _rss_bytes()
    memory.release_free_memory()
    after = _rss_bytes()
    assert before - after > 100 << 20, (before >> 20, after >> 20)
    assert len(keep) == 64 << 10


def test_configure_picks_the_system_allocator_for_arrow_unless_told():
    code = ("import trainscape, pyarrow as pa; trainscape.configure(); "
            "print(pa.default_memory_pool().backend_name)")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == "system"
    env["ARROW_DEFAULT_MEMORY_POOL"] = "mimalloc"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == "mimalloc"


def test_the_command_writes_parquet_with_the_c_librarys_allocator(tmp_path):
    """Parquet's writer allocates from Arrow's C++ default pool, fixed when pyarrow loads, so
    `configure()` comes too late for it: the command's process chooses the pool before the
    package loads pyarrow (trainscape/_command_process.py). mimalloc, asked to report on
    exit (MIMALLOC_SHOW_STATS), says nothing when it was never used; a pool the user chose
    still wins."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('name = "t"\n[data]\nname = "moons"\nn_samples = 32\n[model]\nhidden = [3]\n'
                   '[train]\nsteps = 3\n[sweep]\nlearning_rate = [0.1, 1.0]\n')
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["MIMALLOC_SHOW_STATS"] = "1"

    def mimalloc_report(out: str, **extra) -> bool:
        proc = subprocess.run([sys.executable, "-m", "trainscape", "run", str(cfg), "--out",
                               str(tmp_path / out), "--no-plot", "--no-progress"],
                              env={**env, **extra}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (tmp_path / out / "runs.parquet").is_file()
        return "peak commit:" in proc.stdout + proc.stderr  # the last line of its report

    assert not mimalloc_report("default")
    assert mimalloc_report("chosen", ARROW_DEFAULT_MEMORY_POOL="mimalloc")
