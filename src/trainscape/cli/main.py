"""`trainscape` command line: a thin argparse front end over the Python API.

Exit status: 0 ok, 2 bad input (config, data, usage), 1 anything else, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from ..io.atomic import WriteError


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # a flag is taken only as spelled in full: a prefix (`--no-prog`) would otherwise
        # pass silently, and a later flag sharing it would change what it means
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # usage errors: one line, exit 2, with a suggestion if near
        self.exit(2, f"{self.prog}: error: {message}{self._suggest(message)}\n")

    def _suggest(self, message: str) -> str:
        """' (did you mean ...?)' for a mistyped sub-command or flag, else ''."""
        from ..spec.registry import did_you_mean

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = _option_strings(self)
            for token in shlex.split(unknown.group(1)):
                if token.startswith("-") and token.split("=")[0] not in flags:
                    hint = did_you_mean(token.split("=")[0], flags)
                    if hint:
                        return hint
        return ""


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag of `parser` and of its sub-commands' parsers."""
    out = []
    for action in parser._actions:
        out += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _option_strings(sub)
    return sorted(set(out))


def _int_list(text: str) -> list[int]:
    try:
        return [_positive_int(t) for t in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas "
                                         f"such as 64,128,256, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _bytes(text: str) -> float:
    units = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10,
             "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    try:
        v = float(num) * units[t[len(num):]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 512MB or 2GiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return v


def _add_sweep_flags(p: argparse.ArgumentParser) -> None:
    """The flags every command that trains a sweep takes (`run`, `zoom`)."""
    p.add_argument("--chunk-size", type=_positive_int, help="runs per compiled batch")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="trainscape",
        description="Map where training converges, spikes, oscillates, stalls or diverges "
                    "across hyperparameter grids (thousands of runs vmapped in JAX).",
    )
    from ..version import __version__

    p.add_argument("--version", action="version", version=f"trainscape {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", help="run a sweep (default: the built-in seed-question experiment)",
                       description="Train every run of a sweep and write a results folder "
                                   "(runs.parquet, curves.parquet, meta.json, manifest.json, "
                                   "heatmap.png, and seed_question.png when learning rates "
                                   "0.01 and 1 are swept).")
    r.add_argument("config", nargs="?", help="experiment TOML file (default: built-in "
                                             "seed-question)")
    r.add_argument("--out", help="results folder (default: a new folder under ./results/)")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep in --out (recomputes missing chunks)")
    _add_sweep_flags(r)
    r.add_argument("--no-plot", action="store_true",
                   help="do not draw the figures (heatmap.png, seed_question.png)")
    r.add_argument("--memory-budget", type=_bytes, metavar="BYTES",
                   help="largest estimated memory of one chunk (e.g. 2GB; default: half of "
                        "the device's free memory); ignored with --chunk-size")
    r.add_argument("--no-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache ($TRAINSCAPE_CACHE_DIR, "
                        "else $XDG_CACHE_HOME/trainscape/jax, else ~/.cache/trainscape/jax)")
    d = r.add_argument_group(
        "several processes", "one sweep shared by processes on one or many hosts "
        "(jax.distributed); the output folder must be on a file system all of them see")
    d.add_argument("--distributed", action="store_true",
                   help="join a multi-process sweep: the cluster is detected (SLURM, TPU pod, "
                        "Open MPI, Kubernetes) unless the three options below are given")
    d.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0's coordinator (implies --distributed)")
    d.add_argument("--num-processes", type=_positive_int, metavar="N",
                   help="how many processes share the sweep")
    d.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    r.set_defaults(func=cmd_run)

    z = sub.add_parser(
        "zoom", help="map two axes at a fine resolution, computing only near the boundary",
        description="Refine the config's two swept axes level by level: level 0 is its n x m "
                    "grid; each level halves the cells and trains only the points of the "
                    "cells whose corners' outcomes differ, plus a margin around them. Writes "
                    "zoom.json, one results folder per level (level-0/, ...) and, unless "
                    "--no-plot, the report (report.md and its figures), which `trainscape "
                    "report DIR` writes again.")
    z.add_argument("config", help="experiment TOML file; [sweep] has exactly two axes given "
                                  "as {geomspace|linspace = [a, b], num = n}")
    z.add_argument("--levels", type=int, required=True, metavar="K",
                   help="levels after level 0 (finest lattice: 2^K (n-1) + 1 points per axis)")
    z.add_argument("--margin", type=int, metavar="CELLS",
                   help="cells around each boundary cell refined with it (default: 2)")
    z.add_argument("--by", choices=("diverged", "label", "measure"), default="diverged",
                   help="outcome compared at the corners: diverged or not (default), the five "
                        "labels, or the sign of the convergence measure")
    z.add_argument("--out", help="zoom folder (default: a new folder under ./results/)")
    z.add_argument("--resume", action="store_true",
                   help="continue an interrupted zoom in --out from its last finished chunk")
    _add_sweep_flags(z)
    z.add_argument("--no-plot", action="store_true",
                   help="do not write the report and its figures")
    z.set_defaults(func=cmd_zoom)

    g = sub.add_parser(
        "gradcheck", help="check hand-written gradients against a reference",
        description="Compare a module's hand-written gradients with jax.grad (JAX-traceable "
                    "loss) or float64 central finite differences (NumPy loss), one row per "
                    "parameter array, with hints for common mistakes. Exit 1 if any row fails.")
    g.add_argument("spec", metavar="MODULE[:LOSS,GRADS,EXAMPLE]",
                   help="a module name or .py path exposing loss(params, x, y), "
                        "grads(params, x, y) and example() -> (params, x, y); other function "
                        "names may follow the colon")
    g.add_argument("--rtol", type=float, help="relative tolerance (default: by dtype)")
    g.add_argument("--atol", type=float, help="absolute tolerance (default: by dtype)")
    g.set_defaults(func=cmd_gradcheck)

    rp = sub.add_parser("report", help="write a self-contained report of a results folder",
                        description="Write an HTML (images embedded) or Markdown report: the "
                                    "written answer, heatmaps, divergence table, loss curves, "
                                    "config and environment.")
    rp.add_argument("results_dir", metavar="RESULTS_DIR")
    rp.add_argument("--format", dest="fmt", choices=("html", "md"),
                    help="default: md if --out ends in .md, else html")
    rp.add_argument("--out", help="report file or folder (default: RESULTS_DIR/report.<format>)")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("explore", help="write an offline HTML explorer of a results folder",
                        description="Write one self-contained HTML page (nothing fetched) with "
                                    "a map of any two axes, the curves and runs of a clicked "
                                    "cell, a brushable view of all axes, and the config.")
    ex.add_argument("results_dir", metavar="RESULTS_DIR")
    ex.add_argument("--out", help="page file or folder (default: RESULTS_DIR/explorer.html)")
    ex.set_defaults(func=cmd_explore)

    cl = sub.add_parser(
        "critical-lr", help="smallest diverging learning rate per seed / axis value",
        description="Bisect in log lr (one batched program per round) for the smallest "
                    "learning rate labelled diverged, per combination of the other sweep "
                    "axes, next to the prediction 2 / sharpness at init.")
    cl.add_argument("config", help="experiment TOML file")
    cl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable)")
    cl.add_argument("--out", help="also write the table as CSV")
    cl.add_argument("--low", type=float,
                    help="bracket low end (default: smallest swept lr, else 1e-4)")
    cl.add_argument("--high", type=float,
                    help="bracket high end (default: largest swept lr, else 1e2)")
    cl.add_argument("--rtol", type=float, default=1e-3,
                    help="stop when lr_high / lr_low - 1 <= RTOL")
    cl.add_argument("--chunk-size", type=_positive_int, help="runs per compiled batch")
    cl.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cl.set_defaults(func=cmd_critical_lr)

    cc = sub.add_parser(
        "coord-check", help="activation size against width over the first steps (muP check)",
        description="Train the config's network at each width for a few steps (its optimizer "
                    "and [optimizer] learning_rate, full batch) and print, per width, layer "
                    "and step, the mean |activation| and its mean change since "
                    "initialization (median over seeds); with --out, also the table as CSV "
                    "and the mup package's figure (a panel per layer, width on a log axis, a "
                    "line per step).")
    cc.add_argument("config", help="experiment TOML file")
    cc.add_argument("--widths", required=True, type=_int_list, metavar="W1,W2,...",
                    help="hidden widths, e.g. 64,128,256,512")
    cc.add_argument("--steps", type=_positive_int, default=4, help="training steps (default 4)")
    cc.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3)")
    cc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable)")
    cc.add_argument("--out", help="folder for coord_check.csv and coord_check.png (made if "
                                  "missing; existing ones are never replaced)")
    cc.set_defaults(func=cmd_coord_check)

    c = sub.add_parser(
        "compare-precision", help="list runs whose label differs between two results",
        description="Join two results folders on their grid (all axes but dtype) and list the "
                    "cells whose label differs, e.g. a float32 and a float64 sweep of the same "
                    "config. With one folder, compares two values of its dtype axis (the "
                    "only two, or those named with --dtypes).")
    c.add_argument("results_a", metavar="RESULTS_A")
    c.add_argument("results_b", metavar="RESULTS_B", nargs="?")
    c.add_argument("--dtypes", metavar="A,B",
                   help="with one folder: the two dtypes of its axis to compare, e.g. "
                        "float32,bfloat16 (needed when it sweeps three)")
    c.set_defaults(func=cmd_compare)

    b = sub.add_parser(
        "bench", help="time the engine against its peers on the benchmark workloads",
        description="Time trainscape (through ts.run, after a warm-up sweep) and its peers "
                    "(NumPy loop, PyTorch eager, torch.func.vmap, a jitted JAX step driven "
                    "from Python, and the engine with [train] early_exit = false) on the "
                    "workloads described in results/bench/README.md, in one "
                    "process; prints run-steps/s, ratios and utilization against the dense "
                    "float32 matmul rate. PyTorch peers need the `bench` extra.")
    b.add_argument("--workload", choices=("seed", "small", "diverging", "all", "memory"),
                   default="all",
                   help="'memory': peak host memory of a 10,000-run and a 1,000,000-run sweep "
                        "of a tiny network, each in its own process, with a cold and then a "
                        "warm compile cache (about 2 minutes on 2 cores); not part of 'all'")
    b.add_argument("--out", help="write bench.json and bench.md (memory: memory.json and "
                                 "memory.md) into this folder: an existing one without them, "
                                 "or a new one")
    b.add_argument("--peers", metavar="P,Q",
                   help="comma-separated subset of the peers numpy_loop, torch_eager, "
                        "torch_vmap, jax_step_loop, engine, engine_no_early_exit (default: all)")
    b.add_argument("--repeats", type=_positive_int, default=3,
                   help="timed rounds per peer, the best reported (default 3)")
    b.set_defaults(func=cmd_bench)
    return p


def cmd_zoom(args) -> int:
    from ..sweep.zoom import zoom
    from ..viz.zoom import report, summary_text

    if args.resume and not args.out:
        raise InputError("--resume needs --out DIR (the folder of the interrupted zoom)")
    kw = {} if args.margin is None else {"margin": args.margin}
    again = ["trainscape", "zoom", args.config, "--levels", str(args.levels),
             *(["--margin", str(args.margin)] if args.margin is not None else []),
             "--by", args.by, *[f"--set={o}" for o in args.overrides],
             "--out", args.out or "DIR", "--resume"]
    try:
        z = zoom(args.config, args.levels, by=args.by, out=args.out or "auto",
                      resume=args.resume, chunk_size=args.chunk_size,
                      progress=not args.no_progress, overrides=args.overrides, **kw)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished chunks are saved; resume with:\n  {shlex.join(again)}",
              file=sys.stderr)
        return 130
    print(summary_text(z))
    written = [k for k, res in enumerate(z.levels) if res is not None]  # levels with runs
    folders = (f"level-{written[0]}/" if len(written) == 1
               else f"level-{written[0]}/ ... level-{written[-1]}/")
    print(f"\nzoom: {z.path}/ (zoom.json, {folders})")
    if not args.no_plot:
        print(f"report: {report(z)}")
    return 0


def cmd_report(args) -> int:
    from . import commands

    return commands.report(args.results_dir, fmt=args.fmt, out=args.out)


def cmd_explore(args) -> int:
    from . import commands

    return commands.explore(args.results_dir, out=args.out)


def cmd_critical_lr(args) -> int:
    from . import commands

    return commands.critical_lr(args.config, args.overrides, out_csv=args.out, low=args.low,
                                high=args.high, rtol=args.rtol, chunk_size=args.chunk_size,
                                progress=not args.no_progress)


def cmd_coord_check(args) -> int:
    from ..analysis.coord_check import cli

    return cli(args.config, args.widths, steps=args.steps, seeds=args.seeds,
               overrides=args.overrides, out=args.out)


def cmd_compare(args) -> int:
    from . import commands

    return commands.compare_precision(args.results_a, args.results_b, dtypes=args.dtypes)


def cmd_bench(args) -> int:
    if args.workload == "memory":
        from ..bench.memory import main as memory_main

        return memory_main(out_dir=args.out)
    from ..bench.peers import main as bench_main

    return bench_main(args.workload, args.out, peers=args.peers, repeats=args.repeats)


def cmd_gradcheck(args) -> int:
    from . import commands

    return commands.gradcheck(args.spec, rtol=args.rtol, atol=args.atol)


def cmd_run(args) -> int:
    import signal
    import threading

    from ..io import memory, store
    from ..spec.schema import resolve_config
    from ..sweep import runner as api
    from ..viz import summary
    from . import signals

    distributed = args.distributed or any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id))
    rank = 0
    if distributed:  # before anything touches a JAX backend
        from ..sweep import distributed as parallel

        rank, _ = parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    exp = resolve_config(args.config, args.overrides)
    if args.resume and not args.out:
        raise InputError("--resume needs --out DIR (the folder of the interrupted sweep)")
    # a distributed sweep without --out gets its folder name from process 0; otherwise the
    # new folder is made now, so the messages below can name it
    made = None
    if args.out:
        out = Path(args.out)
    elif distributed:
        out = "auto"
    else:
        out = made = api.default_out(exp.name)
    # the command that continues this sweep (the manifest fixes the chunk size)
    again = ["trainscape", "run"] + ([args.config] if args.config else [])
    again += [f"--set={o}" for o in args.overrides]
    again += ["--out", "DIR" if out == "auto" else str(out), "--resume"]
    again += ["--no-progress"] * args.no_progress + ["--no-plot"] * args.no_plot
    if distributed:
        again += ["--distributed"] + [f"--{k.replace('_', '-')}={v}" for k, v in (
            ("coordinator", args.coordinator), ("num_processes", args.num_processes),
            ("process_id", args.process_id)) if v is not None]
    # resuming a sweep that already finished computes nothing: say so, not its old timings
    already = args.resume and out != "auto" and store.folder_state(Path(out)) == "finished"
    stopping = threading.Lock()  # whichever thread stops the process first does it alone

    def say_interrupted() -> None:
        print(f"\ninterrupted: finished chunks are saved in {out}/; resume with:\n  "
              f"{shlex.join(again)}", file=sys.stderr)

    def stop_now(signum: int) -> None:
        """A second Ctrl+C (or a signal outside a chunk) that the main thread, busy inside
        XLA, could not act on (signals.hear_signals_while_busy): leave at once, as below."""
        if not stopping.acquire(blocking=False):
            return  # the main thread is already leaving
        store.release_locks()
        say_interrupted()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + int(signum))

    try:
        try:
            with signals.hear_signals_while_busy(stop_now):
                res = api.run(exp, chunk_size=args.chunk_size,
                              memory_budget=args.memory_budget, out=out, resume=args.resume,
                              progress=not args.no_progress,
                              chunk_guard=signals.interrupts_deferred)
        except BaseException:
            if made is not None:  # refused or stopped before writing: leave nothing behind
                api.drop_if_empty(made)
            raise
    except KeyboardInterrupt as e:  # Ctrl+C, SIGTERM outside a chunk (signals.Terminated), or
        # either during one (signals.Interrupted)
        stopping.acquire()  # waits forever if stop_now is already ending the process
        say_interrupted()
        code = 128 + int(getattr(e, "signum", signal.SIGINT))
        if not isinstance(e, signals.Interrupted):
            # A second Ctrl+C stopped a chunk still computing: a normal exit would wait in
            # JAX's teardown for XLA to finish it. Everything worth keeping is on disk and
            # the lock was released on the way out, so leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (memory.OutOfMemory, store.WriteError) as e:
        print(f"trainscape: error: {e}\nfinished chunks are saved in {out}/; once fixed, "
              f"resume with:\n  {shlex.join(again)}", file=sys.stderr)
        return 1
    if rank:  # process 0 reports the sweep and draws its figures
        print(f"process {rank}: done; results in {res.path}/")
        return 0
    if already:
        print(f"{res.path}/ holds a sweep that had already finished: nothing was computed "
              "(its timings are in meta.json)")
    t = (res.meta or {}).get("timings") or {}
    if args.resume and not already and t.get("resumed_runs") is not None:
        print(f"resumed: {t['resumed_runs']} runs reused from the saved chunks, "
              f"{t.get('computed_runs')} computed now")
    print(summary.text_summary(res, timings=not already))
    print(f"\nresults: {res.path}/ (runs.parquet, curves.parquet, meta.json)")
    if not args.no_plot:
        try:
            for f in summary.write_figures(res, res.path):
                print(f"figure:  {f}")
        except store.WriteError as e:
            print(f"trainscape: error: {e}\nthe results are complete in {res.path}/; draw "
                  f"the figures later with: trainscape report {res.path}", file=sys.stderr)
            return 1
    where = shlex.quote(str(res.path))
    print(f"next:    trainscape report {where}    (the written answer, with figures)\n"
          f"         trainscape explore {where}   (every run, on one offline page)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .. import runtime

    # the command line saves figures to files, and trains on every core with the compile cache.
    # Agg is chosen without importing matplotlib, which the figures load at the end: loaded
    # here, its 11 MiB stayed resident through the whole sweep (0.11.0-0.13.0)
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")
    else:
        os.environ["MPLBACKEND"] = "Agg"
    try:  # a bad $TRAINSCAPE_CPU_DEVICES is the user's to fix, said in one line
        runtime.configure(cache_dir=False if getattr(args, "no_cache", False) else None)
        if getattr(args, "out", None) == "":  # would write into the current folder
            raise InputError(f"{args.command}: --out is empty; give a file or folder")
        return args.func(args)
    except InputError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"trainscape: error: {msg}", file=sys.stderr)
        return 2
    except WriteError as e:  # disk full, read-only folder: what was written before is kept
        print(f"trainscape: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `trainscape run ... | head`: the reader left; files are kept
        try:  # stdout to nowhere, so that its flush at exit raises nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
