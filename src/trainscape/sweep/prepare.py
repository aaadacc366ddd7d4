"""A sweep's inputs, validated before anything is compiled: experiment, data, model, programs."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from ..engine import execute, plan
from ..errors import ConfigError, DataError, InputError
from ..io import data as data_mod
from ..io import store
from ..nn import mup
from ..nn.models import Model, builtin_mlp
from ..spec import grid
from ..spec import schema as cfg
from ..train.loop import Static


def resolve_config(config, overrides: list[str] | None = None) -> cfg.Experiment:
    """Parse `config` (None = built-in default, TOML path, dict, Experiment) with overrides."""
    if config is None:
        from ..spec.defaults import SEED_QUESTION

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



class Prepared:
    """Everything a sweep needs, validated: experiment, arrays, model, static, hyperparams."""

    def __init__(self, exp: cfg.Experiment, data=None, model: Model | None = None,
                 init_params: Any = None, table: pd.DataFrame | None = None):
        """`table`: an explicit run table (run_id 0..n-1 and a column per sweep axis) to run
        instead of the grid of `exp.sweep` (see `runner.run`)."""
        self.exp = exp
        if table is not None:
            check_table(exp, table)
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
        mp = exp.model
        models = {(sh, dt): model if model is not None else builtin_mlp(
            sz, activation=mp.activation, init=mp.init, bias=mp.bias, dtype=dt,
            parameterization=mp.parameterization, base_width=mp.base_width)
            for sh, sz in self.shapes.items() for dt in dtypes}
        self.model = models[(next(iter(self.shapes)), dtypes[0])]
        if init_params is not None and len(self.shapes) > 1:
            raise InputError("init_params=: one set of weights cannot start networks of "
                             f"{len(self.shapes)} shapes (sweep.width/depth); sweep one shape")
        if init_params is not None:
            check_init_params(self.model, init_params)
        self.init_params = init_params
        for sh in self.shapes:  # a depth axis changes which entries exist
            check_entry_axes(exp, models[(sh, dtypes[0])])
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
            matmul_precision=exp.train.matmul_precision,
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
        self.hp_names = ("seed", *cfg.HPARAM_AXES,
                         *[a for a in exp.sweep if a.startswith("learning_rate.")])
        self.hp_defaults = {"seed": exp.train.seed, **cfg.hparam_defaults(exp)}
        self._table = self._hp = None
        self.explicit_table = table is not None
        if table is not None:
            self._table = table.reset_index(drop=True)

    @staticmethod
    def _positions(exp, table, values) -> np.ndarray:
        """Positions of the runs whose static axes have `values` ((axis, value), ...; an
        unswept axis matches every run)."""
        n = exp.n_runs if table is None else len(table)
        pos = np.arange(n, dtype=np.int64)
        for axis, value in values:
            if axis not in exp.sweep:
                continue
            if table is None:
                pos = np.intersect1d(pos, grid.axis_positions(exp, axis, value),
                                     assume_unique=True)
            elif axis in table.columns:
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

    def fingerprint(self) -> dict:
        arrays = [self.x, self.y]
        if self.init_params is not None:
            arrays += [np.asarray(a) for a in jax.tree.leaves(self.init_params)]
        fp = {"config": self.exp.to_dict(), "data": store.hash_arrays(*arrays),
              "model": self.model_name}
        if self.explicit_table:  # the runs are the table's, not the config's grid
            t = self._table
            fp["table"] = store.hash_arrays(*(t[c].to_numpy() for c in t.columns
                                              if t[c].dtype != object))
        return fp


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



def check_entry_axes(exp: cfg.Experiment, model: Model) -> None:
    from ..nn.optim import n_top_level

    n = n_top_level(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    for axis in exp.sweep:
        if axis.startswith("learning_rate.") and int(axis.split(".")[1]) >= n:
            raise ConfigError(f"sweep.{axis}: the model's parameters have {n} top-level "
                              f"entries (learning_rate.0 .. learning_rate.{n - 1})")
