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
        sizes = (x.shape[1], *exp.model.hidden, d_out)
        self.model_name = "custom" if model is not None else "mlp " + "-".join(map(str, sizes))
        dtypes = exp.sweep.get("dtype", (exp.train.dtype,))
        models = {dt: model if model is not None else builtin_mlp(
            sizes, activation=exp.model.activation, init=exp.model.init, bias=exp.model.bias,
            dtype=dt, parameterization=exp.model.parameterization) for dt in dtypes}
        self.model = models[dtypes[0]]
        if init_params is not None:
            check_init_params(self.model, init_params)
        self.init_params = init_params
        check_entry_axes(exp, self.model)
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
            matmul_precision=exp.train.matmul_precision,
        )
        self.n_runs = exp.n_runs if table is None else len(table)
        # one compiled program per value of the static axes (dtype, batch size)
        self.groups = []
        for dt in dtypes:
            for bs in batch_sizes:
                if table is None:  # lazy: a huge grid's positions are never all built
                    pos = grid.group_positions(exp, {"dtype": dt, "batch_size": bs})
                else:
                    pos = np.arange(len(table), dtype=np.int64)
                    for axis, value in (("dtype", dt), ("batch_size", bs)):
                        if axis in table.columns:
                            pos = pos[table[axis].to_numpy()[pos] == value]
                st = Static(model=models[dt], dtype=dt, batch_size=bs, **common)
                self.groups.append((st, pos))
        self.static = self.groups[0][0]
        self.hp_names = ("seed", *cfg.HPARAM_AXES,
                         *[a for a in exp.sweep if a.startswith("learning_rate.")])
        self.hp_defaults = {"seed": exp.train.seed, **cfg.hparam_defaults(exp)}
        self._table = self._hp = None
        self.explicit_table = table is not None
        if table is not None:
            self._table = table.reset_index(drop=True)

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
