"""Screenshot of an explorer page with one map cell selected, as the study folders show it.

    python experiments/explorer_screenshot.py PAGE.html OUT.png '{"learning_rate": 1.0, "seed": 4}'
        [--width 1280]

Headless Chromium with every network request blocked; the window is as tall as the page.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from explorer_scale import browser, load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("page")
    ap.add_argument("out")
    ap.add_argument("cell", nargs="?", help="the map cell to select, as its data-cell JSON")
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    d = browser(a.width, 1000)
    try:
        load(d, Path(a.page).resolve())
        if a.cell:
            want = json.loads(a.cell)
            cell = next(r for r in d.find_elements("css selector", "#map rect.cell")
                        if json.loads(r.get_attribute("data-cell")) == want)
            d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', "
                             "{bubbles: true}))", cell)
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(a.width, height + 140)
        time.sleep(0.5)  # the resize redraw
        d.save_screenshot(a.out)
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            print(errors, file=sys.stderr)
            return 1
    finally:
        d.quit()
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
