"""Early exit ([train] early_exit): a group of runs trained together stops computing once all
its runs are frozen, with results bit-identical to computing every step."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from configs import chunk_unit
from configs import with_sections as _with

import trainscape as ts
from trainscape.engine import compile as engine_compile
from trainscape.engine import execute, plan
from trainscape.sweep import prepare
from trainscape.sweep import tables as sweep_tables
from trainscape.train.classify import BLOWUP_FACTOR

T = 40
BASE = {
    "name": "early",
    "data": {"name": "moons", "n_samples": 64},
    "model": {"hidden": [8, 8], "activation": "tanh", "init": "normal"},
    "train": {"steps": T},
    "sweep": {"seed": {"range": 1}, "learning_rate": [0.1]},
}


def _group_of(cfg) -> int:
    """Runs of `cfg` trained together, which stop together (`plan.sub_batch`): 32 for this
    network on a CPU, the whole block on a GPU (thousands)."""
    prep = prepare.Prepared(ts.parse(cfg))
    return plan.sub_batch(prep.static, prep.x)


G = _group_of(BASE)
# Seed listed first, so the grid puts the learning rate innermost and a group of the grid's
# order would mix all three rates; early exit dispatches by learning rate instead. In groups
# of G runs of one rate: at 0.1 no run dies, at 3000 the runs blow up at steps from 1 to
# about 14, at 1e6 every run at once (at step 1 for all 32 seeds of a CPU group; a few of
# 4096 at step 2).
LRS = [0.1, 3000.0, 1e6]
GRID = {**BASE, "sweep": {"seed": {"range": G}, "learning_rate": LRS}}


def _both(cfg):
    """The results of `cfg` with early exit on and off."""
    on = ts.run(_with(cfg, train={"early_exit": True}), out=None, progress=False)
    off = ts.run(_with(cfg, train={"early_exit": False}), out=None, progress=False)
    return on, off


def _frozen_at(curves: pd.DataFrame) -> np.ndarray:
    """Each run's freeze step read from its curve (every step recorded): the first step whose
    loss is not finite or above BLOWUP_FACTOR x the initial one; -1 if none. In run_id order."""
    loss = curves.pivot(index="run_id", columns="step", values="loss").to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(loss) & (loss <= BLOWUP_FACTOR * loss[:, :1]))
    return np.where(bad.any(axis=1), np.argmax(bad, axis=1), -1)


def _expected_skipped(lr: np.ndarray, frozen: np.ndarray, group: int, steps: int,
                      order: np.ndarray | None = None) -> int:
    """Run-steps a group skips, from first principles: runs dispatched in `order` (default: by
    learning rate, stable), in consecutive groups of `group`; a group whose runs all froze,
    the last at step d, computes steps 0..d and the evaluation at `steps`, and skips the rest
    of the steps + 1 evaluations; padding repeats the last run."""
    if order is None:
        order = np.argsort(lr, kind="stable")
    f = frozen[order]
    pad = -len(f) % group
    f = np.concatenate([f, np.repeat(f[-1:], pad)])[: len(f) + pad].reshape(-1, group)
    per_group = np.where((f >= 0).all(axis=1), steps - 1 - f.max(axis=1), 0)
    real = np.minimum(group, len(frozen) - group * np.arange(len(per_group)))
    return int(np.sum(per_group * real))


def _assert_same(on, off):
    pd.testing.assert_frame_equal(on.runs, off.runs, check_exact=True)
    pd.testing.assert_frame_equal(on.curves, off.curves, check_exact=True)
    assert on.meta["engine"]["early_exit"] is True and off.meta["engine"]["early_exit"] is False
    assert off.meta["timings"]["run_steps_skipped"] == 0


def test_early_exit_is_exact_and_skips_exactly_the_frozen_groups():
    """Groups where no run dies, where runs die at different steps, and where every run dies
    at once: every column of both tables bit-identical to early_exit = false, and the
    run-steps skipped those of the groups whose runs all froze."""
    on, off = _both(GRID)
    _assert_same(on, off)
    frozen = _frozen_at(on.curves)
    lr = on.runs["learning_rate"].to_numpy()
    by_lr = {v: frozen[lr == v] for v in LRS}
    assert (by_lr[0.1] < 0).all()
    # all 32 runs of a CPU group at step 1; of a GPU's 4096, a handful at step 2
    assert (by_lr[1e6] == 1).mean() > 0.99 and (by_lr[1e6] >= 1).all() and (by_lr[1e6] <= 2).all()
    # all 32 of a CPU group freeze; of 4096, a handful may live on
    assert (by_lr[3000.0] >= 0).mean() > 0.99 and len(set(by_lr[3000.0])) >= 3
    # the engine's whole output too, arrays no table holds (every recorded sharpness) included
    traj = {}
    for early in (True, False):
        prep = prepare.Prepared(ts.parse(_with(GRID, train={"early_exit": early})))
        (out,) = execute.run_chunks(prep.groups, prep.hp, prep.x, prep.y)
        traj[early] = out.traj
    for k, v in traj[False].items():
        if k != "steps_computed":
            np.testing.assert_array_equal(traj[True][k], v, err_msg=k)
    # the freeze step read off the curve is the engine's (the table's diverged_step is that,
    # or for a run that ended above its initial loss without blowing up, where it stayed so)
    np.testing.assert_array_equal(frozen, traj[True]["diverged_step"])
    want = _expected_skipped(lr, frozen, G, T)
    # each rate is one group (G runs): a group skips the steps after its last run froze
    assert want == sum(G * (T - 1 - f.max()) for f in by_lr.values() if (f >= 0).all())
    assert want >= G * (T - 3)
    assert on.meta["timings"]["run_steps_skipped"] == want


@pytest.mark.cpu_only("groups smaller than a block are the CPU's (SUB_BATCH_FLOPS)")
@pytest.mark.parametrize("sub", [1, 4])
def test_groups_smaller_than_a_block_stop_on_their_own(monkeypatch, sub):
    """On CPU a block's runs are trained in groups (`sub_batch`), one after the other; each
    group stops once its own runs are frozen (a group of one run is not vmapped at all)."""
    flops = plan.run_step_flops(prepare.Prepared(ts.parse(GRID)).static,
                                  np.zeros((64, 2)))
    monkeypatch.setattr(plan, "SUB_BATCH_FLOPS", sub * flops)
    # programs are cached per Static, not per group size
    engine_compile.compiled_sweep.cache_clear()
    try:
        on, off = _both(GRID)
    finally:
        engine_compile.compiled_sweep.cache_clear()
    _assert_same(on, off)
    frozen = _frozen_at(on.curves)
    want = _expected_skipped(on.runs["learning_rate"].to_numpy(), frozen, sub, T)
    assert on.meta["timings"]["run_steps_skipped"] == want > 0


STOCHASTIC = _with(GRID, train={"batch_size": 16}, model={"dropout": 0.1})


def test_early_exit_is_exact_with_mini_batches_and_dropout():
    on, off = _both(STOCHASTIC)
    _assert_same(on, off)
    assert on.meta["timings"]["run_steps_skipped"] > 0


@pytest.mark.cpu_only("LAPACK's eigh")
@pytest.mark.parametrize("metrics, record_every", [
    ({"sharpness": True}, 1), ({"sharpness_every": 10}, 5)], ids=["at-ends", "every-10th"])
def test_early_exit_is_exact_with_the_sharpness_and_sparse_records(metrics, record_every):
    """The sharpness at the end of a frozen run is that of its frozen weights, and so are
    the skipped recorded steps where it was due: the same numbers (and NaNs) as the full
    loop, which measures them there. With record_every > 1 a group stops at the end of a
    recorded block."""
    cfg = _with(GRID, train={"record_every": record_every, "steps": 30}, metrics=metrics)
    cfg["sweep"] = {"seed": {"range": G}, "learning_rate": [3000.0, 1e6]}
    on, off = _both(cfg)
    _assert_same(on, off)
    assert on.meta["timings"]["run_steps_skipped"] > 0
    assert np.isfinite(on.runs["sharpness_final"]).all()
    if "sharpness" in on.curves:
        assert on.curves["sharpness"].notna().sum() == 2 * G * 4  # steps 0, 10, 20, 30


def test_the_compiled_loop_ends_when_every_run_is_frozen():
    """The program counts the steps its loop executed: runs that all blow up at step 1 of
    10,000 compute steps 0 and 1 and the evaluation at the end, and nothing else; with
    early_exit = false every step runs."""
    cfg = _with(GRID, train={"steps": 10_000})
    cfg["sweep"] = {"seed": {"range": 4}, "learning_rate": [1e6]}
    for early, want in [(True, 3), (False, 10_001)]:
        prep = prepare.Prepared(ts.parse(_with(cfg, train={"early_exit": early})))
        (out,) = execute.run_chunks(prep.groups, prep.hp, prep.x, prep.y)
        np.testing.assert_array_equal(out.traj["steps_computed"], want)
        np.testing.assert_array_equal(out.traj["diverged_step"], 1)


# Two learning rates at which most seeds blow up within a few steps: at 1000 about a sixth of
# them never do, so by learning rate both of its groups of G compute every step.
MIXED = {**GRID, "sweep": {"seed": {"range": 2 * G}, "learning_rate": [1000.0, 3000.0]}}



def test_the_probe_puts_runs_that_freeze_early_together(monkeypatch):
    """With the probe covering the first 10 of 40 steps: the dispatch of the highest learning
    rates first (some of its runs freeze, so the others are probed), then the runs seen
    freezing in the probe, by their freeze step, then the rest by learning rate. The run-steps
    skipped are exactly those of that order's groups, more than the learning-rate order
    skips, and both tables are still bit-identical to early_exit = false."""
    monkeypatch.setattr(plan, "EXIT_PROBE_SHARE", 0.25)
    on, off = _both(MIXED)
    _assert_same(on, off)
    frozen = _frozen_at(on.curves)
    lr = on.runs["learning_rate"].to_numpy()
    d = chunk_unit(MIXED)  # runs per dispatch: a block on every device
    desc = np.argsort(lr, kind="stable")[::-1]
    lead, rest = desc[:d], desc[d:]
    seen = (frozen[rest] >= 0) & (frozen[rest] < 10)
    order = np.concatenate([lead, rest[np.lexsort((lr[rest],
                                                    np.where(seen, frozen[rest], T + 1)))]])
    want = _expected_skipped(lr, frozen, G, T, order)
    assert on.meta["timings"]["run_steps_skipped"] == want
    by_rate = _expected_skipped(lr, frozen, G, T)
    assert (frozen[lr == 1000.0] < 0).sum() >= 4
    assert want >= 1.4 * by_rate, (want, by_rate)


@pytest.mark.parametrize("unroll", [None, 3])
def test_the_probe_stops_its_loop_after_its_blocks(unroll):
    """The sweep's program told to stop after m recorded blocks (`max_blocks`) reports the
    freeze step of exactly the runs that froze before step m, and -1 for the others, even
    those that freeze later (which it would report had it run on); also with 3 blocks per
    loop iteration, of which m = 5 is not a multiple."""
    prep = prepare.Prepared(ts.parse(MIXED))
    (st, rows), = prep.groups
    (full,) = execute.run_chunks(prep.groups, prep.hp, prep.x, prep.y)
    frozen = full.traj["diverged_step"]
    assert ((frozen >= 5) & (frozen < T)).any() and (frozen == 1).any()
    p = execute.place(st._replace(unroll=unroll), plan.run_devices(), prep.x, prep.y, None)
    got = np.concatenate([
        execute._to_host(*execute._dispatch(p, prep.hp, rows, g0, np.float32, np.int32(5)),
                         p.order)["diverged_step"]
        for g0 in range(0, len(rows), p.dispatch_runs)])
    np.testing.assert_array_equal(got, np.where(frozen < 5, frozen, -1))


@pytest.mark.parametrize("rates, want", [([0.05, 0.1], 0), ([1000.0, 3000.0], 2)],
                         ids=["calm", "freezing"])
def test_a_grid_is_probed_only_where_its_top_rates_freeze(monkeypatch, rates, want):
    """Two chunks of two dispatches, each with both learning rates. Each chunk computes the
    dispatch of its highest rates first; where none of its runs froze, the other dispatch is
    not probed (no step is computed twice), where some did, it is (one probe dispatch per
    chunk, 10 blocks long)."""
    monkeypatch.setattr(plan, "EXIT_PROBE_SHARE", 0.25)
    probes = []
    real = execute._dispatch

    def counted(p, hp, rows, g0, hdt, max_blocks):
        if max_blocks != execute.NO_LIMIT:
            probes.append(max_blocks)
        return real(p, hp, rows, g0, hdt, max_blocks)

    monkeypatch.setattr(execute, "_dispatch", counted)
    d = chunk_unit(GRID)  # runs per dispatch: a block on every device
    cfg = {**GRID, "sweep": {"seed": {"range": 2 * d}, "learning_rate": rates}}
    prep = prepare.Prepared(ts.parse(cfg))
    outs = list(execute.run_chunks(prep.groups, prep.hp, prep.x, prep.y, chunk_size=2 * d))
    assert len(outs) == 2 and probes == [10] * want
    off = prepare.Prepared(ts.parse(_with(cfg, train={"early_exit": False})))
    full = list(execute.run_chunks(off.groups, off.hp, off.x, off.y, chunk_size=2 * d))
    for a, b in zip(outs, full, strict=True):
        np.testing.assert_array_equal(a.traj["loss_R"], b.traj["loss_R"])


def test_the_probe_covers_a_32nd_of_the_steps_in_whole_blocks():
    def blocks(**train):
        return plan.exit_probe_blocks(prepare.Prepared(ts.parse(_with(GRID, train=train))).static)
    assert blocks(steps=300) == 9  # steps 0..8
    assert blocks(steps=300, record_every=3) == 3  # steps 0..8 again
    assert blocks(steps=300, record_every=10) == 0  # one block would be 10 > 300/32 steps
    assert blocks(steps=31) == 0
    assert blocks(steps=300, early_exit=False) == 0
    # with the sharpness the probe would measure it a second time at step 0: no probe
    sharp = _with(GRID, train={"steps": 300}, metrics={"sharpness": True})
    assert plan.exit_probe_blocks(prepare.Prepared(ts.parse(sharp)).static) == 0


def test_dispatch_order_is_by_learning_rate_and_tables_keep_the_grid_order():
    hp = {"learning_rate": np.array([3.0, 1.0, 2.0, 1.0, 3.0]), "seed": np.arange(5)}
    rows = np.array([4, 0, 1, 3])  # learning rates 3, 3, 1, 1
    np.testing.assert_array_equal(execute.exit_order(hp, rows), [2, 3, 0, 1])
    fixed = {"learning_rate": np.asarray(0.1), "seed": np.arange(5)}
    np.testing.assert_array_equal(execute.exit_order(fixed, rows), [0, 1, 2, 3])


@pytest.mark.cpu_only("builds the accelerator's program for CPU devices")
def test_the_accelerator_layout_forced_on_the_cpu_gives_the_cpu_labels():
    """The program an accelerator runs (whole blocks of `block_runs` vmapped, here 4096 runs
    of this tiny network) built for the CPU devices: the labels of the CPU's program, and
    early exit exact there too (the grid is one group there, kept going by its live runs)."""
    cfg = _with(GRID, train={"steps": 30})
    cpu = ts.run(cfg, out=None, progress=False)
    prep = prepare.Prepared(ts.parse(cfg))
    assert plan.block_of(prep.static, prep.x, "gpu") > plan.BLOCK
    tables = {}
    for early in (True, False):
        p = prepare.Prepared(ts.parse(_with(cfg, train={"early_exit": early})))
        (out,) = execute.run_chunks(p.groups, p.hp, p.x, p.y, layout="gpu")
        tables[early] = sweep_tables.chunk_tables(p, out)
        np.testing.assert_array_equal(out.traj["steps_computed"], 31)
    for a, b in zip(tables[True], tables[False], strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_series_equal(tables[True][0]["label"], cpu.runs["label"])


def test_the_chunk_size_probe_times_every_step(monkeypatch, tmp_path):
    """The probe that sizes chunks by time computes every step: with early exit, runs that
    blow up at once would make the probe, and so a chunk, look free."""
    seen = []

    def fake_run_chunks(groups, *args, **kwargs):
        seen.extend(st for st, _ in groups)
        return iter(())

    monkeypatch.setattr(execute, "run_chunks", fake_run_chunks)
    monkeypatch.setattr(plan, "cache_file", lambda: tmp_path / "probe.json")
    execute.probe_seconds_per_run_step(prepare.Prepared(ts.parse(GRID)))
    assert seen and all(not st.early_exit for st in seen)


def _traj(cfg, unroll=None, layout=None):
    """The engine's whole output for `cfg`, its program built with `unroll` recorded blocks
    per iteration of the early-exit loop (None: the platform's)."""
    prep = prepare.Prepared(ts.parse(cfg))
    groups = [(st._replace(unroll=unroll), rows) for st, rows in prep.groups]
    (out,) = execute.run_chunks(groups, prep.hp, prep.x, prep.y, layout=layout)
    return out.traj


@pytest.mark.parametrize("train, unroll", [
    ({}, 3),  # 41 blocks: the last iteration has 2 blocks past the end, masked out
    ({"record_every": 5, "steps": 30}, 4),  # 7 blocks of 5 steps (and the end): 1 masked
], ids=["every-step-3", "blocks-of-5"])
def test_an_unrolled_early_exit_loop_computes_the_same_bits(train, unroll):
    """Several recorded blocks per iteration of the early-exit loop (`Static.unroll`, for
    accelerators where each iteration's condition may cost a copy to the host): every output
    bit-identical to one block per iteration, the steps computed included, and to
    early_exit = false; groups that freeze within an iteration still stop there."""
    cfg = _with(GRID, train=train)
    one, many = _traj(cfg, 1), _traj(cfg, unroll)
    off = _traj(_with(cfg, train={"early_exit": False}))
    for k, v in one.items():
        np.testing.assert_array_equal(many[k], v, err_msg=k)
        if k != "steps_computed":
            np.testing.assert_array_equal(off[k], v, err_msg=k)
    steps = cfg["train"]["steps"]
    assert (one["steps_computed"] < steps + 1).any() and (one["steps_computed"] == steps + 1).any()


def test_the_platforms_unroll_factor_is_used_and_recorded(monkeypatch):
    """A platform's factor (`plan.LOOP_UNROLL`) reaches the compiled program and meta.json
    (engine.loop_unroll), with the same tables; the accelerator's layout forced on the CPU
    with its own factor gives the same bits too."""
    base = ts.run(GRID, out=None, progress=False)
    assert base.meta["engine"]["loop_unroll"] == 1 == plan.loop_unroll()
    built = []
    real = engine_compile.compiled_sweep

    def spy(static, *args, **kwargs):
        built.append(static.unroll)
        return real(static, *args, **kwargs)

    monkeypatch.setattr(execute, "compiled_sweep", spy)
    monkeypatch.setattr(plan, "LOOP_UNROLL", {"cpu": 3, "gpu": 5})
    got = ts.run(GRID, out=None, progress=False)
    here = plan.loop_unroll()  # this platform's entry: 3 on a CPU, 5 on a GPU
    assert here in (3, 5) and got.meta["engine"]["loop_unroll"] == here and set(built) == {here}
    pd.testing.assert_frame_equal(got.runs, base.runs, check_exact=True)
    pd.testing.assert_frame_equal(got.curves, base.curves, check_exact=True)
    cfg = _with(GRID, train={"steps": 30})
    gpu = _traj(cfg, layout="gpu")
    assert built[-1] == 5
    for k, v in _traj(cfg, 1, layout="gpu").items():
        np.testing.assert_array_equal(gpu[k], v, err_msg=k)


def test_the_probe_order_on_a_hand_made_chunk(monkeypatch):
    """`probe_order` with the engine replaced by a table of freeze steps (runs 10..17, rates
    1..8, dispatches of 2, a probe of 5 steps): the lead is the two highest rates; one of
    them froze, so the rest is probed from the highest rate down until a dispatch where
    nothing froze within the probe (rates 4 and 3: the 3 freezes only at step 7), so rate 1
    (freezing at step 2) is never probed. Order: the lead, then the runs the probe saw freeze
    by their step (rate 6 at step 0, rate 5 at 4), then the others by rate."""
    freeze = {10: 2, 11: -1, 12: 7, 13: -1, 14: 4, 15: 0, 16: -1, 17: 3}
    probes = []

    def dispatch(p, hp, rows, g0, hdt, max_blocks):
        m = min(g0 + p.dispatch_runs, len(rows)) - g0
        if max_blocks != execute.NO_LIMIT:
            probes.append(list(rows[g0:g0 + m]))
        return m, (rows[g0:g0 + m], max_blocks)

    def to_host(m, traj, order):
        ids, max_blocks = traj
        step = np.array([freeze[i] for i in ids])
        if max_blocks != execute.NO_LIMIT:
            step = np.where(step < max_blocks, step, -1)
        return {"diverged_step": step}

    monkeypatch.setattr(execute, "_dispatch", dispatch)
    monkeypatch.setattr(execute, "_to_host", to_host)
    p = SimpleNamespace(dispatch_runs=2, order=None)
    hp = {"learning_rate": np.concatenate([np.zeros(10), np.arange(1.0, 9.0)])}
    rows = np.arange(10, 18)
    order, head = execute.probe_order(p, hp, rows, np.float32, 5)
    assert probes == [[15, 14], [13, 12]]
    assert list(rows[order]) == [17, 16, 15, 14, 10, 11, 12, 13]
    assert list(head["diverged_step"]) == [3, -1]
    # nothing in the lead froze: no probe, the rest by rate from the lowest
    freeze.update({17: -1})
    probes.clear()
    order, _ = execute.probe_order(p, hp, rows, np.float32, 5)
    assert probes == [] and list(rows[order]) == [17, 16, 10, 11, 12, 13, 14, 15]
