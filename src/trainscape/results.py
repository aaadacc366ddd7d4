"""`Results` (runs + curves + config), and its Parquet/JSON form on disk.

A results folder holds `runs.parquet` (one row per run), `curves.parquet` (long: run_id, step,
loss[, accuracy]), `meta.json` (the config, package versions, JAX backend and devices, timings)
and, while a sweep is in progress, `chunks/` with one finished chunk per file and a manifest
(see `store.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import config as cfg
from .errors import InputError

RUNS_FILE = "runs.parquet"
CURVES_FILE = "curves.parquet"
META_FILE = "meta.json"


@dataclass
class Results:
    """A finished sweep. `runs`: one row per run; `curves`: long loss curves; `config`: the
    validated :class:`~trainscape.config.Experiment`; `meta`: versions, devices, timings."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    config: cfg.Experiment
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def axes(self) -> tuple[str, ...]:
        return self.config.axes

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        counts = self.runs["label"].value_counts().to_dict() if len(self.runs) else {}
        return (f"Results(name={self.config.name!r}, runs={len(self.runs)}, "
                f"axes={list(self.axes)}, labels={counts}{where})")

    def save(self, path: str | Path) -> Path:
        """Write the three files into `path` (atomically per file)."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        atomic_parquet(self.runs, p / RUNS_FILE)
        atomic_parquet(self.curves, p / CURVES_FILE)
        atomic_json({**self.meta, "config": self.config.to_dict()}, p / META_FILE)
        self.path = p
        return p


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    _fsync_replace(tmp, path)


def atomic_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, allow_nan=True))
    _fsync_replace(tmp, path)


def load(path: str | Path) -> Results:
    """Read a results folder written by `ts.run` / `trainscape run`."""
    p = Path(path)
    missing = [f for f in (RUNS_FILE, CURVES_FILE, META_FILE) if not (p / f).is_file()]
    if not p.is_dir():
        raise InputError(f"results folder {str(p)!r} does not exist")
    if missing:
        hint = " (an interrupted sweep? finish it with --resume)" if (p / "chunks").is_dir() else ""
        raise InputError(f"results folder {str(p)!r} lacks {', '.join(missing)}{hint}")
    meta = json.loads((p / META_FILE).read_text())
    config = cfg.parse(meta.pop("config"))
    runs = pd.read_parquet(p / RUNS_FILE)
    curves = pd.read_parquet(p / CURVES_FILE)
    return Results(runs=runs, curves=curves, config=config, meta=meta, path=p)
