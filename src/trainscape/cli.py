"""`trainscape` command line: a thin argparse front end over the Python API.

Exit status: 0 ok, 2 bad input (config, data, usage), 1 anything else, 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .errors import InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="trainscape",
        description="Map where training converges, spikes, oscillates, stalls or diverges "
                    "across hyperparameter grids (thousands of runs vmapped in JAX).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", help="run a sweep (default: the built-in seed-question experiment)",
                       description="Train every run of a sweep and write a results folder "
                                   "(runs.parquet, curves.parquet, meta.json, heatmap.png).")
    r.add_argument("config", nargs="?", help="experiment TOML file (default: built-in "
                                             "seed-question)")
    r.add_argument("--out", help="results folder (default: a new folder under ./results/)")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep in --out (recomputes missing chunks)")
    r.add_argument("--chunk-size", type=_positive_int, help="runs per compiled batch")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=100 (repeatable)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.add_argument("--no-plot", action="store_true", help="do not write heatmap.png")
    r.set_defaults(func=cmd_run)

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
    return p


def cmd_gradcheck(args) -> int:
    from .gradcheck import cli

    return cli(args.spec, rtol=args.rtol, atol=args.atol)


def cmd_run(args) -> int:
    import signal

    from . import api, memory, store, summary

    exp = api.resolve_config(args.config, args.overrides)
    if args.resume and not args.out:
        raise InputError("--resume needs --out DIR (the folder of the interrupted sweep)")
    out = Path(args.out) if args.out else api.default_out(exp.name)
    # the command that continues this sweep (the manifest fixes the chunk size)
    again = ["trainscape", "run"] + ([args.config] if args.config else [])
    again += [f"--set={o}" for o in args.overrides] + ["--out", str(out), "--resume"]
    again += ["--no-progress"] * args.no_progress + ["--no-plot"] * args.no_plot
    try:
        res = api.run(exp, chunk_size=args.chunk_size, out=out, resume=args.resume,
                      progress=not args.no_progress)
    except KeyboardInterrupt as e:  # Ctrl+C, or SIGTERM during a chunk (store.Interrupted)
        print(f"\ninterrupted: finished chunks are saved in {out}/; resume with:\n  "
              f"{shlex.join(again)}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", signal.SIGINT))
    except (memory.OutOfMemory, store.WriteError) as e:
        print(f"trainscape: error: {e}\nfinished chunks are saved in {out}/; once fixed, "
              f"resume with:\n  {shlex.join(again)}", file=sys.stderr)
        return 1
    print(summary.text_summary(res))
    print(f"\nresults: {res.path}/ (runs.parquet, curves.parquet, meta.json)")
    if not args.no_plot:
        for f in summary.write_figures(res, res.path):
            print(f"figure:  {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"trainscape: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
