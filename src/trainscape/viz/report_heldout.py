"""The report's paragraphs on learning-rate schedules, held-out data and warmup.

Each function takes the report's fact recorder `f` (every number it writes goes through it, as
in `report.answer`) and returns a paragraph, or '' when the results have nothing to say on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import heldout
from ..nn.schedules import lr_at_step

LR = "learning_rate"
MAX_COMPARED_LRS = 3  # learning rates with both catapult and converged runs, named in the text
MIN_RUNS = 2  # runs of each label a learning rate needs for its catapult/converged comparison


def schedule_text(f, res) -> str:
    """What learning rate each update used, when it was not constant."""
    o, steps = res.config.optimizer, res.config.train.steps
    if o.schedule == "constant":
        return ""
    ws = res.config.sweep.get("warmup_steps", (o.warmup_steps,))
    w = int(max(ws)) if "warmup" in o.schedule else 0
    rates = lr_at_step(o.schedule, 1.0, steps, w, o.end_factor)
    text = (f"The learning rate follows the {o.schedule} schedule with the "
            + ("swept " if LR in res.config.sweep else "") + "learning rate as its peak")
    if w:
        text += (f"; with {f('schedule.warmup_steps', w)} warmup steps"
                 + (" (the longest swept)" if len(ws) > 1 else ""))
    text += (f", update 0 uses {f('schedule.first', rates[0], 3)} of the peak, update "
             f"{f('schedule.mid_step', steps // 2)} {f('schedule.mid', rates[steps // 2], 3)} "
             f"and the last update {f('schedule.last', rates[-1], 3)} (`ts.lr_at_step` gives "
             "every update's rate).")
    return text


def _ci(f, key: str, med, lo, hi) -> str:
    if np.isnan(lo):
        return f"{f(key, med)} (too few runs for an interval)"
    return f"{f(key, med)} [{f(key + '_lo', lo)}, {f(key + '_hi', hi)}]"


def held_out_text(f, res, runs: pd.DataFrame) -> str:
    """Do catapult runs end with a lower or a higher held-out loss than converged runs at the
    same learning rate?"""
    if "final_test_loss" not in runs.columns:
        return ""
    held = res.meta.get("data", {}).get("holdout") or res.meta.get("data", {}).get("test_data")
    n_test = held.get("n_test", held.get("n_samples")) if held else None
    text = ("Held-out data" + (f" ({f('heldout.n_rows', n_test)} rows never trained on)"
                               if n_test is not None else "")
            + ": medians over the runs of each label with distribution-free "
            f"{f('heldout.level_percent', round(100 * heldout.LEVEL))}% intervals.")
    cv = heldout.catapult_vs_converged(runs, min_runs=MIN_RUNS)
    if cv.empty:
        m = f("heldout.min_runs", MIN_RUNS)
        text += (f" No learning rate has at least {m} catapult and {m} converged runs, so the "
                 "two cannot be compared at the same learning rate.")
    else:
        shown = cv.assign(total=cv["n_catapult"] + cv["n_converged"]).nlargest(
            MAX_COMPARED_LRS, "total").sort_values(LR)
        for i, r in enumerate(shown.itertuples()):
            k = f"heldout.cmp{i}"
            word = "lower" if r.difference < 0 else "higher" if r.difference > 0 else "the same"
            text += (f" At learning rate {f.lr(k + '.lr', getattr(r, LR))} the "
                     f"{f(k + '.n_catapult', r.n_catapult)} catapult runs end with held-out "
                     f"loss {_ci(f, k + '.catapult', r.catapult, r.catapult_lo, r.catapult_hi)}"
                     f", the {f(k + '.n_converged', r.n_converged)} converged runs "
                     f"{_ci(f, k + '.converged', r.converged, r.converged_lo, r.converged_hi)}"
                     f": {word} for the catapult.")
        text += " " + _tally(f, cv)
    best = _best_by_label(runs)
    for lab in ("converged", "catapult"):
        if lab in best.index:
            r, k = best.loc[lab], f"heldout.best_{lab}"
            text += (f" The best {lab} runs, at learning rate {f.lr(k + '.lr', r[LR])}, end "
                     f"at {_ci(f, k, r['median'], r['lo'], r['hi'])}.")
    return text


def _tally(f, cv: pd.DataFrame) -> str:
    """At how many of the compared learning rates (`catapult_vs_converged`'s rows) the
    catapult's median held-out loss is lower, higher or the same as the converged runs', and
    the rule that chose them; "at all 3" or "at 2 of them", never a bare "at 0", which reads
    as a loss of 0."""
    d = cv["difference"].to_numpy(float)
    m = f("heldout.min_runs", MIN_RUNS)
    rule = f"at least {m} catapult and {m} converged runs"
    if len(d) == 1:
        return f"It is the only learning rate with {rule}."
    if not np.isfinite(d).all() and np.isfinite(d).sum() == 1:
        one = float(d[np.isfinite(d)][0])
        word = "lower than" if one < 0 else "higher than" if one > 0 else "the same as"
        return (f"Of the {f('heldout.n_compared', len(d))} learning rates with {rule}, only "
                "one has a finite median held-out loss for both labels; there the catapult's "
                f"is {word} the converged runs'.")
    if not np.isfinite(d).all() and np.isfinite(d).any():  # count only what compares
        rule += " and a finite median held-out loss for both"
        d = d[np.isfinite(d)]
    tally = [(word, int(k)) for word, k in (("lower", (d < 0).sum()), ("higher", (d > 0).sum()),
                                            ("same", (d == 0).sum()))]
    for word, k in tally:
        f(f"heldout.n_{word}", k)
    of = f"Of the {f('heldout.n_compared', len(d))} learning rates with {rule}, "
    present = [(word, k) for word, k in tally if k]
    if not present:  # NaN medians: no comparison to count
        return of + "none has a finite median held-out loss for both labels."
    head = of + "the catapult's median held-out loss is "
    than = {"lower": "lower than", "higher": "higher than", "same": "the same as"}
    (first, k), *rest = present
    if not rest:
        return head + f"{than[first]} the converged runs' at all {f(f'heldout.n_{first}', k)}."
    parts = [f"{than[first]} the converged runs' at {f(f'heldout.n_{first}', k)} of them",
             *(f"{'the same' if w == 'same' else w} at {f(f'heldout.n_{w}', k)}"
               for w, k in rest)]
    return head + ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def _best_by_label(runs: pd.DataFrame) -> pd.DataFrame:
    """Per label, the learning rate with the lowest median final held-out loss (at least 2
    runs)."""
    long = heldout.by_label(runs, [LR], "final_test_loss")
    long = long[(long["n"] >= 2) & np.isfinite(long["median"])]
    return long.loc[long.groupby("label")["median"].idxmin()].set_index("label")


def warmup_text(f, res, runs: pd.DataFrame) -> str:
    """How far the warmup moved the smallest diverging learning rate of the grid."""
    if "warmup_steps" not in res.config.sweep or LR not in res.config.sweep:
        return ""
    axes = [a for a in res.axes if a != LR and a in runs.columns]
    eff = heldout.warmup_effect(heldout.grid_critical_lr(runs, axes))
    if not (eff["warmup_steps"] == 0).any():
        return ""
    base = eff[eff["warmup_steps"] == 0].iloc[0]
    if base.n == 0:
        return ("Warmup: no run without warmup diverged on the grid, so the grid does not place "
                "the critical learning rate to compare warmups with; widen the learning rates.")
    per = ", ".join(a for a in axes if a != "warmup_steps") or "run"
    without = _ci(f, "warmup.0", base.critical_lr, base.critical_lr_lo, base.critical_lr_hi)
    text = (f"Warmup: the smallest swept learning rate that diverges (per {per}; median with "
            f"its 95% interval over the {f('warmup.0.n', base.n)} that diverged on the grid) "
            f"is {without} without warmup")
    parts = []
    for i, r in enumerate(eff[eff["warmup_steps"] > 0].itertuples()):
        k = f"warmup.{i + 1}"
        parts.append(f"{_ci(f, k, r.critical_lr, r.critical_lr_lo, r.critical_lr_hi)} with "
                     f"{f(k + '.steps', int(r.warmup_steps))} warmup steps ({f(k + '.n', r.n)} "
                     "diverged; ratio to the same "
                     f"{per} without warmup "
                     f"{_ci(f, k + '.ratio', r.ratio, r.ratio_lo, r.ratio_hi)})")
    return text + ("; " + "; ".join(parts) if parts else "") + (
        ". These are bounded by the grid's spacing; `ts.critical_lr` with the same sweep "
        "bisects each row.")


def held_out_cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Columns for the report's table per learning rate: the median final held-out loss of
    the converged and the catapult runs at each learning rate."""
    head, cols = [], []
    for lab in ("converged", "catapult"):
        key = f"test_loss_{lab}"
        if key in table.columns:
            head.append(f"held-out loss, {lab}")
            cols.append([_cell(v) for v in table[key]])
    return head, [list(r) for r in zip(*cols, strict=True)] if cols else [[] for _ in
                                                                        range(len(table))]


def _cell(v) -> str:
    from .report import fmt_number

    return "–" if v is None or pd.isna(v) else fmt_number(v, 3)
