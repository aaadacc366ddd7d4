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


# ------------------------------------------------------------------ every threshold's edge
# Each threshold gets a curve just below and just above its edge; the expected labels are
# written by hand from the module docstring's rule (diverged, stalled, catapult, oscillating,
# converged, in that order), not computed by `classify`. The curves start at loss 1 and are
# scaled by `SCALE` (every rule is relative to the initial loss), then padded to one length by
# repeating the last value (no rise, no new minimum: the summaries do not change), so that the
# engine's online fold over them compiles once.
EDGES = [
    # BLOWUP_FACTOR = 1e3: 999 x initial is a spike (999 / 0.5), 1001 x initial is a blow-up
    ("blowup below", [1.0, 0.5, 999.0, 0.5, 0.1], "catapult"),
    ("blowup above", [1.0, 0.5, 1001.0, 0.5, 0.1], "diverged"),
    # STALL_TOL = 0.05, upper end: 1.048 stays in the band, 1.052 left it
    ("stall top below", [1.0, 1.02, 1.048], "stalled"),
    ("stall top above", [1.0, 1.02, 1.052], "diverged"),
    # STALL_TOL, lower end: 0.952 is still in the band, 0.948 fell out of it (monotone)
    ("stall bottom inside", [1.0, 0.98, 0.952], "stalled"),
    ("stall bottom outside", [1.0, 0.98, 0.948], "converged"),
    # SPIKE_FACTOR = 2 after a fall: 0.4 -> 0.784 is 1.96x (a rebound of 0.384 > 0.02: an
    # oscillation), 0.4 -> 0.816 is 2.04x (a catapult); both rises are far above 0.05
    ("spike factor below", [1.0, 0.4, 0.784, 0.3, 0.2], "oscillating"),
    ("spike factor above", [1.0, 0.4, 0.816, 0.3, 0.2], "catapult"),
    # SPIKE_FACTOR above the initial loss: 1.96x and 2.04x the initial loss at step 1
    ("spike from start below", [1.0, 1.96, 0.5, 0.3], "oscillating"),
    ("spike from start above", [1.0, 2.04, 0.5, 0.3], "catapult"),
    # SPIKE_MIN_RISE = 0.05: 0.02 -> 0.065 (3.25x, a rise of 0.045 < 0.05: no spike, but a
    # rebound of 0.045 > 0.02) and 0.02 -> 0.075 (3.75x, a rise of 0.055: a spike)
    ("spike rise below", [1.0, 0.02, 0.065, 0.01], "oscillating"),
    ("spike rise above", [1.0, 0.02, 0.075, 0.01], "catapult"),
    # REBOUND_TOL = 0.02: rebounds of 0.019 and 0.021 above the running minimum 0.5 (1.04x
    # and 1.04x: no spike; rises under SPIKE_MIN_RISE anyway)
    ("rebound below", [1.0, 0.5, 0.519, 0.3], "converged"),
    ("rebound above", [1.0, 0.5, 0.521, 0.3], "oscillating"),
    # the catapult must end below the stall band: a 2.5x spike ending at 0.96 is stalled,
    # ending at 0.94 a catapult
    ("catapult end inside band", [1.0, 0.4, 1.0, 0.96], "stalled"),
    ("catapult end below band", [1.0, 0.4, 1.0, 0.94], "catapult"),
]
SCALES = [1.0, 2.5]
PAD = 6


def _edge_curve(points, scale):
    c = np.asarray(points, np.float64) * scale
    return np.r_[c, np.full(PAD - len(c), c[-1])]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name, points, expected", EDGES, ids=[e[0] for e in EDGES])
def test_threshold_edges_summarize_curve(name, points, expected, scale):
    assert label_curve(_edge_curve(points, scale)) == expected
    assert label_curve(np.asarray(points) * scale) == expected  # unpadded: the same


def _online_summaries(curves):
    """The engine's online fold (`loop._update_stats`, float32 as in a default run) over
    curves of one length, step by step in one jitted scan per curve (vmapped)."""
    import jax
    import jax.numpy as jnp

    from trainscape.train import loop

    @jax.jit
    @jax.vmap
    def fold(loss_T):
        def body(s, xs):
            loss, t = xs
            s, *_ = loop._update_stats(s, loss, jnp.zeros((), jnp.float32), t)
            return s, None
        steps = jnp.arange(loss_T.shape[0], dtype=jnp.int32)
        return jax.lax.scan(body, loop._init_stats(jnp.float32), (loss_T, steps))[0]

    return jax.device_get(fold(jnp.asarray(np.stack(curves), jnp.float32)))


@pytest.mark.parametrize("scale", SCALES)
def test_threshold_edges_engine_online_summaries(scale):
    """The engine's online fold (`loop._update_stats`, float32 as in a default run) over the
    same curves, step by step in one jitted scan, gives the hand-written labels too."""
    s = _online_summaries([_edge_curve(p, scale) for _, p, _ in EDGES])
    names = [e[0] for e in EDGES]
    got = classify.labels(s.initial, s.final, s.spike, s.rebound, s.diverged_step)
    assert dict(zip(names, got, strict=True)) == {e[0]: e[2] for e in EDGES}
    # the blow-up is recorded at the step it happened, and only there
    div = dict(zip(names, s.diverged_step.tolist(), strict=True))
    assert div.pop("blowup above") == 2 and set(div.values()) == {-1}


# Exactly on a threshold: the docstring's rules say "at least" for SPIKE_FACTOR and
# SPIKE_MIN_RISE and "more than" for REBOUND_TOL and BLOWUP_FACTOR. The rises below land on the
# threshold in binary floating point too (0.1 = 2 x 0.05 and 0.04 = 2 x 0.02 exactly, float32
# as float64; scaling by 4 is exact).
EXACT = [
    # 0.05 -> 0.1: a jump of exactly 2x by a rise of exactly 0.05 x initial: a catapult
    ("spike exactly 2x by exactly 5%", [1.0, 0.05, 0.1, 0.01], "catapult"),
    # 0.02 -> 0.04: a rebound of exactly 0.02 x initial (a rise under 0.05: no spike): noise
    ("rebound exactly 2%", [1.0, 0.02, 0.04, 0.01], "converged"),
    # exactly BLOWUP_FACTOR x initial is not above it: a 2000x spike, not a blow-up
    ("exactly the blow-up factor", [1.0, 0.5, 1000.0, 0.01], "catapult"),
]


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_exactly_at_the_spike_rebound_and_blowup_thresholds(scale):
    curves = [np.asarray(p) * scale for _, p, _ in EXACT]
    assert [label_curve(c) for c in curves] == [e[2] for e in EXACT]
    s = _online_summaries(curves)
    assert list(classify.labels(s.initial, s.final, s.spike, s.rebound, s.diverged_step)) == \
        [e[2] for e in EXACT]
    assert s.spike[0] == 2.0 and s.spike_step[0] == 2
    assert s.diverged_step.tolist() == [-1] * len(EXACT)


# Summaries of hand-made curves, written out by hand: ties (the first peak and the first spike
# count), the first recovery, a later smaller spike, a blow-up and a NaN (frozen there: the
# extremes leave that step out, the final loss is the value it blew up to)
HAND = [
    # (curve, peak_step, max, min, recover_step, spike, spike_step, spike_recover_step,
    #  diverged_step, final)
    (CASES["catapult"], 2, 2.5, 0.3 * np.exp(-4.3), 5, 6.25, 2, 6, -1, 0.3 * np.exp(-4.3)),
    ([1.0, 0.5, 1.0, 0.5, 1.0, 0.4], 0, 1.0, 0.4, 1, 2.0, 2, 3, -1, 0.4),
    ([1.0, 0.1, 0.5, 0.2, 0.4, 0.1], 0, 1.0, 0.1, 1, 5.0, 2, 5, -1, 0.1),
    ([1.0, 0.5, 2000.0, 0.1], 0, 1.0, 0.5, 1, 1.0, -1, -1, 2, 2000.0),
    ([1.0, 0.5, np.nan, 0.1], 0, 1.0, 0.5, 1, 1.0, -1, -1, 2, np.nan),
]
HAND_KEYS = ("peak_step", "max_loss", "min_loss", "recover_step", "spike_ratio", "spike_step",
             "spike_recover_step", "diverged_step", "final_loss")


@pytest.mark.parametrize("case", HAND, ids=range(len(HAND)))
def test_summaries_of_hand_made_curves(case):
    s = classify.summarize_curve(case[0])
    for key, want in zip(HAND_KEYS, case[1:], strict=True):
        assert s[key] == pytest.approx(want, rel=1e-12, nan_ok=True), key


def test_online_summaries_of_hand_made_curves():
    """The same curves through the engine's online fold (float32), padded to one length by
    repeating the last value (no new peak, spike or minimum)."""
    n = max(len(c[0]) for c in HAND)
    s = _online_summaries([np.r_[c[0], np.full(n - len(c[0]), c[0][-1])] for c in HAND])
    fields = (s.peak_step, s.max, s.min, s.recover_step, s.spike, s.spike_step,
              s.spike_recover, s.diverged_step, s.final)
    for i, case in enumerate(HAND):
        for key, got, want in zip(HAND_KEYS, fields, case[1:], strict=True):
            assert got[i] == pytest.approx(want, rel=1e-6, nan_ok=True), (i, key)


@pytest.mark.parametrize("factor, expected", [(1.04, "converged"), (1.05, "converged"),
                                              (1.06, "oscillating")])
def test_edge_of_stability_factor_edge(factor, expected):
    """EOS_FACTOR = 1.05: a converged plain-GD run ending at 1.04 x 2/lr stays converged, at
    1.06 x 2/lr it is oscillating (lr 0.5: 2/lr = 4). Exactly at 1.05 x 2/lr it is not above
    the limit (4.2 x 0.5 / 2 is 1.05 in floating point too: powers of two scale exactly)."""
    lr = np.array([0.5])
    got = classify.edge_of_stability(np.array([0]), np.array([factor * 4.0]), lr)
    assert classify.LABELS[got[0]] == expected


def test_extremes_leave_out_the_step_that_blew_up():
    """A run frozen at a non-finite or blown-up step: its min and max are those of the steps
    before, its final loss the value it blew up to (the engine's summaries have them so)."""
    c = CASES["converged"].copy()
    c[17] = np.nan
    s = classify.summarize_curve(c)
    assert (s["min_loss"], s["max_loss"]) == (c[16], c[0])
    assert np.isnan(s["final_loss"])
    c = CASES["converged"].copy()
    c[5] = BLOWUP_FACTOR * c[0] * 1.01
    s = classify.summarize_curve(c)
    assert (s["min_loss"], s["max_loss"], s["final_loss"]) == (c[4], c[0], c[5])


ABOVE_SINCE = [
    ([1.0, 0.9, 0.8], -1),  # ends below the initial loss: no final stretch above it
    ([1.0, 1.1, 0.9], -1),
    ([1.0, 0.9, 1.1, 1.2], 2),
    ([1.0, 1.2, 1.0, 1.2, 1.3], 3),  # back at exactly the initial loss ends a stretch
    ([1.0, 1.1, 1.2], 1),
]


@pytest.mark.parametrize("curve, above_since", ABOVE_SINCE)
def test_above_since_starts_the_final_stretch_above_the_initial_loss(curve, above_since):
    assert classify.summarize_curve(curve)["above_since"] == above_since


def test_above_since_engine_online_summaries():
    """The same curves through the engine's online fold, padded to one length by repeating
    the last value (which keeps a final stretch where it started)."""
    curves = [np.r_[c, np.full(5 - len(c), c[-1])] for c, _ in ABOVE_SINCE]
    s = _online_summaries(curves)
    assert s.above_since.tolist() == [a for _, a in ABOVE_SINCE]


def test_label_codes_diverged_on_any_bad_input():
    """Each alone makes a run diverged, whatever its other summaries: a non-finite initial or
    final loss, a blow-up step (step 0 included); -1 means it never blew up."""
    initial = [np.nan, np.inf, 1.0, 1.0, 1.0, 1.0]
    final = [0.5, 0.5, np.nan, 0.5, 0.5, 0.5]
    step = [-1, -1, -1, 0, 3, -1]
    got = classify.labels(initial, final, np.ones(6), np.zeros(6), step)
    assert list(got) == ["diverged"] * 5 + ["converged"]
