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
    replaced by one that only records the loss): what they cost per step.
  The variants are set by replacing module functions for the duration of the measurement
  (never in the library itself); their results are not compared with anything.

`run - train - init` is what the host adds (transfers, tables, labels) plus any idle time
between dispatches. Rates are run-steps/s, best of `--repeats`, in one process.

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

VARIANTS = ("samples_shared", "samples_per_run", "no_summaries")


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
    if name is not None and not swaps:
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


def _best(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def _block_programs(prep: Prepared):
    """(init, train) callables: the init program and the block programs for every dispatch of
    the grid, with all their inputs on the device before anything is timed."""
    st, n = prep.static, prep.n_runs
    p = execute.place(st, plan.run_devices(), prep.x, prep.y, None)
    fn, init_fn, by_run, xd, yd, group_runs = p.train, p.init, p.by_run, p.x, p.y, p.dispatch_runs
    to_layout = np.argsort(p.order)
    hdt = jnp.dtype(st.dtype)
    every, rows = prep.hparams(np.arange(n)), np.arange(n)
    batches = [execute.dispatch_inputs(every, rows, g0, group_runs, to_layout, hdt, by_run)
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
            variants: tuple[str, ...] = ()) -> dict:
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

    for call in (init, train, run):  # compile and warm up
        call()
    run_steps = n * w.steps
    out = {"workload": w.name, "runs": n, "steps": w.steps, "dispatches": n_batches,
           "runs_per_dispatch": group_runs, "backend": jax.default_backend(),
           "devices": [str(d) for d in devices], "seconds": {}, "run_steps_per_second": {}}
    for name, call in (("init", init), ("train", train), ("run", run)):
        s = _best(call, repeats)
        out["seconds"][name] = s
        out["run_steps_per_second"][name] = run_steps / s
    X, y = bench.load_data(w.data)
    info, once = bench._setup_peer("jax_step_loop", w, X, y)
    if once is not None:
        s = _best(once, repeats)
        out["seconds"]["step_loop"] = s
        out["run_steps_per_second"]["step_loop"] = info["run_steps_timed"] / s
        out["step_loop_runs"] = info["runs_timed"]
    sec = out["seconds"]
    out["host_and_idle_seconds"] = sec["run"] - sec["train"] - sec["init"]
    out["variants"] = {}
    for name in variants:
        with variant(name):
            _, train_v, _, _ = _block_programs(prep)
            train_v()  # compile and warm up
            s = _best(train_v, repeats)
        out["variants"][name] = {"seconds": s, "run_steps_per_second": run_steps / s,
                                 "vs_train": sec["train"] / s}
    return out


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
        lines.append(f"  train, {name:15s} {v['seconds']:9.4f} s  "
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
    r = measure(a.workload, a.repeats, a.steps, names)
    print(format_gap(r))
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "engine_gap.json").write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
