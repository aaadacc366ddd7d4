"""experiments/make_results.py, the script that regenerates results/studies/: the studies made
by scripts of their own (`SCRIPTED`) are part of it, and their reports rebuild from the saved
results to the committed text."""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _make_results():
    spec = importlib.util.spec_from_file_location(
        "make_results", ROOT / "experiments" / "make_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
