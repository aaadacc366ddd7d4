"""Sweep axes -> run table: one row per grid point, one column per axis, and a stable run_id.

The grid is the cartesian product of the axes in the order the config lists them (first axis
outermost); `run_id` is the row's position in that product, so it depends only on the config,
never on chunking or devices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import Experiment


def axis_dtype(name: str):
    if name == "dtype":
        return object
    return np.int64 if name in ("seed", "batch_size") else np.float64


def expand(exp: Experiment) -> pd.DataFrame:
    """The run table of `exp`: `run_id` plus one column per sweep axis."""
    axes = exp.sweep
    n = exp.n_runs
    cols: dict[str, np.ndarray] = {"run_id": np.arange(n, dtype=np.int64)}
    if axes:
        idx = np.indices([len(v) for v in axes.values()]).reshape(len(axes), -1)
        for (name, values), ix in zip(axes.items(), idx, strict=True):
            col = np.asarray(values, dtype=axis_dtype(name))[ix]
            cols[name] = col.astype(str) if name == "dtype" else col
    return pd.DataFrame(cols)
