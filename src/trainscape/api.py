"""`ts.run`: config -> validated experiment -> data -> run table -> engine -> Results.

Everything that can be wrong with the input is checked before anything is compiled or written.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import classify, engine, grid, store
from . import config as cfg
from . import data as data_mod
from .errors import ConfigError, DataError, InputError
from .models import Model, builtin_mlp
from .results import Results
from .train import Static, record_steps

DEFAULT_RESULTS_ROOT = Path("results")

SUMMARY_COLUMNS = ("initial_loss", "final_loss", "min_loss", "max_loss", "peak_step",
                   "diverged_step", "recover_step")


def default_experiment() -> cfg.Experiment:
    """The built-in `seed-question` experiment (also `experiments/seed_question.toml`)."""
    from .defaults import SEED_QUESTION

    return cfg.parse(SEED_QUESTION)


def resolve_config(config, overrides: list[str] | None = None) -> cfg.Experiment:
    """Parse `config` (None = built-in default, TOML path, dict, Experiment) with overrides."""
    if config is None:
        from .defaults import SEED_QUESTION

        raw = SEED_QUESTION
    elif isinstance(config, cfg.Experiment):
        raw = config.to_dict()
    elif isinstance(config, str | Path):
        raw = cfg.load_toml(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raise ConfigError(
            f"config: expected a TOML path, a dict or an Experiment, got {type(config).__name__}"
        )
    if overrides:
        raw = cfg.apply_overrides(raw, overrides)
    return cfg.parse(raw)


# ------------------------------------------------------------------ preparation


class Prepared:
    """Everything a sweep needs, validated: experiment, arrays, model, static, hyperparams."""

    def __init__(self, exp: cfg.Experiment, data=None, model: Model | None = None,
                 init_params: Any = None):
        self.exp = exp
        if data is not None:
            if not isinstance(data, tuple | list) or len(data) != 2:
                raise DataError("data=: expected a tuple (x, y) of arrays")
            x, y = data_mod.validate_arrays(data[0], data[1], "data=(x, y)")
            self.data_source = "caller arrays"
        else:
            x, y = data_mod.load_dataset(exp.data)
            self.data_source = exp.data.path or exp.data.name or "breast_cancer"
        self.x, self.y = x, y
        self.task = data_mod.task_of(x, y)
        loss = exp.loss.name
        if loss == "bce" and self.task != "binary":
            raise ConfigError(
                f"[loss] name: 'bce' needs binary labels in {{0, 1}}, but the data is "
                f"{self.task}; use 'cross_entropy' for classes or 'mse' for regression"
            )
        if loss == "cross_entropy" and not np.issubdtype(y.dtype, np.integer) and \
                self.task != "binary":
            raise ConfigError("[loss] name: 'cross_entropy' needs integer class labels, "
                              f"but the data is {self.task}; use 'mse'")
        if loss == "cross_entropy":
            self.y = y.astype(np.int64)
            d_out = int(self.y.max()) + 1
        elif loss == "mse":
            d_out = 1 if y.ndim == 1 else y.shape[1]
        else:
            d_out = 1
        self.d_out = d_out
        dtype = exp.train.dtype
        if model is None:
            sizes = (x.shape[1], *exp.model.hidden, d_out)
            model = builtin_mlp(sizes, activation=exp.model.activation, init=exp.model.init,
                                bias=exp.model.bias, dtype=dtype)
            self.model_name = "mlp " + "-".join(map(str, sizes))
        elif not isinstance(model, Model):
            raise InputError("model=: expected ts.Model(init=..., apply=...)")
        else:
            self.model_name = "custom"
        self.model = model
        if init_params is not None:
            _check_init_params(model, init_params)
        self.init_params = init_params
        accuracy = exp.metrics.accuracy
        if accuracy is None:
            accuracy = loss in ("bce", "cross_entropy")
        elif accuracy and loss == "mse":
            raise ConfigError("[metrics] accuracy: not defined for loss 'mse'")
        self.static = Static(
            model=model, loss=loss, optimizer=exp.optimizer.name, steps=exp.train.steps,
            record_every=exp.train.record_every, dtype=dtype, accuracy=bool(accuracy),
            custom_init=init_params is not None,
        )
        _check_axes_used(exp)
        self.table = grid.expand(exp)
        names = ("seed", *cfg.HPARAM_AXES,
                 *[a for a in exp.sweep if a.startswith("learning_rate.")])
        defaults = {"seed": exp.train.seed, **cfg.hparam_defaults(exp)}
        self.hp = engine.hparam_arrays(self.table, names, defaults,
                                       np.float32 if dtype == "bfloat16" else dtype)

    def fingerprint(self) -> dict:
        arrays = [self.x, self.y]
        if self.init_params is not None:
            arrays += [np.asarray(a) for a in jax.tree.leaves(self.init_params)]
        return {"config": self.exp.to_dict(), "data": store.hash_arrays(*arrays),
                "model": self.model_name}


def _check_init_params(model: Model, init_params) -> None:
    want = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    w_leaves, w_def = jax.tree.flatten(want)
    g_leaves, g_def = jax.tree.flatten(init_params)
    if w_def != g_def:
        raise InputError(f"init_params=: structure {g_def} does not match the model's {w_def}")
    for path_leaf, w, g in zip(jax.tree_util.tree_flatten_with_path(want)[0], w_leaves,
                               g_leaves, strict=True):
        if tuple(np.shape(g)) != tuple(w.shape):
            where = jax.tree_util.keystr(path_leaf[0])
            raise InputError(
                f"init_params=: {where} has shape {tuple(np.shape(g))}, the model needs "
                f"{tuple(w.shape)}"
            )
        if not np.all(np.isfinite(np.asarray(g, dtype=np.float64))):
            raise InputError(f"init_params=: {jax.tree_util.keystr(path_leaf[0])} has NaN/inf")


def _check_axes_used(exp: cfg.Experiment) -> None:
    from .optim import USES

    used = USES[exp.optimizer.name]
    for axis in exp.sweep:
        if axis in ("momentum", "weight_decay") and axis not in used:
            raise ConfigError(
                f"sweep.{axis}: optimizer {exp.optimizer.name!r} has no {axis}; "
                f"optimizers that use it: "
                f"{', '.join(k for k, v in USES.items() if axis in v)}"
            )


# ------------------------------------------------------------------ assembling tables


def chunk_tables(prep: Prepared, out: engine.ChunkOutput) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs rows and long curves for one finished chunk."""
    t = out.traj
    rows = prep.table.iloc[out.start:out.stop].reset_index(drop=True)
    runs = rows.copy()
    for k in ("initial_loss", "final_loss", "min_loss", "max_loss"):
        runs[k] = t[k].astype(np.float64)
    runs["peak_step"] = t["peak_step"].astype(np.int64)
    codes = classify.label_codes(t["initial_loss"], t["final_loss"], t["spike_ratio"],
                                 t["rebound"], t["diverged_step"])
    steps_of = {"diverged_step": classify.diverged_steps(codes, t["diverged_step"],
                                                         t["above_since"]),
                "recover_step": t["recover_step"]}
    for k, v in steps_of.items():
        runs[k] = pd.array(v.astype(np.int64), dtype="Int64")
        runs.loc[v < 0, k] = pd.NA
    if prep.static.accuracy:
        runs["final_accuracy"] = t["final_accuracy"].astype(np.float64)
    runs["rebound"] = t["rebound"].astype(np.float64)
    runs["spike_ratio"] = t["spike_ratio"].astype(np.float64)
    runs["label"] = np.asarray(classify.LABELS)[codes]
    steps = np.asarray(record_steps(prep.static.steps, prep.static.record_every), np.int64)
    n, r = t["loss_R"].shape
    curves = pd.DataFrame({
        "run_id": np.repeat(rows["run_id"].to_numpy(), r),
        "step": np.tile(steps, n),
        "loss": t["loss_R"].reshape(-1).astype(np.float64),
    })
    if prep.static.accuracy:
        curves["accuracy"] = t["acc_R"].reshape(-1).astype(np.float64)
    return runs, curves


def environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("trainscape", "jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
    }


def default_out(name: str, root: Path = DEFAULT_RESULTS_ROOT) -> Path:
    """A new folder under `root`, never an existing one."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    p, k = base, 2
    while p.exists():
        p = base.with_name(f"{base.name}-{k}")
        k += 1
    return p


# ------------------------------------------------------------------ run


def run(config=None, *, data=None, model: Model | None = None, init_params=None,
        chunk_size: int | None = None, out: str | Path | None = "auto", resume: bool = False,
        progress: bool = True, overrides: list[str] | None = None) -> Results:
    """Train every run of the sweep described by `config` and return its :class:`Results`.

    config: a TOML path, a dict, an Experiment, or None for the built-in `seed-question`.
    data: (x, y) arrays replacing the configured dataset (x: (n, d); y: (n,) or (n, k)).
    model: a :class:`~trainscape.Model` replacing the built-in MLP.
    init_params: start every run from these parameters instead of drawing them from its seed
        (`init_scale` still multiplies them).
    chunk_size: runs per compiled batch (default: 64 per device, balanced so the last chunk is
        not mostly padding). An explicit size is used as given.
    out: a results folder to write ("auto": a new folder under ./results/; None: keep
        everything in memory). A folder that already holds results is refused unless `resume`.
    resume: continue an interrupted sweep in `out`, recomputing only missing chunks.
    """
    t_start = time.perf_counter()
    exp = resolve_config(config, overrides)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int | np.integer) or
                                   chunk_size < 1):
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    prep = Prepared(exp, data=data, model=model, init_params=init_params)
    n = len(prep.table)
    size = (engine.plan_chunks(n, chunk_size, len(engine.run_devices())) if chunk_size is None
            else min(chunk_size, n))
    env = environment()

    if out is None:
        if resume:
            raise InputError("resume=True needs an output folder (out=...)")
        runs_parts, curves_parts, timing = _sweep(prep, size, None, progress)
        return _finish(prep, runs_parts, curves_parts, env, timing, t_start, None)

    path = default_out(exp.name) if out == "auto" else Path(out)
    st = store.Store(path, prep.fingerprint(), n, size, resume)
    with st:
        runs_parts, curves_parts, timing = _sweep(prep, st.chunk_size, st, progress)
        res = _finish(prep, runs_parts, curves_parts, env, timing, t_start, path)
        res.save(path)
        st.finish()
    return res


def _sweep(prep: Prepared, size: int, st: store.Store | None, progress: bool):
    n = len(prep.table)
    done = st.done_chunks() if st is not None else set()
    runs_parts: dict[int, pd.DataFrame] = {}
    curves_parts: dict[int, pd.DataFrame] = {}
    if done:
        r, c = st.load_chunks(done)
        runs_parts.update(zip(sorted(done), r, strict=True))
        curves_parts.update(zip(sorted(done), c, strict=True))
    already = sum(len(r) for r in runs_parts.values())
    timing = {"chunk_size": size, "chunk_seconds": [], "first_chunk_seconds": None,
              "resumed_runs": already}
    bar = tqdm(total=n, initial=already, unit="run", desc=prep.exp.name, disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    try:
        for out in engine.run_chunks(prep.static, prep.hp, prep.x, prep.y, prep.init_params,
                                     size, skip=done):
            runs, curves = chunk_tables(prep, out)
            if st is not None:
                st.save_chunk(out.index, runs, curves)
            runs_parts[out.index] = runs
            curves_parts[out.index] = curves
            if timing["first_chunk_seconds"] is None:
                timing["first_chunk_seconds"] = out.seconds
            timing["chunk_seconds"].append(out.seconds)
            bar.update(out.stop - out.start)
    finally:
        bar.close()
    return runs_parts, curves_parts, timing


def _finish(prep, runs_parts, curves_parts, env, timing, t_start, path) -> Results:
    keys = sorted(runs_parts)
    runs = pd.concat([runs_parts[k] for k in keys], ignore_index=True)
    curves = pd.concat([curves_parts[k] for k in keys], ignore_index=True)
    runs = runs.sort_values("run_id", kind="stable").reset_index(drop=True)
    total = time.perf_counter() - t_start
    computed = sum(timing["chunk_seconds"])
    run_steps = (len(runs) - timing["resumed_runs"]) * prep.static.steps
    meta = {
        **env,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "data": {"source": prep.data_source, "n_samples": int(prep.x.shape[0]),
                 "n_features": int(prep.x.shape[1]), "task": prep.task},
        "model": prep.model_name,
        "timings": {
            **{k: v for k, v in timing.items() if k != "chunk_seconds"},
            "n_chunks": len(timing["chunk_seconds"]),
            "compute_seconds": computed,
            "total_seconds": total,
            "run_steps_per_second": run_steps / computed if computed > 0 else None,
        },
    }
    return Results(runs=runs, curves=curves, config=prep.exp, meta=meta, path=path)
