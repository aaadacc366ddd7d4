"""experiments/make_results.py, the script that regenerates results/studies/: the studies made
by scripts of their own (`SCRIPTED`) are part of it, and their reports rebuild from the saved
results to the committed text."""

import shutil
from pathlib import Path

import pytest
from configs import experiment_script

ROOT = Path(__file__).resolve().parents[2]


def _make_results():
    return experiment_script("make_results")


@pytest.mark.parametrize("name", ["width_scaling", "fractal_lr_lr"])
def test_a_scripted_studys_reports_rebuild_from_its_saved_results(tmp_path, name):
    """`--reports-only` for a study made by its own script, on a copy of the committed
    folder with its report deleted: the report comes back, the same text as committed."""
    mr = _make_results()
    committed = ROOT / "results" / "studies" / name
    out = tmp_path / name
    shutil.copytree(committed, out)
    (out / "report.md").unlink()
    mr.SCRIPTED[name](out, True)
    assert (out / "report.md").read_text() == (committed / "report.md").read_text()


def test_every_study_is_known_and_unknown_names_are_refused(capsys):
    mr = _make_results()
    assert {"width_scaling", "fractal_lr_lr", "seed_question"} <= set(mr.ALL)
    assert len(mr.ALL) == len(set(mr.ALL))
    with pytest.raises(SystemExit) as bad:
        mr.main(["nope"])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "unknown study nope" in err and "fractal_lr_lr" in err and "width_scaling" in err


def test_the_fractal_config_gives_the_committed_studys_initial_loss():
    """experiments/fractal_lr_lr.toml with its script's model and data: every run starts from
    one shared initialization, so the committed study has one initial loss, and a run of the
    config starts from it. Standardizing the data (the default for data=(x, y) since 0.11.0,
    which this config turns off) moved it from 1.03389 to 1.03198 and changed every run of
    the map."""
    import pandas as pd

    import trainscape as ts
    from trainscape.spec.schema import load_toml

    fractal = experiment_script("fractal_lr_lr")
    committed = pd.read_parquet(
        ROOT / "results" / "studies" / "fractal_lr_lr" / "level-0" / "runs.parquet")
    (want,) = committed["initial_loss"].unique()
    cfg = load_toml(fractal.CONFIG)
    cfg["train"]["steps"] = 1
    cfg["sweep"] = {"learning_rate.0": [100.0], "learning_rate.1": [40.0]}
    got = ts.run(cfg, data=fractal.data(), model=fractal.MODEL, out=None, progress=False)
    assert got.runs["initial_loss"].iloc[0] == pytest.approx(want, rel=1e-6)


def test_the_seed_questions_explorer_page_and_screenshot_are_made(tmp_path):
    """The folder make_results.py deletes and makes again gets its explorer page and the
    screenshot the README shows (a PNG 1280 pixels wide, as tall as the page)."""
    import shutil as sh
    import struct

    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (sh.which("chromium") and sh.which("chromedriver")):
        pytest.skip("no Chromium / chromedriver on PATH (.ci/run installs them)")
    import trainscape as ts

    mr = _make_results()
    res = ts.load(ROOT / "results" / "studies" / "seed_question")
    mr._explorer(res, tmp_path)
    assert "seed-question" in (tmp_path / "explorer.html").read_text()
    png = (tmp_path / "explorer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280 and height > 1000
