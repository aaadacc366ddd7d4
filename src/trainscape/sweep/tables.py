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
    steps = np.asarray(record_steps(prep.static.steps, prep.static.record_every), np.int64)
    if prep.static.test:
        cols.update(held_out_summaries(t, steps, prep.static.accuracy))
    runs = pd.DataFrame({**{k: rows[k] for k in rows.columns}, **cols})
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
    if prep.static.test:
        curve_cols["test_loss"] = t["test_loss_R"].reshape(-1).astype(np.float64)
        if prep.static.accuracy:
            curve_cols["test_accuracy"] = t["test_acc_R"].reshape(-1).astype(np.float64)
    return runs, pd.DataFrame(curve_cols, copy=False)


def held_out_summaries(t: dict, steps: np.ndarray, accuracy: bool) -> dict[str, np.ndarray]:
    """final_test_loss, min_test_loss (and final_test_accuracy): over the recorded steps at
    which the run was still training (every one up to the step it was frozen at, where the
    training loss is recorded too), the last and the smallest held-out values."""
    div = np.asarray(t["diverged_step"]).astype(np.int64)
    live_RxS = (div[:, None] < 0) | (steps[None, :] <= div[:, None])
    last = live_RxS.shape[1] - 1 - np.argmax(live_RxS[:, ::-1], axis=1)  # step 0 is always live
    loss_RxS = t["test_loss_R"].astype(np.float64)
    out = {"final_test_loss": np.take_along_axis(loss_RxS, last[:, None], 1)[:, 0],
           "min_test_loss": np.fmin.reduce(np.where(live_RxS, loss_RxS, np.nan), axis=1)}
    if accuracy:
        acc_RxS = t["test_acc_R"].astype(np.float64)
        out["final_test_accuracy"] = np.take_along_axis(acc_RxS, last[:, None], 1)[:, 0]
    return out
