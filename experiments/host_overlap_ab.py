"""A sweep on disk with the host's work overlapped with the next chunk's compute, against the
same sweep with it done after each chunk (`runner.OVERLAP_HOST_WORK`), in one process.

The host's work on a chunk is its runs and curves tables, its Parquet files and their
checksums. `ts.run(config, out=DIR)` is timed end to end (the final files' assembly, which
cannot overlap, included) in rotating rounds (`bench._time_rounds`), after one call of each
form that compiles and whose tables are checked equal. Cases:

- `tiny`: a network of 8 units on 64 moons, 16,384 runs x 200 steps: little compute per run,
  so the host's part is large (on a 2-core CPU about 40% of the sweep);
- `small`, `diverging`: the bench workloads of that name, written to disk.

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
from trainscape.bench import peers as bench
from trainscape.sweep import runner

TINY = {"name": "host-tiny", "data": {"name": "moons", "n_samples": 64},
        "model": {"hidden": [8]}, "train": {"steps": 200},
        "sweep": {"learning_rate": {"geomspace": [0.01, 10.0], "num": 64},
                  "seed": {"range": 256}}}
FORMS = {"overlapped": True, "one_after_the_other": False}


def _config(case: str) -> dict:
    return TINY if case == "tiny" else bench.workload_config(case)


def _sweep(cfg: dict, overlap: bool, chunk_size: int | None, scratch: Path, keep=False):
    """One `ts.run` to a fresh folder under `scratch`, removed afterwards unless `keep`."""
    runner.OVERLAP_HOST_WORK = overlap
    out = Path(tempfile.mkdtemp(dir=scratch)) / "sweep"
    try:
        res = ts.run(cfg, out=out, progress=False, chunk_size=chunk_size)
        return (res.runs, res.curves, res.meta["timings"]) if keep else None
    finally:
        runner.OVERLAP_HOST_WORK = True
        shutil.rmtree(out.parent, ignore_errors=True)


def measure(case: str, rounds: int, chunk_size: int | None, scratch: Path) -> dict:
    cfg = _config(case)
    first = {form: _sweep(cfg, on, chunk_size, scratch, keep=True) for form, on in FORMS.items()}
    (runs_a, curves_a, timing), (runs_b, curves_b, _) = first.values()
    pd.testing.assert_frame_equal(runs_a, runs_b, check_exact=True)
    pd.testing.assert_frame_equal(curves_a, curves_b, check_exact=True)
    run_steps = len(runs_a) * cfg["train"]["steps"]
    setups = {form: ({"run_steps_timed": run_steps},
                     lambda on=on: _sweep(cfg, on, chunk_size, scratch))
              for form, on in FORMS.items()}
    timed = bench._time_rounds(setups, rounds, case, sys.stderr)
    on, off = (timed[f]["best_seconds"] for f in FORMS)
    return {"case": case, "runs": len(runs_a), "steps": cfg["train"]["steps"],
            "n_chunks": timing["n_chunks"], "chunk_size": timing["chunk_size"],
            "tables_equal": True,
            "seconds": {f: timed[f]["seconds"] for f in FORMS},
            "best_seconds": {f: timed[f]["best_seconds"] for f in FORMS},
            "run_steps_per_s": {f: timed[f]["run_steps_per_s"] for f in FORMS},
            "overlapped_over_one_after_the_other": on / off}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="tiny,small",
                    help="comma-separated: tiny, " + ", ".join(bench.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    cases = a.cases.split(",")
    unknown = [c for c in cases if c != "tiny" and c not in bench.WORKLOADS]
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; allowed: tiny, "
                 + ", ".join(bench.WORKLOADS))
    ts.configure()
    a.out.mkdir(parents=True, exist_ok=True)
    report = {"environment": runner.environment(), "backend": jax.default_backend(),
              "rounds": a.rounds, "chunk_size": a.chunk_size, "cases": []}
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            r = measure(case, a.rounds, a.chunk_size, Path(scratch))
            report["cases"].append(r)
            print(f"{case}: {r['runs']} runs in {r['n_chunks']} chunks; best of {a.rounds}: "
                  f"overlapped {r['best_seconds']['overlapped']:.3f} s, one after the other "
                  f"{r['best_seconds']['one_after_the_other']:.3f} s, ratio "
                  f"{r['overlapped_over_one_after_the_other']:.3f}", flush=True)
            (a.out / "host_overlap_ab.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
