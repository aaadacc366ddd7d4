"""Summaries over hand-made runs tables, checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import trainscape as ts
from trainscape.analysis.divergence import divergence_table, label_counts, wilson_interval
from trainscape.errors import InputError
from trainscape.train.classify import LABELS

Z = 1.959963984540054
NA = pd.NA


def hand_runs() -> pd.DataFrame:
    """lr 0.1: 4 seeds converged, 1 catapult; lr 1.0: 1 catapult, 1 oscillating, 2 diverged."""
    rows = [
        # lr, seed, label, initial, max, peak, recover, spike step, back at the pre-spike low
        (0.1, 0, "converged", 1.0, 1.0, 0, NA, NA, NA),
        (0.1, 1, "converged", 2.0, 2.0, 0, NA, NA, NA),
        (0.1, 2, "converged", 1.0, 1.0, 0, NA, NA, NA),
        (0.1, 3, "converged", 1.0, 1.0, 0, NA, NA, NA),
        (0.1, 4, "catapult", 1.0, 3.0, 10, 14, 10, 16),
        (1.0, 0, "catapult", 1.0, 5.0, 3, 9, 3, 9),
        (1.0, 1, "oscillating", 2.0, 3.0, 2, 5, 2, 4),
        (1.0, 2, "diverged", 1.0, 900.0, 7, NA, 6, NA),
        (1.0, 3, "diverged", 1.0, 1.2, 40, NA, NA, NA),
    ]
    df = pd.DataFrame(rows, columns=["learning_rate", "seed", "label", "initial_loss",
                                     "max_loss", "peak_step", "recover_step", "spike_step",
                                     "spike_recover_step"])
    for c in ("recover_step", "spike_step", "spike_recover_step"):
        df[c] = df[c].astype("Int64")
    df["final_loss"] = 0.5
    return df


def textbook_wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    center = p + Z * Z / (2 * n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (center - half) / (1 + Z * Z / n), (center + half) / (1 + Z * Z / n)


def test_wilson_closed_forms_at_the_ends():
    # k = 0: [0, z^2 / (n + z^2)];  k = n: [n / (n + z^2), 1]
    lo, hi = wilson_interval([0, 5, 2], [5, 5, 4])
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert hi[0] == pytest.approx(Z * Z / (5 + Z * Z), rel=1e-12)
    assert lo[1] == pytest.approx(5 / (5 + Z * Z), rel=1e-12)
    # 2 of 4: symmetric about 1/2; the published value is [0.1500, 0.8500]
    assert lo[2] == pytest.approx(0.15004, abs=1e-5) and hi[2] == pytest.approx(1 - lo[2])
    lo, hi = wilson_interval([0], [0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_divergence_table_fractions_and_intervals():
    t = divergence_table(hand_runs()).set_index("learning_rate")
    assert list(t.index) == [0.1, 1.0]
    assert list(t["n"]) == [5, 4]
    expect = {0.1: {"converged": 4, "catapult": 1},
              1.0: {"catapult": 1, "oscillating": 1, "diverged": 2}}
    for lr, counts in expect.items():
        n = t.loc[lr, "n"]
        for lab in LABELS:
            k = counts.get(lab, 0)
            assert t.loc[lr, f"n_{lab}"] == k
            assert t.loc[lr, f"p_{lab}"] == pytest.approx(k / n)
            lo, hi = textbook_wilson(k, n)
            assert t.loc[lr, f"p_{lab}_lo"] == pytest.approx(max(lo, 0.0), abs=1e-12)
            assert t.loc[lr, f"p_{lab}_hi"] == pytest.approx(min(hi, 1.0), abs=1e-12)
    assert t.loc[1.0, "p_diverged"] == 0.5
    assert t.loc[1.0, "p_diverged_lo"] == pytest.approx(0.15004, abs=1e-5)


def test_divergence_table_medians_treat_diverged_runs_separately():
    t = divergence_table(hand_runs()).set_index("learning_rate")
    # lr 0.1: ratios 1, 1, 1, 1, 3 -> 1; lr 1.0: the two diverged runs (900, 1.2) are left out,
    # leaving catapult 5 and oscillating 1.5 -> 3.25
    assert t.loc[0.1, "median_peak_ratio"] == 1.0
    assert t.loc[1.0, "median_peak_ratio"] == 3.25
    # catapults only, from the top of the spike: lr 0.1: 16 - 10 = 6; lr 1.0: 9 - 3 = 6 (the
    # oscillating run's 2 is not used)
    assert t.loc[0.1, "median_recover_steps"] == 6.0
    assert t.loc[1.0, "median_recover_steps"] == 6.0
    assert list(t["n_recovered"]) == [1, 1]
    runs = hand_runs()
    runs.loc[runs["learning_rate"] == 1.0, "label"] = "diverged"
    runs.loc[runs["label"] == "catapult", "spike_recover_step"] = NA
    t = divergence_table(runs).set_index("learning_rate")
    assert np.isnan(t.loc[1.0, "median_peak_ratio"]) and t.loc[1.0, "p_diverged"] == 1.0
    assert np.isnan(t.loc[0.1, "median_recover_steps"]) and t.loc[0.1, "n_recovered"] == 0
    # results from before version 0.8.0 have no spike columns: unknown, not zero
    old = divergence_table(hand_runs().drop(columns=["spike_step", "spike_recover_step"]))
    assert old["n_recovered"].isna().all() and old["median_recover_steps"].isna().all()


def test_divergence_table_several_axes_and_results_object():
    runs = hand_runs()
    runs["init_scale"] = np.where(runs["seed"] % 2 == 0, 1.0, 2.0)
    t = divergence_table(runs, by=["learning_rate", "init_scale"])
    assert len(t) == 4 and t["n"].sum() == len(runs)
    row = t[(t["learning_rate"] == 1.0) & (t["init_scale"] == 1.0)].iloc[0]
    assert row["n"] == 2 and row["n_catapult"] == 1 and row["n_diverged"] == 1
    assert row["median_peak_ratio"] == 5.0  # the diverged run (seed 2) excluded
    res = ts.Results(runs=hand_runs(), curves=pd.DataFrame(),
                     config=ts.parse({"sweep": {"learning_rate": [0.1, 1.0],
                                                "seed": {"range": 5}}}))
    pd.testing.assert_frame_equal(divergence_table(res, by="learning_rate"),
                                  divergence_table(hand_runs()))


def test_label_counts_unchanged():
    c = label_counts(hand_runs())
    assert list(c.columns) == [*LABELS, "total"]
    assert c.loc[1.0, "diverged"] == 2 and c.loc[0.1, "total"] == 5


@pytest.mark.parametrize("by, match", [("momentum", "momentum"), ([], "at least one")])
def test_divergence_table_bad_input(by, match):
    with pytest.raises(InputError, match=match):
        divergence_table(hand_runs(), by=by)
    with pytest.raises(InputError, match="Results or a runs DataFrame"):
        divergence_table([1, 2, 3])


def test_recovery_is_timed_from_the_spike_not_the_peak():
    """`median_recover_steps` is the median of spike_recover_step - spike_step over the
    catapults that came back (peak_step, the top of the whole curve, is another step), and
    `n_recovered` counts them; oscillating and unrecovered runs are left out."""
    rows = [
        # label, peak, spike step, back at the pre-spike low
        ("catapult", 40, 10, 12),  # 2 steps
        ("catapult", 41, 20, 23),  # 3
        ("catapult", 42, 30, 40),  # 10
        ("catapult", 43, 5, NA),  # did not come back
        ("oscillating", 44, 1, 100),  # not a catapult
    ]
    runs = pd.DataFrame(rows, columns=["label", "peak_step", "spike_step",
                                       "spike_recover_step"])
    for c in ("peak_step", "spike_step", "spike_recover_step"):
        runs[c] = runs[c].astype("Int64")
    runs = runs.assign(learning_rate=1.0, initial_loss=1.0, max_loss=2.0)
    row = divergence_table(runs).iloc[0]
    assert row["n_recovered"] == 3
    assert row["median_recover_steps"] == 3.0  # median of 2, 3, 10 (mean 5)
