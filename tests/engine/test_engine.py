"""The batching boundary: vmapped == one at a time, chunk-size invariance, no recompiles."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from configs import ENGINE_TINY as TINY
from numpy_mlp import gd_curve, seed_init

import trainscape as ts
from trainscape.engine import compile as engine_compile
from trainscape.engine import plan
from trainscape.errors import InputError
from trainscape.sweep import prepare
from trainscape.train import classify, loop


def _run(cfg=TINY, **kw):
    return ts.run(cfg, out=None, progress=False, **kw)


@pytest.fixture(scope="module")
def base():
    return _run(chunk_size=1000)


def test_run_table_schema(base):
    runs = base.runs
    assert list(runs.columns[:3]) == ["run_id", "learning_rate", "seed"]
    assert runs["run_id"].tolist() == list(range(18))
    for col in ("initial_loss", "final_loss", "min_loss", "max_loss", "peak_step",
                "diverged_step", "recover_step", "spike_step", "spike_recover_step",
                "final_accuracy", "label"):
        assert col in runs.columns
    assert str(runs["diverged_step"].dtype) == "Int64"
    assert set(runs["label"]) <= set(classify.LABELS)
    # T + 1 curve points per run, step 0 = loss at init
    assert len(base.curves) == 18 * 31
    first = base.curves[base.curves.step == 0].set_index("run_id")["loss"]
    np.testing.assert_array_equal(first.to_numpy(), runs.set_index("run_id")["initial_loss"])


def test_chunk_size_does_not_change_results(base):
    other = _run(chunk_size=7)
    pd.testing.assert_frame_equal(base.runs, other.runs, check_exact=True)
    pd.testing.assert_frame_equal(base.curves, other.curves, check_exact=True)


def test_vmapped_sweep_equals_runs_one_at_a_time(base):
    for _, row in base.runs.iloc[::4].iterrows():
        one = dict(TINY, sweep={"learning_rate": [row.learning_rate], "seed": [int(row.seed)]})
        r = _run(one).runs.iloc[0]
        # bit for bit: every compiled block trains BLOCK runs, padded, so a run alone goes
        # through the very program that trained it among the others
        for col in ("initial_loss", "final_loss", "max_loss", "min_loss"):
            np.testing.assert_array_equal(r[col], row[col], err_msg=col)
        assert r["label"] == row["label"]


def test_second_sweep_of_same_shapes_does_not_retrace(base, traces):
    before = traces()
    cfg = dict(TINY, sweep={"learning_rate": [0.5, 0.7, 0.9], "seed": [10, 11, 12, 13, 14, 15]},
               optimizer={"learning_rate": 0.2})
    _run(cfg, chunk_size=18)  # same static config, same chunk size as `base`: no new trace
    assert traces() == before


def test_online_summaries_match_numpy_summaries_of_the_curve(base):
    curves = base.curves.pivot(index="run_id", columns="step", values="loss").to_numpy()
    for rid, row in base.runs.set_index("run_id").iterrows():
        s = classify.summarize_curve(curves[rid])
        assert s["peak_step"] == row["peak_step"]
        assert s["max_loss"] == pytest.approx(row["max_loss"], rel=1e-6, nan_ok=True)
        # relative only: a curve that never rises has a rebound of exactly 0 (the engine
        # once gave it about one ulp, subtracting the loss from a copy of itself)
        assert s["rebound"] == pytest.approx(row["rebound"], rel=1e-6, abs=0)
        assert s["spike_ratio"] == pytest.approx(row["spike_ratio"], rel=1e-5)
        for col in ("min_loss", "final_loss"):
            assert s[col] == pytest.approx(row[col], rel=1e-6, nan_ok=True), col
        for col in ("recover_step", "spike_step", "spike_recover_step"):
            assert s[col] == (-1 if pd.isna(row[col]) else row[col]), (rid, col)
        assert classify.label_curve(curves[rid]) == row["label"]
        div = s["diverged_step"] if s["diverged_step"] >= 0 else (
            s["above_since"] if row["label"] == "diverged" else -1)
        assert div == (-1 if pd.isna(row["diverged_step"]) else row["diverged_step"])


def test_a_curve_that_never_rises_has_no_rebound():
    """At a tiny learning rate every step lowers the loss, so the largest rise above the
    running minimum is exactly 0. The engine used to subtract the loss from a copy of itself
    that XLA computed in another fusion: about one ulp (3e-8 on this network)."""
    cfg = {"data": {"name": "breast_cancer"}, "model": {"hidden": [8, 8], "init": "normal"},
           "train": {"steps": 5}, "sweep": {"learning_rate": [1e-4], "seed": {"range": 8}}}
    res = _run(cfg)
    loss = res.curves.pivot(index="run_id", columns="step", values="loss").to_numpy()
    assert (np.diff(loss, axis=1) < 0).all()
    assert (res.runs["rebound"] == 0).all()


def test_a_run_non_finite_from_the_start_has_nan_extremes():
    """Weights scaled by 1e30 make the first MSE already overflow: the run is frozen at step
    0, labelled diverged, and has no finite loss, so its min and max are NaN, as the
    offline summary of its curve has them (not the +inf / -inf the running extremes start
    from)."""
    cfg = {"data": {"name": "teacher", "n_samples": 16}, "loss": {"name": "mse"},
           "model": {"hidden": [4], "init_scale": 1e30}, "train": {"steps": 3},
           "sweep": {"learning_rate": [0.1]}}
    row = _run(cfg).runs.iloc[0]
    assert row["initial_loss"] == np.inf and row["diverged_step"] == 0
    assert row["label"] == "diverged"
    s = classify.summarize_curve([row["initial_loss"], np.nan, np.nan, np.nan])
    assert np.isnan(s["min_loss"]) and np.isnan(s["max_loss"])
    assert np.isnan(row["min_loss"]) and np.isnan(row["max_loss"])


def test_a_run_whose_loss_never_changes_has_it_as_both_extremes():
    """At a learning rate of 1e-30 no float32 weight moves, so every step has the initial loss:
    min and max are that loss (a single finite value is not 'no finite step', which alone
    gives NaN extremes), and the run is stalled."""
    cfg = {"data": {"name": "teacher", "n_samples": 16}, "loss": {"name": "mse"},
           "model": {"hidden": [4]}, "train": {"steps": 3}, "sweep": {"learning_rate": [1e-30]}}
    res = _run(cfg)
    row = res.runs.iloc[0]
    assert (res.curves["loss"] == row["initial_loss"]).all() and np.isfinite(row["initial_loss"])
    assert row["min_loss"] == row["max_loss"] == row["initial_loss"] == row["final_loss"]
    assert row["label"] == "stalled"


def test_blowups_are_frozen_and_labelled_diverged():
    cfg = dict(TINY, sweep={"learning_rate": [1e3, 1e6, 1e9], "seed": [0, 1]})
    res = _run(cfg)
    assert (res.runs["label"] == "diverged").all()
    assert res.runs["diverged_step"].notna().all()
    c = res.curves.merge(res.runs[["run_id", "diverged_step"]], on="run_id")
    blew_up = c[c.groupby("run_id")["loss"].transform(lambda v: v.isna().any())]
    after = blew_up[blew_up.step > blew_up.diverged_step.astype(float)]
    assert len(after) and after["loss"].isna().all()  # frozen: NaN after the blow-up step
    stayed = res.runs[~res.runs.run_id.isin(blew_up.run_id)]
    for _, r in stayed.iterrows():  # diverged by ending above: never back below initial after
        tail = c[(c.run_id == r.run_id) & (c.step >= r.diverged_step)]["loss"]
        assert (tail > r.initial_loss).all()


def test_chunk_sizes_and_layout_by_hand():
    b = plan.BLOCK
    # 2b + 1 runs, at most 2b a chunk: two chunks of b + 1, rounded up to two blocks
    assert plan.plan_chunks(2 * b + 1, 2 * b, 1) == 2 * b
    assert plan.plan_chunks(2 * b + 1, 2 * b, 2) == 2 * b  # one block on each device
    # runs 0..9 then 10..12, 4 at a time, never straddling the two groups
    layout = plan.chunk_layout([(None, np.arange(10)), (None, np.arange(10, 13))], 4)
    want = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12]]
    assert len(layout) == 4 and [layout.runs_in(i) for i in range(4)] == [4, 4, 2, 3]
    assert [layout[i][1].tolist() for i in range(4)] == want
    assert layout[-1][1].tolist() == want[-1] and layout[-4][1].tolist() == want[0]
    for i in (4, -5):
        with pytest.raises(IndexError):
            layout[i]
    # dispatches: whole steps, rounded down, halved until the need fits (equal fits)
    assert plan.fit_runs(lambda k: k, 100, 32, None) == 96
    assert plan.fit_runs(lambda k: k, 64, 32, 64) == 64
    assert plan.fit_runs(lambda k: k, 128, 32, 63) == 32


def test_an_explicit_chunk_size_beyond_the_grid_is_the_grid_in_whole_blocks():
    prep = prepare.Prepared(ts.parse({**TINY, "sweep": {"seed": {"range": 5}}}))
    step = prep.block * len(plan.run_devices())
    assert plan.choose_chunk_size(prep, 1000 * step, None, None) == (step, {})
    assert plan.choose_chunk_size(prep, 1, None, None) == (step, {})


def test_balanced_chunks_of_whole_blocks():
    b = plan.BLOCK
    assert plan.plan_chunks(10, None, 2) == 2 * b
    assert plan.plan_chunks(5, 1000, 1) == b
    assert plan.plan_chunks(100 * b, 7, 1) == b
    # 4.5 default chunks' worth of runs -> 5 equal chunks, not 4 full ones and a half-empty one
    default_chunk = plan.DEFAULT_BLOCKS_PER_CHUNK * b
    size = plan.plan_chunks(9 * default_chunk, None, 1)
    assert size % b == 0 and 9 * default_chunk / size > 4
    # chunks of another block size (a GPU's) are whole blocks of it
    g = 1024
    assert plan.plan_chunks(10, None, 1, g) == g
    assert plan.plan_chunks(3 * g, 1000, 2, g) == 2 * g
    assert plan.plan_chunks(9 * plan.DEFAULT_BLOCKS_PER_CHUNK * g, None, 1, g) % g == 0


def test_a_gpu_sized_block_keeps_every_run_independent_of_the_chunk_size(monkeypatch):
    """What a GPU does (a block sized by the network, 64 runs here), simulated on the CPU:
    chunks are whole blocks of 64 on every device, meta.json says 64, and each run's result is
    the same bit for bit whatever the chunk size, including a run alone in its block."""
    monkeypatch.setattr(plan, "block_runs", lambda platform=None, flops=None: 64)
    n_dev = len(plan.run_devices())
    cfg = dict(TINY, sweep={"learning_rate": {"geomspace": [0.01, 30.0], "num": 10},
                            "seed": {"range": 15}})  # 150 runs
    whole = _run(cfg, chunk_size=1000)
    assert whole.meta["engine"]["block_runs_per_device"] == 64
    assert whole.meta["timings"]["chunk_size"] % (64 * n_dev) == 0
    small = _run(cfg, chunk_size=1)  # rounded up to one block per device
    assert small.meta["timings"]["chunk_size"] == 64 * n_dev
    pd.testing.assert_frame_equal(small.runs, whole.runs, check_exact=True)
    pd.testing.assert_frame_equal(small.curves, whole.curves, check_exact=True)
    one = _run(dict(cfg, sweep={"learning_rate": [float(whole.runs.learning_rate[77])],
                                "seed": [int(whole.runs.seed[77])]}))
    for col in ("initial_loss", "final_loss", "min_loss", "max_loss"):
        assert one.runs[col][0] == whole.runs[col][77], col


def test_device_order_deals_groups_to_devices_and_keeps_each_run_in_its_group():
    """How a dispatch's runs are laid out over the devices (`plan.device_order`): a
    permutation; run j's group of `sub` goes to device (j // sub) mod n_devices, its place in
    the group stays j mod sub; a dispatch filled with k groups keeps every device within one
    group of the others; whole-block groups leave the run order as it is."""
    for block, n_dev, sub in [(32, 2, 1), (32, 2, 4), (32, 2, 8), (32, 4, 2), (64, 2, 32),
                              (32, 1, 1), (32, 2, 32), (4096, 1, 4096)]:
        pos = plan.device_order(block, n_dev, sub)
        assert sorted(pos) == list(range(block * n_dev))
        j = np.arange(block * n_dev)
        np.testing.assert_array_equal(pos // block, (j // sub) % n_dev)
        np.testing.assert_array_equal(pos % block % sub, j % sub)
        if sub == block or n_dev == 1:
            np.testing.assert_array_equal(pos, j)
        for k in range(1, block * n_dev // sub + 1):  # the first k groups are real
            per_device = np.bincount(pos[: k * sub] // block, minlength=n_dev)
            assert per_device.max() - per_device.min() <= sub


@pytest.mark.parametrize("work, sub", [(0, 1), (3, 4)])
@pytest.mark.cpu_only("the CPU's sub-batch groups on two devices")
def test_runs_trained_in_groups_do_not_depend_on_their_place_in_the_grid(work, sub,
                                                                         monkeypatch):
    """With groups smaller than a block dealt to the devices in turn, a run's result is the
    same bit for bit in a grid of 22 runs (a dispatch mostly padding), with any chunk size,
    and alone in a grid of its own."""
    prep = prepare.Prepared(ts.parse(TINY))
    monkeypatch.setattr(plan, "SUB_BATCH_FLOPS",
                        work * plan.run_step_flops(prep.static, prep.x))
    engine_compile.compiled_sweep.cache_clear()
    try:
        cfg = dict(TINY, sweep={"learning_rate": {"geomspace": [0.01, 30.0], "num": 11},
                                "seed": {"range": 2}})
        grid = _run(cfg, chunk_size=1000)
        assert grid.meta["engine"]["programs"][0]["runs_trained_together"] == sub
        pd.testing.assert_frame_equal(_run(cfg, chunk_size=1).runs, grid.runs,
                                      check_exact=True)
        for i in (0, 13, 21):
            one = _run(dict(cfg, sweep={"learning_rate": [float(grid.runs.learning_rate[i])],
                                        "seed": [int(grid.runs.seed[i])]}))
            for col in ("initial_loss", "final_loss", "min_loss", "max_loss"):
                assert one.runs[col][0] == grid.runs[col][i], (i, col)
    finally:
        engine_compile.compiled_sweep.cache_clear()


@pytest.mark.cpu_only("the CPU's planning named explicitly")
def test_block_sizes_per_platform_and_network():
    """32 runs per block on a CPU whatever the network; on a GPU the smallest power of two from
    32 whose runs do 8 GFLOP per step (6 x rows x parameters each), at most 4096."""
    assert plan.block_runs("cpu", 1.0) == plan.block_runs("cpu") == plan.BLOCK == 32
    seed = 6 * 569 * _n_params((30, 128, 64, 1))  # 42.0 M: 128 runs are 5.4 G, 256 are 10.7 G
    assert plan.block_runs("gpu", seed) == 256
    small = 6 * 256 * _n_params((2, 16, 16, 1))  # 0.52 M: 15,000+ runs' worth -> the cap
    assert plan.block_runs("gpu", small) == 4096 == plan.block_runs("gpu")
    assert plan.block_runs("gpu", 1e12) == 32  # a block never drops below BLOCK
    assert plan.block_runs("tpu", 8e9 / 64) == 64  # exactly the target: 64 runs
    prep = prepare.Prepared(ts.parse(dict(TINY, data={"name": "breast_cancer"},
                                      model={"hidden": [128, 64]})))
    assert plan.block_of(prep.static, prep.x, "gpu") == 256
    assert plan.block_of(prep.static, prep.x, "cpu") == 32
    assert prep.block == 32  # this machine's default backend is a CPU


def test_record_every_thins_curves_but_not_summaries(base):
    cfg = dict(TINY, train={"steps": 30, "record_every": 7})
    res = _run(cfg)
    steps = sorted(res.curves["step"].unique())
    assert steps == [0, 7, 14, 21, 28, 30]
    pd.testing.assert_series_equal(res.runs["max_loss"], base.runs["max_loss"], rtol=1e-6)
    pd.testing.assert_series_equal(res.runs["label"], base.runs["label"])


SHARP = {**TINY, "metrics": {"sharpness": True, "sharpness_every": 10}}


def _sharded_equals_one_device(cfgs, sharded, tmp_path):
    """`sharded` (this process's results of `cfgs`, run on 2 host CPU devices) must be
    bit-identical to what one child process on one device gives for the same configs."""
    import json
    import os
    import subprocess
    import sys

    assert len(jax.local_devices()) == 2  # this process: sharded
    script = (
        "import json, sys, trainscape as ts, jax\n"
        "assert len(jax.local_devices()) == 1\n"
        "for i, cfg in enumerate(json.loads(sys.argv[1])):\n"
        "    r = ts.run(cfg, out=None, progress=False, chunk_size=1000)\n"
        "    r.runs.to_parquet(f'{sys.argv[2]}/r{i}.parquet')\n"
        "    r.curves.to_parquet(f'{sys.argv[2]}/c{i}.parquet')\n"
    )
    env = dict(os.environ, TRAINSCAPE_CPU_DEVICES="1")
    subprocess.run([sys.executable, "-c", script, json.dumps(cfgs), str(tmp_path)],
                   env=env, check=True, timeout=300)
    for i, res in enumerate(sharded):
        pd.testing.assert_frame_equal(res.runs, pd.read_parquet(tmp_path / f"r{i}.parquet"),
                                      check_exact=True)
        pd.testing.assert_frame_equal(res.curves, pd.read_parquet(tmp_path / f"c{i}.parquet"),
                                      check_exact=True)


@pytest.mark.cpu_only("needs two host CPU devices")
def test_sharded_over_two_devices_equals_one_device(base, tmp_path):
    """The run axis sharded over 2 host CPU devices gives bit-identical tables to 1 device."""
    _sharded_equals_one_device([TINY], [base], tmp_path)


@pytest.mark.cpu_only("needs two host CPU devices")
@pytest.mark.slow  # two sharpness programs to compile (about 20 s on 2 cores)
def test_sharded_sharpness_equals_one_device(tmp_path):
    """The same with the sharpness: its Lanczos program is sharded like the rest."""
    sharp = _run(SHARP, chunk_size=1000)
    assert np.isfinite(sharp.runs["sharpness_init"]).all()
    _sharded_equals_one_device([SHARP], [sharp], tmp_path)


def test_auto_chunk_size_respects_memory_budget():
    """The chunk is halved from the requested 100 blocks (100, 50, 25, 12, 6, 3, 1) until the
    estimated need fits the budget: with a budget between the need of 3 and of 6 blocks it is
    3 blocks, not one; a budget that fits 100 keeps 100, and one under the need of a single
    block still runs one (the grid check refuses those before this)."""
    from trainscape.engine import plan
    from trainscape.io import memory
    from trainscape.sweep import prepare
    from trainscape.train import loop

    prep = prepare.Prepared(ts.parse(TINY))
    step = prep.block * 2
    recorded = len(loop.record_steps(prep.static.steps, prep.static.record_every))

    def need(runs):  # device estimate and two chunks' host tables (one saved while the next
        # computes), as the fit counts them
        return plan.memory_need(prep, runs) + 2 * memory.host_results_bytes(runs, recorded)

    assert need(3 * step) < need(6 * step)
    budget = (need(3 * step) + need(6 * step)) / 2
    assert plan.fit_budget(prep, 100 * step, 2, budget) == 3 * step
    assert plan.fit_budget(prep, 100 * step, 2, need(100 * step)) == 100 * step
    assert plan.fit_budget(prep, 100 * step, 2, need(step) / 2) == step
    assert plan.fit_budget(prep, 100 * step, 2, None) == 100 * step  # unknown: fits anything


def test_a_memory_budget_below_the_smallest_chunk_is_refused(tmp_path, capsys):
    """The chunk is never cut below one block per device, so a budget under that chunk's need
    (device estimate and two chunks' host tables, as fit_budget counts them) was silently
    exceeded; it is refused in one line, before anything is written. At the need, it runs."""
    from trainscape.cli.main import main
    from trainscape.engine import plan
    from trainscape.io import memory
    from trainscape.sweep import prepare
    from trainscape.train import loop

    prep = prepare.Prepared(ts.parse(TINY))
    group = prep.block * len(plan.run_devices())
    recorded = len(loop.record_steps(prep.static.steps, prep.static.record_every))
    need = plan.memory_need(prep, group) + 2 * memory.host_results_bytes(group, recorded)
    with pytest.raises(InputError, match=r"^memory budget \(--memory-budget, memory_budget=\): "
                                         r"got .*, but its smallest chunk \(\d+ runs, .*\) needs"
                                         r" about .*; give at least that, or reduce"):
        ts.run(TINY, memory_budget=need - 1, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert len(ts.run(TINY, memory_budget=need, out=None, progress=False).runs) == prep.n_runs
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "tiny"\n[data]\nname = "moons"\nn_samples = 64\n[model]\n'
                   'hidden = [8, 8]\ninit = "normal"\n[train]\nsteps = 30\n[sweep]\n'
                   'learning_rate = {geomspace = [0.01, 30.0], num = 6}\nseed = {range = 3}\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--memory-budget", "1000",
                 "--no-progress"]) == 2
    assert "memory budget" in capsys.readouterr().err and not (tmp_path / "o").exists()


def _block_program(cfg):
    """The sweep program of `cfg` for one block of runs on one device, lowered with the
    arguments `execute.run_chunks` gives it: the block's hyperparameters, the data and each
    run's starting weights from the init program (their shapes: nothing is computed) and
    which runs are padding (none)."""
    prep = prepare.Prepared(ts.parse(cfg))
    fn = engine_compile.compiled_sweep(prep.static, ())
    hp = {k: v.astype(np.int32 if k == "seed" else np.float32)
          for k, v in prep.hparams(np.arange(plan.BLOCK)).items()}
    init = jax.eval_shape(engine_compile.compiled_init(prep.static.model), hp["seed"])
    real = np.ones(plan.BLOCK, bool)
    return fn.lower(hp, prep.x.astype(np.float32), prep.y.astype(np.float32), init, real)


def _lowered_block(cfg) -> str:
    """StableHLO text of the sweep program of `cfg` for one block of runs on one device."""
    return _block_program(cfg).as_text()


@pytest.mark.parametrize("precision, marker", [("highest", True), ("default", False)])
def test_matmul_precision_is_fixed_in_the_compiled_program(precision, marker):
    """[train] matmul_precision reaches every dot of the traced program (on a GPU "default"
    would mean TF32); the result metadata records it."""

    cfg = {**TINY, "train": {**TINY["train"], "matmul_precision": precision}}
    text = _lowered_block(cfg)
    dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    assert dots
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in dots) is marker
    res = ts.run(cfg, out=None, progress=False)
    want = "highest" if marker else str(jax.config.jax_default_matmul_precision or "default")
    assert res.meta["matmul_precision"] == want
    # the XLA options the programs were compiled with are recorded too (they move last bits)
    assert res.meta["xla_compiler_options"] == (
        engine_compile.CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {})
    assert engine_compile.compiler_options("gpu") == {}


@pytest.mark.cpu_only("LAPACK's eigh")
@pytest.mark.parametrize("which", ["largest", "magnitude"])
def test_sharpness_program_gives_lapack_one_matrix_at_a_time_on_cpu(which):
    """jaxlib's batched LAPACK eigh waits, inside XLA's intra-op pool, for pieces of its batch
    queued on that same pool; two of them at once on a 2-thread pool deadlocked the seed
    question with metrics.sharpness (0% CPU, forever). On CPU the sweep must therefore only
    ever hand LAPACK single matrices (and still hand it some: the Ritz problems are solved)."""
    text = _lowered_block({**TINY, "metrics": {"sharpness": True, "sharpness_every": 10,
                                               "sharpness_which": which}})
    calls = [line for line in text.splitlines() if "syevd" in line and "custom_call" in line]
    assert calls, "no LAPACK eigh in the sharpness program"
    shapes = [re.search(r":\s*\(tensor<([0-9x]+)x\w+>", line).group(1) for line in calls]
    assert all(s.count("x") == 1 for s in shapes), shapes  # k x k, no run axis in front
    # and the unbatched solves give jnp.linalg.eigh's own answer, run by run
    from trainscape.nn import curvature

    t = np.random.default_rng(0).normal(size=(5, 7, 7)).astype(np.float32)
    t = t + t.transpose(0, 2, 1)
    evals, evecs = jax.jit(jax.vmap(curvature._eigh))(t)
    np.testing.assert_allclose(evals, np.linalg.eigvalsh(t), rtol=1e-5, atol=1e-5)
    recon = np.einsum("bij,bj,bkj->bik", evecs, evals, evecs)
    np.testing.assert_allclose(recon, t, atol=1e-4)


@pytest.mark.parametrize("train", [{"steps": 30}, {"steps": 30, "record_every": 7}],
                         ids=["every-step", "every-7th"])
def test_the_step_appears_once_in_the_training_program(train):
    """The training program holds one copy of the step, the evaluation at `steps` included,
    so XLA compiles its kernels once: as many matrix products as one value_and_grad of the
    model's loss, vmapped over the block and lowered on its own. A separate final forward
    pass would add the forward products, and a second copy of the step for a last block
    shorter than record_every (30 = 4 x 7 + 2) all of them again."""
    from trainscape.engine import compile as engine_compile
    from trainscape.engine import plan
    from trainscape.nn import losses
    from trainscape.sweep import prepare

    prep = prepare.Prepared(ts.parse({**TINY, "train": train}))
    x, y = prep.x.astype(np.float32), prep.y.astype(np.float32)
    init = jax.eval_shape(engine_compile.compiled_init(prep.static.model),
                          np.zeros(plan.BLOCK, np.int32))
    loss = losses.LOSSES[prep.static.loss]
    one = jax.jit(jax.vmap(jax.value_and_grad(
        lambda p: loss(prep.static.model.apply(p, x), y)))).lower(init).as_text()
    want = one.count("stablehlo.dot_general")
    assert want >= 2 * len(TINY["model"]["hidden"]) + 1  # forward and backward products
    assert _lowered_block({**TINY, "train": train}).count("stablehlo.dot_general") == want


@pytest.mark.cpu_only("LAPACK's eigh")
def test_the_sharpness_is_measured_at_one_place_in_the_program():
    """The sharpness at the start, every sharpness_every steps and at the end comes from one
    call site (a `cond` in the loop over recorded steps): one Lanczos, so one LAPACK eigh in
    the program, where three call sites gave three copies of its kernels to compile."""
    text = _lowered_block(SHARP)
    assert sum("syevd" in line and "custom_call" in line for line in text.splitlines()) == 1


@functools.cache
def _optimized_moons_block(hidden: tuple[int, ...], n=256):
    """XLA's optimized HLO of one compiled block (BLOCK runs) of an MLP on n moons points."""
    cfg = {"data": {"name": "moons", "n_samples": n}, "model": {"hidden": list(hidden)},
           "train": {"steps": 5}, "sweep": {"learning_rate": [0.1]}}
    return _block_program(cfg).compile().as_text()


@pytest.mark.cpu_only("XLA:CPU's optimized HLO")
@pytest.mark.parametrize("hidden, feature_major", [([16, 16], True), ([300], False)])
def test_narrow_networks_run_feature_major_in_the_compiled_program(hidden, feature_major):
    """The layout the program actually runs in (XLA's optimized HLO for one block): layers
    narrower than the n samples keep the samples on the last axis of every activation fusion
    and the step loop carries one copy of the data, transposed, (d, n), shared by the block's
    runs; a layer at least n wide keeps (n, width) activations and a copy of the data per
    run, (B, n, d). In the (n, 16) layout XLA:CPU's elementwise loops ran 3-4x slower per
    element."""
    n, b = 256, plan.BLOCK
    text = _optimized_moons_block(tuple(hidden), n)
    w = hidden[0]
    loops = [line.split(" while(")[0] for line in text.splitlines()
             if " while(" in line and f"f32[{b},{n}]" not in line and "f32[256]" in line]
    assert len(loops) == 1  # the step loop: the one carrying y
    shared_t, per_run = f"f32[2,{n}]" in loops[0], f"f32[{b},{n},2]" in loops[0]
    assert (shared_t, per_run) == (feature_major, not feature_major)
    assert f"f32[{b},2,{n}]" not in loops[0] and f"f32[{n},2]" not in loops[0]
    act_fm = re.findall(rf"= f32\[{b},{w},{n}\]\S* fusion\(.*kind=kLoop", text)
    act_sm = re.findall(rf"= f32\[{b},{n},{w}\]\S* fusion\(.*kind=kLoop", text)
    assert (bool(act_fm), bool(act_sm)) == (feature_major, not feature_major)


@pytest.mark.cpu_only("XLA:CPU's matmul forms")
def test_feature_major_matmuls_take_the_form_xla_hands_to_its_small_matrix_library():
    """Every matmul of a 16-wide network that produces a (B, 16, n) activation or its gradient
    contracts the last axis of its left operand: the only form XLA:CPU gives YNNPACK. The plain
    w.T @ h contracted w's first axis and went to Eigen's transposed-operand path instead, at
    less than half the speed (models._linear_fm)."""
    n, b = 256, plan.BLOCK
    text = _optimized_moons_block((16, 16), n)
    dots = [line for line in text.splitlines()
            if re.search(rf"= f32\[{b},16,{n}\]\S* dot\(", line)]
    # at least layer 2's forward product and its input gradient (layer 1, with 2 inputs, is
    # written as multiply-adds: models.FM_UNROLL_MAX_FAN_IN)
    assert len(dots) >= 2
    assert all("lhs_contracting_dims={2}" in line for line in dots), dots


@pytest.mark.parametrize("hidden, shared", [([16, 16], True), ([128], False)])
def test_feature_major_runs_share_one_copy_of_the_data_with_the_same_results(
        hidden, shared, monkeypatch, x64):
    """Feature-major networks train every run of a block on one shared x, which turns the
    first layer's weight gradient into a single matmul over the block (`compiled_sweep`).
    Training curves must match the per-run broadcast copy the other networks get, which is
    checked against NumPy backprop in test_reference.py. In float64: the two forms sum in
    different orders, and in float32 the lr-3 runs amplified that last-bit difference past
    any fixed tolerance on a CPU without AVX-512 (8e-6 at step 30 on an AMD Zen 1)."""
    cfg = {**TINY, "model": {**TINY["model"], "hidden": hidden},
           "train": {**TINY["train"], "dtype": "float64"},
           "data": {"name": "moons", "n_samples": 128},
           "sweep": {"learning_rate": {"geomspace": [0.01, 3.0], "num": 4}, "seed": {"range": 2}}}
    prep = prepare.Prepared(ts.parse(cfg))
    assert plan.shares_data(prep.static, prep.x) is shared
    a = _run(cfg)
    engine_compile.compiled_sweep.cache_clear()
    monkeypatch.setattr(plan, "shares_data", lambda static, x: False)
    b = _run(cfg)
    engine_compile.compiled_sweep.cache_clear()
    np.testing.assert_allclose(a.curves["loss"], b.curves["loss"], rtol=1e-11)
    assert a.runs["label"].tolist() == b.runs["label"].tolist()


def test_init_program_draws_what_the_training_program_would_draw():
    """Each run's starting weights come from a program of their own (engine_compile.compiled_init,
    compiled with less LLVM optimization on CPU): they must be bit for bit what the default
    compiler makes of the same draw, and a run must start from its seed's draw whatever else
    the grid sweeps. The weights' distribution itself is checked in test_reference_paths."""
    seeds = np.arange(plan.BLOCK, dtype=np.int32)
    model = prepare.Prepared(ts.parse(TINY)).static.model  # the init program the sweeps below use
    got = engine_compile.compiled_init(model)(seeds)
    want = jax.jit(jax.vmap(lambda s: loop.init_params_of(model, s)))(seeds)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the initial loss of a run depends only on its seed, not on what else the grid sweeps
    a = _run({**TINY, "sweep": {"learning_rate": [0.1], "seed": [4, 1]}})
    b = _run({**TINY, "train": {"steps": 30, "record_every": 7},  # another training program
              "sweep": {"seed": [1, 2, 4], "learning_rate": [5.0]}})
    pa = a.runs.set_index("seed")["initial_loss"]
    pb = b.runs.set_index("seed")["initial_loss"]
    assert pa[1] == pb[1] and pa[4] == pb[4] and pa[1] != pa[4]


def test_a_custom_model_gets_a_copy_of_the_data_per_run():
    model = ts.Model(init=lambda key: {"w": jax.random.normal(key, (2, 1))},
                     apply=lambda p, x: x @ p["w"])
    static = prepare.Prepared(ts.parse(TINY)).static._replace(model=model)
    assert plan.shares_data(static, np.zeros((64, 2), np.float32)) is False


def test_512_bit_vectors_are_asked_for_only_on_avx512_cpus(tmp_path):
    avx512 = tmp_path / "a"
    avx512.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512dq\n")
    avx2 = tmp_path / "b"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\nbugs\t\t: avx512f_fake\n")
    assert engine_compile._has_avx512(str(avx512)) and not engine_compile._has_avx512(str(avx2))
    assert not engine_compile._has_avx512(str(tmp_path / "missing"))


def _n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


@pytest.mark.cpu_only("the CPU's groups (SUB_BATCH_FLOPS)")
def test_sub_batch_is_the_smallest_power_of_two_group_doing_enough_work_per_step():
    """On CPU a block's runs are trained in groups of `sub_batch` runs: the smallest power of
    two whose work per step, 6 x rows x parameters per run, reaches SUB_BATCH_FLOPS (32 M)."""
    def sub(data, hidden, **train):
        cfg = {"data": data, "model": {"hidden": hidden}, "train": {"steps": 5, **train},
               "sweep": {"learning_rate": [0.1]}}
        prep = prepare.Prepared(ts.parse(cfg))
        return plan.sub_batch(prep.static, prep.x, "cpu"), prep

    cancer, moons = {"name": "breast_cancer"}, {"name": "moons", "n_samples": 256}
    # the seed network: 6 x 569 x 12,289 = 42.0 M per run-step, one run at a time
    one, seed_prep = sub(cancer, [128, 64])
    assert plan.n_params(seed_prep.static) == _n_params((30, 128, 64, 1)) == 12_289
    assert one == 1
    # 30-32-32-1: 7.1 M -> 8 runs (4 x 7.1 M = 28.4 M is not enough)
    assert sub(cancer, [32, 32])[0] == 8
    # the `small` workload: 6 x 256 x 337 = 0.52 M -> 61 runs' worth: the whole block
    assert sub(moons, [16, 16])[0] == plan.BLOCK
    # mini-batches count their rows: 6 x 64 x 12,289 = 4.7 M -> 8 runs (37.7 M)
    assert sub(cancer, [128, 64], batch_size=64)[0] == 8
    n, prep = sub(cancer, [128, 64])
    # a GPU trains its whole block at once: 256 runs of the seed network
    assert plan.sub_batch(prep.static, prep.x, "gpu") == 256


@pytest.mark.cpu_only("the CPU's groups (SUB_BATCH_FLOPS)")
@pytest.mark.parametrize("group", [1, 4, 32])
def test_runs_trained_in_groups_match_numpy_gradient_descent(group, monkeypatch, x64):
    """Whatever the group size, every run of a block trains on its own learning rate and
    lands in its own row: each curve equals NumPy gradient descent at that rate (float64)."""
    x, y = ts.load_dataset({"name": "breast_cancer", "standardize": True})
    x, y = x[:100], y[:100]
    sizes = (30, 32, 32, 1)
    per_run = 6 * 100 * _n_params(sizes)
    monkeypatch.setattr(plan, "SUB_BATCH_FLOPS", per_run * group)
    engine_compile.compiled_sweep.cache_clear()
    params = seed_init(np.random.default_rng(3), sizes)
    lrs = [0.003, 0.03, 0.1, 0.3, 1.0, 2.0]
    cfg = {"data": {"standardize": False},
           "model": {"hidden": list(sizes[1:-1])}, "train": {"steps": 25, "dtype": "float64"},
           "sweep": {"learning_rate": lrs}}
    prep = prepare.Prepared(ts.parse(cfg), data=(x, y), init_params=params)
    assert plan.sub_batch(prep.static, prep.x, "cpu") == group
    try:
        res = ts.run(cfg, data=(x, y), init_params=params, out=None, progress=False)
    finally:
        engine_compile.compiled_sweep.cache_clear()
    curves = res.curves.pivot(index="run_id", columns="step", values="loss")
    for run_id, lr in zip(res.runs["run_id"], res.runs["learning_rate"], strict=True):
        ref = gd_curve(params, x, y, lr, 25)
        np.testing.assert_allclose(curves.loc[run_id].to_numpy(), ref, rtol=1e-8,
                                   err_msg=f"lr {lr}")


@pytest.mark.cpu_only("the CPU's sub-batch groups")
@pytest.mark.parametrize("work, sub", [(0, 1), (3, 4)])
@pytest.mark.cpu_only("the CPU's sub-batch groups")
def test_groups_of_padding_only_are_skipped(work, sub, monkeypatch):
    """A block whose last runs are padding (a grid smaller than the block) trains only the
    groups that hold a real run: the others return zeros, which no training produces, and
    the real runs get exactly what they get in a block of real runs only. (`work`: the group
    rule's threshold in run-steps of this network, giving groups of `sub` runs.)"""
    prep = prepare.Prepared(ts.parse(TINY))
    monkeypatch.setattr(plan, "SUB_BATCH_FLOPS",
                        work * plan.run_step_flops(prep.static, prep.x))
    engine_compile.compiled_sweep.cache_clear()
    try:
        assert plan.sub_batch(prep.static, prep.x, "cpu") == sub
        fn = engine_compile.compiled_sweep(prep.static, ())
        hp = {k: v.astype(np.int32 if k == "seed" else np.float32)
              for k, v in prep.hparams(np.arange(plan.BLOCK) % prep.n_runs).items()}
        init = engine_compile.compiled_init(prep.static.model)(hp["seed"])
        x, y = prep.x.astype(np.float32), prep.y.astype(np.float32)
        n_real = 5
        full = jax.device_get(fn(hp, x, y, init, np.ones(plan.BLOCK, bool)))
        part = jax.device_get(fn(hp, x, y, init, np.arange(plan.BLOCK) < n_real))
    finally:
        engine_compile.compiled_sweep.cache_clear()
    trained = -(-n_real // sub) * sub  # the real runs' groups, padding in them included
    assert np.all(part.loss_R[:trained] != 0)  # trained (NaN once a run has blown up)
    np.testing.assert_array_equal(part.loss_R[:trained], full.loss_R[:trained])
    np.testing.assert_array_equal(part.final_loss[:trained], full.final_loss[:trained])
    assert not np.any(part.loss_R[trained:]) and np.all(full.loss_R[trained:] != 0)


@pytest.mark.cpu_only("the CPU's blocks and groups")
def test_meta_records_how_the_engine_ran_each_program():
    """meta.json says how many runs were trained together and in which layout: one at a time,
    feature-major, for the seed network on breast cancer (42 MFLOP per run-step); the whole
    block for the tiny moons network; sample-major when a layer is as wide as the data."""
    def facts(data, hidden, steps=2):
        cfg = {"data": data, "model": {"hidden": hidden}, "train": {"steps": steps},
               "sweep": {"learning_rate": [0.1]}}
        return _run(cfg).meta["engine"]

    seed = facts({"name": "breast_cancer"}, [128, 64])
    assert seed["block_runs_per_device"] == plan.BLOCK
    assert seed["programs"] == [{"dtype": "float32", "batch_size": None,
                                 "runs_trained_together": 1, "layout": "features"}]
    # TINY's training program (compiled once for the file)
    tiny = facts({"name": "moons", "n_samples": 64}, [8, 8], steps=30)["programs"][0]
    assert (tiny["runs_trained_together"], tiny["layout"]) == (plan.BLOCK, "features")
    wide = facts({"name": "moons", "n_samples": 64}, [64])["programs"][0]
    assert wide["layout"] == "samples"


@pytest.mark.parametrize("extra", [
    {"metrics": {"sharpness_every": 4, "sharpness_iters": 8}},
    {"train": {"steps": 12, "dtype": "float64", "batch_size": 16},
     "model": {"hidden": [8, 8], "dropout": 0.2}},
], ids=["sharpness", "minibatch-dropout"])
@pytest.mark.cpu_only("the CPU's sub-batch groups")
@pytest.mark.slow  # 35-40 s of compiling on 2 cores; plain runs in groups of 1, 4 and 32 are
# checked against NumPy by test_runs_trained_in_groups_match_numpy_gradient_descent
def test_groups_of_one_run_give_the_whole_block_results(extra, monkeypatch):
    """Trained one run at a time, every run must give what the whole block gives: with the
    sharpness measured inside the step loop (a `cond` every few steps) and at both ends, and
    with mini-batches and dropout drawn from each run's own seed (float64, so only a wrong
    run-to-row mapping, a broken branch or a shared random stream could differ)."""
    cfg = {"data": {"name": "moons", "n_samples": 64}, "model": {"hidden": [8, 8]},
           "train": {"steps": 12, "dtype": "float64"},
           "sweep": {"learning_rate": [0.05, 0.5, 3.0], "seed": {"range": 2}}, **extra}
    out = {}
    for name, flops in (("block", float("inf")), ("one", 0.0)):
        monkeypatch.setattr(plan, "SUB_BATCH_FLOPS", flops)
        engine_compile.compiled_sweep.cache_clear()
        try:
            out[name] = _run(cfg)
        finally:
            engine_compile.compiled_sweep.cache_clear()
    assert out["one"].meta["engine"]["programs"][0]["runs_trained_together"] == 1
    assert out["block"].meta["engine"]["programs"][0]["runs_trained_together"] == plan.BLOCK
    a, b = out["block"], out["one"]
    np.testing.assert_allclose(b.runs["final_loss"], a.runs["final_loss"], rtol=1e-9)
    np.testing.assert_allclose(b.curves["loss"], a.curves["loss"], rtol=1e-9)
    assert a.runs["final_loss"].nunique() == len(a.runs)  # every run trained differently
    if "metrics" in extra:
        for col in ("sharpness_init", "sharpness_final"):
            np.testing.assert_allclose(b.runs[col], a.runs[col], rtol=1e-9, err_msg=col)
        assert a.curves["sharpness"].notna().sum() > 2 * len(a.runs)
        np.testing.assert_allclose(b.curves["sharpness"], a.curves["sharpness"], rtol=1e-9)
