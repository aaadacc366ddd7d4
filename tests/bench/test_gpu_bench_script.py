"""experiments/gpu_bench.sh, the GPU checks in one call, run with a stand-in for Python that
records how it was called and does nothing: which steps run, in what order, under which time
limit, which are listed as not run when the budget is spent, and that the files come back.
The steps' own programs are tested where they live (bench, engine_gap, host_overlap_ab)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "gpu_bench.sh"

# every step of the script, in the order it runs them when none is left out
ORDER = ["bench-seed", "bench-small", "bench-diverging", "run-highest", "compare-cpu",
         "tests-early-exit", "tests", "gap-small", "gap-seed", "gap-small-cmdbuf",
         "host-overlap", "run-again", "same-bits", "run-det1", "run-det2", "same-bits-det",
         "run-tf32", "compare-tf32"]

FAKE_PYTHON = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_CALLS"
case "$1" in
    -) cat > /dev/null; echo "python fake" ;;
    -c) [ "$2" = "import trainscape" ] && exit "${FAKE_IMPORT_RC:-0}" ;;
esac
# a step that writes a file, as `trainscape run --out DIR` does
for a; do case "$prev" in --out) mkdir -p "$a" && echo x > "$a/meta.json" ;; esac; prev=$a; done
exit 0
"""


def _run(tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, list[str], str]:
    """One call of the script with a fresh $OUT (as each device call has) and the same steps'
    folder; returns the process, the stand-in's calls (pip's left out) and log.txt."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    full = {**os.environ, "PYTHON": str(fake), "FAKE_CALLS": str(calls),
            "OUT": str(out), "WORK": str(tmp_path / "work"), **env}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=60)
    made = [c for c in calls.read_text().splitlines() if not c.startswith("-m pip ")]
    return proc, made, (out / "log.txt").read_text()


def _started(log: str) -> list[str]:
    return re.findall(r"^== (\S+): (?!exit|not run)", log, flags=re.M)


def test_every_step_runs_in_priority_order_and_its_files_come_back(tmp_path):
    proc, calls, log = _run(tmp_path, BUDGET="1000")
    assert proc.returncode == 0, proc.stderr
    assert _started(log) == ORDER
    assert "== not run (STEPS for a next call): none" in log
    # the bench first, per workload; the diverging bench with early exit on and off
    assert calls[:2] == ["-", "-c import trainscape"]  # the versions, then the import check
    assert calls[2].startswith("-m trainscape bench --workload seed --repeats 3")
    assert "--workload diverging --peers engine,engine_no_early_exit" in calls[4]
    # each step's limit is its own while the budget lasts
    assert re.search(r"^== bench-seed: .*\(limit 150s, ", log, flags=re.M)
    assert re.search(r"^== tests: .*\(limit 300s, ", log, flags=re.M)
    with tarfile.open(tmp_path / "out0" / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert "./seed_question_highest/meta.json" in names and "./det2/meta.json" in names


def test_a_spent_budget_lists_the_steps_left_for_a_second_call(tmp_path):
    # 35 s: the first step gets what is left (35 - 10 kept for packing), under 20 s none runs
    proc, _, log = _run(tmp_path, BUDGET="35", STEPS="bench-seed")
    assert proc.returncode == 0
    limit = int(re.search(r"^== bench-seed: .*\(limit (\d+)s", log, flags=re.M).group(1))
    assert 20 <= limit <= 25
    proc, calls, log = _run(tmp_path, BUDGET="29")
    assert proc.returncode == 0 and _started(log) == []
    assert len(calls) == 2  # the versions and the import check, no step
    listed = log.split("== not run (STEPS for a next call): ")[1].splitlines()[0].split()
    assert listed == ORDER
    # and that list, given back as STEPS, runs exactly those steps (patterns and commas too)
    proc, _, log = _run(tmp_path, BUDGET="1000", STEPS="run-det*,same-bits-det compare-tf32")
    assert _started(log) == ["run-det1", "run-det2", "same-bits-det", "compare-tf32"]


@pytest.mark.parametrize("skip", ["1", ""])
def test_skip_tests_leaves_out_both_test_steps(tmp_path, skip):
    _, _, log = _run(tmp_path, BUDGET="1000", STEPS="tests*,bench-small", SKIP_TESTS=skip)
    expected = ["bench-small"] if skip else ["bench-small", "tests-early-exit", "tests"]
    assert _started(log) == expected


def test_stops_before_any_step_when_trainscape_does_not_import(tmp_path):
    proc, _, log = _run(tmp_path, BUDGET="1000", FAKE_IMPORT_RC="1")
    assert proc.returncode == 3
    assert _started(log) == [] and "experiments/gpu_wheels.sh" in log
