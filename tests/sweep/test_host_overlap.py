"""A chunk's tables are built and saved in a thread of their own while the next chunk computes
(`runner._HostWork`): the same tables either way, saves in chunk order, nothing computed lost."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from configs import SCALE_TINY, chunk_unit

import trainscape as ts
from trainscape.io import store
from trainscape.sweep import runner

CHUNK = chunk_unit(SCALE_TINY)  # runs per chunk: a block on each device
N_CHUNKS = 4
CFG = {**SCALE_TINY, "sweep": {**SCALE_TINY["sweep"],
                               "seed": {"range": N_CHUNKS * CHUNK // 16}}}


def _run(out, **kw):
    return ts.run(CFG, out=out, progress=False, chunk_size=CHUNK, **kw)


@pytest.fixture(scope="module")
def serial():
    """The sweep in memory with the host's work done after each chunk, in the main thread."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "OVERLAP_HOST_WORK", False)
        return _run(None)


def _saved(out) -> set[int]:
    return {i for i in range(N_CHUNKS) if (out / "chunks" / f"runs-{i:06d}.parquet").exists()}


def test_same_tables_in_memory_and_on_disk_as_one_after_the_other(serial, tmp_path):
    assert len(serial.runs) == N_CHUNKS * CHUNK and serial.meta["timings"]["n_chunks"] == 4
    for res in (_run(None), _run(tmp_path / "out")):
        pd.testing.assert_frame_equal(res.runs, serial.runs, check_exact=True)
        pd.testing.assert_frame_equal(res.curves, serial.curves, check_exact=True)


def test_the_next_chunk_computes_while_the_last_one_is_saved(tmp_path, monkeypatch):
    """Each save waits (up to 10 s) until the next chunk has started to compute: done one after
    the other, the next chunk would only start once the save returned."""
    started = [threading.Event() for _ in range(N_CHUNKS + 1)]
    overlapped: list[bool] = []
    real_compute, real_save = runner.compute_chunk, store.Store.save_chunk

    def compute(prep, index, *a, **k):
        started[index].set()
        return real_compute(prep, index, *a, **k)

    def save(self, index, *a, **k):
        if index + 1 < N_CHUNKS:
            overlapped.append(started[index + 1].wait(10.0))
        real_save(self, index, *a, **k)

    monkeypatch.setattr(runner, "compute_chunk", compute)
    monkeypatch.setattr(store.Store, "save_chunk", save)
    _run(tmp_path / "out")
    assert overlapped == [True] * (N_CHUNKS - 1)


def test_a_failed_save_stops_the_sweep_and_later_chunks_are_not_saved(serial, tmp_path,
                                                                      monkeypatch):
    """Chunk 1's save fails while chunk 2 computes: chunk 2 is not saved after it (the chunks
    on disk stay the first ones), the error reaches the caller, and a resume completes."""
    out = tmp_path / "out"
    real_save = store.Store.save_chunk

    def save(self, index, *a, **k):
        if index == 1:
            raise OSError(28, "No space left on device")
        real_save(self, index, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(store.Store, "save_chunk", save)
        with pytest.raises(OSError, match="No space left"):
            _run(out)
    assert _saved(out) == {0}
    res = _run(out, resume=True)
    assert res.meta["timings"]["resumed_runs"] == CHUNK
    pd.testing.assert_frame_equal(res.runs, serial.runs, check_exact=True)


def test_an_interrupt_while_a_chunk_computes_still_saves_the_one_before(serial, tmp_path,
                                                                         monkeypatch):
    """Ctrl+C (a KeyboardInterrupt) while chunk 2 computes: chunk 1, handed to the host thread
    just before, is saved before the interrupt reaches the caller."""
    out = tmp_path / "out"
    real_compute, real_save = runner.compute_chunk, store.Store.save_chunk
    release = threading.Event()

    def save(self, index, *a, **k):
        if index == 1:  # still being written when the interrupt comes
            release.wait(10.0)
        real_save(self, index, *a, **k)

    def compute(prep, index, *a, **k):
        if index == 2:
            release.set()
            raise KeyboardInterrupt
        return real_compute(prep, index, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(store.Store, "save_chunk", save)
        m.setattr(runner, "compute_chunk", compute)
        with pytest.raises(KeyboardInterrupt):
            _run(out)
    assert _saved(out) == {0, 1}
    res = _run(out, resume=True)
    assert res.meta["timings"]["resumed_runs"] == 2 * CHUNK
    pd.testing.assert_frame_equal(res.curves, serial.curves, check_exact=True)


def test_the_ab_script_times_each_form_and_restores_the_defaults(tmp_path, monkeypatch):
    """experiments/host_overlap_ab.py on a small case: each form's sweeps run with the flags it
    is named for, both flags are back on afterwards, and the ratios are the bests' (its timer
    is replaced by fixed seconds: overlapped 3 and 2, one after the other 4 and 5, assembled
    after the last chunk 6 and 8)."""
    from configs import experiment_script

    ab = experiment_script("host_overlap_ab")
    seen = []
    real_run = ab.ts.run

    def run(*a, **k):
        seen.append((runner.OVERLAP_HOST_WORK, runner.STREAM_FINAL_FILES))
        return real_run(*a, **k)

    fixed_seconds = {"overlapped": [3.0, 2.0], "one_after_the_other": [4.0, 5.0],
                     "assembled_after": [6.0, 8.0]}

    def fixed(setups, repeats, *a, **k):
        out = {}
        for form, (info, call) in setups.items():
            call()
            secs = fixed_seconds[form]
            out[form] = {**info, "seconds": secs, "best_seconds": min(secs),
                         "run_steps_per_s": info["run_steps_timed"] / min(secs)}
        return out

    monkeypatch.setattr(ab, "_config", lambda case: CFG)
    monkeypatch.setattr(ab.ts, "run", run)
    monkeypatch.setattr(ab.bench, "_time_rounds", fixed)
    r = ab.measure("tiny", 2, CHUNK, tmp_path)
    # the compared calls, then one timed call of each
    assert seen == [(True, True), (False, True), (False, False)] * 2
    assert runner.OVERLAP_HOST_WORK is True and runner.STREAM_FINAL_FILES is True
    assert (r["runs"], r["n_chunks"]) == (N_CHUNKS * CHUNK, N_CHUNKS)
    assert r["overlapped_over_one_after_the_other"] == 0.5  # 2 / 4
    assert r["overlapped_over_assembled_after"] == pytest.approx(1 / 3)  # 2 / 6
    assert r["run_steps_per_s"]["overlapped"] == N_CHUNKS * CHUNK * 6 / 2
    assert not list(tmp_path.iterdir())  # every sweep's folder removed
    with pytest.raises(SystemExit) as bad:
        ab.main(["--cases", "tiny,nope", "--out", str(tmp_path)])
    assert bad.value.code == 2


def test_the_progress_bar_counts_a_chunk_once_it_is_computed(tmp_path, monkeypatch):
    """Not once it is saved, a chunk later: with chunks of 10 s the bar would otherwise sit
    at zero for the first 20."""
    computed, at_update = [], []
    real_compute = runner.compute_chunk

    class Bar:
        def __init__(self, *a, initial=0, **k):
            pass

        def update(self, n):
            at_update.append((len(computed), n))

        def set_postfix_str(self, *a, **k):
            pass

        def close(self):
            pass

    def compute(prep, index, *a, **k):
        computed.append(index)
        return real_compute(prep, index, *a, **k)

    monkeypatch.setattr(runner, "tqdm", Bar)
    monkeypatch.setattr(runner, "compute_chunk", compute)
    _run(tmp_path / "out")
    assert at_update == [(k + 1, CHUNK) for k in range(N_CHUNKS)]
