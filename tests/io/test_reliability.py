"""Reliability: kills, Ctrl+C, corrupt chunks, locks, refused resumes, bad input, blow-ups, OOM.

Every in-process sweep here has the same static shapes (moons 128 x 2, hidden [16], 200 steps,
float32), so the whole module compiles one program; the subprocesses share a persistent XLA
cache, so only the first of them compiles.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trainscape as ts
import trainscape.version
from trainscape.analysis.divergence import label_counts
from trainscape.cli import signals
from trainscape.cli.main import main
from trainscape.engine import compile as engine_compile
from trainscape.engine import execute, plan
from trainscape.io import memory, store
from trainscape.spec import schema
from trainscape.sweep import prepare

STATIC = """
[data]
name = "moons"
n_samples = 128
[model]
hidden = [16]
[train]
steps = 200
"""
# 640 runs in 10 chunks of 64 (one block on each of two host devices): ~0.2 s per chunk
# (every step computed: with early exit the diverging chunks take a fraction of the time, and
# the kill and signal tests below need each chunk to take a while)
BIG = 'name = "big"\n' + STATIC.replace("steps = 200\n", "steps = 200\nearly_exit = false\n") + """
[sweep]
learning_rate = {geomspace = [0.01, 20.0], num = 80}
seed = {range = 8}
"""
N_BIG, CHUNK = 640, 64
N_CHUNKS = N_BIG // CHUNK


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _tree(root: Path) -> dict:
    """Every file under `root` with its bytes: equal snapshots mean nothing was written."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _same_files(out: Path, ref: Path) -> None:
    for name in ("runs.parquet", "curves.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(ref / name),
                                      check_exact=True)


def _saved(out: Path) -> set[int]:
    """Chunk indices recorded as finished (a line cut short by a kill does not count)."""
    saved = set()
    try:
        lines = (out / "chunks" / "done.jsonl").read_text().splitlines()
    except OSError:
        return saved
    for line in lines:
        try:
            saved.add(json.loads(line)["index"])
        except (ValueError, KeyError):
            pass
    return saved


@pytest.fixture(scope="module")
def big_cfg(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("cfg") / "big.toml", BIG)


@pytest.fixture(scope="module")
def reference(big_cfg, tmp_path_factory):
    """The uninterrupted sweep every interrupted one must equal, row for row."""
    out = tmp_path_factory.mktemp("ref") / "out"
    ts.run(str(big_cfg), out=out, chunk_size=CHUNK, progress=False)
    return out


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = dict(os.environ)
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla-cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "trainscape", "run", *map(str, args)]


# A shell that starts CI in the background hands its children SIGINT/SIGTERM ignored; the
# child must see them as a user's terminal would deliver them. The child resets them itself,
# first thing: a `preexec_fn` would make subprocess fork this process, which has imported JAX
# (multithreaded), instead of spawning the child.
DEFAULT_SIGNALS = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
"""
CLI_MAIN = DEFAULT_SIGNALS + """
import runpy, sys
sys.argv[0] = "trainscape"
runpy.run_module("trainscape", run_name="__main__")
"""


def _start(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI_MAIN, "run", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_saved(proc: subprocess.Popen, out: Path, n: int = 1, timeout: float = 180) -> None:
    t0 = time.monotonic()
    while len(_saved(out)) < n:
        if proc.poll() is not None:
            pytest.fail(f"sweep ended (rc {proc.returncode}) before {n} chunk(s) were saved: "
                        f"{proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("no chunk saved in time")
        time.sleep(0.01)


def _stop_after_saves(monkeypatch, n: int) -> None:
    """Make an in-process sweep stop (as Ctrl+C would) once `n` chunks are on disk."""
    real = store.Store.save_chunk
    count = [0]

    def save_then_stop(self, *a, **k):
        real(self, *a, **k)
        count[0] += 1
        if count[0] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(store.Store, "save_chunk", save_then_stop)


# ----------------------------------------------------------------- kill -9, Ctrl+C, corruption


@pytest.mark.cpu_only("a GPU needs --xla_gpu_deterministic_ops for bit-equal resumes")
def test_kill9_then_ctrl_c_then_resume_equals_uninterrupted(big_cfg, reference, cli_env,
                                                            tmp_path):
    out = tmp_path / "out"
    args = (big_cfg, "--out", out, "--chunk-size", CHUNK, "--no-progress", "--no-plot")
    killed = _start(cli_env, *args)
    _wait_saved(killed, out)
    killed.kill()
    killed.wait()
    n_killed = len(_saved(out))
    assert 1 <= n_killed < N_CHUNKS, "the sweep finished before it could be killed"
    assert (out / ".lock").exists()  # left behind by the killed process

    # resumed, then stopped with Ctrl+C: it saves the chunk in progress and says how to go on
    resumed = _start(cli_env, *args, "--resume")
    _wait_saved(resumed, out, n_killed + 1)
    resumed.send_signal(signal.SIGINT)
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 130, err
    assert "taking over the lock" in err
    n_stopped = len(_saved(out))
    assert n_killed < n_stopped < N_CHUNKS
    assert not (out / ".lock").exists()  # a clean stop releases the lock
    cmd = shlex.split(err.strip().splitlines()[-1])
    assert cmd[:3] == ["trainscape", "run", str(big_cfg)] and "--resume" in cmd, err
    assert cmd[cmd.index("--out") + 1] == str(out)

    r = subprocess.run([sys.executable, "-m", "trainscape", *cmd[1:]], env=cli_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _same_files(out, reference)
    t = json.loads((out / "meta.json").read_text())["timings"]
    assert t["resumed_runs"] == CHUNK * n_stopped
    assert t["n_chunks"] == N_CHUNKS - n_stopped  # only the missing chunks were computed
    assert not (out / "chunks").exists() and not (out / ".lock").exists()


@pytest.mark.cpu_only("a GPU needs --xla_gpu_deterministic_ops for bit-equal resumes")
def test_sigterm_saves_the_chunk_in_progress_and_exits_143(big_cfg, reference, cli_env,
                                                           tmp_path, capsys):
    """docs/reliability.md: SIGTERM (what a scheduler or `kill` sends) lets the chunk in
    progress finish and be saved, then the sweep stops with exit 143 (128 + 15) and prints the
    command that resumes it; that command finishes the sweep with the tables an uninterrupted
    one gives. The stopped sweep is a real process; the resume runs in this one (the module's
    program is already compiled here)."""
    out = tmp_path / "out"
    args = (big_cfg, "--out", out, "--chunk-size", CHUNK, "--no-progress", "--no-plot")
    proc = _start(cli_env, *args)
    _wait_saved(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    n_saved = len(_saved(out))
    assert 1 <= n_saved < N_CHUNKS, err
    assert not (out / ".lock").exists()  # a clean stop releases the lock
    cmd = shlex.split(err.strip().splitlines()[-1])
    assert cmd == ["trainscape", "run", str(big_cfg), "--out", str(out), "--resume",
                   "--no-progress", "--no-plot"], err
    assert main(cmd[1:]) == 0, capsys.readouterr().err
    _same_files(out, reference)
    t = json.loads((out / "meta.json").read_text())["timings"]
    assert t["resumed_runs"] == CHUNK * n_saved and t["n_chunks"] == N_CHUNKS - n_saved


# SIGTERM sent by the process to itself where no chunk is in progress: once every chunk is
# saved, as the sweep's tables are put together
TERM_AFTER_CHUNKS = DEFAULT_SIGNALS + """
import os, sys
from trainscape.cli.main import main
from trainscape.sweep import runner

real = runner._finish

def finish(*a, **k):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*a, **k)

runner._finish = finish
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_outside_a_chunk_stops_like_ctrl_c_and_resumes(tmp_path):
    """Between chunks SIGTERM kept its default action: the process vanished (exit -15) with
    its lock left and no word said. The command line stops there as at a Ctrl+C: exit 143,
    the lock released, the command that resumes it printed, and that command finishes."""
    cfg = _write(tmp_path / "c.toml", 'name = "t"\n[data]\nname = "moons"\nn_samples = 16\n'
                 "[model]\nhidden = [2]\n[train]\nsteps = 2\n[sweep]\nseed = {range = 4}\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", TERM_AFTER_CHUNKS, "run", str(cfg), "--out",
                        str(out), "--no-progress", "--no-plot"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 143, r.stderr
    assert not (out / ".lock").exists() and _saved(out) == {0}
    cmd = shlex.split(r.stderr.strip().splitlines()[-1])
    assert cmd == ["trainscape", "run", str(cfg), "--out", str(out), "--resume",
                   "--no-progress", "--no-plot"], r.stderr
    assert main(cmd[1:]) == 0
    assert len(ts.load(out).runs) == 4


def _read_lines(proc):
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    return lines, reader


def _wait_for(proc, cond, timeout: float) -> bool:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.02)
    return True


def _second_ctrl_c(proc, lines, reader, timeout: float = 30) -> tuple[str, float]:
    """Press Ctrl+C again and wait for the process to end: (its stderr, seconds it took)."""
    try:
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        proc.wait(timeout=timeout)
        stopped_in = time.monotonic() - t0
    finally:
        proc.kill()
    reader.join(5)
    return "".join(lines), stopped_in


def _check_stopped_at_once(proc, err: str, out: Path) -> None:
    """What a second Ctrl+C leaves: exit 130, one acknowledgement, the resume command last,
    the lock released and no chunk saved."""
    assert proc.returncode == 130, err
    assert err.count("stopping once") == 1, err
    assert "--resume" in shlex.split(err.strip().splitlines()[-1]), err
    assert not (out / ".lock").exists() and _saved(out) == set(), err


def test_ctrl_c_is_heard_mid_chunk_and_a_second_one_stops_at_once(cli_env, tmp_path):
    """One chunk that would compute for many minutes: the first Ctrl+C is acknowledged while
    XLA is still running it (on a CPU by the main thread's handler, JAX handing control back
    while it waits; where it does not, by signals.hear_signals_while_busy); the second ends the
    process at once (exit 130; a normal exit would wait in JAX's teardown for the chunk) with
    the lock released, nothing half-saved and the resume command printed."""
    cfg = _write(tmp_path / "long.toml", 'name = "long"\n' + STATIC.replace(
        "steps = 200", "steps = 100000000\nrecord_every = 10000000")
        + "[sweep]\nlearning_rate = [0.1, 0.2]\n")
    out = tmp_path / "out"
    proc = _start(cli_env, cfg, "--out", out, "--no-progress", "--no-plot")
    lines, reader = _read_lines(proc)
    try:
        assert _wait_for(proc, (out / "manifest.json").exists, 120), "".join(lines)
        time.sleep(1.0)  # inside the compile or the chunk; either way Python is not running
        proc.send_signal(signal.SIGINT)
        assert _wait_for(proc, lambda: any("stopping once" in line for line in lines), 60), \
            "the first Ctrl+C was not acknowledged while the chunk computed"
    except BaseException:
        proc.kill()
        raise
    err, stopped_in = _second_ctrl_c(proc, lines, reader)
    _check_stopped_at_once(proc, err, out)
    assert stopped_in < 10, f"second Ctrl+C took {stopped_in:.1f} s to stop the process"
    assert not (out / "runs.parquet").exists()


# `trainscape run` with the main thread held inside one C call that no signal interrupts (a
# mutex locked twice by its owner: glibc's futex wait resumes after every signal handler),
# as JAX's was on a GPU while a long chunk computed. STALL seconds, then the chunk is computed
# as usual; 0: forever. The marker file says the stall has begun.
STALLED_CLI = DEFAULT_SIGNALS + """
import ctypes, os, sys, time
from trainscape.cli import main as cli
from trainscape.sweep import runner

libc = ctypes.CDLL(None, use_errno=True)
real = runner.compute_chunk

class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

def stalled(*a, **k):
    m = ctypes.create_string_buffer(64)  # a pthread_mutex_t, default (normal) kind
    libc.pthread_mutex_init(m, None)
    libc.pthread_mutex_lock(m)
    open(os.environ["STALL_MARKER"], "w").close()
    stall = float(os.environ["STALL"])
    if stall == 0:
        libc.pthread_mutex_lock(m)  # never returns
    until = time.time() + stall
    libc.pthread_mutex_timedlock(m, ctypes.byref(Timespec(int(until), int(until % 1 * 1e9))))
    print("stall over", file=sys.stderr, flush=True)
    return real(*a, **k)

runner.compute_chunk = stalled
sys.exit(cli.main(sys.argv[1:]))
"""


def _stall_then_ctrl_c(env, tmp_path: Path, stall: float):
    """Start a two-run sweep whose main thread stalls for `stall` s (0: forever) in its
    chunk, press Ctrl+C once the stall has begun and wait up to 4 s for the acknowledgement
    (the main thread cannot give it: see STALLED_CLI). Returns the process, its stderr lines
    so far (still being read), the reader, the config and the output folder."""
    cfg = _write(tmp_path / "two.toml", 'name = "two"\n' + STATIC
                 + "[sweep]\nlearning_rate = [0.1, 0.2]\n")
    out, marker = tmp_path / "out", tmp_path / "stalled"
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED_CLI, "run", str(cfg), "--out", str(out),
         "--no-progress", "--no-plot"],
        env={**env, "STALL": str(stall), "STALL_MARKER": str(marker)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines, reader = _read_lines(proc)
    try:
        assert _wait_for(proc, marker.exists, 120), "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert _wait_for(proc, lambda: any("stopping once" in x for x in lines), 4), \
            "the first Ctrl+C was not acknowledged during the stall: " + "".join(lines)
    except BaseException:
        proc.kill()
        raise
    return proc, lines, reader, cfg, out


def test_ctrl_c_is_heard_while_the_main_thread_is_stuck_in_a_call(cli_env, tmp_path):
    """The GPU case (docs/reliability.md): the main thread never returns from the chunk's
    call, so Python never runs a handler. The first Ctrl+C is still acknowledged, and the
    second still ends the process with exit 130, the lock released and the resume command
    printed."""
    proc, lines, reader, cfg, out = _stall_then_ctrl_c(cli_env, tmp_path, 0)
    err, _ = _second_ctrl_c(proc, lines, reader)
    _check_stopped_at_once(proc, err, out)
    cmd = shlex.split(err.strip().splitlines()[-1])
    assert cmd[:3] == ["trainscape", "run", str(cfg)], err
    assert (out / "manifest.json").exists()


def test_ctrl_c_heard_during_a_stall_still_saves_the_chunk(cli_env, tmp_path):
    """A stall that ends: the first Ctrl+C is acknowledged during it, once (not again when
    the main thread's own handler runs afterwards), and the chunk is then finished and saved
    before the process stops with exit 130."""
    proc, lines, reader, _, out = _stall_then_ctrl_c(cli_env, tmp_path, 5)
    acked_during_stall = not any("stall over" in x for x in lines)
    try:
        proc.wait(timeout=120)
    finally:
        proc.kill()
    reader.join(5)
    err = "".join(lines)
    assert acked_during_stall, err
    assert proc.returncode == 130, err
    assert err.count("stopping once") == 1, err
    assert _saved(out) == {0} and not (out / ".lock").exists(), err
    assert "--resume" in err.strip().splitlines()[-1]


def test_signal_thread_acknowledges_for_a_stuck_main_thread_in_process(monkeypatch, capsys):
    """signals.hear_signals_while_busy in this process, around interrupts_deferred: a Ctrl+C
    that arrives while the main thread is held in a C call for 1.5 s is acknowledged by the
    thread during the hold, once, even though earlier sweeps of the process had their own
    signals heard (the count it compares with is this sweep's); the deferred handler then
    runs and the block ends with Interrupted, and stop_now is never called."""
    import ctypes

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("needs the main thread and Python's own SIGINT handler")
    monkeypatch.setattr(signals._DEFERRAL, "heard", 5)  # signals of earlier sweeps
    libc = ctypes.CDLL(None)

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    acks: list[tuple[str, float]] = []  # (thread, time) of every acknowledgement asked for
    real_ack = signals._acknowledge
    monkeypatch.setattr(signals, "_acknowledge", lambda: (
        acks.append((threading.current_thread().name, time.monotonic())), real_ack()))
    stops: list[int] = []
    with pytest.raises(signals.Interrupted):
        with signals.hear_signals_while_busy(stops.append, grace=0.2), \
                signals.interrupts_deferred():
            # sent while the main thread is held (sent from here, Python would run the
            # handler before the hold even began)
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            until = time.time() + 1.5
            libc.pthread_mutex_timedlock(mutex, ctypes.byref(
                Timespec(int(until), int(until % 1 * 1e9))))
            held_until = time.monotonic()
    assert acks and acks[0][0] == "trainscape-signals" and acks[0][1] < held_until, acks
    assert [name for name, _ in acks[1:]] == [threading.main_thread().name]  # its handler, after
    assert capsys.readouterr().err.count("stopping once") == 1
    assert stops == []


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_corrupt_partial_and_missing_chunks_are_recomputed(big_cfg, reference, tmp_path,
                                                           monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _stop_after_saves(m, 4)
        with pytest.raises(KeyboardInterrupt):
            ts.run(str(big_cfg), out=out, chunk_size=CHUNK, progress=False)
    assert _saved(out) == {0, 1, 2, 3} and not (out / ".lock").exists()
    chunks = out / "chunks"
    f0 = chunks / "runs-000000.parquet"  # cut short, as by a full disk
    f0.write_bytes(f0.read_bytes()[: f0.stat().st_size // 2])
    f1 = chunks / "curves-000001.parquet"  # still valid Parquet, but not what was saved
    c = pd.read_parquet(f1)
    c.loc[3, "loss"] += 1e-6
    c.to_parquet(f1, index=False)
    (chunks / "runs-000002.parquet").unlink()
    with open(chunks / "done.jsonl", "a") as f:  # a record cut short by a kill
        f.write('{"index": 7, "sha2')
    (chunks / "runs-000009.parquet.tmp").write_bytes(b"half a file")
    capsys.readouterr()

    res = ts.run(str(big_cfg), out=out, resume=True, progress=False)
    err = capsys.readouterr().err
    for i in (0, 1, 2):
        assert f"chunk {i} in" in err and "recomputing" in err
    assert "chunk 3 in" not in err
    assert res.meta["timings"]["resumed_runs"] == CHUNK  # only chunk 3 was reused
    _same_files(out, reference)
    pd.testing.assert_frame_equal(res.runs, ts.load(reference).runs, check_exact=True)
    assert not chunks.exists()


# ----------------------------------------------------------------- lock, refusals, overwrites

HOLD_LOCK = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["flock", "pid-file"])
def test_live_lock_refused_naming_the_pid(how, big_cfg, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    if how == "flock":
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / ".lock")],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
    else:  # a lock file naming a live process of this host (no kernel lock held)
        holder = subprocess.Popen(["sleep", "120"])
        import socket

        (out / ".lock").write_text(json.dumps({"host": socket.gethostname(),
                                               "pid": holder.pid}))
    try:
        before = _tree(out)
        rc = main(["run", str(big_cfg), "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert _tree(out) == before
    finally:
        holder.kill()
        holder.wait()


def test_live_lock_of_another_distributed_process_is_refused(big_cfg, tmp_path, capsys):
    # process 1 of a distributed sweep still holds its own lock: a single-process --resume
    # (process 0's role) must not start writing the same chunks
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / ".lock-p1")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        before = _tree(out)
        rc = main(["run", str(big_cfg), "--out", str(out), "--resume", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {holder.pid}" in err and ".lock-p1" in err
        assert len(err.strip().splitlines()) == 1 and _tree(out) == before
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    import socket

    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    cfg = _write(tmp_path / "c.toml", STATIC + "[sweep]\nlearning_rate = [0.1, 1.0]\n")
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    assert f"taking over the lock of pid {dead.pid}" in capsys.readouterr().err
    assert not (out / ".lock").exists() and (out / "runs.parquet").is_file()


@pytest.fixture
def csv_sweep(tmp_path):
    """A sweep on a CSV file, stopped after its first of two chunks."""
    x, y = ts.load_dataset({"name": "moons", "n_samples": 128, "standardize": False})
    csv = tmp_path / "moons.csv"
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y}).to_csv(csv, index=False)
    cfg = _write(tmp_path / "csv.toml", STATIC.replace('name = "moons"\nn_samples = 128',
                                                       f'path = "{csv}"\ntarget = "label"')
                 + "[sweep]\nlearning_rate = [0.05, 0.5, 5.0, 50.0]\nseed = {range = 32}\n")
    out = tmp_path / "out"
    mp = pytest.MonkeyPatch()
    _stop_after_saves(mp, 1)
    with pytest.raises(KeyboardInterrupt):
        ts.run(str(cfg), out=out, chunk_size=CHUNK, progress=False)
    mp.undo()
    return cfg, csv, out


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_resume_refuses_other_config_or_data_and_never_overwrites(csv_sweep, capsys):
    cfg, csv, out = csv_sweep
    before = _tree(out)
    cases = [
        (["--resume", "--set", "train.steps=100"], "train.steps: 200 -> 100"),
        (["--resume", "--set", "sweep.seed=[0, 1]"], "sweep.seed"),
        ([], "--resume"),  # an interrupted sweep is never restarted over
    ]
    for extra, msg in cases:
        rc = main(["run", str(cfg), "--out", str(out), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    original = csv.read_text()
    csv.write_text(original.replace("label\n", "label\n9.5,9.5,1.0\n", 1))  # edited data
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data changed" in err and len(err.strip().splitlines()) == 1
    assert _tree(out) == before

    csv.write_text(original)
    # early exit changes no result, so the sweep resumes with the other value
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress",
                 "--no-plot", "--set", "train.early_exit=false"]) == 0
    fresh = ts.run(str(cfg), out=None, progress=False)
    assert fresh.meta["engine"]["early_exit"] is True
    res = ts.load(out)
    pd.testing.assert_frame_equal(res.runs, fresh.runs, check_exact=True)
    pd.testing.assert_frame_equal(res.curves, fresh.curves, check_exact=True)
    assert res.meta["timings"]["resumed_runs"] == CHUNK

    finished = _tree(out)
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert "already holds results" in capsys.readouterr().err
    # resuming a finished sweep computes nothing and changes nothing
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress",
                 "--no-plot"]) == 0
    assert _tree(out) == finished


def test_resume_after_an_upgrade_finished_yes_interrupted_no(csv_sweep, capsys, monkeypatch):
    """Another trainscape version may round differently, so it never continues an interrupted
    sweep; a finished one is returned as it is on disk, so `--resume` in a job script keeps
    working after an upgrade (but not with another config)."""
    cfg, _, out = csv_sweep
    monkeypatch.setattr(trainscape.version, "__version__", "9.9.9")
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "software changed" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress",
                 "--no-plot"]) == 0
    finished = _tree(out)
    monkeypatch.setattr(trainscape.version, "__version__", "9.9.9")
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress",
                 "--no-plot"]) == 0
    assert _tree(out) == finished
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--no-progress",
                 "--set", "train.steps=100"]) == 2
    assert "train.steps: 200 -> 100" in capsys.readouterr().err
    assert _tree(out) == finished


def test_store_states_notes_and_a_fingerprint_that_gained_a_key(tmp_path):
    """An unfinished folder counts its chunks by ceiling division and the runs still missing;
    a resume whose fingerprint has a key the folder's lacks (runs of a given table) is
    refused; a resume keeps the folder's chunk size; a folder of final files beside chunk
    files is unfinished."""
    fp = {"config": {"name": "a"}, "data": "d0"}
    r = tmp_path / "r"
    with store.Store(r, fp, 5, 2, resume=False) as st:
        st.save_chunk(0, pd.DataFrame({"run_id": [0, 1]}),
                      pd.DataFrame({"run_id": [0, 1], "step": [0, 0], "loss": [1.0, 2.0]}))
    assert store.folder_state(r) == "interrupted"
    assert "(1 of 3 chunks saved, 3 of 5 runs missing)" in store.unfinished_note(r)
    with pytest.raises(ts.InputError, match="table changed"):
        store.Store(r, {**fp, "table": "t0"}, 5, 2, resume=True)
    assert store.Store(r, fp, 5, 4, resume=True).chunk_size == 2
    f = tmp_path / "f"
    f.mkdir()
    (f / "runs.parquet").write_bytes(b"")
    (f / "meta.json").write_text("{}")
    assert store.folder_state(f) == "finished"
    (f / "chunks").mkdir()
    (f / "chunks" / "runs-000000.parquet").write_bytes(b"")
    assert store.folder_state(f) == "interrupted"


def _chunk(ids):
    return (pd.DataFrame({"run_id": ids}),
            pd.DataFrame({"run_id": ids, "step": [0] * len(ids), "loss": [1.0] * len(ids)}))


def test_a_journal_record_cut_short_does_not_swallow_the_next(tmp_path):
    """A kill mid-append leaves a record without its newline; a resumed store starts the next
    record on a line of its own, so the chunk saved after it counts as done."""
    r = tmp_path / "r"
    with store.Store(r, {"x": 1}, 6, 2, resume=False) as st:
        st.save_chunk(0, *_chunk([0, 1]))
    with open(r / "chunks" / "done.jsonl", "a") as f:
        f.write('{"index": 1, "runs": 2, "sha')
    with store.Store(r, {"x": 1}, 6, 2, resume=True) as st:
        st.save_chunk(2, *_chunk([4, 5]))
        assert st.done_chunks() == {0, 2}


def test_chunks_saved_out_of_order_are_assembled_in_order(tmp_path):
    """Final files streamed while chunks are saved take chunks 0, 1, ... only; chunks saved
    in another order are assembled from their files, in chunk order."""
    r = tmp_path / "r"
    with store.Store(r, {"x": 1}, 4, 2, resume=False) as st:
        st.stream_final()
        st.save_chunk(1, *_chunk([2, 3]))
        st.save_chunk(0, *_chunk([0, 1]))
        st.assemble(2)
    assert pd.read_parquet(r / "runs.parquet")["run_id"].tolist() == [0, 1, 2, 3]
    assert pd.read_parquet(r / "curves.parquet")["run_id"].tolist() == [0, 1, 2, 3]


def test_a_recomputed_chunk_counts_by_its_latest_record(tmp_path):
    """A chunk saved again (recomputed after a checksum mismatch) is done by the checksums
    of its latest journal record, not refused for ever by the first one's."""
    r = tmp_path / "r"
    with store.Store(r, {"x": 1}, 2, 2, resume=False) as st:
        st.save_chunk(0, *_chunk([0, 1]))
        runs, curves = _chunk([0, 1])
        st.save_chunk(0, runs, curves.assign(loss=[3.0, 4.0]))
        assert st.done_chunks() == {0}


def test_a_lock_left_with_this_process_id_is_taken(tmp_path):
    """A lock file naming this very process (no other holds it) does not refuse a resume."""
    import socket

    r = tmp_path / "r"
    with store.Store(r, {"x": 1}, 2, 2, resume=False):
        pass
    (r / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    with store.Store(r, {"x": 1}, 2, 2, resume=True) as st:
        assert st.done_chunks() == set()


def test_the_data_fingerprint_tells_shapes_and_dtypes_apart():
    """Arrays of the same bytes in another shape or dtype are other data to a resume."""
    zeros = np.zeros(8)
    hashes = {store.hash_arrays(a) for a in (zeros, zeros.reshape(4, 2), zeros.reshape(2, 4),
                                             zeros.view(np.int64))}
    assert len(hashes) == 4
    assert store.hash_arrays(zeros) == store.hash_arrays(np.zeros(8))


def test_resume_into_final_files_without_a_manifest_is_refused(tmp_path):
    """Final files with no manifest (saved by Results.save, or the manifest deleted) cannot be
    checked against the sweep asked for, so they are never returned as its results."""
    r = tmp_path / "r"
    r.mkdir()
    (r / "runs.parquet").write_bytes(b"")
    (r / "meta.json").write_text("{}")
    with pytest.raises(ts.InputError, match="without manifest.json"):
        store.Store(r, {"x": 1}, 2, 2, resume=True)


def test_foreign_folder_is_never_written_into(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own file")
    cfg = _write(tmp_path / "c.toml", STATIC + "[sweep]\nlearning_rate = [0.1]\n")
    for extra in ([], ["--resume"]):
        assert main(["run", str(cfg), "--out", str(out), *extra]) == 2
        assert "notes.txt" in capsys.readouterr().err
    assert _tree(out) == {"notes.txt": b"my own file"}


# ----------------------------------------------------------------- bad input

BASE = 'name = "bad"\n' + STATIC + "[sweep]\nlearning_rate = [0.1, 1.0]\n"
FILE_CFG = """name = "bad"
[data]
path = "{path}"
target = "{target}"
[model]
hidden = [16]
[sweep]
learning_rate = [0.1, 1.0]
"""


def _with_sets(*sets):
    def make(tmp):
        cfg = _write(tmp / "c.toml", BASE)
        return [str(cfg), *[a for s in sets for a in ("--set", s)]]
    return make


def _toml(text):
    def make(tmp):
        return [str(_write(tmp / "c.toml", text))]
    return make


def _csv(body, target="y"):
    def make(tmp):
        _write(tmp / "d.csv", body)
        return [str(_write(tmp / "c.toml", FILE_CFG.format(path=tmp / "d.csv", target=target)))]
    return make


def _npz_mismatch(tmp):
    np.savez(tmp / "d.npz", x=np.zeros((10, 2)), y=np.zeros(9))
    return [str(_write(tmp / "c.toml", FILE_CFG.format(path=tmp / "d.npz", target="y")))]


def _out_under_file(tmp):
    _write(tmp / "afile", "x")
    return [str(_write(tmp / "c.toml", BASE)), "--out", str(tmp / "afile" / "out")]


def _out_is_file(tmp):
    _write(tmp / "afile", "x")
    return [str(_write(tmp / "c.toml", BASE)), "--out", str(tmp / "afile")]


def _out_read_only(tmp):
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return [str(_write(tmp / "c.toml", BASE)), "--out", str(tmp / "ro" / "out")]


BAD = {
    "negative lr": (_with_sets("sweep.learning_rate=[-0.1, 0.1]"), "must be positive"),
    "zero lr": (_with_sets("sweep.learning_rate=[0.0]"), "must be positive"),
    "nan lr": (_toml(BASE.replace("[0.1, 1.0]", "[0.1, nan]")), "finite"),
    "inf lr": (_with_sets("sweep.learning_rate=[inf]"), "finite"),
    "nan default lr": (_with_sets("optimizer.learning_rate=nan"), "learning_rate"),
    "string lr": (_with_sets('sweep.learning_rate=["0.1"]'), "expected a number"),
    "string steps": (_with_sets('train.steps="100"'), "steps"),
    "empty axis": (_with_sets("sweep.learning_rate=[]"), "empty"),
    "empty range": (_with_sets("sweep.seed={range = 0}"), "empty range"),
    "duplicated values": (_with_sets("sweep.learning_rate=[0.1, 0.1]"), "duplicated"),
    "duplicated key": (_toml(BASE + "learning_rate = [0.5]\n"), "line 12"),
    "syntax error": (_toml(BASE.replace("steps = 200", "steps = = 200")), "line 9"),
    "unknown section": (_toml(BASE.replace("[train]", "[trian]")), "did you mean 'train'"),
    "unknown key": (_with_sets("train.stpes=3"), "did you mean 'steps'"),
    "unknown axis": (_with_sets("sweep.learnin_rate=[0.1]"), "did you mean 'learning_rate'"),
    "zero width": (_with_sets("model.hidden=[0]"), "positive"),
    "negative width": (_with_sets("model.hidden=[16, -4]"), "positive"),
    "zero steps": (_with_sets("train.steps=0"), "positive"),
    "negative steps": (_with_sets("train.steps=-5"), "positive"),
    "unknown dataset": (_with_sets("data.name=moon"), "did you mean 'moons'"),
    "unknown dtype": (_with_sets("train.dtype=float16"), "float32"),
    "missing file": (_toml(FILE_CFG.format(path="nowhere.csv", target="y")), "not found"),
    "missing target": (_csv("a,b,y\n1,2,0\n3,4,1\n", target="label"), "'label'"),
    "nan in csv": (_csv("a,b,y\n1,2,0\nnan,4,1\n5,6,0\n"), "NaN/inf"),
    "inf in csv": (_csv("a,b,y\n1,2,0\n3,inf,1\n5,6,0\n"), "NaN/inf"),
    "npz rows": (_npz_mismatch, "10 rows but y has 9"),
    "out under a file": (_out_under_file, "cannot be written"),
    "out is a file": (_out_is_file, "is a file"),
    "out read-only": (_out_read_only, "cannot be written"),
    "too big": (_with_sets("data.n_samples=100000", "model.hidden=[4096, 4096]"),
                "needs about"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_exit_2_one_line_nothing_written_nothing_compiled(name, tmp_path,
                                                                    monkeypatch, capsys, traces):
    if name == "out read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    make, msg = BAD[name]
    monkeypatch.chdir(tmp_path)
    argv = ["run", *make(tmp_path), "--no-progress"]
    before, traced = _tree(tmp_path), traces()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("trainscape: error: "), err
    assert msg in err, err
    assert _tree(tmp_path) == before and not (tmp_path / "results").exists()
    assert traces() == traced  # refused before compiling


def test_bad_input_in_a_real_process_prints_one_line(tmp_path):
    cfg = _write(tmp_path / "c.toml", BASE.replace("[0.1, 1.0]", "[0.1, nan]"))
    r = subprocess.run(_cli(cfg), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# ----------------------------------------------------------------- memory


@pytest.mark.parametrize("cfg, together", [
    ({"data": {"name": "moons", "n_samples": 64}, "model": {"hidden": [8, 8]},
      "train": {"steps": 30}}, plan.BLOCK),
    ({"data": {"name": "moons", "n_samples": 256}, "model": {"hidden": [300]},
      "train": {"steps": 10, "dtype": "float64"}, "optimizer": {"name": "adam"}}, plan.BLOCK),
    ({"data": {"name": "breast_cancer"}, "model": {"hidden": [128, 64]},
      "train": {"steps": 20}}, 1),
], ids=["tiny", "wide-adam-float64", "seed-network"])
@pytest.mark.cpu_only("the CPU's sub-batch groups")
def test_memory_estimate_bounds_what_xla_allocates(cfg, together, x64):
    """The estimate for one block against XLA's own count for the compiled block program
    (arguments + outputs + temporaries): never below it, and within 4.5x. The seed network
    trains its runs one at a time (plan.sub_batch), so only one run's activations are alive;
    the estimate counted all 32 until it was told (`active_runs`), and erred 24x high."""
    prep = prepare.Prepared(ts.parse({**cfg, "sweep": {"learning_rate": [0.1]}}))
    st = prep.static
    assert plan.sub_batch(st, prep.x, "cpu") == together
    dt = np.float64 if st.dtype == "float64" else np.float32
    hp = {k: v.astype(np.int32 if k == "seed" else dt)
          for k, v in prep.hparams(np.arange(plan.BLOCK)).items()}
    init = engine_compile.compiled_init(st.model)(hp["seed"])
    real = np.ones(plan.BLOCK, bool)
    m = (engine_compile.compiled_sweep(st, ()).lower(hp, prep.x.astype(dt), prep.y.astype(dt), init,
                                             real).compile().memory_analysis())
    actual = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    widths = (*cfg["model"]["hidden"], 1)
    est = memory.estimate_bytes(plan.n_params(st), prep.x.shape[0], prep.x.shape[1], widths,
                                st.steps // st.record_every + 1, plan.BLOCK, st.dtype,
                                active_runs=together)
    assert actual <= est <= 4.5 * actual, (est, actual)


@pytest.mark.cpu_only("the CPU's sub-batch groups")
def test_a_network_trained_a_run_at_a_time_is_not_refused_for_its_whole_block(monkeypatch):
    """A grid of a few runs of a network too big for a CPU's whole block of activations, but
    trained one run at a time per device (as `plan.sub_batch` has it): the memory check
    must count one run's activations per device, not 32 (it refused such a grid claiming 197
    GiB for a 100,000-sample 1024-1024 network on a 24 GB machine)."""
    prep = prepare.Prepared(ts.parse({
        "data": {"name": "blobs", "n_samples": 100_000}, "model": {"hidden": [1024, 1024]},
        "train": {"steps": 2}, "sweep": {"learning_rate": [0.1], "seed": {"range": 2}}}))
    devices = plan.run_devices()
    group = prep.block * len(devices)
    activations = 4 * 100_000 * (1024 + 1024 + 1) * 4  # memory.ACTIVATION_COPIES, float32
    need = plan.memory_need(prep, group)
    assert plan.sub_batch(prep.static, prep.x, "cpu") == 1
    assert len(devices) * activations <= need < 2 * len(devices) * activations
    monkeypatch.setattr(memory, "device_memory_bytes", lambda d: 4 * need)
    plan.check_memory(prep)  # not refused
    monkeypatch.setattr(memory, "device_memory_bytes", lambda d: need // 2)
    with pytest.raises(ts.InputError, match="grid too large"):
        plan.check_memory(prep)


def test_the_sharpness_basis_is_counted_as_lanczos_keeps_it():
    """Lanczos keeps min(sharpness_iters, parameters) basis vectors (nn.curvature): counting
    sharpness_iters of them refused metrics.sharpness_iters = 2**31 on a 17-parameter network
    as a grid too large for the machine, with a message naming other keys."""
    base = {"data": {"name": "moons", "n_samples": 64}, "model": {"hidden": [4]},
            "train": {"steps": 2}, "sweep": {"learning_rate": [0.1, 1.0]}}

    def need(**metrics):
        prep = prepare.Prepared(ts.parse({**base, "metrics": metrics}))
        return prep, plan.memory_need(prep, 2)

    prep, plain = need()
    n = plan.n_params(prep.static)
    assert n == 2 * 4 + 4 + 4 + 1
    per_vector = 2 * n * 4  # two runs, float32
    assert need(sharpness=True, sharpness_iters=n - 1)[1] == plain + (n + 1) * per_vector
    for iters in (n, n + 1, 2**31):
        prep, got = need(sharpness=True, sharpness_iters=iters)
        assert got == plain + (n + 2) * per_vector, iters
        plan.check_memory(prep)  # not refused


def test_memory_estimate_and_device_memory():
    one = memory.estimate_bytes(100, 50, 2, (16, 1), 21, 1, "float32")
    assert one == (6 * 100 + 4 * 50 * 17) * 4 + (3 * 21 + 32) * 4 + 50 * 3 * 4
    assert memory.estimate_bytes(100, 50, 2, (16, 1), 21, 64, "float32") > 60 * one
    assert memory.estimate_bytes(100, 50, 2, (16, 1), 21, 1, "float64") > one
    avail = memory.device_memory_bytes()
    assert isinstance(avail, int) and avail > 0
    need = lambda k: 1000 * k  # noqa: E731
    assert plan.fit_runs(need, 256, 64, None) == 256
    assert plan.fit_runs(need, 256, 64, 10**9) == 256
    assert plan.fit_runs(need, 256, 64, 130_000) == 128
    assert plan.fit_runs(need, 256, 64, 1000) == 0


def test_grid_larger_than_device_refused_before_anything(tmp_path, monkeypatch, traces):
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device=None: 10_000)
    traced = traces()
    with pytest.raises(ts.InputError, match=r"needs about .* but 9\.8 KiB is available"):
        ts.run(STATIC_DICT, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and traces() == traced


STATIC_DICT = {"data": {"name": "moons", "n_samples": 128}, "model": {"hidden": [16]},
               "train": {"steps": 200}, "sweep": {"learning_rate": [0.1, 1.0]}}


def test_dispatch_shrinks_to_what_the_estimate_says_fits(monkeypatch):
    prep = prepare.Prepared(schema.resolve_config(STATIC_DICT))
    group = prep.block * len(plan.run_devices())
    one_block = plan.memory_need(prep, group)
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device=None: one_block + 1)
    assert plan.fit_dispatch(prep, 4 * group) == group


class FakeXlaError(RuntimeError):
    """Stands in for jax.errors.JaxRuntimeError."""


def _oom_engine(monkeypatch, fail_times: int, message: str):
    real, calls = execute.run_chunks, []

    def run_chunks(static, hp, x, y, init_params=None, chunk_size=None, skip=frozenset(),
                   test=()):
        calls.append(chunk_size)
        if len(calls) <= fail_times:
            raise FakeXlaError(message)
        yield from real(static, hp, x, y, init_params, chunk_size, skip, test)

    monkeypatch.setattr(execute, "run_chunks", run_chunks)
    return calls


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_allocation_failure_halves_the_dispatch_and_keeps_chunks(big_cfg, reference, tmp_path,
                                                                 monkeypatch, capsys):
    calls = _oom_engine(monkeypatch, 1, "RESOURCE_EXHAUSTED: Out of memory while trying to "
                                        "allocate 123456 bytes.")
    out = tmp_path / "out"
    res = ts.run(str(big_cfg), out=out, chunk_size=2 * CHUNK, progress=False)
    assert "retrying 64 runs at a time" in capsys.readouterr().err
    assert calls[:2] == [2 * CHUNK, CHUNK] and set(calls[1:]) == {CHUNK}
    t = res.meta["timings"]
    assert t["chunk_size"] == 2 * CHUNK and t["chunk_size_settled"] == CHUNK
    assert json.loads((out / "meta.json").read_text())["timings"]["chunk_size_settled"] == CHUNK
    assert json.loads((out / "manifest.json").read_text())["chunk_size"] == 2 * CHUNK
    _same_files(out, reference)


@pytest.mark.cpu_only("counts the CPU's blocks")
def test_out_of_memory_at_one_block_stops_with_resume_hint(tmp_path, monkeypatch, capsys):
    _oom_engine(monkeypatch, 99, "Allocator (GPU_0_bfc) ran out of memory")
    cfg = _write(tmp_path / "c.toml", STATIC + "[sweep]\nlearning_rate = [0.1]\n")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "ran out of memory even at 64 runs" in err and "--resume" in err
    assert not (out / ".lock").exists()


def test_other_errors_are_not_retried(tmp_path, monkeypatch):
    _oom_engine(monkeypatch, 99, "INTERNAL: a bug")
    with pytest.raises(FakeXlaError, match="a bug"):
        ts.run(STATIC_DICT, out=None, progress=False)


# ----------------------------------------------------------------- blow-ups


def test_huge_learning_rates_finish_as_diverged(tmp_path, capsys):
    # lr >= 1e5 blows up in the first step. (At 1e3 training is chaotic, not doomed: with 0.5.0
    # one seed's loss spiked to 461 and then fell to 1e-12, its tanh units saturated into a
    # separating solution, and it is rightly a catapult.)
    cfg = _write(tmp_path / "c.toml", STATIC + "[sweep]\nlearning_rate = [1e5, 1e7, 1e9, 1e11]\n"
                 "seed = [0, 1]\n")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "diverged" in capsys.readouterr().out
    res = ts.load(out)
    runs = res.runs
    assert (runs["label"] == "diverged").all() and runs["diverged_step"].notna().all()
    assert (out / "heatmap.png").is_file()
    # counted, never dropped: every run appears in the diverged column
    counts = label_counts(runs)
    assert (counts["diverged"] == 2).all() and counts["total"].sum() == len(runs)
    # from diverged_step on, the loss is either gone (frozen at a blow-up) or above where it
    # started (the final stretch above the initial loss)
    c = res.curves.merge(runs[["run_id", "diverged_step", "initial_loss"]], on="run_id")
    after = c[c.step >= c.diverged_step]
    assert (after["loss"].isna() | (after["loss"] > after["initial_loss"])).all()


# ----------------------------------------------------------------- damaged results folders


def _small_results(folder: Path) -> Path:
    """A finished results folder written by hand (no training): 2 runs, 400 recorded steps."""
    runs = pd.DataFrame({"run_id": [0, 1], "learning_rate": [0.1, 1.0],
                         "label": ["converged", "diverged"], "final_loss": [0.1, 9.0]})
    steps = np.arange(400)
    curves = pd.DataFrame({"run_id": np.repeat([0, 1], 400), "step": np.tile(steps, 2),
                           "loss": np.concatenate([np.exp(-steps / 100), np.exp(steps / 100)])})
    exp = ts.parse({"name": "small", "sweep": {"learning_rate": [0.1, 1.0]}})
    return ts.Results(runs=runs, curves=curves, config=exp).save(folder)


def _junk(name):
    def damage(folder):
        (folder / name).write_bytes(b"\x00junk" * 20)
    return damage


def _pages_overwritten(name):
    def damage(folder):  # footer intact: only reading the data finds it
        f = folder / name
        b = bytearray(f.read_bytes())
        b[4:len(b) // 2] = b"\xff" * (len(b) // 2 - 4)
        f.write_bytes(bytes(b))
    return damage


DAMAGE = {
    "junk runs": (_junk("runs.parquet"), "runs.parquet"),
    "junk curves": (_junk("curves.parquet"), "curves.parquet"),
    "junk meta": (lambda f: (f / "meta.json").write_text("{not json"), "meta.json"),
    "meta without config": (lambda f: (f / "meta.json").write_text("{}"), "meta.json"),
    "meta not an object": (lambda f: (f / "meta.json").write_text("[1, 2]"), "meta.json"),
    "config not a table": (lambda f: (f / "meta.json").write_text('{"config": "x.toml"}'),
                           "meta.json"),
    "bad config in meta": (lambda f: (f / "meta.json").write_text(
        '{"config": {"train": {"steps": 0}}}'), "meta.json"),
    "wrong table": (lambda f: pd.DataFrame({"a": [1]}).to_parquet(f / "runs.parquet"),
                    "runs.parquet"),
    "runs pages": (_pages_overwritten("runs.parquet"), "runs.parquet"),
    "curves pages": (_pages_overwritten("curves.parquet"), "curves.parquet"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
@pytest.mark.parametrize("command", ["report", "compare-precision"])
def test_damaged_results_folder_is_one_line_naming_the_file(name, command, tmp_path, capsys):
    damage, file = DAMAGE[name]
    if command == "compare-precision" and name == "curves pages":
        pytest.skip("compare-precision reads no curves")
    ok = _small_results(tmp_path / "ok")
    bad = _small_results(tmp_path / "bad")
    damage(bad)
    before = _tree(tmp_path)
    argv = ["report", str(bad)] if command == "report" else [command, str(ok), str(bad)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and str(bad / file) in err, err
    assert _tree(tmp_path) == before


def test_a_results_file_is_not_a_results_folder(tmp_path, capsys):
    ok = _small_results(tmp_path / "ok")
    for argv in (["report", str(ok / "runs.parquet")],
                 ["compare-precision", str(ok), str(ok / "meta.json")]):
        assert main(argv) == 2
        assert "is a file; give the folder" in capsys.readouterr().err
