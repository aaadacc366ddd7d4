"""Aggregates over the runs table: label counts per axis value, and friends.

Every function says how it treats diverged runs: they are counted (as their own label), never
silently averaged into loss statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..train.classify import LABELS
from . import heldout


def label_counts(runs: pd.DataFrame, by: str | list[str] = "learning_rate") -> pd.DataFrame:
    """Number of runs with each label for every value of `by` (columns: every label, in
    LABELS order, then `total`). Diverged runs are counted in `diverged`."""
    by = [by] if isinstance(by, str) else list(by)
    return count_table(runs.groupby(by + ["label"], observed=True).size())


def count_table(sizes: pd.Series) -> pd.DataFrame:
    """`label_counts`'s table from run counts indexed by (axis values..., label)."""
    counts = (sizes.unstack("label", fill_value=0)
              .reindex(columns=list(LABELS), fill_value=0).astype(np.int64))
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts


WILSON_Z = 1.959963984540054  # two-sided 95%: the 0.975 quantile of the standard normal


def wilson_interval(k, n, z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes out of n trials (arrays; NaN where n == 0).

    Unlike the normal approximation p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and is not
    degenerate at k = 0 or k = n, which is where divergence fractions over a few seeds live.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo = np.where(n > 0, np.clip(center - half, 0.0, 1.0), np.nan)
        hi = np.where(n > 0, np.clip(center + half, 0.0, 1.0), np.nan)
    return lo, hi


def divergence_table(results_or_runs, by: str | list[str] = ("learning_rate",)) -> pd.DataFrame:
    """Label probabilities per value of the `by` axes, with Wilson 95% intervals.

    `results_or_runs`: a :class:`~trainscape.Results` or its `runs` DataFrame (needs `label`,
    `initial_loss`, `max_loss` and the `by` columns; `spike_step` and `spike_recover_step`
    when present). One row per combination of the `by` values (typically `learning_rate`, or
    `learning_rate` x `init_scale`), so each row pools the remaining axes (seeds, ...).
    Columns: the `by` axes, `n` (runs), then for every label in LABELS order `n_<label>`,
    `p_<label>` (= n_<label> / n) and its Wilson 95% interval `p_<label>_lo`, `p_<label>_hi`;
    then

    - `median_peak_ratio`: median of max_loss / initial_loss over the runs that did NOT
      diverge (NaN when every run diverged). Diverged runs are excluded because their max_loss
      is only the last value below the blow-up cut-off (frozen runs), not a peak they came
      back from; they are counted in `n_diverged` / `p_diverged` instead.
    - `n_recovered`: runs labelled `catapult` whose loss came back down, after the top of
      their largest spike (`spike_step`), to the lowest loss before that spike
      (`spike_recover_step` is set);
    - `median_recover_steps`: median of spike_recover_step - spike_step over those runs: the
      steps from the top of the spike back down to where the loss was before it; NaN when
      none recovered. Results written before version 0.8.0 have no spike columns: there
      `n_recovered` is missing (NA) and this is NaN.
    - with held-out data (`final_test_loss` in the runs), for every label in LABELS order:
      `test_loss_<label>`, the median final held-out loss of the runs with that label, and
      its distribution-free 95% interval `test_loss_<label>_lo`, `_hi`
      (`analysis.heldout.median_interval`; NaN below 6 runs); the same for
      `test_accuracy_<label>` when classifying.
    """
    from ..errors import InputError

    runs = getattr(results_or_runs, "runs", results_or_runs)
    if not isinstance(runs, pd.DataFrame):
        raise InputError("divergence_table: expected a Results or a runs DataFrame, got "
                         f"{type(results_or_runs).__name__}")
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise InputError("divergence_table by=: give at least one column, e.g. "
                         "['learning_rate']")
    if "label" in by or len(set(by)) < len(by):  # pandas' errors came from inside a groupby
        raise InputError(f"divergence_table by=: got {by!r}; give distinct columns other than "
                         "'label' (what is counted), e.g. ['learning_rate']")
    need = [*by, "label", "initial_loss", "max_loss"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise InputError(f"divergence_table: runs has no column(s) {missing}; available: "
                         f"{', '.join(map(str, runs.columns))}")
    unknown = sorted(set(runs["label"].dropna().astype(str)) - set(LABELS))
    if unknown:
        raise InputError(f"divergence_table: unknown label(s) {unknown}; allowed: "
                         f"{', '.join(LABELS)}")

    counts = label_counts(runs, by)
    out = counts[["total"]].rename(columns={"total": "n"})
    n = out["n"].to_numpy()
    for lab in LABELS:
        k = counts[lab].to_numpy()
        lo, hi = wilson_interval(k, n)
        out[f"n_{lab}"] = k
        out[f"p_{lab}"] = k / n
        out[f"p_{lab}_lo"] = lo
        out[f"p_{lab}_hi"] = hi

    keys = runs[by]
    alive = runs["label"] != "diverged"
    peak = (runs["max_loss"].astype(np.float64) / runs["initial_loss"].astype(np.float64))
    out["median_peak_ratio"] = (peak[alive].groupby([keys[c][alive] for c in by],
                                                    observed=True).median()
                                .reindex(out.index))
    if {"spike_step", "spike_recover_step"} <= set(runs.columns):
        cat = (runs["label"] == "catapult") & runs["spike_recover_step"].notna()
        rec = (runs["spike_recover_step"][cat].astype(np.float64)
               - runs["spike_step"][cat].astype(np.float64))
        grouped = rec.groupby([keys[c][cat] for c in by], observed=True)
        out["n_recovered"] = grouped.size().reindex(out.index).fillna(0).astype("Int64")
        out["median_recover_steps"] = grouped.median().reindex(out.index)
    else:
        out["n_recovered"] = pd.array([pd.NA] * len(out), dtype="Int64")
        out["median_recover_steps"] = np.nan
    held = heldout.wide_by_label(runs, by)
    if held is not None:
        out = out.join(held)
    return out.reset_index()
