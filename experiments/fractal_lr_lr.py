"""The fractal condition of experiments/fractal_lr_lr.toml: its model and data, a zoom, and
the dense grid the zoom is checked against.

    python experiments/fractal_lr_lr.py zoom  --out DIR [--levels 3] [--margin M] [--by B]
    python experiments/fractal_lr_lr.py dense --out DIR [--levels 3]   # every lattice point
    python experiments/fractal_lr_lr.py check --out ZOOM_DIR --dense DENSE_DIR
        # the targets: every computed point against the dense grid, boundary cells found,
        # cost, dimension (zoom and dense, same scales), and margins 0-4 replayed on the
        # dense map

Model (the paper's notebook, width 16, depth 2): h = tanh(sqrt(2) x W0 / sqrt(16)),
f = h W1 / 16, W0 (16, 16) and W1 (16, 1) ~ N(0, 1), no biases; per-layer learning rates
learning_rate.0 (W0) and learning_rate.1 (W1). Data: x (272, 16) and y (272, 1) ~ N(0, 1)
(272 = the number of parameters), drawn with NumPy from seed 0.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import trainscape as ts

WIDTH = 16
CONFIG = Path(__file__).with_suffix(".toml")


def init(key):
    k0, k1 = jax.random.split(key)
    return [jax.random.normal(k0, (WIDTH, WIDTH), jnp.float32),
            jax.random.normal(k1, (WIDTH, 1), jnp.float32)]


def apply(params, x):
    w0, w1 = params
    h = jnp.tanh(math.sqrt(2.0) * (x @ w0) / math.sqrt(WIDTH))
    return (h @ w1) / math.sqrt(WIDTH) / math.sqrt(WIDTH)


MODEL = ts.Model(init=init, apply=apply)


def data(seed: int = 0):
    n = WIDTH * WIDTH + WIDTH  # as many samples as parameters
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, WIDTH)).astype(np.float32),
            rng.standard_normal((n, 1)).astype(np.float32))


def dense(out, levels: int = 3, overrides=None):
    """Every point of the zoom's finest lattice, the same float64 values, one sweep."""
    import pandas as pd

    from trainscape.sweep import zoom_grid as zg
    from trainscape.sweep.zoom import level_table, zoom_spec

    _, axes, exp = zoom_spec(str(CONFIG), overrides)
    n, m = axes[0].size(levels), axes[1].size(levels)
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], axis=1)
    table = level_table(exp, axes, ij, levels, levels)
    assert isinstance(table, pd.DataFrame) and zg.lattice_size(axes[0].num, levels) == n
    return ts.run(exp.model_copy(update={"name": f"{exp.name}.dense"}), data=data(),
                  model=MODEL, out=out, table=table, resume=True)


def check(zoom_dir, dense_dir) -> dict:
    """The zoom's targets, measured against the dense sweep of the same lattice."""
    from trainscape.sweep import zoom_grid as zg
    from trainscape.sweep.zoom import measure_column, outcome_codes

    z = ts.load(zoom_dir)
    d = ts.load(dense_dir)
    levels = z.settings["levels"]
    n, m = z.refinement.shape
    dense = d.runs
    dense["convergence_measure"] = measure_column(d)
    pos = z.runs["i"].to_numpy() * m + z.runs["j"].to_numpy()
    assert (dense["i"].to_numpy() * m + dense["j"].to_numpy() == np.arange(n * m)).all()
    at = dense.iloc[pos].reset_index(drop=True)
    zr = z.runs
    same = {c: bool((zr[c].to_numpy() == at[c].to_numpy()).all())
            for c in ("learning_rate.0", "learning_rate.1", "label", "final_loss",
                      "convergence_measure")}
    codes = outcome_codes(dense, z.by).reshape(n, m)
    agree = float((outcome_codes(zr, z.by) == codes.ravel()[pos]).mean())
    want = {tuple(c) for c in zg.dense_boundary(codes)}
    got = {tuple(c) for c in z.refinement.finest_boundary}
    sizes = z.refinement.box_sizes()
    dd = zg.fit_dimension(sizes, zg.box_counts(zg.dense_boundary(codes), sizes), max(n, m) - 1)
    margins = []
    for margin in range(5):
        ref = zg.zoom_plan(z.axes[0].num, z.axes[1].num, levels, margin,
                           lambda k, ij: codes[ij[:, 0], ij[:, 1]])
        found = {tuple(c) for c in ref.finest_boundary} & want
        margins.append({"margin": margin, "found_pct": 100 * len(found) / len(want),
                        "runs_pct": 100 * ref.n_runs / ref.dense_runs})
    out = {"by": z.by, "margin": z.settings["margin"], "identical_columns": same,
           "outcome_agreement": agree, "boundary_dense": len(want),
           "boundary_found": len(got & want), "boundary_missed": len(want - got),
           "found_pct": 100 * len(got & want) / len(want), "runs": z.n_runs,
           "dense_runs": z.dense_runs, "runs_pct": 100 * z.n_runs / z.dense_runs,
           "dimension_zoom": z.dimension, "dimension_dense": dd, "margins": margins}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("zoom", "dense", "check"))
    p.add_argument("--dense", help="check: the dense sweep's folder")
    p.add_argument("--out", required=True)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--margin", type=int)
    p.add_argument("--by", default="diverged")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    ts.configure()  # as the command line does: a CPU device per core, the compile cache
    if a.what == "dense":
        print(dense(a.out, a.levels, a.overrides))
        return
    if a.what == "check":
        import json

        print(json.dumps(check(a.out, a.dense), indent=1))
        return
    kw = {} if a.margin is None else {"margin": a.margin}
    z = ts.zoom(str(CONFIG), a.levels, by=a.by, data=data(), model=MODEL, out=a.out,
                resume=a.resume, overrides=a.overrides, **kw)
    print(z)


if __name__ == "__main__":
    main()
