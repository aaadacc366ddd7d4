import json
import sys

import numpy as np
import pytest
from numpy_mlp import gd_curve

import trainscape
from trainscape.bench import peers as bench
from trainscape.errors import ConfigError, InputError

# Small enough that every peer runs in well under a second once compiled.
TINY = bench.Workload(
    name="tiny",
    data={"name": "moons", "n_samples": 32, "noise": 0.1, "data_seed": 0, "standardize": True},
    hidden=(5, 3),
    init="normal",
    steps=6,
    lr_range=(1e-2, 1.0),
    n_lr=2,
    n_seeds=2,
    subset_runs=2,
)


@pytest.fixture
def small_matmul(monkeypatch):
    # The 2048 matmul reference takes seconds on 2 cores; the report format does not need it.
    monkeypatch.setattr(bench, "MATMUL_N", 128)


def test_workload_configs_match_the_brief():
    assert bench.workload_config("seed") == {
        "name": "bench-seed",
        "data": {"name": "breast_cancer", "standardize": True},
        "model": {"hidden": [128, 64], "activation": "tanh", "init": "seed"},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd"},
        "train": {"steps": 200, "dtype": "float32", "record_every": 1},
        "sweep": {
            "learning_rate": {"geomspace": [0.001, 10.0], "num": 16},
            "seed": {"range": 16},
        },
    }
    small = bench.workload_config("small")
    assert small["data"] == {
        "name": "moons",
        "n_samples": 256,
        "noise": 0.1,
        "data_seed": 0,
        "standardize": True,
    }
    assert small["model"] == {"hidden": [16, 16], "activation": "tanh", "init": "normal"}
    assert small["train"]["steps"] == 300
    assert small["sweep"]["learning_rate"]["num"] == 64 and small["sweep"]["seed"]["range"] == 64
    assert bench.WORKLOADS["small"].n_runs == 4096 and bench.WORKLOADS["seed"].n_runs == 256


def test_unknown_workload_is_a_config_error():
    with pytest.raises(ConfigError, match="allowed: seed, small"):
        bench.main("huge")


def test_flop_count_on_known_shape():
    # 30-128-64-1 on 569 samples: 6 * 569 * (3840 + 8192 + 64)
    assert bench.useful_flops_per_run_step(569, (30, 128, 64, 1)) == 6 * 569 * 12096
    assert bench.useful_flops_per_run_step(10, (2, 3, 1)) == 6 * 10 * (6 + 3)


@pytest.mark.parametrize("feature_major", [True, False])
@pytest.mark.parametrize(("n", "sizes"), [(569, (30, 128, 64, 1)), (32, (2, 5, 3, 1))])
def test_step_products_are_the_useful_flops_less_the_data_gradient(n, sizes, feature_major):
    prods = bench.step_products(n, sizes, feature_major)
    outs = [np.tensordot(np.zeros(a), np.zeros(b), axes=(c[0], c[1])).shape for a, b, c in prods]
    flops = sum(2 * int(np.prod(a)) * b[1 - c[1]] for a, b, c in prods)
    # forward (2), weight gradient (2) and input gradient (2) for every layer but the first,
    # whose input is the data
    assert flops == bench.useful_flops_per_run_step(n, sizes) - 2 * n * sizes[0] * sizes[1]
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    act = (lambda w: (w, n)) if feature_major else (lambda w: (n, w))
    want = []
    for i, (fi, fo) in enumerate(layers):
        want += [act(fo), (fi, fo)] + ([act(fi)] if i else [])
    assert outs == want


def test_data_and_init_distributions():
    X, y = bench.load_data(bench.WORKLOADS["seed"].data)
    assert X.shape == (569, 30) and X.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(0), 1, atol=1e-5)
    p = bench.init_params((30, 128, 64, 1), "seed", 3)
    assert 0 <= p[0][0].min() and p[0][0].max() < 1
    assert p[1][0].min() < 0 and all(not b.any() for _, b in p)
    q = bench.init_params((200, 400, 1), "normal", 0)
    assert q[0][0].std() == pytest.approx(np.sqrt(1 / 200), rel=0.02)


def test_subset_spans_every_lr_bucket():
    w = bench.WORKLOADS["small"]
    lr, seed = w.grid()
    idx = bench.subset_indices(w.n_runs, 16)
    assert len(set(lr[idx])) == 16 and len(set(seed[idx])) == 16
    assert lr[idx].min() == lr.min()


def test_numpy_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 3))
    y = (rng.random(7) > 0.5).astype(np.float64)
    params = [
        (rng.standard_normal((3, 4)), rng.standard_normal(4)),
        (rng.standard_normal((4, 2)), rng.standard_normal(2)),
        (rng.standard_normal((2, 1)), rng.standard_normal(1)),
    ]
    loss, grads = bench.np_loss_and_grads(params, X, y)
    assert np.asarray(loss).dtype == np.float64
    eps = 1e-6
    for li, (W, b) in enumerate(params):
        for which, arr in ((0, W), (1, b)):
            fd = np.zeros_like(arr)
            for i in np.ndindex(arr.shape):
                old = arr[i]
                arr[i] = old + eps
                up = bench.np_loss_and_grads(params, X, y)[0]
                arr[i] = old - eps
                down = bench.np_loss_and_grads(params, X, y)[0]
                arr[i] = old
                fd[i] = (up - down) / (2 * eps)
            np.testing.assert_allclose(grads[li][which], fd, rtol=1e-6, atol=1e-9)


def test_numpy_and_jax_step_loop_agree():
    ag = bench._check_agreement(TINY, steps=20, lr=0.5, peers=["jax_step_loop"])
    assert ag["ok"], ag
    assert ag["max_rel_diff"]["jax_step_loop"] < 1e-5


@pytest.mark.parametrize("peer", ["numpy_loop", "jax_step_loop", "torch_eager", "torch_vmap"])
def test_peers_train_like_the_independent_numpy_reference(peer):
    """Every timed peer's loss curves against tests/numpy_mlp.py (float64, its own backprop),
    from the peer's float32 initial weights and data, two runs with different learning rates
    in one call (the batched peers must apply each run's own rate). The peers compute in
    float32: over 20 stable steps of a 2-5-3-1 network on 32 samples the gap is a few float32
    roundings (measured: at most 1.4e-7 relative, about 2 units of 2^-24); 2e-6 leaves room
    and is far below what a wrong rate (0.1 vs 0.5) or a wrong gradient does to the curve."""
    if peer in bench.TORCH_PEERS:
        pytest.importorskip("torch")  # installed by the test extra
    X, y = bench.load_data(TINY.data)
    p0s = [bench.init_params((2, *TINY.hidden, 1), TINY.init, seed) for seed in (0, 1)]
    lrs, steps = [0.1, 0.5], 20
    curves = bench._PREPARE[peer](X, y, p0s, lrs, steps)()
    assert curves.shape == (2, steps)
    for r, (p0, lr) in enumerate(zip(p0s, lrs, strict=True)):
        params = [{"w": W.astype(np.float64), "b": b.astype(np.float64)} for W, b in p0]
        ref = gd_curve(params, X.astype(np.float64), y.astype(np.float64), lr, steps)[:steps]
        np.testing.assert_allclose(curves[r], ref, rtol=2e-6, err_msg=f"{peer} lr {lr}")


def test_agreement_on_real_seed_workload():
    # The saturated "seed" init is where float32 rounding differences would show first.
    ag = bench._check_agreement("seed", steps=20, lr=0.3, peers=["jax_step_loop"])
    assert ag["ok"], ag


def test_run_bench_writes_json_and_md(tmp_path, small_matmul):
    res = bench.run_bench(
        [TINY], peers=["numpy_loop", "jax_step_loop"], repeats=1, out_dir=tmp_path, stream=None
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    md = (tmp_path / "bench.md").read_text()
    assert set(data) >= {"machine", "matmul", "repeats", "peers", "workloads"}
    assert set(data["machine"]) >= {
        "cpu_model",
        "cores_usable",
        "ram",
        "jax",
        "jaxlib",
        "numpy",
        "torch",
        "jax_backend",
        "jax_default_matmul_precision",
        "XLA_FLAGS",
        "numpy_blas",
        "trainscape",
    }
    # the engine's version: results and speed change with it
    import trainscape
    assert data["machine"]["trainscape"] == trainscape.__version__
    assert f"versions: trainscape {trainscape.__version__}," in md
    assert data["matmul"]["n"] == 128
    assert data["matmul"]["jax_flops"] > 0 and data["matmul"]["numpy_flops"] > 0
    w = data["workloads"]["tiny"]
    assert w["useful_flops_per_run_step"] == bench.useful_flops_per_run_step(32, (2, 5, 3, 1))
    for peer in ("numpy_loop", "jax_step_loop"):
        r = w["peers"][peer]
        assert r["status"] == "ok" and r["run_steps_per_s"] > 0 and 0 < r["utilization"]
        assert r["ratio_engine_over_peer"] is None  # engine not in this run
        assert r["final_loss_finite_fraction"] == 1.0  # lr <= 1 on moons: every run finite
    assert w["peers"]["numpy_loop"]["runs_timed"] == 2
    assert w["peers"]["jax_step_loop"]["runs_timed"] == 4
    assert w["agreement"]["ok"]
    assert w["targets"] == []  # a workload the issue sets no targets for
    assert "| numpy_loop |" in md and "| jax_step_loop |" in md and "matmul rate" in md
    mb = w["matmul_bound"]
    # 3 < 5 < 32 samples; 32 runs per group as the CPU plans (a GPU: its whole block)
    from trainscape.engine import plan

    assert mb["layout"] == "features"
    assert mb["runs_per_group"] == 32 or plan.block_runs() != plan.BLOCK
    assert mb["run_steps_per_s"] == max(mb["run_steps_per_s_in_rounds"]) > 0
    assert mb["engine_fraction"] is None  # engine not in this run
    assert "Matmul bound: the run-step's 8 matrix products alone" in md
    assert res["workloads"]["tiny"]["peers"].keys() == w["peers"].keys()


def test_torch_missing_skips_torch_peers(monkeypatch, small_matmul):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    res = bench.run_bench([TINY], peers=["torch_eager", "torch_vmap"], repeats=1, stream=None)
    for peer in ("torch_eager", "torch_vmap"):
        r = res["workloads"]["tiny"]["peers"][peer]
        assert r["status"] == "skipped" and "torch not installed" in r["note"]
    assert res["machine"]["torch"] is None


def test_engine_peer_skips_when_run_is_missing(monkeypatch):
    monkeypatch.delattr(trainscape, "run", raising=False)
    r = bench._time_engine(TINY, repeats=1)
    assert r["status"] == "skipped" and "engine not available" in r["note"]


def test_engine_peer_uses_the_public_call(monkeypatch):
    calls = []

    def fake_run(config, *, out, progress):
        calls.append((config, out, progress))
        return {"loss": np.zeros((4, 6), dtype=np.float32)}

    monkeypatch.setattr(trainscape, "run", fake_run, raising=False)
    r = bench._time_engine(TINY, repeats=2)
    assert r["status"] == "ok" and r["run_steps_timed"] == 4 * 6
    assert len(calls) == 3  # one warm-up sweep + two timed
    assert calls[0] == (bench.workload_config(TINY), None, False)


def test_targets_say_met_missed_and_what_utilization_a_ratio_needs():
    # Utilization is proportional to run-steps/s (same FLOPs, same denominator), so the engine
    # meets "ratio >= goal" over a peer exactly when its utilization reaches goal x the peer's.
    peers = {
        "engine": {"run_steps_per_s": 600.0, "utilization": 0.6, "ratio_engine_over_peer": 1.0},
        "numpy_loop": {"run_steps_per_s": 300.0, "utilization": 0.3,
                       "ratio_engine_over_peer": 2.0},
        "torch_eager": {"run_steps_per_s": 300.0, "utilization": 0.3,
                        "ratio_engine_over_peer": 2.0},
        "torch_vmap": {"status": "skipped", "note": "torch not installed"},
    }
    got = {t["target"]: t for t in bench.check_targets("seed", peers)}
    assert set(got) == {"utilization", "engine/numpy_loop", "engine/torch_eager",
                        "engine/torch_vmap", "engine/jax_step_loop"}
    assert got["utilization"]["met"] is True and got["utilization"]["goal"] == 0.55
    assert got["engine/numpy_loop"]["met"] is True  # 2.0 >= 1.5
    assert got["engine/numpy_loop"]["needs_utilization"] == pytest.approx(1.5 * 0.3)
    assert got["engine/torch_eager"]["met"] is False  # 2.0 < 4
    assert got["engine/torch_eager"]["needs_utilization"] == pytest.approx(4 * 0.3)
    for missing in ("engine/torch_vmap", "engine/jax_step_loop"):
        assert got[missing]["met"] is None and got[missing]["measured"] is None
    assert bench.check_targets("tiny", peers) == []  # only the workloads have targets

    wres = {"n_runs": 4, "steps": 6, "layer_sizes": [2, 5, 3, 1], "n_samples": 32,
            "useful_flops_per_run_step": 1, "peers": {},
            "agreement": {"steps": 1, "lr": 0.1, "seed": 0, "rtol": 1e-4, "max_rel_diff": {},
                          "ok": True},
            "targets": list(got.values())}
    lines = bench.format_table("seed", wres).splitlines()
    eager = next(ln for ln in lines if ln.startswith("| engine/torch_eager |"))
    assert eager.endswith("| 4x | 2.00x | no | 120.0% (above the dense matmul rate) |")
    numpy_row = next(ln for ln in lines if ln.startswith("| engine/numpy_loop |"))
    assert numpy_row.endswith("| yes | 45.0% |")

    # with a matmul bound of 40 % utilization, a ratio needing 45 % is flagged as above it
    wres["matmul_bound"] = {"products_per_run_step": 8, "flop_per_run_step": 10,
                            "layout": "features", "runs_per_group": 1, "devices": 2,
                            "run_steps_per_s_in_rounds": [1.0, 2.0], "run_steps_per_s": 2.0,
                            "utilization": 0.4, "engine_fraction": 0.75}
    text = bench.format_table("seed", wres)
    numpy_row = next(ln for ln in text.splitlines() if ln.startswith("| engine/numpy_loop |"))
    assert numpy_row.endswith("| yes | 45.0% (above the matmul bound) |")
    assert ("(10 FLOP; feature-major, 1 run per group, one group per device on 2 devices, best "
            "of 2) run at 2 run-steps/s, 40.0% utilization; the engine reaches 75.0% of that."
            ) in text
    # an engine faster than its products timed alone is not bound by them: no flag
    wres["matmul_bound"]["engine_fraction"] = 1.07
    text = bench.format_table("seed", wres)
    numpy_row = next(ln for ln in text.splitlines() if ln.startswith("| engine/numpy_loop |"))
    assert numpy_row.endswith("| yes | 45.0% |")


def test_peers_are_timed_in_interleaved_rounds_and_a_failing_peer_is_isolated():
    calls = []

    def peer(name, fail_at=None):
        def once():
            calls.append(name)
            if fail_at is not None and calls.count(name) == fail_at:
                raise RuntimeError("boom")
        return {"status": "ok", "run_steps_timed": 10, "note": name}, once

    setups = {"a": peer("a"), "b": peer("b", fail_at=2), "c": ({"status": "skipped"}, None)}
    res = bench._time_rounds(setups, 3, between=lambda: calls.append("|"))
    # round r times every peer once before any peer's round r + 1, starting one peer further
    # along each round (b failed in its second call, so the third round is a's alone)
    assert calls == ["a", "b", "|", "b", "a", "|", "a", "|"]
    assert res["a"]["status"] == "ok" and len(res["a"]["seconds"]) == 3
    assert res["a"]["run_steps_per_s"] == pytest.approx(10 / min(res["a"]["seconds"]))
    assert res["b"]["status"] == "error" and "boom" in res["b"]["note"]
    assert res["c"] == {"status": "skipped"}


def test_each_round_starts_one_peer_further_along():
    calls = []

    def peer(name):
        return {"status": "ok", "run_steps_timed": 1}, lambda: calls.append(name)

    bench._time_rounds({p: peer(p) for p in "abc"}, 4, between=lambda: calls.append("|"))
    assert "".join(calls) == "abc|bca|cab|abc|"


def test_utilization_uses_the_best_matmul_rate_of_the_run(monkeypatch, small_matmul):
    rates = iter([5e9, 7e9])
    monkeypatch.setattr(bench, "_matmul_timer", lambda n=None: lambda: next(rates))
    w = bench.bench_workload(TINY, ["numpy_loop"], 2, 6e9, stream=None)
    assert w["matmul_flops_in_rounds"] == [5e9, 7e9] and w["matmul_flops_used"] == 7e9
    r = w["peers"]["numpy_loop"]
    assert r["utilization"] == pytest.approx(
        r["run_steps_per_s"] * w["useful_flops_per_run_step"] / 7e9)


@pytest.mark.cpu_only("the 2-core CPU targets are reported on a CPU only")
def test_targets_are_reported_on_cpu_only(monkeypatch, small_matmul):
    import dataclasses

    named_small = dataclasses.replace(TINY, name="small")  # TINY's size, `small`'s targets
    on_cpu = bench.bench_workload(named_small, ["numpy_loop"], 1, 1e9, stream=None)
    assert [t["target"] for t in on_cpu["targets"]][:2] == ["utilization", "engine/numpy_loop"]
    monkeypatch.setattr(bench.jax, "default_backend", lambda: "gpu")
    assert bench.bench_workload(named_small, ["numpy_loop"], 1, 1e9, stream=None)["targets"] == []


def test_engine_gap_script_splits_a_sweep_into_its_parts(tmp_path, monkeypatch, traces):
    """experiments/engine_gap.py (a GPU diagnostic that reaches into the engine's internals):
    on a tiny workload it runs, accounts for every run-step and writes what it printed. Its
    timer is replaced by one that still runs each timed call but reports fixed seconds (init 2,
    train 4, ts.run 8, the step loop 0.5, the variants 5 and 2), so every figure is checked against
    the value worked out by hand from them: TINY is 4 runs x 4 steps = 16 run-steps (the
    vmapped step loop times all 4 runs on every backend: TINY sets no vmap_runs subset)."""
    from types import SimpleNamespace

    from configs import experiment_script

    gap = experiment_script("engine_gap")
    from trainscape.engine import plan
    from trainscape.nn import models
    from trainscape.train import loop

    # the timer itself: rounds that rotate the order; each call's best (least) time, each timed
    # around its call alone
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0, 30.0, 30.5])
    calls, seen = [], []
    with monkeypatch.context() as m:
        m.setattr(gap, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
        best = gap._best_of_rounds({"a": lambda: calls.append("a"),
                                    "b": lambda: calls.append("b")}, 2,
                                   each_round=lambda b, r: seen.append((b, r)))
    assert calls == ["a", "b", "b", "a"]
    assert best == {"a": 0.5, "b": 1.0}
    assert seen == [({"a": 3.0, "b": 1.0}, 1), ({"a": 0.5, "b": 1.0}, 2)]
    # init, train, run, step loop, the variants samples_shared and unroll4
    fixed_seconds = {"init": 2.0, "train": 4.0, "run": 8.0, "step_loop": 0.5,
                     "samples_shared": 5.0, "unroll4": 2.0}

    def fixed(calls, repeats, name="", each_round=None):
        for call in calls.values():
            call()
        return {k: fixed_seconds[k] for k in calls}

    monkeypatch.setattr(gap, "_best_of_rounds", fixed)
    originals = (models.feature_major, plan.shares_data, loop._update_stats)
    traced = traces()
    placed = []
    real_place = gap.execute.place
    monkeypatch.setattr(gap.execute, "place",
                        lambda st, *a, **k: placed.append(st) or real_place(st, *a, **k))
    saved = []
    r = gap.measure(TINY, repeats=1, steps=4, variants=("samples_shared", "unroll4"),
                    save=saved.append)
    assert saved and saved[-1] is r and r["rounds"] == 1
    # a Static variant builds its program from the changed Static, the others from the sweep's
    unrolls = [st.unroll for st in placed]
    assert unrolls.count(4) == 1 and set(unrolls) == {None, 4}
    assert r["variants"]["unroll4"] == {"seconds": 2.0, "run_steps_per_second": 8.0,
                                        "vs_train": 2.0}
    # the variant's program was traced anew, and the engine is left as it was
    assert traces() > traced
    assert (models.feature_major, plan.shares_data, loop._update_stats) == originals
    v = r["variants"]["samples_shared"]
    assert v == {"seconds": 5.0, "run_steps_per_second": 3.2, "vs_train": 0.8}
    with pytest.raises(ValueError, match="variant"), gap.variant("no_such"):
        pass
    n_runs = TINY.n_runs
    assert n_runs == 4 and TINY.vmap_runs is None
    assert (r["runs"], r["steps"], r["step_loop_runs"]) == (4, 4, 4)
    assert r["dispatches"] == -(-n_runs // r["runs_per_dispatch"])
    assert r["seconds"] == {"init": 2.0, "train": 4.0, "run": 8.0, "step_loop": 0.5}
    assert r["run_steps_per_second"] == {"init": 8.0, "train": 4.0, "run": 2.0,
                                         "step_loop": 32.0}
    assert r["host_and_idle_seconds"] == 2.0  # 8 - 4 - 2
    with pytest.raises(SystemExit) as bad:
        gap.main(["--workload", "small", "--steps", "0"])
    assert bad.value.code == 2
    with pytest.raises(SystemExit) as bad:
        gap.main(["--workload", "small", "--variants", "samples_shared,nope"])
    assert bad.value.code == 2
    text = gap.format_gap(r)
    assert f"{n_runs} runs x 4 steps" in text and "train / step_loop" in text
    assert "train, samples_shared" in text


def test_diverging_workload_matches_the_design():
    cfg = bench.workload_config("diverging")
    assert cfg["data"] == bench.workload_config("small")["data"]  # moons, 256 samples
    assert cfg["model"] == {"hidden": [32, 32], "activation": "tanh", "init": "normal"}
    assert cfg["loss"] == {"name": "bce"} and cfg["optimizer"] == {"name": "sgd"}
    assert cfg["train"]["steps"] == 300
    assert cfg["sweep"] == {"learning_rate": {"geomspace": [1.0, 1e4], "num": 16},
                            "seed": {"range": 64}}
    assert bench.WORKLOADS["diverging"].n_runs == 1024


def test_early_exit_is_timed_against_the_engine_without_it(small_matmul):
    """Both engines in the same rounds: the ratio of their best times and of each round's,
    and the run-steps skipped (none here: no run of TINY blows up)."""
    res = bench.run_bench([TINY], peers=["engine", "engine_no_early_exit"], repeats=2,
                          stream=None)
    w = res["workloads"]["tiny"]
    on, off = w["peers"]["engine"], w["peers"]["engine_no_early_exit"]
    ee = w["early_exit"]
    assert ee["time_ratio_on_over_off"] == on["best_seconds"] / off["best_seconds"]
    rounds = zip(on["seconds"], off["seconds"], strict=True)
    assert ee["time_ratio_per_round"] == [a / b for a, b in rounds]
    assert ee["run_steps_skipped"] == on["run_steps_skipped"] == 0
    assert off["run_steps_skipped"] == 0 and ee["run_steps_total"] == 4 * 7
    assert "[train] early_exit = false" in off["note"]
    assert "Early exit: on/off time ratio" in bench.format_table("tiny", w)


def test_the_early_exit_target_is_met_at_or_below_its_ratio():
    def peers(on, off):
        return {"engine": {"best_seconds": on}, "engine_no_early_exit": {"best_seconds": off}}

    (met,) = bench.check_targets("diverging", peers(5.5, 10.0))
    (missed,) = bench.check_targets("diverging", peers(5.6, 10.0))
    assert met["met"] is True and missed["met"] is False
    assert missed["measured"] == pytest.approx(0.56) and missed["goal"] == 0.55
    (unknown,) = bench.check_targets("diverging", {"engine": {"best_seconds": 1.0}})
    assert unknown["met"] is None


# Bad input: one line, status 2, nothing written, and refused before any timing.


@pytest.fixture
def no_timing(monkeypatch):
    """A bench that gets as far as describing the machine has started work: fail if it does."""
    def started(*a, **k):
        raise AssertionError("the bench started before refusing its input")

    monkeypatch.setattr(bench, "machine_info", started)
    monkeypatch.setattr(bench, "measure_matmul_rate", started)


def _bench_cli(capsys, *args):
    from trainscape.cli.main import main

    rc = main(["bench", "--workload", "small", "--repeats", "1", *args])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, (rc, err)
    return err


def test_an_out_that_cannot_be_a_folder_is_refused_before_the_bench(
        tmp_path, monkeypatch, capsys, no_timing):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    assert "'afile': exists and is not a folder" in _bench_cli(capsys, "--out", "afile")
    assert "'afile' is a file, not a folder" in _bench_cli(capsys, "--out", "afile/sub")
    assert "folder 'nodir' does not exist" in _bench_cli(capsys, "--out", "nodir/sub")
    assert "bench: --out is empty" in _bench_cli(capsys, "--out", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("name", ["bench.json", "bench.md"])
def test_a_finished_bench_is_never_replaced(tmp_path, capsys, no_timing, name):
    (tmp_path / name).write_text("finished")
    err = _bench_cli(capsys, "--out", str(tmp_path))
    assert f"{str(tmp_path / name)!r} already exists; choose another folder" in err
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_text() == "finished"


def test_bench_files_are_written_whole_into_a_new_folder_and_then_kept(tmp_path, monkeypatch):
    """A stand-in bench (no timing): the files go through io.atomic into a folder made for
    them, and a second bench into that folder is refused before it starts."""
    from trainscape.io import atomic

    written = []

    def write_new(data, path):
        written.append(path.name)
        atomic_write(data, path)

    atomic_write = atomic.write_new
    monkeypatch.setattr(atomic, "write_new", write_new)
    monkeypatch.setattr(bench, "machine_info", dict)
    monkeypatch.setattr(bench, "measure_matmul_rate", lambda: {"jax_flops": 1.0})
    monkeypatch.setattr(bench, "bench_workload", lambda w, *a: {"done": w.name})
    monkeypatch.setattr(bench, "format_report", lambda result: "the report\n")
    out = tmp_path / "new"
    bench.run_bench([TINY], peers=["numpy_loop"], repeats=1, out_dir=out, stream=None)
    assert sorted(written) == ["bench.json", "bench.md"]
    assert json.loads((out / "bench.json").read_text())["workloads"] == {"tiny": {"done": "tiny"}}
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md"]
    with pytest.raises(InputError, match="bench.json' already exists"):
        bench.run_bench([TINY], peers=["numpy_loop"], repeats=1, out_dir=out, stream=None)
    assert len(written) == 2 and (out / "bench.md").read_text() == "the report\n"


def test_a_bench_file_made_while_the_bench_ran_is_kept(tmp_path, monkeypatch):
    """--out is checked before the bench, which takes minutes; a bench.json made there in the
    meantime (another bench into the same folder) was replaced when this one finished."""
    out = tmp_path / "race"
    out.mkdir()

    def meanwhile(w, *a):
        (out / "bench.json").write_text("the other bench")
        return {"done": w.name}

    monkeypatch.setattr(bench, "machine_info", dict)
    monkeypatch.setattr(bench, "measure_matmul_rate", lambda: {"jax_flops": 1.0})
    monkeypatch.setattr(bench, "bench_workload", meanwhile)
    monkeypatch.setattr(bench, "format_report", lambda result: "the report\n")
    with pytest.raises(InputError, match="bench.json appeared there while the bench ran"):
        bench.run_bench([TINY], peers=["numpy_loop"], repeats=1, out_dir=out, stream=None)
    assert (out / "bench.json").read_text() == "the other bench"


def test_peers_naming_no_peer_are_refused_with_the_allowed_ones(capsys, no_timing):
    err = _bench_cli(capsys, "--peers", ",,")
    assert "bench peers: got ',,', which names no peer; allowed: numpy_loop, " in err
    with pytest.raises(ConfigError, match="names no peer"):
        bench.run_bench([TINY], peers=[], repeats=1, stream=None)
