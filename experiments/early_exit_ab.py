"""Early exit on against off, the compiled programs alone, in one process.

Times `execute.run_chunks` over a bench workload's grid (or its first seeds: `--seeds N`) with
`[train] early_exit = true` and `false`, alternating which goes first, after one compiling
call of each. No tables are built, so what differs is the training programs only. Reports the
wall-clock and the process CPU time of every call and their ratios; on a shared machine the CPU
time is the steadier figure (it does not count the time other processes hold the cores).

    PYTHONPATH=src python experiments/early_exit_ab.py diverging --rounds 4
    PYTHONPATH=src python experiments/early_exit_ab.py seed --rounds 4 --seeds 16
    PYTHONPATH=src python experiments/early_exit_ab.py small --rounds 16 --seeds 16 --order-only
    PYTHONPATH=src python experiments/early_exit_ab.py small --rounds 30 --raw 4
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import trainscape as ts
from trainscape.bench import peers as bench
from trainscape.engine import execute, plan
from trainscape.sweep import prepare, runner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=list(bench.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=None, help="only the runs of the first seeds")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--order-only", action="store_true",
                    help="'off' is early exit too, without the lead dispatch and the probe "
                         "(learning-rate order): what the ordering alone costs or saves")
    ap.add_argument("--raw", type=int, default=None, metavar="DISPATCHES",
                    help="time the compiled training program alone: this many dispatches of "
                         "the grid's first runs, in grid order, no ordering, no copies back")
    a = ap.parse_args()
    ts.configure()  # as the command line does: a CPU device per core, the compile cache
    preps = {}
    for early in (True, False):
        cfg = bench.workload_config(a.workload)
        cfg["train"]["early_exit"] = early or a.order_only
        preps[early] = prepare.Prepared(ts.parse(cfg))
    probe_share = plan.EXIT_PROBE_SHARE
    rows = np.arange(preps[True].n_runs)
    if a.seeds is not None:
        rows = rows[preps[True].table["seed"].to_numpy() < a.seeds]
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    skipped = {}

    placed = {}
    if a.raw is not None:
        for early, p in preps.items():
            placed[early] = execute.place(p.static, plan.run_devices(), p.x, p.y, None)
        rows = rows[:a.raw * placed[True].dispatch_runs]

    def run(p, early):
        if a.raw is None:
            return list(execute.run_chunks([(p.static, rows)], p.hp, p.x, p.y,
                                           chunk_size=a.chunk_size))
        pl, hdt = placed[early], np.dtype(p.static.dtype)
        trajs = [execute._dispatch(pl, p.hp, rows, g0, hdt, execute.NO_LIMIT)[1]
                 for g0 in range(0, len(rows), pl.dispatch_runs)]
        jax.block_until_ready(trajs)
        return []

    def once(early: bool, record: bool = True) -> None:
        p = preps[early]
        plan.EXIT_PROBE_SHARE = probe_share if early else 0.0  # 0: no lead, no probe
        t0, c0 = time.perf_counter(), time.process_time()
        outs = run(p, early)
        if record:
            wall[early].append(time.perf_counter() - t0)
            cpu[early].append(time.process_time() - c0)
        skipped[early] = sum(runner.skipped_run_steps(o.traj, p.static.steps) for o in outs)

    for early in (True, False):
        once(early, record=False)  # compile
    for r in range(a.rounds):
        for early in ((True, False) if r % 2 == 0 else (False, True)):
            once(early)
        print(f"round {r + 1}: wall on/off {wall[True][-1] / wall[False][-1]:.3f}, "
              f"cpu on/off {cpu[True][-1] / cpu[False][-1]:.3f}", flush=True)

    def ratios(d):
        return [x / y for x, y in zip(d[True], d[False], strict=True)]

    print(json.dumps({
        "workload": a.workload, "runs": int(len(rows)), "rounds": a.rounds,
        "chunk_size": a.chunk_size, "order_only": a.order_only, "raw_dispatches": a.raw,
        "wall_on": wall[True], "wall_off": wall[False],
        "cpu_on": cpu[True], "cpu_off": cpu[False],
        "wall_best_ratio": min(wall[True]) / min(wall[False]),
        "cpu_best_ratio": min(cpu[True]) / min(cpu[False]),
        "wall_median_round_ratio": float(np.median(ratios(wall))),
        "cpu_median_round_ratio": float(np.median(ratios(cpu))),
        "run_steps_skipped": skipped[True],
        "run_steps_total": int(len(rows)) * (preps[True].static.steps + 1),
    }))


if __name__ == "__main__":
    main()
