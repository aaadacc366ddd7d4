"""Regenerate results/studies/: run every canonical study and write its reports.

    python experiments/make_results.py                    # every study (7.3 min, 2 cores)
    python experiments/make_results.py lr_x_seed          # only the named ones
    python experiments/make_results.py --reports-only     # rebuild reports from saved results

Each study `experiments/<name>.toml` goes to `results/studies/<name>/` (the old folder is
deleted first: this script regenerates, it never resumes): runs.parquet, curves.parquet,
meta.json, summary.txt (what `trainscape run` prints), report.html (self-contained) and
report.md with its report-*.png figures; the seed question also explorer.html and
explorer.png (`EXPLORED`). A study whose TOML does not exist yet is skipped.
Two studies are made by scripts of their own, run from here (`SCRIPTED`): `width_scaling`
(experiments/width_scaling.py) and `fractal_lr_lr` (the zoom of docs/zoom.md and its check
against the dense grid); with 0.12.1 on a 2-core AMD EPYC and a warm compile cache they took
136 s and 64 s, and gave tables identical to the committed ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "studies"

# name -> overrides applied on top of experiments/<name>.toml. Curves are thinned where the
# full record would make the committed folder large; the summaries still see every step.
STUDIES: dict[str, list[str]] = {
    # the seed question as configured, plus the curvature the written answer explains it with
    "seed_question": ["metrics.sharpness=true"],
    "lr_x_init_scale": [],
    "lr_x_seed": ["train.record_every=4"],
    "edge_of_stability": ["train.record_every=5"],
    # held-out loss by label, and the critical learning rate with and without warmup
    "seed_question_holdout": ["train.record_every=4"],
    "warmup": ["train.record_every=10"],
}


def _critical_lr_table(config: Path, out: Path) -> None:
    """The bisected critical learning rate of every (warmup_steps, seed) row, next to the
    grid: critical_lr.csv and warmup_effect.csv (analysis.heldout.warmup_effect)."""
    import trainscape as ts
    from trainscape.analysis import heldout

    table = ts.critical_lr(config, low=1.0, high=1000.0, rtol=0.01)
    table.to_csv(out / "critical_lr.csv", index=False)
    heldout.warmup_effect(table).to_csv(out / "warmup_effect.csv", index=False)


# studies with a table of their own besides the sweep: name -> fn(config, out folder)
EXTRA = {"warmup": _critical_lr_table}

# the explorer page's cell shown selected in its screenshot
EXPLORER_CELL = '{"learning_rate": 1.0, "seed": 4}'


def _explorer(res, out: Path) -> None:
    """The study's explorer page (explorer.html, the page README.md and docs/explorer.md show)
    and its screenshot with one cell selected (explorer.png: headless Chromium and selenium,
    as the explorer's tests use; without them the page is written and the screenshot is not,
    with a line saying so)."""
    import trainscape as ts

    page = ts.explore(res, out / "explorer.html")
    try:
        _script(ROOT / "experiments" / "explorer_screenshot.py", page, out / "explorer.png",
                EXPLORER_CELL)
    except subprocess.CalledProcessError as e:
        print(f"{out.name}: explorer.png not made (experiments/explorer_screenshot.py exited "
              f"{e.returncode}; it needs chromium, chromedriver and selenium)")


# studies that also get an explorer page and its screenshot
EXPLORED = {"seed_question"}


def _script(*args) -> str:
    """Run a Python script of experiments/ with this interpreter and trainscape from src/;
    returns what it printed to stdout (shown once it ends; stderr, with any progress bars, as
    it comes)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="")
    return done.stdout


def _width_scaling(out: Path, reports_only: bool) -> None:
    """Both sweeps, the critical learning rates, the fits, the coordinate check and
    report.md (experiments/width_scaling.py); with `reports_only`, the reports again from the
    saved sweeps and scaling.json."""
    if not reports_only:
        _script(ROOT / "experiments" / "width_scaling.py", out)
        return
    if str(ROOT / "experiments") not in sys.path:
        sys.path.insert(0, str(ROOT / "experiments"))
    import width_scaling

    from trainscape.viz.report import build

    for par in width_scaling.PARAMETERIZATIONS:
        build(out / par, fmt="md")
    width_scaling.write_report(out, json.loads((out / "scaling.json").read_text()))


def _fractal_lr_lr(out: Path, reports_only: bool) -> None:
    """The zoom (3 levels, `--by measure`, margin 2), its report, and check.json: the zoom
    against the dense 257 x 257 grid, computed in a temporary folder and not kept (66,049
    runs). With `reports_only`, the zoom's report again."""
    import trainscape as ts
    from trainscape.viz.zoom import report

    script = ROOT / "experiments" / "fractal_lr_lr.py"
    if not reports_only:
        _script(script, "zoom", "--out", out, "--by", "measure")
        with tempfile.TemporaryDirectory() as tmp:
            dense = Path(tmp) / "dense"
            _script(script, "dense", "--out", dense)
            (out / "check.json").write_text(_script(script, "check", "--out", out,
                                                    "--dense", dense))
    report(ts.load(out))


# studies made by scripts of their own: name -> fn(out folder, reports_only)
SCRIPTED = {"width_scaling": _width_scaling, "fractal_lr_lr": _fractal_lr_lr}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make(name: str, overrides: list[str], reports_only: bool) -> Path | None:
    import trainscape as ts
    from trainscape.viz import report, summary

    config = ROOT / "experiments" / f"{name}.toml"
    out = OUT / name
    if name in SCRIPTED:
        if reports_only and not out.is_dir():
            print(f"{name}: no saved results in {out}, skipped")
            return None
        if not reports_only and out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        SCRIPTED[name](out, reports_only)
        print(f"{name}: {out.relative_to(ROOT)}/ {_size(out) / 1e6:.2f} MB in "
              f"{time.perf_counter() - t0:.0f} s")
        return out
    if reports_only:
        if not out.is_dir():
            print(f"{name}: no saved results in {out}, skipped")
            return None
        res = ts.load(out)
    else:
        if not config.is_file():
            print(f"{name}: {config.relative_to(ROOT)} does not exist yet, skipped")
            return None
        if out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        res = ts.run(config, out=out, overrides=overrides, progress=True)
        print(f"{name}: {len(res.runs)} runs in {time.perf_counter() - t0:.0f} s")
        if name in EXTRA:
            t0 = time.perf_counter()
            EXTRA[name](config, out)
            print(f"{name}: extra tables in {time.perf_counter() - t0:.0f} s")
    for old in out.glob("report*"):
        old.unlink()
    (out / "summary.txt").write_text(summary.text_summary(res) + "\n")
    # a report names its folder relative to the current directory: from the repository root,
    # wherever the script is started, the committed reports say results/studies/<name>
    with contextlib.chdir(ROOT):
        for fmt in report.FORMATS:
            report.build(res, fmt=fmt, out=out / f"report.{fmt}")
    if name in EXPLORED:
        _explorer(res, out)
    print(f"{name}: {out.relative_to(ROOT)}/ {_size(out) / 1e6:.2f} MB")
    return out


ALL = [*STUDIES, *SCRIPTED]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="STUDY",
                   help=f"studies to make (default: all of {', '.join(ALL)})")
    p.add_argument("--reports-only", action="store_true",
                   help="rebuild summary and reports from the saved results, run nothing")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in ALL]
    if unknown:
        p.error(f"unknown study {', '.join(unknown)}; known: {', '.join(ALL)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or ALL:
        make(name, STUDIES.get(name, []), args.reports_only)
    print(f"results/studies/: {_size(OUT) / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
