"""`ts.zoom`: a 2-D map refined only where the outcome changes, level by level.

Level 0 is the config's n x m grid; each further level halves the cell size and computes only
the points inside the boundary cells of the level before (corners with different outcomes) and
inside a margin of cells around them (`zoom_grid` holds the geometry). Every level is an
ordinary sweep (`runner.run` with an explicit run table): the same compiled programs, chunks,
store and resume. A zoom folder holds `zoom.json` (the settings and what each level did) and
one results folder per level, `level-0/`, `level-1/`, ...; `ts.load` reads it as a `Zoom`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from ..io import atomic, store
from ..spec import schema as cfg
from ..train.classify import LABELS
from . import runner
from . import zoom_grid as zg

ZOOM_FILE = "zoom.json"
FORMAT = 1
# Cells of margin around each boundary cell. A fractal boundary hides most of its fine
# structure inside cells whose coarse corners agree. Replayed on the dense 257 x 257 map of
# experiments/fractal_lr_lr.toml (33 x 33, 3 levels, outcome diverged), margins 0-4 found
# 39.3 / 90.4 / 97.9 / 99.6 / 100.0% of the dense boundary cells for 6.0 / 13.9 / 18.4 /
# 21.7 / 24.7% of the dense runs (docs/zoom.md): 2 is the smallest margin above 95% there
# and on the smoother full-range map (99.3% for 9.3%).
DEFAULT_MARGIN = 2
BY = zg.OUTCOMES
MEASURE_CAP = 1e6  # the paper's cap on normalized losses (and the value of a non-finite one)
MEASURE_TAIL = 20  # the last losses averaged to decide trainable (averages out oscillation)


# ---------------------------------------------------------------- the paper's measure


def convergence_measure(loss_RxT: np.ndarray, cap: float = MEASURE_CAP,
                        tail: int = MEASURE_TAIL) -> np.ndarray:
    """Sohl-Dickstein (2024)'s continuous outcome of a run, from its losses before each update
    (loss_RxT[:, t] at step t = 0 .. T-1): non-finite losses count as `cap`; v = loss / loss at
    step 0, capped at `cap`; trainable when the mean of the last `tail` v is below 1, scored
    -sum(v) (negative), else sum(1 / v) (positive). Its sign is the trainability boundary."""
    v = np.asarray(loss_RxT, dtype=np.float64)
    v = np.where(np.isfinite(v), v, cap)
    v = np.minimum(v / v[:, :1], cap)
    trainable = v[:, -tail:].mean(axis=1) < 1
    with np.errstate(divide="ignore"):
        return np.where(trainable, -v.sum(axis=1), (1.0 / v).sum(axis=1))


def measure_column(res) -> np.ndarray:
    """`convergence_measure` of every run of a Results (in run_id order), from its curves:
    the losses at steps 0 .. steps-1 (needs `[train] record_every = 1`)."""
    steps = res.config.train.steps
    if res.config.train.record_every != 1:
        raise ConfigError("convergence_measure: needs [train] record_every = 1 (the losses of "
                          f"every step), got {res.config.train.record_every}")
    c = res.read_curves(columns=["run_id", "step", "loss"])
    c = c[c["step"] < steps]
    loss = c["loss"].to_numpy().reshape(-1, steps)
    return convergence_measure(loss)


# ---------------------------------------------------------------- config


def _flat_sweep(sweep: Mapping) -> dict:
    """[sweep] with TOML's nested `learning_rate.K` tables flattened to "learning_rate.K"."""
    out = {}
    for name, spec in sweep.items():
        if name == "learning_rate" and isinstance(spec, Mapping) and \
                any(str(k).isdigit() for k in spec):
            for k, sub in spec.items():
                out[f"learning_rate.{k}" if str(k).isdigit() else name] = sub
        else:
            out[name] = spec
    return out


def zoom_spec(config, overrides: list[str] | None = None) -> tuple[dict, list[zg.Axis],
                                                                       cfg.Experiment]:
    """(raw config with a flat [sweep], the two zoomed axes, the Experiment every level runs).
    The two axes are read from the raw spec, not from the parsed grid, whose values are
    rounded to 12 significant digits; in the Experiment they stand as [start, stop]."""
    if isinstance(config, str | Path):
        raw = cfg.load_toml(config)
    elif isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
    else:
        raise InputError("zoom: config must be a TOML path or a dict (the raw {geomspace|"
                         "linspace = [a, b], num = n} specs are needed), got "
                         f"{type(config).__name__}")
    if overrides:
        raw = cfg.apply_overrides(raw, overrides)
    sweep = raw.get("sweep", {})
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"[sweep]: expected a table of axes, got {sweep!r}")
    sweep = _flat_sweep(sweep)
    raw["sweep"] = sweep
    axes = []
    for name, spec in sweep.items():
        if isinstance(spec, Mapping) and ("geomspace" in spec or "linspace" in spec):
            values = cfg.expand_axis(name, spec)  # every check of an ordinary axis
            if len(values) > 1:
                form = "geomspace" if "geomspace" in spec else "linspace"
                a, b = (float(v) for v in spec[form])
                axes.append(zg.Axis(name, form, a, b, int(spec["num"])))
                continue
        if len(cfg.expand_axis(name, spec)) != 1:
            raise ConfigError(f"sweep.{name}: a zoom sweeps exactly two axes given as "
                              "{geomspace|linspace = [a, b], num = n}; every other axis must "
                              f"have a single value, got {spec!r}")
    if len(axes) != 2:
        raise ConfigError(f"[sweep]: a zoom needs exactly two axes given as {{geomspace|"
                          f"linspace = [a, b], num = n}} with n >= 2, got {len(axes)} "
                          f"({', '.join(a.name for a in axes) or 'none'})")
    parsed = dict(raw)
    parsed["sweep"] = {k: ([a.start, a.stop] if (a := next(
        (x for x in axes if x.name == k), None)) else v) for k, v in sweep.items()}
    return raw, axes, cfg.parse(parsed)


def level_table(exp: cfg.Experiment, axes: list[zg.Axis], ij: np.ndarray, k: int,
                levels: int) -> pd.DataFrame:
    """The run table of one level: run_id, every sweep axis (the zoomed ones at their exact
    values), and the level and finest-lattice indices `i`, `j` of each point."""
    from ..spec.grid import axis_dtype

    n = len(ij)
    cols: dict = {"run_id": np.arange(n, dtype=np.int64)}
    for name, values in exp.sweep.items():
        hit = [a for a in axes if a.name == name]
        if hit:
            cols[name] = hit[0].values(ij[:, axes.index(hit[0])], levels)
        else:
            v = np.full(n, values[0], dtype=axis_dtype(name))
            cols[name] = v.astype(str) if name == "dtype" else v
    cols["level"] = np.full(n, k, dtype=np.int64)
    cols["i"], cols["j"] = ij[:, 0].astype(np.int64), ij[:, 1].astype(np.int64)
    return pd.DataFrame(cols)


def outcome_codes(runs: pd.DataFrame, by: str) -> np.ndarray:
    """The outcome each run is compared by: diverged or not, its label, or the sign of the
    paper's convergence measure (1: untrainable)."""
    if by == "diverged":
        return (runs["label"].astype(str).to_numpy() == "diverged").astype(np.int64)
    if by == "label":
        return pd.Categorical(runs["label"].astype(str), categories=LABELS).codes.astype(
            np.int64)
    return (runs["convergence_measure"].to_numpy() > 0).astype(np.int64)


# ---------------------------------------------------------------- the result


class Zoom:
    """A finished zoom. `runs`: every run of every level (the usual columns, the two axes,
    `level`, finest-lattice `i`, `j`; `run_id` numbers runs across levels, level 0 first);
    `boundary`: the finest level's cells whose corners' outcomes differ; `dimension`: the
    box-counting dimension of that boundary; `n_runs` and `dense_runs`."""

    def __init__(self, settings: dict, axes: list[zg.Axis], exp: cfg.Experiment,
                 levels: list, ref: zg.Refinement, path: Path | None):
        self.settings, self.axes, self.config = settings, axes, exp
        self.levels = levels  # one Results per level (None: a level with no new points)
        self.refinement = ref
        self.path = path
        self._runs = None

    @property
    def n_runs(self) -> int:
        return self.refinement.n_runs

    @property
    def dense_runs(self) -> int:
        return self.refinement.dense_runs

    @property
    def by(self) -> str:
        return self.settings["by"]

    @property
    def runs(self) -> pd.DataFrame:
        if self._runs is None:
            parts = [_with_measure(r) for r in self.levels if r is not None]
            runs = pd.concat(parts, ignore_index=True)
            runs["run_id"] = np.arange(len(runs), dtype=np.int64)
            self._runs = runs
        return self._runs

    @property
    def boundary(self) -> pd.DataFrame:
        cells = self.refinement.finest_boundary
        levels = self.settings["levels"]
        out = {"i": cells[:, 0], "j": cells[:, 1]}
        for d, ax in enumerate(self.axes):
            out[f"{ax.name}_low"] = ax.values(cells[:, d], levels)
            out[f"{ax.name}_high"] = ax.values(cells[:, d] + 1, levels)
        return pd.DataFrame(out)

    @property
    def dimension(self) -> dict:
        return self.refinement.dimension()

    def level_stats(self) -> pd.DataFrame:
        """Per level: cell size (finest cells), new runs, boundary cells, cells refined."""
        ref = self.refinement
        return pd.DataFrame({
            "level": np.arange(len(ref.points)),
            "cell_size": ref.box_sizes(),
            "runs": [len(p) for p in ref.points],
            "boundary_cells": [len(b) for b in ref.boundary],
            "cells_refined": [len(c) for c in ref.chosen],
        })

    def image(self) -> np.ndarray:
        """Outcome code at every finest-lattice point (uncomputed points: their enclosing
        computed cell's outcome); indexed [i, j]."""
        return self.refinement.image()

    def __repr__(self) -> str:
        d = self.dimension
        return (f"Zoom(name={self.config.name!r}, axes={[a.name for a in self.axes]}, "
                f"levels={self.settings['levels']}, runs={self.n_runs} of {self.dense_runs} "
                f"dense, boundary={len(self.refinement.finest_boundary)} cells, "
                f"dimension={d['estimate']:.3f})")


def _with_measure(res) -> pd.DataFrame:
    runs = res.runs.copy()
    if "convergence_measure" not in runs.columns and res.config.train.record_every == 1:
        runs["convergence_measure"] = measure_column(res)
    return runs


# ---------------------------------------------------------------- running


def _settings(raw: dict, axes: list[zg.Axis], levels: int, margin: int, by: str) -> dict:
    return {"format": FORMAT, "config": raw, "axes": [a.to_dict() for a in axes],
            "levels": levels, "margin": margin, "by": by}


def _check_args(levels, margin, by) -> None:
    for key, v, lo in (("levels", levels, 0), ("margin", margin, 0)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise InputError(f"{key}: expected an integer >= {lo}, got {v!r}")
    if levels > 20:
        raise InputError(f"levels: got {levels}; at most 20 (each level halves the cell)")
    if by not in BY:
        raise InputError(f"by: got {by!r}; allowed: {', '.join(BY)}")


def zoom(config, levels: int, *, margin: int = DEFAULT_MARGIN, by: str = "diverged",
         data=None, model=None, init_params=None, out="auto", resume: bool = False,
         chunk_size: int | None = None, progress: bool = True,
         overrides: list[str] | None = None) -> Zoom:
    """Map the two swept axes of `config` at the resolution of a dense grid of
    2**levels (n-1) + 1 points per axis, computing only around the boundary.

    config: a TOML path or dict whose [sweep] has exactly two axes given as
        {geomspace|linspace = [a, b], num = n}; any other axis has a single value.
    levels: refinement levels after level 0 (the n x m grid).
    margin: cells around every boundary cell refined with it (see DEFAULT_MARGIN).
    by: "diverged" (label diverged or not), "label" (the five labels) or "measure" (the sign
        of `convergence_measure`; needs [train] record_every = 1).
    data, model, init_params, chunk_size, progress: as for `ts.run`.
    out: the zoom folder ("auto": a new one under ./results/; None: in memory).
    resume: continue an interrupted zoom in `out` from its last finished chunk.
    """
    _check_args(levels, margin, by)
    runner.check_flag("progress", progress)  # before zoom.json is touched
    runner.check_flag("resume", resume)
    raw, axes, exp = zoom_spec(config, overrides)
    if by == "measure" and exp.train.record_every != 1:
        raise ConfigError("--by measure: needs [train] record_every = 1 (the measure reads "
                          f"every step's loss), got {exp.train.record_every}")
    settings = _settings(raw, axes, levels, margin, by)
    if resume and (out is None or out == "auto"):
        raise InputError("resume=True needs the folder of the interrupted zoom (out=DIR)")
    path, made = None, False
    if out is not None and out != "auto":
        atomic.path_arg(out, "out")
    if out == "auto":
        path, made = runner.default_out(f"{exp.name}-zoom"), True
    elif out is not None:
        path = Path(out)
        _open_folder(path, settings, resume)
    # what this call adds, removed again if level 0 refuses its input before writing a run
    new_folder = made or path is not None and not path.exists()
    new_state = path is not None and not (path / ZOOM_FILE).exists()
    if new_state:  # a resumed zoom's state stays as it is until a level is done
        _write_state(path, settings, [], False)
    results: list = []
    stats: list = []

    def evaluate(k: int, ij: np.ndarray) -> np.ndarray:
        if progress:
            print(f"zoom level {k}/{levels}: {len(ij)} runs", file=sys.stderr)
        if not len(ij):
            results.append(None)
            return np.zeros(0, np.int64)
        table = level_table(exp, axes, ij, k, levels)
        res = runner.run(exp.model_copy(update={"name": f"{exp.name}.level-{k}"}), data=data,
                      model=model, init_params=init_params, chunk_size=chunk_size,
                      out=None if path is None else path / f"level-{k}",
                      resume=resume, progress=progress, table=table)
        results.append(res)
        return _level_codes(res, ij, by, f"zoom level {k}: the stored runs are not this "
                                          "level's points")

    def on_level(k: int, ref: zg.Refinement) -> None:
        stats.append({"level": k, "runs": len(ref.points[k]),
                      "boundary_cells": len(ref.boundary[k]),
                      "cells_refined": len(ref.chosen[k])})
        if progress:
            print(f"zoom level {k}/{levels}: {len(ref.boundary[k])} boundary cells, "
                  f"{len(ref.chosen[k])} cells refined (margin {margin})", file=sys.stderr)
        if path is not None:
            _write_state(path, settings, stats, False)

    n, m = axes[0].num, axes[1].num
    try:
        ref = zg.zoom_plan(n, m, levels, margin, evaluate, on_level=on_level)
    except BaseException:
        if new_state and not (path / "level-0").exists():
            (path / ZOOM_FILE).unlink(missing_ok=True)
            if made:
                runner.drop_if_empty(path)  # and ./results/ if this made it
            elif new_folder and not any(path.iterdir()):
                path.rmdir()
        raise
    z = Zoom(settings, axes, exp, results, ref, path)
    if path is not None:
        _write_state(path, settings, stats, True, z)
    return z


def _level_codes(res, ij: np.ndarray, by: str, mismatch: str) -> np.ndarray:
    """Outcome codes of a level's runs, refused if they are not the points `ij` (in order)."""
    runs = _with_measure(res) if by == "measure" else res.runs
    if not (np.array_equal(runs["i"].to_numpy(), ij[:, 0]) and
            np.array_equal(runs["j"].to_numpy(), ij[:, 1])):
        raise InputError(mismatch)
    return outcome_codes(runs, by)


def _open_folder(path: Path, settings: dict, resume: bool) -> None:
    """Refuse a folder that holds something else, or another zoom (naming what differs)."""
    f = path / ZOOM_FILE
    if path.is_file():
        raise InputError(f"output folder {str(path)!r} is a file; choose a folder")
    if f.is_file():
        old = _read_state(path)
        if not resume:
            raise InputError(f"output folder {str(path)!r} already holds a zoom; pass "
                             "--resume (resume=True) to continue it, or choose another --out")
        # settings that change no result (store.RESULT_NEUTRAL) may differ
        new = store.without_neutral(json.loads(json.dumps(settings)))
        old = store.without_neutral(old)
        for key in ("axes", "levels", "margin", "by", "config"):
            if new[key] != old.get(key):
                made = ("of another config" if key == "config" else
                        f"made with {key} = {old.get(key)!r} (here {new[key]!r})")
                raise InputError(f"output folder {str(path)!r} holds a zoom {made}; resume "
                                 "it with the same settings, or choose another --out")
    elif path.is_dir() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} is not empty and holds no zoom; "
                         "choose a new or empty folder")


def _read_state(path: Path) -> dict:
    f = Path(path) / ZOOM_FILE
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"zoom file {str(f)!r} is damaged or unreadable ({e})") from None


def _write_state(path: Path, settings: dict, stats: list, finished: bool,
                 z: Zoom | None = None) -> None:
    from ..io.results import atomic_json

    path.mkdir(parents=True, exist_ok=True)
    state = {**settings, "level_stats": stats, "finished": finished,
             "updated": _dt.datetime.now().isoformat(timespec="seconds")}
    if z is not None:
        d = z.dimension
        state.update({"n_runs": z.n_runs, "dense_runs": z.dense_runs,
                      "boundary_cells": len(z.refinement.finest_boundary), "dimension": d})
    atomic_json(state, path / ZOOM_FILE)


def load(path: str | Path) -> Zoom:
    """Read a finished zoom folder (its levels' results, and the refinement replayed from
    their outcomes, checked against the points each level stored)."""
    from ..io.results import load as load_results

    path = Path(path)
    state = _read_state(path)
    if not state.get("finished"):
        raise InputError(f"zoom folder {str(path)!r} is not finished (an interrupted zoom? "
                         "finish it with trainscape zoom ... --resume)")
    raw, axes, exp = zoom_spec(state["config"])
    levels, by = state["levels"], state["by"]
    results: list = []

    def evaluate(k: int, ij: np.ndarray) -> np.ndarray:
        if not len(ij):
            results.append(None)
            return np.zeros(0, np.int64)
        res = load_results(path / f"level-{k}")
        results.append(res)
        return _level_codes(res, ij, by, f"zoom folder {str(path)!r}: level-{k} does not hold "
                                         "the points its refinement chose (damaged or edited)")

    ref = zg.zoom_plan(axes[0].num, axes[1].num, levels, state["margin"], evaluate)
    settings = {k: state[k] for k in ("format", "config", "axes", "levels", "margin", "by")}
    return Zoom(settings, axes, exp, results, ref, path)


def is_zoom(path: str | Path) -> bool:
    return (Path(path) / ZOOM_FILE).is_file()


# ---------------------------------------------------------------- figures


def outcome_names(by: str) -> tuple[str, ...]:
    """Names of the outcome codes."""
    if by == "label":
        return LABELS
    if by == "measure":
        return ("trainable (measure < 0)", "untrainable (measure > 0)")
    return ("not diverged", "diverged")
