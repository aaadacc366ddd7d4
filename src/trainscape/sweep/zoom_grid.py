"""The pure geometry of a boundary zoom: level lattices, boundary cells, margins, box counting.

Nothing here trains: outcomes come in as arrays, so every rule can be checked against a map
with a known boundary (an oracle function of the two axis values).

Every point of every level is an integer pair (i, j) on the *finest* lattice, which has
``N = 2**levels * (n - 1) + 1`` points along an axis given with ``num = n``. Level k uses every
``stride(k) = 2**(levels - k)``-th lattice point, so a point computed at a coarse level is the
same pair at every finer one and is never recomputed. A point's value is the finest dense
grid's value at that index, in float64 and never rounded (`Axis.values`). Cells are indexed by
their lower-left corner on the level's own lattice (level-k cell (a, b) spans lattice points
a*stride .. (a+1)*stride along the first axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("diverged", "label", "measure")


@dataclass(frozen=True)
class Axis:
    """One zoomed axis: its name and the raw spec `{geomspace|linspace = [start, stop], num}`."""

    name: str
    form: str  # "geomspace" or "linspace"
    start: float
    stop: float
    num: int

    def size(self, levels: int) -> int:
        """Points of the finest lattice along this axis."""
        return lattice_size(self.num, levels)

    def values(self, index: np.ndarray, levels: int) -> np.ndarray:
        """float64 values at finest-lattice indices i: start * (stop/start)**(i / (N-1))
        (geomspace) or start + (stop - start) * (i / (N-1)) (linspace), N the finest lattice
        size. N - 1 is a power of two times a level's own N_k - 1, so i / (N-1) is the same
        float as the level's index over N_k - 1: a point has the same value on every level's
        dense grid, bit for bit. Nothing is rounded, so a window one part in 10**9 wide still
        gives distinct points (np.geomspace / np.linspace differ from these by a few ulps)."""
        t = np.asarray(index, dtype=np.int64) / np.float64(self.size(levels) - 1)
        a, b = np.float64(self.start), np.float64(self.stop)
        if self.form == "geomspace":
            return a * (b / a) ** t
        return a + (b - a) * t

    def to_dict(self) -> dict:
        return {"name": self.name, "form": self.form, "start": self.start, "stop": self.stop,
                "num": self.num}


def lattice_size(num: int, levels: int) -> int:
    return 2**levels * (num - 1) + 1


def stride(k: int, levels: int) -> int:
    """Finest-lattice steps between neighbouring points of level k."""
    return 2 ** (levels - k)


def keys(ij: np.ndarray, width: int) -> np.ndarray:
    """One int64 per (i, j) pair (rows of `ij`), for set operations; `width` > every j."""
    ij = np.asarray(ij, dtype=np.int64).reshape(-1, 2)
    return ij[:, 0] * width + ij[:, 1]


def unkeys(k: np.ndarray, width: int) -> np.ndarray:
    k = np.asarray(k, dtype=np.int64)
    return np.stack([k // width, k % width], axis=1)


def level0_points(n: int, m: int, levels: int) -> np.ndarray:
    """The n x m points of level 0 as finest-lattice (i, j) rows, first axis outermost."""
    s = stride(0, levels)
    i, j = np.meshgrid(np.arange(n) * s, np.arange(m) * s, indexing="ij")
    return np.stack([i.ravel(), j.ravel()], axis=1).astype(np.int64)


def level0_cells(n: int, m: int) -> np.ndarray:
    """Every cell of the n x m level-0 grid, as (a, b) rows on level 0's lattice."""
    a, b = np.meshgrid(np.arange(n - 1), np.arange(m - 1), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)


class Outcomes:
    """Outcome codes of the computed points, looked up by finest-lattice (i, j)."""

    def __init__(self, width: int):
        self.width = width
        self._keys = np.zeros(0, np.int64)
        self._codes = np.zeros(0, np.int64)

    def add(self, ij: np.ndarray, codes: np.ndarray) -> None:
        k = keys(ij, self.width)
        if np.isin(k, self._keys).any() or len(np.unique(k)) != len(k):
            raise ValueError("a point was computed twice")
        k = np.concatenate([self._keys, k])
        c = np.concatenate([self._codes, np.asarray(codes, dtype=np.int64)])
        order = np.argsort(k, kind="stable")
        self._keys, self._codes = k[order], c[order]

    def __len__(self) -> int:
        return len(self._keys)

    def known(self, ij: np.ndarray) -> np.ndarray:
        return np.isin(keys(ij, self.width), self._keys)

    def codes(self, ij: np.ndarray) -> np.ndarray:
        """Codes at `ij` (every point must have been added)."""
        k = keys(ij, self.width)
        pos = np.searchsorted(self._keys, k)
        pos = np.minimum(pos, len(self._keys) - 1)
        if len(k) and not (self._keys[pos] == k).all():
            raise KeyError("outcome of a point that was not computed")
        return self._codes[pos]

    def points(self) -> np.ndarray:
        return unkeys(self._keys, self.width)


def corners(cells: np.ndarray, k: int, levels: int) -> list[np.ndarray]:
    """The four corners of level-k `cells` as finest-lattice (i, j) arrays."""
    s = stride(k, levels)
    base = np.asarray(cells, dtype=np.int64).reshape(-1, 2) * s
    return [base + np.array(d) * s for d in ((0, 0), (1, 0), (0, 1), (1, 1))]


def boundary_cells(cells: np.ndarray, k: int, levels: int, outcomes: Outcomes) -> np.ndarray:
    """The level-k `cells` whose four corners do not all carry the same outcome."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    c = [outcomes.codes(p) for p in corners(cells, k, levels)]
    differ = (c[0] != c[1]) | (c[0] != c[2]) | (c[0] != c[3])
    return cells[differ]


def dilate(cells: np.ndarray, margin: int, shape: tuple[int, int]) -> np.ndarray:
    """`cells` and every cell within `margin` cells of one (Chebyshev distance: the square of
    side 2 margin + 1 around it), clipped to a level of `shape` (cells per axis); unique rows
    in (a, b) order."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    if margin:
        d = np.arange(-margin, margin + 1)
        da, db = np.meshgrid(d, d, indexing="ij")
        offsets = np.stack([da.ravel(), db.ravel()], axis=1)
        cells = (cells[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
        inside = ((cells >= 0) & (cells < np.asarray(shape))).all(axis=1)
        cells = cells[inside]
    return unkeys(np.unique(keys(cells, shape[1])), shape[1])


def cell_shape(n: int, m: int, k: int) -> tuple[int, int]:
    """Cells per axis at level k."""
    return 2**k * (n - 1), 2**k * (m - 1)


def refine(cells: np.ndarray, k: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Level-(k+1) points and cells inside the level-k `cells`: (points as finest (i, j),
    unique; child cells on level k+1's lattice)."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    s = stride(k + 1, levels)
    d3 = np.array([(a, b) for a in range(3) for b in range(3)])
    d2 = np.array([(a, b) for a in range(2) for b in range(2)])
    pts = ((2 * cells)[:, None, :] + d3[None]).reshape(-1, 2) * s
    children = ((2 * cells)[:, None, :] + d2[None]).reshape(-1, 2)
    width = int(pts[:, 1].max(initial=0)) + 1
    pts = unkeys(np.unique(keys(pts, width)), width)
    return pts, children


def next_level(active: np.ndarray, k: int, levels: int, margin: int, outcomes: Outcomes,
               nm: tuple[int, int]) -> dict:
    """What level k+1 computes, from level k's `active` cells (those whose corners are all
    computed): the boundary cells among them, the cells chosen (boundary + margin), the new
    points (inside chosen cells, not computed before) and level k+1's active cells. `nm`:
    level 0's points per axis."""
    n, m = nm
    boundary = boundary_cells(active, k, levels, outcomes)
    chosen = dilate(boundary, margin, cell_shape(n, m, k))
    pts, children = refine(chosen, k, levels)
    new = pts[~outcomes.known(pts)]
    return {"boundary": boundary, "chosen": chosen, "points": new, "active": children}


# ---------------------------------------------------------------- box counting


def box_counts(cells: np.ndarray, sizes) -> np.ndarray:
    """Boxes of side s (in finest cells, aligned at 0) holding at least one of the finest
    `cells`, for each s in `sizes`. A closed box of side s holds both outcomes among its
    lattice points exactly when one of the finest cells inside it is a boundary cell, so this
    is the box count of the two-outcome map."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    out = []
    for s in sizes:
        boxes = cells // int(s)
        out.append(len(np.unique(keys(boxes, int(boxes[:, 1].max(initial=0)) + 1))))
    return np.asarray(out, dtype=np.int64)


def fit_dimension(sizes, counts, span: float, confidence: float = 0.95) -> dict:
    """Box-counting dimension: the least-squares slope of log N against log 1/size (sizes as
    fractions of the map's side: `sizes / span`), with its t-interval at `confidence`
    (the regression's standard error of the slope, n - 2 degrees of freedom)."""
    from scipy import stats

    sizes = np.asarray(sizes, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts > 0
    x = np.log(span / sizes[keep])
    y = np.log(counts[keep])
    out = {"sizes": sizes.astype(np.int64).tolist(), "counts": counts.astype(np.int64).tolist(),
           "estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "intercept": math.nan, "confidence": confidence}
    if len(x) < 2:
        return out
    fit = stats.linregress(x, y)
    out["estimate"], out["intercept"] = float(fit.slope), float(fit.intercept)
    if len(x) > 2:
        half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
        out["ci_low"], out["ci_high"] = float(fit.slope - half), float(fit.slope + half)
    return out


def dense_boundary(codes_NxM: np.ndarray) -> np.ndarray:
    """Boundary cells of a fully computed map (outcome codes on the whole lattice)."""
    c = np.asarray(codes_NxM)
    a, b, cc, d = c[:-1, :-1], c[1:, :-1], c[:-1, 1:], c[1:, 1:]
    return np.argwhere((a != b) | (a != cc) | (a != d)).astype(np.int64)


def fill_map(levels_active: list[np.ndarray], levels_chosen: list[np.ndarray],
             outcomes: Outcomes, shape: tuple[int, int], levels: int) -> np.ndarray:
    """Outcome code at every finest-lattice point: computed points show their own outcome;
    every other point takes the outcome of the finest computed cell enclosing it (a cell that
    was not refined has four equal corners, so that outcome is unambiguous). `shape`: the
    finest lattice's points per axis."""
    img = np.full(shape, -1, dtype=np.int64)
    for k, (active, chosen) in enumerate(zip(levels_active, levels_chosen, strict=True)):
        s = stride(k, levels)
        refined = np.isin(keys(active, shape[1]), keys(chosen, shape[1]))
        for a, b in active[~refined]:
            img[a * s:(a + 1) * s + 1, b * s:(b + 1) * s + 1] = outcomes.codes(
                np.array([[a * s, b * s]]))[0]
    pts = outcomes.points()
    img[pts[:, 0], pts[:, 1]] = outcomes.codes(pts)
    return img


@dataclass
class Refinement:
    """Everything a zoom decided, level by level (lists indexed by level)."""

    n: int
    m: int
    levels: int
    margin: int
    points: list  # new finest-lattice (i, j) points computed at each level
    active: list  # cells (on the level's lattice) whose corners are all computed
    boundary: list  # active cells whose corners disagree
    chosen: list  # cells refined into the next level (boundary + margin); empty at the last
    outcomes: Outcomes

    @property
    def shape(self) -> tuple[int, int]:
        return lattice_size(self.n, self.levels), lattice_size(self.m, self.levels)

    @property
    def n_runs(self) -> int:
        return len(self.outcomes)

    @property
    def dense_runs(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def finest_boundary(self) -> np.ndarray:
        return self.boundary[-1]

    def box_sizes(self) -> list[int]:
        """Cell sizes of the levels, in finest cells: 2**levels (level 0) down to 1."""
        return [stride(k, self.levels) for k in range(self.levels + 1)]

    def dimension(self, confidence: float = 0.95) -> dict:
        sizes = self.box_sizes()
        counts = box_counts(self.finest_boundary, sizes)
        return fit_dimension(sizes, counts, max(self.shape) - 1, confidence)

    def image(self) -> np.ndarray:
        return fill_map(self.active, self.chosen, self.outcomes, self.shape, self.levels)


def zoom_plan(n: int, m: int, levels: int, margin: int, evaluate, on_level=None) -> Refinement:
    """Run the refinement: `evaluate(k, ij)` returns the outcome codes of the finest-lattice
    points `ij` (rows (i, j)) that level k computes (training them, or an oracle map);
    `on_level(k, refinement)`, if given, is called once level k's boundary is known."""
    ref = Refinement(n, m, levels, margin, [], [], [], [],
                     Outcomes(lattice_size(m, levels)))
    pts, active = level0_points(n, m, levels), level0_cells(n, m)
    for k in range(levels + 1):
        ref.outcomes.add(pts, evaluate(k, pts))
        ref.points.append(pts)
        ref.active.append(active)
        if k == levels:
            ref.boundary.append(boundary_cells(active, k, levels, ref.outcomes))
            ref.chosen.append(np.zeros((0, 2), np.int64))
        else:
            nxt = next_level(active, k, levels, margin, ref.outcomes, (n, m))
            ref.boundary.append(nxt["boundary"])
            ref.chosen.append(nxt["chosen"])
            pts, active = nxt["points"], nxt["active"]
        if on_level is not None:
            on_level(k, ref)
    return ref
