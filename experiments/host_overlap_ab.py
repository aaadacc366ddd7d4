"""A sweep on disk with the host's work beside the compute, against the same sweep with it done
after each chunk, in one process. Three forms (`runner.OVERLAP_HOST_WORK`,
`runner.STREAM_FINAL_FILES`):

- `overlapped` (the default): a chunk's tables, Parquet files and checksums made in a worker
  thread while the next chunk computes, and the final files written as the chunks are saved;
- `one_after_the_other`: the same work in the main thread after each chunk;
- `assembled_after`: that, and the final files assembled from the chunk files after the last
  chunk (0.12.1's way; a resumed sweep still does this).

`ts.run(config, out=DIR)` is timed end to end in rotating rounds (`bench._time_rounds`), after
one call of each form that compiles and whose tables are checked equal. Cases:

- `tiny`: a network of 8 units on 64 moons, 16,384 runs x 200 steps: little compute per run,
  so the host's part is large (on a 2-core CPU about 40% of the sweep);
- `memory`: the memory bench's 2-4-1 network, 20 steps, at 100,000 runs: hardly any compute,
  the files are most of the sweep;
- `small`, `diverging`, `seed`: the bench workloads of that name, written to disk.

    PYTHONPATH=src python experiments/host_overlap_ab.py --cases tiny,small --rounds 4 \\
        --out results/bench/DIR

`--chunk-size` forces chunks of that many runs (on a GPU the automatic size may make one
chunk, with nothing to overlap). Writes DIR/host_overlap_ab.json after every case.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import pandas as pd

import trainscape as ts
from trainscape.bench import memory as memory_bench
from trainscape.bench import peers as bench
from trainscape.sweep import runner

TINY = {"name": "host-tiny", "data": {"name": "moons", "n_samples": 64},
        "model": {"hidden": [8]}, "train": {"steps": 200},
        "sweep": {"learning_rate": {"geomspace": [0.01, 10.0], "num": 64},
                  "seed": {"range": 256}}}
# form: (runner.OVERLAP_HOST_WORK, runner.STREAM_FINAL_FILES)
FORMS = {"overlapped": (True, True), "one_after_the_other": (False, True),
         "assembled_after": (False, False)}


CASES = ("tiny", "memory", *bench.WORKLOADS)


def _config(case: str) -> dict:
    if case == "tiny":
        return TINY
    if case == "memory":  # the memory bench's sweep at 100,000 runs
        return memory_bench.config(100_000)
    return bench.workload_config(case)


def _sweep(cfg: dict, form: tuple[bool, bool], chunk_size: int | None, scratch: Path,
           keep=False):
    """One `ts.run` to a fresh folder under `scratch`, removed afterwards unless `keep`."""
    runner.OVERLAP_HOST_WORK, runner.STREAM_FINAL_FILES = form
    out = Path(tempfile.mkdtemp(dir=scratch)) / "sweep"
    try:
        res = ts.run(cfg, out=out, progress=False, chunk_size=chunk_size)
        return (res.runs, res.curves, res.meta["timings"]) if keep else None
    finally:
        runner.OVERLAP_HOST_WORK = runner.STREAM_FINAL_FILES = True
        shutil.rmtree(out.parent, ignore_errors=True)


def measure(case: str, rounds: int, chunk_size: int | None, scratch: Path) -> dict:
    cfg = _config(case)
    first = {name: _sweep(cfg, form, chunk_size, scratch, keep=True)
             for name, form in FORMS.items()}
    (runs_a, curves_a, timing), *others = first.values()
    for runs_b, curves_b, _ in others:
        pd.testing.assert_frame_equal(runs_a, runs_b, check_exact=True)
        pd.testing.assert_frame_equal(curves_a, curves_b, check_exact=True)
    run_steps = len(runs_a) * cfg["train"]["steps"]
    setups = {name: ({"run_steps_timed": run_steps},
                     lambda form=form: _sweep(cfg, form, chunk_size, scratch))
              for name, form in FORMS.items()}
    timed = bench._time_rounds(setups, rounds, case, sys.stderr)
    best = {f: timed[f]["best_seconds"] for f in FORMS}
    return {"case": case, "runs": len(runs_a), "steps": cfg["train"]["steps"],
            "n_chunks": timing["n_chunks"], "chunk_size": timing["chunk_size"],
            "tables_equal": True,
            "seconds": {f: timed[f]["seconds"] for f in FORMS},
            "best_seconds": {f: timed[f]["best_seconds"] for f in FORMS},
            "run_steps_per_s": {f: timed[f]["run_steps_per_s"] for f in FORMS},
            "overlapped_over_one_after_the_other":
                best["overlapped"] / best["one_after_the_other"],
            "overlapped_over_assembled_after": best["overlapped"] / best["assembled_after"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="tiny,small", help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; allowed: {', '.join(CASES)}")
    ts.configure()
    a.out.mkdir(parents=True, exist_ok=True)
    report = {"environment": runner.environment(), "backend": jax.default_backend(),
              "rounds": a.rounds, "chunk_size": a.chunk_size, "cases": []}
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            r = measure(case, a.rounds, a.chunk_size, Path(scratch))
            report["cases"].append(r)
            b = r["best_seconds"]
            print(f"{case}: {r['runs']} runs in {r['n_chunks']} chunks; best of {a.rounds}: "
                  f"overlapped {b['overlapped']:.3f} s, one after the other "
                  f"{b['one_after_the_other']:.3f} s, assembled after the last chunk "
                  f"{b['assembled_after']:.3f} s; overlapped over the others "
                  f"{r['overlapped_over_one_after_the_other']:.3f}, "
                  f"{r['overlapped_over_assembled_after']:.3f}", flush=True)
            (a.out / "host_overlap_ab.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
