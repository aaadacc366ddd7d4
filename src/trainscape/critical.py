"""Critical learning rates: the smallest learning rate that diverges, found by a vectorized
bisection in log space, next to the linear-stability prediction 2 / sharpness at init.

Every round of the search is ONE batched call of :func:`engine.run_chunks` over all rows (one
row per combination of the non-learning-rate axes), each row at its own midpoint; nothing here
jits or vmaps, and no Python loop runs over rows.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from . import classify, engine
from .errors import InputError

DEFAULT_BRACKET = (1e-4, 1e2)  # used when the config does not sweep learning_rate
LADDER_POINTS = 8  # learning rates checked above the critical one for a non-monotone boundary
MIN_RTOL = 1e-10  # far above float64 spacing: a midpoint always lands strictly inside its bracket
RESULT_COLUMNS = ("critical_lr", "sharpness_init", "predicted_lr", "lr_low", "lr_high",
                  "n_rounds", "non_monotone", "bracket_ok")
_DIVERGED = classify.LABELS.index("diverged")


def critical_lr(config, data=None, init_params=None, model=None, low: float | None = None,
                high: float | None = None, rtol: float = 1e-3, chunk_size: int | None = None,
                progress: bool = False, *, overrides: list[str] | None = None) -> pd.DataFrame:
    """Smallest learning rate that diverges, per combination of the non-learning-rate axes.

    config, data, init_params, model: as for :func:`trainscape.run`. The `learning_rate` axis of
    the sweep, if any, only sets the default bracket; every other axis (seed, init_scale,
    momentum, dtype, ``learning_rate.K``, ...) gives one row per combination of its values.

    A run *diverges* when its label is ``diverged`` by exactly the rules (and the configured
    steps, optimizer and dtype) of :func:`trainscape.run`: its loss became non-finite, passed
    1000 x its initial value, or ended above 1.05 x its initial value. So the measured boundary
    depends on `[train] steps`: just above 2 / lambda a quadratic's loss grows only like
    (1 + 2 eps)^(2 t) for lr = (2 / lambda)(1 + eps), and must outgrow the rest of the loss
    within the run; longer runs move the measured boundary closer to the true one.

    Bracket: `low`, `high` (default: the min and max of the swept learning rates, else
    1e-4 and 1e2). Both ends are run first (in one batched call, which also measures
    `sharpness_init`); a row whose `low` diverges or whose `high` does not gets
    ``bracket_ok = False`` and ``critical_lr = NaN``. Then each round runs every open row at the
    geometric midpoint of its bracket, keeping "lr_low does not diverge, lr_high diverges",
    until ``lr_high / lr_low - 1 <= rtol``; ``critical_lr = lr_high``.

    Non-monotone boundaries (a larger learning rate that trains fine again, e.g. a catapult
    window above a divergent band): bisection reports the first crossing from below that it
    finds between the bracket ends, i.e. an lr that diverges just above one that does not;
    it is not guaranteed to be the smallest divergent lr if divergent islands lie below it. One
    extra batched round runs `LADDER_POINTS` learning rates on a geometric ladder strictly
    between `critical_lr` and `high`; ``non_monotone = True`` flags rows where any of them did not
    diverge (any other label).

    Returns one row per combination of the other axes: those axes as columns, then
    `critical_lr`, `sharpness_init` (top Hessian eigenvalue at init, ``[metrics]
    sharpness_which``/``sharpness_iters``; the same for every lr of a row), `predicted_lr`
    (= 2 / sharpness_init, the linear-stability limit of plain gradient descent; inf when the
    sharpness is <= 0; momentum and adaptive optimizers have other limits), `lr_low`, `lr_high`
    (the final bracket), `n_rounds` (bisection rounds), `non_monotone`, `bracket_ok`.
    """
    from . import api
    from . import config as cfg

    exp = api.resolve_config(config, overrides)
    rtol = _check_rtol(rtol)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int | np.integer) or
                                   chunk_size < 1):
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    low, high = _bracket(exp, low, high)
    raw = exp.to_dict()
    raw["sweep"].pop("learning_rate", None)
    prep = api.Prepared(cfg.parse(raw), data=data, model=model, init_params=init_params)
    api._check_memory(prep)  # before anything is compiled

    # the search programs train exactly as `ts.run` does, minus curvature they do not need;
    # the bracket round adds sharpness at init (measured once per row, at both ends)
    plain = [(st._replace(sharpness=False, sharpness_every=0), rows) for st, rows in prep.groups]
    sharp = [(st._replace(sharpness=True, sharpness_every=0), rows) for st, rows in prep.groups]
    group_of_row = np.empty(len(prep.table), np.int64)
    for g, (_, rows) in enumerate(prep.groups):
        group_of_row[rows] = g

    def evaluate(groups, row_K, lr_K):
        return _diverges(prep, groups, group_of_row, row_K, lr_K, chunk_size)

    n_rows = len(prep.table)
    rows_R = np.arange(n_rows)
    rounds = _count_rounds(low, high, rtol)
    bar = _progress(progress, rounds + 2, exp.name)
    try:
        div_2R, sharp_2R = evaluate(sharp, np.concatenate([rows_R, rows_R]),
                                    np.repeat([low, high], n_rows))
        bar.update()
        bracket_ok = ~div_2R[:n_rows] & div_2R[n_rows:]
        lo_R = np.full(n_rows, low)
        hi_R = np.full(n_rows, high)
        n_rounds_R = np.zeros(n_rows, np.int64)
        # rtol >= MIN_RTOL keeps every midpoint strictly inside its bracket, so this ends
        while (open_R := bracket_ok & (hi_R / lo_R - 1 > rtol)).any():
            idx = np.nonzero(open_R)[0]
            # geometric midpoint (bisection in log lr); sqrt each so huge ends cannot overflow
            mid = np.sqrt(lo_R[idx]) * np.sqrt(hi_R[idx])
            div, _ = evaluate(plain, idx, mid)
            hi_R[idx] = np.where(div, mid, hi_R[idx])
            lo_R[idx] = np.where(div, lo_R[idx], mid)
            n_rounds_R[idx] += 1
            bar.update()
        crit_R = np.where(bracket_ok, hi_R, np.nan)
        non_mono = np.zeros(n_rows, bool)
        idx = np.nonzero(bracket_ok)[0]
        if idx.size:
            # LADDER_POINTS rungs per row strictly between lr_high and `high` (which the
            # bracket round already saw diverge)
            frac_L = np.arange(1, LADDER_POINTS + 1) / (LADDER_POINTS + 1)
            lad_KxL = hi_R[idx, None] * (high / hi_R[idx, None]) ** frac_L[None, :]
            div, _ = evaluate(plain, np.repeat(idx, LADDER_POINTS), lad_KxL.reshape(-1))
            non_mono[idx] = ~div.reshape(-1, LADDER_POINTS).all(axis=1)
        bar.update()
    finally:
        bar.close()

    s_R = sharp_2R[:n_rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = np.where(s_R > 0, 2.0 / s_R, np.where(np.isfinite(s_R), np.inf, np.nan))
    out = prep.table.drop(columns="run_id").reset_index(drop=True)
    out["critical_lr"] = crit_R
    out["sharpness_init"] = s_R
    out["predicted_lr"] = predicted
    out["lr_low"] = lo_R
    out["lr_high"] = hi_R
    out["n_rounds"] = n_rounds_R
    out["non_monotone"] = non_mono
    out["bracket_ok"] = bracket_ok
    out.attrs["bracket"] = (low, high)
    out.attrs["rtol"] = rtol
    out.attrs["name"] = exp.name
    return out


def _diverges(prep, groups, group_of_row, row_K, lr_K, chunk_size):
    """Run K runs (row `row_K[k]` of the run table at learning rate `lr_K[k]`) in one batched
    engine call; return (diverged_K, sharpness_init_K) as the runs table would label them."""
    hp = engine.take(prep.hp, row_K)
    hp["learning_rate"] = np.asarray(lr_K, np.float64)
    g_K = group_of_row[row_K]
    batches = [(st, np.nonzero(g_K == g)[0]) for g, (st, _) in enumerate(groups)]
    batches = [(st, rows) for st, rows in batches if rows.size]
    div_K = np.zeros(len(row_K), bool)
    sharp_K = np.full(len(row_K), np.nan)
    for out in engine.run_chunks(batches, hp, prep.x, prep.y, prep.init_params, chunk_size):
        t = out.traj
        codes = classify.label_codes(t["initial_loss"], t["final_loss"], t["spike_ratio"],
                                     t["rebound"], t["diverged_step"])
        div_K[out.rows] = codes == _DIVERGED
        sharp_K[out.rows] = t["sharpness_init"].astype(np.float64)
    return div_K, sharp_K


def _check_rtol(rtol) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.floating) or \
            not (math.isfinite(rtol) and rtol >= MIN_RTOL):
        raise InputError(f"rtol: expected a finite number >= {MIN_RTOL:g} such as 1e-3, got "
                         f"{rtol!r}")
    return float(rtol)


def _bracket(exp, low, high) -> tuple[float, float]:
    swept = exp.sweep.get("learning_rate")
    d_low, d_high = (min(swept), max(swept)) if swept else DEFAULT_BRACKET
    where = "the swept learning_rate" if swept else "the default"
    lo = d_low if low is None else low
    hi = d_high if high is None else high
    for name, v in (("low", lo), ("high", hi)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating) or \
                not (math.isfinite(v) and v > 0):
            raise InputError(f"{name}: expected a positive finite learning rate, got {v!r}")
    if not lo < hi:
        raise InputError(f"bracket: need low < high, got low={lo!r}, high={hi!r} (defaults "
                         f"come from {where}); pass low= and high=")
    return float(lo), float(hi)


def _count_rounds(low: float, high: float, rtol: float) -> int:
    """Bisection rounds until the bracket ratio is within 1 + rtol (each halves log ratio)."""
    return max(0, math.ceil(math.log2(math.log(high / low) / math.log1p(rtol))))


class _NoBar:
    def update(self, k=1):
        pass

    def close(self):
        pass


def _progress(on: bool, total: int, name: str):
    if not on:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="round", desc=f"{name}: critical lr", dynamic_ncols=True)


# ------------------------------------------------------------------ command line


def format_table(table: pd.DataFrame) -> str:
    """Aligned text rendering of a :func:`critical_lr` table, with notes on flagged rows."""
    low, high = table.attrs.get("bracket", (math.nan, math.nan))
    lines = [f"{table.attrs.get('name', 'experiment')}: critical learning rate per row "
             f"(bracket [{low:.4g}, {high:.4g}], rtol {table.attrs.get('rtol', math.nan):g})",
             ""]
    shown = table.copy()
    for c in ("critical_lr", "sharpness_init", "predicted_lr", "lr_low", "lr_high"):
        shown[c] = [f"{v:.6g}" for v in shown[c]]
    lines.append(shown.to_string(index=False))
    bad = table[~table["bracket_ok"]]
    if len(bad):
        lines.append(f"\n{len(bad)} row(s) with bracket_ok = False: the low end diverged or "
                     "the high end did not; widen the bracket (--low / --high)")
    flagged = table[table["non_monotone"]]
    if len(flagged):
        lines.append(f"{len(flagged)} row(s) non_monotone: some larger learning rate below the "
                     "high end did not diverge; critical_lr is the first crossing found")
    return "\n".join(lines) + "\n"


def cli(config_path, overrides: list[str] | None = None, out_csv: str | os.PathLike | None = None,
        stream: TextIO | None = None, *, low: float | None = None, high: float | None = None,
        rtol: float = 1e-3, chunk_size: int | None = None, progress: bool = False) -> int:
    """`trainscape critical-lr CONFIG`: print the :func:`critical_lr` table (and write it as CSV
    to `out_csv`). Returns 0; bad input raises InputError before anything runs."""
    from . import api

    stream = sys.stdout if stream is None else stream
    exp = api.resolve_config(config_path, overrides)
    target = None
    if out_csv is not None:
        target = Path(out_csv)
        if not target.parent.is_dir():
            raise InputError(f"--out {str(target)!r}: folder {str(target.parent)!r} does not "
                             "exist")
        if target.is_dir():
            raise InputError(f"--out {str(target)!r}: is a folder; give a file name such as "
                             "critical_lr.csv")
    table = critical_lr(exp, low=low, high=high, rtol=rtol, chunk_size=chunk_size,
                        progress=progress)
    stream.write(format_table(table))
    if target is not None:
        tmp = target.with_name(f".{target.name}.tmp")
        table.to_csv(tmp, index=False)
        os.replace(tmp, target)
        stream.write(f"\ntable: {target}\n")
    return 0
