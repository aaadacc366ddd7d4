"""Critical learning rates against closed forms, and the bisection's batching contract.

Linear least squares is the closed form: with y = X w*, the project's MSE (mean squared error,
no 1/2) is L(w) = e^T (H / 2) e with e = w - w* and H = 2 X^T X / n, so gradient descent
multiplies the error's component along eigenvector v_i by (1 - lr lambda_i) every step and
    L_T(lr) = sum_i c_i (1 - lr lambda_i)^(2T),   c_i = lambda_i (v_i . e_0)^2 / 2.
Every |1 - lr lambda_i| <= 1 for lr <= 2 / lambda_max, so L_T <= L_0 and no such run is labelled
diverged. For lr = (2 / lambda)(1 + eps) the top term alone is c_1 (1 + 2 eps)^(2T), so every
run with eps >= eps_T = ((1.05 L_0 / c_1)^(1 / 2T) - 1) / 2 ends above 1.05 L_0: diverged. The
label boundary therefore lies in (2 / lambda, (2 / lambda)(1 + eps_T)], and eps_T shrinks like
log(1.05 L_0 / c_1) / (4 T); T = 2000 puts it at a few 1e-4 here.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from trainscape.analysis import critical
from trainscape.cli import commands
from trainscape.engine import execute, plan
from trainscape.errors import InputError

# these tests compute float64 references with JAX themselves
pytestmark = pytest.mark.usefixtures("x64")

N, D, STEPS, RTOL = 64, 5, 2000, 1e-3
STALL = 1.05  # classify: ending above 1.05 x the initial loss is diverged


def lsq_problem():
    rng = np.random.default_rng(7)
    x_nd = rng.normal(size=(N, D)) * np.linspace(0.5, 2.0, D)
    w_star = rng.normal(size=D)
    w0 = rng.normal(size=(D, 1))
    return x_nd, x_nd @ w_star, w_star, w0


X_ND, Y_N, W_STAR, W0 = lsq_problem()
HESS = 2.0 * X_ND.T @ X_ND / N
EIGVALS, EIGVECS = np.linalg.eigh(HESS)
LAM = EIGVALS[-1]


def lsq_config(scales) -> dict:
    # one static configuration for every test here, so its two programs compile once
    return {
        "data": {"standardize": False},  # the problem's own x, not rescaled
        "model": {"hidden": [], "bias": False},
        "loss": {"name": "mse"},
        "train": {"steps": STEPS, "dtype": "float64", "record_every": STEPS},
        "sweep": {"init_scale": list(scales)},
    }


def finite_step_margin(scale: float) -> float:
    """eps_T of the module docstring for the run starting at scale * W0."""
    e0 = scale * W0[:, 0] - W_STAR
    loss0 = 0.5 * e0 @ HESS @ e0
    c1 = 0.5 * LAM * (EIGVECS[:, -1] @ e0) ** 2
    return ((STALL * loss0 / c1) ** (1 / (2 * STEPS)) - 1) / 2


def lsq_critical(scales, **kw):
    return critical.critical_lr(lsq_config(scales), data=(X_ND, Y_N), init_params=[{"w": W0}],
                                low=0.01, high=10.0, rtol=RTOL, **kw)


@pytest.fixture(scope="module")
def lsq_table():
    return lsq_critical([0.5, 1.0, 2.0])


def test_sharpness_init_is_top_eigenvalue_of_2xtx_over_n(lsq_table):
    np.testing.assert_allclose(lsq_table["sharpness_init"], LAM, rtol=1e-6)
    np.testing.assert_allclose(lsq_table["predicted_lr"], 2 / LAM, rtol=1e-6)


def test_critical_lr_is_2_over_lambda(lsq_table):
    t = lsq_table
    assert t["bracket_ok"].all() and not t["non_monotone"].any()
    assert list(t["init_scale"]) == [0.5, 1.0, 2.0]
    margin = np.array([finite_step_margin(s) for s in t["init_scale"]])
    assert (margin < 5e-4).all()  # the problem is set up so steps suffice to see divergence
    # bisection invariant against the closed-form boundary: lr_low does not diverge, lr_high does
    assert (t["lr_high"] > 2 / LAM).all()
    assert (t["lr_low"] < 2 / LAM * (1 + margin)).all()
    assert (t["lr_high"] / t["lr_low"] - 1 <= RTOL).all()
    assert (t["critical_lr"] == t["lr_high"]).all()
    rel = t["critical_lr"] * LAM / 2 - 1
    assert (rel > 0).all() and (rel <= RTOL + margin).all()
    # every row took the same number of rounds: log2(log(1000) / log(1 + rtol)) -> 13
    assert (t["n_rounds"] == critical._count_rounds(0.01, 10.0, RTOL)).all()


@pytest.mark.cpu_only("sized in the CPU's blocks of 32 runs (chunk counts, dispatches)")
def test_one_batched_engine_call_per_round_and_chunk_size_independence(monkeypatch):
    calls = []
    real = execute.run_chunks

    def counting(groups, hp, *args, **kwargs):
        outs = list(real(groups, hp, *args, **kwargs))
        calls.append((len(hp["learning_rate"]), len(outs)))
        yield from outs

    monkeypatch.setattr(execute, "run_chunks", counting)
    scales = np.round(np.linspace(0.5, 2.0, 80), 6)  # more rows than one block group
    group = plan.BLOCK * len(plan.run_devices())
    small = lsq_critical(scales, chunk_size=group)
    small_calls = list(calls)
    calls.clear()
    big = lsq_critical(scales, chunk_size=4 * group)
    pd.testing.assert_frame_equal(small, big, check_exact=True)

    rounds = int(small["n_rounds"].max())
    for got, chunked in ((small_calls, True), (calls, False)):
        # bracket (both ends, with sharpness), one call per bisection round, the ladder
        assert len(got) == rounds + 2
        # (the ladder: LADDER_POINTS rungs above the crossing and as many below it; no
        # learning_rate axis is swept, and nothing below diverges, so no second pass)
        assert [n for n, _ in got] == ([160] + [80] * rounds + [80 * 2 * critical.LADDER_POINTS])
        assert all((c > 1) == chunked for _, c in got[1:-1])
    assert small["bracket_ok"].all()
    np.testing.assert_array_less(2 / LAM, small["critical_lr"])


# --------------------------------------------------------------- bisection logic, no training


def fake_boundaries(monkeypatch, rule, sharp=4.0):
    """Replace the engine round by `rule(seed, lr) -> diverged`; record each round's size."""
    sizes = []

    def fake(prep, groups, group_of_row, row_K, lr_K, chunk_size):
        seeds = prep.table["seed"].to_numpy()[row_K]
        sizes.append(len(row_K))
        div = np.array([rule(int(s), float(lr)) for s, lr in zip(seeds, lr_K, strict=True)])
        return div, np.full(len(row_K), sharp)

    monkeypatch.setattr(critical, "_diverges", fake)
    return sizes


def rule(seed: int, lr: float) -> bool:
    if seed == 0:  # monotone: diverges from 0.37 up
        return lr >= 0.37
    if seed == 1:  # a divergent band, then trains again until 5: non-monotone
        return 1.0 <= lr < 2.0 or lr >= 5.0
    if seed == 2:  # diverges even at the low end
        return True
    return False  # seed 3: never diverges, not even at the high end


SMALL = {"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [4]},
         "train": {"steps": 5},
         "sweep": {"learning_rate": {"geomspace": [0.01, 100.0], "num": 5},
                   "seed": {"range": 4}}}


def test_bisection_brackets_flags_and_default_bracket(monkeypatch):
    sizes = fake_boundaries(monkeypatch, rule)
    t = critical.critical_lr(SMALL, rtol=1e-4)
    assert list(t.columns) == ["seed", *critical.RESULT_COLUMNS]
    assert t.attrs["bracket"] == (0.01, 100.0)  # from the swept learning rates
    ok = t.set_index("seed")
    assert 0.37 <= ok.loc[0, "critical_lr"] <= 0.37 * (1 + 1e-4)
    assert ok.loc[0, "lr_low"] < 0.37 and not ok.loc[0, "non_monotone"]
    assert 1.0 <= ok.loc[1, "critical_lr"] <= 1.0001 and ok.loc[1, "non_monotone"]
    for seed in (2, 3):
        assert not ok.loc[seed, "bracket_ok"] and np.isnan(ok.loc[seed, "critical_lr"])
        assert ok.loc[seed, "n_rounds"] == 0
    assert (ok["predicted_lr"] == 0.5).all()
    rounds = int(ok["n_rounds"].max())
    # one call for both ends of all rows, one per round over the open rows, one ladder
    # the ladder: LADDER_POINTS rungs on each side of both crossings, plus the swept
    # learning rates there (0.1 below and 1, 10 above 0.37; 0.1 below and 10 above 1)
    assert sizes == [8] + [2] * rounds + [4 * critical.LADDER_POINTS + 5]


def island_rule(seed: int, lr: float) -> bool:
    if seed == 0:  # an island on the ladder below the first crossing (10)
        return 0.09 <= lr <= 0.12 or lr >= 10.0
    if seed == 1:  # an island only the swept grid (0.03) hits: no ladder rung lies in it
        return 0.0295 <= lr <= 0.0305 or lr >= 10.0
    return lr >= 0.37  # monotone


def test_divergent_islands_below_the_crossing_move_the_search_down(monkeypatch):
    # bisection of [0.01, 100] first lands on 1 (trains), then finds the crossing at 10
    fake_boundaries(monkeypatch, island_rule)
    cfg = {**SMALL, "sweep": {"learning_rate": [0.01, 0.03, 100.0], "seed": [0, 1, 2]}}
    t = critical.critical_lr(cfg, rtol=1e-4).set_index("seed")
    assert 0.09 <= t.loc[0, "critical_lr"] <= 0.09 * (1 + 1e-4)
    assert 0.0295 <= t.loc[1, "critical_lr"] <= 0.0295 * (1 + 1e-4)
    assert 0.37 <= t.loc[2, "critical_lr"] <= 0.37 * (1 + 1e-4)
    assert list(t["non_monotone"]) == [True, True, False]
    assert (t["lr_high"] / t["lr_low"] - 1 <= 1e-4).all() and t["bracket_ok"].all()
    # no learning rate the rule calls divergent lies on the ladder below the answer
    for seed, crit in t["critical_lr"].items():
        below = critical._rungs(np.array([0.01]), crit, np.array([0.03]))[0]
        assert not any(island_rule(seed, lr) for lr in below[np.isfinite(below)])


def test_default_bracket_without_swept_learning_rate(monkeypatch):
    fake_boundaries(monkeypatch, lambda seed, lr: lr > 3.0)
    cfg = {**SMALL, "sweep": {"seed": [0]}}
    t = critical.critical_lr(cfg)
    assert t.attrs["bracket"] == critical.DEFAULT_BRACKET
    assert 3.0 < t["critical_lr"][0] <= 3.0 * (1 + 1e-3) and t["bracket_ok"][0]


@pytest.mark.parametrize("kw, match", [
    ({"rtol": 0}, "rtol"),
    ({"rtol": float("nan")}, "rtol"),
    ({"rtol": 1e-13}, "rtol"),
    ({"low": 1.0, "high": 0.5}, "low < high"),
    ({"low": -1.0}, "low"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"high": 1e300}, "float32"),  # inf where float32 runs train the learning rate
    ({"low": 1e-320}, "float32"),
])
def test_bad_arguments_are_one_line_input_errors(monkeypatch, kw, match):
    sizes = fake_boundaries(monkeypatch, rule)
    with pytest.raises(InputError, match=match) as e:
        critical.critical_lr(SMALL, **kw)
    assert "\n" not in str(e.value) and sizes == []


def test_a_grid_of_per_entry_rates_for_every_entry_is_refused(monkeypatch):
    """With learning_rate.0 and learning_rate.1 swept, the 2-layer MLP has no entry left at
    `learning_rate`: every search ran without effect and each row read "widen the
    bracket". One entry left at `learning_rate` is searched as before."""
    sizes = fake_boundaries(monkeypatch, rule)
    both = {**SMALL, "sweep": {"learning_rate.0": [0.1, 1.0], "learning_rate.1": [0.1],
                               "seed": [0]}}
    with pytest.raises(InputError, match="learning_rate.0, learning_rate.1 give every") as e:
        critical.critical_lr(both)
    assert "\n" not in str(e.value) and sizes == []
    one = {**SMALL, "sweep": {"learning_rate.0": [0.1, 1.0], "seed": [0]}}
    assert len(critical.critical_lr(one, high=10.0)) == 2


def test_cli_prints_table_and_writes_csv(monkeypatch, tmp_path):
    fake_boundaries(monkeypatch, rule)
    cfg = tmp_path / "exp.toml"
    cfg.write_text('[data]\nname = "moons"\nn_samples = 16\n[model]\nhidden = [4]\n'
                   '[sweep]\nseed = {range = 4}\n')
    out, stream = tmp_path / "crit.csv", io.StringIO()
    assert commands.critical_lr(str(cfg), ["train.steps=5"], out_csv=out, stream=stream) == 0
    text = stream.getvalue()
    assert "critical_lr" in text and "bracket_ok = False" in text and "non_monotone" in text
    assert "nan" not in text  # seeds 2 and 3 have no critical lr: printed "none"
    rows = {int(r.split()[0]): r.split()[1] for r in text.splitlines()[3:7]}
    assert rows[2] == rows[3] == "none" and float(rows[0]) == pytest.approx(0.37, rel=1e-3)
    back = pd.read_csv(out)
    assert len(back) == 4 and list(back.columns) == ["seed", *critical.RESULT_COLUMNS]
    with pytest.raises(InputError, match="does not exist"):
        commands.critical_lr(str(cfg), [], out_csv=tmp_path / "nope" / "x.csv", stream=stream)


def test_rungs_lie_strictly_between_the_ends():
    """The ladder: LADDER_POINTS geometric steps strictly inside (lo, hi), e.g. the powers of
    ten 10 .. 1e8 between 1 and 1e9; then the swept values strictly inside, NaN elsewhere."""
    swept = np.array([1.0, 3.0, 1e9, 5e10])
    got = critical._rungs(np.array([1.0, 2.0]), 1e9, swept)
    assert critical.LADDER_POINTS == 8 and got.shape == (2, 8 + 4)
    np.testing.assert_allclose(got[0, :8], 10.0 ** np.arange(1, 9), rtol=1e-13)
    np.testing.assert_allclose(got[1, :8], 2.0 * 5e8 ** (np.arange(1, 9) / 9), rtol=1e-13)
    for row in got:
        np.testing.assert_array_equal(row[8:], [np.nan, 3.0, np.nan, np.nan])
    below = critical._rungs(np.array([3.0]), np.array([3.0 * 1.5**9]), swept)[0]
    np.testing.assert_allclose(below[:8], 3.0 * 1.5 ** np.arange(1, 9), rtol=1e-13)
    assert np.isnan(below[8:]).all()  # 3.0 is an end, not inside


def test_the_bracket_ends_and_the_smallest_rtol(monkeypatch):
    fake_boundaries(monkeypatch, rule)
    with pytest.raises(InputError, match="low < high"):
        critical.critical_lr(SMALL, low=0.5, high=0.5)
    t = critical.critical_lr(SMALL, rtol=critical.MIN_RTOL).set_index("seed")
    assert 0.37 <= t.loc[0, "critical_lr"] <= 0.37 * (1 + critical.MIN_RTOL)
    assert t.loc[0, "lr_high"] / t.loc[0, "lr_low"] - 1 <= critical.MIN_RTOL


def test_the_search_moves_down_at_most_max_descents_times(monkeypatch):
    """A chain of five islands, each seen only by the check below the one before: island 1 at
    the swept lr 1234.5, island k+1 a narrow band around the first ladder rung below island k
    (low = 1, so that rung is edge_k**(1 / 9)). The search moves down MAX_DESCENTS = 4
    times, to island 4, and does not look below it again; allowed a fifth, it finds 5."""
    rtol, width = 1e-8, 1e-5
    edges, bands = [1234.5], [(1234.5, 1234.5 * (1 + 1e-6))]
    for _ in range(4):
        c = edges[-1] ** (1 / (critical.LADDER_POINTS + 1))
        bands.append((c * (1 - width), c * (1 + width)))
        edges.append(c * (1 - width))
    assert edges[-1] > 1.0  # every island lies inside the bracket

    def chain(seed, lr):
        return lr >= 1e6 or any(a <= lr <= b for a, b in bands)

    fake_boundaries(monkeypatch, chain)
    cfg = {**SMALL, "sweep": {"learning_rate": [1.0, 1234.5, 1e8], "seed": [0]}}
    t = critical.critical_lr(cfg, rtol=rtol)
    assert critical.MAX_DESCENTS == 4 and t["non_monotone"][0] and t["bracket_ok"][0]
    assert edges[3] <= t["critical_lr"][0] <= edges[3] * (1 + rtol)
    monkeypatch.setattr(critical, "MAX_DESCENTS", 5)
    t = critical.critical_lr(cfg, rtol=rtol)
    assert edges[4] <= t["critical_lr"][0] <= edges[4] * (1 + rtol)


def test_the_default_bracket_is_the_smallest_and_largest_swept_rate(monkeypatch):
    """The swept learning rates in any order: the bracket is their minimum and maximum, not
    the first and the last listed."""
    fake_boundaries(monkeypatch, rule)
    cfg = {**SMALL, "sweep": {"learning_rate": [100.0, 0.01, 0.03], "seed": [0]}}
    t = critical.critical_lr(cfg, rtol=1e-4)
    assert t.attrs["bracket"] == (0.01, 100.0) and t["bracket_ok"][0]
    assert 0.37 <= t["critical_lr"][0] <= 0.37 * (1 + 1e-4)


def test_the_round_count_halves_the_log_ratio_down_to_log1p_rtol(monkeypatch):
    """Bisection stops once hi / lo - 1 <= rtol, i.e. log(hi / lo) <= log(1 + rtol): from a log
    ratio of 1.8 with rtol = 1, two halvings (0.9, then 0.45 <= log 2 = 0.69), which the
    round count (the progress bar's total) predicts; 1.8 / rtol would say one."""
    fake_boundaries(monkeypatch, lambda seed, lr: lr >= 2.0)
    high = math.exp(1.8)
    t = critical.critical_lr({**SMALL, "sweep": {"seed": [0]}}, low=1.0, high=high, rtol=1.0)
    assert t["n_rounds"][0] == 2 and t["lr_low"][0] == pytest.approx(math.exp(0.45))
    assert t["lr_high"][0] == pytest.approx(math.exp(0.9))
    assert critical._count_rounds(1.0, high, 1.0) == 2


def test_a_swept_rate_inside_the_last_bracket_is_not_below_the_crossing(monkeypatch):
    """The check below the crossing looks only below lr_low: the swept 0.37, where seed 0
    starts to diverge, lies between lr_low and lr_high and does not flag the row."""
    fake_boundaries(monkeypatch, rule)
    cfg = {**SMALL, "sweep": {"learning_rate": [0.01, 0.37, 100.0], "seed": [0]}}
    t = critical.critical_lr(cfg, rtol=0.1)
    assert t["lr_low"][0] < 0.37 < t["lr_high"][0] <= 0.37 * 1.1
    assert t["bracket_ok"][0] and not t["non_monotone"][0]


def test_the_ladder_above_the_crossing_is_climbed_on_the_first_pass_only(monkeypatch):
    """Seed 0 of island_rule: the first pass checks LADDER_POINTS rungs above the crossing at
    10 and as many below it, where the island 0.09 .. 0.12 moves the search down; the second
    pass checks only the rungs below the new lr_low (every other call bisects the one row)."""
    sizes = fake_boundaries(monkeypatch, island_rule)
    cfg = {**SMALL, "sweep": {"learning_rate": [0.01, 100.0], "seed": [0]}}
    t = critical.critical_lr(cfg, rtol=1e-4)
    assert 0.09 <= t["critical_lr"][0] <= 0.09 * (1 + 1e-4) and t["non_monotone"][0]
    assert sizes[0] == 2
    assert [s for s in sizes[1:] if s > 1] == [2 * critical.LADDER_POINTS,
                                               critical.LADDER_POINTS]
