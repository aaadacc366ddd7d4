"""The offline explorer page: its data encoding in Python, and the page itself in headless
Chromium (map counts, the runs of a clicked cell, axis menus, slices, the brush, keyboard, a
phone-sized window), loaded from file:// with every network request blocked.

The sweep is written by hand (runs table, curves, meta), so every expected count below comes
from pandas on a table the test chose, never from the code under test."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trainscape as ts
from trainscape.cli.main import main as cli_main
from trainscape.errors import InputError
from trainscape.spec import grid
from trainscape.train.classify import LABELS
from trainscape.viz import explorer

LRS = [0.01, 0.1, 1.0, 10.0]
SEEDS = 3
SCALES = [0.5, 1.0, 2.0]
STEPS = 10
# final loss by label, far apart on a log scale, so a brush on final_loss separates labels
FINAL = {"converged": 0.01, "oscillating": 0.1, "catapult": 0.3, "stalled": 0.69,
         "diverged": np.inf}

LR_STAR = {0.5: 0.1, 1.0: 1.0, 2.0: 10 ** -1.5}


def _label(lr_i: int, seed: int, scale_i: int) -> str:
    """A label pattern that differs between seeds and scales, so pooling and slicing matter."""
    if lr_i == 3:
        return "diverged" if (seed + scale_i) % 3 else "catapult"
    if lr_i == 2:
        return ("catapult", "oscillating", "converged")[(seed + scale_i) % 3]
    if lr_i == 0 and scale_i == 0:
        return "stalled"
    return "converged"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    exp = ts.parse({"name": "explorer-test", "data": {"name": "moons", "n_samples": 32},
                    "model": {"hidden": [2]}, "train": {"steps": STEPS},
                    "sweep": {"learning_rate": LRS, "seed": {"range": SEEDS},
                              "init_scale": SCALES}})
    runs = grid.expand(exp)
    lr_i = runs["learning_rate"].map({v: i for i, v in enumerate(LRS)}).to_numpy()
    sc_i = runs["init_scale"].map({v: i for i, v in enumerate(SCALES)}).to_numpy()
    runs["label"] = [_label(a, b, c) for a, b, c in zip(lr_i, runs["seed"], sc_i, strict=True)]
    runs["initial_loss"] = 0.7
    runs["final_loss"] = runs["label"].map(FINAL) * (1 + 0.01 * runs["seed"])
    runs["max_loss"] = np.where(runs["label"] == "catapult", 3.0, 0.7)
    runs["min_loss"] = runs["final_loss"].clip(upper=0.7)
    runs["spike_ratio"] = np.where(runs["label"] == "catapult", 30.0, 1.0)
    runs["final_accuracy"] = 0.5 + 0.01 * runs["run_id"]
    # sharpness at init puts 2/lambda at lr 0.1 (scale 0.5), 1 (scale 1) and halfway between
    # 0.01 and 0.1 on the log axis (scale 2)
    runs["sharpness_init"] = 2 / runs["init_scale"].map(LR_STAR)
    runs["diverged_step"] = pd.array(np.where(runs["label"] == "diverged", 5, -1), "Int64")
    step = np.arange(STEPS + 1)
    rows = []
    for r in runs.itertuples():
        loss = 0.7 * (r.final_loss / 0.7) ** (step / STEPS)  # 0.7 down (or up) to its final
        if r.label == "diverged":
            loss = np.where(step < 5, 0.7 * 10.0 ** step, np.inf)
        rows.append(pd.DataFrame({"run_id": r.run_id, "step": step, "loss": loss}))
    curves = pd.concat(rows, ignore_index=True)
    path = tmp_path_factory.mktemp("explorer") / "sweep"
    ts.Results(runs=runs, curves=curves, config=exp).save(path)
    return path


@pytest.fixture(scope="module")
def runs(folder) -> pd.DataFrame:
    return pd.read_parquet(folder / "runs.parquet")


@pytest.fixture(scope="module")
def page(folder) -> Path:
    return ts.explore(folder)


# ----------------------------------------------------------------------------------------------
# Python side


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert page.name == "explorer.html"
    # the one URL in the page is the SVG namespace, which names and never fetches
    urls = {u for u in __import__("re").findall(r"https?://[^\s\"'<>)]+", text)}
    assert urls == {"http://www.w3.org/2000/svg"}
    for fetching in ("<link", " src=", "url(", "@import", "fetch(", "XMLHttpRequest"):
        assert fetching not in text, fetching
    assert "default-src 'none'" in text  # the page's own policy forbids any request


def test_quantize_round_trip():
    rng = np.random.default_rng(1)
    v = np.concatenate([10.0 ** rng.uniform(-4, 3, 500), [np.nan, np.inf, -np.inf]])
    for bits in (8, 16):
        codes, sc = explorer.quantize(v, bits)
        top = (1 << bits) - 1
        assert sc["log"] and sc["top"] == top
        assert (codes[-3:] == [0, top, 1]).all()
        # decoded as the page does; within half a step of log10 spacing
        t = (codes[:-3].astype(float) - 2) / (top - 3)
        back = np.log10(sc["lo"]) + t * np.log10(sc["hi"] / sc["lo"])
        step = np.log10(sc["hi"] / sc["lo"]) / (top - 3)
        assert np.abs(back - np.log10(v[:-3])).max() <= step / 2 + 1e-12
    codes, sc = explorer.quantize(np.array([-1.0, 0.0, 2.0]), 8)  # not all positive: linear
    assert not sc["log"] and list(codes) == [2, 86, 254]  # 2 + t * 252, t = 0, 1/3, 1


def test_sample_rows_bound_and_coverage():
    rng = np.random.default_rng(0)
    cell = rng.integers(0, 40, 5000)
    label = rng.choice(5, 5000, p=[0.9, 0.04, 0.03, 0.02, 0.01])
    rows = explorer.sample_rows(cell, label, k=2)
    assert (np.diff(rows) > 0).all()
    got = pd.DataFrame({"c": cell[rows], "l": label[rows]}).value_counts()
    want = pd.DataFrame({"c": cell, "l": label}).value_counts().clip(upper=2)
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index())


def test_bin_widths_and_kept_steps():
    assert explorer.bin_widths([21, 16]) == [1, 1]
    w = explorer.bin_widths([100, 10_000], 16_384)
    assert w[0] == 1 and np.prod([100, -(-10_000 // w[1])]) <= 16_384
    assert -(-10_000 // w[1]) > 100  # the big axis keeps as many bins as fit
    steps = explorer.kept_steps(np.arange(0, 2001, 2), 100)
    assert len(steps) <= 100 and steps[0] == 0 and steps[-1] == 2000
    assert list(explorer.kept_steps(np.arange(11))) == list(range(11))


def test_same_page_data_from_memory_and_from_row_groups(folder, tmp_path):
    """The curves read one row group at a time (and skipped by their run_id statistics) are
    the ones pandas reads whole, and an in-memory Results gives the same page."""
    import pyarrow.parquet as pq

    split = tmp_path / "split"
    shutil.copytree(folder, split)
    curves = pq.read_table(folder / "curves.parquet")
    # one run per row group: min == max run_id, the edge of the statistics test
    pq.write_table(curves, split / "curves.parquet", row_group_size=STEPS + 1)
    assert pq.ParquetFile(split / "curves.parquet").metadata.num_row_groups > 10
    res = ts.load(folder)
    mem = ts.Results(runs=res.runs, curves=res.curves, config=res.config, meta=res.meta)
    want = explorer.page_data(mem)
    for got in (explorer.page_data(ts.load(split)), explorer.page_data(ts.load(folder))):
        assert got[0] == want[0] and got[1] == want[1]


def test_never_replaces_a_result_file(folder, page, tmp_path):
    before = (folder / "runs.parquet").read_bytes()
    with pytest.raises(InputError, match="not an earlier explorer"):
        ts.explore(folder, folder / "runs.parquet")
    assert (folder / "runs.parquet").read_bytes() == before
    other = tmp_path / "report.html"
    other.write_text("<html>a report</html>")
    with pytest.raises(InputError, match="not an earlier explorer"):
        ts.explore(folder, other)
    assert other.read_text() == "<html>a report</html>"
    with pytest.raises(InputError, match="report.html' is a file, not a folder"):
        ts.explore(folder, other / "x.html")
    # "new/" names a folder even before it exists (it was written as a file named "new")
    with pytest.raises(InputError, match=r"explorer.html': folder '.*new' does not exist"):
        ts.explore(folder, f"{tmp_path / 'new'}/")
    assert not (tmp_path / "new").exists()
    again = ts.explore(ts.load(folder), tmp_path)  # a folder: explorer.html inside; then again
    assert again == tmp_path / "explorer.html" and ts.explore(folder, again) == again


def test_cli(folder, tmp_path, capsys):
    out = tmp_path / "x.html"
    assert cli_main(["explore", str(folder), "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert cli_main(["explore", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# in the browser


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[test]')")
    browser, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or chromedriver is None:
        pytest.skip("no Chromium / chromedriver on PATH (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*"]})
    d.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    yield d
    d.quit()


def _open(driver, page: Path, width: int = 1280):
    driver.set_window_size(width, 1000)
    driver.get(page.as_uri())
    for _ in range(200):
        if driver.execute_script("return document.documentElement.dataset.ready === '1'"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"page not ready; log: {driver.get_log('browser')}")


def _map(driver) -> dict[tuple, dict[str, int]]:
    """{cell's axis values (sorted items): label counts} as the page shows them."""
    out = {}
    for cell, counts in driver.execute_script(
            "return [...document.querySelectorAll('#map rect.cell')]"
            ".map(r => [r.dataset.cell, r.dataset.counts])"):
        out[tuple(sorted(json.loads(cell).items()))] = json.loads(counts)
    return out


def _cell(driver, want: dict):
    return next(r for r in driver.find_elements("css selector", "#map rect.cell")
                if json.loads(r.get_attribute("data-cell")) == want)


def _expected(runs: pd.DataFrame, by: list[str]) -> dict[tuple, dict[str, int]]:
    out = {}
    for key, g in runs.groupby(by):
        counts = g["label"].value_counts()
        out[tuple(sorted(zip(by, key, strict=True)))] = {k: int(v) for k, v in counts.items()}
    return out


def _errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_loads_offline_without_errors(driver, page):
    driver.get_log("browser")
    _open(driver, page)
    assert _errors(driver) == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert driver.find_element("id", "x-axis").get_attribute("value") == "learning_rate"
    totals = {e.get_attribute("data-label"): int(e.get_attribute("data-count"))
              for e in driver.find_elements("css selector", "#label-totals .chip")}
    # (the test sweep has no run left without a label)
    assert totals == {k: v for k, v in pd.read_parquet(page.parent / "runs.parquet")["label"]
                      .value_counts().items()}


def test_map_counts_pooled(driver, page, runs):
    _open(driver, page)
    # by default x is the learning rate, y the other axis that is not the seed; seeds pooled
    assert _map(driver) == _expected(runs, ["learning_rate", "init_scale"])
    majority = {}
    for r in driver.find_elements("css selector", "#map rect.cell")[:4]:
        counts = json.loads(r.get_attribute("data-counts"))
        top = max(LABELS, key=lambda k: (counts.get(k, 0), -LABELS.index(k)))
        majority[r.get_attribute("data-cell")] = (r.get_attribute("fill"), top)
    colors = explorer._label_colors()
    for fill, top in majority.values():
        assert fill.lower() == colors[top].lower()


def test_click_shows_exactly_the_cells_runs(driver, page, runs):
    _open(driver, page)
    want = {"learning_rate": 1.0, "init_scale": 2.0}
    _cell(driver, want).click()
    ids = json.loads(driver.find_element("id", "curves").get_attribute("data-run-ids"))
    sel = runs.loc[(runs["learning_rate"] == 1.0) & (runs["init_scale"] == 2.0), "run_id"]
    assert sorted(ids) == sorted(sel.tolist())
    assert len(driver.find_elements("css selector", "#curves path.run")) == len(sel)
    assert len(driver.find_elements("css selector", "#runs-table tbody tr")) == len(sel)
    # a diverged run's curve stops where its loss left the finite range: 5 points, one segment
    div = runs.loc[runs["run_id"].isin(ids) & (runs["label"] == "diverged"), "run_id"]
    for rid in div:
        d = driver.find_element("css selector", f'#curves path[data-run-id="{rid}"]')
        assert d.get_attribute("d").count("L") == 4 and d.get_attribute("d").count("M") == 1
    assert _errors(driver) == []


def test_keyboard_selects(driver, page, runs):
    from selenium.webdriver.common.keys import Keys

    _open(driver, page)
    first = driver.find_element("css selector", '#map rect.cell[tabindex="0"]')
    first.send_keys(Keys.ARROW_RIGHT)
    active = driver.switch_to.active_element
    active.send_keys(Keys.ARROW_UP)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    svg = driver.find_element("id", "curves")
    assert json.loads(svg.get_attribute("data-cell")) == {"learning_rate": 0.1,
                                                          "init_scale": 1.0}
    ids = json.loads(svg.get_attribute("data-run-ids"))
    sel = runs.loc[(runs["learning_rate"] == 0.1) & (runs["init_scale"] == 1.0), "run_id"]
    assert sorted(ids) == sorted(sel.tolist())


def test_menus_redraw_with_new_axes(driver, page, runs):
    from selenium.webdriver.support.ui import Select

    _open(driver, page)
    Select(driver.find_element("id", "y-axis")).select_by_value("seed")
    assert _map(driver) == _expected(runs, ["learning_rate", "seed"])
    Select(driver.find_element("id", "x-axis")).select_by_value("init_scale")
    assert _map(driver) == _expected(runs, ["seed", "init_scale"])
    Select(driver.find_element("id", "x-axis")).select_by_value("seed")  # swaps x and y
    assert driver.find_element("id", "y-axis").get_attribute("value") == "init_scale"
    assert _map(driver) == _expected(runs, ["seed", "init_scale"])
    # slice the now-free learning-rate axis at its third value (1.0) instead of pooling it
    Select(driver.find_element("id", "mode-learning_rate")).select_by_value("slice")
    slider = driver.find_element("id", "slice-learning_rate")
    driver.execute_script("arguments[0].value = 2; arguments[0].dispatchEvent("
                          "new Event('input'))", slider)
    assert _map(driver) == _expected(runs.loc[runs["learning_rate"] == 1.0],
                                     ["seed", "init_scale"])
    assert _errors(driver) == []


def test_brush_narrows_map_and_curves(driver, page, runs):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(driver, page)
    _cell(driver, {"learning_rate": 1.0, "init_scale": 0.5}).click()
    hit = driver.find_element("css selector", '#pc rect.hit[data-dim="final_loss"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", hit)
    h = hit.size["height"]
    # from above the axis down to its middle: on the log scale of 0.01..0.7 that keeps
    # oscillating (0.1) and everything above, and drops converged (0.01)
    ActionChains(driver).move_to_element_with_offset(hit, 0, -h // 2 + 1).click_and_hold() \
        .move_by_offset(0, h // 2 - 4).release().perform()
    kept = runs.loc[runs["label"] != "converged"]
    assert int(driver.find_element("id", "map").get_attribute("data-total")) == len(kept)
    got = {k: v for k, v in _map(driver).items() if v}
    assert got == _expected(kept, ["learning_rate", "init_scale"])
    ids = json.loads(driver.find_element("id", "curves").get_attribute("data-run-ids"))
    cell = kept.loc[(kept["learning_rate"] == 1.0) & (kept["init_scale"] == 0.5), "run_id"]
    assert sorted(ids) == sorted(cell.tolist()) and 0 < len(ids) < SEEDS  # one converged
    driver.find_element("id", "clear-brush").click()
    assert int(driver.find_element("id", "map").get_attribute("data-total")) == len(runs)


def test_phone_sized_window(driver, page, tmp_path):
    _open(driver, page, width=400)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    inner = driver.execute_script("return window.innerWidth")
    assert width <= inner  # nothing wider than the window: no sideways scrolling
    box = driver.find_element("id", "map").rect
    assert box["x"] >= 0 and box["x"] + box["width"] <= inner
    assert _errors(driver) == []


@pytest.mark.parametrize("sweep", [{"learning_rate": [0.01, 0.1, 1.0]}, {}],
                         ids=["one-axis", "no-axis"])
def test_one_and_no_axis(driver, tmp_path, sweep):
    exp = ts.parse({"name": "small", "data": {"name": "moons", "n_samples": 32},
                    "model": {"hidden": [2]}, "train": {"steps": 3}, "sweep": sweep})
    runs = grid.expand(exp)
    runs["label"] = ["converged", "catapult", "diverged"][:len(runs)]
    runs["final_loss"] = [0.1, 0.2, np.nan][:len(runs)]
    curves = pd.DataFrame({"run_id": np.repeat(runs["run_id"], 4), "step": np.tile(range(4),
                           len(runs)), "loss": 1.0})
    page = ts.explore(ts.Results(runs=runs, curves=curves, config=exp), tmp_path / "p.html")
    _open(driver, page)
    want = {tuple(sorted({k: v for k, v in r.items() if k in sweep}.items())): {r["label"]: 1}
            for r in runs.to_dict("records")}
    assert _map(driver) == want
    driver.find_elements("css selector", "#map rect.cell")[-1].click()
    ids = json.loads(driver.find_element("id", "curves").get_attribute("data-run-ids"))
    assert ids == [int(runs["run_id"].iloc[-1])]
    # every curve is 1.0: the loss axis spans 1.0 / 1.45 .. 1.0 * 1.45 (+-0.15 decades, then
    # 4% more each side); its labels are the 1..9 x 10^k inside, not a lone "1"
    yt = driver.execute_script("return [...document.querySelectorAll('#curves text.tick')]"
                               ".filter(t => t.getAttribute('text-anchor') === 'end')"
                               ".map(t => t.textContent)")
    half = 0.15 * 1.08
    want = [f"{f * 10.0 ** e:g}" for e in (-1, 0) for f in range(1, 10)
            if abs(np.log10(f * 10.0 ** e)) <= half]
    assert want == ["0.7", "0.8", "0.9", "1"] and yt == want
    sub = driver.find_element("css selector", "header .sub").text
    assert sub.startswith(f"{len(runs)} run{'s' if len(runs) > 1 else ''} × 3 steps"), sub
    assert _errors(driver) == []


def test_hover_and_threshold_line(driver, page, runs):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(driver, page)
    cell = _cell(driver, {"learning_rate": 10.0, "init_scale": 1.0})
    ActionChains(driver).move_to_element(cell).perform()
    tip = driver.find_element("id", "tip")
    sub = runs.loc[(runs["learning_rate"] == 10.0) & (runs["init_scale"] == 1.0), "label"]
    assert tip.is_displayed()
    assert "learning_rate = 10, init_scale = 1" in tip.text and f"{len(sub)} runs" in tip.text
    for lab, n in sub.value_counts().items():
        assert f"{lab}: {n} (" in tip.text
    # the dashed 2/lambda line: in each init_scale row, at the log-interpolated position of
    # 2 / sharpness_init among the learning rates, counted from the first cell's left edge
    first = _cell(driver, {"learning_rate": LRS[0], "init_scale": 0.5})
    second = _cell(driver, {"learning_rate": LRS[1], "init_scale": 0.5})
    x0 = float(first.get_attribute("x"))
    cw = float(second.get_attribute("x")) - x0
    d = driver.find_element("css selector", "#map path.thr-in").get_attribute("d")
    xs = {round(float(p.split(",")[0]), 1) for p in d.replace("M", " ").replace("L", " ").split()}
    want = {round(x0 + (np.interp(np.log10(v), np.log10(LRS), range(len(LRS))) + 0.5) * cw, 1)
            for v in LR_STAR.values()}
    assert xs == want


def test_median_weights_each_sampled_curve_by_the_runs_it_stands_for(driver, folder, runs,
                                                                     tmp_path, monkeypatch):
    """With fewer bin cells than grid points, a sampled curve stands for every run of its
    (bin cell, label) group, and the bold median weighs it so."""
    monkeypatch.setattr(explorer, "MAX_CELLS", 12)  # 4 x 3 x 3 values -> 2 x 2 x 3 bins
    monkeypatch.setattr(explorer, "SAMPLE_PER_LABEL", 1)
    page = ts.explore(folder, tmp_path / "sampled.html")
    _open(driver, page)
    _cell(driver, {"learning_rate": [1.0, 10.0], "init_scale": 1.0}).click()
    ids = json.loads(driver.find_element("id", "curves").get_attribute("data-run-ids"))
    sub = runs.loc[(runs["learning_rate"] >= 1.0) & (runs["init_scale"] == 1.0)]
    group = pd.Series(list(zip(sub["seed"] // 2, sub["label"], strict=True)), index=sub.index)
    sampled = sub.loc[sub["run_id"].isin(ids)]
    assert len(ids) == len(sampled) and group[sampled.index].is_unique
    assert set(group[sampled.index]) == set(group)  # one curve for each group in the cell
    weight = group[sampled.index].map(group.value_counts()).to_numpy(float)
    assert weight.max() > 1
    curves = pd.read_parquet(folder / "curves.parquet").set_index(["run_id", "step"])["loss"]

    def lower_median(v, w):
        ok = np.isfinite(v)
        order = np.argsort(v[ok], kind="stable")
        cum = np.cumsum(w[ok][order])
        return v[ok][order][np.searchsorted(cum, cum[-1] / 2)]

    loss = np.array([[curves[(r, t)] for t in range(STEPS + 1)] for r in sampled["run_id"]])
    want = [lower_median(loss[:, t], weight) for t in range(STEPS + 1)]
    plain = [lower_median(loss[:, t], np.ones_like(weight)) for t in range(STEPS + 1)]
    assert not np.allclose(want, plain)  # the weights change the answer on this cell
    got = json.loads(driver.find_element("css selector", "#curves path.median")
                     .get_attribute("data-median"))
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_held_out_metrics_and_the_last_axis_values(driver, folder, runs, tmp_path):
    """A folder with held-out data offers final_test_loss and final_test_accuracy (a NaN held-out
    loss counted as +inf, as the training loss); the last parallel axis writes its values inside
    the panel, and an axis of a few values labels them all."""
    res = ts.load(folder)
    held = runs.assign(final_test_loss=np.where(runs["label"] == "diverged", np.nan,
                                                2 * runs["final_loss"]),
                       final_test_accuracy=0.4 + 0.01 * runs["run_id"],
                       sharpness_final=-1.23456e-5 * (1 + runs["run_id"]))
    res = ts.Results(runs=held, curves=res.curves, config=res.config)
    meta, blobs = explorer.page_data(res)
    names = [m["name"] for m in meta["metrics"]]
    assert {"final_test_loss", "final_test_accuracy"} <= set(names)
    test_loss = next(m for m in meta["metrics"] if m["name"] == "final_test_loss")
    assert test_loss["hi"] == 2 * held["final_loss"][held["label"] != "diverged"].max()
    dtype, b64 = blobs["metric:final_test_loss"]
    assert dtype == "u16"  # 81 runs: 16-bit codes, little-endian
    codes = np.frombuffer(gzip.decompress(base64.b64decode(b64)), dtype="<u2")
    top = 65535  # the code of +inf (0 is NaN)
    np.testing.assert_array_equal(codes == top, held["label"].to_numpy() == "diverged")
    page = ts.explore(res, tmp_path / "held.html")
    _open(driver, page)
    menu = [o.text for o in driver.find_elements("css selector", "#color option")]
    assert "final_test_loss (median)" in menu and "final_test_accuracy (median)" in menu
    dims = driver.execute_script("return [...document.querySelectorAll('#pc g.dim')]"
                                 ".map(g => g.dataset.dim)")
    assert dims[-1] == "sharpness_final" and "final_test_loss" in dims
    right = driver.execute_script(
        "const svg = document.getElementById('pc'), w = +svg.getAttribute('width');"
        "return [...svg.querySelectorAll('text.tick')].map(t => {"
        "  const b = t.getBBox(); return [t.textContent, w - b.x - b.width]; })")
    assert min(r for _, r in right) >= 0, right
    # an axis with few values labels each of them, not only its ends
    for axis, values in (("learning_rate", LRS), ("seed", range(SEEDS)), ("init_scale", SCALES)):
        ticks = driver.execute_script(
            "return [...document.querySelectorAll(`#pc g.dim[data-dim='${arguments[0]}'] "
            "text.tick`)].map(t => t.textContent)", axis)
        assert sorted(map(float, ticks)) == sorted(values), (axis, ticks)
    assert _errors(driver) == []
