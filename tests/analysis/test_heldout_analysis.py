"""Held-out metrics by label, the catapult-versus-converged comparison and the warmup effect,
against values computed here by hand from the runs table."""

import math

import numpy as np
import pandas as pd
import pytest

import trainscape as ts
from trainscape.analysis import heldout
from trainscape.viz import report


def _order_stat_k(n, level=0.95):
    """Largest k (1-based) with P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2, by exact
    sums; 0 when none."""
    k = 0
    for j in range(n + 1):
        if sum(math.comb(n, i) for i in range(j + 1)) / 2**n <= (1 - level) / 2:
            k = j + 1
    return k


@pytest.mark.parametrize("n", [1, 5, 6, 8, 16, 31, 100])
def test_median_interval_is_the_order_statistic_interval(n):
    v = np.random.default_rng(n).standard_normal(n)
    med, lo, hi = heldout.median_interval(np.concatenate([v, [np.nan]]))
    s = np.sort(v)
    assert med == np.median(v)
    k = _order_stat_k(n)
    if k == 0:
        assert np.isnan(lo) and np.isnan(hi)
    else:
        assert (lo, hi) == (s[k - 1], s[n - k])


def _runs():
    """A runs table: at lr 0.5, 8 catapult runs whose held-out loss is below the 7 converged
    ones'; at lr 1, 3 catapult and 1 converged (too few to compare)."""
    rng = np.random.default_rng(0)
    rows = []
    for lr, lab, n, centre in ((0.5, "catapult", 8, 0.2), (0.5, "converged", 7, 0.3),
                               (1.0, "catapult", 3, 0.1), (1.0, "converged", 1, 0.4),
                               (2.0, "diverged", 6, 9.0)):
        for _ in range(n):
            rows.append({"learning_rate": lr, "label": lab, "initial_loss": 1.0,
                         "max_loss": 2.0, "final_test_loss": centre + 0.05 * rng.random(),
                         "final_test_accuracy": rng.random()})
    return pd.DataFrame(rows)


def test_divergence_table_and_comparison_match_hand_medians():
    runs = _runs()
    table = ts.divergence_table(runs).set_index("learning_rate")
    for (lr, lab), g in runs.groupby(["learning_rate", "label"]):
        assert table.loc[lr, f"test_loss_{lab}"] == np.median(g["final_test_loss"])
        assert table.loc[lr, f"test_accuracy_{lab}"] == np.median(g["final_test_accuracy"])
    assert np.isnan(table.loc[2.0, "test_loss_converged"])
    cv = heldout.catapult_vs_converged(runs)
    assert cv["learning_rate"].tolist() == [0.5]  # lr 1 has one converged run
    g = runs[runs.learning_rate == 0.5]
    cat = np.median(g.final_test_loss[g.label == "catapult"])
    conv = np.median(g.final_test_loss[g.label == "converged"])
    assert cv.loc[0, "difference"] == pytest.approx(cat - conv) and cat < conv


def test_report_states_the_comparison_with_the_numbers_of_the_runs_table():
    from types import SimpleNamespace

    from trainscape.viz import report_heldout

    runs = _runs()
    f = report._Facts()
    res = SimpleNamespace(meta={"data": {"holdout": {"n_test": 23}}})
    text = report_heldout.held_out_text(f, res, runs)
    g = runs[runs.learning_rate == 0.5]
    cat = g.final_test_loss[g.label == "catapult"]
    conv = g.final_test_loss[g.label == "converged"]
    assert f.values["heldout.cmp0.lr"] == 0.5
    assert f.values["heldout.cmp0.catapult"] == np.median(cat)
    assert f.values["heldout.cmp0.converged"] == np.median(conv)
    s_cat, s_conv = np.sort(cat), np.sort(conv)  # 8 and 7 values: k = 1, [min, max]
    assert (f.values["heldout.cmp0.catapult_lo"], f.values["heldout.cmp0.catapult_hi"]) == (
        s_cat[0], s_cat[-1])
    assert (f.values["heldout.cmp0.converged_lo"], f.values["heldout.cmp0.converged_hi"]) == (
        s_conv[0], s_conv[-1])
    assert "lower for the catapult" in text and f.values["heldout.n_rows"] == 23
    # one learning rate has 2 or more runs of each label (0.5: 8 and 7)
    assert "It is the only learning rate with at least 2 catapult and 2 converged runs." in text
    assert f.values["heldout.min_runs"] == 2 and "heldout.n_compared" not in f.values
    # the best catapult lr is 1.0 (3 runs near 0.1), the best converged one 0.5
    assert f.values["heldout.best_catapult.lr"] == 1.0
    assert f.values["heldout.best_converged"] == np.median(conv)
    # every number in the text is a recorded fact
    for k, v in f.values.items():
        assert report.fmt_number(v, 3 if k.endswith(".lr") else 2) in text, k


def test_report_says_when_labels_cannot_be_compared():
    x, y = ts.load_dataset({"name": "moons", "n_samples": 120})
    res = ts.run({"data": {"holdout": 0.25}, "model": {"hidden": [8]},
                  "train": {"steps": 30, "record_every": 10},
                  "sweep": {"learning_rate": [1.0, 12.0], "seed": {"range": 8}}},
                 data=(x, y), out=None, progress=False)
    text, facts = report.answer(res)
    assert heldout.catapult_vs_converged(res.runs).empty
    assert "cannot be compared at the same learning rate" in text
    assert facts["heldout.n_rows"] == 30


def test_warmup_effect_pairs_rows_on_the_other_axes():
    crit = pd.DataFrame({"warmup_steps": [0] * 6 + [10] * 6, "seed": list(range(6)) * 2,
                         "critical_lr": [1, 2, 3, 4, 5, 6, 3, 2, 9, 8, 5, np.nan],
                         "bracket_ok": [True] * 11 + [False]})
    eff = heldout.warmup_effect(crit).set_index("warmup_steps")
    ratios = np.array([3, 1, 3, 2, 1])  # seed 5 has no critical lr with warmup
    assert eff.loc[10, "ratio"] == np.median(ratios)
    assert eff.loc[10, "n"] == 5 and eff.loc[0, "n"] == 6
    assert eff.loc[0, "critical_lr"] == 3.5 and eff.loc[0, "ratio"] == 1
    # 6 values: the interval is [min, max] (k = 1); 5 values: none
    assert (eff.loc[0, "critical_lr_lo"], eff.loc[0, "critical_lr_hi"]) == (1, 6)
    assert np.isnan(eff.loc[10, "ratio_lo"])


def test_grid_critical_lr_is_the_smallest_diverged_rate():
    """Per combination of the other axes, the smallest learning rate labelled diverged (also
    when a larger one did not diverge), NaN where none did, one row per combination."""
    runs = pd.DataFrame({
        "warmup_steps": [0, 0, 0, 0, 10, 10, 10, 10],
        "learning_rate": [3.0, 1.0, 0.3, 0.1, 3.0, 1.0, 0.3, 0.1],
        "label": ["diverged", "catapult", "diverged", "converged",
                  "catapult", "catapult", "converged", "converged"]})
    crit = heldout.grid_critical_lr(runs, ["warmup_steps"])
    assert crit["warmup_steps"].tolist() == [0, 10]
    assert crit["critical_lr"].iloc[0] == 0.3 and np.isnan(crit["critical_lr"].iloc[1])


def test_critical_lr_accepts_a_warmup_axis():
    """Each row's bracket, checked by ts.run at its two ends with the row's warmup."""
    cfg = {"data": {"name": "moons", "n_samples": 32}, "model": {"hidden": [4]},
           "optimizer": {"schedule": "warmup_constant"}, "train": {"steps": 20},
           "sweep": {"warmup_steps": [0, 15], "seed": [0]}}
    crit = ts.critical_lr(cfg, low=0.1, high=1e3, rtol=0.05)
    assert crit["bracket_ok"].all() and len(crit) == 2
    for r in crit.itertuples():
        table = pd.DataFrame({"run_id": [0, 1], "warmup_steps": [r.warmup_steps] * 2,
                              "seed": [0, 0], "learning_rate": [r.lr_low, r.lr_high]})
        res = ts.run({**cfg, "sweep": {**cfg["sweep"], "learning_rate": [1.0]}}, table=table,
                     out=None, progress=False)
        assert res.runs.label.tolist()[1] == "diverged"
        assert res.runs.label.tolist()[0] != "diverged"


def test_the_tally_counts_only_learning_rates_whose_medians_compare():
    """A NaN median (every held-out loss of a label non-finite) compares with nothing: with
    differences [-0.1, NaN, NaN] the text said "lower ... at all 1" of 3."""
    import pandas as pd

    from trainscape.viz import report_heldout

    text = report_heldout._tally(report._Facts(),
                                 pd.DataFrame({"difference": [-0.1, np.nan, np.nan]}))
    assert text == ("Of the 3 learning rates with at least 2 catapult and 2 converged runs, only "
                    "one has a finite median held-out loss for both labels; there the "
                    "catapult's is lower than the converged runs'.")
    text = report_heldout._tally(report._Facts(),
                                 pd.DataFrame({"difference": [-0.1, 0.2, np.nan, -0.3]}))
    assert text.startswith("Of the 3 learning rates with at least 2 catapult and 2 converged "
                           "runs and a finite median held-out loss for both, ")
    assert text.endswith("lower than the converged runs' at 2 of them and higher at 1.")
