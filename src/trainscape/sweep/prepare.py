"""A sweep's inputs, validated before anything is compiled: experiment, data, model, programs."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..engine import execute, plan
from ..errors import ConfigError, DataError, InputError
from ..io import data as data_mod
from ..io import holdout as holdout_mod
from ..io import store
from ..nn import mup
from ..nn.models import Model, builtin_mlp
from ..spec import grid, registry
from ..spec import schema as cfg
from ..train.loop import Static


def _labels(exp: cfg.Experiment, data, source: str) -> str:
    """Where the labels come from, as the loss's error names it: the caller's array, the
    file's column or the built-in dataset (`source`)."""
    if data is not None:
        return "y of data=(x, y)"
    if exp.data.path is not None:
        target = exp.data.target or registry.DATA_DEFAULTS["target"]
        return f"column '{target}' of data file '{Path(exp.data.path).expanduser()}'"
    return f"dataset '{source}'"


def _features(exp: cfg.Experiment, data, source: str) -> str:
    """Where the features come from, as `_labels` names the labels."""
    if data is not None:
        return "x of data=(x, y)"
    if exp.data.path is not None:
        return f"the features of data file '{Path(exp.data.path).expanduser()}'"
    return f"the features of dataset '{source}'"


def _check_range(checks, dtypes) -> None:
    """A value the training dtype cannot hold would enter the network as inf: a one-line
    DataError naming the features or the targets instead. `checks`: (where, arrays, fix)."""
    for where, arrays, fix in checks:
        big = max((float(np.abs(a).max(initial=0.0)) for a in arrays
                   if a is not None and a.dtype.kind == "f"), default=0.0)
        for dt in dtypes:
            top = float(jnp.finfo(dt).max)
            if big > top:
                raise DataError(f"{where}: a value of magnitude {big:.3g}, beyond {dt}'s "
                                f"range (largest {top:.3g}); {fix}")


class Prepared:
    """Everything a sweep needs, validated: experiment, arrays, model, static, hyperparams."""

    def __init__(self, exp: cfg.Experiment, data=None, model: Model | None = None,
                 init_params: Any = None, table: pd.DataFrame | None = None,
                 test_data=None):
        """`table`: an explicit run table (run_id 0..n-1 and a column per sweep axis) to run
        instead of the grid of `exp.sweep` (see `runner.run`). `test_data`: the caller's
        held-out `(x, y)`, instead of `[data] holdout`."""
        self.exp = exp
        if table is not None:
            check_table(exp, table)
        holdout = exp.data.holdout
        if holdout and test_data is not None:
            raise InputError(f"test_data=: given with [data] holdout = {holdout!r}; give one "
                             "of them (holdout splits the data, test_data is your own split)")
        if data is not None:
            if not isinstance(data, tuple | list) or len(data) != 2:
                raise DataError("data=: expected a tuple (x, y) of arrays")
            x, y = data_mod.validate_arrays(data[0], data[1], "data=(x, y)")
            self.data_source = "caller arrays"
        else:
            # with held-out rows, standardized below with the training rows' statistics
            split = holdout or test_data is not None
            x, y = data_mod.load_dataset(_unstandardized(exp.data) if split else exp.data)
            self.data_source = exp.data.path or exp.data.name or "breast_cancer"
        self.task = data_mod.task_of(x, y)
        self.test_rows = None  # positions of the held-out rows in the dataset's rows
        self.x_test = self.y_test = None
        # [data] standardize means the same for the caller's arrays as for a named dataset (so
        # the recorded config says what was done to them); held-out rows are standardized with
        # the training rows' statistics
        standardize = exp.data.standardize and (data is not None or holdout or
                                                test_data is not None)
        if holdout:
            train, self.test_rows = holdout_mod.split_rows(y, holdout, exp.data.data_seed,
                                                           self.task)
            x, self.x_test, y, self.y_test = x[train], x[self.test_rows], y[train], \
                y[self.test_rows]
        elif test_data is not None:
            self.x_test, self.y_test = holdout_mod.check_test_data(test_data, x, y, self.task)
        if standardize and self.x_test is not None:
            x, self.x_test = holdout_mod.standardize_split(x, self.x_test)
        elif standardize:
            x = data_mod.standardize_features(x)
        self.x, self.y = x, y
        loss = exp.loss.name
        labels = _labels(exp, data, self.data_source)
        if loss == "bce" and self.task != "binary":
            raise ConfigError(
                f"[loss] name: 'bce' needs binary labels in {{0, 1}}, but {labels} makes the "
                f"task {self.task}; use 'cross_entropy' for classes or 'mse' for regression"
            )
        if loss == "cross_entropy" and not np.issubdtype(y.dtype, np.integer) and \
                self.task != "binary":
            raise ConfigError("[loss] name: 'cross_entropy' needs integer class labels, "
                              f"but {labels} makes the task {self.task}; use 'mse'")
        if loss == "cross_entropy":
            self.y = y.astype(np.int64)
            if self.y_test is not None:
                self.y_test = self.y_test.astype(np.int64)
            d_out = int(self.y.max()) + 1
        elif loss == "mse":
            d_out = 1 if y.ndim == 1 else y.shape[1]
        else:
            d_out = 1
        self.d_out = d_out
        self.custom_model = model is not None
        if model is not None and not isinstance(model, Model):
            raise InputError(f"model=: expected ts.Model(init=..., apply=...), got "
                             f"{type(model).__name__} (Flax and Equinox modules: "
                             "ts.Model.from_flax(module, x), ts.Model.from_equinox(module))")
        # one network shape per (width, depth) of the sweep (the config's hidden when neither
        # is swept); (shape, dtype) -> model
        shape_vals = {a: exp.sweep.get(a, (None,)) for a in cfg.SHAPE_AXES}
        self.shapes = {(w, dp): (x.shape[1], *cfg.hidden_of(exp.model, w, dp), d_out)
                       for w in shape_vals["width"] for dp in shape_vals["depth"]}
        sizes = next(iter(self.shapes.values()))
        self.model_name = "custom" if model is not None else "mlp " + "-".join(map(str, sizes))
        if model is not None and len(self.shapes) > 1:
            raise ConfigError("sweep.width/depth: shape the built-in MLP; a custom ts.Model "
                              "has its own shape (sweep it as separate models)")
        dtypes = exp.sweep.get("dtype", (exp.train.dtype,))
        if data is None and exp.data.path is None:
            fix_x = fix_y = "give a smaller [data] noise"
        else:
            fix_x = fix_y = "rescale them"
            if not exp.data.standardize:
                fix_x = "standardize them ([data] standardize = true) or rescale them"
        theirs = test_data is not None  # the caller's held-out arrays, named apart
        _check_range([(_features(exp, data, self.data_source),
                       (self.x, None if theirs else self.x_test), fix_x),
                      ("x of test_data=(x, y)", (self.x_test if theirs else None,), fix_x),
                      *([(labels, (self.y, None if theirs else self.y_test), fix_y),
                         ("y of test_data=(x, y)", (self.y_test if theirs else None,), fix_y)]
                        if loss == "mse" else [])], dtypes)
        mp = exp.model
        models = {(sh, dt): model if model is not None else builtin_mlp(
            sz, activation=mp.activation, init=mp.init, bias=mp.bias, dtype=dt,
            parameterization=mp.parameterization, base_width=mp.base_width)
            for sh, sz in self.shapes.items() for dt in dtypes}
        self.model = models[(next(iter(self.shapes)), dtypes[0])]
        if model is not None:
            # first the one-line refusal of an init or apply that fails, then init's dtypes
            check_output_shape(model, x.shape, self.y, loss, dtypes[0])
            check_param_dtypes("model=: init(key)",
                               jax.eval_shape(model.init, jax.random.PRNGKey(0)))
        if init_params is not None and len(self.shapes) > 1:
            raise InputError("init_params=: one set of weights cannot start networks of "
                             f"{len(self.shapes)} shapes (sweep.width/depth); sweep one shape")
        if init_params is not None:
            check_init_params(self.model, init_params)
        self.init_params = init_params
        # a depth axis changes which entries exist
        n_entries = max(len(check_entry_axes(exp, models[(sh, dtypes[0])]))
                        for sh in self.shapes)
        self.entry_names = check_entry_axes(exp, self.model)
        # the entries that train at `learning_rate` (in the deepest network): none when each
        # has its own `learning_rate.K` axis, and then the runs of a learning_rate axis's
        # values would differ in name only
        self.shared_lr_entries = [k for k in range(n_entries)
                                  if f"learning_rate.{k}" not in exp.sweep]
        if len(exp.sweep.get("learning_rate", ())) > 1 and not self.shared_lr_entries:
            raise ConfigError(f"sweep.learning_rate: {_own_rates(n_entries)} give every "
                              "parameter entry its own rate, so this axis trains none of them; "
                              "drop it, or one of those axes")
        accuracy = exp.metrics.accuracy
        if accuracy is None:
            accuracy = loss in ("bce", "cross_entropy")
        elif accuracy and loss == "mse":
            raise ConfigError("[metrics] accuracy: not defined for loss 'mse'")
        dropout = exp.model.dropout > 0 or "dropout" in exp.sweep
        if dropout and self.model.apply_dropout is None:
            raise ConfigError("[model] dropout: this model has no dropout; give ts.Model an "
                              "apply_dropout(params, x, key, rate)")
        m = exp.metrics
        sharp = m.sharpness or m.sharpness_every > 0
        if m.sharpness_every % exp.train.record_every:
            raise ConfigError(
                f"[metrics] sharpness_every: got {m.sharpness_every}; must be a multiple of "
                f"[train] record_every = {exp.train.record_every} (it is recorded in curves)")
        batch_sizes = exp.sweep.get("batch_size", (exp.train.batch_size,))
        for bs in batch_sizes:
            if bs is not None and bs > x.shape[0]:
                held = (f" to train on ({len(self.x_test)} more held out)" if
                        self.x_test is not None else "")
                raise ConfigError(f"[train] batch_size: got {bs}; the data has only "
                                  f"{x.shape[0]} samples{held}")
        common = dict(
            loss=loss, optimizer=exp.optimizer.name, steps=exp.train.steps,
            record_every=exp.train.record_every, accuracy=bool(accuracy),
            custom_init=init_params is not None, dropout=dropout,
            l2=exp.optimizer.l2 > 0 or "l2" in exp.sweep,
            grad_clip=exp.optimizer.grad_clip > 0 or "grad_clip" in exp.sweep,
            sharpness=sharp, sharpness_every=m.sharpness_every,
            sharpness_iters=m.sharpness_iters, sharpness_which=m.sharpness_which,
            matmul_precision=exp.train.matmul_precision, early_exit=exp.train.early_exit,
            schedule=exp.optimizer.schedule, test=self.x_test is not None,
        )
        self.n_runs = exp.n_runs if table is None else len(table)
        # one compiled program per value of the static axes (dtype, batch size, width, depth)
        self.groups = []
        self.group_sizes = []  # the built-in MLP's layer sizes of each group
        mup_opt = (exp.model.parameterization == "mup" and model is None)
        for (w, dp), sz in self.shapes.items():
            lr_scale = (mup.lr_scale(sz, exp.model.base_width, exp.optimizer.name,
                                     exp.model.bias) if mup_opt else None)
            for dt in dtypes:
                for bs in batch_sizes:
                    pos = self._positions(exp, table, (("dtype", dt), ("batch_size", bs),
                                                       ("width", w), ("depth", dp)))
                    st = Static(model=models[((w, dp), dt)], dtype=dt, batch_size=bs,
                                lr_scale=lr_scale, **common)
                    self.groups.append((st, pos))
                    self.group_sizes.append(sz)
        self.static = self.groups[0][0]
        # a schedule's keys reach the program only when the schedule reads them
        reads = registry.SCHEDULES[exp.optimizer.schedule]
        self.hp_names = ("seed", *[a for a in cfg.HPARAM_AXES
                                   if a not in registry.SCHEDULE_KEYS or a in reads],
                         *[a for a in exp.sweep if a.startswith("learning_rate.")])
        self.hp_defaults = {"seed": exp.train.seed, **cfg.hparam_defaults(exp)}
        self._table = self._hp = None
        self.explicit_table = table is not None
        if table is not None:
            self._table = table.reset_index(drop=True)

    @staticmethod
    def _positions(exp, table, values):
        """Positions of the runs whose static axes have `values` ((axis, value), ...; an
        unswept axis matches every run): lazy for a grid (`grid.Positions`, never an array of
        a huge grid's positions), an array for an explicit table."""
        if table is None:
            return grid.group_positions(exp, dict(values))
        pos = np.arange(len(table), dtype=np.int64)
        for axis, value in values:
            if axis in exp.sweep and axis in table.columns:
                pos = pos[table[axis].to_numpy()[pos] == value]
        return pos

    @property
    def table(self) -> pd.DataFrame:
        """The whole run table (built on first use; a sweep works on `rows` chunk by chunk)."""
        if self._table is None:
            self._table = grid.expand(self.exp)
        return self._table

    @property
    def hp(self) -> dict[str, np.ndarray]:
        """Every run's hyperparameters (see `execute.hparam_arrays`), built on first use."""
        if self._hp is None:
            self._hp = execute.hparam_arrays(self.table, self.hp_names, self.hp_defaults,
                                            np.float64)
        return self._hp

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        return self.table.iloc[positions].reset_index(drop=True) if self._table is not None \
            else grid.rows(self.exp, positions)

    def hparams(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The hyperparameters of the runs at `positions` only."""
        if self._hp is not None:
            return execute.take(self._hp, positions)
        return execute.take(execute.hparam_arrays(self.rows(positions), self.hp_names,
                                                self.hp_defaults, np.float64),
                           np.arange(len(positions)))

    @functools.cached_property
    def block(self) -> int:
        """Runs per device in each compiled block, the unit chunks are counted in: 32 on a CPU,
        more on a GPU or TPU for networks of little work per step (`plan.groups_block`)."""
        return plan.groups_block(self.groups, self.x)

    @property
    def test(self) -> tuple:
        """The held-out `(x, y)` for the engine (`train.loop.train_one`), () without."""
        return () if self.x_test is None else (self.x_test, self.y_test)

    def fingerprint(self) -> dict:
        arrays = [self.x, self.y, *self.test]
        if self.init_params is not None:
            arrays += [np.asarray(a) for a in jax.tree.leaves(self.init_params)]
        fp = {"config": self.exp.to_dict(), "data": store.hash_arrays(*arrays),
              "model": self.model_name}
        if self.explicit_table:  # the runs are the table's, not the config's grid
            t = self._table
            fp["table"] = store.hash_arrays(*(t[c].to_numpy() for c in t.columns
                                              if t[c].dtype != object))
        return fp


def _unstandardized(spec: cfg.DataConfig) -> dict:
    """The dataset keys of `spec` with standardization off."""
    keys = {k: v for k in data_mod.SPEC_KEYS if (v := getattr(spec, k)) is not None}
    return {**keys, "standardize": False}


def check_table(exp: cfg.Experiment, table: pd.DataFrame) -> None:
    """An explicit run table: run_id 0..n-1 (a run's position, as in a grid) and a column for
    every sweep axis; other columns are carried into the runs table."""
    if not isinstance(table, pd.DataFrame) or "run_id" not in table.columns or not len(table):
        raise InputError("table=: expected a non-empty DataFrame with a run_id column")
    if not np.array_equal(table["run_id"].to_numpy(), np.arange(len(table))):
        raise InputError("table=: run_id must be 0, 1, ..., n-1 in order")
    missing = [a for a in exp.sweep if a not in table.columns]
    if missing:
        raise InputError(f"table=: no column for the sweep axes {missing}")


def check_init_params(model: Model, init_params) -> None:
    want = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    w_leaves, w_def = jax.tree.flatten(want)
    g_leaves, g_def = jax.tree.flatten(init_params)
    if w_def != g_def:
        raise InputError(f"init_params=: structure {g_def} does not match the model's {w_def}")
    check_param_dtypes("init_params=:", init_params)
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


def check_param_dtypes(what: str, tree) -> None:
    """Parameters are real numbers: a string array would fail deep inside NumPy, and a complex
    one would lose its imaginary part (data= refuses complex arrays too)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        # (bool is neither; bfloat16 is floating for jax.numpy, not for NumPy)
        if not (jax.numpy.issubdtype(dtype, jax.numpy.floating)
                or jax.numpy.issubdtype(dtype, jax.numpy.integer)):
            raise InputError(f"{what} {jax.tree_util.keystr(path) or 'the params'} has dtype "
                             f"{np.dtype(dtype).name}; parameters must be real floating-point "
                             "(or integer) arrays")


def check_output_shape(model: Model, x_shape: tuple, y: np.ndarray, loss: str,
                       dtype: str) -> None:
    """The outputs a custom model gives for the whole data set, checked against the loss and
    the targets by shape alone (nothing is computed or compiled), so a mismatch is one line
    here instead of a reshape error inside the compiled program."""
    n = x_shape[0]
    if loss == "cross_entropy":
        k = int(y.max()) + 1
        ok = lambda s: len(s) == 2 and s[0] == n and s[1] >= k  # noqa: E731
        want = f"(n, K) = ({n}, K) with K >= {k} classes (logits)"
    elif y.ndim == 2:
        ok = lambda s: tuple(s) == y.shape  # noqa: E731
        want = f"{y.shape}, the shape of the targets"
    else:
        ok = lambda s: tuple(s) in ((n,), (n, 1))  # noqa: E731
        want = f"({n}, 1) or ({n},): one {'logit' if loss == 'bce' else 'output'} per sample"
    x = jax.ShapeDtypeStruct(tuple(x_shape), np.dtype(dtype))
    try:
        out = jax.eval_shape(lambda key, x: model.apply(model.init(key), x),
                             jax.random.PRNGKey(0), x)
    except Exception as e:  # noqa: BLE001 - whatever the model raises, said in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"model=: apply(init(key), x) fails for x of shape {tuple(x_shape)}: "
                         f"{type(e).__name__}: {first}") from e  # its traceback kept
    shape = getattr(out, "shape", None)
    if shape is None or not ok(shape):
        got = f"shape {tuple(shape)}" if shape is not None else type(out).__name__
        raise InputError(f"model=: apply(params, x) gives {got} for x of shape "
                         f"{tuple(x_shape)}; loss '{loss}' needs {want}")


def entry_names(model: Model) -> list[str]:
    """What `learning_rate.K` addresses, for people: entry K's name (`Model.layer_names`, else
    its dict key or list position, in `optim.top_level_map`'s order) and its arrays' shapes."""
    from ..nn.optim import top_level_map

    tree = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    keys = (sorted(tree) if isinstance(tree, Mapping) else
            [f"layer {k}" for k in range(len(tree))] if isinstance(tree, list | tuple)
            else ["params"])
    names = list(model.layer_names) if model.layer_names is not None else [str(k) for k in keys]
    if len(names) != len(keys):  # each name labels an entry in meta.json and the report
        raise InputError(f"model=: layer_names has {len(names)} names {tuple(names)}; the "
                         f"params have {len(keys)} top-level entries ({', '.join(map(str, keys))})")

    def describe(k, sub):
        parts = []
        for path, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
            where = ".".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", ""))))
                             for p in path)
            shape = "x".join(map(str, leaf.shape)) or "scalar"
            parts.append(f"{where} {shape}" if where else shape)
        return f"{names[k]} ({', '.join(parts)})"

    out = top_level_map(describe, tree)
    return list(out.values()) if isinstance(out, Mapping) else \
        list(out) if isinstance(out, list | tuple) else [out]


def _own_rates(n_entries: int) -> str:
    return ", ".join(f"learning_rate.{k}" for k in range(n_entries))


def check_entry_axes(exp: cfg.Experiment, model: Model) -> list[str]:
    """The entries `learning_rate.K` can address (`entry_names`); an axis past them is a
    config error naming them."""
    names = entry_names(model)
    n = len(names)
    for axis in exp.sweep:
        if axis.startswith("learning_rate.") and int(axis.split(".")[1]) >= n:
            listed = ", ".join(f"learning_rate.{k} = {name}" for k, name in enumerate(names))
            raise ConfigError(f"sweep.{axis}: the model's parameters have {n} top-level "
                              f"entries: {listed}")
    return names
