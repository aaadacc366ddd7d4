"""The command line's subcommands other than `run`: each parses nothing, calls the Python API,
prints what it got and returns the exit status (bad input raises InputError: exit 2)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import TextIO

from ..analysis import critical
from ..analysis.compare import (
    PRECISION_AXIS,
    compare,
    compare_dtypes,
    format_summary,
    refuse_several_dtypes,
)
from ..errors import InputError
from ..gradcheck import check_tol
from ..gradcheck import format_table as gradcheck_table
from ..gradcheck import gradcheck as check_gradients
from ..io import atomic
from ..io.results import as_results
from ..spec.schema import resolve_config
from ..viz import report as viz_report
from ..viz.explorer import explore as viz_explore


def critical_lr(config_path, overrides: list[str] | None = None,
                out_csv: str | os.PathLike | None = None, stream: TextIO | None = None, *,
                low: float | None = None, high: float | None = None, rtol: float = 1e-3,
                chunk_size: int | None = None, progress: bool = False) -> int:
    """`trainscape critical-lr CONFIG`: print the :func:`critical_lr` table (and write it as CSV
    to `out_csv`). Returns 0; bad input raises InputError before anything runs."""
    stream = sys.stdout if stream is None else stream
    exp = resolve_config(config_path, overrides)
    try:  # the checks critical_lr makes first, worded for the command line
        critical.check_rtol(rtol)
        critical.bracket(exp, low, high)
    except InputError as e:
        msg = str(e).replace("pass low= and high=", "pass --low and --high")
        raise InputError(msg if msg.startswith("bracket") else f"--{msg}") from None
    target = None
    if out_csv is not None:  # refused before the search, which can take minutes
        target = Path(out_csv)
        where = f"--out {str(target)!r}"
        if atomic.names_folder(out_csv, target):
            raise InputError(f"{where}: is a folder; give a file name such as critical_lr.csv")
        if target.exists() or target.is_symlink():
            raise InputError(f"{where}: already exists; give a new file name (an existing "
                             "file is never replaced)")
        atomic.check_parent(target, where)
    table = critical.critical_lr(exp, low=low, high=high, rtol=rtol, chunk_size=chunk_size,
                        progress=progress)
    stream.write(critical.format_table(table))
    if target is not None:
        try:  # a link, unlike a rename, never replaces a file made during the search
            atomic.write_new(table.to_csv(index=False).encode(), target)
        except FileExistsError:
            raise InputError(f"{where}: was created by someone else during the search and "
                             "was left as it is; the table is printed above") from None
        stream.write(f"\ntable: {target}\n")
    return 0


def compare_precision(path_a, path_b=None, stream: TextIO | None = None,
                      dtypes: str | None = None) -> int:
    """`trainscape compare-precision A [B] [--dtypes A,B]`: print which runs change label
    between two results folders (or, with one folder, between two values of its dtype axis:
    the only two, or the two named by `dtypes`). Returns the exit status (0); bad input raises
    InputError for the CLI to report."""
    stream = stream if stream is not None else sys.stdout
    if path_b is not None and dtypes is not None:
        raise InputError("compare-precision: --dtypes picks two dtypes within one folder; "
                         "with two folders, leave it out")
    if path_b is None:
        res = as_results(path_a, "compare-precision: a")
        swept = list(res.config.sweep.get(PRECISION_AXIS, ()))
        if dtypes is not None:
            pair = [d.strip() for d in dtypes.split(",")]
            if len(pair) != 2:
                raise InputError(f"--dtypes: got {dtypes!r}; give two dtypes of the axis "
                                 f"{swept or '(none)'} separated by a comma, e.g. "
                                 "float32,float64")
            swept = pair  # compare_dtypes checks both are on the axis
        elif len(swept) != 2:
            raise InputError(f"compare-precision: {path_a} alone needs a dtype axis with two "
                             f"values, it has {swept or 'none'}; give two results folders, or "
                             "two of its dtypes with --dtypes A,B")
        df = compare_dtypes(res, *swept)
        head = f"{path_a}: {swept[0]} vs {swept[1]}"
    else:
        ra = as_results(path_a, "compare-precision: a")
        rb = as_results(path_b, "compare-precision: b")
        # the CLI's own wording first (compare() names the Python call)
        refuse_several_dtypes(((ra, path_a), (rb, path_b)), lambda path, swept: (
            f"compare-precision: {path} sweeps several dtypes ({', '.join(swept)}); compare "
            f"two of them within it: trainscape compare-precision {shlex.quote(str(path))} "
            f"--dtypes {swept[0]},{swept[1]}"))
        df = compare(ra, rb)
        head = f"a = {path_a}\nb = {path_b}"
    print(head, file=stream)
    print(format_summary(df), file=stream)
    return 0


def gradcheck(
    spec: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run gradcheck on `SPEC = module_or_path[:LOSS,GRADS,EXAMPLE]`; print a table.

    The module (dotted name importable from the current directory/sys.path, or a path to a .py
    file) must expose `loss(params, x, y)`, `grads(params, x, y)` and `example()` returning
    (params, x, y). The optional part after ':' renames them, in that order, comma separated;
    fewer or empty names keep the defaults (`mod.py:,grads_fixed` = loss, grads_fixed, example).
    Returns 1 when any array fails, else 0.
    """
    out = sys.stdout if stream is None else stream
    check_tol("--rtol", rtol)
    check_tol("--atol", atol)
    target, names = _parse_spec(spec)
    module = _import_target(spec, target)
    loss_fn, grad_fn, example = (_get_callable(spec, module, target, n) for n in names)
    ex = example()
    if not isinstance(ex, (tuple, list)) or len(ex) != 3:
        raise InputError(
            f"gradcheck {spec!r}: {names[2]}() returned {type(ex).__name__}; "
            "must return (params, x, y)"
        )
    params, x, y = ex
    table = check_gradients(loss_fn, grad_fn, params, x, y, rtol=rtol, atol=atol)
    out.write(gradcheck_table(table, title=f"gradcheck {target}: {names[1]} vs {names[0]}"))
    return 0 if bool(table["ok"].all()) else 1


def _parse_spec(spec: str) -> tuple[str, tuple[str, str, str]]:
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(
            f"gradcheck spec: got {spec!r}; expected module_or_path[:loss,grads,example]"
        )
    target, sep, tail = spec.rpartition(":")
    # A colon inside a path (e.g. a Windows drive) is part of the target, not a name list.
    if not sep or os.sep in tail or "/" in tail or os.path.exists(spec):
        target, tail = spec, ""
    parts = [p.strip() for p in tail.split(",")] if tail else []
    if len(parts) > 3 or not target:
        raise InputError(
            f"gradcheck spec {spec!r}: expected module_or_path[:loss,grads,example] "
            "with at most three comma-separated names"
        )
    names = tuple(p or d for p, d in zip((parts + [""] * 3)[:3], _DEFAULT_NAMES, strict=True))
    for n in names:
        if not n.isidentifier():
            raise InputError(f"gradcheck spec {spec!r}: {n!r} is not a Python identifier")
    return target, names  # type: ignore[return-value]


def _import_target(spec: str, target: str):
    is_path = target.endswith(".py") or os.sep in target or "/" in target
    try:
        if is_path:
            path = Path(target)
            if not path.is_file():
                raise InputError(f"gradcheck spec {spec!r}: no such file {target!r}")
            return _import_path(path.resolve())
        return _import_from_cwd(target)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module to fix
        msg = " ".join(str(e).split())
        raise InputError(
            f"gradcheck spec {spec!r}: cannot import {target!r} ({type(e).__name__}: {msg}); "
            "give an importable module name or a path to a .py file"
        ) from e


def _import_from_cwd(name: str):
    """A module name is found in the current folder too, as `python -m` finds it (the
    `trainscape` console script's sys.path starts at its own bin folder instead)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(cwd)


def _import_path(path: Path):
    name = f"_trainscape_gradcheck_{path.stem}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise InputError(f"gradcheck: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    # Registered and with its folder on sys.path so the file can import its sibling modules.
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        mod_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def _get_callable(spec: str, module, target: str, name: str):
    fn = getattr(module, name, None)
    if not callable(fn):
        from ..spec.registry import did_you_mean

        functions = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        raise InputError(
            f"gradcheck spec {spec!r}: {target!r} has no function {name!r}; it must define "
            "loss(params, x, y), grads(params, x, y) and example() (or name them after ':')"
            f"{did_you_mean(name, functions)}"
        )
    return fn


def explore(results_dir, out=None) -> int:
    """`trainscape explore RESULTS_DIR [--out FILE]`: write the page and print where it is."""
    p = viz_explore(results_dir, out)
    print(f"explorer: {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


def report(results_dir, fmt: str | None = None, out=None) -> int:
    """`trainscape report RESULTS_DIR [--format html|md] [--out FILE]`: write the report and
    print where it is. Bad input raises InputError (exit 2 in the CLI). A zoom folder gets
    the zoom's report (`zoom.report`: map, box counting, strip, dimension)."""
    from ..sweep.zoom import is_zoom, load
    from ..viz.zoom import report

    if is_zoom(results_dir):
        if fmt == "html":
            raise InputError("--format html: a zoom's report is Markdown (report.md and its "
                             "figures in one folder); leave --format out or give md")
        print(f"report: {report(load(results_dir), out)}")
        return 0
    path = viz_report.build(results_dir, fmt=fmt, out=out)
    print(f"report: {path}")
    return 0


_DEFAULT_NAMES = ("loss", "grads", "example")
