"""Check a hand-written gradient against a trusted reference and name the likely mistake.

`gradcheck` compares the user's `grad_fn(params, x, y)` with `jax.grad` of their `loss_fn`
when JAX can trace it, else with central finite differences in float64, and returns one row
per parameter array. `cli` runs it on a module that exposes `loss`, `grads` and `example()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import runtime
from .errors import InputError

REF_JAX = "jax.grad"
REF_FD = "finite-differences"

COLUMNS = [
    "param", "shape", "max_abs_err", "rel_err", "ok", "hint",
    "reference", "checked", "rtol", "atol",
]

# Default (rtol, atol) by the itemsize of the least precise float involved. float64 leaves room
# for finite-difference truncation/rounding (~1e-9 relative); float32 for the user's own
# float32 rounding in backprop (~1e-6 relative, more where sums cancel). Real bugs give
# rel_err >= ~1e-2 (a factor of 2 is 0.33, a sign flip is 1).
_DEFAULT_TOLS = {8: (1e-5, 1e-8), 4: (1e-3, 1e-5), 2: (3e-2, 1e-2)}

# Hints compare shapes of error, not precision: a fit within 1% (or 10*rtol) is "a match".
_FIT_TOL_MIN = 1e-2
_FACTOR_TOL = 0.05
_TINY = np.finfo(np.float64).tiny


@runtime.x64
def gradcheck(
    loss_fn: Callable[..., Any],
    grad_fn: Callable[..., Any],
    params: Any,
    x: Any,
    y: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_entries_per_array: int | None = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare `grad_fn(params, x, y)` with a reference gradient of `loss_fn`; one row per array.

    Reference: `jax.grad` of `loss_fn` on float64 copies of `params` when `loss_fn` can be
    traced (written with `jax.numpy`); otherwise (plain NumPy) central finite differences in
    float64 with step h = eps**(1/3) * max(1, |p|) per entry (eps of the loss's output dtype).
    Finite differences check every entry of arrays with <= `max_entries_per_array` entries and a
    random sample of that many (reproducible from `seed`, an integer >= 0) of larger ones;
    None checks all. Arguments of the wrong kind are a one-line InputError up front.

    Columns: param (`jax.tree_util.keystr` path), shape, max_abs_err, rel_err, ok, hint,
    reference, checked (entries compared), rtol, atol. Over the checked entries,
    rel_err = ||g - g_ref|| / max(||g|| + ||g_ref||, tiny), which lies in [0, 1]; a row is ok
    when the shapes match, all values are finite and (rel_err <= rtol or max_abs_err <= atol).
    Default tolerances follow the least precise float among the param, the user's gradient, x
    and (finite differences) the loss output: float64 rtol=1e-5, atol=1e-8; float32 rtol=1e-3,
    atol=1e-5; 16-bit rtol=3e-2, atol=1e-2. `m` in hints is len(x), the number of samples.
    """
    for name, fn in (("loss_fn", loss_fn), ("grad_fn", grad_fn)):
        if not callable(fn):
            raise InputError(f"gradcheck {name}: got {fn!r:.80}; expected a function "
                             f"{name[:-3]}(params, x, y)")
    check_tol("rtol", rtol)
    check_tol("atol", atol)
    if max_entries_per_array is not None and not _is_int(max_entries_per_array, 1):
        raise InputError(f"gradcheck max_entries_per_array: got {max_entries_per_array!r}; "
                         "allowed: an integer >= 1, or None")
    if not _is_int(seed, 0):
        raise InputError(f"gradcheck seed: got {seed!r}; allowed: an integer >= 0")
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not path_leaves:
        raise InputError("gradcheck params: got an empty pytree; need at least one float array")
    names = [jax.tree_util.keystr(path) for path, _ in path_leaves]
    leaves = [_float_leaf(name, leaf) for name, (_, leaf) in zip(names, path_leaves, strict=True)]
    x64, y64 = _to_float64(x), _to_float64(y)
    m = int(np.shape(x)[0]) if np.ndim(x) >= 1 else None

    user_leaves = _user_grad_leaves(
        grad_fn(params, x, y), treedef, [leaf.shape for leaf in leaves]
    )
    loss_dtype = _check_loss(loss_fn, treedef, leaves, x64, y64)

    ref = _jax_reference(loss_fn, treedef, leaves, x64, y64)
    if ref is not None:
        reference = REF_JAX
        idxs = [np.arange(leaf.size) for leaf in leaves]
        ref_vals = [r.reshape(-1) for r in ref]
    else:
        reference = REF_FD
        rng = np.random.default_rng(seed)
        idxs = [_sample(leaf.size, max_entries_per_array, rng) for leaf in leaves]
        ref_vals = _fd_values(loss_fn, treedef, leaves, x64, y64, idxs, loss_dtype)

    rows = []
    for name, leaf, g, idx, rv in zip(
        names, leaves, user_leaves, idxs, ref_vals, strict=True
    ):
        dtypes = [leaf.dtype, _dtype_of(g), _dtype_of(x)]
        if reference == REF_FD:
            dtypes.append(loss_dtype)
        d_rtol, d_atol = _default_tols(dtypes)
        r_tol = d_rtol if rtol is None else float(rtol)
        a_tol = d_atol if atol is None else float(atol)
        row = _compare(g, rv, idx, leaf.shape, m, r_tol, a_tol)
        rows.append({
            "param": name, "shape": tuple(leaf.shape), **row, "reference": reference,
            "checked": int(idx.size), "rtol": r_tol, "atol": a_tol,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


@runtime.x64
def finite_difference_grad(
    loss_fn: Callable[..., Any], params: Any, x: Any, y: Any
) -> Any:
    """Central finite-difference gradient of `loss_fn` w.r.t. every entry of `params` (float64)."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(path) for path, _ in path_leaves]
    leaves = [_float_leaf(name, leaf) for name, (_, leaf) in zip(names, path_leaves, strict=True)]
    x64, y64 = _to_float64(x), _to_float64(y)
    loss_dtype = _check_loss(loss_fn, treedef, leaves, x64, y64)
    idxs = [np.arange(leaf.size) for leaf in leaves]
    vals = _fd_values(loss_fn, treedef, leaves, x64, y64, idxs, loss_dtype)
    grads = [v.reshape(leaf.shape) for v, leaf in zip(vals, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, grads)


# ---------------------------------------------------------------------------- inputs


def _float_leaf(name: str, leaf: Any) -> np.ndarray:
    arr = np.asarray(leaf)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(
            f"gradcheck params{name}: got dtype {arr.dtype}; only floating-point arrays allowed"
        )
    return arr


def _to_float64(a: Any) -> Any:
    # Float arrays go to float64 so the reference is not limited by float32 inputs; integer
    # labels and other objects (DataFrames, dicts...) reach the loss untouched.
    if isinstance(a, (np.ndarray, np.generic, jax.Array)) and np.issubdtype(a.dtype, np.floating):
        return np.asarray(a, dtype=np.float64)
    return a


def _dtype_of(a: Any) -> np.dtype:
    try:
        dt = np.asarray(a).dtype
    except Exception:  # noqa: BLE001 - anything odd is diagnosed later in _compare
        return np.dtype(np.float64)
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def _default_tols(dtypes: Sequence[np.dtype]) -> tuple[float, float]:
    itemsize = min(np.dtype(d).itemsize for d in dtypes)
    return _DEFAULT_TOLS.get(itemsize, _DEFAULT_TOLS[2] if itemsize < 4 else _DEFAULT_TOLS[8])


def _user_grad_leaves(grads: Any, treedef: Any, shapes: list[tuple]) -> list[Any]:
    """The user's gradient leaves in params order.

    A different container (tuples for lists, say) is accepted when its leaves line up with the
    params one for one in shape; otherwise the pairing would be a guess, so it is an error.
    """
    leaves, g_treedef = jax.tree_util.tree_flatten(grads)
    if g_treedef == treedef:
        return leaves
    got, want = _dict_keys(g_treedef), _dict_keys(treedef)
    if got and got != want:  # pairing {"v": ...} with {"w": ...} would be a guess by position
        raise InputError(f"gradcheck grad_fn: returned dict keys {sorted(got)}; params has "
                         f"{sorted(want) if want else 'no dict keys'}; return the gradient "
                         "under the params' own keys")
    if len(leaves) == len(shapes) and all(
        np.shape(g) == s for g, s in zip(leaves, shapes, strict=True)
    ):
        return leaves
    raise InputError(
        f"gradcheck grad_fn: returned {len(leaves)} arrays as {_short(g_treedef)}; need one per "
        f"parameter array ({len(shapes)}), structured like params {_short(treedef)}"
    )


def _dict_keys(treedef: Any) -> set:
    """Every dict key at any depth of a pytree structure."""
    paths, _ = jax.tree_util.tree_flatten_with_path(jax.tree_util.tree_unflatten(
        treedef, [0] * treedef.num_leaves))
    return {k.key for path, _ in paths for k in path if isinstance(k, jax.tree_util.DictKey)}


def _short(treedef: Any, limit: int = 120) -> str:
    text = " ".join(str(treedef).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_loss(loss_fn, treedef, leaves, x, y) -> np.dtype:
    """Evaluate the loss once in float64; it must be a finite scalar. Returns its dtype."""
    tree = jax.tree_util.tree_unflatten(treedef, [leaf.astype(np.float64) for leaf in leaves])
    out = np.asarray(loss_fn(tree, x, y))
    if out.size != 1 or not np.issubdtype(out.dtype, np.number):
        raise InputError(
            f"gradcheck loss_fn: returned shape {out.shape} dtype {out.dtype}; "
            "must return one float"
        )
    if not np.isfinite(out).all():
        raise InputError(f"gradcheck loss_fn: returned {out.reshape(-1)[0]}; must be finite")
    return out.dtype if np.issubdtype(out.dtype, np.floating) else np.dtype(np.float64)


# ---------------------------------------------------------------------------- references


def _jax_reference(loss_fn, treedef, leaves, x, y) -> list[np.ndarray] | None:
    """`jax.grad` of the loss at float64 params, or None when the loss is not traceable."""
    tree = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(leaf, dtype=jnp.float64) for leaf in leaves]
    )

    def scalar_loss(p, x, y):
        return jnp.reshape(loss_fn(p, x, y), ())

    grad = jax.grad(scalar_loss)
    # One compiled program is much faster than op-by-op dispatch; x and y go in as arguments
    # so a large dataset is not baked into it as a constant. Code that only works with concrete
    # x (NumPy on the data) gets a second, eager try.
    attempts = (lambda: jax.jit(grad)(tree, x, y), lambda: grad(tree, x, y))
    grads = None
    for attempt in attempts:
        try:
            grads = attempt()
            break
        # NumPy code fails on tracers in many ways (TracerArrayConversionError, Concretization-
        # TypeError, TypeError from in-place writes, AttributeError for NumPy-only methods...);
        # any failure means "not traceable", and a genuinely broken loss fails again under FD.
        except Exception:  # noqa: BLE001
            continue
    if grads is None:
        return None
    return [np.asarray(g, dtype=np.float64) for g in jax.tree_util.tree_leaves(grads)]


def _sample(size: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, size=limit, replace=False))


def _fd_values(loss_fn, treedef, leaves, x, y, idxs, loss_dtype) -> list[np.ndarray]:
    """Central differences at the flat indices `idxs` of each leaf, perturbing in place."""
    work = [np.array(leaf, dtype=np.float64, copy=True) for leaf in leaves]
    # The tree holds the very arrays in `work`, so an in-place edit is seen by loss_fn without
    # rebuilding the pytree for each of the thousands of calls.
    tree = jax.tree_util.tree_unflatten(treedef, work)
    # h ~ eps^(1/3) balances truncation (h^2) and rounding (eps/h) error of central differences.
    step = float(np.finfo(loss_dtype).eps) ** (1.0 / 3.0)
    out = []
    for arr, idx in zip(work, idxs, strict=True):
        flat = arr.reshape(-1)
        vals = np.empty(idx.size, dtype=np.float64)
        for k, i in enumerate(idx):
            p = flat[i]
            h = step * max(1.0, abs(p))
            hi, lo = p + h, p - h
            flat[i] = hi
            f_hi = _scalar(loss_fn(tree, x, y))
            flat[i] = lo
            f_lo = _scalar(loss_fn(tree, x, y))
            flat[i] = p
            # Divide by the representable step (hi - lo), not 2h, to avoid a rounding bias.
            vals[k] = (f_hi - f_lo) / (hi - lo)
        out.append(vals)
    return out


def _scalar(v: Any) -> float:
    return float(np.asarray(v, dtype=np.float64).reshape(-1)[0])


# ---------------------------------------------------------------------------- comparison


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), _TINY))


def _candidates(g: np.ndarray, shape: tuple[int, ...]) -> list[tuple]:
    """Ways to lay the user's array over the param shape: (array, shape_note, kind)."""
    want = tuple(shape)
    if g.shape == want:
        return [(g, "", "same")]
    got = f"shape {g.shape}, expected {want}"
    if g.size == 1 and int(np.prod(want)) > 1:
        return [(np.broadcast_to(g.reshape(()), want), f"a single number for shape {want}",
                 "scalar")]
    if g.size == int(np.prod(want)):
        cands = [(g.reshape(want), got, "reshape")]
        if g.ndim >= 2 and g.shape == want[::-1]:
            cands.insert(0, (g.T, got, "transpose"))
        return cands
    return []


def _compare(g_user, rv, idx, shape, m, rtol, atol) -> dict:
    """One row: errors over the checked entries, ok, and a hint when not ok."""
    try:
        g = np.asarray(g_user, dtype=np.float64)
    except (TypeError, ValueError):
        return _row(np.nan, np.nan, False, f"not a numeric array (got {type(g_user).__name__})")
    cands = _candidates(g, shape)
    if not cands:
        return _row(np.nan, np.nan, False, _shape_hint(g.shape, tuple(shape), m))
    fit_tol = max(_FIT_TOL_MIN, 10.0 * rtol)
    scored = [(_rel(c.reshape(-1)[idx], rv), c, note, kind) for c, note, kind in cands]
    rel, aligned, note, kind = min(scored, key=lambda t: (np.nan_to_num(t[0], nan=2.0)))
    gv = aligned.reshape(-1)[idx]
    if not np.isfinite(gv).all():
        return _row(np.nan, np.nan, False, "contains NaN or inf")
    max_abs = float(np.max(np.abs(gv - rv))) if gv.size else 0.0
    values_ok = rel <= rtol or max_abs <= atol
    if values_ok and kind == "same":
        return _row(max_abs, rel, True, "")
    if values_ok:
        if kind == "transpose":
            return _row(max_abs, rel, False, f"transposed? {note}; values match the transpose")
        return _row(max_abs, rel, False, f"{note}; values match once reshaped (stray axis?)")
    if kind == "scalar" and np.ptp(rv) > fit_tol * max(float(np.max(np.abs(rv))), _TINY):
        return _row(max_abs, rel, False, (
            f"constant across units (one number, {gv[0]:.4g}, for shape {tuple(shape)}; "
            "reference varies): bias gradient summed over the wrong axis?"))
    hint = _value_hint(gv, rv, aligned, idx, shape, m, fit_tol)
    return _row(max_abs, rel, False, f"{note}; {hint}" if note else hint)


def _row(max_abs: float, rel: float, ok: bool, hint: str) -> dict:
    return {"max_abs_err": float(max_abs), "rel_err": float(rel), "ok": bool(ok), "hint": hint}


def _shape_hint(got: tuple, want: tuple, m: int | None) -> str:
    if len(got) == 1 and len(want) == 1 and m is not None and got[0] == m:
        return (f"shape {got}, expected {want}: one entry per sample; "
                "bias gradient summed over the wrong axis?")
    if len(want) == 1 and len(got) == 2 and m is not None and m in got:
        return (f"shape {got}, expected {want}: per-sample values left in; "
                "missing a sum over the batch axis?")
    return f"shape mismatch: got {got}, expected {want}"


def _value_hint(gv, rv, aligned, idx, shape, m, fit_tol) -> str:
    """Name the mistake whose pattern fits g against g_ref, most specific first."""
    if not np.any(gv) and np.any(rv):
        return "all zeros: gradient never computed or not written back?"
    scale_r = max(float(np.max(np.abs(rv))), _TINY)
    scale_g = max(float(np.max(np.abs(gv))), _TINY)
    is_vector = len(shape) == 1 and gv.size > 1
    if is_vector:
        spread_g = float(np.max(np.abs(gv - gv.mean()))) / scale_g
        spread_r = float(np.max(np.abs(rv - rv.mean()))) / scale_r
        if spread_g <= fit_tol < spread_r:
            return (f"constant across units (every entry {gv.mean():.4g}, reference varies): "
                    "bias gradient summed over the wrong axis?")
    if len(shape) == 2 and shape[0] == shape[1] and shape[0] > 1:
        if _rel(aligned.T.reshape(-1)[idx], rv) <= fit_tol:
            return "transposed? values match the reference's transpose"
    rr = float(rv @ rv)
    c = float(gv @ rv) / rr if rr > 0 else 0.0
    resid = float(np.linalg.norm(gv - c * rv)) / max(float(np.linalg.norm(gv)), _TINY)
    if rr > 0 and resid <= fit_tol:
        return _scale_hint(c, m)
    if is_vector and abs(gv.sum() - rv.sum()) <= fit_tol * max(float(np.abs(rv).sum()), _TINY):
        return ("same total as the reference but spread differently across units: "
                "bias gradient summed over the wrong axis?")
    return (f"wrong values: not a multiple of the reference "
            f"(best fit c={c:.3g}, residual {resid:.2g})")


def _scale_hint(c: float, m: int | None) -> str:
    a = abs(c)
    sign = "sign flipped and " if c < 0 else ""
    if abs(c + 1.0) <= _FACTOR_TOL:
        return "sign flipped (gradient ascent?)"
    if m is not None and m > 1:
        if abs(a / m - 1.0) <= _FACTOR_TOL:
            return f"{sign}off by a factor of ~m (={m}, c={c:.4g}): missing 1/m averaging?"
        if abs(a * m - 1.0) <= _FACTOR_TOL:
            return f"{sign}off by a factor of ~1/m (m={m}, c={c:.4g}): extra 1/m averaging?"
    if abs(c - 1.0) <= _FACTOR_TOL:
        return "close but beyond tolerance: precision loss, or loosen --rtol/--atol?"
    return f"{sign}off by a constant factor c={c:.4g}: a missing or extra scalar (2, 1/m, lr)?"


# ---------------------------------------------------------------------------- CLI


def format_table(table: pd.DataFrame, *, title: str = "gradcheck") -> str:
    """Aligned plain-text rendering of a gradcheck table with its reference and verdict."""
    ref = table["reference"].iloc[0] if len(table) else "-"
    how = ("jax.grad of the loss (float64)" if ref == REF_JAX
           else "central finite differences (float64)")
    cells = [["param", "shape", "checked", "max_abs_err", "rel_err", "ok", "hint"]]
    for r in table.itertuples(index=False):
        size = int(np.prod(r.shape))
        cells.append([
            r.param, str(r.shape), f"{r.checked}/{size}" if r.checked != size else str(size),
            f"{r.max_abs_err:.2e}", f"{r.rel_err:.2e}", "ok" if r.ok else "FAIL", r.hint,
        ])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
    lines = [title, f"reference: {how}"]
    tols = sorted({(r.rtol, r.atol) for r in table.itertuples(index=False)})
    lines.append("tolerance: " + ", ".join(f"rel_err <= {a:g} or max_abs_err <= {b:g}"
                                           for a, b in tols))
    for row in cells:
        padded = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                  enumerate(zip(row[:-1], widths, strict=True))]
        lines.append("  ".join(padded + [row[-1]]).rstrip())
    bad = table.loc[~table["ok"], "param"].tolist()
    lines.append(f"{len(table) - len(bad)}/{len(table)} arrays ok"
                 + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines) + "\n"


def _is_int(v, lo: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | np.integer) and v >= lo


def check_tol(name: str, v) -> None:
    # an infinite (or NaN, or negative) tolerance would pass a wrong gradient, or none at all
    if v is not None and (isinstance(v, bool) or not isinstance(v, int | float | np.floating)
                          or not (math.isfinite(v) and v >= 0)):
        raise InputError(f"gradcheck {name}: got {v!r}; must be a finite number >= 0")
