"""Sweep axes -> run table: one row per grid point, one column per axis, and a stable run_id.

The grid is the cartesian product of the axes in the order the config lists them (first axis
outermost); `run_id` is the row's position in that product, so it depends only on the config,
never on chunking or devices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.schema import Experiment


def axis_dtype(name: str):
    if name == "dtype":
        return object
    return np.int64 if name in ("seed", "batch_size", "width", "depth") else np.float64


def expand(exp: Experiment) -> pd.DataFrame:
    """The run table of `exp`: `run_id` plus one column per sweep axis."""
    return rows(exp, np.arange(exp.n_runs, dtype=np.int64))


def rows(exp: Experiment, positions: np.ndarray) -> pd.DataFrame:
    """The rows of the run table at `positions` (= their run_ids), computed from the positions
    alone (mixed-radix digits, first axis most significant), so a sweep never needs the whole
    table of a huge grid in memory."""
    positions = np.asarray(positions, dtype=np.int64)
    cols: dict[str, np.ndarray] = {"run_id": positions}
    inner = exp.n_runs
    for name, values in exp.sweep.items():
        inner //= len(values)
        col = np.asarray(values, dtype=axis_dtype(name))[(positions // inner) % len(values)]
        cols[name] = col.astype(str) if name == "dtype" else col
    return pd.DataFrame(cols, copy=False)


def axis_positions(exp: Experiment, name: str, value) -> np.ndarray:
    """Positions of the runs whose axis `name` has `value` (every run if `name` is not swept)."""
    n = exp.n_runs
    if name not in exp.sweep:
        return np.arange(n, dtype=np.int64)
    names = list(exp.sweep)
    inner = n
    for a in names[:names.index(name) + 1]:
        inner //= len(exp.sweep[a])
    k = list(exp.sweep[name]).index(value)
    return np.nonzero((np.arange(n, dtype=np.int64) // inner) % len(exp.sweep[name]) == k)[0]
