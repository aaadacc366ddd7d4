"""A finished chunk's trajectories as tidy tables: one runs row per run, long curves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine import execute
from ..train import classify
from ..train.loop import record_steps
from .prepare import Prepared

SUMMARY_COLUMNS = ("initial_loss", "final_loss", "min_loss", "max_loss", "peak_step",
                   "diverged_step", "recover_step", "spike_step", "spike_recover_step")



def chunk_tables(prep: Prepared, out: execute.ChunkOutput) -> tuple[pd.DataFrame, pd.DataFrame]:
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
