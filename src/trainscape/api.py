"""`ts.run`: config -> validated experiment -> data -> run table -> engine -> Results.

Everything that can be wrong with the input is checked before anything is compiled or written.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import classify, engine, grid, memory, store
from . import config as cfg
from . import data as data_mod
from .errors import ConfigError, DataError, InputError
from .models import Model, builtin_mlp
from .results import META_FILE, Results, atomic_json
from .train import Static, record_steps

DEFAULT_RESULTS_ROOT = Path("results")

SUMMARY_COLUMNS = ("initial_loss", "final_loss", "min_loss", "max_loss", "peak_step",
                   "diverged_step", "recover_step", "spike_step", "spike_recover_step")


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
        self.custom_model = model is not None
        if model is not None and not isinstance(model, Model):
            raise InputError("model=: expected ts.Model(init=..., apply=...)")
        sizes = (x.shape[1], *exp.model.hidden, d_out)
        self.model_name = "custom" if model is not None else "mlp " + "-".join(map(str, sizes))
        dtypes = exp.sweep.get("dtype", (exp.train.dtype,))
        models = {dt: model if model is not None else builtin_mlp(
            sizes, activation=exp.model.activation, init=exp.model.init, bias=exp.model.bias,
            dtype=dt, parameterization=exp.model.parameterization) for dt in dtypes}
        self.model = models[dtypes[0]]
        if init_params is not None:
            _check_init_params(self.model, init_params)
        self.init_params = init_params
        _check_entry_axes(exp, self.model)
        accuracy = exp.metrics.accuracy
        if accuracy is None:
            accuracy = loss in ("bce", "cross_entropy")
        elif accuracy and loss == "mse":
            raise ConfigError("[metrics] accuracy: not defined for loss 'mse'")
        dropout = exp.model.dropout > 0 or "dropout" in exp.sweep
        if dropout and not hasattr(self.model.apply, "with_dropout"):
            raise ConfigError("[model] dropout: a custom model applies its own dropout; give "
                              "its apply a with_dropout(params, x, key, rate) method")
        m = exp.metrics
        sharp = m.sharpness or m.sharpness_every > 0
        if m.sharpness_every % exp.train.record_every:
            raise ConfigError(
                f"[metrics] sharpness_every: got {m.sharpness_every}; must be a multiple of "
                f"[train] record_every = {exp.train.record_every} (it is recorded in curves)")
        batch_sizes = exp.sweep.get("batch_size", (exp.train.batch_size,))
        for bs in batch_sizes:
            if bs is not None and bs > x.shape[0]:
                raise ConfigError(f"[train] batch_size: got {bs}; the data has only "
                                  f"{x.shape[0]} samples")
        common = dict(
            loss=loss, optimizer=exp.optimizer.name, steps=exp.train.steps,
            record_every=exp.train.record_every, accuracy=bool(accuracy),
            custom_init=init_params is not None, dropout=dropout,
            l2=exp.optimizer.l2 > 0 or "l2" in exp.sweep,
            grad_clip=exp.optimizer.grad_clip > 0 or "grad_clip" in exp.sweep,
            sharpness=sharp, sharpness_every=m.sharpness_every,
            sharpness_iters=m.sharpness_iters, sharpness_which=m.sharpness_which,
            matmul_precision=exp.train.matmul_precision, early_exit=exp.train.early_exit,
        )
        _check_axes_used(exp)
        self.n_runs = exp.n_runs
        # one compiled program per value of the static axes (dtype, batch size)
        self.groups = []
        for dt in dtypes:
            for bs in batch_sizes:
                pos = np.intersect1d(grid.axis_positions(exp, "dtype", dt),
                                     grid.axis_positions(exp, "batch_size", bs),
                                     assume_unique=True)
                st = Static(model=models[dt], dtype=dt, batch_size=bs, **common)
                self.groups.append((st, pos))
        self.static = self.groups[0][0]
        self.hp_names = ("seed", *cfg.HPARAM_AXES,
                         *[a for a in exp.sweep if a.startswith("learning_rate.")])
        self.hp_defaults = {"seed": exp.train.seed, **cfg.hparam_defaults(exp)}
        self._table = self._hp = None

    @property
    def table(self) -> pd.DataFrame:
        """The whole run table (built on first use; a sweep works on `rows` chunk by chunk)."""
        if self._table is None:
            self._table = grid.expand(self.exp)
        return self._table

    @property
    def hp(self) -> dict[str, np.ndarray]:
        """Every run's hyperparameters (see `engine.hparam_arrays`), built on first use."""
        if self._hp is None:
            self._hp = engine.hparam_arrays(self.table, self.hp_names, self.hp_defaults,
                                            np.float64)
        return self._hp

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        return self.table.iloc[positions].reset_index(drop=True) if self._table is not None \
            else grid.rows(self.exp, positions)

    def hparams(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The hyperparameters of the runs at `positions` only."""
        if self._hp is not None:
            return engine.take(self._hp, positions)
        return engine.take(engine.hparam_arrays(self.rows(positions), self.hp_names,
                                                self.hp_defaults, np.float64),
                           np.arange(len(positions)))

    @functools.cached_property
    def block(self) -> int:
        """Runs per device in each compiled block, the unit chunks are counted in: 32 on a CPU,
        more on a GPU or TPU for networks of little work per step (`engine.groups_block`)."""
        return engine.groups_block(self.groups, self.x)

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


def _check_entry_axes(exp: cfg.Experiment, model: Model) -> None:
    from .optim import n_top_level

    n = n_top_level(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    for axis in exp.sweep:
        if axis.startswith("learning_rate.") and int(axis.split(".")[1]) >= n:
            raise ConfigError(f"sweep.{axis}: the model's parameters have {n} top-level "
                              f"entries (learning_rate.0 .. learning_rate.{n - 1})")


def _check_axes_used(exp: cfg.Experiment) -> None:
    from .optim import USES

    used = USES[exp.optimizer.name]
    optimizer_axes = {a for v in USES.values() for a in v} - {"learning_rate"}
    for axis in exp.sweep:
        if axis in optimizer_axes and axis not in used:
            raise ConfigError(
                f"sweep.{axis}: optimizer {exp.optimizer.name!r} has no {axis}; "
                f"optimizers that use it: "
                f"{', '.join(k for k, v in USES.items() if axis in v)}"
            )


# ------------------------------------------------------------------ assembling tables


def chunk_tables(prep: Prepared, out: engine.ChunkOutput) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs rows and long curves for one finished chunk. (Columns are gathered first and the
    frames built once: inserting them one by one cost about 20 ms a chunk, as much as a GPU
    takes to train a small grid.)"""
    t = out.traj
    positions = out.rows if out.rows is not None else np.arange(out.start, out.stop)
    rows = prep.rows(positions)
    cols: dict[str, Any] = {}
    for k in ("initial_loss", "final_loss", "min_loss", "max_loss"):
        cols[k] = t[k].astype(np.float64)
    cols["peak_step"] = t["peak_step"].astype(np.int64)
    codes = classify.label_codes(t["initial_loss"], t["final_loss"], t["spike_ratio"],
                                 t["rebound"], t["diverged_step"])
    steps_of = {"diverged_step": classify.diverged_steps(codes, t["diverged_step"],
                                                         t["above_since"]),
                "recover_step": t["recover_step"],
                "spike_step": t["spike_step"],
                "spike_recover_step": t["spike_recover_step"]}
    for k, v in steps_of.items():  # -1 (never) is NA
        v = np.asarray(v).astype(np.int64)
        cols[k] = pd.arrays.IntegerArray(v, v < 0)
    if prep.static.accuracy:
        cols["final_accuracy"] = t["final_accuracy"].astype(np.float64)
    cols["rebound"] = t["rebound"].astype(np.float64)
    cols["spike_ratio"] = t["spike_ratio"].astype(np.float64)
    if prep.static.sharpness and prep.static.optimizer == "sgd" and not any(
            a.startswith("learning_rate.") for a in prep.exp.sweep):
        codes = classify.edge_of_stability(codes, t["sharpness_final"],
                                           prep.hparams(positions)["learning_rate"])
    cols["label"] = np.asarray(classify.LABELS)[codes]
    if prep.static.sharpness:
        cols["sharpness_init"] = t["sharpness_init"].astype(np.float64)
        cols["sharpness_final"] = t["sharpness_final"].astype(np.float64)
    runs = pd.DataFrame({**{k: rows[k] for k in rows.columns}, **cols})
    steps = np.asarray(record_steps(prep.static.steps, prep.static.record_every), np.int64)
    n, r = t["loss_R"].shape
    curve_cols = {
        "run_id": np.repeat(rows["run_id"].to_numpy(), r),
        "step": np.tile(steps, n),
        "loss": t["loss_R"].reshape(-1).astype(np.float64),
    }
    if prep.static.accuracy:
        curve_cols["accuracy"] = t["acc_R"].reshape(-1).astype(np.float64)
    if prep.static.sharpness_every:
        curve_cols["sharpness"] = t["sharpness_R"].reshape(-1).astype(np.float64)
    return runs, pd.DataFrame(curve_cols, copy=False)


@functools.cache
def _package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on, read once per process (the
    package metadata lookups took about 14 ms, on every `ts.run`)."""
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for pkg in ("jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return versions


def environment() -> dict:
    from . import __version__

    # trainscape's own version from the code that runs: an editable install's metadata keeps
    # the version it was installed at (stored studies once said 0.2.0 for a 0.4.0 engine), and
    # this version is part of the resume fingerprint
    return {
        "versions": {"trainscape": __version__, **_package_versions()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        # XLA options the training programs were compiled with (they can move the last bits)
        "xla_compiler_options": engine.compiler_options(),
    }


def default_out(name: str, root: Path = DEFAULT_RESULTS_ROOT) -> Path:
    """A new folder under `root`, never an existing one: created here (mkdir fails on an
    existing name, a check would not), so two sweeps started in the same second get two
    folders (`-2`). It is empty until the sweep writes; `drop_if_empty` on the way out of a
    sweep that failed before that."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    p, k = base, 2
    while True:
        try:
            p.mkdir(parents=True)
            return p
        except FileExistsError:
            p = base.with_name(f"{base.name}-{k}")
            k += 1
        except OSError as e:
            raise InputError(f"cannot create the results folder {str(p)!r}: "
                             f"{e.strerror or e}; choose another with --out (out=DIR)") from None


def drop_if_empty(path: Path) -> None:
    """Remove a `default_out` folder (and `root`, if that is empty too) that nothing was
    written into: bad input leaves nothing behind."""
    for d in (path, path.parent):
        try:
            d.rmdir()  # only ever removes an empty folder
        except OSError:
            return


# ------------------------------------------------------------------ run


def run(config=None, *, data=None, model: Model | None = None, init_params=None,
        chunk_size: int | None = None, out: str | Path | None = "auto", resume: bool = False,
        memory_budget: float | None = None,
        progress: bool = True, overrides: list[str] | None = None) -> Results:
    """Train every run of the sweep described by `config` and return its :class:`Results`.

    config: a TOML path, a dict, an Experiment, or None for the built-in `seed-question`.
    data: (x, y) arrays replacing the configured dataset (x: (n, d); y: (n,) or (n, k)).
    model: a :class:`~trainscape.Model` replacing the built-in MLP.
    init_params: start every run from these parameters instead of drawing them from its seed
        (`init_scale` still multiplies them).
    chunk_size: runs per compiled batch (default: chosen automatically, see README "Large
        grids": 4 blocks per device (128 runs on a CPU) for grids of up to 8 such chunks, else
        sized by a timing probe and the memory budget; balanced so the last chunk is not mostly
        padding). An explicit size is rounded up to whole blocks (32 runs on every CPU device;
        on a GPU or TPU 32 to 4096, by the network's work per step: `engine.block_runs`), as
        the engine dispatches them; a resumed sweep keeps the chunk size it started with.
    out: a results folder to write ("auto": a new folder under ./results/; None: keep
        everything in memory). A folder that already holds results is refused unless `resume`.
    resume: continue an interrupted sweep in `out`, recomputing only missing or corrupt chunks;
        refused (naming the difference) if `out` was written for another config, other data or
        other software versions. A sweep that already finished is returned as it is on disk.

    Bad input, an unwritable `out` and a grid too large for the device are refused with an
    InputError before anything is compiled or written (see docs/reliability.md).
    """
    t_start = time.perf_counter()
    if memory_budget is not None and not (isinstance(memory_budget, int | float) and
                                          memory_budget > 0):
        raise InputError(f"memory_budget: expected a positive number of bytes, got "
                         f"{memory_budget!r}")
    exp = resolve_config(config, overrides)
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int | np.integer) or
                                   chunk_size < 1):
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if resume and (out is None or out == "auto"):
        raise InputError("resume=True needs the folder of the interrupted sweep (out=DIR)")
    try:
        prep = Prepared(exp, data=data, model=model, init_params=init_params)
    except MemoryError as e:  # e.g. a generated dataset of 10**12 samples
        why = str(e) or "out of memory"
        raise InputError(f"the data or the grid does not fit in host memory ({why}); "
                         "reduce [data] n_samples or the sweep") from None
    n = prep.n_runs
    env = environment()
    path = None if out is None or out == "auto" else Path(out)
    # before anything is written/compiled ("auto": the folder is made once the grid is known
    # to fit, on the disk holding the default root)
    _check_memory(prep, in_memory=out is None,
                  out=DEFAULT_RESULTS_ROOT if out == "auto" else path)

    if out is None:
        size, probe = _chunk_size(prep, chunk_size, memory_budget)
        parts, timing = _sweep(prep, size, None, progress)
        return _finish(prep, parts, env, {**timing, **probe}, t_start, None)

    from . import parallel

    rank, n_proc = parallel.process()
    if n_proc > 1:
        return _run_distributed(prep, env, path, out, chunk_size, memory_budget, resume,
                                progress, t_start, rank, n_proc)
    if out == "auto":
        path = default_out(exp.name)
    try:
        st = store.Store(path, _fingerprint(prep, env), n, None, resume)  # refusals only
        probe = {}
        if st.chunk_size is None:  # a new sweep (a resumed one keeps its manifest's chunk size)
            st.chunk_size, probe = _chunk_size(prep, chunk_size, memory_budget)
        with st:
            if st.finished:  # resuming a sweep that already finished: nothing left to compute
                from .results import load

                st.finish()
                return load(path)
            _, timing = _sweep(prep, st.chunk_size, st, progress)
            res = _finish(prep, None, env, {**timing, **probe}, t_start, path)
            _write_final(prep, st, res)
    except BaseException:
        if out == "auto":
            drop_if_empty(path)
        raise
    return res


def _write_final(prep: Prepared, st: store.Store, res: Results) -> None:
    """Every chunk saved: stream them into the final files, write meta.json, mark finished."""
    st.assemble(len(_chunk_layout(prep, st.chunk_size)))
    atomic_json({**res.meta, "config": res.config.to_dict()}, st.path / META_FILE)
    st.finish()


_DISTRIBUTED_SWEEPS = [0]  # sweeps run so far by this process: keys of the coordinator's store


def _run_distributed(prep, env, path, out, chunk_size, memory_budget, resume, progress,
                     t_start, rank, n_proc) -> Results:
    """One process's part of a sweep shared by `n_proc` processes (see parallel.py)."""
    from . import parallel
    from .results import load

    _DISTRIBUTED_SWEEPS[0] += 1
    key = f"sweep{_DISTRIBUTED_SWEEPS[0]}"
    fp = _fingerprint(prep, env)
    if rank == 0:
        try:
            if out == "auto":  # the others cannot guess process 0's time stamp
                path = default_out(prep.exp.name)
            st = store.Store(path, fp, prep.n_runs, None, resume)
            probe = {}
            if st.chunk_size is None:
                st.chunk_size, probe = _chunk_size(prep, chunk_size, memory_budget)
            st.__enter__()
        except InputError as e:
            if out == "auto" and path is not None:
                drop_if_empty(path)
            parallel.publish(f"{key}/verdict", {"error": str(e).splitlines()[0]})
            raise
        parallel.publish(f"{key}/verdict", {"path": str(path), "finished": st.finished})
    else:
        verdict = parallel.fetch(f"{key}/verdict")
        if "error" in verdict:
            raise InputError(f"{verdict['error']} (reported by process 0)")
        path, probe = Path(verdict["path"]), {}
        st = store.Store(path, fp, prep.n_runs, None, True, process=rank)
        st.__enter__()
    try:
        if not st.finished:
            _, timing = _sweep(prep, st.chunk_size, st, progress, share=(rank, n_proc))
            parallel.barrier(f"{key}/swept")
            if rank == 0:
                missing = set(range(len(_chunk_layout(prep, st.chunk_size)))) - st.done_chunks()
                if missing:
                    raise store.WriteError(
                        f"{len(missing)} chunks of {str(path)!r} are missing after every "
                        f"process finished (first: {min(missing)}); resume the sweep")
                res = _finish(prep, None, env, {**timing, **probe, "processes": n_proc},
                              t_start, path)
                _write_final(prep, st, res)
        elif rank == 0:
            st.finish()
        parallel.barrier(f"{key}/finished")  # the folder now reads as one result
    finally:
        st.__exit__(None, None, None)
    return load(path)


# A sweep on disk hands its freed memory back this often (`memory.release_free_memory`):
# after every chunk it cost the memory bench's sweep about 4% of its speed.
RELEASE_EVERY_SECONDS = 10.0


def _sweep(prep: Prepared, size: int, st: store.Store | None, progress: bool,
           share: tuple[int, int] = (0, 1)):
    """Train every chunk not already saved. In memory (`st` None) every chunk's tables are
    kept and returned; with a store each chunk goes to disk as soon as it is done and only its
    timing stays in memory, so host memory does not grow with the grid. `share` (k, m): only
    the chunks whose number is k modulo m (process k of m in a distributed sweep)."""
    layout = _chunk_layout(prep, size)
    mine = {i for i in range(len(layout)) if i % share[1] == share[0]}
    n = sum(len(layout[i][1]) for i in mine)
    parts: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}
    saved: set[int] = set()
    if st is not None:
        for i in st.done_chunks():
            # checksums prove a file is intact, this that it holds the runs its number means
            # (a run's position in the grid is its run_id)
            if i < len(layout) and np.array_equal(st.chunk_run_ids(i), layout[i][1]):
                saved.add(i)
    saved &= mine
    already = sum(len(layout[i][1]) for i in saved)
    dispatch = _fit_dispatch(prep, size)
    timing = {"chunk_size": size, "dispatch_size": dispatch, "chunk_seconds": [],
              "first_chunk_seconds": None, "resumed_runs": already, "computed_runs": 0,
              "run_steps_skipped": 0}
    desc = prep.exp.name + (f" [process {share[0]}/{share[1]}]" if share[1] > 1 else "")
    released = time.perf_counter()
    bar = tqdm(total=n, initial=already, unit="run", desc=desc, disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    try:
        for index, (static, rows) in enumerate(layout):
            if index in saved or index not in mine:
                continue
            with store.interrupts_deferred():
                out, dispatch = _compute_chunk(prep, index, static, rows, dispatch)
                runs, curves = chunk_tables(prep, out)
                if st is not None:
                    st.save_chunk(index, runs, curves)
                    if time.perf_counter() - released > RELEASE_EVERY_SECONDS:
                        memory.release_free_memory()
                        released = time.perf_counter()
            if st is None:
                parts[index] = (runs, curves)
            if timing["first_chunk_seconds"] is None:
                timing["first_chunk_seconds"] = out.seconds
            timing["chunk_seconds"].append(out.seconds)
            timing["computed_runs"] += len(rows)
            timing["run_steps_skipped"] += skipped_run_steps(out.traj, static.steps)
            del out, runs, curves  # a stored chunk lives on disk only
            bar.update(len(rows))
    finally:
        bar.close()
    timing["chunk_size_settled"] = dispatch
    return parts, timing


def skipped_run_steps(traj: dict[str, np.ndarray], steps: int) -> int:
    """Run-steps early exit did not compute in a chunk's trajectories: of the `steps` + 1
    evaluations each run's loop makes (the one at `steps` included), those its group skipped
    once all its runs were frozen."""
    return int(np.sum(steps + 1 - traj["steps_computed"].astype(np.int64)))


def _finish(prep, parts, env, timing, t_start, path) -> Results:
    """The Results of a finished sweep: assembled in memory from `parts`, or (path given)
    read lazily from the folder, whose final files `Store.assemble` streams from the chunks."""
    total = time.perf_counter() - t_start
    computed = sum(timing["chunk_seconds"])
    run_steps = timing["computed_runs"] * prep.static.steps  # by this process
    meta = {
        **env,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "data": {"source": prep.data_source, "n_samples": int(prep.x.shape[0]),
                 "n_features": int(prep.x.shape[1]), "task": prep.task},
        "model": prep.model_name,
        # what the compiled matmuls used: the config's choice, else JAX's global setting
        "matmul_precision": (prep.exp.train.matmul_precision
                             if prep.exp.train.matmul_precision != "default"
                             else env["matmul_precision"]),
        "engine": _engine_facts(prep),
        "timings": {
            **{k: v for k, v in timing.items() if k != "chunk_seconds"},
            "n_chunks": len(timing["chunk_seconds"]),
            "compute_seconds": computed,
            "total_seconds": total,
            "run_steps_per_second": run_steps / computed if computed > 0 else None,
            "peak_host_memory_bytes": memory.peak_rss_bytes(),
        },
    }
    if path is not None:
        return Results(config=prep.exp, meta=meta, path=path)
    keys = sorted(parts)
    runs = pd.concat([parts[k][0] for k in keys], ignore_index=True)
    curves = pd.concat([parts[k][1] for k in keys], ignore_index=True)
    runs = runs.sort_values("run_id", kind="stable").reset_index(drop=True)
    if len(prep.groups) > 1:  # chunks of several programs arrive grouped, not in run order
        curves = curves.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    return Results(runs=runs, curves=curves, config=prep.exp, meta=meta, path=None)


def _engine_facts(prep: Prepared) -> dict:
    """How the engine ran each program: runs per device in a block, how many of them were
    trained together (`engine.sub_batch`) and the layout of the built-in MLP's activations."""
    platform = engine.run_devices()[0].platform
    programs = []
    for st, _ in prep.groups:
        programs.append({
            "dtype": st.dtype, "batch_size": st.batch_size,
            "runs_trained_together": engine.sub_batch(st, prep.x, platform),
            "layout": ("custom model" if prep.custom_model else
                       "features" if engine.shares_data(st, prep.x) else "samples"),
        })
    return {"block_runs_per_device": prep.block, "programs": programs,
            # whether a group of runs stops computing once all are frozen ([train] early_exit)
            "early_exit": prep.exp.train.early_exit}


# ------------------------------------------------------------------ reliability helpers


def _fingerprint(prep: Prepared, env: dict) -> dict:
    """What a resumed sweep must share with the interrupted one: config, data, model, and the
    software and backend, since another XLA may round differently and a resumed table must
    equal an uninterrupted one bit for bit."""
    v = env["versions"]
    soft = {k: v.get(k) for k in ("trainscape", "jax", "jaxlib")}
    return {**prep.fingerprint(), "software": {**soft, "backend": env["backend"]}}


def _chunk_layout(prep: Prepared, size: int) -> list[tuple]:
    """(static, run-table rows) of every chunk, numbered as in `engine.run_chunks`."""
    return engine.chunk_layout(prep.groups, size)


def _compute_chunk(prep: Prepared, index: int, static, rows: np.ndarray, dispatch: int):
    """One chunk, `dispatch` runs at a time. On an allocation failure the dispatch is halved
    (whole blocks, at least one) and the chunk retried; its number and rows never change, so
    the chunks already saved stay valid. Returns the chunk and the dispatch size that worked."""
    import sys

    block = prep.block
    group = block * len(engine.run_devices())
    t0 = time.perf_counter()
    while True:
        try:
            parts = [o.traj for o in engine.run_chunks(
                [(static, np.arange(len(rows)))], prep.hparams(rows), prep.x, prep.y,
                prep.init_params, dispatch)]
            break
        except Exception as e:  # noqa: BLE001 - only allocation failures are retried
            if not memory.is_allocation_error(e):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if dispatch <= group:
                raise memory.OutOfMemory(
                    f"chunk {index} ran out of memory even at {dispatch} runs at a time "
                    f"({block} per device): {first}; reduce [data] n_samples, "
                    "[model] hidden or the recorded steps ([train] record_every)") from None
            dispatch = max(group, dispatch // group // 2 * group)
            print(f"trainscape: out of memory in chunk {index} ({first}); retrying "
                  f"{dispatch} runs at a time", file=sys.stderr)
    traj = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = engine.ChunkOutput(index, int(rows[0]), int(rows[-1]) + 1, traj,
                             time.perf_counter() - t0, rows=rows)
    return out, dispatch


def _memory_need(prep: Prepared, runs: int) -> int:
    """Estimated peak device bytes while `runs` runs are in flight, for the hungriest program
    group. CPU devices share the host's memory; other devices each hold their share."""
    devices = engine.run_devices()
    cpu = devices[0].platform == "cpu"
    per_pool = runs if cpu else -(-runs // len(devices))
    widths = (prep.d_out,) if prep.custom_model else (*prep.exp.model.hidden, prep.d_out)
    need = 0
    for static, _ in prep.groups:
        extra = static.sharpness_iters + 2 if static.sharpness else 0
        # a CPU device trains its blocks one group of runs at a time (GPU and TPU blocks are
        # vmapped whole; counted whole, as before)
        active = (engine.sub_batch(static, prep.x, devices[0].platform) * len(devices)
                  if cpu else None)
        need = max(need, memory.estimate_bytes(
            engine.n_params(static), prep.x.shape[0], prep.x.shape[1], widths,
            _n_recorded(static), per_pool, static.dtype,
            extra_param_copies=extra, active_runs=active))
    return need


def _check_memory(prep: Prepared, in_memory: bool = True, out: Path | None = None) -> None:
    """Refuse a grid whose smallest chunk (one block on every device) cannot fit on the device,
    whose finished tables cannot fit in host memory (`in_memory`: results kept in memory), or
    whose files cannot fit on the disk holding `out`, before anything is compiled."""
    devices = engine.run_devices()
    block = prep.block
    group = block * len(devices)
    available = memory.device_memory_bytes(devices[0])
    need = _memory_need(prep, group)
    fmt = memory.format_bytes
    if available is not None and need > available:
        raise InputError(
            f"grid too large for this machine: its smallest chunk ({group} runs, "
            f"{block} per device on {len(devices)} {devices[0].platform} device(s)) "
            f"needs about {fmt(need)}, but {fmt(available)} is available; reduce [data] "
            "n_samples, [model] hidden or the recorded steps ([train] record_every)")
    steps = _n_recorded(prep.static)
    if in_memory:
        host = memory.host_available_bytes()
        need = memory.host_results_bytes(prep.n_runs, steps)
        if host is not None and need > host:
            raise InputError(
                f"grid too large for this machine: the results of {prep.n_runs} runs x "
                f"{steps} recorded steps need about {fmt(need)} of host memory, but "
                f"{fmt(host)} is available; write them to a folder (out=DIR), record fewer "
                "steps ([train] record_every) or split the grid")
    elif out is not None:
        free = memory.disk_free_bytes(out)
        need = memory.disk_results_bytes(prep.n_runs, steps)
        if free is not None and need > free:
            raise InputError(
                f"output folder {str(out)!r}: the results of {prep.n_runs} runs x {steps} "
                f"recorded steps need at least {fmt(need)} on disk, but {fmt(free)} is free; "
                "record fewer steps ([train] record_every), split the grid or choose another "
                "--out")


def _n_recorded(static) -> int:
    """len(train.record_steps(steps, record_every)) without building the list (steps may be
    absurdly large in a config that is about to be refused)."""
    return len(range(0, static.steps, static.record_every)) + 1


def _fit_dispatch(prep: Prepared, size: int) -> int:
    """Runs to dispatch at once: the chunk, or fewer whole blocks if the estimate says the
    whole chunk would not fit on the device."""
    devices = engine.run_devices()
    group = prep.block * len(devices)
    fits = memory.fit_runs(lambda k: _memory_need(prep, k), size, group,
                           memory.device_memory_bytes(devices[0]))
    return fits or group


MEMORY_FRACTION = 0.5  # default chunk budget: this fraction of what the device can allocate


def _chunk_size(prep: Prepared, chunk_size: int | None, budget: float | None):
    """Runs per chunk, in whole blocks (`prep.block` runs on every device), as the engine dispatches
    them: the manifest then records the chunk size that numbers the chunks, whatever device
    count a resumed sweep runs on. Explicit: `chunk_size` rounded up to whole blocks.
    Automatic: `tuning.auto_chunk_size` (timing probe), then cut to the memory budget.
    Returns (size, facts for meta.json's timings)."""
    n = prep.n_runs
    n_dev = len(engine.run_devices())
    step = prep.block * n_dev
    if chunk_size is not None:
        return -(-min(chunk_size, n) // step) * step, {}
    from . import tuning

    size, facts = tuning.auto_chunk_size(prep, engine.plan_chunks(n, None, n_dev, prep.block),
                                          n_dev)
    fitted = _fit_budget(prep, size, n_dev, budget)
    return fitted, {**facts, "memory_budget_bytes": _budget(budget)}


def _budget(budget: float | None) -> int | None:
    if budget is None:
        free = memory.device_memory_bytes(engine.run_devices()[0])
        budget = None if free is None else MEMORY_FRACTION * free
    return None if budget is None else int(budget)


def _fit_budget(prep: Prepared, size: int, n_dev: int, budget: float | None) -> int:
    """Shrink the chunk (whole blocks) until the estimated memory of its computation and of its
    host tables fits `budget` bytes (default MEMORY_FRACTION of the device's free memory). One
    block per device always runs: a grid whose single block does not fit is refused by
    `_check_memory`."""
    step = prep.block * n_dev
    recorded = _n_recorded(prep.static)

    def need(runs: int) -> int:
        return _memory_need(prep, runs) + memory.host_results_bytes(runs, recorded)

    return max(step, memory.fit_runs(need, size, step, _budget(budget)))
