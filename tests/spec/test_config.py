"""Config parsing: every axis form, defaults, overrides, and errors that name the key."""

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from trainscape.errors import ConfigError
from trainscape.spec import schema as cfg
from trainscape.spec.defaults import SEED_QUESTION

ROOT = Path(__file__).resolve().parents[2]


def test_axis_forms():
    e = cfg.parse({"sweep": {
        "learning_rate": {"geomspace": [0.001, 10.0], "num": 21},
        "seed": {"range": 3},
        "init_scale": {"linspace": [0.5, 1.5], "num": 3},
        "weight_decay": [0.0, 0.1],
    }})
    lr = e.sweep["learning_rate"]
    assert len(lr) == 21 and lr[0] == 0.001 and lr[-1] == 10.0
    assert 0.01 in lr and 1.0 in lr  # exact grid points, not 0.010000000000000002
    assert e.sweep["seed"] == (0, 1, 2)
    assert e.sweep["init_scale"] == (0.5, 1.0, 1.5)
    assert e.sweep["weight_decay"] == (0.0, 0.1)
    assert cfg.parse({"sweep": {"seed": {"range": [5, 8]}}}).sweep["seed"] == (5, 6, 7)
    assert e.n_runs == 21 * 3 * 3 * 2


def test_defaults_fill_everything():
    e = cfg.parse({})
    assert e.model.hidden == (128, 64) and e.train.steps == 200
    assert e.train.dtype == "float32" and e.optimizer.name == "sgd" and e.loss.name == "bce"


def test_roundtrip_and_hash():
    e = cfg.parse(SEED_QUESTION)
    assert cfg.parse(e.to_dict()) == e
    assert cfg.parse(e.to_dict()).config_hash() == e.config_hash()
    assert cfg.parse({**SEED_QUESTION, "name": "other"}).config_hash() != e.config_hash()


def test_experiment_file_equals_builtin_default():
    with open(ROOT / "experiments" / "seed_question.toml", "rb") as f:
        assert cfg.parse(tomllib.load(f)) == cfg.parse(SEED_QUESTION)


def test_per_layer_axes_from_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[sweep]\n"learning_rate.0" = [0.1, 0.2]\nlearning_rate.1 = [0.3]\n')
    e = cfg.parse(p)
    assert e.sweep == {"learning_rate.0": (0.1, 0.2), "learning_rate.1": (0.3,)}


def test_overrides():
    raw = cfg.apply_overrides(SEED_QUESTION, [
        "train.steps=50", "model.activation=relu", "sweep.learning_rate=[0.1, 1.0]",
        "model.hidden=[4]"])
    e = cfg.parse(raw)
    assert e.train.steps == 50 and e.model.activation == "relu" and e.model.hidden == (4,)
    assert e.sweep["learning_rate"] == (0.1, 1.0)
    assert SEED_QUESTION["train"]["steps"] == 200  # the default itself is untouched


@pytest.mark.parametrize("bad, key", [
    ({"model": {"hidden": [0, 4]}}, "hidden"),
    ({"model": {"activation": "tahn"}}, "'tanh'"),
    ({"train": {"steps": 0}}, "steps"),
    ({"train": {"steps": "100"}}, "steps"),
    ({"train": {"dtype": "float8"}}, "dtype"),
    ({"train": {"matmul_precision": "tf32"}}, "matmul_precision"),
    ({"trian": {}}, "'train'"),
    ({"train": {"step": 3}}, "'steps'"),
    ({"sweep": {"learnin_rate": [0.1]}}, "'learning_rate'"),
    ({"sweep": {"learning_rate": [-0.1]}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": [0.0]}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": [float("nan")]}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": [float("inf")]}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": ["fast"]}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": []}}, "sweep.learning_rate"),
    ({"sweep": {"learning_rate": [0.1, 0.1]}}, "duplicated"),
    ({"sweep": {"learning_rate": {"geomspace": [0, 1], "num": 3}}}, "geomspace"),
    ({"sweep": {"learning_rate": {"geomspace": [0.1, 1]}}}, "num"),
    ({"sweep": {"learning_rate": {"geomspace": [0.01, 1.0], "num": 1}}}, "num >= 2"),
    ({"sweep": {"init_scale": {"linspace": [0.5, 2.0], "num": 1}}}, "num >= 2"),
    ({"sweep": {"seed": {"range": 0}}}, "sweep.seed"),
    ({"sweep": {"seed": [0.5]}}, "sweep.seed"),
    ({"sweep": {"momentum": [1.5]}}, "sweep.momentum"),
    ({"optimizer": {"name": "momentum"}, "sweep": {"momentum": [0.5, 1.0]}},
     "sweep.momentum: got 1.0; must be in [0, 1)"),
    ({"sweep": {"init_scale": {"linspace": [0.5, 2.0], "num": 0}}}, "sweep.init_scale.num"),
    ({"sweep": {"learning_rate": {"geomspace": [0.1, 0.0], "num": 3}}}, "geomspace"),
    ({"sweep": {"learning_rate": {"geomspace": [0.1, -1.0], "num": 3}}}, "geomspace"),
    ({"sweep": {"dtype": ["float32", "float32"]}}, "duplicated"),
    ({"sweep": {"batch_size": [0, 8]}}, "sweep.batch_size"),
    ({"sweep": {"width": [0]}}, "sweep.width"),
    # integral points, but floats: the message said "got 4.0", not why
    ({"sweep": {"width": {"geomspace": [4, 16], "num": 3}}},
     "sweep.width.geomspace: width takes integers, and geomspace gives floats"),
    ({"sweep": {"seed": {"linspace": [0, 4], "num": 3}}},
     "sweep.seed.linspace: seed takes integers, and linspace gives floats"),
    ({"optimizer": {"name": "adam"}, "sweep": {"eps": [0.0]}}, "sweep.eps"),
    ({"sweep": {"learning_rate.0x": [0.1]}}, "'learning_rate.0x'"),
    ({"metrics": {"sharpness_iters": 1}}, "sharpness_iters"),
    ({"model": {"hidden": [64, 32]}, "sweep": {"width": [8, 16]}}, "uniform"),
    ({"optimizer": {"learning_rate": float("nan")}}, "learning_rate"),
    ({"data": {"name": "mnist"}}, "data"),
    ({"data": {"name": "moons", "path": "x.csv"}}, "data"),
    ({"name": "bad name/with slash"}, "name"),
])
def test_bad_values_name_the_key(bad, key):
    with pytest.raises(ConfigError) as e:
        cfg.parse(bad)
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_broken_toml_in_set_is_an_error_not_a_string():
    with pytest.raises(ConfigError, match="not a valid TOML value") as e:
        cfg.apply_overrides(SEED_QUESTION, ["model.hidden=[4, 4"])
    assert "\n" not in str(e.value)
    raw = cfg.apply_overrides(SEED_QUESTION, ["model.activation=relu"])  # bare words still ok
    assert raw["model"]["activation"] == "relu"


def test_a_byte_order_mark_is_not_a_syntax_error(tmp_path):
    p = tmp_path / "bom.toml"
    p.write_bytes("\ufeffname = \"bom\"\n[train]\nsteps = 7\n".encode("utf-8"))
    e = cfg.parse(p)
    assert e.name == "bom" and e.train.steps == 7


def test_toml_syntax_error_names_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[train]\nsteps = = 3\n')
    with pytest.raises(ConfigError, match="line 3"):
        cfg.parse(p)


def test_nan_in_toml_is_caught(tmp_path):
    p = tmp_path / "nan.toml"
    p.write_text("[sweep]\nlearning_rate = [0.1, nan]\n")
    with pytest.raises(ConfigError, match="finite"):
        cfg.parse(p)


@pytest.mark.parametrize("sweep", [
    {"seed": {"range": 10**10}},
    {"learning_rate": {"geomspace": [1e-3, 1.0], "num": 10**8}},
    {"learning_rate": {"linspace": [0.1, 1.0], "num": 1000}, "seed": {"range": 1000},
     "init_scale": {"linspace": [0.5, 2.0], "num": 1001}},
])
def test_huge_grids_are_refused_before_they_are_built(sweep):
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="at most"):
        cfg.parse({"sweep": sweep})
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("bad", [
    {"train": {"seed": 2**32}},  # once wrapped to seed 0
    {"train": {"seed": -1}},  # once wrapped to seed 4294967295
    {"train": {"seed": 2**31}},
    {"sweep": {"seed": [2**31]}},
    {"sweep": {"seed": [-1]}},
])
def test_seeds_name_the_int32_range(bad):
    with pytest.raises(ConfigError, match=r"\[0, 2147483647\]"):
        cfg.parse(bad)
    ok = cfg.parse({"train": {"seed": 2**31 - 1}, "sweep": {"seed": [0, 2**31 - 1]}})
    assert ok.train.seed == 2**31 - 1 and list(ok.sweep["seed"]) == [0, 2**31 - 1]


def test_validator_messages_state_the_value_once():
    for bad, given in (({"train": {"steps": 0}}, "got 0"),
                       ({"data": {"name": "moon"}}, "got 'moon'"),
                       ({"model": {"hidden": [0, 4]}}, "got [0, 4]")):
        with pytest.raises(ConfigError) as e:
            cfg.parse(bad)
        assert str(e.value).count("got") == 1 and given in str(e.value), str(e.value)


@pytest.mark.parametrize("raw, key", [
    ({"sweep": {"learning_rate": [1e300, 0.1]}}, "sweep.learning_rate"),  # inf in float32
    ({"sweep": {"learning_rate": [1e-320]}}, "sweep.learning_rate"),  # 0 in float32
    ({"sweep": {"learning_rate": [1e-40]}}, "sweep.learning_rate"),  # subnormal: flushed
    ({"train": {"dtype": "bfloat16"}, "sweep": {"learning_rate": [1e39]}},
     "sweep.learning_rate"),
    ({"sweep": {"dtype": ["float32", "float64"], "learning_rate": [1e300]}},
     "sweep.learning_rate"),
    ({"train": {"dtype": "float64"}, "sweep": {"learning_rate": [1e-320]}},
     "sweep.learning_rate"),
    ({"sweep": {"learning_rate.1": [1e-320]}}, "sweep.learning_rate.1"),
    ({"optimizer": {"learning_rate": 1e-320}}, "[optimizer] learning_rate"),
    ({"optimizer": {"weight_decay": 1e39}}, "[optimizer] weight_decay"),
    ({"model": {"init_scale": 1e300}}, "[model] init_scale"),
])
def test_hyperparameters_must_survive_the_run_dtype(raw, key):
    with pytest.raises(ConfigError) as e:
        cfg.parse(raw)
    msg = str(e.value)
    assert msg.startswith(key) and "\n" not in msg, msg
    assert "where it is inf" in msg or "where it is 0" in msg, msg


def test_hyperparameters_in_range_of_the_run_dtype_pass():
    big = cfg.parse({"train": {"dtype": "float64"}, "sweep": {"learning_rate": [1e300]}})
    assert list(big.sweep["learning_rate"]) == [1e300]
    small = cfg.parse({"sweep": {"learning_rate.0": [0.0, 1e-30], "weight_decay": [0.0]}})
    assert list(small.sweep["learning_rate.0"]) == [0.0, 1e-30]


def test_config_path_that_is_a_folder_or_unreadable(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="is a folder"):
        cfg.parse(tmp_path)
    os.mkfifo(tmp_path / "pipe.toml")  # reading it would wait for a writer forever
    with pytest.raises(ConfigError, match="is not a regular file"):
        cfg.parse(tmp_path / "pipe.toml")
    p = tmp_path / "c.toml"
    p.write_text("[train]\nsteps = 5\n")
    real_open = Path.open

    def denied(self, *a, **kw):  # chmod 000 does not stop root: deny it here instead
        if self == p:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError, match="cannot be read: Permission denied") as e:
        cfg.parse(p)
    assert str(p) in str(e.value)


def test_set_data_source_replaces_the_inherited_one(tmp_path):
    """`--set data.path=...` on the built-in config (which names breast_cancer) was refused as
    giving both a name and a path."""
    from trainscape.io import data
    from trainscape.spec import schema as cfg

    f = tmp_path / "my.csv"
    f.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    e = cfg.resolve_config(None, [f"data.path={str(f)!r}", "data.target=label"])
    assert (e.data.name, e.data.path, e.data.target) == (None, str(f), "label")
    assert e.data.standardize is True  # other inherited keys stay
    x, y = data.load_dataset(e.data)
    assert x.shape == (4, 2) and list(y) == [0, 1, 0, 1]
    # keys only built-in datasets read go with the name; data_seed stays (every source takes it)
    base = {"data": {"name": "moons", "n_samples": 64, "noise": 0.2, "data_seed": 3}}
    raw = cfg.apply_overrides(base, [f"data.path={str(f)!r}", "data.target=label"])
    assert raw["data"] == {"path": str(f), "target": "label", "data_seed": 3}
    assert base["data"]["name"] == "moons"  # the base itself is untouched
    # and the other way round: a name drops an inherited path and target
    raw = cfg.apply_overrides({"data": {"path": "x.csv", "target": "label"}},
                              ["data.name=moons"])
    assert raw["data"] == {"name": "moons"}
    # a built-in key the user sets with the path is theirs: kept, for the data check to refuse
    raw = cfg.apply_overrides(base, ["data.path=x.csv", "data.noise=0.1"])
    assert raw["data"] == {"path": "x.csv", "noise": 0.1, "data_seed": 3}
    # an Experiment's own dict (every key, unset ones None) switches the same way
    moons = cfg.parse(base)
    assert cfg.resolve_config(moons, ["data.path=x.csv"]).data.n_samples is None
    # both set by the user: still refused
    with pytest.raises(ConfigError, match="give either name .* or path .*, not both; got "
                                          "name = 'moons' and path = 'x.csv'$"):
        cfg.resolve_config(None, ["data.path=x.csv", "data.name=moons"])
    with pytest.raises(ConfigError, match="not both"):
        cfg.resolve_config(None, ["data.name=moons", "data.path=x.csv"])


@pytest.mark.parametrize("item", ["=5", " =5", "train.=5", ".steps=5", "train..steps=5",
                                  "train.steps"])
def test_set_without_a_dotted_key_says_the_form(item):
    with pytest.raises(ConfigError) as e:
        cfg.apply_overrides(SEED_QUESTION, [item])
    assert str(e.value) == (f"--set {item!r}: expected KEY=VALUE with a dotted key such as "
                            "train.steps=100")


@pytest.mark.parametrize("optimizer, key, users", [
    ("sgd", "momentum", "momentum, nesterov"),
    ("adam", "momentum", "momentum, nesterov"),
    ("sgd", "b1", "adam, adamw"),
    ("momentum", "eps", "adam, adamw, rmsprop"),
    ("rmsprop", "b2", "adam, adamw"),
    ("adamw", "decay", "rmsprop"),
])
def test_optimizer_keys_the_optimizer_does_not_read_are_refused(optimizer, key, users):
    """`--set optimizer.momentum=0.5` with sgd was accepted and ignored, while a momentum
    axis with sgd is refused."""
    want = f"optimizer {optimizer!r} has no {key}; optimizers that use it: {users}"
    with pytest.raises(ConfigError) as e:
        cfg.parse({"optimizer": {"name": optimizer, key: 0.5}})
    assert str(e.value) == f"[optimizer] {key}: got 0.5; {want}"
    with pytest.raises(ConfigError) as e:
        cfg.apply_overrides(SEED_QUESTION, [f"optimizer.name={optimizer}",
                                            f"optimizer.{key}=0.5"])
    assert str(e.value) == f"--set optimizer.{key}=0.5: {want}"


def test_optimizer_keys_the_optimizer_reads_pass():
    assert cfg.parse({"optimizer": {"name": "momentum", "momentum": 0.5}}).optimizer.momentum \
        == 0.5
    e = cfg.parse({"optimizer": {"name": "adam", "b1": 0.8, "b2": 0.99, "eps": 1e-6,
                                 "weight_decay": 0.1, "l2": 0.01, "grad_clip": 1.0}})
    assert (e.optimizer.b1, e.optimizer.eps) == (0.8, 1e-6)
    sgd = cfg.parse({"optimizer": {"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.1,
                                   "l2": 0.1, "grad_clip": 1.0}})
    raw = cfg.apply_overrides(SEED_QUESTION, ["optimizer.momentum=0.5",
                                              "optimizer.name=nesterov"])
    assert cfg.parse(raw).optimizer.momentum == 0.5
    # a saved config holds every key, the unused ones too (result folders, resolve_config of
    # an Experiment): it is read as it is
    assert cfg.parse(sgd.to_dict()) == sgd
    saved = cfg.parse({"optimizer": {"name": "momentum", "momentum": 0.5}}).to_dict()
    saved["optimizer"]["name"] = "sgd"  # as a folder written before the check may hold
    assert cfg.parse(saved).optimizer.momentum == 0.5
    for f in sorted((ROOT / "experiments").glob("*.toml")):
        cfg.parse(f)


@pytest.mark.parametrize("key", ["steps", "record_every", "batch_size"])
def test_step_counts_beyond_int32_are_refused_in_one_line(key):
    """Found by the long fuzz profile: train.steps = 2**63 ended in an OverflowError traceback.
    The loop counts steps in int32, so 2**31 - 1 and above are refused, naming the key."""
    for v in (2**31 - 1, 2**63):
        with pytest.raises(ConfigError, match=rf"^\[train\] {key}: got {v}; must be below"):
            cfg.parse({"train": {key: v}})
    assert cfg.parse({"train": {key: 2**31 - 2}}).train.model_dump()[key] == 2**31 - 2


def test_a_sharpness_interval_beyond_int32_is_refused_in_one_line():
    """Found by the long fuzz profile: metrics.sharpness_every = 2**31 ended in an
    OverflowError traceback (the loop takes it modulo int32 step counts)."""
    for v in (2**31, 2**63):
        with pytest.raises(ConfigError, match=rf"^\[metrics\] sharpness_every: got {v}; must be "
                           r"at most 2,147,483,647 \(steps are counted in int32\)$"):
            cfg.parse({"metrics": {"sharpness_every": v}})
    assert cfg.parse({"metrics": {"sharpness_every": 2**31 - 1}}).metrics.sharpness_every == \
        2**31 - 1


def test_axis_values_are_the_numpy_grid_rounded_to_12_digits():
    """linspace/geomspace values are NumPy's own to 12 significant digits, with the float
    noise of the interior points gone (0.30000000000000004 is 0.3)."""
    e = cfg.parse({"sweep": {"init_scale": {"linspace": [0.0, 1.0], "num": 11},
                             "learning_rate": {"geomspace": [1e-3, 2.0], "num": 7}}})
    assert e.sweep["init_scale"] == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    lr = np.array(e.sweep["learning_rate"])
    np.testing.assert_allclose(lr, np.geomspace(1e-3, 2.0, 7), rtol=5e-12, atol=0)
    assert lr[0] == 1e-3 and lr[-1] == 2.0
    assert not np.array_equal(lr, np.round(lr, 6))  # not rounded to fewer digits


def test_boundary_values_that_are_allowed():
    """The edges of each allowed range: num = 1 for a one-point interval, end_factor = 1,
    a warmup as long as the run when no decay follows, exactly MAX_RUNS runs."""
    e = cfg.parse({"sweep": {"init_scale": {"linspace": [0.5, 0.5], "num": 1},
                             "learning_rate": {"geomspace": [0.1, 0.1], "num": 1}}})
    assert e.sweep == {"init_scale": (0.5,), "learning_rate": (0.1,)}
    e = cfg.parse({"optimizer": {"schedule": "cosine", "end_factor": 1.0},
                   "sweep": {"end_factor": [0.0, 1.0]}})
    assert e.optimizer.end_factor == 1.0 and e.sweep["end_factor"] == (0.0, 1.0)
    e = cfg.parse({"train": {"steps": 10}, "optimizer": {"schedule": "warmup_constant",
                                                          "warmup_steps": 10}})
    assert e.optimizer.warmup_steps == 10
    e = cfg.parse({"sweep": {"seed": {"range": 1000},
                             "learning_rate": {"geomspace": [1e-3, 1.0], "num": 1000},
                             "init_scale": {"linspace": [0.5, 2.0], "num": 1000}}})
    assert e.n_runs == cfg.MAX_RUNS == 10**9


def test_per_entry_and_shared_learning_rates_in_one_table():
    """`learning_rate.0 = [...]` beside `learning_rate.geomspace = ...` (dotted TOML keys of
    one table) sweeps both axes."""
    e = cfg.parse({"sweep": {"learning_rate": {"0": [0.1, 0.2], "geomspace": [0.01, 1.0],
                                               "num": 3}}})
    assert e.sweep == {"learning_rate.0": (0.1, 0.2), "learning_rate": (0.01, 0.1, 1.0)}


def test_an_optimizer_section_saved_before_schedules_is_read_as_it_is():
    """A saved [optimizer] holds every key (configs saved before schedules existed lack the
    schedule keys): an unused value in it, such as adam's momentum, is not refused."""
    saved = {k: f.default for k, f in cfg.OptimizerConfig.model_fields.items()
             if k not in ("schedule", "warmup_steps", "end_factor")}
    e = cfg.parse({"optimizer": {**saved, "name": "adam", "momentum": 0.5}})
    assert e.optimizer.name == "adam" and e.optimizer.momentum == 0.5
    with pytest.raises(ConfigError, match="momentum"):
        cfg.parse({"optimizer": {"name": "adam", "momentum": 0.5}})


def test_an_axis_may_hold_exactly_max_axis_values(monkeypatch):
    n = cfg.MAX_AXIS_VALUES
    assert cfg.parse({"sweep": {"seed": {"range": [7, 7 + n]}}}).sweep["seed"][-1] == 6 + n
    monkeypatch.setattr(cfg, "MAX_AXIS_VALUES", 5)  # the same bound, on a grid cheap to build
    e = cfg.parse({"sweep": {"seed": {"range": 5},
                             "init_scale": {"linspace": [1.0, 2.0], "num": 5}}})
    assert e.sweep["seed"] == (0, 1, 2, 3, 4)
    assert e.sweep["init_scale"] == (1.0, 1.25, 1.5, 1.75, 2.0)
    for spec in ({"range": 6}, {"range": [1, 7]}, {"linspace": [1.0, 2.0], "num": 6}):
        with pytest.raises(ConfigError, match="at most 5 per axis"):
            cfg.parse({"sweep": {"init_scale": spec}})
