"""The small experiments several test files train, in one place (and a loader for the
experiment scripts).

Tests that train the same network on the same data for the same number of steps share one
compiled program (and the persistent compile cache), so a test file reuses one of these rather
than writing a slightly different copy; the comment on each says who uses it.
"""

# engine tests (tests/engine/): an 8-8 network on 64 moons, 30 steps, 6 x 3 runs
ENGINE_TINY = {
    "name": "tiny",
    "data": {"name": "moons", "n_samples": 64},
    "model": {"hidden": [8, 8], "activation": "tanh", "init": "normal"},
    "train": {"steps": 30},
    "sweep": {"learning_rate": {"geomspace": [0.01, 30.0], "num": 6}, "seed": {"range": 3}},
}

# reports (tests/viz/test_report.py) and the command line (tests/cli/test_cli.py, as TOML):
# one network on 64 moons, 40 steps; the two files train the same program
REPORT_TINY = {
    "name": "tiny",
    "data": {"name": "moons", "n_samples": 64},
    "model": {"hidden": [8], "activation": "tanh"},
    "train": {"steps": 40},
    "sweep": {"learning_rate": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0], "seed": {"range": 3}},
}
CLI_TINY_TOML = """
name = "tiny"
[data]
name = "moons"
n_samples = 64
[model]
hidden = [8]
[train]
steps = 40
[sweep]
learning_rate = {geomspace = [0.01, 100.0], num = 5}
seed = {range = 2}
"""

# large grids (tests/sweep/test_scale.py): a 3-unit network, 6 steps, grids of any size
SCALE_TINY = {
    "name": "scale",
    "data": {"name": "moons", "n_samples": 32},
    "model": {"hidden": [3]},
    "train": {"steps": 6, "record_every": 1},
    "sweep": {"learning_rate": {"geomspace": [0.01, 100.0], "num": 16}, "seed": {"range": 8}},
}


def with_sections(cfg: dict, **sections) -> dict:
    """`cfg` with the keys of each named section updated (a shallow copy; `cfg` unchanged)."""
    out = dict(cfg)
    for sec, kv in sections.items():
        out[sec] = {**cfg.get(sec, {}), **kv}
    return out


def experiment_script(name: str):
    """experiments/<name>.py imported as a module (the scripts are not a package), for tests
    of the experiment scripts themselves."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chunk_unit(cfg: dict) -> int:
    """Runs in one block on every device for `cfg` as the engine plans it here: the smallest
    chunk, and the step chunk sizes are rounded up to (32 x 2 on the suite's 2 CPU devices;
    thousands on a GPU, or with TRAINSCAPE_TEST_LAYOUT=gpu)."""
    import trainscape as ts
    from trainscape.engine import plan
    from trainscape.sweep import prepare

    return prepare.Prepared(ts.parse(cfg)).block * len(plan.run_devices())
