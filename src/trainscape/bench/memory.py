"""Memory benchmark: peak host memory of `trainscape run` as the grid grows.

Each sweep runs as its own `trainscape run` process on the same tiny network (2-4-1 tanh on
make_moons(64), 20 steps, every step recorded), differing only in the number of seeds, so the
peak resident memory the kernel reports for each child (`wait4`'s `ru_maxrss`) compares grids of
different sizes and nothing else. The sweeps write to a scratch folder that is removed after.

Each grid size runs twice with a compile cache of its own that starts empty
(``TRAINSCAPE_CACHE_DIR``): once cold, as a first-time user runs it, compiling its programs
and probing its chunk size, and once warm, as every later run of that shape. Compiling takes
about 130 MiB at its peak, so comparing a cold run of one size with a warm run of another
(which is what a shared cache did, depending on which size ran first) measured the cache, not
the grid.

    trainscape bench --workload memory [--out DIR]
    python -m trainscape.bench.memory --runs 10000,1000000 --out DIR
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_LR = 100  # learning rates; the number of seeds makes up the rest of the grid


def config(n_runs: int) -> dict:
    """The tiny sweep of `n_runs` runs (a multiple of N_LR)."""
    if n_runs % N_LR:
        raise ValueError(f"n_runs must be a multiple of {N_LR}, got {n_runs}")
    return {
        "name": f"memory-{n_runs}",
        "data": {"name": "moons", "n_samples": 64},
        "model": {"hidden": [4], "activation": "tanh"},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd"},
        "train": {"steps": 20, "record_every": 1, "dtype": "float32"},
        "sweep": {"learning_rate": {"geomspace": [0.01, 100.0], "num": N_LR},
                  "seed": {"range": n_runs // N_LR}},
    }


def _toml(cfg: dict) -> str:
    def val(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, bool):
            return str(v).lower()
        return json.dumps(v)

    lines = [f"name = {val(cfg['name'])}"]
    for section, body in cfg.items():
        if isinstance(body, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {val(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def measure(n_runs: int, scratch: Path, cache: str | None = None) -> dict:
    """Run the sweep of `n_runs` runs in a child process; its peak RSS, wall time and chunks.
    `cache`: the child's compile cache folder (default: the user's)."""
    cfg_file = scratch / f"memory-{n_runs}.toml"
    cfg_file.write_text(_toml(config(n_runs)))
    out = scratch / f"out-{n_runs}"
    # as a user runs it: the heatmap is drawn and the summary printed (both read the folder)
    cmd = [sys.executable, "-m", "trainscape", "run", str(cfg_file), "--out", str(out),
           "--no-progress"]
    t0 = time.perf_counter()
    env = dict(os.environ)
    if cache is not None:
        env["TRAINSCAPE_CACHE_DIR"] = cache
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{output[-2000:]}")
    meta = json.loads((out / "meta.json").read_text())
    t = meta["timings"]
    files = {f.name: f.stat().st_size for f in out.iterdir() if f.is_file()}
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    shutil.rmtree(out, ignore_errors=True)
    return {"runs": n_runs, "peak_rss_bytes": peak, "wall_seconds": wall,
            "chunk_size": t["chunk_size"], "n_chunks": t["n_chunks"],
            "run_steps_per_second": t["run_steps_per_second"], "file_bytes": files}


def format_report(rows: list[dict]) -> str:
    """One line per sweep; "vs first" compares its peak with the first sweep's of the same
    compile-cache state."""
    base: dict = {}
    for r in rows:
        base.setdefault(r.get("cache"), r["peak_rss_bytes"])
    lines = ["| runs | compile cache | chunk size | chunks | peak RSS (MiB) | vs first | wall s | "
             "curves.parquet (MiB) |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['runs']:,} | {r.get('cache') or '-'} | {r['chunk_size']:,} | "
            f"{r['n_chunks']:,} | {r['peak_rss_bytes'] / 2**20:,.0f} | "
            f"{r['peak_rss_bytes'] / base[r.get('cache')]:.2f}x | "
            f"{r['wall_seconds']:,.0f} | "
            f"{r['file_bytes'].get('curves.parquet', 0) / 2**20:,.1f} |")
    return "\n".join(lines)


def main(runs=(10_000, 1_000_000), out_dir: str | os.PathLike | None = None) -> int:
    """Measure each grid size of `runs`, print the table and, with `out_dir`, write memory.json
    and memory.md there. An `out_dir` that cannot take them, or already holds one, is refused
    (InputError) before the first sweep."""
    from ..bench.peers import check_out, machine_info, write_out

    out = check_out(out_dir, ("memory.json", "memory.md"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainscape-memory-") as tmp:
        for n in runs:
            cache = str(Path(tmp) / f"cache-{n}")  # starts empty for each grid size
            for state in ("cold", "warm"):
                print(f"memory bench: {n:,} runs, {state} compile cache ...", flush=True)
                rows.append({**measure(int(n), Path(tmp), cache), "cache": state})
                print(format_report(rows).splitlines()[-1], flush=True)
    report = format_report(rows)
    print(report)
    if out is not None:
        write_out(out, {"memory.json": json.dumps(
            {"machine": machine_info(), "config": config(runs[0]), "rows": rows}, indent=2,
            default=str) + "\n", "memory.md": report + "\n"})
    return 0


if __name__ == "__main__":
    import argparse

    from ..cli.main import _int_list
    from ..errors import InputError

    ap = argparse.ArgumentParser(prog="python -m trainscape.bench.memory")
    ap.add_argument("--runs", type=_int_list, default=[10_000, 1_000_000],
                    help="comma-separated grid sizes (default 10000,1000000)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    try:
        sys.exit(main(a.runs, a.out))
    except InputError as e:  # one line and status 2, as `trainscape bench` reports it
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
