"""The command line end to end on tiny configs, and the seed question's lr 0.01 / 1.0 outcome."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import jax
import pandas as pd
import pytest
from configs import CLI_TINY_TOML as TINY_TOML

import trainscape as ts
from trainscape.cli.main import main
from trainscape.train import classify


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return p


def test_run_writes_results_and_figures(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "learning_rate" in text and str(out) in text and "heatmap.png" in text
    for f in ("runs.parquet", "curves.parquet", "meta.json", "heatmap.png"):
        assert (out / f).is_file(), f
    res = ts.load(out)
    assert len(res.runs) == 10 and res.config.name == "tiny"
    assert len(res.curves) == 10 * 41
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == jax.default_backend() and meta["versions"]["jax"]
    assert not (out / "chunks").exists() and not (out / ".lock").exists()


def test_run_ends_with_the_commands_that_go_on_from_its_results(tiny, tmp_path, capsys):
    """The last lines give `trainscape report` and `explore` on the folder, quoted for a
    shell (a space in the path), and each runs as given."""
    import shlex

    out = tmp_path / "my out"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()[-2:]
    assert lines[0].startswith("next:    trainscape report ")
    given = [shlex.split(line.removeprefix("next:").split("(")[0]) for line in lines]
    assert [g[:2] for g in given] == [["trainscape", "report"], ["trainscape", "explore"]]
    assert all(g[2:] == [str(out)] for g in given)
    for g in given:
        assert main(g[1:]) == 0
    assert (out / "report.html").is_file() and (out / "explorer.html").is_file()


def test_the_progress_bar_says_the_first_chunk_waits_for_its_program(tiny, tmp_path, capsys):
    """Until the first chunk is back the bar says the program is being compiled (or loaded
    from the cache), so that a deep network's minutes of compilation do not look hung; the
    finished bar no longer says it."""
    assert main(["run", str(tiny), "--out", str(tmp_path / "o"), "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert "compiling or loading the program" in err
    assert "compiling" not in err.rstrip().rsplit("\r", 1)[-1]


def test_second_run_never_overwrites(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    before = (out / "runs.parquet").read_bytes()
    assert main(["run", str(tiny), "--out", str(out), "--no-progress"]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (out / "runs.parquet").read_bytes() == before


def test_default_out_is_a_new_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["run", str(tiny), "--no-progress", "--no-plot"]) == 0
    folders = sorted((tmp_path / "results").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("tiny-") for f in folders)


def test_set_overrides_and_chunk_size(tiny, tmp_path):
    out = tmp_path / "o"
    rc = main(["run", str(tiny), "--out", str(out), "--no-progress", "--no-plot",
               "--chunk-size", "3", "--set", "train.steps=3", "--set", "sweep.seed=[7]"])
    assert rc == 0
    res = ts.load(out)
    assert res.config.train.steps == 3 and set(res.runs["seed"]) == {7}


@pytest.mark.parametrize("args, msg", [
    (["run", "missing.toml"], "does not exist"),
    (["run", "{tiny}", "--set", "train.steps=-1"], "steps"),
    (["run", "{tiny}", "--set", "model.activation=tnah"], "did you mean 'tanh'"),
    (["run", "{tiny}", "--chunk-size", "0"], "chunk-size"),
    (["run", "{tiny}", "--resume"], "--out"),
    (["run", "--set", "=5"], "--set '=5': expected KEY=VALUE with a dotted key such as "
                             "train.steps=100"),
    (["run", "{tiny}", "--set", "optimizer.momentum=0.5"],
     "--set optimizer.momentum=0.5: optimizer 'sgd' has no momentum; optimizers that use it: "
     "momentum, nesterov"),
    (["run", "--set", "data.path=x.csv", "--set", "data.name=moons"], "not both"),
    (["run", "{tiny}", "--out", ""], "run: --out is empty; give a file or folder"),
    (["run", "--set", "sweep.seed.range=2"],
     "--set 'sweep.seed.range=2': a sweep axis is set whole, e.g. "
     "--set 'sweep.seed={range = 2}'"),
])
def test_bad_input_exit_2_one_line_nothing_written(args, msg, tiny, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{tiny}", str(tiny)) for a in args]
    with pytest.raises(SystemExit) if "--chunk-size" in args else _nullcontext() as e:
        rc = main(args)
    rc = e.value.code if e is not None and hasattr(e, "value") else rc
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_help_on_every_command(capsys):
    # the installed entry point once in a fresh process, every sub-command's help in this one
    r = subprocess.run([sys.executable, "-m", "trainscape", "--help"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "usage:" in r.stdout
    for cmd in (["run", "--help"], ["gradcheck", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(cmd)
        assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out, cmd


MATPLOTLIB_DURING_SWEEP = r"""
import json, sys
from trainscape.cli.main import main
from trainscape.sweep import runner

seen = {}
run = runner.run


def spy(*args, **kwargs):
    seen["sweep"] = "matplotlib" in sys.modules
    return run(*args, **kwargs)


runner.run = spy
code = main(["run", sys.argv[1], "--out", sys.argv[2], "--no-progress"])
import matplotlib

print(json.dumps({"code": code, **seen, "backend": matplotlib.get_backend().lower()}))
"""


def test_the_command_loads_matplotlib_only_to_draw_and_draws_with_agg(tiny, tmp_path):
    """matplotlib is not loaded while the sweep runs (loaded first thing, its 11 MiB stayed
    resident through the sweep), and the figures are drawn with Agg even where the environment
    names another backend."""
    env = {**os.environ, "MPLBACKEND": "svg"}
    r = subprocess.run([sys.executable, "-c", MATPLOTLIB_DURING_SWEEP, str(tiny),
                        str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"code": 0, "sweep": False, "backend": "agg"}
    assert (tmp_path / "out" / "heatmap.png").is_file()


def test_bench_help_points_to_a_file_that_exists(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "DESIGN.md" not in text  # there is none
    assert "on the workloads described in results/bench/README.md" in text
    root = Path(__file__).resolve().parents[2]
    assert "## Workloads" in (root / "results" / "bench" / "README.md").read_text()
    from trainscape.bench.peers import PEERS

    assert all(p in text for p in PEERS), text  # the names --peers takes


def test_every_documented_module_entry_point_runs():
    """`python -m` forms named in the docs (the bench's own argument parsers once named
    modules that no longer existed)."""
    for module, usage in (("trainscape", "usage: trainscape"),
                          ("trainscape.bench.memory", "usage: python -m trainscape.bench.memory")):
        p = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                           text=True)
        assert p.returncode == 0 and p.stdout.startswith(usage), (module, p.stdout, p.stderr)


@pytest.mark.parametrize("argv, hint", [
    (["rn"], "(did you mean 'run'?)"),
    (["critical_lr"], "(did you mean 'critical-lr'?)"),
    (["run", "--chunksize", "64"], "(did you mean '--chunk-size'?)"),
    (["run", "--memory-budgte=1GB"], "(did you mean '--memory-budget'?)"),
    (["run", "--zzzzzz"], None),
    # a prefix of a flag is refused, not taken for the flag
    (["run", "--no-progres"], "(did you mean '--no-progress'?)"),
    (["zoom", "x.toml", "--levels", "2", "--marg", "1"], "(did you mean '--margin'?)"),
])
def test_mistyped_command_or_flag_gets_a_suggestion(argv, hint, capsys, tmp_path,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert (hint in err) if hint else "did you mean" not in err, err
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_seed_question_lr_001_converges_lr_1_catapults(tmp_path):
    """The default experiment at the question's two rates (all 16 seeds), and two rates between
    them (a block of runs is padded to 32 per device anyway, so they cost nothing).

    What the science fixes, on both sides. The curvature at initialization (top Hessian
    eigenvalue) of the 16 seeds lies between 3.1 and 161 (`metrics.sharpness = true`, 50
    iterations, version 0.10.0, float32, 2-core AMD EPYC), so 2/curvature lies between 0.0124
    and 0.64. At lr 0.01 every seed's step is below its 2/curvature: gradient descent descends
    every direction, so all 16 runs converge, none does anything else. At lr 1 every seed's
    step is above it: the loss overshoots along the sharpest direction and cannot fall
    monotonically, so none is `converged`; the overshoot drives the network to a flatter
    region (final curvature 1.1-3.9, median 1.8, against 2/lr = 2) where it recovers, the
    catapult: catapults are the majority, the rest oscillate, none diverges and every run ends
    below its initial loss. In between, a larger step is above 2/curvature for at least as
    many seeds, so the number of converged seeds cannot grow with the rate. (How many of lr 1's
    seeds catapult rather than oscillate moves by a seed or two with the CPU's last bits,
    README: 13 of 16; no count from the README is asserted.)"""
    res = ts.run(None, out=None, progress=False,
                 overrides=["sweep.learning_rate=[0.01, 0.1, 0.631, 1.0]"])
    counts = (res.runs.groupby("learning_rate")["label"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(classify.LABELS), fill_value=0))
    assert (counts.sum(axis=1) == 16).all()
    assert counts.loc[0.01, "converged"] == 16
    at1 = counts.loc[1.0]
    assert at1["converged"] == 0 and at1["diverged"] == 0 and at1["stalled"] == 0
    assert 2 * at1["catapult"] > 16 and at1["catapult"] + at1["oscillating"] == 16
    assert counts["converged"].is_monotonic_decreasing  # non-increasing in the rate
    assert counts["diverged"].sum() == 0
    runs1 = res.runs[res.runs.learning_rate == 1.0]
    assert (runs1["final_loss"] < runs1["initial_loss"]).all()
    # "loss falls steadily" at lr 0.01: every seed's curve is non-increasing after step 0
    c = res.curves.merge(res.runs[["run_id", "learning_rate"]], on="run_id")
    slow = c[c.learning_rate == 0.01].pivot(index="run_id", columns="step", values="loss")
    assert (slow.diff(axis=1).iloc[:, 1:] <= 1e-6).to_numpy().all()


def test_meta_records_the_version_of_the_running_code(monkeypatch):
    """The version in meta.json (and in the resume fingerprint) is the code's own, even when
    the installed package metadata is stale, as an editable install's is after a version bump."""
    import importlib.metadata as md

    from trainscape.sweep import runner

    real = md.version
    monkeypatch.setattr(md, "version", lambda pkg: "0.0.1" if pkg == "trainscape" else real(pkg))
    runner._package_versions.cache_clear()  # read the patched metadata
    versions = runner.environment()["versions"]
    runner._package_versions.cache_clear()
    assert versions["trainscape"] == ts.__version__ != "0.0.1"
    assert versions["jax"] == real("jax")


def _refused(capsys, argv) -> str:
    """Run the CLI, expecting bad input: exit 2 and one line on stderr, no traceback."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("trainscape: error: "), err
    return err


def _deny_writes(monkeypatch, folder: Path) -> None:
    """`folder` reads as not writable (a chmod would not stop root)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw:
                        False if str(p) == str(folder) else real(p, mode, **kw))


@pytest.fixture
def fake_search(monkeypatch):
    """critical-lr's search replaced by a one-row table; `calls` counts searches."""
    from trainscape.analysis import critical

    calls = []

    def search(exp, **kw):
        calls.append(kw)
        t = pd.DataFrame({"seed": [0], "critical_lr": [1.0], "sharpness_init": [1.0],
                          "predicted_lr": [2.0], "lr_low": [0.999], "lr_high": [1.0],
                          "n_rounds": [3], "non_monotone": [False], "bracket_ok": [True]})
        t.attrs.update(bracket=(0.1, 10.0), rtol=1e-3, name=exp.name)
        return t

    monkeypatch.setattr(critical, "critical_lr", search)
    return calls


def test_critical_lr_out_never_replaces_a_file_and_is_checked_first(tiny, tmp_path,
                                                                     monkeypatch, capsys,
                                                                     fake_search):
    """`critical-lr --out R/runs.parquet` once replaced the runs with CSV after the search."""
    runs = tmp_path / "runs.parquet"
    runs.write_bytes(b"finished results")
    (tmp_path / "ro").mkdir()
    _deny_writes(monkeypatch, tmp_path / "ro")
    for out, msg in ((runs, "already exists"), (tmp_path / "ro" / "x.csv", "not writable"),
                     (tiny / "x.csv", "is a file, not a folder"),
                     (tmp_path / "nope" / "x.csv", "does not exist"),
                     (tmp_path, "is a folder"),
                     (f"{tmp_path / 'new'}/", "is a folder")):  # was a CSV file named new
        assert msg in _refused(capsys, ["critical-lr", tiny, "--out", out]), out
    assert fake_search == [] and runs.read_bytes() == b"finished results"
    out = tmp_path / "crit.csv"
    assert main(["critical-lr", str(tiny), "--out", str(out), "--no-progress"]) == 0
    first = out.read_bytes()
    assert "already exists" in _refused(capsys, ["critical-lr", tiny, "--out", out])
    assert out.read_bytes() == first and len(fake_search) == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_critical_lr_out_made_during_the_search_is_kept(tiny, tmp_path, monkeypatch, capsys):
    """A file made at --out while the search ran is left as it is; the table is still printed."""
    from trainscape.analysis import critical

    out = tmp_path / "crit.csv"

    def search(exp, **kw):
        out.write_text("someone else's")
        return pd.DataFrame({"seed": [0], "critical_lr": [1.0]})

    monkeypatch.setattr(critical, "critical_lr", search)
    monkeypatch.setattr(critical, "format_table", lambda t: "TABLE\n")
    assert main(["critical-lr", str(tiny), "--out", str(out), "--no-progress"]) == 2
    got = capsys.readouterr()
    assert got.out.startswith("TABLE") and "during the search" in got.err
    assert "left as it is" in got.err and len(got.err.strip().splitlines()) == 1
    assert out.read_text() == "someone else's" and not list(tmp_path.glob("*.tmp"))


def test_critical_lr_errors_name_the_flags(tiny, capsys, fake_search):
    err = _refused(capsys, ["critical-lr", tiny, "--low", "1", "--high", "0.5"])
    assert "pass --low and --high" in err and "low=" in err
    assert _refused(capsys, ["critical-lr", tiny, "--low", "-1"]).startswith(
        "trainscape: error: --low:")
    assert "--rtol:" in _refused(capsys, ["critical-lr", tiny, "--rtol", "nan"])
    assert fake_search == []


def test_a_reader_that_leaves_early_ends_the_command_without_a_traceback(
        tiny, tmp_path, monkeypatch, capsys, fake_search):
    """`trainscape ... | head -1`: a write to the closed pipe was a BrokenPipeError
    traceback; the command now ends quietly, with exit 1."""
    import io

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    out = tmp_path / "crit.csv"
    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["critical-lr", str(tiny), "--out", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err == "" and len(fake_search) == 1


@pytest.mark.parametrize("command", ["run", "critical-lr"])
def test_unreadable_or_folder_config_is_one_line(command, tiny, tmp_path, monkeypatch, capsys,
                                                 fake_search):
    monkeypatch.chdir(tmp_path)
    assert "is a folder" in _refused(capsys, [command, tmp_path])
    (tmp_path / "dir.toml").mkdir()  # named like a config file: once "does not exist"
    assert _refused(capsys, [command, "dir.toml"]) == (
        "trainscape: error: config file 'dir.toml' is a folder; give a .toml file\n")
    real_open = Path.open

    def denied(self, *a, **kw):  # as chmod 000 would for anyone but root
        if self == tiny:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", denied)
    assert "cannot be read: Permission denied" in _refused(capsys, [command, tiny])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.toml", "tiny.toml"]
    assert not any((tmp_path / "dir.toml").iterdir())


@pytest.mark.parametrize("address", ["nohostport", "host:", ":1234", "host:0", "host:65536",
                                     "host:http", "host:-1"])
def test_coordinator_address_checked_before_joining(address, tiny, monkeypatch, capsys):
    import jax

    monkeypatch.setattr(jax.distributed, "initialize",
                        lambda **kw: pytest.fail("jax.distributed was started"))
    err = _refused(capsys, ["run", tiny, "--coordinator", address, "--num-processes", "2",
                            "--process-id", "0"])
    assert "--coordinator" in err and repr(address) in err and "1..65535" in err


@pytest.mark.parametrize("address", ["node0:1234", "10.0.0.1:65535", "[::1]:8476",
                                     "host.example.org:1"])
def test_coordinator_address_forms_that_pass(address, monkeypatch):
    """A well-formed HOST:PORT is not refused and reaches jax.distributed as given, with the
    process count and id in their places."""
    import jax

    from trainscape.sweep import distributed as parallel

    class Joined(Exception):
        pass

    seen = []

    def join(**kw):
        seen.append(kw)
        raise Joined

    monkeypatch.setattr(jax.distributed, "initialize", join)
    with pytest.raises(Joined):
        parallel.initialize(address, 3, 2)
    assert seen == [{"coordinator_address": address, "num_processes": 3, "process_id": 2}]


def test_default_out_folders_of_the_same_second_never_collide(tmp_path, monkeypatch):
    """Two sweeps started in the same second once both chose results/<name>-<stamp>."""
    from trainscape.sweep import runner

    monkeypatch.setattr(runner, "_dt", SimpleNamespace(datetime=SimpleNamespace(
        now=lambda: datetime(2026, 1, 2, 3, 4, 5))))
    root = tmp_path / "results"
    a, b = runner.default_out("x", root), runner.default_out("x", root)
    assert a.name == "x-20260102-030405" and b.name == "x-20260102-030405-2"
    assert a.is_dir() and b.is_dir()  # made, not only named: the other process sees them
    runner.drop_if_empty(b)
    assert not b.exists() and a.is_dir()
    runner.drop_if_empty(a)
    assert not root.exists()


def test_default_out_left_empty_by_refused_input_is_removed(tiny, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)
    # refused by the data check inside ts.run, after the CLI made the folder
    assert "batch_size" in _refused(capsys, ["run", tiny, "--set", "train.batch_size=1000"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_run_help_lists_every_file_and_figure(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "manifest.json" in text and "seed_question.png" in text
    assert "--no-plot do not draw the figures (heatmap.png, seed_question.png)" in text


def test_set_data_path_on_the_default_config(tmp_path, capsys, monkeypatch):
    """`trainscape run --set data.path=my.csv` was refused: the built-in config names
    breast_cancer, and the override added a path next to it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    sets = ["data.path=my.csv", "data.target=label", "model.hidden=[2]", "train.steps=2",
            "sweep.learning_rate=[0.1]", "sweep.seed=[0]"]
    argv = ["run", "--out", "o", "--no-progress", "--no-plot"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0, capsys.readouterr().err
    res = ts.load(tmp_path / "o")
    assert (res.config.data.name, res.config.data.path) == (None, "my.csv")
    assert res.meta["data"]["source"] == "my.csv" and res.meta["data"]["n_samples"] == 4


def test_resuming_a_finished_sweep_says_nothing_was_computed(tiny, tmp_path, capsys):
    """It printed the first run's "time to first result ..., total ..." as if it had just
    run."""
    out = tmp_path / "out"
    argv = ["run", str(tiny), "--out", str(out), "--no-progress", "--no-plot",
            "--set", "train.steps=3", "--set", "sweep.learning_rate=[0.1, 1.0]",
            "--set", "sweep.seed=[0]"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "time to first result" in first and "already finished" not in first
    runs, meta = (out / "runs.parquet").read_bytes(), (out / "meta.json").read_bytes()
    assert main(argv + ["--resume"]) == 0
    again = capsys.readouterr().out
    assert again.splitlines()[0] == (f"{out}/ holds a sweep that had already finished: "
                                     "nothing was computed (its timings are in meta.json)")
    assert "time to first result" not in again and "2 runs x 3 steps" in again
    assert (out / "runs.parquet").read_bytes() == runs and (out / "meta.json").read_bytes() == meta


def _precision_results(folder: Path, dtypes: list[str]) -> Path:
    exp = ts.parse({"sweep": {"dtype": dtypes, "learning_rate": [0.1, 1.0]}})
    n = 2 * len(dtypes)
    runs = pd.DataFrame({"run_id": range(n), "dtype": [d for d in dtypes for _ in range(2)],
                         "learning_rate": [0.1, 1.0] * len(dtypes),
                         "final_loss": [0.5] * n, "label": ["converged"] * n})
    ts.Results(runs=runs, curves=pd.DataFrame(), config=exp).save(folder)
    return folder


def test_compare_precision_of_a_folder_with_several_dtypes_names_the_cli_form(tmp_path,
                                                                             capsys):
    """It answered in Python terms: "... compare them within it with compare_dtypes(results,
    a=..., b=...)"."""
    several = _precision_results(tmp_path / "both", ["float32", "float64"])
    one = _precision_results(tmp_path / "one", ["float32"])
    want = (f"trainscape: error: compare-precision: {several} sweeps several dtypes (float32, "
            "float64); compare two of them within it: trainscape compare-precision "
            f"{several} --dtypes float32,float64\n")
    assert _refused(capsys, ["compare-precision", several, one]) == want
    assert _refused(capsys, ["compare-precision", one, several]) == want
    assert "compare_dtypes" not in want
    # the suggested command works
    assert main(["compare-precision", str(several), "--dtypes", "float32,float64"]) == 0
    assert "0 of 2 cells" in capsys.readouterr().out
    # Python users are still pointed at the function, with the folder's dtypes filled in
    from trainscape.analysis.compare import compare

    with pytest.raises(ts.InputError) as e:
        compare(one, several)
    assert str(e.value) == ("compare: b sweeps several dtypes ['float32', 'float64']; compare "
                            "two of them within it with compare_dtypes(results, a='float32', "
                            "b='float64')")
