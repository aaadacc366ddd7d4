"""`trainscape run --distributed`: two processes on localhost share one sweep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

import trainscape as ts

CONFIG = """
name = "dist"
[data]
name = "moons"
n_samples = 32
[model]
hidden = [3]
[train]
steps = 6
[sweep]
learning_rate = {geomspace = [0.01, 100.0], num = 16}
seed = {range = 20}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _cmd(cfg, out, *extra):
    return [sys.executable, "-m", "trainscape", "run", str(cfg), "--out", str(out),
            "--chunk-size", "64", "--no-plot", "--no-progress", *extra]


def _launch(cfg, out, n=2, extra=()):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen(_cmd(cfg, out, "--coordinator", f"localhost:{port}",
                                   "--num-processes", str(n), "--process-id", str(i), *extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(n)]
    return [(p.wait(timeout=300), *p.communicate()) for p in procs]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    f = tmp_path_factory.mktemp("dist") / "dist.toml"
    f.write_text(CONFIG)
    return f


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_two_processes_equal_one(cfg, tmp_path):
    results = _launch(cfg, tmp_path / "two")
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    assert "process 1: done" in results[1][1]
    one = ts.run(str(cfg), out=tmp_path / "one", chunk_size=64, progress=False)
    two = ts.load(tmp_path / "two")
    pd.testing.assert_frame_equal(two.runs, one.runs, check_exact=True)
    pd.testing.assert_frame_equal(two.curves, one.curves, check_exact=True)
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    # process 0 trained only its share (chunks 0, 2, 4 of 5 chunks of 64 runs)
    assert meta["timings"]["processes"] == 2
    assert meta["timings"]["computed_runs"] == 192
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "curves.parquet", "manifest.json", "meta.json", "runs.parquet"]


def test_a_refusal_by_process_0_stops_every_process(cfg, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("not ours")
    for rc, _, err in _launch(cfg, out):
        assert rc == 2
        assert "holds files that are not trainscape results" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args, needle", [
    (["--coordinator", "localhost:1"], "give all of --coordinator"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "5"],
     "--process-id: got 5"),
])
def test_bad_distributed_flags(cfg, tmp_path, args, needle, capsys, monkeypatch):
    """Refused before jax.distributed is started (in this process: the exit status and the
    one-line message of a real process are checked in test_reliability)."""
    import jax

    from trainscape.cli.main import main

    monkeypatch.setattr(jax.distributed, "initialize",
                        lambda **kw: pytest.fail("jax.distributed was started"))
    assert main(_cmd(cfg, tmp_path / "x", *args)[3:]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("trainscape: error:") and needle in last
    assert not (tmp_path / "x").exists()


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_two_processes_resume_a_one_process_sweep(cfg, tmp_path, monkeypatch):
    from trainscape.cli import signals
    from trainscape.io import store
    from trainscape.sweep import runner

    real, calls = runner.compute_chunk, []

    def stop_at_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise signals.Interrupted(2)
        return real(*a, **k)

    monkeypatch.setattr(runner, "compute_chunk", stop_at_third)
    with pytest.raises(signals.Interrupted):
        ts.run(str(cfg), out=tmp_path / "r", chunk_size=64, progress=False)
    monkeypatch.undo()
    assert store.folder_state(tmp_path / "r") == "interrupted"
    for rc, _, err in _launch(cfg, tmp_path / "r", extra=("--resume",)):
        assert rc == 0, err[-2000:]
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    # chunks 0 and 1 were saved; process 0 trains 2 and 4 of its share (0, 2, 4), process 1 3
    assert meta["timings"]["computed_runs"] == 128 and meta["timings"]["resumed_runs"] == 64
    one = ts.run(str(cfg), out=None, chunk_size=64, progress=False)
    pd.testing.assert_frame_equal(ts.load(tmp_path / "r").runs, one.runs, check_exact=True)
