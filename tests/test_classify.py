"""Labels on hand-made curves, one per label plus NaN and inf."""

import numpy as np
import pytest

from trainscape.train import classify
from trainscape.train.classify import BLOWUP_FACTOR, label_curve

T = np.arange(50)
CASES = {
    "converged": 1.0 * np.exp(-T / 10) + 0.05,
    "catapult": np.r_[1.0, 0.4, 2.5, 1.8, 1.0, 0.5, 0.3 * np.exp(-np.arange(44) / 10)],
    "oscillating": 0.5 + 0.5 * np.exp(-T / 10) + 0.05 * (T % 2),
    "stalled": 1.0 - 0.001 * T / 50,
    "diverged": 1.0 * 1.05 ** T,
}


@pytest.mark.parametrize("expected", list(CASES))
def test_hand_made_curves(expected):
    assert label_curve(CASES[expected]) == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_diverged_at_that_step(bad):
    c = CASES["converged"].copy()
    c[17] = bad
    s = classify.summarize_curve(c)
    assert s["diverged_step"] == 17
    assert label_curve(c) == "diverged"


def test_blowup_past_factor_is_diverged_even_if_it_comes_back():
    c = CASES["converged"].copy()
    c[5] = BLOWUP_FACTOR * c[0] * 1.01
    assert classify.summarize_curve(c)["diverged_step"] == 5
    assert label_curve(c) == "diverged"


def test_ending_above_initial_is_diverged_without_a_step():
    c = np.linspace(1.0, 1.3, 20)
    s = classify.summarize_curve(c)
    assert s["diverged_step"] == -1 and label_curve(c) == "diverged"


@pytest.mark.parametrize("curve", [[20.0, 18.0, 21.0], [20.0, 5.0, 15.0, 21.0],
                                   [20.0, 5.0, 15.0, 19.0], [20.0, 18.0, 19.0], [0.0, 0.0, 0.0]])
def test_ending_exactly_at_the_stall_band_edge_is_stalled(curve):
    # 21 / 20 - 1 is 0.05000000000000004 in floating point; the band's ends are inside it
    assert label_curve(curve) == "stalled"


def test_just_outside_the_stall_band():
    assert label_curve([20.0, 18.0, 21.001]) == "diverged"
    assert label_curve([20.0, 5.0, 15.0, 18.999]) == "catapult"
    assert label_curve([20.0, 18.0, 18.999]) == "oscillating"


def test_summaries_of_the_catapult_curve_by_hand():
    """CASES["catapult"] = 1.0, 0.4, 2.5, 1.8, 1.0, 0.5, then 0.3 e^(-k/10): the jump at step 2
    is 2.5 / 0.4; the loss is back at or below 0.4 (the low before the spike) at step 6 and
    strictly below the initial 1.0 at step 5 (step 4 only equals it)."""
    s = classify.summarize_curve(CASES["catapult"])
    assert s["spike_ratio"] == pytest.approx(6.25, rel=1e-15)
    assert (s["spike_step"], s["spike_recover_step"]) == (2, 6)
    assert (s["peak_step"], s["max_loss"], s["recover_step"]) == (2, 2.5, 5)
    assert s["rebound"] == pytest.approx(2.1, rel=1e-15)
    assert s["min_loss"] == pytest.approx(0.3 * np.exp(-4.3), rel=1e-15)


@pytest.mark.parametrize("curve, spike_step, back", [
    ([1.0, 0.2, 0.8, 0.5, 0.4], 2, -1),  # 4x, never back down to 0.2
    ([1.0, 0.5, 1.0, 0.4, 2.0, 0.3], 4, 5),  # the second spike (5x) is the larger: from it
    ([1.0, 0.5, 1.0, 0.5, 0.3], 2, 3),  # back at exactly the pre-spike low counts
    ([1.0, 0.9, 0.8, 0.7], -1, -1),  # no rise at all
    ([1.0, 0.5, 0.52, 0.4], -1, -1),  # a rise under 5% of the initial loss is no spike
])
def test_spike_step_and_its_recovery(curve, spike_step, back):
    s = classify.summarize_curve(curve)
    assert (s["spike_step"], s["spike_recover_step"]) == (spike_step, back)


def test_spike_above_initial_counts_as_catapult():
    c = np.r_[1.0, 2.5, 1.5, 0.5, 0.2, 0.1]
    assert label_curve(c) == "catapult"


def test_tiny_rebounds_near_zero_are_not_catapults():
    # a 3x relative jump at loss 1e-4 is below SPIKE_MIN_RISE x initial: no spike, and its
    # rise (2e-4) is under REBOUND_TOL x initial too: converged
    c = np.r_[1.0, 0.1, 1e-3, 1e-4, 3e-4, 1e-4, 5e-5]
    assert classify.summarize_curve(c)["spike_ratio"] == 1.0
    assert label_curve(c) == "converged"


def test_labels_vectorized_matches_scalar():
    summaries = [classify.summarize_curve(c) for c in CASES.values()]
    got = classify.labels(*(np.array([s[k] for s in summaries]) for k in
                            ("initial_loss", "final_loss", "spike_ratio", "rebound",
                             "diverged_step")))
    assert list(got) == list(CASES)


def test_edge_of_stability_relabels_converged_only():
    codes = np.array([0, 0, 1, 4])  # converged, converged, catapult, diverged
    sharp = np.array([1.0, 2.2, 5.0, 5.0])
    lr = np.array([1.0, 1.0, 1.0, 1.0])  # 2/lr = 2: run 1 ends at 1.1 x 2/lr
    got = classify.edge_of_stability(codes, sharp, lr)
    assert [classify.LABELS[c] for c in got] == ["converged", "oscillating", "catapult",
                                                 "diverged"]
