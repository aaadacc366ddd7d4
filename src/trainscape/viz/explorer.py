"""A results folder -> one self-contained HTML explorer that works offline.

The page (``explorer.js`` and ``explorer.css`` next to this module, inlined) shows a map of
any two axes (the others sliced or pooled) coloured by majority label, P(label) or a per-cell
quantile of a numeric runs column, the loss curves and runs of a clicked cell, a brushable
parallel-coordinates view of every axis and metric, and the sweep's summary and config.

What is embedded, so that a million-run sweep stays under 10 MB and never has its curves
loaded whole:

* **every run**, compactly: one axis-value index per axis, the label code, and each metric of
  :data:`METRICS` quantized to 8 bits (16 bits up to :data:`EXACT_RUNS` runs) on a log or
  linear scale. The page counts, slices, pools and brushes these in the browser, so every map
  cell counts every run. Quantiles shown for a cell are exact to one quantization step.
* **a bounded sample of curves**: the axes are cut into contiguous bins whose product has at
  most :data:`MAX_CELLS` cells (an axis keeps all its values when the grid is that small), and
  within each bin cell at most :data:`SAMPLE_PER_LABEL` runs of each label are drawn at random
  (fixed seed). Each sampled run's loss curve keeps evenly spaced recorded steps (first and
  last included): :data:`MAX_CURVE_VALUES` over the sample, at least :data:`MIN_POINTS` and at
  most :data:`MAX_POINTS` per curve; its exact metric values come with it. Curves are read a
  row group at a time, keeping only the sampled runs' points.

Each binary array is gzip-compressed and base64-encoded into its own ``<script>`` tag; the page
decompresses it with the browser's built-in ``DecompressionStream``.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..io import atomic
from ..io.results import CURVES_FILE, RUNS_FILE, Results, load
from ..train.classify import LABELS

__all__ = ["explore", "MAX_CELLS", "SAMPLE_PER_LABEL", "MAX_CURVE_VALUES", "METRICS"]

FILE_NAME = "explorer.html"
GENERATOR = "trainscape explore"  # in the page's <meta name="generator">: a file we may replace
MAX_CELLS = 16_384  # bin cells of the curve sample; also the finest map the page draws
SAMPLE_PER_LABEL = 2  # sampled curves per (bin cell, label)
# recorded steps kept per sampled curve: as many as MAX_CURVE_VALUES allows over the sample,
# between MIN_POINTS and MAX_POINTS
MAX_CURVE_VALUES = 2_000_000  # 4 MB before compression (2 bytes per value)
MIN_POINTS, MAX_POINTS = 32, 400
EXACT_RUNS = 100_000  # up to this many runs, metrics are quantized to 16 bits instead of 8
SAMPLE_SEED = 0
# numeric runs columns the page can colour, brush and tabulate (those a folder has);
# peak_ratio is derived as max_loss / initial_loss
METRICS = ("final_loss", "peak_ratio", "spike_ratio", "final_accuracy", "final_test_loss",
           "final_test_accuracy", "sharpness_init", "sharpness_final")
# a NaN loss comes only from a run that blew up: read as +inf so it sorts above every value
_LOSS_LIKE = frozenset({"final_loss", "final_test_loss", "peak_ratio"})
_LOG_SPAN = 20.0  # a positive metric spanning more than this factor is quantized in log space


# ----------------------------------------------------------------------------------------------
# encoding


def _blob(a: np.ndarray) -> str:
    """Little-endian bytes of `a`, gzipped, base64."""
    raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def _index_dtype(n: int):
    return np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32


def quantize(values: np.ndarray, bits: int) -> tuple[np.ndarray, dict]:
    """Codes of `values` on a `bits`-bit scale: 0 NaN, 1 -inf, top (2**bits - 1) +inf, and the
    finite values evenly in 2..top-1 between their min and max (in log10 when all are positive
    and they span more than _LOG_SPAN). Returns the codes and the scale the page decodes with."""
    v = np.asarray(values, dtype=np.float64)
    top = (1 << bits) - 1
    fin = np.isfinite(v)
    lo = float(v[fin].min()) if fin.any() else 0.0
    hi = float(v[fin].max()) if fin.any() else 0.0
    log = fin.any() and lo > 0 and hi / lo > _LOG_SPAN
    t = np.zeros(v.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        if log:
            t[fin] = (np.log10(v[fin]) - math.log10(lo)) / max(math.log10(hi / lo), 1e-300)
        elif hi > lo:
            t[fin] = (v[fin] - lo) / (hi - lo)
    codes = np.zeros(v.shape, dtype=np.uint8 if bits == 8 else np.uint16)
    codes[fin] = 2 + np.rint(np.clip(t[fin], 0, 1) * (top - 3)).astype(np.int64)
    codes[np.isposinf(v)] = top
    codes[np.isneginf(v)] = 1
    return codes, {"lo": lo, "hi": hi, "log": bool(log), "top": top}


def _jsonable(x):
    """`x` with non-finite floats as strings and NumPy scalars as Python ones (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _script_json(obj) -> str:
    # "</" would end the <script> element early
    return json.dumps(_jsonable(obj), separators=(",", ":")).replace("</", "<\\/")


# ----------------------------------------------------------------------------------------------
# reading


def _columns(res: Results) -> list[str]:
    if res.runs_in_memory:
        return list(res.runs.columns)
    return pq.read_schema(res.path / RUNS_FILE).names


def _axis_values(name: str, col: pd.Series, swept) -> tuple[list, np.ndarray]:
    """The axis's values in sweep order and each run's index into them."""
    values = list(dict.fromkeys(swept)) if swept is not None else []
    codes = pd.Index(values).get_indexer(col) if values else np.array([-1])
    if not values or (codes < 0).any():  # runs off the configured grid: their own values
        uniq = pd.unique(col)
        values = sorted(uniq.tolist()) if col.dtype.kind in "iuf" else list(uniq)
        codes = pd.Index(values).get_indexer(col)
    return values, codes


def bin_widths(sizes: list[int], max_cells: int = MAX_CELLS) -> list[int]:
    """Contiguous-bin width per axis such that the bins' product is at most `max_cells`: the
    axis with the most bins is halved until it fits, so small axes keep every value."""
    nb = list(sizes)
    while nb and math.prod(nb) > max_cells:
        i = int(np.argmax(nb))
        nb[i] = -(-nb[i] // 2)
    return [max(1, -(-s // b)) for s, b in zip(sizes, nb, strict=True)]


def sample_rows(cell: np.ndarray, label: np.ndarray, k: int = SAMPLE_PER_LABEL,
                seed: int = SAMPLE_SEED) -> np.ndarray:
    """Row positions of at most `k` runs per (cell, label), drawn at random, in row order."""
    n = len(cell)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(n)
    key = cell.astype(np.int64)[order] * (len(LABELS) + 1) + label.astype(np.int64)[order]
    by = np.argsort(key, kind="stable")
    key, rows = key[by], order[by]
    start = np.r_[0, np.nonzero(np.diff(key))[0] + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    return np.sort(rows[rank < k])


def kept_steps(steps: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most `max_points` of the recorded `steps`, evenly spaced, first and last included."""
    steps = np.unique(steps)
    if len(steps) <= max_points:
        return steps
    return steps[np.unique(np.rint(np.linspace(0, len(steps) - 1, max_points)).astype(int))]


def _read_curves(res: Results, run_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """run_id, step and loss of the curve points of the sorted `run_ids`. From a folder: one
    row group at a time, skipping those whose run_id statistics rule them out, so memory
    holds one row group and the kept points, never the whole curves file."""
    if res.curves_in_memory:
        c = res.read_curves(run_ids, columns=["run_id", "step", "loss"])
        return c["run_id"].to_numpy(), c["step"].to_numpy(), c["loss"].to_numpy(np.float64)
    f = res.path / CURVES_FILE
    try:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        col = names.index("run_id")
        parts = []
        for g in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(g).column(col).statistics
            if stats is not None and stats.has_min_max:
                if np.searchsorted(run_ids, stats.min, side="left") >= \
                        np.searchsorted(run_ids, stats.max, side="right"):
                    continue  # no sampled run in this row group
            t = pf.read_row_group(g, columns=["run_id", "step", "loss"])
            rid = t.column("run_id").to_numpy()
            pos = np.searchsorted(run_ids, rid).clip(0, max(len(run_ids) - 1, 0))
            keep = run_ids[pos] == rid if len(run_ids) else np.zeros(len(rid), bool)
            if keep.any():
                parts.append((rid[keep], t.column("step").to_numpy()[keep],
                              t.column("loss").to_numpy().astype(np.float64)[keep]))
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"results file {str(f)!r} is damaged or unreadable ({e})") from None
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _curve_codes(res: Results, run_ids: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, dict]:
    """(runs x kept steps) log10-loss codes of the sampled runs (0: not recorded or not finite)."""
    rid, st, loss_v = _read_curves(res, run_ids)
    row = np.searchsorted(run_ids, rid)
    col = np.searchsorted(steps, st).clip(0, max(len(steps) - 1, 0))
    keep = (row < len(run_ids)) & (len(steps) > 0)
    keep &= (run_ids[row.clip(0, len(run_ids) - 1)] == rid) & (steps[col] == st)
    loss = np.full((len(run_ids), len(steps)), np.nan)
    loss[row[keep], col[keep]] = loss_v[keep]
    ok = np.isfinite(loss) & (loss > 0)
    lg = np.where(ok, np.log10(np.where(ok, loss, 1.0)), np.nan)
    lo = float(np.nanmin(lg)) if ok.any() else 0.0
    hi = float(np.nanmax(lg)) if ok.any() else 0.0
    span = max(hi - lo, 1e-12)
    codes = np.zeros(loss.shape, dtype=np.uint16)
    codes[ok] = 1 + np.rint((lg[ok] - lo) / span * 65534).astype(np.int64)
    return codes, {"lo": lo, "hi": hi}


# ----------------------------------------------------------------------------------------------
# the page


def page_data(res: Results) -> tuple[dict, dict[str, tuple[str, str]]]:
    """The page's JSON description of the sweep, and its binary arrays: name -> (dtype,
    base64 of gzip)."""
    have = _columns(res)
    axes = [a for a in res.axes if a in have]
    metrics = [m for m in METRICS if m in have
               or (m == "peak_ratio" and {"max_loss", "initial_loss"} <= set(have))]
    read = [*axes, "label", *[m for m in metrics if m != "peak_ratio"]]
    if "peak_ratio" in metrics:
        read += ["max_loss", "initial_loss"]
    runs = res.read_runs(list(dict.fromkeys(["run_id", *read])))
    n = len(runs)
    if n == 0:
        raise InputError("the results hold no runs: nothing to explore")
    if "peak_ratio" in metrics:
        with np.errstate(invalid="ignore", divide="ignore"):
            runs["peak_ratio"] = runs["max_loss"].to_numpy(float) / runs["initial_loss"].to_numpy(
                float)
    blobs: dict[str, tuple[str, str]] = {}
    label = pd.Categorical(np.asarray(runs["label"], dtype=object), categories=LABELS).codes
    if (label < 0).any():
        bad = pd.unique(np.asarray(runs["label"], dtype=object)[label < 0])[:3]
        raise InputError(f"runs table: unknown label(s) {list(bad)}; allowed: {', '.join(LABELS)}")
    label = label.astype(np.uint8)
    blobs["label"] = ("u8", _blob(label))
    axis_meta, idx = [], []
    for a in axes:
        values, codes = _axis_values(a, runs[a], res.config.sweep.get(a))
        dt = _index_dtype(len(values))
        idx.append(codes)
        blobs[f"axis:{a}"] = (np.dtype(dt).name.replace("uint", "u"), _blob(codes.astype(dt)))
        axis_meta.append({"name": a, "values": values})
    widths = bin_widths([len(m["values"]) for m in axis_meta], MAX_CELLS)
    cell = np.zeros(n, dtype=np.int64)
    for m, w, codes in zip(axis_meta, widths, idx, strict=True):
        m["width"] = w
        m["bins"] = -(-len(m["values"]) // w)
        cell = cell * m["bins"] + codes // w
    bits = 16 if n <= EXACT_RUNS else 8
    metric_meta = []
    for m in metrics:
        v = pd.to_numeric(runs[m], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if m in _LOSS_LIKE:
            v = np.where(np.isnan(v), np.inf, v)
        codes, scale = quantize(v, bits)
        blobs[f"metric:{m}"] = (f"u{bits}", _blob(codes))
        metric_meta.append({"name": m, **scale})
        runs[m] = v
    rows = sample_rows(cell, label, SAMPLE_PER_LABEL)
    ids = runs["run_id"].to_numpy()[rows]
    steps_all = _recorded_steps(res)
    points = min(MAX_POINTS, max(MIN_POINTS, MAX_CURVE_VALUES // max(len(rows), 1)))
    steps = kept_steps(steps_all, points)
    curves, curve_scale = _curve_codes(res, ids.astype(np.int64), steps)
    blobs["sample:row"] = ("u32", _blob(rows.astype(np.uint32)))
    blobs["sample:id"] = ("f64", _blob(ids.astype(np.float64)))
    blobs["sample:curve"] = ("u16", _blob(curves))
    vals = runs[metrics].to_numpy(dtype=np.float64)[rows] if metrics else np.zeros((len(rows), 0))
    blobs["sample:metric"] = ("f64" if n <= EXACT_RUNS else "f32",
                              _blob(vals.astype(np.float64 if n <= EXACT_RUNS else np.float32)))
    totals = np.bincount(label, minlength=len(LABELS))
    meta = {
        "name": res.config.name,
        "n_runs": n,
        "steps": int(res.config.train.steps),
        "labels": list(LABELS),
        "colors": _label_colors(),
        "label_totals": [int(t) for t in totals],
        "axes": axis_meta,
        "metrics": metric_meta,
        "sample": {"n": int(len(rows)), "per_label": SAMPLE_PER_LABEL, "max_cells": MAX_CELLS,
                   "steps": steps.tolist(), "n_recorded_steps": int(len(steps_all)),
                   "curve_log10": curve_scale},
        "config": res.config.to_dict(),
        "env": {k: res.meta.get(k) for k in ("created", "backend", "model")
                if res.meta.get(k) is not None},
        "versions": res.meta.get("versions", {}),
    }
    return meta, blobs


def _recorded_steps(res: Results) -> np.ndarray:
    """The recorded steps (those of the first run: every run records the same steps)."""
    if res.curves_in_memory:
        c = res.curves
        first = c["run_id"].iloc[0] if len(c) else None
        return c.loc[c["run_id"] == first, "step"].to_numpy() if first is not None else \
            np.zeros(0, dtype=np.int64)
    first = pq.ParquetFile(res.path / RUNS_FILE).read_row_group(0, columns=["run_id"])
    return _read_curves(res, first.column("run_id").to_numpy()[:1])[1]


def _label_colors() -> dict[str, str]:
    from .plots import LABEL_COLORS  # the report's colours, so the page matches its figures

    return dict(LABEL_COLORS)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render(meta: dict, blobs: dict[str, tuple[str, str]]) -> str:
    """The HTML page: styles, script and data inline, nothing fetched."""
    from html import escape

    from ..version import __version__

    meta = {**meta, "generator": f"{GENERATOR} {__version__}", "blobs": {
        k: dt for k, (dt, _) in blobs.items()}}
    data = "\n".join(f'<script type="application/octet-stream" id="b:{k}">{b}</script>'
                     for k, (_, b) in blobs.items())
    title = escape(f"{meta['name']}: trainscape explorer")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="{GENERATOR} {__version__}">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>
{_asset("explorer.css")}
</style>
</head>
<body>
<noscript>This page needs JavaScript (it runs offline; nothing is fetched).</noscript>
<script type="application/json" id="ts-meta">{_script_json(meta)}</script>
{data}
<script>
{_asset("explorer.js")}
</script>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------
# entry points


def _target(res: Results, path) -> Path:
    if path is None:
        if res.path is None:
            raise InputError("path: these results are not on disk; give a file for the explorer")
        p = Path(res.path) / FILE_NAME
    else:
        p = atomic.path_arg(path, "path")
        if atomic.names_folder(path, p):
            p = p / FILE_NAME
    where = f"out {str(p)!r}"
    atomic.check_parent(p, where)
    if p.exists():
        try:
            with open(p, "rb") as f:
                head = f.read(1024)
        except OSError:
            head = b""
        if not p.is_file() or GENERATOR.encode() not in head:
            raise InputError(f"{where}: exists and is not an earlier explorer page; the explorer "
                             "replaces only its own file: give a new file name")
    return p


def explore(results: Results | str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the offline explorer page of `results` (a :class:`Results` or a results folder)
    and return its path. `path`: the file, or a folder to write ``explorer.html`` into; None:
    ``explorer.html`` in the results folder. Only an earlier explorer page is ever replaced."""
    if isinstance(results, Results):
        res = results
    elif isinstance(results, (str, os.PathLike)):
        res = load(results)
        if not isinstance(res, Results):  # a zoom folder: its levels are results folders
            raise InputError(f"results {str(results)!r}: a zoom folder, whose levels are "
                             "separate grids; explore one level, e.g. "
                             f"{str(Path(results) / 'level-0')!r}")
    else:
        raise InputError(f"results: expected a Results or a results folder, got "
                         f"{type(results).__name__}")
    p = _target(res, path)
    doc = render(*page_data(res))
    atomic.write_bytes(doc.encode("utf-8"), p)
    return p
