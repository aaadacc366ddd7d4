"""Aggregates over the runs table: label counts per axis value, and friends.

Every function says how it treats diverged runs: they are counted (as their own label), never
silently averaged into loss statistics.
"""

from __future__ import annotations

import pandas as pd

from .classify import LABELS


def label_counts(runs: pd.DataFrame, by: str | list[str] = "learning_rate") -> pd.DataFrame:
    """Number of runs with each label for every value of `by` (columns: every label, in
    LABELS order, then `total`). Diverged runs are counted in `diverged`."""
    by = [by] if isinstance(by, str) else list(by)
    counts = (runs.groupby(by + ["label"], observed=True).size().unstack("label", fill_value=0)
              .reindex(columns=list(LABELS), fill_value=0))
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts
