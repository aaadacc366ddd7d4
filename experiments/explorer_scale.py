"""Scale of the explorer page: file size, time to write it, load time and click latency in
headless Chromium, for a results folder (default: the memory benchmark's 1,000,000-run sweep,
run first if the folder does not exist).

    python experiments/explorer_scale.py [RESULTS_DIR] [--loads 3] [--clicks 20]

Load time: navigation start (performance's time origin) to the page's ready flag, which it sets
once its data is decoded and the map, curves and parallel coordinates are drawn. Click: a
click event dispatched on a map cell until the frame after the curve panel was redrawn
(requestAnimationFrame, then a task), measured in the page, for cells spread over the map.
Needs Debian's chromium and chromium-driver, and selenium.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLICK_JS = """
const [idx, done] = arguments;
const cells = document.querySelectorAll('#map rect.cell');
const r = cells[idx % cells.length];
const t0 = performance.now();
r.dispatchEvent(new MouseEvent('click', {bubbles: true}));
const t1 = performance.now();
requestAnimationFrame(() => setTimeout(() => done([t1 - t0, performance.now() - t0,
  JSON.parse(document.getElementById('curves').dataset.runIds).length]), 0));
"""

CHANGE_JS = """
const [id, value, done] = arguments;
const el = document.getElementById(id);
const t0 = performance.now();
el.value = value;
el.dispatchEvent(new Event('change'));
requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
"""

BRUSH_JS = """
const [dim, done] = arguments;
const hit = document.querySelector(`#pc rect.hit[data-dim="${dim}"]`);
const b = hit.getBoundingClientRect();
const ev = (type, y) => new PointerEvent(type, {bubbles: true, pointerId: 1,
  clientX: b.left + b.width / 2, clientY: y});
const t0 = performance.now();
hit.dispatchEvent(ev('pointerdown', b.top + 2));
hit.dispatchEvent(ev('pointerup', b.top + b.height / 2));
requestAnimationFrame(() => setTimeout(() => done([performance.now() - t0,
  +document.getElementById('map').dataset.total]), 0));
"""


def browser(width=1280, height=1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*"]})
    d.set_script_timeout(60)
    return d


def load(d, page: Path) -> float:
    d.get(page.as_uri())
    for _ in range(1200):
        ms = d.execute_script("return window.tsReadyMs || null")
        if ms is not None:
            return float(ms)
        time.sleep(0.05)
    raise RuntimeError(f"not ready: {d.get_log('browser')}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?", default="/tmp/trainscape-explorer-1m")
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    folder = Path(a.results)
    if not folder.exists():
        from trainscape.bench.memory import _toml, config

        cfg = Path(tempfile.mkdtemp()) / "m.toml"
        cfg.write_text(_toml(config(1_000_000)))
        subprocess.run([sys.executable, "-m", "trainscape", "run", str(cfg), "--out",
                        str(folder), "--no-progress", "--no-plot"], check=True)
    import trainscape as ts

    t0 = time.perf_counter()
    page = ts.explore(folder, Path(tempfile.mkdtemp()) / "explorer.html")
    write_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"runs": ts.load(folder).n_runs, "file_bytes": page.stat().st_size,
           "write_seconds": write_s, "write_peak_rss_bytes": peak}
    d = browser()
    try:
        out["load_ms"] = [load(d, page) for _ in range(a.loads)]
        n_cells = d.execute_script("return document.querySelectorAll('#map rect.cell').length")
        out["map_cells"] = n_cells
        step = max(1, n_cells // a.clicks)
        clicks = [d.execute_async_script(CLICK_JS, i * step + i) for i in range(a.clicks)]
        out["click_ms"] = [c[1] for c in clicks]
        out["click_handler_ms"] = [c[0] for c in clicks]
        out["click_curves"] = [c[2] for c in clicks]
        out["axes_change_ms"] = d.execute_async_script(CHANGE_JS, "y-axis", "")
        pooled = [d.execute_async_script(CLICK_JS, i * 7) for i in range(10)]
        out["click_pooled_ms"] = [c[1] for c in pooled]
        out["click_pooled_curves"] = [c[2] for c in pooled]
        out["color_change_ms"] = d.execute_async_script(CHANGE_JS, "color", "m0")
        out["brush_ms"], out["brush_runs_left"] = d.execute_async_script(BRUSH_JS, "final_loss")
        out["errors"] = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        out["chromium"] = d.capabilities.get("browserVersion")
    finally:
        d.quit()
    med = statistics.median
    print(f"{out['runs']:,} runs: file {out['file_bytes'] / 1e6:.2f} MB, written in "
          f"{write_s:.1f} s (peak RSS {peak / 2**20:,.0f} MiB); load "
          f"{', '.join(f'{x:.0f}' for x in out['load_ms'])} ms; click to next frame median "
          f"{med(out['click_ms']):.0f} ms, max {max(out['click_ms']):.0f} ms over "
          f"{len(clicks)} cells of {n_cells:,}; pooled-seed map: y axis change "
          f"{out['axes_change_ms']:.0f} ms, click median {med(out['click_pooled_ms']):.0f} ms, "
          f"max {max(out['click_pooled_ms']):.0f} ms ({max(out['click_pooled_curves'])} curves "
          f"drawn); colour by a metric {out['color_change_ms']:.0f} ms; brush on final_loss "
          f"{out['brush_ms']:.0f} ms ({out['brush_runs_left']:,} runs left); "
          f"console errors: {len(out['errors'])}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
