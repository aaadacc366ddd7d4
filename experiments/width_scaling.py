"""The learning rate against width under the standard parameterization and under muP.

Runs experiments/width_scaling.toml (teacher data, MSE, SGD, tanh, two hidden layers of
widths 64..1024) twice, as it is (standard, init = "normal") and with
`model.parameterization = "mup"`, `model.base_width = 64`; measures the critical learning rate
of every width and seed (ts.critical_lr) and the best learning rate of the sweep, fits both
exponents against width with bootstrap intervals over seeds (ts.scaling), and writes
results/studies/width_scaling/: the two sweeps' folders (each with its report.md),
critical_lr.csv, scaling.json, scaling.png, coord_check.png and report.md.

    PYTHONPATH=src python experiments/width_scaling.py [OUT]
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import trainscape as ts  # noqa: E402
from trainscape.spec.schema import load_toml  # noqa: E402
from trainscape.viz.report import build  # noqa: E402
from trainscape.viz.scaling import plot_coord_check, plot_scaling  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "width_scaling.toml"
BASE_WIDTH = 64
BRACKET = (1e-3, 1e2)
RTOL = 0.03
PARAMETERIZATIONS = {"standard": [], "mup": ["model.parameterization=mup",
                                             f"model.base_width={BASE_WIDTH}"]}


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    import os

    return f"{os.cpu_count()}-core {name}"


def main(out: Path) -> None:
    ts.configure()
    out.mkdir(parents=True, exist_ok=True)
    raw = load_toml(CONFIG)
    no_lr = {**raw, "sweep": {k: v for k, v in raw["sweep"].items() if k != "learning_rate"}}
    fits, crit, timing = {}, [], {}
    fig, (ax_c, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for par, sets in PARAMETERIZATIONS.items():
        t0 = time.perf_counter()
        res = ts.run(CONFIG, overrides=sets, out=out / par, progress=False)
        build(out / par, fmt="md")  # the sweep's report, with its width section
        t1 = time.perf_counter()
        c = ts.critical_lr(no_lr, overrides=sets, low=BRACKET[0], high=BRACKET[1], rtol=RTOL)
        t2 = time.perf_counter()
        timing[par] = {"sweep_s": round(t1 - t0, 1), "critical_lr_s": round(t2 - t1, 1)}
        crit.append(c.assign(parameterization=par))
        f_c = ts.scaling(c, by="width", of="critical_lr")
        f_b = ts.scaling(res.runs, by="width", of="best_lr")
        fits[par] = {q: {"exponent": f.exponent, "low": f.low, "high": f.high,
                         "prefactor": f.prefactor, "level": f.level, "seeds": f.n_seeds,
                         "points": f.points.to_dict(orient="list")}
                     for q, f in (("critical_lr", f_c), ("best_lr", f_b))}
        plot_scaling(f_c, ax=ax_c, label=par)
        plot_scaling(f_b, ax=ax_b, label=par)
        print(par, f_c.summary(), "|", f_b.summary(), timing[par], flush=True)
    ax_c.set_title("critical learning rate (smallest that diverges)")
    ax_b.set_title("best learning rate (lowest median final loss)")
    fig.savefig(out / "scaling.png", dpi=120)
    plt.close(fig)
    pd.concat(crit, ignore_index=True).to_csv(out / "critical_lr.csv", index=False)

    t0 = time.perf_counter()
    cc = {par: ts.coord_check(CONFIG, widths=[64, 256, 1024], steps=3, seeds=3,
                              overrides=sets + ["optimizer.learning_rate=0.05"])
          for par, sets in PARAMETERIZATIONS.items()}
    timing["coord_check_s"] = round(time.perf_counter() - t0, 1)
    fig, axes = plt.subplots(2, 3, figsize=(10, 6), constrained_layout=True)
    for row, (par, table) in zip(axes, cc.items(), strict=True):
        plot_coord_check(table, "mean_abs_change", row)
        row[0].set_ylabel(f"{par}: mean |change|")
        table.to_csv(out / f"coord_check_{par}.csv", index=False)
    fig.savefig(out / "coord_check.png", dpi=120)
    plt.close(fig)

    facts = {"machine": machine(), "trainscape": ts.__version__, "dtype": "float32",
             "date": time.strftime("%Y-%m-%d"), "config": str(CONFIG.relative_to(HERE.parent)),
             "base_width": BASE_WIDTH, "bracket": BRACKET, "rtol": RTOL, "timing": timing,
             "fits": fits}
    (out / "scaling.json").write_text(json.dumps(facts, indent=1, default=float))
    write_report(out, facts)


def _wall_time(t: dict) -> str:
    """'standard: sweep 176 s, critical lr 314 s; ...' from scaling.json's timing."""
    parts = [f"{par}: sweep {t[par]['sweep_s']:.0f} s, critical lr {t[par]['critical_lr_s']:.0f} s"
             for par in ("standard", "mup") if par in t]
    if "coord_check_s" in t:
        parts.append(f"coordinate check {t['coord_check_s']:.0f} s")
    return "; ".join(parts)


def write_report(out: Path, f: dict) -> None:
    def row(par, q):
        x = f["fits"][par][q]
        return (f"| {par} | {q} | {x['exponent']:.3f} | [{x['low']:.3f}, {x['high']:.3f}] | "
                f"{x['seeds']} |")

    lines = [
        "# Learning rate against width: standard parameterization and muP", "",
        f"{f['config']} (teacher data, 64 samples, 8 features; MSE; SGD; tanh; two hidden "
        f"layers of width 64, 128, 256, 512, 1024; 30 steps; float32), run as it is "
        f"(standard, init N(0, 1/fan_in)) and with muP (base_width {f['base_width']}). "
        f"Critical learning rate: ts.critical_lr, bracket {list(f['bracket'])}, rtol "
        f"{f['rtol']}. Best learning rate: the swept one (31 values, 1e-3..1e2) with the "
        "lowest median final loss over seeds, diverged runs excluded. Exponents: least squares "
        "in log-log, 95% bootstrap interval over seeds (ts.scaling).", "",
        "| parameterization | quantity | exponent | 95% interval | seeds |",
        "|---|---|---|---|---|",
        *[row(p, q) for p in ("standard", "mup") for q in ("critical_lr", "best_lr")], "",
        "![scaling](scaling.png)", "",
        "Coordinate check (lr 0.05, 3 steps, 3 seeds): mean |change since init| of each "
        "layer against width.", "", "![coord check](coord_check.png)", "",
        f"Measured {f['date']} on a {f['machine']}, trainscape {f['trainscape']}, "
        f"{f['dtype']}, JAX CPU backend. Wall time: {_wall_time(f['timing'])}.", "",
    ]
    (out / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    root = HERE.parent / "results" / "studies" / "width_scaling"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root)
