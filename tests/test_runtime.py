"""Importing trainscape changes nothing global; `configure()` makes the CLI's settings on request.

Each check runs in a fresh interpreter: the test process itself has long since imported
trainscape and configured JAX (conftest.py), so only a new process shows what an import does.
Refusals, which set nothing, are checked in this process.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

IMPORT_CHECK = r"""
import json, os, sys
env_before = dict(os.environ)
import matplotlib
backend_before = str(matplotlib.rcParams._get("backend"))
import jax, jax.numpy as jnp
x64_before = jax.config.jax_enable_x64
import trainscape
from jax._src import xla_bridge
# no backend started by the import (XLA's clients are made on first use); asked before the
# dtypes below start one
started = bool(xla_bridge._backends)
print(json.dumps({
    "dtypes": [str(jnp.array(1.0).dtype), str(jnp.arange(3).dtype)],
    "x64": [x64_before, jax.config.jax_enable_x64],
    "backends_started": started,
    "env_changed": sorted(k for k in set(os.environ) | set(env_before)
                          if os.environ.get(k) != env_before.get(k)),
    "mpl_backend": [backend_before, str(matplotlib.rcParams._get("backend"))],
    "pyplot_loaded": "matplotlib.pyplot" in sys.modules,
    "cache_dir": jax.config.jax_compilation_cache_dir,
}))
"""

TINY64 = {"name": "tiny64", "data": {"name": "moons", "n_samples": 32},
          "model": {"hidden": [4]}, "train": {"steps": 8, "dtype": "float64"},
          "sweep": {"learning_rate": [0.1, 3.0], "seed": {"range": 2}}}

SWEEP64 = r"""
import json, sys, warnings
import jax
if sys.argv[2] == "on":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import trainscape as ts
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    res = ts.run(json.loads(sys.argv[1]), out=None, progress=False)
    ts.run(json.loads(sys.argv[1]), out=None, progress=False)
res.runs.to_parquet(sys.argv[3])
res.curves.to_parquet(sys.argv[3] + ".curves")
notes = [str(w.message) for w in seen if "CPU device" in str(w.message)]
from trainscape.engine import plan
# the note is for one CPU device (not a GPU, nor the suite planned as on one: tests/layout.py)
one_cpu = [d.platform for d in jax.devices()] == ["cpu"] and not hasattr(plan, "_planned_as_gpu")
print(json.dumps({"after": str(jnp.array(1.0).dtype), "notes": notes, "one_cpu": one_cpu}))
"""


def _python(code: str, *args: str, env: dict | None = None) -> str:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_ENABLE_X64", "ARROW_DEFAULT_MEMORY_POOL", "MPLBACKEND")}
    return {**env, **extra}


LAZY_CHECK = r"""
import json, sys
import trainscape, trainscape.cli
print(json.dumps(sorted(m for m in ("sklearn", "scipy", "matplotlib", "torch")
                        if m in sys.modules)))
"""


def test_importing_trainscape_loads_no_library_only_some_paths_use():
    """scikit-learn (the held-out split, two datasets), scipy (confidence intervals) and
    matplotlib (figures) are imported where they are used: eager imports of the first two
    raised the import's peak memory from 242 to 320 MiB and its time from 1.5 to 2.3 s, and a
    sweep's peak by 70-90 MiB (results/bench/README.md, on a 2-core AMD EPYC)."""
    assert json.loads(_python(LAZY_CHECK, env=_env())) == []


def test_importing_trainscape_changes_nothing_global():
    got = json.loads(_python(IMPORT_CHECK, env=_env()))
    assert got["dtypes"] == ["float32", "int32"]
    assert got["x64"] == [False, False]
    assert not got["backends_started"]
    assert got["env_changed"] == []
    assert got["mpl_backend"][0] == got["mpl_backend"][1]
    assert not got["pyplot_loaded"]
    assert got["cache_dir"] is None


def test_float64_sweep_with_x64_off_equals_the_one_with_x64_on(tmp_path):
    """A float64 sweep in a process whose JAX stays in float32 returns float64 tables, equal
    bit for bit to the same sweep where the user turned x64 on for the whole process; the
    process's own dtype is float32 after it. A multi-core CPU left with one JAX device is told
    once how to use every core."""
    cfg = json.dumps(TINY64)
    off = json.loads(_python(SWEEP64, cfg, "off", str(tmp_path / "off"), env=_env()))
    on = json.loads(_python(SWEEP64, cfg, "on", str(tmp_path / "on"), env=_env()))
    assert off["after"] == "float32" and on["after"] == "float64"
    a, b = pd.read_parquet(tmp_path / "off"), pd.read_parquet(tmp_path / "on")
    assert a["final_loss"].dtype == "float64"
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "off.curves"),
                                  pd.read_parquet(tmp_path / "on.curves"), check_exact=True)
    if (os.cpu_count() or 1) > 1 and off["one_cpu"]:
        assert len(off["notes"]) == 1 and "trainscape.configure()" in off["notes"][0]
    else:
        assert off["notes"] == []


CONFIGURE = r"""
import json, jax, trainscape as ts
done = ts.configure(cache_dir=__import__("sys").argv[1])
print(json.dumps({"done": done, "devices": len(jax.devices()),
                  "cache": jax.config.jax_compilation_cache_dir}))
"""


@pytest.mark.cpu_only("counts CPU devices")
def test_configure_gives_every_core_a_device_and_the_cache(tmp_path):
    got = json.loads(_python(CONFIGURE, str(tmp_path / "c"), env=_env()))
    assert got["devices"] == (os.cpu_count() or 1)
    assert got["cache"] == str(tmp_path / "c") == got["done"]["cache_dir"]
    two = json.loads(_python(CONFIGURE, str(tmp_path / "c"),
                             env=_env(TRAINSCAPE_CPU_DEVICES="1", TRAINSCAPE_NO_CACHE="1")))
    assert two["devices"] == 1 and two["cache"] is None


def test_the_library_installs_no_signal_handler(monkeypatch):
    """ts.run leaves signal handling to its caller (the command line defers Ctrl+C to the end
    of the chunk in progress through `chunk_guard`): during a chunk the handlers are the ones
    the process had (Python's own, or SIG_IGN for SIGINT where a shell started the tests in
    the background)."""
    import signal

    import trainscape as ts
    from trainscape.sweep import runner

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert before[0] in (signal.default_int_handler, signal.SIG_IGN)
    seen = []
    real = runner.compute_chunk

    def spy(*a, **k):
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        return real(*a, **k)

    monkeypatch.setattr(runner, "compute_chunk", spy)
    ts.run({"data": {"name": "moons", "n_samples": 32}, "model": {"hidden": [4]},
            "train": {"steps": 8}, "sweep": {"learning_rate": [0.1, 3.0], "seed": {"range": 2}}},
           out=None, progress=False)
    assert seen == [before]


@pytest.mark.parametrize("kwargs, match", [
    ({"cpu_devices": 0}, "configure cpu_devices: got 0; allowed: an integer from 1 to"),
    ({"cpu_devices": -1}, "got -1"), ({"cpu_devices": "2"}, "got '2'"),
    ({"cpu_devices": 1.5}, "got 1.5"), ({"cpu_devices": True}, "got True"),
    ({"cpu_devices": [1]}, r"got \[1\]"), ({"cpu_devices": 10**6}, "got 1000000"),
    ({"cache_dir": 5}, "configure cache_dir: got 5; allowed: a folder"),
    ({"cache_dir": True}, "cache_dir: got True"), ({"cache_dir": ["a"]}, r"got \['a'\]"),
    ({"cache_dir": "a_file"}, "cache_dir: got 'a_file', a file; give a folder"),
    ({"arrow_system_pool": "no"}, "configure arrow_system_pool: got 'no'; allowed: True or"),
    ({"arrow_system_pool": 0}, "arrow_system_pool: got 0"),
])
def test_configure_refuses_bad_values_before_setting_anything(kwargs, match, tmp_path,
                                                              monkeypatch):
    import jax

    import trainscape as ts

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    before = jax.config.jax_compilation_cache_dir
    with pytest.raises(ts.InputError, match=match) as err:
        ts.configure(**kwargs)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no folder '5', 'True'
    assert jax.config.jax_compilation_cache_dir == before


@pytest.mark.parametrize("value", ["0", "x", "-2", "1.5", str(10**6), "²"])
def test_a_bad_cpu_devices_variable_is_one_line(value, monkeypatch, capsys):
    import trainscape as ts
    from trainscape.cli.main import main

    monkeypatch.setenv("TRAINSCAPE_CPU_DEVICES", value)
    with pytest.raises(ts.InputError, match=rf"\$TRAINSCAPE_CPU_DEVICES: got '?{value}'?; "):
        ts.configure()
    assert main(["gradcheck", "no_such_module"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TRAINSCAPE_CPU_DEVICES" in err
