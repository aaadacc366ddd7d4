"""Hardening: a full disk or failing writes at each point of a sweep, readers of a folder still
being written, and grids and data too large to build, refused before they are built.

The disk is a real small file system: a tmpfs mounted per test (the tests run as root; they
skip, saying why, where mounting is not allowed), filled with a ballast file so that the
sweep's writes run out of space at the chosen point. Every in-process sweep has the same
static shapes (moons 64 x 2, hidden [4], 2 steps), so the module compiles one program.
"""

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from configs import chunk_unit

import trainscape as ts
from trainscape.cli.main import main
from trainscape.engine import plan
from trainscape.errors import DataError, InputError
from trainscape.io import atomic, memory, store
from trainscape.spec import grid
from trainscape.spec import schema as cfg
from trainscape.sweep import prepare, runner

STATIC = """
[data]
name = "moons"
n_samples = 64
[model]
hidden = [4]
[train]
steps = 2
"""
# 4 chunks of a block on each device: 256 runs in chunks of 64 on the suite's two CPU devices
CHUNK, N_CHUNKS = chunk_unit(tomllib.loads(STATIC)), 4
N_RUNS = N_CHUNKS * CHUNK
SWEEP = 'name = "small"\n' + STATIC + f"""
[sweep]
learning_rate = {{geomspace = [0.01, 20.0], num = 32}}
seed = {{range = {N_RUNS // 32}}}
"""
PAGE = 4096


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _used(fs: Path) -> int:
    st = os.statvfs(fs)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@contextlib.contextmanager
def _tmpfs(where: Path, size: int):
    """A tmpfs of `size` bytes at `where`, unmounted on the way out."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small file system here: {r.stderr.strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(fs: Path, leave: int) -> Path:
    """Write a ballast file that leaves exactly `leave` bytes (whole pages) free on `fs`."""
    ballast = fs / "ballast"
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    assert free >= leave, "the file system is smaller than the point needs"
    with open(ballast, "ab") as f:
        f.write(b"\0" * (free - leave))
    assert os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize == leave
    return ballast


def _run(cfg_path, out, *extra) -> int:
    return main(["run", str(cfg_path), "--out", str(out), "--chunk-size", str(CHUNK),
                 "--no-progress", "--no-plot", *extra])


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("trainscape: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _check_nothing_half_written(out: Path) -> set[int]:
    """No temporary file, and every chunk the journal records matches its checksum (so
    --resume trusts exactly those). Returns their indices."""
    leftovers = [p.name for p in out.rglob("*.tmp")]
    assert not leftovers, leftovers
    st = store.Store.__new__(store.Store)  # its reading half only: no lock, no checks
    st.path = out
    recorded = set(st._read_journal())
    assert st.done_chunks() == recorded  # every recorded chunk is intact and verifiable
    return recorded


def _same_tables(out: Path, ref: Path) -> None:
    for name in ("runs.parquet", "curves.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(ref / name),
                                      check_exact=True)


@pytest.fixture(scope="module")
def sweep_cfg(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("cfg") / "small.toml", SWEEP)


def _measure(sweep_cfg, root: Path, streamed: bool):
    """The uninterrupted sweep (on a roomy tmpfs, copied out) and the space used on its file
    system after each write: chunk k saved (with `streamed`, the final files' growth from
    chunk k included), each final file renamed into place."""
    marks: dict[str, int] = {}
    with _tmpfs(root / "fs", 64 << 20) as fs, pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "STREAM_FINAL_FILES", streamed)
        real_save, real_replace = store.Store.save_chunk, atomic.fsync_replace

        def save(self, index, *a, **k):
            real_save(self, index, *a, **k)
            marks[f"chunk{index}"] = _used(fs)

        def replace(tmp, final):
            real_replace(tmp, final)
            marks[Path(final).name] = _used(fs)

        mp.setattr(store.Store, "save_chunk", save)
        mp.setattr(store, "ROW_GROUP", 16)  # the final files in many row groups: streamed
        mp.setattr(atomic, "fsync_replace", replace)
        assert _run(sweep_cfg, fs / "out") == 0
        ref = root / "ref"
        ref.mkdir()
        for name in ("runs.parquet", "curves.parquet"):
            (ref / name).write_bytes((fs / "out" / name).read_bytes())
    return ref, marks


@pytest.fixture(scope="module")
def measured(sweep_cfg, tmp_path_factory):
    """A new sweep's writes: its final files streamed as the chunks are saved."""
    return _measure(sweep_cfg, tmp_path_factory.mktemp("measure"), streamed=True)


@pytest.fixture(scope="module")
def measured_assembled(sweep_cfg, tmp_path_factory):
    """The writes when the final files are assembled from the chunk files after the last
    chunk, as for a resumed sweep (`runner.STREAM_FINAL_FILES` off)."""
    return _measure(sweep_cfg, tmp_path_factory.mktemp("assembled"), streamed=False)


def _assembled(monkeypatch) -> None:
    """This test's sweeps assemble the final files from the chunk files, as a resumed
    sweep does."""
    monkeypatch.setattr(runner, "STREAM_FINAL_FILES", False)


# ----------------------------------------------------------------- disk full, write errors


def _fail_then_resume(sweep_cfg, ref, out, capsys, fix) -> str:
    """The sweep in `out` must stop with exit 1 and one error line, leave nothing half
    written; after `fix()` a --resume must give the uninterrupted tables. Returns the line."""
    assert _run(sweep_cfg, out) == 1
    line = _error_line(capsys.readouterr().err)
    _check_nothing_half_written(out)
    fix()
    assert _run(sweep_cfg, out, "--resume") == 0
    _same_tables(out, ref)
    return line


def test_disk_full_mid_chunk_stops_with_one_line_and_resumes(sweep_cfg, measured, tmp_path,
                                                             capsys):
    ref, marks = measured
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        # room for the manifest and chunks 0 and 1, and one page of chunk 2's two files
        ballast = _fill(fs, marks["chunk1"] + PAGE)
        out = fs / "out"
        line = _fail_then_resume(sweep_cfg, ref, out, capsys, ballast.unlink)
    # chunk 2 (with the CPU's chunks; with a GPU's larger ones the final files' stream may
    # leave the room chunk 2 needs, and chunk 3 is the one that fails)
    k = int(re.search(r"chunk (\d+) not saved", line).group(1))
    assert k in (2, 3) and (k == 2 or plan.BLOCK < CHUNK // len(plan.run_devices())), line
    assert "No space left on device" in line and "needs " in line and "free" in line
    assert f"-{k:06d}.parquet" in line  # the file it was writing


def test_disk_full_while_the_final_curves_are_assembled(sweep_cfg, measured_assembled,
                                                         tmp_path, capsys, monkeypatch):
    ref, marks = measured_assembled
    _assembled(monkeypatch)
    monkeypatch.setattr(store, "ROW_GROUP", 16)  # as measured: many row groups, a stream
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        # every chunk and runs.parquet fit; curves.parquet (more than a page) does not
        room = marks["runs.parquet"] + PAGE
        assert marks["curves.parquet"] - marks["runs.parquet"] > PAGE
        ballast = _fill(fs, room)
        out = fs / "out"
        assert _run(sweep_cfg, out) == 1
        line = _error_line(capsys.readouterr().err)
        assert "curves.parquet" in line and "No space left on device" in line, line
        assert _check_nothing_half_written(out) == set(range(N_CHUNKS))
        with pytest.raises(InputError,
                           match=f"did not finish .4 of 4 chunks saved, 0 of {N_RUNS:,}"):
            ts.load(out)  # not a half-finished table: a refusal naming what is missing
        ballast.unlink()
        assert _run(sweep_cfg, out, "--resume") == 0
        assert "recomputing" not in capsys.readouterr().err  # the chunks were all kept
        _same_tables(out, ref)


def test_disk_full_while_the_final_runs_table_is_assembled(sweep_cfg, measured_assembled,
                                                           tmp_path, capsys, monkeypatch):
    ref, marks = measured_assembled
    _assembled(monkeypatch)
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        ballast = _fill(fs, marks[f"chunk{N_CHUNKS - 1}"])  # no page left for runs.parquet
        line = _fail_then_resume(sweep_cfg, ref, fs / "out", capsys, ballast.unlink)
    assert "runs.parquet" in line and "No space left on device" in line


def test_disk_full_while_the_final_files_are_streamed(sweep_cfg, measured, tmp_path,
                                                      capsys, monkeypatch):
    """A page short of the sweep's peak: every chunk is saved and streamed into the final
    files, whose last writes (the footers) then meet the full disk. The stream is dropped, the
    assembly from the chunk files runs out of space in turn, at curves.parquet, and the sweep
    stops with that one line; nothing is half written, all chunks are kept, and a resume
    assembles the uninterrupted tables without computing."""
    ref, marks = measured
    monkeypatch.setattr(store, "ROW_GROUP", 16)  # as measured
    real_finish, finished = store._FinalStream.finish, []
    monkeypatch.setattr(store._FinalStream, "finish",
                        lambda self, n: finished.append(n) or real_finish(self, n))
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        ballast = _fill(fs, marks["curves.parquet"] - PAGE)
        out = fs / "out"
        assert _run(sweep_cfg, out) == 1
        line = _error_line(capsys.readouterr().err)
        assert finished == [N_CHUNKS]  # the stream held every chunk when it failed
        assert "curves.parquet" in line and "No space left on device" in line, line
        assert _check_nothing_half_written(out) == set(range(N_CHUNKS))
        ballast.unlink()
        assert _run(sweep_cfg, out, "--resume") == 0
        assert "recomputing" not in capsys.readouterr().err
        _same_tables(out, ref)


def test_a_failed_stream_falls_back_to_the_chunk_files(sweep_cfg, measured, tmp_path,
                                                       monkeypatch):
    """The final files' stream fails at its second chunk (as on a full disk): the sweep goes
    on, the final files are assembled from the chunk files instead, and they are the
    uninterrupted sweep's; the stream's temporary files are gone."""
    ref, _ = measured
    real_add, calls = store._FinalStream.add, []

    def add(self, index, tables):
        calls.append(index)
        if index == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_add(self, index, tables)

    monkeypatch.setattr(store._FinalStream, "add", add)
    out = tmp_path / "out"
    assert _run(sweep_cfg, out) == 0
    assert calls == [0, 1]  # dropped after the failure: no later chunk is streamed
    _same_tables(out, ref)
    assert not list(out.rglob("*.tmp"))


def test_streamed_final_files_equal_assembled_ones(measured, measured_assembled):
    """Same schema (pandas metadata included), row groups and values, whichever way the final
    files were made."""
    import pyarrow.parquet as pq

    for name in ("runs.parquet", "curves.parquet"):
        a, b = (pq.ParquetFile(ref / name) for ref in (measured[0], measured_assembled[0]))
        assert a.schema_arrow.equals(b.schema_arrow, check_metadata=True)
        assert [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)] == \
            [b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)]
        assert a.read().equals(b.read())


def test_disk_full_while_the_heatmap_is_written(sweep_cfg, measured, tmp_path, capsys,
                                                monkeypatch):
    """The heatmap is written after the chunks are removed, so no ballast laid down in
    advance can make it the write that fails: the disk is filled the moment the sweep is
    marked finished (the write itself is real)."""
    ref, _ = measured
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        real_finish = store.Store.finish

        def finish_then_fill(self):
            real_finish(self)
            _fill(fs, PAGE)

        monkeypatch.setattr(store.Store, "finish", finish_then_fill)
        out = fs / "out"
        argv = ["run", str(sweep_cfg), "--out", str(out), "--chunk-size", str(CHUNK),
                "--no-progress"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        line = _error_line(err)
        assert "heatmap.png" in line and "No space left on device" in line
        assert "results are complete" in err
        assert not list(out.glob("*.png*"))
        _same_tables(out, ref)
        assert ts.load(out).n_runs == N_RUNS
        monkeypatch.undo()
        (fs / "ballast").unlink()
        assert main([*argv, "--resume"]) == 0  # nothing computed; the figures drawn
        assert "nothing was computed" in capsys.readouterr().out
        assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["report", "explore"])
def test_disk_full_while_the_report_or_page_is_written(command, sweep_cfg, measured, tmp_path,
                                                       capsys):
    with _tmpfs(tmp_path / "fs", 4 << 20) as fs:
        out = fs / "out"
        assert _run(sweep_cfg, out) == 0
        before = sorted(p.name for p in out.iterdir())
        ballast = _fill(fs, 0)
        assert main([command, str(out)]) == 1
        line = _error_line(capsys.readouterr().err)
        assert "No space left on device" in line and "needs " in line
        assert sorted(p.name for p in out.iterdir()) == before  # no part of a page left
        ballast.unlink()
        assert main([command, str(out)]) == 0


def test_folder_turned_read_only_mid_sweep(sweep_cfg, measured, tmp_path, capsys,
                                           monkeypatch):
    """A real remount read-only is refused while the sweep holds its lock file open for
    writing ("mount point is busy"), so the opens of chunk 2's files fail with EROFS as a
    folder turned read-only makes them."""
    ref, _ = measured
    real_open = open

    def read_only(file, mode="r", *a, **k):
        if "w" in mode and "-000002" in str(file):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(atomic, "open", read_only, raising=False)
    out = tmp_path / "out"
    assert _run(sweep_cfg, out) == 1
    line = _error_line(capsys.readouterr().err)
    assert "chunk 2 not saved" in line and "Read-only file system" in line, line
    monkeypatch.undo()
    assert _check_nothing_half_written(out) == {0, 1}
    assert _run(sweep_cfg, out, "--resume") == 0
    _same_tables(out, ref)


def test_io_error_on_fsync_of_a_chunk(sweep_cfg, measured, tmp_path, capsys, monkeypatch):
    """EIO cannot be made by sizing a file system: the fsync of chunk 1's runs file fails as
    a dying disk's would."""
    ref, _ = measured
    real_fsync = os.fsync

    def fsync(fd):
        if "runs-000001.parquet" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    out = tmp_path / "out"
    assert _run(sweep_cfg, out) == 1
    line = _error_line(capsys.readouterr().err)
    assert "Input/output error" in line and "runs-000001.parquet" in line, line
    monkeypatch.undo()
    assert _check_nothing_half_written(out) == {0}
    assert _run(sweep_cfg, out, "--resume") == 0
    _same_tables(out, ref)


def test_stale_temporary_files_are_removed_on_resume(sweep_cfg, measured, tmp_path,
                                                     monkeypatch):
    ref, _ = measured
    out = tmp_path / "out"
    real_save, n = store.Store.save_chunk, [0]

    def save_then_stop(self, *a, **k):
        real_save(self, *a, **k)
        n[0] += 1
        if n[0] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(store.Store, "save_chunk", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ts.run(str(sweep_cfg), out=out, chunk_size=CHUNK, progress=False)
    monkeypatch.undo()
    # what a kill in the middle of writes leaves: temporaries, and a complete-looking chunk
    # file whose record never made it to the journal
    (out / "chunks" / "runs-000002.parquet.tmp").write_bytes(b"PAR1 half")
    (out / "runs.parquet.tmp").write_bytes(b"PAR1 half")
    (out / "chunks" / "curves-000003.parquet").write_bytes(b"not a chunk")
    ts.run(str(sweep_cfg), out=out, chunk_size=CHUNK, progress=False, resume=True)
    _same_tables(out, ref)
    assert not list(out.rglob("*.tmp")) and not (out / "chunks").exists()


# ----------------------------------------------------------------- readers during writes

SLOW_WRITER = """
import sys, time
from trainscape.cli import main as cli
from trainscape.sweep import runner
real = runner.compute_chunk
def slow(*a, **k):  # a slow machine: a chunk every 0.25 s
    time.sleep(0.25)
    return real(*a, **k)
runner.compute_chunk = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def test_readers_of_a_running_then_killed_sweep_refuse_in_one_line(sweep_cfg, measured,
                                                                   tmp_path, capsys):
    ref, _ = measured
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, "run", str(sweep_cfg), "--out", str(out),
         "--chunk-size", str(CHUNK), "--no-progress", "--no-plot"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not (out / "chunks" / "done.jsonl").is_file():
            assert writer.poll() is None, writer.stderr.read()
            assert time.monotonic() - t0 < 120, "no chunk saved in time"
            time.sleep(0.01)
        reads = 0
        while writer.poll() is None and reads < 20:
            with pytest.raises(InputError) as e:
                ts.load(out)
            msg = str(e.value)
            if "still running" not in msg:  # it has just finished
                break
            assert f"pid {writer.pid}" in msg and f"of {N_RUNS:,} runs missing" in msg, msg
            for command in ("report", "explore"):
                assert main([command, str(out)]) == 2
                assert "still running" in _error_line(capsys.readouterr().err)
            reads += 1
        assert reads >= 1
        writer.kill()  # killed mid-sweep (or just after it finished)
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
    if (out / "meta.json").is_file():
        pytest.skip("the writer finished before it could be killed")
    with pytest.raises(InputError, match="did not finish .* runs missing.*--resume"):
        ts.load(out)
    assert main(["report", str(out)]) == 2
    assert "did not finish" in _error_line(capsys.readouterr().err)
    assert _run(sweep_cfg, out, "--resume") == 0  # the readers left the folder as it was
    _same_tables(out, ref)


def test_a_reader_never_takes_the_lock(tmp_path, monkeypatch):
    """The note for an unfinished folder reads the lock file; it never flocks it (a probe's
    flock, taken as a writer starts, would refuse that writer)."""
    out = tmp_path / "out"
    (out / "chunks").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"chunk_size": 64, "n_runs": 256,
                                                   "n_chunks": 4}))
    (out / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    monkeypatch.setattr(store, "_try_flock", lambda fd: pytest.fail("a reader took a lock"))
    with pytest.raises(InputError, match="still running .pid 1 on elsewhere; 0 of 4 chunks"):
        ts.load(out)


# ----------------------------------------------------------------- oversized grids and data


def test_group_positions_equal_the_product_enumerated():
    """Positions of each (dtype, batch_size) program group, from the axis lengths alone,
    against an enumeration of the grid's cartesian product."""
    import itertools

    exp = cfg.parse({"data": {"name": "moons", "n_samples": 64}, "model": {"hidden": [4]},
                     "sweep": {"learning_rate": [0.1, 0.2, 0.3], "dtype": ["float32", "float64"],
                               "seed": {"range": 2}, "batch_size": [8, 16, 32]}})
    product = list(itertools.product(*exp.sweep.values()))
    names = list(exp.sweep)
    for dt in ("float32", "float64"):
        for bs in (8, 16, 32):
            want = [i for i, p in enumerate(product)
                    if p[names.index("dtype")] == dt and p[names.index("batch_size")] == bs]
            pos = grid.group_positions(exp, {"dtype": dt, "batch_size": bs})
            assert len(pos) == len(want)
            np.testing.assert_array_equal(pos[:], want)
            np.testing.assert_array_equal(pos[1:4], want[1:4])
            assert pos[-1] == want[-1] and pos[0] == want[0]
    layout = plan.chunk_layout([(None, grid.group_positions(exp, {"dtype": "float64"})),
                                (None, np.arange(5))], 7)
    assert len(layout) == 3 + 1 and layout.runs_in(2) == 4 and layout.runs_in(3) == 5
    np.testing.assert_array_equal(layout[3][1], np.arange(5))
    np.testing.assert_array_equal(np.concatenate([layout[i][1] for i in range(3)]),
                                  [i for i, p in enumerate(product) if p[1] == "float64"])


BILLION = 'name = "huge"\n' + STATIC + """
[sweep]
learning_rate = {geomspace = [0.001, 10.0], num = 20000}
dtype = ["float32", "float64"]
seed = {range = 25000}
"""


def test_a_grid_at_the_cap_is_planned_in_memory_that_does_not_grow_with_it(tmp_path, x64):
    """10**9 runs (the cap) in two program groups: preparing, validating, laying out the
    chunks and the memory and disk checks hold no per-run array (a few MB traced), and the
    disk check refuses it for a small folder at once."""
    exp = cfg.parse(cfg.load_toml(_write(tmp_path / "huge.toml", BILLION)))
    assert exp.n_runs == cfg.MAX_RUNS
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        prep = prepare.Prepared(exp)
        layout = plan.chunk_layout(prep.groups, 64)
        assert len(layout) == cfg.MAX_RUNS // 64
        assert layout.runs_in(len(layout) - 1) == 64
        plan.check_memory(prep, in_memory=False, out=None)
        with pytest.raises(InputError, match="host memory"):
            plan.check_memory(prep, in_memory=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak  # 8 bytes a run would be 8 GB
    assert time.perf_counter() - t0 < 20
    with _tmpfs(tmp_path / "fs", 1 << 20) as fs:
        t0 = time.perf_counter()
        with pytest.raises(InputError, match="need at least .* on disk"):
            ts.run(exp, out=fs / "out", progress=False)
        assert time.perf_counter() - t0 < 20
        assert not (fs / "out").exists()


def test_a_generated_dataset_too_large_is_refused_before_it_is_built():
    need = 10**12 * 3 * 8 * 4  # x (n x 2) and y, float64, held about four times over
    with pytest.raises(DataError, match=r"n_samples: got 1000000000000; the moons data .*"
                                        + memory.format_bytes(need).replace(".", r"\.")):
        ts.load_dataset({"name": "moons", "n_samples": 10**12})


@pytest.mark.parametrize("spec, key, columns", [
    ({"name": "xor", "n_samples": 64, "n_features": 10**9}, "n_features", 10**9 + 1),
    ({"name": "teacher", "n_samples": 64, "teacher_hidden": 10**12}, "teacher_hidden",
     10**12 + 8 + 1),
    ({"name": "teacher", "n_samples": 64, "n_outputs": 10**11}, "n_outputs", 10**11 + 8 + 32),
])
def test_the_refusal_names_the_key_that_makes_the_data_too_large(spec, key, columns):
    """(Was: 'data.n_samples: got 64' for a refusal caused by a billion features.)"""
    with pytest.raises(DataError, match=rf"^data\.{key}: got {spec[key]}; .*64 samples x "
                                        rf"{columns} float64 columns\) needs about "
                                        + memory.format_bytes(64 * columns * 8 * 4)
                                        .replace(".", r"\.")):
        ts.load_dataset(spec)


def test_a_data_file_larger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    f = tmp_path / "d.csv"
    f.write_text("a,b,y\n" + "0.5,1.5,1\n" * 1000)
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 10_000)  # a small machine
    need = 4 * (f.stat().st_size + 3 * 1536)  # the text and 3 columns' overhead, 4 times
    with pytest.raises(DataError, match=r"data.path: data file .* needs about "
                                        + memory.format_bytes(need).replace(".", r"\.")
                                        + r" of host memory to load, but 9\.8 KiB is available"):
        ts.load_dataset({"path": str(f), "target": "y"})


@pytest.mark.slow
def test_a_4e8_run_grid_starts_training_in_seconds_and_little_memory(tmp_path):
    """`trainscape run` of 4 x 10**8 runs in a real process, stopped once its first chunk is
    saved: within 60 s (7.1 s measured on a 2-core AMD EPYC) and under 1.5 GB resident
    (0.39 GB measured; it was 8.3 GB and still planning after 45 s)."""
    cfg_path = _write(tmp_path / "big.toml", 'name = "big"\n' + STATIC + """
[sweep]
learning_rate = {geomspace = [0.001, 10.0], num = 10000}
seed = {range = 40000}
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "trainscape", "run", str(cfg_path), "--out",
                             str(out), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    t0, peak_kb = time.monotonic(), 0
    try:
        while not list((out / "chunks").glob("runs-*.parquet")):
            with open(f"/proc/{proc.pid}/status") as f:
                peak_kb = max([peak_kb] + [int(line.split()[1]) for line in f
                                           if line.startswith("VmHWM")])
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < 60, f"no chunk after 60 s, {peak_kb / 1e6:.2f} GB"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert peak_kb < 1.5e6, f"{peak_kb / 1e6:.2f} GB before the first chunk"


# ------------------------------------------------------------ the Python API's arguments

_API_TINY = {"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [2]},
             "train": {"steps": 2}, "sweep": {"learning_rate": [0.1, 1.0]}}


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_results_save_never_replaces_results_or_writes_into_a_foreign_folder(tmp_path):
    """`Results.save` replaced a finished folder's tables (keeping its manifest, so `resume`
    then returned the other sweep as this one's), and wrote into any folder."""
    finished = tmp_path / "finished"
    ts.run(_API_TINY, out=finished, progress=False)
    other = ts.run({**_API_TINY, "sweep": {"learning_rate": [0.5]}}, out=None, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n.txt").write_text("mine")
    (tmp_path / "afile").write_text("mine")
    before = _tree(tmp_path)
    for target, said in ((finished, "holds finished results"), (tmp_path / "notes", "not empty"),
                         (tmp_path / "afile", "is a file"), (5, "got int 5"),
                         ("", "empty path")):
        with pytest.raises(InputError, match=said) as e:
            other.save(target)
        assert "\n" not in str(e.value)
    assert _tree(tmp_path) == before
    assert ts.load(other.save(tmp_path / "new")).n_runs == 1


@pytest.mark.parametrize("kw, said", [
    ({"out": 5}, "out: expected a path (str or os.PathLike), got int 5"),
    ({"out": b"x"}, "out: expected a path"),
    ({"out": ""}, "out: empty path"),  # was: written into the current folder
    ({"progress": "no"}, "progress: expected True or False, got 'no'"),  # showed the bar
    ({"out": "o", "resume": 1}, "resume: expected True or False, got 1"),
])
def test_run_arguments_of_the_wrong_type_are_refused(kw, said, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(said)):
        ts.run(_API_TINY, **kw)
    assert not any(tmp_path.iterdir())


def test_zoom_load_and_explore_refuse_a_path_that_is_not_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    two_axes = {**_API_TINY, "sweep": {"learning_rate": {"geomspace": [0.1, 1.0], "num": 2},
                                       "init_scale": {"linspace": [0.5, 1.0], "num": 2}}}
    for bad in (5, ""):
        with pytest.raises(InputError, match="out: (expected a path|empty path)"):
            ts.zoom(two_axes, 1, out=bad, progress=False)
        with pytest.raises(InputError, match="path: (expected a path|empty path)"):
            ts.explore(ts.run(_API_TINY, out=None, progress=False), bad)
    for bad in (5, None, ""):
        with pytest.raises(InputError, match="results folder: (expected a path|empty)"):
            ts.load(bad)
    assert not any(tmp_path.iterdir())


def test_load_refuses_a_runs_table_without_its_columns_and_names_mistyped_ones(tmp_path):
    """A runs.parquet without `label` (or replaced by a curves table) loaded, then failed
    inside pandas; a mistyped column was a pandas/pyarrow error without the nearest name."""
    folder = tmp_path / "r"
    res = ts.run(_API_TINY, out=folder, progress=False)
    for r in (ts.load(folder), res):  # read from the folder, and held in memory
        with pytest.raises(InputError, match=r"no column 'learning_rat' \(did you mean "
                                             r"'learning_rate'\?\)"):
            r.label_counts("learning_rat")
        with pytest.raises(InputError, match="read_runs: columns: the runs table has no column"):
            r.read_runs(["learning_rat"])
        with pytest.raises(InputError, match="expected a list of column names, got 'label'"):
            r.read_runs("label")  # iterated its characters
        with pytest.raises(InputError, match="'label' is what is counted"):
            r.cell_counts("label")
        # a column named twice was a ValueError from inside pandas
        with pytest.raises(InputError, match=r"by: 'learning_rate' is named twice in"):
            r.label_counts(["learning_rate", "learning_rate"])
        with pytest.raises(InputError, match=r"columns: 'label' is named twice in"):
            r.read_runs(["label", "label"])
        for by in (["label"], ["learning_rate", "learning_rate"]):
            with pytest.raises(InputError, match=r"divergence_table by=: got .*; give "
                                                 r"distinct columns other than 'label'"):
                ts.divergence_table(r, by=by)
        assert r.label_counts("learning_rate")["total"].tolist() == [1, 1]
    runs = pd.read_parquet(folder / "runs.parquet")
    runs.drop(columns="label").to_parquet(folder / "runs.parquet", index=False)
    with pytest.raises(InputError, match="runs.parquet' is damaged: it has no label column"):
        ts.load(folder)
    pd.read_parquet(folder / "curves.parquet").to_parquet(folder / "runs.parquet", index=False)
    with pytest.raises(InputError, match="it has no label, learning_rate column"):
        ts.load(folder)


def test_write_new_never_replaces_a_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    f = tmp_path / "a.json"
    atomic.write_new(b"first", f)
    with pytest.raises(FileExistsError):
        atomic.write_new(b"second", f)
    assert f.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]

    def no_links(src, dst):  # a file system without hard links: checked, then renamed
        raise OSError(errno.EPERM, "no links")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(FileExistsError):
        atomic.write_new(b"second", f)
    atomic.write_new(b"other", tmp_path / "b.json")
    assert f.read_bytes() == b"first" and (tmp_path / "b.json").read_bytes() == b"other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
