"""`Results` (runs + curves + config), and its Parquet/JSON form on disk.

A results folder holds `runs.parquet` (one row per run), `curves.parquet` (long: run_id, step,
loss[, accuracy]), `meta.json` (the config, package versions, JAX backend and devices, timings)
and, while a sweep is in progress, `chunks/` with one finished chunk per file and a manifest
(see `store.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, InputError
from ..io import atomic
from ..spec import schema as cfg

RUNS_FILE = "runs.parquet"
CURVES_FILE = "curves.parquet"
META_FILE = "meta.json"


class Results:
    """A finished sweep. `runs`: one row per run; `curves`: long loss curves; `config`: the
    validated :class:`~trainscape.config.Experiment`; `meta`: versions, devices, timings.

    A Results read from a folder (``ts.load``, or ``ts.run`` with ``out``) reads `runs` and
    `curves` from disk the first time they are used, so a sweep of millions of runs can be
    summarized without holding its curves in memory: :meth:`read_runs` and
    :meth:`read_curves` read only the columns and runs asked for.
    """

    def __init__(self, runs: pd.DataFrame | None = None, curves: pd.DataFrame | None = None,
                 config: cfg.Experiment | None = None, meta: dict | None = None,
                 path: Path | None = None):
        if config is None:
            raise TypeError("Results needs a config")
        if (runs is None or curves is None) and path is None:
            raise TypeError("Results needs runs and curves, or the folder holding them")
        self._runs, self._curves = runs, curves
        self.config = config
        self.meta = {} if meta is None else meta
        self.path = None if path is None else Path(path)

    @property
    def runs(self) -> pd.DataFrame:
        if self._runs is None:
            self._runs = self.read_runs()
        return self._runs

    @runs.setter
    def runs(self, df: pd.DataFrame) -> None:
        self._runs = df

    @property
    def curves(self) -> pd.DataFrame:
        if self._curves is None:
            self._curves = self.read_curves()
        return self._curves

    @curves.setter
    def curves(self, df: pd.DataFrame) -> None:
        self._curves = df

    @property
    def runs_in_memory(self) -> bool:
        """Whether `runs` is held in memory (else it is read from `path` on demand)."""
        return self._runs is not None or self.path is None

    @property
    def curves_in_memory(self) -> bool:
        """Whether `curves` is held in memory (else it is read from `path` on demand)."""
        return self._curves is not None or self.path is None

    @property
    def axes(self) -> tuple[str, ...]:
        return self.config.axes

    @property
    def n_runs(self) -> int:
        if self._runs is not None or self.path is None:
            return len(self.runs)
        return pq.ParquetFile(self.path / RUNS_FILE).metadata.num_rows

    def _run_columns(self) -> list[str]:
        if self._runs is not None or self.path is None:
            return [str(c) for c in self.runs.columns]
        return pq.read_schema(self.path / RUNS_FILE).names

    def _check_columns(self, columns, what: str, single: bool = False) -> list[str]:
        """`columns` (a list of names of the runs table, or with `single` one name) as a
        list, refused in one line naming the nearest column for a typo."""
        from ..spec.registry import did_you_mean

        names = [columns] if single and isinstance(columns, str) else columns
        if isinstance(names, str) or not isinstance(names, list | tuple) or not names or \
                not all(isinstance(c, str) for c in names):
            form = "a column name or a list of them" if single else "a list of column names"
            raise InputError(f"{what}: expected {form}, got {columns!r}")
        have = self._run_columns()
        for c in names:
            if c not in have:
                raise InputError(f"{what}: the runs table has no column {c!r}"
                                 f"{did_you_mean(c, have)}")
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:  # pandas' own error came from deep inside a groupby
            raise InputError(f"{what}: {twice[0]!r} is named twice in {columns!r}")
        return list(names)

    def _check_by(self, by, what: str) -> list[str]:
        by = self._check_columns(by, what, single=True)
        if "label" in by:
            raise InputError(f"{what}: 'label' is what is counted; give the columns to count "
                             "it by (axes such as learning_rate)")
        return by

    def read_runs(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The runs table, or only `columns` of it (in run_id order), without loading the rest
        (`label` is then a categorical)."""
        if columns is not None:
            columns = self._check_columns(columns, "read_runs: columns")
        if self._runs is not None:
            return self._runs if columns is None else self._runs[list(columns)]
        want = None if columns is None else list(dict.fromkeys(["run_id", *columns]))
        # a column subset is for aggregating many runs: its labels come as a categorical
        # (one byte per run instead of a string)
        kw = {} if columns is None else {"read_dictionary": ["label"] if "label" in want else []}
        df = _read_parquet(self.path / RUNS_FILE, columns=want, **kw)
        df = _in_order(df, ["run_id"])
        return df if columns is None else df[list(columns)]

    def label_counts(self, by: str | list[str]) -> pd.DataFrame:
        """`ts.label_counts(self.runs, by)`, counted from the folder by :meth:`cell_counts`
        when the runs are not loaded."""
        from ..analysis.divergence import count_table, label_counts

        self._check_by(by, "label_counts: by")
        if self._runs is not None or self.path is None:
            return label_counts(self.runs, by)
        by = [by] if isinstance(by, str) else list(by)
        counts = self.cell_counts(by).set_index([*by, "label"])["runs"]
        return count_table(counts.sort_index())

    def cell_counts(self, by: str | list[str]) -> pd.DataFrame:
        """Runs per combination of the `by` columns and label: columns `[*by, "label", "runs"]`,
        one row per combination, in the order of each one's first run (so categorical axes
        keep their sweep order). Read from the folder one row group at a time: memory grows
        with the number of cells, not of runs. Draw it with
        `plots.label_heatmap(counts, x, y, weights="runs")`."""
        cols = [*self._check_by(by, "cell_counts: by"), "label"]
        if self._runs is not None or self.path is None:
            batches = iter([self.runs[cols]])
        else:
            pf = pq.ParquetFile(self.path / RUNS_FILE)
            batches = (b.to_pandas() for b in pf.iter_batches(batch_size=1 << 16, columns=cols))
        try:
            parts = [b.groupby(cols, sort=False, dropna=False, observed=True).size()
                     for b in batches]
        except (OSError, pa.ArrowInvalid) as e:
            raise _damaged(self.path / RUNS_FILE, e) from None
        if not parts:
            return pd.DataFrame({c: [] for c in [*cols, "runs"]})
        total = pd.concat(parts).groupby(level=list(range(len(cols))), sort=False,
                                         dropna=False).sum()
        if self._runs is None:  # the batches' freed memory, before the caller draws
            from ..io.memory import release_free_memory

            release_free_memory()
        return total.rename("runs").reset_index()

    def read_curves(self, run_ids=None, columns: list[str] | None = None) -> pd.DataFrame:
        """The long curves, or those of `run_ids` only, in (run_id, step) order."""
        if self._curves is not None:
            c = self._curves
            if run_ids is not None:
                c = c.loc[c["run_id"].isin(np.asarray(run_ids))]
            return c if columns is None else c[list(columns)]
        filters = None
        if run_ids is not None:
            filters = [("run_id", "in", [int(i) for i in np.asarray(run_ids).ravel()])]
        want = None if columns is None else list(dict.fromkeys(["run_id", "step", *columns]))
        df = _read_parquet(self.path / CURVES_FILE, columns=want, filters=filters)
        df = _in_order(df, ["run_id", "step"])
        return df if columns is None else df[list(columns)]

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        runs = self.read_runs(["label"])
        counts = runs["label"].value_counts().to_dict() if len(runs) else {}
        return (f"Results(name={self.config.name!r}, runs={len(runs)}, "
                f"axes={list(self.axes)}, labels={counts}{where})")

    def save(self, path: str | Path) -> Path:
        """Write the three files into `path` (atomically per file): a new or empty folder.
        A folder holding results (finished or interrupted) or anything else is refused, so
        finished results are never replaced."""
        from ..io.store import folder_state

        p = atomic.path_arg(path, "save: path")
        above = next((a for a in p.parents if a.exists()), None)  # the nearest that exists
        if above is not None and not above.is_dir():
            raise InputError(f"save: {str(above)!r} is a file, not a folder")
        state = folder_state(p)
        if state != "new" or p.is_dir() and any(p.iterdir()):
            what = {"file": "is a file", "finished": "holds finished results",
                    "interrupted": "holds an interrupted sweep"}.get(state, "is not empty")
            raise InputError(f"save: folder {str(p)!r} {what}; results are saved into a new "
                             "or empty folder (finished results are never replaced)")
        p.mkdir(parents=True, exist_ok=True)
        atomic_parquet(self.runs, p / RUNS_FILE)
        atomic_parquet(self.curves, p / CURVES_FILE)
        atomic_json({**self.meta, "config": self.config.to_dict()}, p / META_FILE)
        self.path = p
        return p


def _in_order(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`df` sorted by `keys` (files written chunk by chunk are in order unless static axes
    such as dtype split the grid into several programs, whose chunks come group by group)."""
    ids = df[keys[0]].to_numpy()
    if ids.size and not (np.diff(ids) >= 0).all():
        df = df.sort_values(keys, kind="stable")
    return df.reset_index(drop=True)


def _read_parquet(f: Path, columns: list[str] | None = None, **kw) -> pd.DataFrame:
    """pd.read_parquet, refusing in one line a file damaged after `load` checked its footer."""
    try:
        return pd.read_parquet(f, columns=columns, **kw)
    except (OSError, pa.ArrowInvalid) as e:
        if columns is not None and not set(columns) <= set(pq.read_schema(f).names):
            raise  # a column the file never had: the caller's mistake, not damage
        raise _damaged(f, e) from None


def atomic_parquet(df: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write `df` (a frame, or a table made from one) to `path` whole or not at all
    (`atomic.write_bytes`): serialized in memory first, so a failed write can say how many
    bytes it needed."""
    buf = pa.BufferOutputStream()
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, buf)
    atomic.write_bytes(buf.getvalue().to_pybytes(), path)


def atomic_json(obj: dict, path: Path) -> None:
    text = json.dumps(obj, indent=2, default=str, allow_nan=True)
    atomic.write_bytes(text.encode(), path)


def load(path: str | Path) -> Results:
    """Read a results folder written by `ts.run` / `trainscape run` (or, for a folder written
    by `ts.zoom`, the `trainscape.sweep.zoom.Zoom` it holds). A damaged or unreadable file is
    refused here, naming it, so no command trips over it later."""
    p = atomic.path_arg(path, "results folder")
    if (p / "zoom.json").is_file():
        from ..sweep.zoom import load as load_zoom  # a zoom folder: one results folder a level

        return load_zoom(p)
    missing = [f for f in (RUNS_FILE, CURVES_FILE, META_FILE) if not (p / f).is_file()]
    if p.is_file():
        raise InputError(f"results folder {str(p)!r} is a file; give the folder that holds "
                         f"{RUNS_FILE}")
    if not p.is_dir():
        raise InputError(f"results folder {str(p)!r} does not exist")
    if missing:
        from ..io.store import unfinished_note

        note = unfinished_note(p)
        if note is not None:
            raise InputError(f"results folder {str(p)!r} is not finished: {note}")
        hint = " (an interrupted sweep? finish it with --resume)" if (p / "chunks").is_dir() else ""
        raise InputError(f"results folder {str(p)!r} lacks {', '.join(missing)}{hint}")
    f = p / META_FILE
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
        raw = meta.pop("config")
        if not isinstance(raw, dict):  # cfg.parse would read a string as a TOML path
            raise TypeError(f"its config is {type(raw).__name__}, not a table")
        config = cfg.parse(raw)
    except ConfigError as e:
        raise InputError(f"{str(f)!r}: its config is invalid: {e}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise _damaged(f, e) from None
    for name in (RUNS_FILE, CURVES_FILE):
        f = p / name
        try:  # the footer only: cheap, and it catches a truncated or overwritten file
            names = pq.ParquetFile(f).schema_arrow.names
        except (OSError, pa.ArrowException) as e:
            raise _damaged(f, e) from None
        # (curves of no runs have no columns); the runs table's own columns: a file replaced
        # by another table (curves, say) once loaded and failed later inside pandas
        need = ["run_id", "label", *config.axes] if name == RUNS_FILE else \
            (["run_id", "step", "loss"] if names else [])
        lacking = [c for c in need if c not in names]
        if lacking:
            raise InputError(f"results file {str(f)!r} is damaged: it has no "
                             f"{', '.join(lacking)} column")
    return Results(config=config, meta=meta, path=p)


def _damaged(f: Path, e: Exception) -> InputError:
    why = e.strerror if isinstance(e, OSError) and e.strerror else \
        (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return InputError(f"results file {str(f)!r} is damaged or unreadable ({why})")


def as_results(obj, what: str = "results") -> Results:
    """`obj` as Results: itself, or the results folder it names (read lazily)."""
    if isinstance(obj, Results):
        return obj
    if isinstance(obj, str | Path):
        return load(obj)
    raise InputError(f"{what}: expected a Results or a results folder, got "
                     f"{type(obj).__name__}")
