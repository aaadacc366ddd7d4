"""Run-by-run comparison of two sweeps of the same grid (typically two precisions).

Cells near a trainability boundary are chaotic: rounding alone can flip their label. `compare`
lists every grid cell whose label differs between two results, so a user sees how much of a
map is precision-sensitive before trusting its boundary.
"""

from __future__ import annotations

import pandas as pd

from ..errors import InputError
from ..io.results import Results, as_results
from ..spec.registry import did_you_mean

# the axis that is compared across, never joined on
PRECISION_AXIS = "dtype"
# the other half of a sweep's precision: the float32 matmuls' (e.g. "highest" against TF32)
MATMUL_PRECISION_KEY = "train.matmul_precision"
MAX_ROWS_PRINTED = 40


def _dtype_of(res: Results) -> str | None:
    """The single precision of a sweep, or None when it sweeps several."""
    if PRECISION_AXIS in res.config.sweep:
        vals = res.config.sweep[PRECISION_AXIS]
        return str(vals[0]) if len(vals) == 1 else None
    return res.config.train.dtype


def refuse_several_dtypes(named, message) -> None:
    """Refuse the first of the (results, name) pairs whose sweep has a dtype axis: a folder
    compared with another must hold one precision. `message(name, swept dtypes)` words it."""
    for res, name in named:
        if _dtype_of(res) is None:
            raise InputError(message(name, [str(v) for v in res.config.sweep[PRECISION_AXIS]]))


def compare(a, b) -> pd.DataFrame:
    """Runs of `a` and `b` (Results or results folders) whose label differs.

    Runs are joined on their axis columns (all but `dtype`), which must describe the same grid.
    Returns one row per differing cell: the axis columns, `label_a`, `label_b`, `final_loss_a`,
    `final_loss_b`. `df.attrs` holds `n_compared`, `n_differ`, `fraction_differs`, `axes`,
    `name_a`, `name_b` (the dtypes, with the matmul precisions when those differ, e.g. "float32
    matmul highest"), `transitions` ({"label_a -> label_b": count}),
    `config_differences` (config keys that differ besides the name and the precision, see
    :func:`config_differences`; `train.matmul_precision` counts as precision) and `notes`
    (what `format_summary` prints about them, and about two sweeps of the same precision).
    """
    ra, rb = as_results(a, "compare: a"), as_results(b, "compare: b")
    refuse_several_dtypes(((ra, "a"), (rb, "b")), lambda which, swept: (
        f"compare: {which} sweeps several dtypes {swept}; compare two of them within it with "
        f"compare_dtypes(results, a={swept[0]!r}, b={swept[1]!r})"))
    axes_a = [x for x in ra.axes if x != PRECISION_AXIS]
    axes_b = [x for x in rb.axes if x != PRECISION_AXIS]
    if set(axes_a) != set(axes_b):
        raise InputError(f"compare: the grids differ: a has axes {axes_a}, b has axes {axes_b}")
    name_a, name_b = _dtype_of(ra), _dtype_of(rb)
    mp_a, mp_b = ra.config.train.matmul_precision, rb.config.train.matmul_precision
    if mp_a != mp_b:  # the matmul precision is the precision compared too (TF32 on a GPU)
        name_a, name_b = f"{name_a} matmul {mp_a}", f"{name_b} matmul {mp_b}"
    notes = []
    if name_a == name_b:
        notes.append(f"both sweeps are {name_a}: label changes do not come from the precision")
        name_a, name_b = "a", "b"
    other = [k for k in config_differences(ra, rb) if k != MATMUL_PRECISION_KEY]
    if other:
        notes.append(f"the configs also differ in {', '.join(other)}: label changes are not "
                     "from the precision alone")
    out = _compare_runs(ra.runs, rb.runs, axes_a, name_a, name_b)
    out.attrs["config_differences"] = other
    out.attrs["notes"] = notes
    return out


def config_differences(a: Results, b: Results) -> list[str]:
    """Dotted config keys whose values differ between two sweeps, other than the name and the
    precision (`train.dtype`, `sweep.dtype`)."""

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a.config.to_dict()), flat(b.config.to_dict())
    skip = {"name", "train.dtype", f"sweep.{PRECISION_AXIS}"}
    return sorted(k for k in fa.keys() | fb.keys() if k not in skip and fa.get(k) != fb.get(k))


def compare_dtypes(results, a: str = "float32", b: str = "float64") -> pd.DataFrame:
    """`compare` within one sweep whose `dtype` axis holds both `a` and `b`."""
    res = as_results(results, "compare_dtypes")
    swept = tuple(res.config.sweep.get(PRECISION_AXIS, ()))
    for name in (a, b):
        if name not in swept:
            have = f"its dtype axis is {list(swept)}" if swept else "it has no dtype axis"
            raise InputError(f"compare_dtypes: {name!r} is not in the sweep ({have}); "
                             "sweep e.g. dtype = [\"float32\", \"float64\"]"
                             f"{did_you_mean(name, list(swept))}")
    if a == b:
        raise InputError(f"compare_dtypes: a and b are both {a!r}; give two different dtypes")
    axes = [x for x in res.axes if x != PRECISION_AXIS]
    runs = res.runs
    return _compare_runs(runs[runs[PRECISION_AXIS] == a], runs[runs[PRECISION_AXIS] == b],
                         axes, a, b)


def _compare_runs(runs_a: pd.DataFrame, runs_b: pd.DataFrame, axes: list[str],
                  name_a: str, name_b: str) -> pd.DataFrame:
    cols = [*axes, "label", "final_loss"]
    ta, tb = runs_a[cols], runs_b[cols]
    for t, which in ((ta, "a"), (tb, "b")):
        if axes and t.duplicated(axes).any():
            raise InputError(f"compare: {which} holds several runs per grid cell of {axes}")
        if not axes and len(t) != 1:
            raise InputError(f"compare: without sweep axes each side must hold one run, "
                             f"{which} holds {len(t)}")
    if axes:
        merged = ta.merge(tb, on=axes, how="outer", suffixes=("_a", "_b"), indicator=True)
        only_a = int((merged["_merge"] == "left_only").sum())
        only_b = int((merged["_merge"] == "right_only").sum())
        if only_a or only_b:
            side = "left_only" if only_a else "right_only"
            example = merged.loc[merged["_merge"] == side, axes].head(1).to_dict("records")[0]
            raise InputError(
                f"compare: the grids do not match on {axes}: {only_a} cells only in a, "
                f"{only_b} only in b (e.g. {example} only in {'a' if only_a else 'b'}); "
                "compare sweeps of the same config")
        merged = merged.drop(columns="_merge")
    else:
        merged = pd.concat([ta.add_suffix("_a").reset_index(drop=True),
                            tb.add_suffix("_b").reset_index(drop=True)], axis=1)
    differs = merged["label_a"].to_numpy() != merged["label_b"].to_numpy()
    out = merged.loc[differs, [*axes, "label_a", "label_b", "final_loss_a", "final_loss_b"]]
    if axes:
        out = out.sort_values(axes, kind="stable")
    out = out.reset_index(drop=True)
    n = len(merged)
    pairs = out["label_a"].astype(str) + " -> " + out["label_b"].astype(str)
    out.attrs.update({
        "n_compared": n,
        "n_differ": int(differs.sum()),
        "fraction_differs": float(differs.sum() / n) if n else float("nan"),
        "axes": list(axes),
        "name_a": name_a,
        "name_b": name_b,
        "transitions": {k: int(v) for k, v in pairs.value_counts().items()},
    })
    return out


def format_summary(df: pd.DataFrame, max_rows: int = MAX_ROWS_PRINTED) -> str:
    """A readable summary of a `compare` table: counts, label transitions, differing runs."""
    at = df.attrs
    a, b = at.get("name_a", "a"), at.get("name_b", "b")
    n, k = at.get("n_compared", 0), at.get("n_differ", len(df))
    frac = at.get("fraction_differs", float("nan"))
    lines = [f"{k} of {n} cells ({100 * frac:.1f}%) have a different label in {b} than in {a}"
             f" (axes: {', '.join(at.get('axes', [])) or 'none'})"]
    for pair, count in at.get("transitions", {}).items():
        lines.append(f"  {count:6d}  {pair.replace(' -> ', f' ({a}) -> ')} ({b})")
    lines += [f"note: {note}" for note in at.get("notes", [])]
    if len(df):
        lines += ["", f"(_a: {a}, _b: {b})",
                  df.head(max_rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        if len(df) > max_rows:
            lines.append(f"... and {len(df) - max_rows} more")
    return "\n".join(lines)


__all__ = ["compare", "compare_dtypes", "config_differences", "format_summary"]
