"""Critical learning rates: the smallest learning rate that diverges, found by a vectorized
bisection in log space, next to the linear-stability prediction 2 / sharpness at init.

Every round of the search is ONE batched call of :func:`execute.run_chunks` over all rows (one
row per combination of the non-learning-rate axes), each row at its own midpoint; nothing here
jits or vmaps, and no Python loop runs over rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..engine import execute, plan
from ..errors import InputError
from ..runtime import x64
from ..spec import schema as cfg
from ..spec.schema import resolve_config
from ..sweep.prepare import Prepared
from ..train import classify

DEFAULT_BRACKET = (1e-4, 1e2)  # used when the config does not sweep learning_rate
LADDER_POINTS = 8  # learning rates checked on each side of the crossing for a non-monotone boundary
MAX_DESCENTS = 4  # times the search may move down to a divergent lr found below the crossing
MIN_RTOL = 1e-10  # far above float64 spacing: a midpoint always lands strictly inside its bracket
RESULT_COLUMNS = ("critical_lr", "sharpness_init", "predicted_lr", "lr_low", "lr_high",
                  "n_rounds", "non_monotone", "bracket_ok")
_DIVERGED = classify.LABELS.index("diverged")


@x64
def critical_lr(config, data=None, init_params=None, model=None, low: float | None = None,
                high: float | None = None, rtol: float = 1e-3, chunk_size: int | None = None,
                progress: bool = False, *, overrides: list[str] | None = None) -> pd.DataFrame:
    """Smallest learning rate that diverges, per combination of the non-learning-rate axes.

    config, data, init_params, model: as for :func:`trainscape.run`. The `learning_rate` axis of
    the sweep, if any, only sets the default bracket; every other axis (seed, init_scale,
    momentum, dtype, ``learning_rate.K``, width, depth, ...) gives one row per combination of
    its values (fit a row per width and seed with :func:`trainscape.scaling`).

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
    window above a divergent band, or a divergent island below a crossing): bisection finds a
    crossing, an lr that diverges just above one that does not, which need not be the
    smallest divergent lr. So one more batched call runs, per row, `LADDER_POINTS` learning
    rates on a geometric ladder strictly between `critical_lr` and `high`, as many strictly
    between `low` and `lr_low`, and every swept learning rate in those two intervals. If one
    below diverges, the search moves down: it bisects between the smallest such lr and the
    largest below it that did not diverge, then checks below again (at most `MAX_DESCENTS`
    times). ``non_monotone = True`` flags rows where an lr above the crossing trained (any
    label but ``diverged``) or the search moved down. A swept lr labelled ``diverged`` by
    :func:`trainscape.run` is therefore never below `critical_lr` (same engine, same bits);
    a divergent island between two rungs can still go unseen.

    Returns one row per combination of the other axes: those axes as columns, then
    `critical_lr`, `sharpness_init` (top Hessian eigenvalue at init, ``[metrics]
    sharpness_which``/``sharpness_iters``; the same for every lr of a row), `predicted_lr`
    (= 2 / sharpness_init, the linear-stability limit of plain gradient descent; inf when the
    sharpness is <= 0; momentum and adaptive optimizers have other limits), `lr_low`, `lr_high`
    (the final bracket), `n_rounds` (bisection rounds), `non_monotone`, `bracket_ok`.
    """
    exp = resolve_config(config, overrides)
    rtol = check_rtol(rtol)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int | np.integer) or
                                   chunk_size < 1):
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    low, high = bracket(exp, low, high)
    raw = exp.to_dict()
    raw["sweep"].pop("learning_rate", None)
    prep = Prepared(cfg.parse(raw), data=data, model=model, init_params=init_params)
    if not prep.shared_lr_entries:  # the bisected rate would train nothing
        own = [a for a in exp.sweep if a.startswith("learning_rate.")]
        raise InputError(f"sweep: {', '.join(own)} give every parameter entry its own rate, so "
                         "the learning rate bisected here trains none of them; drop one of "
                         "those axes to search over its entries' learning rate")
    plan.check_memory(prep)  # before anything is compiled

    # the search programs train exactly as `ts.run` does, minus curvature they do not need;
    # the bracket round adds sharpness at init (measured once per row, at both ends); labels
    # only, so no held-out evaluation
    plain = [(st._replace(sharpness=False, sharpness_every=0, test=False), rows)
             for st, rows in prep.groups]
    sharp = [(st._replace(sharpness=True, sharpness_every=0, test=False), rows)
             for st, rows in prep.groups]
    group_of_row = np.empty(len(prep.table), np.int64)
    for g, (_, rows) in enumerate(prep.groups):
        group_of_row[np.asarray(rows)] = g

    def evaluate(groups, row_K, lr_K):
        return _diverges(prep, groups, group_of_row, row_K, lr_K, chunk_size)

    n_rows = len(prep.table)
    rows_R = np.arange(n_rows)
    swept = np.asarray(sorted(exp.sweep.get("learning_rate", ())), np.float64)
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

        def bisect(rows):
            # rtol >= MIN_RTOL keeps every midpoint strictly inside its bracket, so this ends
            todo = np.zeros(n_rows, bool)
            todo[rows] = True
            while (open_R := todo & (hi_R / lo_R - 1 > rtol)).any():
                idx = np.nonzero(open_R)[0]
                # geometric midpoint (bisection in log lr); sqrt each so huge ends cannot overflow
                mid = np.sqrt(lo_R[idx]) * np.sqrt(hi_R[idx])
                div, _ = evaluate(plain, idx, mid)
                hi_R[idx] = np.where(div, mid, hi_R[idx])
                lo_R[idx] = np.where(div, lo_R[idx], mid)
                n_rounds_R[idx] += 1
                bar.update()

        bisect(np.nonzero(bracket_ok)[0])
        non_mono = np.zeros(n_rows, bool)
        # The check for non-monotone boundaries, one batched call per pass. Above the
        # crossing (first pass only): rungs strictly between lr_high and `high` (which the
        # bracket round saw diverge); any that trains flags the row. Below it: rungs strictly
        # between `low` and lr_low, and the swept learning rates there (so no lr that the
        # runs table of the same config labels `diverged` sits below `critical_lr`
        # unnoticed); if any diverges, the search moves down to the smallest such rung,
        # bisecting between it and the largest rung below it that did not diverge.
        idx = np.nonzero(bracket_ok)[0]
        for descent in range(MAX_DESCENTS + 1):
            if not idx.size:
                break
            above_KxA = _rungs(hi_R[idx], high, swept) if descent == 0 else np.zeros((idx.size, 0))
            below_KxB = _rungs(np.full(idx.size, low), lo_R[idx], swept)
            lr_KxM = np.concatenate([above_KxA, below_KxB], axis=1)
            k_, m_ = np.nonzero(np.isfinite(lr_KxM))
            div, _ = evaluate(plain, idx[k_], lr_KxM[k_, m_])
            div_KxM = np.zeros(lr_KxM.shape, bool)
            div_KxM[k_, m_] = div
            trained_KxM = np.isfinite(lr_KxM) & ~div_KxM
            non_mono[idx] |= trained_KxM[:, :above_KxA.shape[1]].any(axis=1)
            below_div = div_KxM[:, above_KxA.shape[1]:]
            moved = below_div.any(axis=1)
            bar.update()
            if not moved.any() or descent == MAX_DESCENTS:
                break
            idx, below_KxB, below_div = idx[moved], below_KxB[moved], below_div[moved]
            non_mono[idx] = True  # a divergent lr below one that trains
            new_hi = np.where(below_div, below_KxB, np.inf).min(axis=1)
            ok_below = np.isfinite(below_KxB) & ~below_div & (below_KxB < new_hi[:, None])
            lo_R[idx] = np.where(ok_below, below_KxB, low).max(axis=1)
            hi_R[idx] = new_hi
            bar.total += _count_rounds(float(lo_R[idx].min()), float(new_hi.max()), rtol) + 1
            bisect(idx)
        crit_R = np.where(bracket_ok, hi_R, np.nan)
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
    hp = execute.take(prep.hp, row_K)
    hp["learning_rate"] = np.asarray(lr_K, np.float64)
    g_K = group_of_row[row_K]
    batches = [(st, np.nonzero(g_K == g)[0]) for g, (st, _) in enumerate(groups)]
    batches = [(st, rows) for st, rows in batches if rows.size]
    div_K = np.zeros(len(row_K), bool)
    sharp_K = np.full(len(row_K), np.nan)
    for out in execute.run_chunks(batches, hp, prep.x, prep.y, prep.init_params, chunk_size):
        t = out.traj
        codes = classify.label_codes(t["initial_loss"], t["final_loss"], t["spike_ratio"],
                                     t["rebound"], t["diverged_step"])
        div_K[out.rows] = codes == _DIVERGED
        sharp_K[out.rows] = t["sharpness_init"].astype(np.float64)
    return div_K, sharp_K


def check_rtol(rtol) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.floating) or \
            not (math.isfinite(rtol) and rtol >= MIN_RTOL):
        raise InputError(f"rtol: expected a finite number >= {MIN_RTOL:g} such as 1e-3, got "
                         f"{rtol!r}")
    return float(rtol)


def bracket(exp, low, high) -> tuple[float, float]:
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
    # the runs train the learning rate in their own precision: 1e300 would be inf in float32
    run_dt, hp_dt, tiny, big = cfg.hparam_range(exp.sweep.get("dtype", (exp.train.dtype,)))
    for name, v in (("low", lo), ("high", hi)):
        if not tiny <= v <= big:
            raise InputError(f"{name}: got {v!r}; {run_dt} runs train the learning rate in "
                             f"{hp_dt}, where it must be within [{tiny:.4g}, {big:.4g}]")
    return float(lo), float(hi)


def _count_rounds(low: float, high: float, rtol: float) -> int:
    """Bisection rounds until the bracket ratio is within 1 + rtol (each halves log ratio)."""
    return max(0, math.ceil(math.log2(math.log(high / low) / math.log1p(rtol))))


class _NoBar:
    total = 0

    def update(self, k=1):
        pass

    def close(self):
        pass


def _rungs(lo_K, hi, swept) -> np.ndarray:
    """Learning rates strictly between lo_K[k] and hi (an array or one number) per row: a
    geometric ladder of LADDER_POINTS, then the swept values inside; NaN pads the rows."""
    lo_K = np.asarray(lo_K, np.float64)
    hi_K = np.broadcast_to(np.asarray(hi, np.float64), lo_K.shape)
    frac_L = np.arange(1, LADDER_POINTS + 1) / (LADDER_POINTS + 1)
    ladder_KxL = lo_K[:, None] * (hi_K[:, None] / lo_K[:, None]) ** frac_L[None, :]
    inside_KxS = (swept[None, :] > lo_K[:, None]) & (swept[None, :] < hi_K[:, None])
    grid_KxS = np.where(inside_KxS, swept[None, :], np.nan)
    return np.concatenate([ladder_KxL, grid_KxS], axis=1)


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
    # a row whose bracket failed has no critical lr (NaN in the table): "none", not "nan"
    shown["critical_lr"] = shown["critical_lr"].where(table["bracket_ok"], "none")
    lines.append(shown.to_string(index=False))
    bad = table[~table["bracket_ok"]]
    if len(bad):
        lines.append(f"\n{len(bad)} row(s) with bracket_ok = False: the low end diverged or "
                     "the high end did not; widen the bracket (--low / --high)")
    flagged = table[table["non_monotone"]]
    if len(flagged):
        lines.append(f"{len(flagged)} row(s) non_monotone: the divergent learning rates are not "
                     "one interval (a larger one trained, or a smaller one diverged and the "
                     "search moved down to it)")
    return "\n".join(lines) + "\n"
