"""The command line end to end on tiny configs, and the seed question's lr 0.01 / 1.0 outcome."""

import json
import subprocess
import sys

import pandas as pd
import pytest

import trainscape as ts
from trainscape.cli import main

TINY_TOML = """
name = "tiny"
[data]
name = "moons"
n_samples = 64
[model]
hidden = [8]
[train]
steps = 20
[sweep]
learning_rate = {geomspace = [0.01, 100.0], num = 5}
seed = {range = 2}
"""


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
    assert len(res.curves) == 10 * 21
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == "cpu" and meta["versions"]["jax"]
    assert not (out / "chunks").exists() and not (out / ".lock").exists()


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
               "--chunk-size", "3", "--set", "train.steps=5", "--set", "sweep.seed=[7]"])
    assert rc == 0
    res = ts.load(out)
    assert res.config.train.steps == 5 and set(res.runs["seed"]) == {7}


@pytest.mark.parametrize("args, msg", [
    (["run", "missing.toml"], "does not exist"),
    (["run", "{tiny}", "--set", "train.steps=-1"], "steps"),
    (["run", "{tiny}", "--set", "model.activation=tnah"], "did you mean 'tanh'"),
    (["run", "{tiny}", "--chunk-size", "0"], "chunk-size"),
    (["run", "{tiny}", "--resume"], "--out"),
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


def test_seed_question_lr_001_converges_lr_1_catapults(tmp_path):
    """The default experiment restricted to the two rates of the question (all 16 seeds)."""
    res = ts.run(None, out=None, progress=False,
                 overrides=["sweep.learning_rate=[0.01, 1.0]"])
    counts = res.runs.groupby("learning_rate")["label"].value_counts().unstack(fill_value=0)
    assert counts.loc[0.01].get("converged", 0) == 16
    assert counts.loc[1.0].get("catapult", 0) >= 12
    assert counts.loc[1.0].get("diverged", 0) == 0
    at1 = res.runs[res.runs.learning_rate == 1.0]
    assert (at1["final_loss"] < at1["initial_loss"]).all()
    # "loss falls steadily" at lr 0.01: every seed's curve is non-increasing after step 0
    c = res.curves.merge(res.runs[["run_id", "learning_rate"]], on="run_id")
    slow = c[c.learning_rate == 0.01].pivot(index="run_id", columns="step", values="loss")
    assert (slow.diff(axis=1).iloc[:, 1:] <= 1e-6).to_numpy().all()
    assert isinstance(res.runs, pd.DataFrame)


def test_meta_records_the_version_of_the_running_code(monkeypatch):
    """The version in meta.json (and in the resume fingerprint) is the code's own, even when
    the installed package metadata is stale, as an editable install's is after a version bump."""
    import importlib.metadata as md

    from trainscape import api

    real = md.version
    monkeypatch.setattr(md, "version", lambda pkg: "0.0.1" if pkg == "trainscape" else real(pkg))
    versions = api.environment()["versions"]
    assert versions["trainscape"] == ts.__version__ != "0.0.1"
    assert versions["jax"] == real("jax")
