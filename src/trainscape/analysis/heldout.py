"""Held-out metrics by label, and how far a warmup moves the critical learning rate.

Medians come with distribution-free 95% confidence intervals from order statistics (the
interval [x_(k), x_(n-k+1)] of the sorted values holds the population median with probability
at least 95% for any continuous distribution; NaN below 6 values, where no such k exists).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..train.classify import LABELS

LEVEL = 0.95
TEST_METRICS = ("final_test_loss", "final_test_accuracy")


def median_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(median, lo, hi) of the finite `values`: lo, hi the order statistics x_(k), x_(n+1-k)
    with the largest k such that P(Binomial(n, 1/2) < k) <= (1 - level) / 2."""
    v = np.sort(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return np.nan, np.nan, np.nan
    med = float(np.median(v))
    from scipy import stats  # here, not at import: scipy.stats alone takes about 0.3 s

    # k - 1 = the largest j with P(B <= j) <= alpha / 2, B ~ Binomial(n, 1/2)
    k = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    if stats.binom.cdf(k, n, 0.5) > (1 - level) / 2:
        k -= 1
    if k < 0:
        return med, np.nan, np.nan
    return med, float(v[k]), float(v[n - 1 - k])


def by_label(runs: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Median and interval of `metric` per combination of `by` and label (long format:
    the `by` columns, label, n, median, lo, hi)."""
    rows = []
    for key, g in runs.groupby([*by, "label"], observed=True, sort=True):
        med, lo, hi = median_interval(g[metric].to_numpy(np.float64))
        rows.append((*key, len(g), med, lo, hi))
    return pd.DataFrame(rows, columns=[*by, "label", "n", "median", "lo", "hi"])


def wide_by_label(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame | None:
    """`divergence_table`'s held-out columns, indexed by `by`: for every label in LABELS
    order, `test_loss_<label>` (median final_test_loss of the runs with that label) with its
    interval `test_loss_<label>_lo`, `_hi`, and the same for `test_accuracy_<label>`. None
    when the runs have no held-out metrics."""
    present = [m for m in TEST_METRICS if m in runs.columns]
    if not present:
        return None
    cols = {}
    for metric in present:
        name = metric.removeprefix("final_")
        long = by_label(runs, by, metric).set_index([*by, "label"])
        for lab in LABELS:
            part = long.xs(lab, level="label") if lab in long.index.get_level_values(
                "label") else long.iloc[:0].droplevel("label")
            for src, suffix in (("median", ""), ("lo", "_lo"), ("hi", "_hi")):
                cols[f"{name}_{lab}{suffix}"] = part[src]
    return pd.DataFrame(cols)


def catapult_vs_converged(runs: pd.DataFrame, lr: str = "learning_rate",
                          min_runs: int = 2) -> pd.DataFrame:
    """At each learning rate where at least `min_runs` runs catapulted and as many converged:
    the median final held-out loss of each group with its interval, and their difference
    (catapult minus converged). Columns: lr, n_catapult, catapult, catapult_lo, catapult_hi,
    n_converged, converged, converged_lo, converged_hi, difference."""
    rows = []
    for value, g in runs.groupby(lr, sort=True):
        cat = g.loc[g["label"] == "catapult", "final_test_loss"].to_numpy(np.float64)
        conv = g.loc[g["label"] == "converged", "final_test_loss"].to_numpy(np.float64)
        if len(cat) < min_runs or len(conv) < min_runs:
            continue
        c, clo, chi = median_interval(cat)
        v, vlo, vhi = median_interval(conv)
        rows.append((value, len(cat), c, clo, chi, len(conv), v, vlo, vhi, c - v))
    return pd.DataFrame(rows, columns=[lr, "n_catapult", "catapult", "catapult_lo",
                                       "catapult_hi", "n_converged", "converged",
                                       "converged_lo", "converged_hi", "difference"])


def grid_critical_lr(runs: pd.DataFrame, axes: list[str],
                     lr: str = "learning_rate") -> pd.DataFrame:
    """The grid's own estimate of the critical learning rate for every combination of the
    other swept `axes`: the smallest swept learning rate labelled `diverged` (NaN if none did,
    an upper bound to within the grid's spacing otherwise)."""
    div = runs[runs["label"] == "diverged"]
    crit = div.groupby(axes, observed=True)[lr].min()
    keys = runs[axes].drop_duplicates().sort_values(axes).set_index(axes).index
    return crit.reindex(keys).rename("critical_lr").reset_index()


def warmup_effect(critical: pd.DataFrame, axis: str = "warmup_steps") -> pd.DataFrame:
    """How far warmup moves the critical learning rate, from a `ts.critical_lr` table (or
    `grid_critical_lr`) with a `warmup_steps` column: one row per warmup length, with n (rows
    with a finite critical lr), the median critical lr and its interval, and the median of the
    ratio to the same row without warmup (`warmup_steps` = 0, paired on every other column,
    e.g. the seed) with its interval."""
    crit = critical.copy()
    if "bracket_ok" in crit.columns:  # a critical lr only where the bracket held it
        crit.loc[~crit["bracket_ok"].astype(bool), "critical_lr"] = np.nan
    others = [c for c in crit.columns if c in _pair_columns(crit, axis)]
    base = crit[crit[axis] == 0].set_index(others)["critical_lr"] if others else None
    rows = []
    for w, g in crit.groupby(axis, sort=True):
        med, lo, hi = median_interval(g["critical_lr"])
        if base is not None:
            ratio = g.set_index(others)["critical_lr"] / base.reindex(g.set_index(others).index)
        else:
            b = crit.loc[crit[axis] == 0, "critical_lr"]
            ratio = g["critical_lr"] / (b.iloc[0] if len(b) else np.nan)
        r, rlo, rhi = median_interval(ratio.to_numpy(np.float64))
        rows.append((w, int(np.isfinite(g["critical_lr"].to_numpy(np.float64)).sum()), med, lo,
                     hi, r, rlo, rhi))
    return pd.DataFrame(rows, columns=[axis, "n", "critical_lr", "critical_lr_lo",
                                       "critical_lr_hi", "ratio", "ratio_lo", "ratio_hi"])


def _pair_columns(crit: pd.DataFrame, axis: str) -> list[str]:
    """The columns that identify a row apart from the warmup: the other sweep axes."""
    result = {"critical_lr", "sharpness_init", "predicted_lr", "lr_low", "lr_high",
              "n_rounds", "non_monotone", "bracket_ok", axis}
    return [c for c in crit.columns if c not in result]
