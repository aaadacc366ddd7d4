"""Tests for trainscape.report: sections, the written answer's numbers, self-contained HTML."""

import base64
import io
import re
import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from configs import REPORT_TINY as TINY

import trainscape as ts
from trainscape.cli import commands
from trainscape.errors import InputError
from trainscape.io.results import Results
from trainscape.train import classify
from trainscape.viz import report

SECTIONS = ("answer", "heatmaps", "divergence", "curves", "seed-question", "config",
            "environment")
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr", "col", "area", "base"}
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?")


@pytest.fixture(scope="module")
def tiny():
    # with sharpness added by hand: the report only reads the columns, and measuring it here
    # would add compilation time that tests/nn/test_curvature.py already spends
    res = ts.run(TINY, out=None, progress=False)
    lam = {0: 3.0, 1: 5.0, 2: 40.0}  # 2/lam = 0.67, 0.4, 0.05: inside the lr grid
    runs = res.runs.assign(sharpness_init=res.runs["seed"].map(lam),
                           sharpness_final=0.1)
    return Results(runs=runs, curves=res.curves, config=res.config, meta=res.meta)


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    """The tiny sweep's report in both formats, built once (figures take a few seconds)."""
    folder = tmp_path_factory.mktemp("report")
    return (report.build(tiny, fmt="html", out=folder / "r.html"),
            report.build(tiny, fmt="md", out=folder / "tiny.md"))


def _hand_made(lrs, n_seeds, curve_of, axes=None, name="hand") -> Results:
    """Results from hand-written loss curves, summarised and labelled as the engine does.
    lrs None: no learning_rate axis (per-entry `learning_rate.K` axes in `axes` instead)."""
    axes = axes or {}
    rows, curve_rows = [], []
    extra = list(axes.items())
    combos = [{}]
    for key, vals in [*([("learning_rate", lrs)] if lrs is not None else []), *extra,
                      ("seed", range(n_seeds))]:
        combos = [{**c, key: v} for c in combos for v in vals]
    for run_id, cell in enumerate(combos):
        loss = curve_of(cell)
        s = classify.summarize_curve(loss)
        label = classify.label_curve(loss)
        rows.append({
            "run_id": run_id, **cell,
            **{k: s[k] for k in ("initial_loss", "final_loss", "min_loss", "max_loss",
                                 "peak_step", "rebound", "spike_ratio")},
            **{k: s[k] if s[k] >= 0 else None
               for k in ("diverged_step", "recover_step", "spike_step", "spike_recover_step")},
            "label": label,
        })
        curve_rows += [{"run_id": run_id, "step": t, "loss": v} for t, v in enumerate(loss)]
    runs = pd.DataFrame(rows)
    for c in ("diverged_step", "recover_step", "spike_step", "spike_recover_step"):
        runs[c] = runs[c].astype("Int64")
    sweep = {**({"learning_rate": list(lrs)} if lrs is not None else {}),
             **{k: list(v) for k, v in axes.items()}, "seed": {"range": n_seeds}}
    cfg = ts.parse({"name": name, "data": {"name": "moons"}, "train": {"steps": 20},
                    "sweep": sweep})
    return Results(runs=runs, curves=pd.DataFrame(curve_rows), config=cfg, meta={})


def _blow_up(cell):
    loss = 0.7 * 10.0 ** np.arange(21, dtype=float)
    loss[5:] = np.nan
    loss[4] = np.inf
    return loss


def _converge(cell):
    return 0.7 * np.exp(-0.1 * np.arange(21) * (1 + cell["seed"]))


def _check_numbers(text: str, facts: dict) -> None:
    # 2 digits, 3 for learning rates, up to 6 where two compared numbers need them to differ;
    # axis values that are names (dtype) are facts too, but not numbers
    shown = {report.fmt_number(abs(v), s) for v in facts.values() if not isinstance(v, str)
             for s in range(2, 7)}  # the pattern below reads a number without its sign
    tokens = NUMBER.findall(text)
    assert tokens, text
    missing = [t for t in tokens if t not in shown]
    assert not missing, f"numbers not backed by facts: {missing}\n{text}"


def _counts(runs, lr):
    at = runs.loc[np.isclose(runs["learning_rate"], lr)]
    return at["label"].value_counts(), len(at)


# ------------------------------------------------------------------ the written answer


def test_every_number_in_the_answer_is_a_fact(tiny):
    text, facts = report.answer(tiny)
    _check_numbers(text, facts)
    assert "lr = 0.01" in text and "lr = 1 " in text


def test_facts_match_the_tables(tiny):
    runs = tiny.runs
    _, facts = report.answer(tiny)
    assert facts["n_runs"] == len(runs) and facts["steps"] == TINY["train"]["steps"]
    for key, lr in (("low", 0.01), ("high", 1.0)):
        counts, n = _counts(runs, lr)
        assert facts[f"{key}.lr"] == pytest.approx(lr) and facts[f"{key}.n"] == n
        top = [lab for lab in classify.LABELS if f"{key}.n_{lab}" in facts]
        assert len(top) == 1  # the sentence names the majority label's count
        assert facts[f"{key}.n_{top[0]}"] == counts.get(top[0], 0)
    # the curvature numbers: one sharpness value per seed, the lr does not change the init
    lam = runs.groupby("seed")["sharpness_init"].first()
    assert facts["sharpness.n_inits"] == len(lam)
    assert facts["sharpness.init_median"] == pytest.approx(lam.median())
    assert facts["sharpness.predicted_lr"] == pytest.approx(2 / lam.median())
    own = 2 / runs["sharpness_init"]
    below, above = runs["learning_rate"] < own, runs["learning_rate"] > own
    assert facts["sharpness.below_n"] == below.sum()
    assert facts["sharpness.below_count"] == (runs.loc[below, "label"] == "converged").sum()
    assert facts["sharpness.above_n"] == above.sum()
    assert facts["sharpness.above_count"] == (runs.loc[above, "label"] == "converged").sum()
    # grid facts against a direct recomputation
    table = (runs.groupby("learning_rate")["label"].value_counts().unstack(fill_value=0)
             .reindex(columns=list(classify.LABELS), fill_value=0))
    total = table.sum(axis=1)
    div = table["diverged"]
    assert div.any() and (2 * div > total).any()  # the tiny sweep diverges, mostly at the top
    first = div.index[div > 0][0]
    assert facts["grid.diverge_first_lr"] == pytest.approx(first)
    assert facts["grid.diverge_first_count"] == div[first]
    assert facts["grid.diverge_most_lr"] == pytest.approx(div.index[2 * div > total][0])
    all_conv = (table["converged"] == total).to_numpy()
    k = int(np.argmin(all_conv))
    assert all_conv[0] and 0 < k < len(all_conv)
    assert facts["grid.all_converged_up_to"] == pytest.approx(table.index[k - 1])


def _g(x, digits=2) -> str:
    """A number as the answer is documented to print it: `digits` significant digits (2, and 3
    for learning rates), no trailing zeros; written here, not taken from `report`."""
    return f"{float(x):.{digits}g}"


def _exact(x) -> str:
    """A median of step counts as the answer and the divergence table print it: exactly
    (10.5, 28.5, 380), integers without a decimal point."""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def _sentences(text: str) -> list[list[str]]:
    """The numbers of each sentence, in order (a sentence ends at a period before a space or
    the end; "2/curvature" and "3/3" give their numbers too)."""
    return [NUMBER.findall(s) for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def test_answer_sentences_match_numbers_recomputed_from_the_runs(tiny):
    """Every sentence of the tiny sweep's answer, its numbers in order, against values computed
    here from the runs table (pandas on the columns, the labelling rules of the module
    docstring), not from `report.answer`'s facts: swapped or misattributed numbers fail."""
    runs = tiny.runs
    text, _ = report.answer(tiny)
    lrs = np.sort(runs["learning_rate"].unique())
    at = {lr: runs.loc[runs["learning_rate"] == lr] for lr in lrs}
    count = {lr: at[lr]["label"].value_counts() for lr in lrs}

    def n_of(lr, lab):
        return str(int(count[lr].get(lab, 0)))

    steps = TINY["train"]["steps"]
    expected = [[str(len(runs)), str(len(lrs)), str(runs["seed"].nunique()), str(steps)]]
    for lr in (0.01, 1.0):  # the question's two learning rates, both all converged here
        sel = at[lr]
        assert (sel["label"] == "converged").all()
        expected.append([_g(lr, 3), n_of(lr, "converged"), str(len(sel)),
                         _g(sel["initial_loss"].median()), _g(sel["final_loss"].median()),
                         str(steps)])
    # lr 1 is not where this grid catapults: the lr with the most catapults gets a sentence
    cat_lr = max(lrs, key=lambda lr: (int(count[lr].get("catapult", 0)), -lr))
    sel = at[cat_lr].loc[at[cat_lr]["label"] == "catapult"]
    took = (sel["spike_recover_step"] - sel["spike_step"]).dropna()
    expected.append([_g(cat_lr, 3), _exact(sel["spike_step"].median()),
                     _g(sel["spike_ratio"].median()), n_of(cat_lr, "catapult"),
                     str(len(at[cat_lr])), str(len(took)), _exact(took.median()),
                     _g(sel["final_loss"].median())])
    lam = runs.groupby("seed")["sharpness_init"].first()
    expected.append([str(len(lam)), _g(lam.median()), "2", _g(2 / lam.median())])
    own = 2 / runs["sharpness_init"]
    below, above = runs["learning_rate"] < own, runs["learning_rate"] > own
    conv = runs["label"] == "converged"
    expected.append([str((below & conv).sum()), str(below.sum()), "2",
                     str((above & conv).sum()), str(above.sum())])
    fin = runs.loc[runs["learning_rate"] == cat_lr, "sharpness_final"].median()
    assert fin < 2 / cat_lr  # "below 2/lr"
    expected.append([_g(cat_lr, 3), _g(fin), "2", _g(2 / cat_lr)])
    all_conv = [lr for lr in lrs if (at[lr]["label"] == "converged").all()]
    k = len(all_conv)
    assert all_conv == list(lrs[:k])  # a contiguous band from the smallest lr
    not_conv = at[lrs[k]]["label"].value_counts().drop("converged", errors="ignore")
    expected.append([_g(lrs[k - 1], 3), _g(lrs[k], 3), str(int(not_conv.sum())),
                     str(len(at[lrs[k]])),  # then each label's count, in classify.LABELS order
                     *[str(int(not_conv[lab])) for lab in classify.LABELS if lab in not_conv]])
    first_cat = next(lr for lr in lrs if count[lr].get("catapult", 0) > 0)
    major = [lr for lr in lrs if 2 * count[lr].get("catapult", 0) > len(at[lr])]
    assert len(major) == 1
    expected.append([_g(first_cat, 3), n_of(first_cat, "catapult"), str(len(at[first_cat])),
                     _g(major[0], 3)])
    first_div = next(lr for lr in lrs if count[lr].get("diverged", 0) > 0)
    most_div = next(lr for lr in lrs if 2 * count[lr].get("diverged", 0) > len(at[lr]))
    expected.append([_g(first_div, 3), n_of(first_div, "diverged"), str(len(at[first_div])),
                     _g(most_div, 3), n_of(most_div, "diverged"), str(len(at[most_div]))])
    assert _sentences(text) == expected, text


def test_runs_that_did_not_converge_are_named_by_label():
    """"did not converge (almost) monotonically" read oddly of runs that merely stalled: the
    sentence now counts each label (here seed 0 stalls at both rates, seed 1 converges at
    the smaller one and blows up at the larger)."""
    def curve(cell):
        if cell["seed"] == 0:
            return np.full(21, 0.7)  # flat: stalled
        return _converge(cell) if cell["learning_rate"] < 1 else _blow_up(cell)

    res = _hand_made([0.1, 1.0], 2, curve)
    assert list(res.runs["label"]) == ["stalled", "converged", "stalled", "diverged"]
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert ("Even at the smallest lr, 0.1, 1/2 runs did not converge (almost) monotonically "
            "(1 stalled).") in text


def test_catapult_facts_match_runs():
    # a spike at step 5 to 4x the running minimum, then recovery
    def curve(cell):
        loss = np.exp(-0.3 * np.arange(21)) * 2.0
        if cell["learning_rate"] >= 1:
            loss[5] = 4 * loss[:5].min()
        return loss

    res = _hand_made([0.01, 1.0], 4, curve)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    sel = res.runs.loc[res.runs["learning_rate"] == 1.0]
    assert (sel["label"] == "catapult").all()
    assert facts["high.n_catapult"] == 4
    assert facts["high.spike_step_median"] == 5
    # back at or below loss[4] = 2 e^-1.2 (the low before the spike) at step 6 = 2 e^-1.8
    assert facts["high.n_recovered"] == 4 and facts["high.recover_steps_median"] == 1
    assert facts["high.spike_median"] == pytest.approx(sel["spike_ratio"].median())
    assert facts["high.final_median"] == pytest.approx(sel["final_loss"].median())
    assert "not measured" in text and "[metrics] sharpness = true" in text


def test_counts_of_one_read_in_the_singular():
    """'1 of them are back down ... a median 1 steps after', 'of 1 full-batch sgd steps
    each': one run, one step, one recovery."""
    def curve(cell):
        loss = np.exp(-0.3 * np.arange(21)) * 2.0
        if cell["learning_rate"] >= 1 and cell["seed"] == 0:
            loss[5] = 4 * loss[:5].min()  # back below the low before it at step 6
        elif cell["learning_rate"] >= 1:
            loss[5:] = 3 * loss[:5].min()  # no way back, but below the start
        return loss

    res = _hand_made([0.01, 1.0], 2, curve)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "; 1 of them is back down to that lowest loss 1 step after the top" in text, text
    one = ts.parse({"name": "hand", "data": {"name": "moons"}, "train": {"steps": 1},
                    "sweep": {"learning_rate": [0.01, 1.0], "seed": {"range": 2}}})
    text, _ = report.answer(Results(runs=res.runs, curves=res.curves, config=one, meta={}))
    assert "of 1 full-batch sgd step each." in text and " after 1 steps" not in text


def test_catapult_majority_that_is_not_a_band_is_not_called_one():
    # catapults at lr 1 and 3, none at 2: "the majority from lr = 1 to 3" would be false
    def curve(cell):
        loss = np.exp(-0.3 * np.arange(21)) * 2.0
        if cell["learning_rate"] in (1.0, 3.0):
            loss[5] = 4 * loss[:5].min()
        return loss

    text, facts = report.answer(_hand_made([0.01, 1.0, 2.0, 3.0], 4, curve))
    _check_numbers(text, facts)
    assert "majority from" not in text
    assert "are the majority at 2/3 learning rates from lr = 1 to 3" in text
    band, _ = report.answer(_hand_made([0.01, 1.0, 2.0, 3.0], 4, lambda c: curve(
        {"learning_rate": 1.0 if c["learning_rate"] >= 1 else 0.01})))
    assert "are the majority from lr = 1 to 3" in band


def _spike(top: int, back: int, n: int = 41) -> np.ndarray:
    """A falling loss with a 4x spike at step `top`, back below its earlier minimum `back`
    steps later."""
    loss = 2.0 * np.exp(-0.05 * np.arange(n))
    low = loss[:top].min()
    loss[top] = 4 * low
    loss[top + 1:top + back] = np.linspace(3 * low, 1.05 * low, back - 1)
    loss[top + back:] = np.minimum(loss[top + back:], 0.99 * low)
    return loss


def test_step_medians_print_exactly_as_in_the_divergence_table():
    """A median of step counts halfway between two steps (10.5, 12.5) printed to 2 digits read
    "10" and "12" in the answer while the divergence table said 12.5."""
    def curve(cell):
        if cell["learning_rate"] < 1:
            return _converge(cell)
        odd = cell["seed"] % 2
        return _spike(10 + odd, 12 + odd)

    res = _hand_made([0.01, 1.0], 4, curve)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    sel = res.runs.loc[(res.runs["learning_rate"] == 1.0) & (res.runs["label"] == "catapult")]
    assert len(sel) == 4
    top = sel["spike_step"].astype(float).median()
    took = (sel["spike_recover_step"] - sel["spike_step"]).astype(float).median()
    assert (top, took) == (10.5, 12.5)
    assert f"at a median step {_exact(top)}, " in text, text
    assert f"a median {_exact(took)} steps after the top of the spike" in text, text
    head, rows, _ = report._divergence_rows(res)
    row = next(r for r in rows if r[0] == "1")
    assert row[head.index("median steps to recover")] == _exact(took)


def _held_out(curve, test_loss) -> Results:
    res = _hand_made([0.1, 0.2, 0.3, 0.4], 6, curve)
    runs = res.runs.assign(final_test_loss=[test_loss(r) for r in res.runs.itertuples()])
    return Results(runs=runs, curves=res.curves, config=res.config, meta={})


def _catapult_or_not(cell):
    # catapults: seeds 0-2 at lr >= 0.2, only seed 0 at lr 0.1 (one catapult: not compared)
    if cell["seed"] == 0 or (cell["learning_rate"] >= 0.2 and cell["seed"] < 3):
        return _spike(5, 2, n=21)
    return _converge(cell)


@pytest.mark.parametrize("lower_at", [(), (0.3,)])
def test_held_out_tally_says_its_rule_and_counts_in_words(lower_at):
    """ "Over all 3 learning rates with both, the catapult's median is lower at 0." read as a
    loss of 0, and did not say which learning rates were compared."""
    def test_loss(r):
        cat = r.label == "catapult"
        if r.learning_rate in lower_at:
            cat = not cat
        return (0.3 if cat else 0.2) + 0.001 * r.seed

    res = _held_out(_catapult_or_not, test_loss)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    runs = res.runs
    n = runs.groupby("learning_rate")["label"].value_counts().unstack(fill_value=0)
    both = n.index[(n["catapult"] >= 2) & (n["converged"] >= 2)]
    med = (runs[runs["learning_rate"].isin(both)]
           .groupby(["learning_rate", "label"])["final_test_loss"].median().unstack())
    lower = int((med["catapult"] < med["converged"]).sum())
    higher = int((med["catapult"] > med["converged"]).sum())
    assert len(both) == 3 and lower + higher == 3 and lower == len(lower_at)
    head = (f"Of the {len(both)} learning rates with at least 2 catapult and 2 converged runs, "
            "the catapult's median held-out loss is ")
    if lower:
        assert (head + f"lower than the converged runs' at {lower} of them and higher at "
                f"{higher}.") in text, text
    else:
        assert head + f"higher than the converged runs' at all {higher}." in text, text
    assert "lower at 0" not in text and "Over all" not in text


@pytest.mark.parametrize("final, sentence", [
    (9.8, "the curvature grew during training (progressive sharpening), from {init} at "
          "initialization to {final} at the end, within {pct}% of 2/lr = {limit}: training "
          "reached the edge of stability"),
    (13.0, "the curvature grew during training (progressive sharpening), from {init} at "
           "initialization to {final} at the end, above 2/lr = {limit}."),
    (3.0, "the curvature at the end, {final}, is below 2/lr = {limit} as well"),
])
def test_a_catapult_below_the_initial_threshold_is_not_explained_by_it(final, sentence):
    """Catapults at lr 0.2 < 2/curvature at init (0.4): the step does not overshoot at the
    start; runs that end with their curvature at 2/lr sharpened during training. The answer
    said nothing of it and left "steps above 2/curvature overshoot" as the only reason."""
    def curve(cell):
        return _spike(5, 2, n=21) if cell["learning_rate"] == 0.2 else _converge(cell)

    res = _with_sharpness(_hand_made([0.01, 0.1, 0.2], 4, curve), init=5.0,
                          final_at={0.01: 5.0, 0.1: 5.0, 0.2: final})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    at = res.runs.loc[res.runs["learning_rate"] == 0.2]
    assert (at["label"] == "catapult").all()
    init, fin = at["sharpness_init"].median(), at["sharpness_final"].median()
    assert 0.2 < 2 / res.runs["sharpness_init"].median()
    pct = round(100 * (classify.EOS_FACTOR - 1))
    expected = ("At lr = 0.2, below 2/curvature at initialization, the first steps do not "
                "overshoot; " + sentence.format(init=_g(init), final=_g(fin), limit=_g(2 / 0.2),
                                                pct=pct))
    assert expected in text, text
    at_edge = classify.edge_of_stability(np.array([0]), fin, 0.2)[0] == 0 and fin > 9
    assert ("edge of stability" in text) == at_edge
    assert "still above" not in text


def test_the_final_curvature_sentence_reads_only_runs_that_did_not_diverge():
    """At the headline lr (most catapults) the diverged runs keep the weights of before their
    blow-up, whose low curvature made the answer say "training moved the network to a
    flatter region, where this step is stable" of runs that blew up."""
    def curve(cell):  # at lr 1: seeds 0, 1 catapult, seeds 2, 3 blow up
        if cell["learning_rate"] == 1.0:
            return _spike(5, 2, n=21) if cell["seed"] < 2 else _blow_up(cell)
        return _converge(cell)

    res = _with_sharpness(_hand_made([0.01, 0.1, 1.0], 4, curve), init=5.0,
                          final_at={0.01: 5.0, 0.1: 5.0, 1.0: 2.0})
    runs = res.runs
    stable = runs.loc[(runs["learning_rate"] == 1.0) & (runs["label"] != "diverged")].index
    runs.loc[stable, "sharpness_final"] = 6.0  # the two catapults end above 2/lr = 2
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "flatter region" not in text, text
    assert "the curvature at the end is 6, still above 2/lr = 2" in text, text
    # lr 1 is both the question's lr and where most catapults are: described once
    assert text.count("At lr = 1 the loss") == 1, text


def test_most_diverge_from_is_true_of_every_larger_lr():
    """At init_scale = 0.5 most runs diverge at lr 10 but not at 100: "most diverge from
    lr = 10" was false of lr 100."""
    def curve(cell):
        lr, z = cell["learning_rate"], cell["init_scale"]
        bad = lr in (10.0, 1000.0) if z == 0.5 else lr >= 100
        return _blow_up(cell) if bad else _converge(cell)

    res = _hand_made([1.0, 10.0, 100.0, 1000.0], 2, curve, axes={"init_scale": [0.5, 2.0]})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    segs = {}
    for z, sub in res.runs.groupby("init_scale"):
        div = sub.groupby("learning_rate")["label"].apply(lambda s: 2 * (s == "diverged").sum()
                                                         > len(s))
        tail = next(lr for lr in div.index if div.loc[lr:].all())
        segs[z] = (tail, [lr for lr in div.index[div] if lr < tail])
    assert segs == {0.5: (1000.0, [10.0]), 2.0: (100.0, [])}
    assert ("at init_scale = 0.5 runs stop converging (almost) monotonically from lr = 10 and "
            "most diverge from lr = 1000, and also at the smaller lr = 10;") in text, text
    assert ("at init_scale = 2 runs stop converging (almost) monotonically from lr = 100 and "
            "most diverge from lr = 100.") in text, text
    assert facts["by.init_scale.0.diverge_most_lr"] == 1000.0


def test_per_layer_learning_rates_are_not_given_the_fixed_one():
    """A zoom level sweeps learning_rate.0 x learning_rate.1 and its config lists only each
    axis's ends: the answer said "(2 learning_rate.0 values x 2 learning_rate.1 values)" and
    described "lr = 0.01", the config's learning rate that no swept entry trains at."""
    def curve(cell):
        return (_blow_up(cell) if cell["learning_rate.0"] * cell["learning_rate.1"] > 4
                else _spike(5, 2, n=21) if cell["learning_rate.0"] >= 2 else _converge(cell))

    full = _hand_made(None, 1, curve, axes={"learning_rate.0": [1.0, 2.0, 4.0, 8.0],
                                            "learning_rate.1": [0.5, 1.0, 2.0]})
    runs = full.runs.drop(index=[1, 5]).drop(columns=["seed"])  # not every combination
    cfg = ts.parse({"name": "level", "data": {"name": "moons"}, "train": {"steps": 20},
                    "sweep": {"learning_rate.0": [1.0, 8.0], "learning_rate.1": [0.5, 2.0]}})
    res = Results(runs=runs, curves=full.curves, config=cfg, meta={})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    n0, n1 = runs["learning_rate.0"].nunique(), runs["learning_rate.1"].nunique()
    combos = len(runs[["learning_rate.0", "learning_rate.1"]].drop_duplicates())
    assert (n0, n1, combos) == (4, 3, 10)
    assert (f"From {len(runs)} runs ({n0} learning_rate.0 values and {n1} learning_rate.1 "
            f"values: {combos} of their {n0 * n1} combinations)") in text, text
    assert "lr = " not in text and "0.01" not in text
    counts = runs["label"].value_counts()
    assert ("Over the grid's 10 runs: " + ", ".join(
        f"{lab} {counts[lab]}" for lab in classify.LABELS if lab in counts) + ".") in text
    assert (f"learning_rate.0 from {_g(runs['learning_rate.0'].min(), 3)} to "
            f"{_g(runs['learning_rate.0'].max(), 3)}") in text
    # the divergence table and the curves: no learning_rate row or title either
    head, rows, note = report._divergence_rows(res)
    assert head[0] == "grid" and [r[:2] for r in rows] == [["all runs", str(len(runs))]]
    assert rows[0][2:7] == [str(counts.get(lab, 0)) for lab in classify.LABELS]
    fig = report._label_curves(res)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles and not any("lr =" in t for t in titles), titles


def test_per_layer_rates_with_seeds_map_the_two_rates_and_say_so():
    """learning_rate.0 x learning_rate.1 x seed: the heatmap plotted learning_rate.0 against
    seed (pooling learning_rate.1) while the answer said it showed the two rates."""
    full = _hand_made(None, 2, _converge, axes={"learning_rate.0": [1.0, 2.0, 4.0],
                                                "learning_rate.1": [0.5, 1.0]})
    cfg = ts.parse({"name": "rates", "data": {"name": "moons"}, "train": {"steps": 20},
                    "sweep": {"learning_rate.0": [1.0, 2.0, 4.0], "learning_rate.1": [0.5, 1.0],
                              "seed": {"range": 2}}})
    res = Results(runs=full.runs, curves=full.curves, config=cfg, meta={})
    assert report._heatmap_axes(res) == ("learning_rate.0", "learning_rate.1")
    assert "the heatmaps show the labels over learning_rate.0 and learning_rate.1." in \
        report.answer(res)[0]


def test_answer_without_sharpness_says_how_to_measure_it(tiny):
    res = Results(runs=tiny.runs.drop(columns=["sharpness_init", "sharpness_final"]),
                  curves=tiny.curves, config=tiny.config, meta=tiny.meta)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "not measured" in text and "`[metrics] sharpness = true`" in text
    assert not any(k.startswith("sharpness.") for k in facts)


def test_other_axis_sentence():
    def curve(cell):
        if cell["learning_rate"] * cell["init_scale"] >= 2:
            return _blow_up(cell)
        return _converge(cell)

    res = _hand_made([0.1, 1.0, 10.0], 2, curve, axes={"init_scale": [0.5, 2.0]})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "By init_scale" in text
    assert facts["by.init_scale.0.value"] == 0.5
    assert facts["by.init_scale.0.diverge_most_lr"] == 10.0
    assert facts["by.init_scale.1.diverge_most_lr"] == 1.0


def test_learning_rate_by_dtype_sweep(tmp_path):
    """A dtype axis next to learning_rate is the "other axis" of the answer and the heatmaps;
    its values are names, and formatting them as numbers crashed `trainscape report`."""
    def curve(cell):  # float64 runs blow up from lr 1 on, float32 runs only at lr 10
        top = 10.0 if cell["dtype"] == "float32" else 1.0
        return _blow_up(cell) if cell["learning_rate"] >= top else _converge(cell)

    res = _hand_made([0.1, 1.0, 10.0], 2, curve, axes={"dtype": ["float32", "float64"]})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "(3 learning rates x 2 dtypes x 2 seeds)" in text
    assert ("By dtype: at dtype = float32 runs stop converging (almost) monotonically from "
            "lr = 10 and most diverge from lr = 10; at dtype = float64 runs stop converging "
            "(almost) monotonically from lr = 1 and most diverge from lr = 1.") in text
    assert facts["by.dtype.0.value"] == "float32" and facts["by.dtype.1.value"] == "float64"
    html_doc = report.build(res, fmt="html", out=tmp_path / "r.html").read_text()
    p = _Checker()
    p.feed(html_doc)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert {"answer", "heatmaps", "fig-labels", "fig-p_diverged"} <= p.ids
    md = report.build(res, fmt="md", out=tmp_path / "r.md").read_text()
    assert "By dtype: at dtype = float32" in md and "learning_rate against dtype" in md
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _with_sharpness(res: Results, init: float, final_at) -> Results:
    runs = res.runs.assign(sharpness_init=init,
                           sharpness_final=res.runs["learning_rate"].map(final_at))
    return Results(runs=runs, curves=res.curves, config=res.config, meta={})


@pytest.mark.parametrize("final, sentence", [
    # 0.5% above 2/lr: both read "2" at 2 digits, and "still above" contradicted itself
    (2.0105, "At lr = 1 the curvature at the end is 2.01, within 5% of 2/lr = 2: training "
             "brought it down to the edge of stability"),
    (1.99, "At lr = 1 the curvature at the end is 1.99, within 5% of 2/lr = 2: "),
    (2.5, "At lr = 1 the curvature at the end is 2.5, still above 2/lr = 2."),
    (1.5, "At lr = 1 the curvature at the end is 1.5, below 2/lr = 2: training moved"),
])
def test_curvature_sentence_never_compares_equal_numbers(final, sentence):
    """The final curvature at lr 1 against 2/lr = 2: "above" only where classify's edge of
    stability rule (EOS_FACTOR) would call a run ending there oscillating, and never between
    two numbers that print the same."""
    res = _with_sharpness(_hand_made([0.01, 1.0], 4, _converge), init=5.0,
                          final_at={0.01: 0.1, 1.0: final})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert sentence in text, text
    oscillating = classify.edge_of_stability(np.array([0]), final, 1.0)[0] != 0
    assert ("still above" in text) == oscillating
    assert facts["headline.sharpness_final_median"] == pytest.approx(final)
    assert facts["headline.limit"] == pytest.approx(2.0)


def test_the_curvature_median_says_which_initializations_it_leaves_out():
    """`sharpness_which = "magnitude"` can measure a negative eigenvalue: such an
    initialization gives no 2/curvature and is left out of the median, which said "median
    over 1 initializations" of a grid of 4 seeds without saying why."""
    res = _hand_made([0.01, 1.0], 4, _converge)
    lam = {0: -3.0, 1: 4.0, 2: 5.0, 3: 6.0}  # seed 0's eigenvalue of largest magnitude < 0
    runs = res.runs.assign(sharpness_init=res.runs["seed"].map(lam))
    text, facts = report.answer(Results(runs=runs, curves=res.curves, config=res.config,
                                        meta={}))
    _check_numbers(text, facts)
    assert ("median over the 3 of 4 initializations where it is positive) is about 5,"
            in text), text
    text, _ = report.answer(Results(runs=runs.assign(sharpness_init=5.0), curves=res.curves,
                                    config=res.config, meta={}))
    assert "median over 4 initializations) is about 5," in text


def test_curvature_sentence_shows_digits_past_the_tolerance():
    # 2/lr = 0.996 and a final curvature 5.2% above it: "1" and "1" at 2 digits
    lr = 2 / 0.996

    def curve(cell):
        loss = np.exp(-0.3 * np.arange(21)) * 2.0
        if cell["learning_rate"] == lr:
            loss[5] = 4 * loss[:5].min()  # a catapult: the headline lr
        return loss

    res = _with_sharpness(_hand_made([0.01, 1.0, lr], 4, curve), init=5.0,
                          final_at={0.01: 0.1, 1.0: 0.1, lr: 0.996 * 1.052})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "At lr = 2.01 the curvature at the end is 1.05, still above 2/lr = 0.996." in text


def test_report_names_its_folder_relative_to_the_current_directory(tmp_path, monkeypatch):
    """A committed report carried the absolute path of the machine that wrote it. Both
    documents are built once; the other places the folder is seen from check the path the
    report names (a report's figures cost about a second each time)."""
    folder = tmp_path / "studies" / "res"
    folder.parent.mkdir()
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(tmp_path)
    md = report.build(folder, fmt="md", out=outside / "r.md").read_text()
    assert "trainscape report of 4 runs from `studies/res`." in md
    doc = report.build(folder, fmt="html", out=outside / "r.html").read_text()
    assert "trainscape report of 4 runs from <code>studies/res</code>" in doc
    for cwd, given, shown in ((folder.parent, "res", "res"),
                              (outside, folder, str(folder)),
                              (outside, "../studies/res", "../studies/res")):
        monkeypatch.chdir(cwd)
        assert report._shown_path(ts.load(given).path) == shown, (cwd, given)


def test_fmt_number():
    assert [report.fmt_number(v) for v in (1.0, 16, 0.0709, 28.18, 1.6e-5, 114.3, 2.5e7)] == [
        "1", "16", "0.071", "28", "1.6e-5", "110", "2.5e7"]
    assert report.fmt_number(0.063095734448, 3) == "0.0631"


# ------------------------------------------------------------------ the documents


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.ids, self.urls = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_html_is_self_contained_and_valid(tiny, built):
    doc = built[0].read_text()
    p = _Checker()
    p.feed(doc)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert set(SECTIONS) <= p.ids
    assert doc.startswith("<!DOCTYPE html>")
    for bad in ("http://", "https://", 'src="//', "href=\"//", "@import", "url("):
        assert bad not in doc
    imgs = list(p.urls)
    assert len(imgs) >= 4 and all(u.startswith("data:image/png;base64,") for u in imgs)
    from PIL import Image

    for u in imgs:
        img = Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))
        # readable at their written size: not tiny, not wider than a laptop screen
        assert 500 <= img.width <= 1400 and 200 <= img.height <= 1000, img.size
    text, _ = report.answer(tiny)
    assert text.split("\n\n")[0] in doc  # the answer comes through verbatim


def test_markdown_writes_its_images(built):
    doc = built[1].read_text()
    for heading in ("## Answer", "## Heatmaps", "## Divergence table", "## Loss curves by label",
                    "## The seed question", "## Configuration", "## Environment"):
        assert heading in doc
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", doc)
    assert len(images) >= 4
    for name in images:
        f = built[1].parent / name
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name.startswith("tiny-")
    assert "| learning_rate | runs |" in doc and "```toml" in doc


def test_divergence_table_rows(tiny, built):
    doc = built[1].read_text()
    counts, n = _counts(tiny.runs, 1000.0)
    row = next(line for line in doc.splitlines() if line.startswith("| 1000 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(n)
    assert cells[2:7] == [str(counts.get(lab, 0)) for lab in classify.LABELS]
    assert cells[7] == f"{counts.get('diverged', 0) / n:.2f}"


def test_all_diverged(tmp_path):
    res = _hand_made([0.1, 1.0, 10.0], 3, _blow_up)
    assert (res.runs["label"] == "diverged").all()
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert "Every run diverged" in text
    for fmt in report.FORMATS:
        assert report.build(res, fmt=fmt, out=tmp_path / f"r.{fmt}").is_file()


def test_single_learning_rate_and_single_seed(tmp_path):
    res = _hand_made([0.1], 1, _converge)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    for fmt in report.FORMATS:
        assert report.build(res, fmt=fmt, out=tmp_path / f"r.{fmt}").is_file()


@pytest.mark.parametrize("train, axis, words", [
    ({}, None, "of 20 full-batch sgd steps each."),
    ({"batch_size": 16}, None, "of 20 sgd steps each, on mini-batches of 16 samples."),
    ({}, [64, 16], "of 20 sgd steps each, on mini-batches of 16 or 64 samples."),
])
def test_the_answer_says_which_batches_the_steps_took(train, axis, words):
    res = _hand_made([0.1], 2, _converge, axes={"batch_size": axis} if axis else None)
    sweep = {"learning_rate": [0.1], **({"batch_size": axis} if axis else {}),
             "seed": {"range": 2}}
    cfg = ts.parse({"name": "hand", "data": {"name": "moons"},
                    "train": {"steps": 20, **train}, "sweep": sweep})
    text, facts = report.answer(Results(runs=res.runs, curves=res.curves, config=cfg, meta={}))
    _check_numbers(text, facts)
    assert words in text.split("\n")[0]


def test_unswept_learning_rate(tmp_path):
    res = _hand_made([0.1], 2, _converge)
    res = Results(runs=res.runs.drop(columns=["learning_rate"]), curves=res.curves,
                  config=ts.parse({"name": "x", "sweep": {"seed": {"range": 2}}}), meta={})
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    assert facts["low.lr"] == 0.01  # the config's fixed learning rate
    assert report.build(res, out=tmp_path / "r.html").is_file()


def test_paths_cli_and_errors(tiny, tmp_path, capsys):
    with pytest.raises(InputError, match="out"):
        report.build(tiny)  # in memory: nowhere to write by default
    with pytest.raises(InputError, match="format"):
        report.build(tiny, fmt="pdf", out=tmp_path / "r.pdf")
    with pytest.raises(InputError, match="does not exist"):
        report.build(tiny, out=tmp_path / "missing" / "r.html")
    with pytest.raises(InputError, match="does not exist"):
        commands.report(tmp_path / "no-such-results")
    folder = tmp_path / "res"
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    assert commands.report(folder) == 0
    assert (folder / "report.html").is_file()
    assert str(folder / "report.html") in capsys.readouterr().out
    assert report.build(folder, out=tmp_path / "x.md").suffix == ".md"  # format from suffix
    assert (tmp_path / "x-labels.png").is_file()


def _files(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_report_never_replaces_a_results_file_or_another_file(tmp_path, capsys):
    """`report R --out R/runs.parquet` once replaced the finished runs with HTML."""
    from trainscape.cli.main import main

    folder = tmp_path / "res"
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    (folder / "manifest.json").write_text('{"finished": true}')
    (tmp_path / "notes.txt").write_text("mine")
    before = _files(tmp_path)
    for out in ("res/runs.parquet", "res/curves.parquet", "res/meta.json",
                "res/manifest.json", "res/.lock", "res/../res/meta.json", "notes.txt"):
        assert main(["report", str(folder), "--out", str(tmp_path / out)]) == 2, out
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(tmp_path / out) in err, err
    with pytest.raises(InputError, match="results folder's own files"):
        report.build(folder, out=folder / "runs.parquet", fmt="html")
    assert _files(tmp_path) == before
    # the default output replaces its own earlier report
    assert commands.report(folder) == 0 and commands.report(folder) == 0
    assert (folder / "report.html").is_file()
    assert {k: v for k, v in _files(tmp_path).items() if k != "res/report.html"} == before


def test_report_replaces_only_an_earlier_report_and_its_own_figures(tmp_path, capsys):
    """A user's README.md, page.html, or a PNG a Markdown report's figure would be named like,
    are never replaced (only the suffix was once checked); earlier reports are."""
    from trainscape.cli.main import main

    folder = tmp_path / "res"
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    (tmp_path / "README.md").write_text("# mine\n")
    (tmp_path / "page.html").write_text("<html>mine</html>")
    (tmp_path / "notes-labels.png").write_bytes(b"mine")
    before = _files(tmp_path)
    for out in ("README.md", "page.html", "notes.md"):
        assert main(["report", str(folder), "--out", str(tmp_path / out)]) == 2, out
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and out in err, err
    assert _files(tmp_path) == before
    for out in ("rep.md", "rep.html"):  # a new report, then the same again over it
        assert main(["report", str(folder), "--out", str(tmp_path / out)]) == 0
        assert main(["report", str(folder), "--out", str(tmp_path / out)]) == 0
    assert (tmp_path / "rep-labels.png").is_file()
    assert {k: v for k, v in _files(tmp_path).items() if k in before} == before


def test_report_refuses_an_unwritable_folder_before_drawing(tmp_path, monkeypatch):
    import os

    folder = tmp_path / "res"
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    real = os.access
    # as if the folder were read-only (root would write into a chmod 555 folder anyway)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw:
                        False if str(p) == str(folder) else real(p, mode, **kw))
    monkeypatch.setattr(report, "_figures", lambda *a: pytest.fail("drew the figures"))
    with pytest.raises(InputError, match="is not writable"):
        commands.report(folder)
    assert not (folder / "report.html").exists()


def test_report_paths_that_are_files_say_so(tmp_path):
    folder, afile = tmp_path / "res", tmp_path / "afile"
    _hand_made([0.1, 1.0], 2, _converge).save(folder)
    afile.write_text("x")
    with pytest.raises(InputError, match="afile' is a file, not a folder"):
        report.build(folder, out=afile / "rep.md")
    with pytest.raises(InputError, match="is a file; give the folder"):
        commands.report(afile)
    # "new/" names a folder even before it exists (it was written as a file named "new")
    with pytest.raises(InputError, match=r"report.html': folder '.*new' does not exist"):
        report.build(folder, out=f"{tmp_path / 'new'}/")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ figures


def _drawn(res: Results, facts: dict, monkeypatch) -> dict:
    """The report's figures as matplotlib objects: {name: (figure, caption)}, not rendered."""
    figs = []
    monkeypatch.setattr(report, "_png", lambda fig: figs.append(fig) or b"")
    out = report._figures(res, facts, report._scaling_fits(res))
    return {f.name: (fig, f.caption) for f, fig in zip(out, figs, strict=True)}


def _width_sweep(widths, lrs, n_seeds, curve_of, meta=None) -> Results:
    """A hand-made sweep over width (integers) as well. `_hand_made`'s own config cannot sweep
    width (its default hidden is not uniform): the runs are made under another axis name."""
    res = _hand_made(lrs, n_seeds, lambda c: curve_of({**c, "width": c["init_scale"]}),
                     axes={"init_scale": widths})
    cfg = ts.parse({"name": "hand", "data": {"name": "moons"}, "train": {"steps": 20},
                    "model": {"hidden": [widths[0], widths[0]]},
                    "sweep": {"learning_rate": list(lrs), "width": list(widths),
                              "seed": {"range": n_seeds}}})
    return Results(runs=res.runs.rename(columns={"init_scale": "width"}), curves=res.curves,
                   config=cfg, meta=meta or {})


def test_a_threshold_beyond_the_learning_rates_is_not_drawn_and_the_caption_says_so(
        monkeypatch):
    # lr cells on a linear axis up to 0.2 + 0.05: 2/λ = 0.15 is inside, 4/λ = 0.3 beyond
    res = _hand_made([0.01, 0.1, 0.2], 2, _converge)
    fig, caption = _drawn(res, {"sharpness.predicted_lr": 0.15}, monkeypatch)["labels"]
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == pytest.approx(0.25)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2/λ = 0.15" in texts and not any(t.startswith("4/λ") for t in texts)
    lines = [ln for ln in ax.lines if ln.get_linestyle() in ("--", ":")]
    assert [ln.get_xdata()[0] for ln in lines] == [0.15]
    assert "Dashed: 2/λ." in caption and "dotted" not in caption.lower()
    assert "4/λ = 0.3 is above the largest learning rate shown, so not drawn." in caption


def test_width_heatmaps_are_log_and_peak_ratio_sets_diverged_cells_apart(monkeypatch):
    # integer widths 64..512 (ratio 2): log rows of equal height. Every seed blows up where
    # lr x width >= 500: at lr = 10 for every width, and at lr = 1 for width 512
    def curve(cell):
        return (_blow_up(cell) if cell["learning_rate"] * cell["width"] >= 500
                else _converge(cell))

    widths = [64, 128, 256, 512]
    res = _width_sweep(widths, [0.1, 1.0, 10.0], 2, curve)
    assert res.runs["width"].dtype.kind == "i"
    drawn = _drawn(res, {}, monkeypatch)
    for name in ("labels", "p_diverged", "peak_ratio"):
        ax = drawn[name][0].axes[0]
        assert ax.get_yscale() == "log", name
        lo, hi = ax.get_ylim()  # geometric cell edges: half a factor of 2 beyond the ends
        assert (lo, hi) == pytest.approx((64 / np.sqrt(2), 512 * np.sqrt(2)))
    fig, caption = drawn["peak_ratio"]
    ax = fig.axes[0]
    (hatch,) = [c for c in ax.collections if c.get_gid() == "all-diverged"]
    cells = res.runs.groupby(["learning_rate", "width"])["label"].agg(
        lambda s: (s == "diverged").all())
    assert len(hatch.get_paths()) == cells.sum() == 5
    assert "hatched cells are those whose runs all diverged" in caption
    assert "1 means the loss never rose" not in caption
    assert "median over the runs of a cell that did not diverge" in caption


def test_heatmaps_with_many_rows_are_capped_in_height(monkeypatch):
    res = _hand_made([0.1, 1.0], 1, _converge,
                     axes={"init_scale": [round(0.5 + 0.03 * k, 2) for k in range(60)]})
    drawn = _drawn(res, {}, monkeypatch)
    cap = 1.8 + 32 * 0.09  # the labels figure's height at 32 rows, its largest
    for name in ("labels", "p_diverged", "peak_ratio"):
        assert drawn[name][0].get_size_inches()[1] == pytest.approx(cap), name
    few = _drawn(_hand_made([0.1, 1.0], 1, _converge, axes={"init_scale": [0.5, 1.0, 3.0]}),
                 {}, monkeypatch)
    assert few["p_diverged"][0].get_size_inches()[1] == pytest.approx(3.0)


def test_curve_captions_explain_the_exit_marker_only_when_one_is_drawn(monkeypatch):
    def ends_above(cell):  # diverged: finite, in range, ends 10% above where it started
        return 0.7 * (1 + 0.1 * np.arange(21) / 20)

    calm = _hand_made([0.01, 1.0], 2, lambda c: (ends_above(c) if c["learning_rate"] == 1.0
                                                 else _converge(c)))
    assert (calm.runs.loc[calm.runs["learning_rate"] == 1.0, "label"] == "diverged").all()
    fig, caption = _drawn(calm, {}, monkeypatch)["curves"]
    marks = [ln for ax in fig.axes for ln in ax.lines
             if (ln.get_gid() or "").startswith("diverged-")]
    assert not marks and "×" not in caption
    blown = _hand_made([0.01, 1.0], 2, lambda c: (_blow_up(c) if c["learning_rate"] == 1.0
                                                  else _converge(c)))
    drawn = _drawn(blown, {}, monkeypatch)
    for name in ("curves", "seed_question"):
        fig, caption = drawn[name]
        assert any((ln.get_gid() or "").startswith("diverged-")
                   for ax in fig.axes for ln in ax.lines)
        assert "× marks where a run left the plot" in caption, name


def test_environment_names_every_network_shape_and_the_chunks_as_run(monkeypatch):
    meta = {"model": "mlp 2-64-64-1",
            "engine": {"programs": [{"sizes": [2, 64, 64, 1]}, {"sizes": [2, 128, 128, 1]}]},
            "timings": {"n_chunks": 2, "chunk_size": 256, "computed_runs": 12,
                        "resumed_runs": 0}}
    res = _width_sweep([64, 128], [0.1, 1.0], 3, _converge, meta=meta)
    rows = dict(report._environment_rows(res))
    assert rows["model"] == "mlp 2-64-64-1, 2-128-128-1 (2 shapes)"
    assert rows["chunks"] == "2 of 6 runs, in 2 programs (one chunk each)"
    # no engine record of the shapes: the config's sweep gives them
    older = _width_sweep([64, 128], [0.1, 1.0], 3, _converge,
                         meta={**meta, "engine": {"block_runs_per_device": 32}})
    assert dict(report._environment_rows(older))["model"] == rows["model"]
    # one program of 10 runs in chunks of at most 4: 4 + 4 + 2
    one = _hand_made([0.1, 1.0], 5, _converge)
    one = Results(runs=one.runs, curves=one.curves, config=one.config,
                  meta={"model": "mlp 2-128-64-1",
                        "timings": {"n_chunks": 3, "chunk_size": 4, "computed_runs": 10}})
    rows = dict(report._environment_rows(one))
    assert rows["model"] == "mlp 2-128-64-1"
    assert rows["chunks"] == "3: 2 of 4 runs, 1 of 2 runs"
    one.meta["timings"].update(n_chunks=1, computed_runs=2, resumed_runs=8)  # resumed
    assert dict(report._environment_rows(one))["chunks"] == "1 of at most 4 runs"


def test_the_data_row_says_how_many_rows_were_held_out():
    """meta's n_samples counts the training rows: with 58 of 64 held out the row read
    "moons: 6 x 2", beside a config of n_samples = 64."""
    res = _hand_made([0.1, 1.0], 2, _converge)
    data = {"source": "moons", "n_samples": 6, "n_features": 2, "task": "binary",
            "standardized": True}
    held = {**data, "holdout": {"fraction": 0.9, "seed": 0, "n_test": 58}}
    given = {**data, "test_data": {"source": "caller arrays", "n_samples": 58}}  # test_data=
    rows = [dict(report._environment_rows(Results(runs=res.runs, curves=res.curves,
                                                  config=res.config, meta={"data": d})))
            for d in (data, held, given)]
    assert rows[0]["data"] == "moons: 6 x 2 (binary, features standardized)"
    assert rows[1]["data"] == rows[2]["data"] == ("moons: 6 x 2 (binary, features "
                                                  "standardized; 58 more rows held out)")


def test_a_width_where_every_rate_diverged_is_left_out_of_the_scaling_fit(monkeypatch):
    # a run diverges where lr x width >= 100, and at width 512 always; a smaller final loss at
    # a larger lr. Best lr: 1 at width 64, 0.1 at 128 and 256, none at 512 (every run diverged)
    def curve(cell):
        if cell["width"] == 512 or cell["learning_rate"] * cell["width"] >= 100:
            return _blow_up(cell)
        return 0.7 * np.exp(-0.1 * np.arange(21) * cell["learning_rate"] * (1 + cell["seed"]))

    res = _width_sweep([64, 128, 256, 512], [0.01, 0.1, 1.0], 3, curve)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's all-NaN warnings once escaped here
        text, facts = report.answer(res)
    _check_numbers(text, facts)
    (para,) = [p for p in text.split("\n\n") if p.startswith("Against width")]
    # least squares of ln(1, 0.1, 0.1) on ln(64, 128, 256): -ln(10) / (2 ln 2)
    assert facts["scaling.width.exponent"] == pytest.approx(-np.log(10) / (2 * np.log(2)))
    assert "width^-1.66" in para and "over 3 values of width from 64 to 256" in para
    assert "At width 512 every learning rate diverged on half or more of the seeds" in para
    fit = ts.scaling(res.runs, by="width", of="best_lr", n_boot=200)
    assert fit.left_out() == [512] and "no value at width 512" in fit.summary()
    fig, caption = _drawn(res, facts, monkeypatch)["scaling_width"]
    assert caption.endswith("No point at width 512: every learning rate diverged on half or "
                            "more of the seeds there (left out of the fit).")
    (points,) = [c for c in fig.axes[0].lines if c.get_marker() == "o"]
    assert list(points.get_xdata()) == [64, 128, 256, 512]
    assert np.isnan(points.get_ydata()[3]) and np.isfinite(points.get_ydata()[:3]).all()
    (power_law,) = [c for c in fig.axes[0].lines if c.get_linestyle() == "-"]
    assert power_law.get_xdata()[[0, -1]] == pytest.approx([64, 256])  # no extrapolation
    (dotted,) = [c for c in fig.axes[0].lines if c.get_linestyle() == ":"]
    assert list(dotted.get_xdata()) == [512, 512]


def test_a_report_fits_the_power_law_once(monkeypatch, tmp_path):
    """The text and the figure share one fit: its bootstrap dominates a width sweep's report."""
    from trainscape.analysis import scaling

    res = _width_sweep([64, 128], [0.1, 1.0], 2,
                       lambda c: 0.7 * np.exp(-0.01 * np.arange(21) * c["learning_rate"]))
    calls = []
    fit = scaling.scaling
    monkeypatch.setattr(scaling, "scaling", lambda *a, **k: calls.append(k) or fit(*a, **k))
    path = report.build(res, fmt="md", out=tmp_path / "r.md")
    assert len(calls) == 1 and calls[0]["by"] == "width"
    assert "Against width" in path.read_text() and (tmp_path / "r-scaling_width.png").exists()


def test_a_width_sweep_with_too_few_best_rates_says_why_there_is_no_power_law(monkeypatch):
    # every run at width 128 diverges: only width 64 keeps a best learning rate
    def curve(cell):
        if cell["width"] >= 128:
            return _blow_up(cell)
        return 0.7 * np.exp(-0.1 * np.arange(21) * cell["learning_rate"])

    res = _width_sweep([64, 128], [0.1, 1.0], 2, curve)
    text, facts = report.answer(res)
    _check_numbers(text, facts)
    (para,) = [p for p in text.split("\n\n") if p.startswith("Against width")]
    assert para == ("Against width: no power law, since a fit needs a best learning rate at 2 "
                    "values of width at least, and at width 128 every learning rate diverged "
                    "on half or more of the seeds.")
    assert "scaling_width" not in _drawn(res, facts, monkeypatch)
