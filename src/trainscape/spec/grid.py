"""Sweep axes -> run table: one row per grid point, one column per axis, and a stable run_id.

The grid is the cartesian product of the axes in the order the config lists them (first axis
outermost); `run_id` is the row's position in that product, so it depends only on the config,
never on chunking or devices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.schema import INTEGER_AXES, Experiment


def axis_dtype(name: str):
    if name == "dtype":
        return object
    return np.int64 if name in INTEGER_AXES else np.float64


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
    return np.asarray(group_positions(exp, {name: value}))


def group_positions(exp: Experiment, fixed: dict) -> Positions:
    """The positions of the runs whose axes named in `fixed` take the given values (axes not
    swept are ignored), as a lazy `Positions`."""
    names = list(exp.sweep)
    digits = {names.index(a): list(exp.sweep[a]).index(v)
              for a, v in fixed.items() if a in exp.sweep}
    return Positions(tuple(len(v) for v in exp.sweep.values()), digits)


class Positions:
    """The run_ids of a grid whose axes at some indices are fixed to one value each, in
    increasing order, computed on demand from the axis lengths alone: a program group of a
    grid of 10**9 runs costs nothing until a chunk of it is asked for (an array of its
    positions would take 8 bytes a run, and finding them by sorting, minutes).

    `lengths`: every axis's number of values, first axis outermost; `fixed`: axis index ->
    the index of its value. Slicing gives an int64 array; `len` the number of runs."""

    def __init__(self, lengths: tuple[int, ...], fixed: dict[int, int]):
        self.lengths = tuple(int(n) for n in lengths)
        self.fixed = dict(fixed)
        strides = [1] * len(self.lengths)
        for i in range(len(self.lengths) - 2, -1, -1):
            strides[i] = strides[i + 1] * self.lengths[i + 1]
        self.offset = sum(strides[i] * k for i, k in self.fixed.items())
        self.free = [(strides[i], n) for i, n in enumerate(self.lengths) if i not in self.fixed]
        self.n = 1
        for _, n in self.free:
            self.n *= n

    def __len__(self) -> int:
        return self.n

    def at(self, m: np.ndarray) -> np.ndarray:
        """The positions of the `m`-th runs of the group (mixed-radix digits over the axes
        that are not fixed, the last varying fastest)."""
        m = np.asarray(m, dtype=np.int64)
        pos = np.full(m.shape, self.offset, dtype=np.int64)
        inner = self.n
        for stride, n in self.free:
            inner //= n
            pos += stride * ((m // inner) % n)
        return pos

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.at(np.arange(*key.indices(self.n), dtype=np.int64))
        if isinstance(key, int | np.integer):
            if not -self.n <= key < self.n:
                raise IndexError(f"position {key} of {self.n}")
            return int(self.at(key % self.n))
        return self.at(np.arange(self.n, dtype=np.int64)[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)
