"""The experiment schema: sections, defaults, validation and one-line errors.

A config is a TOML file, a dict, or an :class:`Experiment`. Every key has a default, so a config
states only what differs. Validation happens here, before any data is loaded or anything is
compiled, and every problem is reported as a :class:`~trainscape.errors.ConfigError` whose message
names the key, what was given and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from . import registry

ACTIVATIONS = registry.ACTIVATIONS
INITS = registry.INITS
LOSSES = registry.LOSSES
OPTIMIZERS = tuple(registry.OPTIMIZERS)
DTYPES = registry.DTYPES
DATASETS = tuple(registry.DATASETS)
PARAMETERIZATIONS = registry.PARAMETERIZATIONS

# Axes a sweep may vary. Each is a traced scalar per run, so one compiled program serves every
# value. `learning_rate.K` (K = 0, 1, ...) sets the learning rate of top-level parameter entry K.
HPARAM_AXES = ("learning_rate", "init_scale", "momentum", "weight_decay", "b1", "b2", "eps",
               "decay", "l2", "grad_clip", "dropout", *registry.SCHEDULE_KEYS)
SCHEDULES = tuple(registry.SCHEDULES)
# Axes that change the compiled program's shapes or types: one program per value. `width` and
# `depth` make the built-in MLP's hidden layers [width] * depth (spec.schema.hidden_of).
STATIC_AXES = ("dtype", "batch_size", "width", "depth")
SHAPE_AXES = ("width", "depth")
INTEGER_AXES = ("seed", "batch_size", "width", "depth")
SWEEP_AXES = ("seed", *HPARAM_AXES, *STATIC_AXES)
# [lower, upper) bounds of each numeric axis (None: unbounded); learning rates are > 0
_BOUNDS = {"init_scale": (0, None), "momentum": (0, 1), "weight_decay": (0, None),
           "b1": (0, 1), "b2": (0, 1), "decay": (0, 1), "l2": (0, None), "grad_clip": (0, None),
           "dropout": (0, 1), "warmup_steps": (0, None), "end_factor": (0, None)}
_PER_ENTRY_LR = re.compile(r"^learning_rate\.(\d+)$")
MAX_AXIS_VALUES = 1_000_000  # one axis; checked before the values are built
MAX_RUNS = 10**9  # the whole grid
INT32_MAX = 2**31 - 1  # seeds (and batch sizes) are int32 in the engine


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Section):
    """`[data]`: a built-in dataset (`name`) or a file (`path` + `target`)."""

    name: str | None = None
    path: str | None = None
    target: str | None = None
    n_samples: int | None = None
    noise: float | None = None
    data_seed: int = 0
    standardize: bool = True
    n_features: int | None = None
    n_classes: int | None = None
    teacher_hidden: int | None = None
    n_outputs: int | None = None
    # the fraction of the rows held out (never trained on; io.holdout), 0: none
    holdout: float = 0.0

    @field_validator("holdout")
    @classmethod
    def _fraction(cls, v):
        if not 0 <= v < 1:
            raise ValueError(f"got {v!r}; must be in [0, 1) (the fraction of rows held out)")
        return v

    @field_validator("name")
    @classmethod
    def _known_name(cls, v):
        if v is not None and v not in DATASETS:
            raise ValueError(registry.allowed(v, DATASETS))
        return v


class ModelConfig(_Section):
    """`[model]`: the built-in MLP (ignored for layout when a custom `ts.Model` is passed)."""

    hidden: tuple[int, ...] = (128, 64)
    activation: Literal[ACTIVATIONS] = "tanh"  # type: ignore[valid-type]
    bias: bool = True
    init: Literal[INITS] = "normal"  # type: ignore[valid-type]
    init_scale: float = 1.0
    parameterization: Literal[PARAMETERIZATIONS] = "standard"  # type: ignore[valid-type]
    # muP: the hidden width at which it equals the standard parameterization (docs/mup.md)
    base_width: int | None = None
    dropout: float = 0.0

    @field_validator("base_width")
    @classmethod
    def _positive_base(cls, v):
        if v is not None and v <= 0:
            raise ValueError("must be a positive integer")
        return v

    @field_validator("hidden", mode="before")
    @classmethod
    def _list_to_tuple(cls, v):
        return tuple(v) if isinstance(v, list) else v

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v):
        for w in v:
            if w <= 0:
                raise ValueError("widths must be positive integers")
        return v


class LossConfig(_Section):
    """`[loss]`: `bce` (on logits), `cross_entropy` (softmax, integer labels) or `mse`."""

    name: Literal[LOSSES] = "bce"  # type: ignore[valid-type]


class OptimizerConfig(_Section):
    """`[optimizer]`: an optax optimizer; values here are used when the key is not swept."""

    name: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    decay: float = 0.9
    l2: float = 0.0
    grad_clip: float = 0.0  # 0: off
    # the learning rate of each update (nn.schedules), with `learning_rate` as its peak
    schedule: Literal[SCHEDULES] = "constant"  # type: ignore[valid-type]
    warmup_steps: int = 0
    end_factor: float = 0.0  # the final learning rate as a fraction of the peak


class TrainConfig(_Section):
    """`[train]`: the training loop."""

    steps: int = 200
    dtype: Literal[DTYPES] = "float32"  # type: ignore[valid-type]
    record_every: int = 1
    seed: int = 0
    batch_size: int | None = None
    # float32 matmuls at full float32 precision by default: on GPUs "default" means TF32
    # (10-bit mantissa), which moves divergence boundaries; CPUs compute float32 either way
    matmul_precision: Literal["highest", "high", "default"] = "highest"
    # stop computing a group of runs once all are frozen (same results; False: every step)
    early_exit: bool = True

    @field_validator("steps", "record_every", "batch_size")
    @classmethod
    def _positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError("must be a positive integer")
        # the training loop counts steps in int32 (and the step at `steps` is evaluated too)
        if v is not None and v >= INT32_MAX:
            raise ValueError(f"must be below {INT32_MAX:,} (steps are counted in int32)")
        return v

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v):
        # larger values would wrap: the engine holds seeds as int32
        if not 0 <= v <= INT32_MAX:
            raise ValueError(f"must be in [0, {INT32_MAX}] (seeds are int32)")
        return v


class MetricsConfig(_Section):
    """`[metrics]`: extra measurements. `accuracy` defaults to on for classification."""

    accuracy: bool | None = None
    sharpness: bool = False
    sharpness_every: int = 0
    sharpness_iters: int = 20
    sharpness_which: Literal["largest", "magnitude"] = "largest"

    @field_validator("sharpness_every")
    @classmethod
    def _non_negative(cls, v):
        if v < 0:
            raise ValueError("must be >= 0 (0: only at init and at the end)")
        if v > INT32_MAX:  # the loop compares it with int32 step counts
            raise ValueError(f"must be at most {INT32_MAX:,} (steps are counted in int32)")
        return v

    @field_validator("sharpness_iters")
    @classmethod
    def _iters(cls, v):
        if v < 2:
            raise ValueError("must be an integer >= 2")
        return v


class Experiment(_Section):
    """A validated, frozen experiment. `sweep` maps axis name -> tuple of values (expanded)."""

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    sweep: dict[str, tuple[float | int | str, ...]] = Field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able dict that `parse` turns back into an equal Experiment."""
        d = self.model_dump(mode="json")
        d["sweep"] = {k: list(v) for k, v in self.sweep.items()}
        if d["model"]["base_width"] is None:  # unset: the dict (and hash) of configs before it
            del d["model"]["base_width"]
        return d

    def config_hash(self) -> str:
        """Hash of the canonical config: two experiments with equal hashes run the same grid."""
        blob = json.dumps(self.to_dict(), sort_keys=True, allow_nan=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self.sweep)

    @property
    def n_runs(self) -> int:
        return int(np.prod([len(v) for v in self.sweep.values()], dtype=np.int64))


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "train": TrainConfig,
    "metrics": MetricsConfig,
}
_TOP_KEYS = ("name", *_SECTIONS, "sweep")


def load_toml(path: str | Path) -> dict:
    """Read a TOML config file into a dict; syntax errors name the file and line."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; give a .toml file")
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} is not a regular file (a pipe, socket or "
                          "device); give a .toml file")
    try:
        # utf-8-sig: a byte-order mark, as some Windows editors write, is not TOML
        raw = tomllib.loads(p.read_bytes().decode("utf-8-sig"))
    except OSError as e:  # unreadable (permissions), or a special file
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r}: TOML syntax error: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text: {e}") from None
    return _resolve_data_path(raw, p)


def _resolve_data_path(raw: dict, config_file: Path) -> dict:
    """A relative `[data] path` in a config file names a file next to the config file, not
    in the folder the command happens to run in; it is recorded as the absolute path read
    (so a stored config.toml runs from anywhere). A path given with --set stays relative to
    the current folder, as command-line paths are."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        path = Path(data["path"]).expanduser()
        if not path.is_absolute():
            data["path"] = os.path.normpath(config_file.absolute().parent / path)
    return raw


# ---------------------------------------------------------------- sweep axes


def axis_names_allowed() -> tuple[str, ...]:
    return (*SWEEP_AXES, "learning_rate.0", "learning_rate.1")


def _check_axis_name(name: str) -> None:
    if name in SWEEP_AXES or _PER_ENTRY_LR.match(name):
        return
    raise ConfigError(
        f"sweep: unknown axis {name!r}; allowed: {', '.join(SWEEP_AXES)}, learning_rate.K "
        f"(K = 0, 1, ...){registry.did_you_mean(name, axis_names_allowed())}"
    )


def _number(key: str, v, what="a number") -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{key}: expected {what}, got {v!r}")
    return float(v)


def _round_sig(values: np.ndarray) -> np.ndarray:
    # geomspace/linspace interiors carry float noise (0.010000000000000002); rounding to 12
    # significant digits makes grid points such as 0.01 and 1.0 exact, so users can select them.
    return np.array([float(f"{v:.12g}") for v in values], dtype=np.float64)


def expand_axis(name: str, spec) -> tuple:
    """Turn one sweep spec (list, {geomspace|linspace = [a, b], num = n} or {range = n | [a, b]})
    into a tuple of values."""
    key = f"sweep.{name}"
    if isinstance(spec, int | float | str) and not isinstance(spec, bool):
        spec = [spec]
    if name == "dtype":
        if not isinstance(spec, list | tuple) or not spec:
            raise ConfigError(f"{key}: expected a non-empty list such as [\"float32\", "
                              f"\"float64\"], got {spec!r}")
        for v in spec:
            if v not in DTYPES:
                raise ConfigError(f"{key}: {registry.allowed(v, DTYPES)}")
        vals = tuple(spec)
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{key}: duplicated values; each grid point must appear once")
        return vals
    if isinstance(spec, list | tuple):
        if len(spec) == 0:
            raise ConfigError(f"{key}: empty list; give at least one value")
        vals = [_number(f"{key}[{i}]", v) for i, v in enumerate(spec)]
        if name == "seed" or all(isinstance(v, int) for v in spec):
            vals = spec
    elif isinstance(spec, Mapping):
        forms = [k for k in ("geomspace", "linspace", "range") if k in spec]
        extra = set(spec) - {"geomspace", "linspace", "range", "num"}
        if extra or len(forms) != 1:
            raise ConfigError(
                f"{key}: got {dict(spec)!r}; allowed forms: a list, "
                "{geomspace = [start, stop], num = n}, {linspace = [start, stop], num = n}, "
                "{range = n} or {range = [start, stop]}"
            )
        form = forms[0]
        if form == "range":
            r = spec["range"]
            if isinstance(r, int) and not isinstance(r, bool):
                lo, hi = 0, r
            elif (
                isinstance(r, list | tuple)
                and len(r) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
            ):
                lo, hi = r
            else:
                raise ConfigError(f"{key}.range: expected an integer n or [start, stop], got {r!r}")
            if hi <= lo:
                raise ConfigError(f"{key}.range: empty range {r!r}; need stop > start")
            if hi - lo > MAX_AXIS_VALUES:
                raise ConfigError(f"{key}.range: {hi - lo} values; at most {MAX_AXIS_VALUES:,} "
                                  "per axis")
            vals = list(range(lo, hi))
        else:
            ab = spec[form]
            if not isinstance(ab, list | tuple) or len(ab) != 2:
                raise ConfigError(f"{key}.{form}: expected [start, stop], got {ab!r}")
            a = _number(f"{key}.{form}[0]", ab[0])
            b = _number(f"{key}.{form}[1]", ab[1])
            num = spec.get("num")
            if isinstance(num, bool) or not isinstance(num, int) or num < 1:
                raise ConfigError(f"{key}.num: expected a positive integer, got {num!r}")
            if num == 1 and a != b:  # numpy would silently keep only the start
                raise ConfigError(f"{key}.num: got 1, which would keep only {ab[0]!r} of "
                                  f"[{ab[0]!r}, {ab[1]!r}]; give num >= 2, or a list for one "
                                  "value")
            if num > MAX_AXIS_VALUES:
                raise ConfigError(f"{key}.num: got {num}; at most {MAX_AXIS_VALUES:,} per axis")
            if name in INTEGER_AXES:  # their points are floats: "got 4.0" said nothing of why
                raise ConfigError(f"{key}.{form}: {name} takes integers, and {form} gives "
                                  "floats; give a list such as [4, 8, 16] or {range = [a, b]}")
            if form == "geomspace":
                if not (a > 0 and b > 0) or not (math.isfinite(a) and math.isfinite(b)):
                    raise ConfigError(
                        f"{key}.geomspace: endpoints must be positive and finite, got {list(ab)}"
                    )
                vals = _round_sig(np.geomspace(a, b, num)).tolist()
            else:
                vals = _round_sig(np.linspace(a, b, num)).tolist()
    else:
        raise ConfigError(
            f"{key}: got {spec!r}; expected a list of values or a table such as "
            "{geomspace = [0.001, 10.0], num = 41}"
        )
    vals = tuple(vals)
    _check_axis_values(name, key, vals)
    return vals


def check_value(name: str, key: str, v) -> None:
    """The rules a value of axis/key `name` meets in a config, for a value given elsewhere
    (`key` names it in the one-line ConfigError)."""
    _check_axis_values(name, key, (v,))


def check_warmup(key: str, w, schedule: str, steps: int, steps_key: str = "[train] steps"
                 ) -> None:
    """A warmup must end by the last update; one followed by a decay must leave it a step."""
    decays = "end_factor" in registry.SCHEDULES[schedule]
    if w > steps or (decays and w >= steps):
        limit = f"< {steps_key} = {steps}" if decays else f"<= {steps_key} = {steps}"
        raise ConfigError(f"{key}: got {w!r}; schedule {schedule!r} needs warmup_steps {limit}")


def _check_axis_values(name: str, key: str, vals: tuple) -> None:
    if len(set(vals)) != len(vals):
        dup = sorted({v for v in vals if vals.count(v) > 1})
        raise ConfigError(f"{key}: duplicated values {dup}; each grid point must appear once")
    for v in vals:
        if name in INTEGER_AXES:
            lo = 0 if name == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= INT32_MAX:
                raise ConfigError(f"{key}: expected integers in [{lo}, {INT32_MAX}], got {v!r}")
            continue
        f = _number(key, v)
        if not math.isfinite(f):
            raise ConfigError(f"{key}: got {v!r}; values must be finite")
        if name == "learning_rate" and f <= 0:
            raise ConfigError(f"{key}: got {v!r}; learning rates must be positive")
        if name.startswith("learning_rate.") and f < 0:
            raise ConfigError(f"{key}: got {v!r}; learning rates must be >= 0")
        if name == "eps" and f <= 0:
            raise ConfigError(f"{key}: got {v!r}; eps must be positive")
        if name == "warmup_steps" and (isinstance(v, bool) or f != int(f)):
            raise ConfigError(f"{key}: got {v!r}; must be a whole number of steps >= 0")
        if name == "end_factor" and f > 1:
            raise ConfigError(f"{key}: got {v!r}; must be in [0, 1] (a fraction of the peak "
                              "learning rate)")
        lo, hi = _BOUNDS.get(name, (None, None))
        if (lo is not None and f < lo) or (hi is not None and f >= hi):
            allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
            raise ConfigError(f"{key}: got {v!r}; must be {allowed}")


# ---------------------------------------------------------------- parse


def parse(config: str | Path | Mapping | Experiment) -> Experiment:
    """Validate a config (TOML path, dict or Experiment) into a frozen :class:`Experiment`."""
    if isinstance(config, Experiment):
        return config
    if isinstance(config, str | Path):
        raw = load_toml(config)
    elif isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
    else:
        raise ConfigError(
            f"config: expected a TOML path, a dict or an Experiment, got {type(config).__name__}"
        )
    return _from_dict(raw)


def _from_dict(raw: dict) -> Experiment:
    for k in raw:
        if k not in _TOP_KEYS:
            raise ConfigError(
                f"unknown section or key {k!r}; allowed: {', '.join(_TOP_KEYS)}"
                f"{registry.did_you_mean(k, _TOP_KEYS)}"
            )
    if "name" in raw and not isinstance(raw["name"], str):
        raise ConfigError(f"name: expected a string, got {raw['name']!r}")
    sections = {}
    for sec, cls in _SECTIONS.items():
        body = raw.get(sec, {})
        if not isinstance(body, Mapping):
            raise ConfigError(f"[{sec}]: expected a table of keys, got {body!r}")
        for k in body:
            if k not in cls.model_fields:
                raise ConfigError(
                    f"[{sec}]: unknown key {k!r}; allowed: {', '.join(cls.model_fields)}"
                    f"{registry.did_you_mean(k, tuple(cls.model_fields))}"
                )
        try:
            sections[sec] = cls.model_validate(dict(body))
        except ValidationError as e:
            raise ConfigError(_one_line(sec, e, body)) from None
    _check_values(sections)
    _check_optimizer_keys(raw.get("optimizer", {}))

    sweep_raw = raw.get("sweep", {})
    if not isinstance(sweep_raw, Mapping):
        raise ConfigError(f"[sweep]: expected a table of axes, got {sweep_raw!r}")
    sweep = {}
    for name, spec in sweep_raw.items():
        # TOML reads `learning_rate.0 = [...]` as a nested table {"learning_rate": {"0": [...]}}
        if name == "learning_rate" and isinstance(spec, Mapping) and _is_per_entry(spec):
            for k, sub in spec.items():
                if k.isdigit():
                    _check_axis_name(f"learning_rate.{k}")
                    sweep[f"learning_rate.{k}"] = expand_axis(f"learning_rate.{k}", sub)
            rest = {k: v for k, v in spec.items() if not k.isdigit()}
            if rest:
                sweep["learning_rate"] = expand_axis("learning_rate", rest)
            continue
        _check_axis_name(name)
        sweep[name] = expand_axis(name, spec)
    n_runs = math.prod(len(v) for v in sweep.values())
    if n_runs > MAX_RUNS:
        raise ConfigError(f"[sweep]: {n_runs:,} runs; at most {MAX_RUNS:,} in one grid "
                          "(split it into several experiments)")
    for axis in sweep:
        why = (registry.unused_optimizer_key(sections["optimizer"].name, axis)
               or registry.unused_schedule_key(sections["optimizer"].schedule, axis))
        if why:
            raise ConfigError(f"sweep.{axis}: {why}")
    _check_warmup(sections, sweep)
    _check_in_run_dtype(sections, sweep)
    _check_shape(sections["model"], sweep)
    name = raw.get("name", "experiment")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise ConfigError(
            f"name: got {name!r}; use letters, digits, '-', '_' and '.' "
            "(it names the result folder)"
        )
    return Experiment(name=name, sweep=sweep, **sections)


def _check_warmup(s: dict, sweep: dict) -> None:
    opt = s["optimizer"]
    for key, w in (("[optimizer] warmup_steps", opt.warmup_steps),
                   *(("sweep.warmup_steps", v) for v in sweep.get("warmup_steps", ()))):
        check_warmup(key, w, opt.schedule, s["train"].steps)


def _check_shape(m: ModelConfig, sweep: dict) -> None:
    """A swept width or depth takes the other one from a uniform `[model] hidden`; muP needs
    the width it is the standard parameterization at."""
    swept = [a for a in SHAPE_AXES if a in sweep]
    if swept and len(swept) < 2 and (not m.hidden or len(set(m.hidden)) > 1):
        other = "depth" if swept[0] == "width" else "width"
        raise ConfigError(
            f"[model] hidden: got {list(m.hidden)}; sweeping {swept[0]} takes the {other} from "
            f"[model] hidden, which must then be non-empty and uniform such as [64, 64] (or "
            f"sweep {other} too)")
    if m.parameterization == "mup" and m.base_width is None:
        raise ConfigError("[model] base_width: parameterization 'mup' needs it (the hidden "
                          "width at which muP equals the standard parameterization), e.g. "
                          "base_width = 64")


def hidden_of(m: ModelConfig, width: int | None = None, depth: int | None = None
              ) -> tuple[int, ...]:
    """The built-in MLP's hidden layers for a swept `width` and/or `depth` (None: not swept):
    `[width] * depth`, the unswept one read from the uniform `[model] hidden`."""
    if width is None and depth is None:
        return tuple(m.hidden)
    width = int(m.hidden[0] if width is None else width)
    depth = int(len(m.hidden) if depth is None else depth)
    return (width,) * depth


def _is_per_entry(spec: Mapping) -> bool:
    return any(str(k).isdigit() for k in spec)


def _check_values(s: dict) -> None:
    opt, m = s["optimizer"], s["model"]
    for sec, obj, names in (("optimizer", opt, ("learning_rate", "momentum", "weight_decay",
                                                  "b1", "b2", "eps", "decay", "l2",
                                                  "grad_clip", *registry.SCHEDULE_KEYS)),
                            ("model", m, ("init_scale", "dropout"))):
        for k in names:
            v = getattr(obj, k)
            try:
                _check_axis_values(k, f"[{sec}] {k}", (v,))
            except ConfigError as e:
                raise ConfigError(str(e)) from None
    d = s["data"]
    if d.name is not None and d.path is not None:
        raise ConfigError(
            f"[data]: give either name (a built-in dataset) or path (a file), not both; got "
            f"name = {d.name!r} and path = {str(d.path)!r}"
        )


def _check_optimizer_keys(body: Mapping) -> None:
    """Refuse an [optimizer] key given for an optimizer that does not read it (it would be
    ignored, as `sweep.momentum` with `sgd` is refused). A section holding every key is a saved
    config (`Experiment.to_dict`, meta.json and the report's TOML write all of them, and result
    folders written before this check may hold an unused value): it is read as it is."""
    # (configs saved before schedules existed hold every other key)
    if set(OptimizerConfig.model_fields) - {"schedule", *registry.SCHEDULE_KEYS} <= set(body):
        return
    opt = body.get("name", OptimizerConfig.model_fields["name"].default)
    schedule = body.get("schedule", OptimizerConfig.model_fields["schedule"].default)
    for k in body:
        why = registry.unused_optimizer_key(opt, k) or registry.unused_schedule_key(schedule, k)
        if why:
            raise ConfigError(f"[optimizer] {k}: got {body[k]!r}; {why}")


def hparam_range(dtypes) -> tuple[str, str, float, float]:
    """(the lowest run dtype, the dtype hyperparameters are trained in, smallest normal and
    largest finite magnitude there) for runs of `dtypes`: float32 unless every run is
    float64 (bfloat16 runs keep hyperparameters in float32, see train/loop.py)."""
    low = next((d for d in dtypes if d != "float64"), "float64")
    hp_dtype = "float64" if low == "float64" else "float32"
    return low, hp_dtype, float(np.finfo(hp_dtype).tiny), float(np.finfo(hp_dtype).max)


def _check_in_run_dtype(s: dict, sweep: dict) -> None:
    """Hyperparameters are validated in float64 but trained in float32 unless every run is
    float64 (bfloat16 runs keep them in float32, see train/loop.py): a value that is inf, 0 or
    subnormal there (XLA flushes subnormals to 0) would train with another value than the
    runs table shows."""
    low, hp_dtype, tiny, big = hparam_range(sweep.get("dtype", (s["train"].dtype,)))
    given = [(f"[{sec}] {k}", getattr(s[sec], k)) for sec, k in (
        *(("optimizer", k) for k in ("learning_rate", "momentum", "weight_decay", "b1", "b2",
                                     "eps", "decay", "l2", "grad_clip")),
        ("model", "init_scale"), ("model", "dropout"))]
    given += [(f"sweep.{a}", v) for a, vals in sweep.items()
              if a in HPARAM_AXES or _PER_ENTRY_LR.match(a) for v in vals]
    for key, v in given:
        if v != 0 and not tiny <= abs(v) <= big:
            what = "inf" if abs(v) > big else "0 (or a subnormal, which XLA flushes to 0)"
            raise ConfigError(f"{key}: got {v!r}; {low} runs train it in {hp_dtype}, where it "
                              f"is {what}; nonzero values must be within [{tiny:.4g}, "
                              f"{big:.4g}] in magnitude")


def _one_line(section: str, err: ValidationError, body: Mapping) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    top = e["loc"][0] if e["loc"] else None
    given = body.get(top, None) if top is not None else None
    msg = e["msg"]
    if e["type"] == "literal_error":
        allowed = e.get("ctx", {}).get("expected", "")
        allowed = [a.strip(" '") for a in re.split(r",| or ", allowed) if a.strip(" '")]
        return f"[{section}] {loc}: {registry.allowed(given, allowed)}"
    msg = re.sub(r"^Value error, ", "", msg)
    if msg.startswith("got "):  # the validator's message already shows the value
        return f"[{section}] {loc}: {msg}"
    return f"[{section}] {loc}: got {given!r}; {msg[:1].lower()}{msg[1:]}"


# ---------------------------------------------------------------- overrides


# [data] keys only the built-in datasets read, and only files read (data.py has the details)
_BUILTIN_DATA_KEYS = ("n_samples", "noise", "n_features", "n_classes", "teacher_hidden",
                      "n_outputs")
_FILE_DATA_KEYS = ("target",)
_SET_FORM = "expected KEY=VALUE with a dotted key such as train.steps=100"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--set key=value` overrides (dotted keys, TOML values) to a raw config dict.

    Setting the data source replaces the base config's: `data.path` drops an inherited
    `data.name` (and the keys only built-in datasets read, such as `n_samples`), `data.name`
    drops an inherited `data.path` (and `target`). Setting both is refused by `parse`.
    An optimizer key set for an optimizer that does not read it is refused."""
    out = copy.deepcopy(raw)
    given: dict[str, str] = {}  # dotted key -> the override that set it
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: {_SET_FORM}")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key or not all(p.strip() for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: {_SET_FORM}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as e:
            if text.strip()[:1] in ("[", "{", '"', "'"):  # meant as a TOML value, but broken
                raise ConfigError(f"--set {key}: {text.strip()!r} is not a valid TOML value "
                                  f"({e})") from None
            value = text  # a bare word such as tanh
        parts = key.split(".")
        if parts[0] == "sweep" and len(parts) >= 2:
            axis, inner = parts[1], ".".join(parts[2:])
            if inner and axis in SWEEP_AXES and not _PER_ENTRY_LR.match(f"{axis}.{inner}"):
                # an axis's spec is one TOML value (sweep.seed.range would be an axis name)
                raise ConfigError(f"--set {item!r}: a sweep axis is set whole, e.g. "
                                  f"--set 'sweep.{axis}={{{inner} = {text.strip()}}}'")
            parts = ["sweep", ".".join(parts[1:])]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = value
        given[".".join(parts)] = item
    _switch_data_source(out, given)
    opt = out.get("optimizer")
    if isinstance(opt, Mapping):
        name = opt.get("name", OptimizerConfig.model_fields["name"].default)
        for k in registry.OPTIMIZER_SPECIFIC:
            why = f"optimizer.{k}" in given and registry.unused_optimizer_key(name, k)
            if why:
                raise ConfigError(f"--set {given[f'optimizer.{k}']}: {why}")
    return out


def _switch_data_source(out: dict, given: dict) -> None:
    """An overridden data source (name or path) replaces the one the base config names."""
    data = out.get("data")
    if not isinstance(data, dict):
        return
    set_name, set_path = "data.name" in given, "data.path" in given
    if set_name == set_path:  # neither, or both (which parse refuses)
        return
    old, dropped = ("name", _BUILTIN_DATA_KEYS) if set_path else ("path", _FILE_DATA_KEYS)
    if data.get(old) is None:
        return
    for k in (old, *dropped):
        if f"data.{k}" not in given:
            data.pop(k, None)


def hparam_defaults(exp: Experiment) -> dict[str, float]:
    """Value of every hyperparameter axis for runs that do not sweep it."""
    o = exp.optimizer
    return {
        "learning_rate": o.learning_rate, "init_scale": exp.model.init_scale,
        "momentum": o.momentum, "weight_decay": o.weight_decay, "b1": o.b1, "b2": o.b2,
        "eps": o.eps, "decay": o.decay, "l2": o.l2,
        # 0 means "no clipping"; an infinite threshold makes the traced clip a no-op
        "grad_clip": o.grad_clip or math.inf, "dropout": exp.model.dropout,
        "warmup_steps": o.warmup_steps, "end_factor": o.end_factor,
    }


def resolve_config(config, overrides: list[str] | None = None) -> Experiment:
    """Parse `config` (None = built-in default, TOML path, dict, Experiment) with overrides."""
    if config is None:
        from ..spec.defaults import SEED_QUESTION

        raw = SEED_QUESTION
    elif isinstance(config, Experiment):
        raw = config.to_dict()
    elif isinstance(config, str | Path):
        raw = load_toml(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raise ConfigError(
            f"config: expected a TOML path, a dict or an Experiment, got {type(config).__name__}"
        )
    if overrides:
        raw = apply_overrides(raw, overrides)
    return parse(raw)
