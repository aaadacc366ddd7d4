"""Where `ts.run`'s time goes on a benchmark workload, next to the JAX step loop.

On the H200 the engine (timed end to end through `ts.run`) ran at 0.73x (`seed`) and 0.55x
(`small`) the rate of a jitted, vmapped step driven from a Python loop. This splits the
engine's time so that a run on a GPU shows which part of it the GPU pays for:

- `train`: the compiled block programs alone, every dispatch of the grid, inputs already on the
  device, timed until the last one finishes (no host tables, no transfers back);
- `init`: the init program alone (each run's starting weights), the same way;
- `run`: `ts.run(config, out=None)` end to end, as the bench times it;
- `step_loop`: the bench's `jax_step_loop` peer (on a CPU a subset of the grid, as in the
  bench; run-steps/s are comparable);
- `variants`: the compiled block programs alone again (as `train`), rebuilt with one part of the
  engine's program swapped for the step loop's way of doing it, to tell which part of the
  program a GPU pays for. Every layout choice and derivative rule the engine makes for the
  built-in MLP was measured on XLA:CPU only (`models.feature_major`, `plan.shares_data`):
  - `samples_shared`: sample-major layers ((n, width) activations, plain `h @ w`, JAX's own
    derivative rules) with one x shared by the block's runs, which vmap folds into the first
    layer's product: the step loop's form;
  - `samples_per_run`: sample-major, each run its own broadcast copy of x (the engine's
    sample-major form, used on a CPU for networks at least as wide as their data);
  - `no_summaries`: the engine's layout, without the online summaries (`loop._update_stats`
    replaced by one that only records the loss): what they cost per step;
  - `no_early_exit`: every step computed by a `lax.scan` with a static trip count, instead of
    early exit's `while_loop`, whose condition depends on the data (on a GPU a loop condition
    may be copied to the host at every iteration);
  - `unroll4`, `unroll16`: the early-exit loop with 4 or 16 recorded blocks per iteration
    (`Static.unroll`, `plan.loop_unroll`), one condition per 4 or 16 blocks;
  - `precision_default`: matmuls at JAX's default precision instead of `highest` (TF32 on
    recent NVIDIA GPUs; results differ, so this is a measure, not an option for the engine).
  The first three are set by replacing module functions for the duration of the measurement
  (never in the library itself), the others by changing the program's `Static`; their
  results are not compared with anything.

`run - train - init` is what the host adds (transfers, tables, labels) plus any idle time
between dispatches. Rates are run-steps/s, best of `--repeats` rounds in one process: every
part and variant is compiled first, then all are timed in each round, each round starting one
further along. (Timed one after the other, as this script first did, on a 2-core CPU the
unrolled variant timed after the engine's programs measured 1.14x their speed; in rounds,
0.96x.)

    python experiments/engine_gap.py --workload small --out DIR [--repeats 3] [--steps N]

`--steps` shortens the workload for a smoke test on a CPU. Writes DIR/engine_gap.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import trainscape as ts
from trainscape import runtime
from trainscape.bench import peers as bench
from trainscape.engine import compile as engine_compile
from trainscape.engine import execute, plan
from trainscape.nn import models
from trainscape.sweep.prepare import Prepared
from trainscape.train import loop

# variants that change the program's `loop.Static`, not module functions
STATIC_VARIANTS = {"no_early_exit": {"early_exit": False}, "unroll4": {"unroll": 4},
                   "unroll16": {"unroll": 16}, "precision_default": {"matmul_precision": "default"}}
# in the order `--variants` runs them by default: the loop's form first (a run stopped by a
# time limit keeps the ones measured)
VARIANTS = ("no_early_exit", "unroll4", "no_summaries", "precision_default", "unroll16",
            "samples_shared", "samples_per_run")
assert set(STATIC_VARIANTS) <= set(VARIANTS)


def _loss_only_stats(s, loss, acc, t):
    """`loop._update_stats` without the summaries: every run stays alive, the loss and
    accuracy are recorded as they are."""
    return s, jnp.array(True), loss, acc


@contextlib.contextmanager
def variant(name: str | None):
    """The engine's program with one part swapped (see the module docstring); None: as it is.
    Compiled programs are cached per configuration, so the caches are cleared on the way in and
    on the way out."""
    swaps = {"samples_shared": [(models, "feature_major", lambda params, x: False),
                                (plan, "shares_data", lambda static, x: True)],
             "samples_per_run": [(models, "feature_major", lambda params, x: False),
                                 (plan, "shares_data", lambda static, x: False)],
             "no_summaries": [(loop, "_update_stats", _loss_only_stats)]}.get(name, [])
    if name is not None and not swaps and name not in STATIC_VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {name!r}")
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in swaps]
    engine_compile.compiled_sweep.cache_clear()
    try:
        for mod, attr, fn in swaps:
            setattr(mod, attr, fn)
        yield
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)
        engine_compile.compiled_sweep.cache_clear()


def _block_programs(prep: Prepared, **static_changes):
    """(init, train) callables: the init program and the block programs for every dispatch of
    the grid, with all their inputs on the device before anything is timed. `static_changes`:
    fields of the program's `Static` to replace."""
    st, n = prep.static._replace(**static_changes), prep.n_runs
    p = execute.place(st, plan.run_devices(), prep.x, prep.y, None)
    fn, init_fn, by_run, xd, yd, group_runs = p.train, p.init, p.by_run, p.x, p.y, p.dispatch_runs
    hdt = jnp.dtype(st.dtype)
    every, rows = prep.hparams(np.arange(n)), np.arange(n)
    batches = [execute.dispatch_inputs(every, rows, g0, group_runs, p.to_layout, hdt, by_run)
               for g0 in range(0, n, group_runs)]
    inits = jax.block_until_ready([init_fn(hp["seed"]) for hp, _ in batches])

    def init():
        jax.block_until_ready([init_fn(hp["seed"]) for hp, _ in batches])

    def train():
        jax.block_until_ready([fn(hp, xd, yd, i, real, p.test, execute.NO_LIMIT)
                               for (hp, real), i in zip(batches, inits, strict=True)])

    return init, train, len(batches), group_runs


@runtime.x64
def measure(workload: str, repeats: int = 3, steps: int | None = None,
            variants: tuple[str, ...] = (), save=None) -> dict:
    """The figures (see the module docstring). Every part and variant is compiled and warmed
    up first, then all are timed in rounds (`bench._time_rounds`: each round starts one call
    further along, garbage collected before each call), so that drift on the machine and a
    call's place in the order favour none of them; each figure is the best of `repeats`.
    `save(partial)` gets the figures after every round, so that a run stopped by a time
    limit keeps what it measured."""
    w = bench._resolve(workload)
    if steps is not None:
        w = dataclasses.replace(w, steps=steps)
    config = bench.workload_config(w)
    prep = Prepared(ts.parse(config))
    n = prep.n_runs
    devices = plan.run_devices()
    init, train, n_batches, group_runs = _block_programs(prep)

    def run():
        ts.run(config, out=None, progress=False)

    run_steps = n * w.steps
    calls = {"init": init, "train": train, "run": run}
    X, y = bench.load_data(w.data)
    info, once = bench._setup_peer("jax_step_loop", w, X, y)  # compiles and warms up
    if once is not None:
        calls["step_loop"] = once
    for name in variants:
        # traced with the variant's swaps in place; later calls reuse the compiled program
        with variant(name):
            calls[name] = _block_programs(prep, **STATIC_VARIANTS.get(name, {}))[1]
    for call in calls.values():  # compile and warm up
        call()
    out = {"workload": w.name, "runs": n, "steps": w.steps, "dispatches": n_batches,
           "runs_per_dispatch": group_runs, "backend": jax.default_backend(),
           "devices": [str(d) for d in devices]}
    if once is not None:
        out["step_loop_runs"] = info["runs_timed"]
    parts = ("init", "train", "run", "step_loop")

    def figures(best: dict[str, float], rounds: int) -> None:
        rate = {k: (info["run_steps_timed"] if k == "step_loop" else run_steps) / s
                for k, s in best.items()}
        out.update(rounds=rounds,
                   seconds={k: best[k] for k in parts if k in best},
                   run_steps_per_second={k: rate[k] for k in parts if k in rate},
                   variants={k: {"seconds": best[k], "run_steps_per_second": rate[k],
                                 "vs_train": best["train"] / best[k]}
                             for k in variants if k in best and "train" in best})
        if {"run", "train", "init"} <= set(best):
            out["host_and_idle_seconds"] = best["run"] - best["train"] - best["init"]
        if save is not None:
            save(out)

    figures(_best_of_rounds(calls, repeats, w.name, figures), repeats)
    return out


def _best_of_rounds(calls: dict, repeats: int, name: str = "", each_round=None
                    ) -> dict[str, float]:
    """Each call's best wall time over `repeats` rounds of `bench._time_rounds` (each round
    starts one call further along; garbage collected before each call). `each_round(best so
    far, rounds done)` runs after every round."""
    timed: dict[str, list[float]] = {k: [] for k in calls}

    def timer(k):
        def call():
            t0 = time.perf_counter()
            calls[k]()
            timed[k].append(time.perf_counter() - t0)
        return call

    def best() -> dict[str, float]:
        return {k: min(v) for k, v in timed.items() if v}

    def after_round():
        if each_round is not None:
            each_round(best(), max(map(len, timed.values())))

    bench._time_rounds({k: ({"run_steps_timed": 1}, timer(k)) for k in calls}, repeats, name,
                       between=after_round)
    return best()


def format_gap(r: dict) -> str:
    rate, sec = r["run_steps_per_second"], r["seconds"]
    lines = [f"{r['workload']}: {r['runs']} runs x {r['steps']} steps, {r['dispatches']} "
             f"dispatch(es) of {r['runs_per_dispatch']} runs, {r['backend']}"]
    for k in ("train", "init", "run", "step_loop"):
        if k in rate:
            lines.append(f"  {k:9s} {sec[k]:9.4f} s  {rate[k]:14,.0f} run-steps/s")
    lines.append(f"  ts.run - train - init = {r['host_and_idle_seconds']:.4f} s "
                 "(host work and idle time)")
    if "step_loop" in rate:
        lines.append(f"  train / step_loop = {rate['train'] / rate['step_loop']:.2f}x, "
                     f"run / step_loop = {rate['run'] / rate['step_loop']:.2f}x")
    for name, v in r.get("variants", {}).items():
        lines.append(f"  train, {name:17s} {v['seconds']:9.4f} s  "
                     f"{v['run_steps_per_second']:14,.0f} run-steps/s  "
                     f"({v['vs_train']:.2f}x the engine's programs)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=("seed", "small"), default="small")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="shorter workload (smoke test)")
    p.add_argument("--out", type=Path, default=None, help="folder for engine_gap.json")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)}; '' for none "
                        "(default: all)")
    a = p.parse_args(argv)
    if a.repeats < 1 or (a.steps is not None and a.steps < 1):
        p.error("--repeats and --steps must be at least 1")
    names = tuple(v for v in a.variants.split(",") if v)
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {', '.join(bad)}; allowed: {', '.join(VARIANTS)}")
    ts.configure()  # as the command line does: a CPU device per core, the compile cache
    save = None
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)

        def save(r):
            (a.out / "engine_gap.json").write_text(json.dumps(r, indent=1) + "\n")
    print(format_gap(measure(a.workload, a.repeats, a.steps, names, save)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
