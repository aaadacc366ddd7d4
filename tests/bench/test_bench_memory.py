import json
import subprocess
import sys

import pytest

from trainscape.bench import memory as bench_memory


def _row(runs, cache, mib):
    return {"runs": runs, "cache": cache, "peak_rss_bytes": mib * 2**20, "wall_seconds": 1.0,
            "chunk_size": 64, "n_chunks": 1, "file_bytes": {"curves.parquet": 2**20}}


def test_report_compares_each_sweep_with_the_first_of_the_same_cache_state():
    rows = [_row(10_000, "cold", 540), _row(10_000, "warm", 400),
            _row(1_000_000, "cold", 594), _row(1_000_000, "warm", 440)]
    lines = bench_memory.format_report(rows).splitlines()[2:]
    assert [ln.split(" | ")[5] for ln in lines] == ["1.00x", "1.00x", "1.10x", "1.10x"]
    assert lines[1].startswith("| 10,000 | warm | 64 | 1 | 400 |")


def test_config_needs_whole_learning_rate_rows():
    assert bench_memory.config(300)["sweep"]["seed"] == {"range": 3}
    with pytest.raises(ValueError, match="multiple of 100"):
        bench_memory.config(150)


def test_a_sweep_runs_in_its_own_process_with_the_given_compile_cache(tmp_path):
    cache = tmp_path / "cache"
    row = bench_memory.measure(100, tmp_path, str(cache))
    assert row["runs"] == 100 and row["peak_rss_bytes"] > 50 * 2**20
    assert row["n_chunks"] >= 1 and row["file_bytes"]["runs.parquet"] > 0
    # the child compiled into the folder it was given, not the user's cache
    assert any(cache.rglob("*")), "the child wrote nothing to its compile cache"
    assert not (tmp_path / "out-100").exists()  # the sweep's folder is removed after
    json.dumps(row)  # what main() writes to memory.json


META = '{"timings": {"chunk_size": 192, "n_chunks": 3, "run_steps_per_second": 1234.5}}'
FAKE_RUN = """
import sys
from pathlib import Path

args = sys.argv[1:]
assert args[:3] == ["-m", "trainscape", "run"] and "--no-progress" in args, args
out = Path(args[args.index("--out") + 1])
out.mkdir()
held = bytearray({mib} * 2**20)
for i in range(0, len(held), 4096):  # zero pages cost no memory until written
    held[i] = 1
(out / "meta.json").write_text({meta!r})
(out / "runs.parquet").write_bytes(b"r" * 1000)
(out / "curves.parquet").write_bytes(b"c" * 3000)
"""


DRIVER = """
import importlib.util, json, sys
from pathlib import Path

# bench_memory by its file: importing the trainscape package would load JAX into this process
spec = importlib.util.spec_from_file_location("bench_memory", sys.argv[1])
bm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bm)
rows = {}
for mib, exe in (("100", sys.argv[3]), ("300", sys.argv[4])):
    bm.sys.executable = exe
    rows[mib] = bm.measure(100, Path(sys.argv[2]))
print(json.dumps(rows))
"""


def test_measure_reports_the_childs_own_peak_and_its_files(tmp_path):
    """`measure` against a stand-in for `trainscape run` whose numbers are known: a Python child
    that holds 100 or 300 MiB (every page touched) and writes a meta.json and two files of 1000
    and 3000 bytes. The two peaks differ by the 200 MiB, in bytes, to 2 MiB (a KiB taken for
    1000 bytes would be 4.7 MiB off). Both children hold more than the process that launches
    them, whose high-water mark a child's reading starts from (see below): a child holding
    nothing read that floor (13 MiB) instead of its own 10 MiB. The chunk figures are the
    child's meta.json's; the file sizes are the files'; the folder is removed after.

    `measure` runs in a small process of its own here: on Linux a child's ru_maxrss starts from
    the RSS high-water mark of the process it was spawned from (measured: 263 MiB for a child
    holding nothing, spawned from this JAX-loaded test process), so a large parent sets a
    floor under every figure."""
    exes = []
    for mib in (100, 300):
        script = tmp_path / f"fake_run_{mib}.py"
        script.write_text(FAKE_RUN.format(mib=mib, meta=META))
        exe = tmp_path / f"python_{mib}"
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
        exe.chmod(0o755)
        exes.append(str(exe))
    out = subprocess.run([sys.executable, "-c", DRIVER, bench_memory.__file__, str(tmp_path),
                          *exes], capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(out.stdout)
    grew = rows["300"]["peak_rss_bytes"] - rows["100"]["peak_rss_bytes"]
    assert abs(grew - 200 * 2**20) <= 2 * 2**20, {k: r["peak_rss_bytes"] / 2**20
                                                  for k, r in rows.items()}
    row = rows["300"]
    assert (row["chunk_size"], row["n_chunks"], row["run_steps_per_second"]) == (192, 3, 1234.5)
    assert row["file_bytes"] == {"meta.json": len(META), "runs.parquet": 1000,
                                 "curves.parquet": 3000}
    assert row["runs"] == 100 and not (tmp_path / "out-100").exists()


def _no_sweep(*a, **k):
    raise AssertionError("a sweep ran before the output folder was checked")


def test_an_unusable_out_is_refused_before_the_first_sweep(tmp_path, monkeypatch):
    from trainscape.errors import InputError

    monkeypatch.setattr(bench_memory, "measure", _no_sweep)
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "memory.md").write_text("finished")
    for out, says in ((tmp_path / "afile", "exists and is not a folder"),
                      (tmp_path / "afile" / "sub", "is a file, not a folder"),
                      ("", "empty"),
                      (tmp_path / "done", "memory.md' already exists; choose another folder")):
        with pytest.raises(InputError, match=says):
            bench_memory.main((100,), out)
    assert (tmp_path / "done" / "memory.md").read_text() == "finished"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "done"]


def test_memory_files_are_written_into_a_new_folder_and_never_replaced(tmp_path, monkeypatch):
    from trainscape.bench import peers
    from trainscape.errors import InputError

    monkeypatch.setattr(peers, "machine_info", dict)
    monkeypatch.setattr(bench_memory, "measure", lambda n, scratch, cache: _row(n, None, 100))
    out = tmp_path / "new"
    assert bench_memory.main((100,), out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["memory.json", "memory.md"]
    assert [r["cache"] for r in json.loads((out / "memory.json").read_text())["rows"]] == [
        "cold", "warm"]
    monkeypatch.setattr(bench_memory, "measure", _no_sweep)
    with pytest.raises(InputError, match="memory.json' already exists"):
        bench_memory.main((100,), out)


def test_the_module_form_reports_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    """`python -m trainscape.bench.memory`, run here (runpy) with no child process allowed."""
    import runpy
    import warnings

    monkeypatch.setattr(subprocess, "Popen", _no_sweep)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(sys, "argv", ["memory", "--runs", "100", "--out", "afile"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as e:
        warnings.simplefilter("ignore", RuntimeWarning)  # the module is imported already
        runpy.run_module("trainscape.bench.memory", run_name="__main__")
    assert e.value.code == 2 and capsys.readouterr().err.splitlines() == [
        "python -m trainscape.bench.memory: error: bench --out 'afile': exists and is not a "
        "folder; give a folder (new or holding no memory.json or memory.md)"]
    # a grid size that is not a positive integer: refused before any sweep (was a traceback)
    monkeypatch.setattr(sys, "argv", ["memory", "--runs", "100,x"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as e:
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module("trainscape.bench.memory", run_name="__main__")
    assert e.value.code == 2 and "expected positive integers" in capsys.readouterr().err
