"""Power-law scaling of a learning rate with the network's shape: value ~ c * by**exponent,
fitted by least squares in log-log, with a bootstrap interval over seeds.

Two quantities, from two kinds of table:

- `critical_lr`: a :func:`trainscape.critical_lr` table (a row per shape and seed). A shape's
  value is the geometric mean over its seeds (rows with ``bracket_ok = False`` left out).
- `best_lr`: a runs table (:attr:`Results.runs`, or the Results) with a `learning_rate` axis.
  A shape's value is the swept learning rate with the lowest median final loss over seeds,
  a diverged run counting as an infinite loss: among runs that did not diverge, and never a
  learning rate where half or more of the seeds diverged.

The bootstrap resamples seeds with replacement (the same draw for every shape, since a seed
is one initialization per shape), recomputes every shape's value and the fit, and reports the
central `level` percentile interval of the exponent and of each shape's value. A shape
without a value (every learning rate diverged on half or more of its seeds; no seed bracketed
its critical lr) keeps its row in `points`, with NaN, and is left out of the fit, which needs
two shapes with a value; a resample that leaves one of the fitted shapes without a value has
no exponent and is not counted in the interval.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..spec.schema import SWEEP_AXES

QUANTITIES = ("critical_lr", "best_lr")
# why a shape has no value, by quantity
NO_VALUE = {"critical_lr": "no seed bracketed its critical lr (bracket_ok false)",
             "best_lr": "every learning rate diverged on half or more of the seeds"}
_CRITICAL_EXTRA = ("sharpness_init", "predicted_lr", "lr_low", "lr_high", "n_rounds",
                   "non_monotone", "bracket_ok")


class TooFewValues(InputError):
    """Fewer than two shapes have a value; `missing` lists the values of `by` without one."""

    def __init__(self, message: str, missing: list[float]):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Scaling:
    """A fitted power law value = prefactor * by**exponent, with its bootstrap interval."""

    by: str
    of: str
    exponent: float
    low: float  # the interval of the exponent
    high: float
    prefactor: float
    level: float
    n_seeds: int
    points: pd.DataFrame  # by, value, low, high (each shape's value and interval)
    boot: np.ndarray = field(repr=False)  # the bootstrap's exponents

    def plot(self, ax=None):
        """Log-log: each shape's value with its interval, and the fitted line."""
        from ..viz.scaling import plot_scaling

        return plot_scaling(self, ax=ax)

    def summary(self) -> str:
        if math.isfinite(self.low):
            ci = (f"interval [{self.low:.3f}, {self.high:.3f}] ({self.level:.0%} bootstrap "
                  f"over {self.n_seeds} seeds)")
        elif self.n_seeds == 1:
            ci = "no interval (one seed)"
        else:
            ci = "no interval (no resample of the seeds gave every shape a value)"
        text = f"{self.of} ~ {self.by}^{self.exponent:.3f}, {ci}"
        left = self.left_out()
        if left:
            text += (f"; no value at {self.by} {', '.join(f'{v:g}' for v in left)} "
                     f"({NO_VALUE[self.of]}), left out of the fit")
        return text

    def left_out(self) -> list[float]:
        """The values of `by` without a value (see `NO_VALUE`), which the fit leaves out."""
        p = self.points
        return p.loc[~np.isfinite(p["value"].to_numpy(np.float64)), self.by].tolist()


def scaling(table, by: str = "width", of: str = "critical_lr", *, n_boot: int = 2000,
            level: float = 0.95, seed: int = 0) -> Scaling:
    """Fit `of` ~ c * `by`**exponent over the shapes of `table` (see the module docstring for
    the two quantities and the bootstrap). The `by` column must hold positive finite numbers;
    `seed` (an integer >= 0) draws the bootstrap. Anything else is a one-line InputError."""
    if hasattr(table, "runs") and not isinstance(table, pd.DataFrame):
        table = table.runs
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"table: expected a DataFrame or Results, got {type(table).__name__}")
    if of not in QUANTITIES:
        raise InputError(f"of: got {of!r}; allowed: {', '.join(QUANTITIES)}")
    if by not in table.columns:
        raise InputError(f"by: the table has no column {by!r} (sweep it: sweep.{by})")
    if by == "seed" or (of == "best_lr" and by == "learning_rate") or not (
            by in SWEEP_AXES or by.startswith("learning_rate.")):
        # a seed or result column, or the rate best_lr picks, is not a shape to fit against
        raise InputError(f"by: got {by!r}; the fit is against a swept axis other than seed"
                         + (" and learning_rate" if of == "best_lr" else "")
                         + ", such as width or depth")
    col = table[by]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise InputError(f"by: column {by!r} holds {col.dtype} values; a power law needs "
                         f"positive finite numbers ({by} > 0)")
    if not (np.isfinite(col) & (col > 0)).all():
        v = col[~(np.isfinite(col) & (col > 0))].iloc[0]
        raise InputError(f"by: column {by!r} holds {v.item() if isinstance(v, np.generic) else v!r}"
                         f"; a power law needs positive finite numbers ({by} > 0)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise InputError(f"level: expected a number in (0, 1), got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed: expected an integer >= 0, got {seed!r}")
    t = table if "seed" in table.columns else table.assign(seed=0)
    if of == "critical_lr":
        value_of, cube = _geo_mean, _critical_cube(t, by)
    else:
        value_of, cube = _best_lr, _loss_cube(t, by)
    x_W = np.asarray(cube["by"], np.float64)
    if len(x_W) < 2:
        raise InputError(f"by: need at least 2 values of {by!r} to fit an exponent, got "
                         f"{len(x_W)}")
    n_s = cube["n_seeds"]
    y_W = value_of(cube, np.arange(n_s)[None, :])[0]
    has_W = np.isfinite(y_W)  # a shape without a value is left out of the fit
    if has_W.sum() < 2:
        none = ", ".join(f"{v:g}" for v in x_W[~has_W])
        raise TooFewValues(f"table: only {int(has_W.sum())} of the {len(x_W)} values of "
                           f"{by!r} have a {of} ({by} {none}: {NO_VALUE[of]}); a fit needs 2",
                           cube["by"][~has_W].tolist())
    logx_1xW = np.log(x_W[has_W])[None, :]
    slope, icept = _fit(logx_1xW, np.log(y_W[has_W])[None, :])
    rng = np.random.default_rng(seed)
    if n_s > 1:
        idx_BxS = rng.integers(0, n_s, size=(n_boot, n_s))
        yb_BxW = value_of(cube, idx_BxS)
        # a resample that leaves one of the fitted shapes without a value has no exponent
        slope_B, _ = _fit(logx_1xW, np.log(yb_BxW[:, has_W]))
        q = [(1 - level) / 2, (1 + level) / 2]
        with warnings.catch_warnings():  # all NaN (no resample or shape with a value): NaN
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            lo, hi = np.nanquantile(slope_B, q)
            p_lo, p_hi = np.nanquantile(yb_BxW, q, axis=0)
    else:
        slope_B = np.full(0, np.nan)
        lo = hi = math.nan
        p_lo = p_hi = np.full(len(x_W), np.nan)
    points = pd.DataFrame({by: cube["by"], "value": y_W, "low": p_lo, "high": p_hi})
    return Scaling(by=by, of=of, exponent=float(slope[0]), low=float(lo), high=float(hi),
                   prefactor=float(np.exp(icept[0])), level=level, n_seeds=n_s,
                   points=points, boot=slope_B)


def _fit(logx_1xW, logy_BxW):
    """Least-squares slope and intercept of every row of logy against logx (NaN rows: NaN)."""
    xm = logx_1xW.mean(axis=1, keepdims=True)
    ym = logy_BxW.mean(axis=1, keepdims=True)
    dx = logx_1xW - xm
    with np.errstate(invalid="ignore"):
        slope = ((dx * (logy_BxW - ym)).sum(axis=1) / (dx * dx).sum(axis=1))
    return slope, (ym[:, 0] - slope * xm[:, 0])


def _others(t: pd.DataFrame, by: str, keep) -> None:
    """Refuse a table where an axis other than `by` and seed varies (filter it first)."""
    varying = [c for c in t.columns if c not in (by, "seed", *keep) and
               t[c].nunique(dropna=False) > 1]
    if varying:
        raise InputError(f"table: the columns {varying} vary too; select one value of each "
                         f"(e.g. table[table.{varying[0]} == ...]) before fitting against {by}")


def _critical_cube(t: pd.DataFrame, by: str) -> dict:
    if "critical_lr" not in t.columns:
        raise InputError("table: no critical_lr column; pass a ts.critical_lr table (or "
                         "of='best_lr' with a runs table)")
    _others(t, by, ("critical_lr", *_CRITICAL_EXTRA))
    ok = t["bracket_ok"] if "bracket_ok" in t.columns else True
    v = t.assign(v=np.where(ok, t["critical_lr"], np.nan))
    piv = v.pivot_table(index=by, columns="seed", values="v", aggfunc="first", dropna=False)
    return {"by": piv.index.to_numpy(), "v_WxS": piv.to_numpy(np.float64),
            "n_seeds": piv.shape[1]}


def _geo_mean(cube: dict, idx_BxS) -> np.ndarray:
    """Geometric mean over the chosen seeds of each shape's critical lr, (B, W)."""
    logv_WxBxS = np.log(cube["v_WxS"])[:, idx_BxS]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        return np.exp(np.nanmean(logv_WxBxS, axis=2)).T  # no seed with a value: NaN


def _loss_cube(t: pd.DataFrame, by: str) -> dict:
    need = [c for c in ("learning_rate", "final_loss", "label") if c not in t.columns]
    if need:
        raise InputError(f"table: of='best_lr' needs a runs table with a learning_rate axis; "
                         f"missing columns {need}")
    axes = [c for c in t.columns if c in SWEEP_AXES or c.startswith("learning_rate.")]
    _others(t[axes], by, ("learning_rate",))
    loss = np.where(t["label"].to_numpy() == "diverged", np.inf,
                    t["final_loss"].to_numpy(np.float64))
    loss = np.where(np.isnan(loss), np.inf, loss)
    v = t[[by, "learning_rate", "seed"]].assign(loss=loss)
    piv = v.pivot_table(index=[by, "learning_rate"], columns="seed", values="loss",
                        aggfunc="first", dropna=False)
    by_vals = piv.index.get_level_values(0).unique().to_numpy()
    lrs = piv.index.get_level_values(1).unique().to_numpy(np.float64)
    full = pd.MultiIndex.from_product([by_vals, lrs])
    cube = piv.reindex(full).to_numpy(np.float64).reshape(len(by_vals), len(lrs), -1)
    return {"by": by_vals, "lr": lrs, "loss_WxLxS": cube, "n_seeds": cube.shape[2]}


def _best_lr(cube: dict, idx_BxS) -> np.ndarray:
    """The learning rate of lowest median final loss over the chosen seeds, (B, W)."""
    loss_WxLxBxS = cube["loss_WxLxS"][:, :, idx_BxS]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # a missing cell
        med_WxLxB = np.nanmedian(loss_WxLxBxS, axis=3)
    med_WxLxB = np.where(np.isnan(med_WxLxB), np.inf, med_WxLxB)
    best_WxB = np.argmin(med_WxLxB, axis=1)
    none = ~np.isfinite(np.min(med_WxLxB, axis=1))
    return np.where(none, np.nan, cube["lr"][best_WxB]).T
