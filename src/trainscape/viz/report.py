"""A results folder -> one self-contained report (HTML with embedded PNGs, or Markdown + PNGs).

The report leads with a short written answer whose every number is computed from the results
(:func:`answer` returns the text and the numbers it used), then the heatmaps, a divergence table
per learning rate, representative loss curves per label, the seed-question figure, the config
and the environment. Figures are drawn on plain ``matplotlib.figure.Figure`` objects, never
through pyplot, so building a report changes no global backend or figure state.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.divergence import divergence_table
from ..errors import InputError
from ..io import atomic, store
from ..io.results import CURVES_FILE, META_FILE, RUNS_FILE, Results, as_results
from ..spec.schema import SHAPE_AXES
from ..train.classify import EOS_FACTOR, LABELS, SPIKE_MIN_RISE
from . import report_heldout
from .plots import exact_text

__all__ = ["FORMATS", "answer", "build", "fmt_number"]

FORMATS = ("html", "md")
DPI = 120  # 10 pt text is ~17 px: readable in a browser at 100% without blurry upscaling
GD_LIMIT = 2.0  # gradient descent on a quadratic is unstable along curvature lam iff lr > 2/lam
MAX_CURVES_PER_PANEL = 8
LR = "learning_rate"
_SUFFIX = {"html": ".html", "md": ".md"}
# an existing file is replaced only if it looks like an earlier report
_REPORT_SUFFIXES = (".html", ".htm", ".md", ".markdown")
# what a results folder holds besides reports and figures: never written over
_RESULTS_OWN = (RUNS_FILE, CURVES_FILE, META_FILE, store.MANIFEST, store.CHUNKS)


# ----------------------------------------------------------------------------------------------
# numbers


def fmt_number(v, sig: int = 2) -> str:
    """How the written answer shows a number: integers exactly, other values to `sig`
    significant digits (1, 0.01, 0.0631, 28, 0.071, 1.6e-05)."""
    text = exact_text(v)
    if text is not None:
        return text
    v = float(v)
    s = f"{v:.{sig}g}"
    if "e+" in s and abs(float(s)) < 1e6:
        return str(int(float(s)))  # 110, not 1.1e+02
    # 1.6e-05 -> 1.6e-5: exponents as people write them
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], s)


def fmt_steps(v) -> str:
    """A step count, or a median of step counts, without rounding (28.5, 1234.5): the fewest
    significant digits that give the value back, so the answer and the divergence table print
    the same median."""
    for sig in range(2, 17):
        text = fmt_number(v, sig)
        if float(text) == float(v):
            return text
    return text


class _Facts:
    """Records every number that goes into the answer text under a name, and formats it."""

    def __init__(self):
        self.values: dict[str, float | int | str] = {}

    def __call__(self, key: str, value, sig: int = 2) -> str:
        if isinstance(value, np.generic):
            value = value.item()
        self.values[key] = value
        return fmt_number(value, sig)

    def frac(self, key: str, k, n) -> str:
        """"k/n", recorded as `<key>_count` and `<key>_n`."""
        return f"{self(f'{key}_count', int(k))}/{self(f'{key}_n', int(n))}"

    def steps(self, key: str, value) -> str:
        """A step count or a median of step counts, exactly (`fmt_steps`)."""
        self(key, value)
        return fmt_steps(self.values[key])

    def lr(self, key: str, value) -> str:
        # three digits: enough to name a point of a geomspace grid (0.0631, 0.158, 0.251)
        return self(key, value, sig=3)

    def axis_value(self, key: str, value) -> str:
        """A swept axis value: a number to 3 digits, a name (the dtype axis: "float32") as it
        is. A name is recorded as the string, so the facts still say what the text says."""
        if isinstance(value, (str, np.str_)):
            self.values[key] = str(value)
            return str(value)
        return self(key, value, sig=3)

    def apart(self, key_a: str, a: float, key_b: str, b: float) -> tuple[str, str]:
        """Two numbers the text compares, each to 2 significant digits unless that would print
        them the same (2.0105 and 2 both read "2"): then with as many digits as it takes to
        tell them apart (2.01 and 2), so "above" never sits between two equal numbers."""
        for sig in range(2, 7):
            ta, tb = self(key_a, a, sig), self(key_b, b, sig)
            if ta != tb or a == b:
                break
        return ta, tb


# ----------------------------------------------------------------------------------------------
# inputs


def _with_runs(results_or_path) -> Results:
    res = as_results(results_or_path)
    if len(res.runs) == 0:
        raise InputError("the results hold no runs: nothing to report")
    return res


def _layer_rate_axes(res: Results) -> list[str]:
    """The swept per-entry learning rates (`learning_rate.0`, `learning_rate.1`, ...)."""
    return [a for a in res.axes if re.fullmatch(rf"{LR}\.\d+", a)]


def _runs_with_lr(res: Results) -> pd.DataFrame:
    """The runs table with a learning_rate column even when the lr was not swept, so one code
    path handles both (the fixed lr comes from the config). Not when `learning_rate.K` axes
    are swept: those entries train at their own rates, and a column with the fixed rate would
    name a learning rate those runs did not use."""
    runs = res.runs
    if LR in runs.columns or _layer_rate_axes(res):
        return runs
    return runs.assign(**{LR: float(res.config.optimizer.learning_rate)})


def _other_axis(res: Results) -> str | None:
    """The first swept axis besides learning_rate and seed (init_scale, momentum, ...)."""
    for a in res.axes:
        if a not in (LR, "seed") and a in res.runs.columns:
            return a
    return None


def _close(values, target) -> np.ndarray:
    return np.isclose(np.asarray(values, float), target, rtol=1e-6, atol=0.0)


def _question_lrs(lrs: np.ndarray) -> bool:
    return bool(_close(lrs, 0.01).any() and _close(lrs, 1.0).any())


@dataclass(frozen=True)
class _ByLr:
    lrs: np.ndarray  # sorted grid values
    counts: pd.DataFrame  # index lr, columns LABELS + total


def _by_lr(runs: pd.DataFrame) -> _ByLr:
    counts = (runs.groupby([LR, "label"], observed=True).size().unstack("label", fill_value=0)
              .reindex(columns=list(LABELS), fill_value=0).sort_index())
    counts["total"] = counts[list(LABELS)].sum(axis=1)
    return _ByLr(counts.index.to_numpy(float), counts)


# ----------------------------------------------------------------------------------------------
# the written answer


def _spike_steps(curves: pd.DataFrame, run_ids) -> dict[int, int]:
    """Step at which each run's loss jumped highest above its running minimum: the step of its
    spike_ratio (recomputed from the recorded curve, so approximate when curves are thinned)."""
    out = {}
    sub = curves.loc[curves["run_id"].isin(list(run_ids)), ["run_id", "step", "loss"]]
    for rid, g in sub.sort_values(["run_id", "step"]).groupby("run_id"):
        loss = g["loss"].to_numpy(float)
        steps = g["step"].to_numpy()
        if len(loss) < 2 or not np.isfinite(loss[0]):
            continue
        before = np.fmin.accumulate(loss)[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            big = np.isfinite(loss[1:]) & (loss[1:] - before >= SPIKE_MIN_RISE * loss[0])
            ratio = np.where(big, loss[1:] / before, -np.inf)
        if big.any():
            out[int(rid)] = int(steps[1:][int(np.argmax(ratio))])
    return out


def _describe_lr(f: _Facts, key: str, runs: pd.DataFrame, curves: pd.DataFrame, lr: float,
                 steps: int) -> str:
    """One sentence on what the loss does at one learning rate, led by its majority label."""
    at = runs.loc[_close(runs[LR], lr)]
    n = len(at)
    counts = at["label"].value_counts()
    # majority label; ties go to the later (worse) label, as in the heatmaps
    top = max(LABELS, key=lambda lab: (int(counts.get(lab, 0)), LABELS.index(lab)))
    k = int(counts.get(top, 0))
    sel = at.loc[at["label"] == top]
    head = f"At lr = {f.lr(f'{key}.lr', lr)}"
    frac = f"{f(f'{key}.n_{top}', k)}/{f(f'{key}.n', n)} runs ({top})"
    if top == "converged":
        body = (f"the loss falls steadily in {frac}, from a median "
                f"{f(f'{key}.initial_median', sel['initial_loss'].median())} to "
                f"{f(f'{key}.final_median', sel['final_loss'].median())} after "
                f"{f('steps', steps)} step{'s' * (steps != 1)}")
    elif top == "catapult":
        if "spike_step" in sel.columns:  # the engine's own (version 0.8.0 on)
            tops = pd.to_numeric(sel["spike_step"], errors="coerce").dropna()
            spike_at = dict(zip(sel.loc[tops.index, "run_id"], tops, strict=True))
        else:  # older results: from the recorded curve
            spike_at = _spike_steps(curves, sel["run_id"]) if len(curves) else {}
        # the median, not the max: a late second spike in one run should not set the story
        step = float(np.median(list(spike_at.values()))) if spike_at else None
        when = (f"at a median step {f.steps(f'{key}.spike_step_median', step)}, "
                if spike_at else "")
        back = ""
        if {"spike_step", "spike_recover_step"} <= set(sel.columns):
            took = (pd.to_numeric(sel["spike_recover_step"], errors="coerce")
                    - pd.to_numeric(sel["spike_step"], errors="coerce")).dropna()
            back = (f"; {f(f'{key}.n_recovered', len(took))} of them "
                    f"{'is' if len(took) == 1 else 'are'} back down to that lowest loss "
                    f"{'' if len(took) == 1 else 'a median '}"
                    f"{f.steps(f'{key}.recover_steps_median', took.median())} "
                    f"step{'s' * bool(took.median() != 1)} after the top of the spike"
                    if len(took) else
                    "; none of them gets back down to that lowest loss")
        body = (f"the loss drops, then jumps back up ({when}by a median "
                f"{f(f'{key}.spike_median', sel['spike_ratio'].median())}x the lowest loss "
                f"before it) in {frac}{back}; the runs end at a median "
                f"{f(f'{key}.final_median', sel['final_loss'].median())}")
    elif top == "diverged":
        ds = pd.to_numeric(sel["diverged_step"], errors="coerce").dropna()
        when = (f", at a median step {f.steps(f'{key}.diverged_step_median', ds.median())}"
                if len(ds) else "")
        body = f"the loss blows up in {frac}{when}"
    elif top == "oscillating":
        body = (f"the loss goes down and up again without one large spike in {frac}, ending "
                f"at a median {f(f'{key}.final_median', sel['final_loss'].median())}")
    else:  # stalled
        body = f"the loss barely moves from its initial value in {frac}"
    rest = [(lab, int(counts.get(lab, 0))) for lab in LABELS
            if lab != top and counts.get(lab, 0) > 0]
    tail = ""
    if rest:
        tail = "; the others: " + ", ".join(f"{lab} {f(f'{key}.n_{lab}', c)}"
                                              for lab, c in rest)
    return f"{head} {body}{tail}."


def _curvature_text(f: _Facts, res: Results, runs: pd.DataFrame, headline: float | None) -> str:
    if "sharpness_init" not in runs.columns:
        return ("The curvature (top Hessian eigenvalue) was not measured, so whether the "
                f"misbehaving steps exceed {f('gd_limit', GD_LIMIT)}/curvature cannot be "
                "checked here: add "
                "`[metrics] sharpness = true` to the config (or run with "
                "`--set metrics.sharpness=true`) and rebuild the report.")
    lam = pd.to_numeric(runs["sharpness_init"], errors="coerce")
    ok = np.isfinite(lam) & (lam > 0)
    if not ok.any():
        return "The curvature at initialization was measured but is not positive in any run."
    # the learning rate does not touch the initial parameters: one value per initialization
    inits = [a for a in res.axes if a != LR and a in runs.columns]
    per_init = lam[ok].groupby([runs.loc[ok, a] for a in inits]).first() if inits else lam[ok]
    measured = lam.groupby([runs[a] for a in inits]).first() if inits else lam
    measured = measured[np.isfinite(measured)]
    med = float(per_init.median())
    two = f("gd_limit", GD_LIMIT)
    # `sharpness_which = "magnitude"` can measure a negative eigenvalue: no limit from it
    over = (f"{f('sharpness.n_inits', len(per_init))} initializations" if
            len(per_init) == len(measured) else
            f"the {f('sharpness.n_inits', len(per_init))} of "
            f"{f('sharpness.n_measured', len(measured))} initializations where it is positive")
    out = [f"Why (and why this is not a gradient bug): the curvature at initialization (top "
           f"Hessian eigenvalue, median over {over}) is about "
           f"{f('sharpness.init_median', med)}, so gradient-descent "
           f"steps above {two}/curvature, about {f('sharpness.predicted_lr', GD_LIMIT / med)},"
           f" overshoot along the sharpest direction instead of descending it."]
    # the threshold checked run by run: each run against its own curvature at init
    own = GD_LIMIT / lam[ok]
    lr_ok = runs.loc[ok, LR].to_numpy(float)
    label_ok = runs.loc[ok, "label"].to_numpy()
    below, above = lr_ok < own.to_numpy(), lr_ok > own.to_numpy()
    if below.any() and above.any():
        out.append(
            f"Run by run, "
            f"{f.frac('sharpness.below', (label_ok[below] == 'converged').sum(), below.sum())}"
            f" runs whose lr was below their own "
            f"{two}/curvature decreased (almost) monotonically (converged), against "
            f"{f.frac('sharpness.above', (label_ok[above] == 'converged').sum(), above.sum())}"
            f" of those above it.")
    if headline is not None and "sharpness_final" in runs.columns:
        end = _final_curvature_text(f, runs, headline, GD_LIMIT / med)
        if end:
            out.append(end)
    if res.config.optimizer.name != "sgd":
        out.append(f"(The {two}/curvature limit is that of plain gradient descent; "
                   f"{res.config.optimizer.name} has a different one.)")
    return " ".join(out)


def _final_curvature_text(f: _Facts, runs: pd.DataFrame, headline: float,
                          predicted: float) -> str:
    """The curvature at the end of the runs at the headline lr against 2/lr.

    Above `predicted` (2/curvature at initialization) the step starts too large and the
    question is how the runs end up stable; at or below it the first steps are stable, and
    a spike needs the curvature to have grown: a final curvature at 2/lr, up from the
    initial one, is progressive sharpening up to the edge of stability."""
    at = runs.loc[_close(runs[LR], headline)]
    # a diverged run keeps its weights from before the blow-up: its curvature says nothing
    # of where training ends up stable
    at = at.loc[at["label"] != "diverged"]
    fin = pd.to_numeric(at["sharpness_final"], errors="coerce")
    fin = fin[np.isfinite(fin)]
    if not len(fin):
        return ""
    m, limit = float(fin.median()), GD_LIMIT / headline
    # as classify's edge-of-stability rule: within EOS_FACTOR of 2/lr is "at" it
    # (sharpness x lr / 2, the same expression, so a run and the text agree)
    ratio = m * headline / GD_LIMIT
    two = f("gd_limit", GD_LIMIT)
    lr_text = f.lr("headline.lr", headline)
    m_text, limit_text = f.apart("headline.sharpness_final_median", m, "headline.limit", limit)
    pct = round(100 * (EOS_FACTOR - 1), 6)  # 5, not 5.000000000000004
    if ratio > EOS_FACTOR:
        where = "above"
    elif ratio < 2 - EOS_FACTOR:
        where = "below"
    else:
        where = f"within {f('eos_tolerance_percent', pct)}% of"
    if headline > predicted:
        after = {"above": "", "below": (": training moved the network to a flatter region, "
                                        "where this step is stable")}.get(
            where, ": training brought it down to the edge of stability, where this step is "
                   "only just stable")
        return (f"At lr = {lr_text} the curvature at the end is {m_text}, "
                f"{'still above' if where == 'above' else where} {two}/lr = {limit_text}"
                f"{after}.")
    ini = pd.to_numeric(at["sharpness_init"], errors="coerce")
    ini = float(ini[np.isfinite(ini)].median())
    head = (f"At lr = {lr_text}, below {two}/curvature at initialization, the first steps "
            "do not overshoot; ")
    if where == "below":
        return (head + f"the curvature at the end, {m_text}, is below {two}/lr = "
                f"{limit_text} as well, so neither curvature accounts for what these runs do.")
    if m > ini:
        grew = (f"the curvature grew during training (progressive sharpening), from "
                f"{f('headline.sharpness_init_median', ini)} at initialization to {m_text} "
                "at the end, ")
    else:
        grew = f"the curvature at the end is {m_text}, "
    if where == "above":
        return head + grew + f"above {two}/lr = {limit_text}."
    return (head + grew + f"{where} {two}/lr = {limit_text}: training reached the edge of "
            "stability, where this step is only just stable.")


def _other_labels(f: _Facts, key: str, counts: pd.Series) -> str:
    """' (2 stalled, 1 oscillating)': the labels of one lr's runs that did not converge."""
    parts = [f"{f(f'{key}.{lab}', int(counts[lab]))} {lab}" for lab in LABELS
             if lab != "converged" and counts[lab] > 0]
    return f" ({', '.join(parts)})" if parts else ""


def _grid_text(f: _Facts, by: _ByLr) -> str:
    c, lrs = by.counts, by.lrs
    conv = (c["converged"] == c["total"]).to_numpy()
    div = c["diverged"].to_numpy()
    tot = c["total"].to_numpy()
    cat = c["catapult"].to_numpy()
    out = []
    # contiguous from the smallest lr: "every lr up to X" must be true of every lr below X
    k = int(np.argmin(conv)) if not conv.all() else len(lrs)
    if (div == tot).all():
        pass  # said below, in the divergence sentence
    elif k == len(lrs):
        out.append(f"Every run converged (almost) monotonically at every lr on the grid, "
                   f"up to {f.lr('grid.all_converged_up_to', lrs[-1])}.")
    elif k == 0:
        bad = int(tot[0] - c["converged"].iloc[0])
        out.append(f"Even at the smallest lr, {f.lr('grid.lr_min', lrs[0])}, "
                   f"{f.frac('grid.first_not_converged', bad, tot[0])}"
                   f" runs did not converge (almost) monotonically"
                   f"{_other_labels(f, 'grid.first_not_converged', c.iloc[0])}.")
    else:
        bad = int(tot[k] - c["converged"].iloc[k])
        out.append(f"Every run converged (almost) monotonically at every lr up to "
                   f"{f.lr('grid.all_converged_up_to', lrs[k - 1])}; at "
                   f"{f.lr('grid.first_not_converged_lr', lrs[k])}, "
                   f"{f.frac('grid.first_not_converged', bad, tot[k])}"
                   f" did not{_other_labels(f, 'grid.first_not_converged', c.iloc[k])}.")
    if cat.any():
        i = int(np.argmax(cat > 0))
        s = (f"Catapults appear from lr = {f.lr('grid.catapult_first_lr', lrs[i])} "
             f"({f.frac('grid.catapult_first', cat[i], tot[i])})")
        major = np.flatnonzero(2 * cat > tot)
        if major.size:
            lo, hi = lrs[major[0]], lrs[major[-1]]
            if lo == hi:
                s += f" and are the majority at lr = {f.lr('grid.catapult_major_lr', lo)}"
            elif major[-1] - major[0] + 1 == major.size:  # every lr from lo to hi
                s += (f" and are the majority from lr = {f.lr('grid.catapult_major_lo', lo)} "
                      f"to {f.lr('grid.catapult_major_hi', hi)}")
            else:  # not a band: say how many of the learning rates in between
                s += (f" and are the majority at "
                      f"{f.frac('grid.catapult_major', major.size, major[-1] - major[0] + 1)}"
                      f" learning rates from lr = {f.lr('grid.catapult_major_lo', lo)} to "
                      f"{f.lr('grid.catapult_major_hi', hi)}")
        out.append(s + ".")
    else:
        out.append("No run catapulted.")
    if not div.any():
        out.append(f"No run diverged, up to the largest lr on the grid, "
                   f"{f.lr('grid.lr_max', lrs[-1])}.")
    elif (div == tot).all():
        out.append(f"Every run diverged, already at the smallest lr on the grid, "
                   f"{f.lr('grid.lr_min', lrs[0])}.")
    else:
        i = int(np.argmax(div > 0))
        s = (f"Runs start to diverge at lr = {f.lr('grid.diverge_first_lr', lrs[i])} "
             f"({f.frac('grid.diverge_first', div[i], tot[i])})")
        most = _most_diverge(f, "grid", lrs, div, tot, counts=True)
        s += (f"; {most}" if most else
              f", but at no lr on the grid (up to {f.lr('grid.lr_max', lrs[-1])}) do most")
        out.append(s + ".")
    return " ".join(out)


MAX_LISTED_LRS = 3  # learning rates named one by one in a sentence; more are counted


def _most_diverge(f: _Facts, key: str, lrs: np.ndarray, div: np.ndarray, tot: np.ndarray,
                  counts: bool = False) -> str:
    """Where most runs diverge, as a clause ("most diverge from lr = 215"), '' if at no lr.

    "From lr = X" is said only of the smallest X where most diverge at X and at every larger
    lr of the grid (recorded as `<key>.diverge_most_lr`); smaller learning rates where most
    diverge as well are named after it ("and also at"), and without such a tail the clause
    names where most diverge and says the largest lr is not among them. `counts`: each named
    lr with its diverged/total."""
    major = 2 * div > tot
    if not major.any():
        return ""
    not_major = np.flatnonzero(~major)
    tail = (int(not_major[-1]) + 1 if len(not_major) else 0) if major[-1] else None

    def name(k: str, i: int) -> str:
        text = f"lr = {f.lr(f'{k}_lr', lrs[i])}"
        return text + (f" ({f.frac(k, div[i], tot[i])})" if counts else "")

    others = np.flatnonzero(major[:tail] if tail is not None else major)
    if len(others) <= MAX_LISTED_LRS:
        names = [name(f"{key}.diverge_most_at{n}", i) for n, i in enumerate(others)]
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    else:
        listed = (f"{f(f'{key}.diverge_most_at_n', len(others))} learning rates from "
                  f"lr = {f.lr(f'{key}.diverge_most_at_lo', lrs[others[0]])} to "
                  f"{f.lr(f'{key}.diverge_most_at_hi', lrs[others[-1]])}")
    if tail is None:
        return (f"most diverge at {listed}, but not at the largest lr on the grid, "
                f"{f.lr(f'{key}.lr_max', lrs[-1])}")
    text = f"most diverge from {name(f'{key}.diverge_most', tail)}"
    return text + (f", and also at the smaller {listed}" if listed else "")


def _axis_text(f: _Facts, runs: pd.DataFrame, axis: str) -> str:
    """How another swept axis (init_scale, ...) moves the thresholds, one clause per value."""
    lr_max = float(runs[LR].max())
    any_div = bool((runs["label"] == "diverged").any())
    sharp = "sharpness_init" in runs.columns
    parts = []
    for i, (z, sub) in enumerate(runs.groupby(axis, sort=True)):
        key = f"by.{axis}.{i}"
        c = _by_lr(sub).counts
        seg = f"at {axis} = {f.axis_value(f'{key}.value', z)}"
        if sharp:
            # every initialization appears once per lr: take them at one lr
            lam = pd.to_numeric(sub.loc[sub[LR] == sub[LR].min(), "sharpness_init"],
                                errors="coerce").median()
            if np.isfinite(lam) and lam > 0:
                seg += (f" the initial curvature is about "
                        f"{f(f'{key}.sharpness_median', lam)} ({f('gd_limit', GD_LIMIT)}/"
                        f"curvature = {f(f'{key}.predicted_lr', GD_LIMIT / lam)}),")
        bad = c.index[(c["converged"] < c["total"]).to_numpy()]
        seg += (f" runs stop converging (almost) monotonically from lr = "
                f"{f.lr(f'{key}.not_converged_lr', bad[0])}" if len(bad) else
                f" every run converges (almost) monotonically up to lr = "
                f"{f.lr('grid.lr_max', lr_max)}")
        if any_div:
            most = _most_diverge(f, key, c.index.to_numpy(float), c["diverged"].to_numpy(),
                                 c["total"].to_numpy())
            seg += f" and {most}" if most else " and most diverge at no lr on the grid"
        parts.append(seg)
    return f"By {axis}: " + "; ".join(parts) + "."


_AXIS_NOUNS = {LR: "learning rate", "seed": "seed", "dtype": "dtype"}


def _noun(axis: str, n: int) -> str:
    word = _AXIS_NOUNS.get(axis, f"{axis} value")
    return word if n == 1 else word + "s"


def _sizes_text(f: _Facts, res: Results, runs: pd.DataFrame) -> str:
    """" (6 learning rates x 4 seeds)": the distinct values of each swept axis in the runs
    table (a zoom level's config lists only each axis's ends), joined by "x" when the runs
    hold every combination of them and with the count of combinations run when they do not."""
    axes = list(res.config.sweep)
    if not axes:
        return ""
    n = {a: runs[a].nunique() if a in runs.columns else len(res.config.sweep[a]) for a in axes}
    sizes = [f"{f(f'axis.{a}.n', n[a])} {_noun(a, n[a])}" for a in axes]
    present = [a for a in axes if a in runs.columns]
    combos = len(runs[present].drop_duplicates()) if present else 0
    full = math.prod(n.values())
    if not present or combos == full:
        return f" ({' x '.join(sizes)})"
    return (f" ({', '.join(sizes[:-1])} and {sizes[-1]}: {f('axis.n_combinations', combos)}"
            f" of their {f('axis.n_grid', full)} combinations)")


def _batches_text(f: _Facts, res: Results, runs: pd.DataFrame, steps: int) -> str:
    """" full-batch sgd steps each", or the mini-batches the runs' gradients were taken on
    (`[train] batch_size`, or each value of a `batch_size` axis)."""
    opt = f"{res.config.optimizer.name} step{'s' * (steps != 1)}"
    if "batch_size" in runs.columns:
        sizes = sorted(int(v) for v in runs["batch_size"].unique())
    elif res.config.train.batch_size is not None:
        sizes = [res.config.train.batch_size]
    else:
        return f" full-batch {opt} each"
    named = [f(f"batch_size.{k}", v) for k, v in enumerate(sizes)]
    return (f" {opt} each, on mini-batches of "
            + (f"{', '.join(named[:-1])} or {named[-1]}" if len(named) > 1 else named[0])
            + " samples")


def _layer_rates_text(f: _Facts, res: Results, runs: pd.DataFrame) -> str:
    """The answer's body for a grid of per-entry learning rates (`learning_rate.K`): what
    was swept, the labels over the grid, and what of the usual answer does not apply."""
    axes = _layer_rate_axes(res)
    ranges = [f"{a} from {f.axis_value(f'axis.{a}.min', runs[a].min())} to "
              f"{f.axis_value(f'axis.{a}.max', runs[a].max())}" for a in axes]
    entries = (res.meta or {}).get("learning_rate_entries") or {}
    fixed = [k for k in entries if k not in axes]
    text = ("Each swept parameter entry trains at its own learning rate: "
            + ", ".join(ranges[:-1]) + (" and " if len(ranges) > 1 else "") + ranges[-1])
    if fixed:
        text += (f"; {', '.join(fixed)} keep the config's learning rate, "
                 f"{f.lr('fixed_lr', res.config.optimizer.learning_rate)}")
    counts = runs["label"].value_counts()
    labels = [f"{lab} {f(f'grid.n_{lab}', int(counts[lab]))}" for lab in LABELS
              if counts.get(lab, 0)]
    skipped = ["the sentences per learning rate", f"the {f('gd_limit', GD_LIMIT)}/curvature "
               "check"] + (["the held-out comparison at the same learning rate"]
                           if "final_test_loss" in runs.columns else [])
    text += (f". Over the grid's {f('n_runs', len(runs))} runs: " + ", ".join(labels) + ". "
             f"With no single learning rate per run, {', '.join(skipped[:-1])} and "
             f"{skipped[-1]} do not apply here; the heatmaps show the labels over "
             f"{' and '.join(a for a in _heatmap_axes(res) if a is not None)}.")
    return text


def answer(results_or_path) -> tuple[str, dict]:
    """The written answer (plain text, paragraphs separated by blank lines) and the numbers it
    uses, by name. Every number in the text is ``fmt_number(facts[k])`` (2 significant digits,
    3 for learning rates and axis values, more where two compared numbers would otherwise
    print the same, and medians of step counts exactly, ``fmt_steps``, as the divergence table
    prints them) for some key k; an axis value that is a name (a dtype) is the string."""
    res = _with_runs(results_or_path)
    return _answer(res, _scaling_fits(res))


def _answer(res: Results, fits: Mapping) -> tuple[str, dict]:
    runs = _runs_with_lr(res)
    curves = res.curves
    f = _Facts()
    steps = res.config.train.steps
    intro = (f"From {f('n_runs', len(runs))} run{'s' * (len(runs) != 1)}"
             + _sizes_text(f, res, runs) + f" of {f('steps', steps)}"
             + _batches_text(f, res, runs, steps) + ".")
    schedule = report_heldout.schedule_text(f, res)
    paras = [intro + (" " + schedule if schedule else "")]
    if LR not in runs.columns:  # one swept rate per parameter entry: no single lr to speak of
        paras.append(_layer_rates_text(f, res, runs))
        return "\n\n".join(paras), dict(f.values)
    by = _by_lr(runs)

    cat_by_lr = by.counts["catapult"].to_numpy()
    # most catapults; among ties the smallest lr, nearest to where they begin
    most_cat = float(by.lrs[int(np.argmax(cat_by_lr))]) if cat_by_lr.any() else None
    if _question_lrs(by.lrs):
        headline = float(by.lrs[_close(by.lrs, 1.0)][0])
        low = float(by.lrs[_close(by.lrs, 0.01)][0])
        text = (_describe_lr(f, "low", runs, curves, low, steps) + " "
                + _describe_lr(f, "high", runs, curves, headline, steps))
        at_one = by.counts.loc[_close(by.lrs, headline)].iloc[0]
        if most_cat is not None and 2 * at_one["catapult"] <= at_one["total"] and \
                not _close(most_cat, headline):
            # lr 1 is not where this grid catapults: show where it does as well (where that
            # is lr 1 itself, with no majority, it was described twice)
            headline = most_cat
            text += " " + _describe_lr(f, "catapult", runs, curves, most_cat, steps)
        paras.append(text)
    elif most_cat is not None:
        headline = most_cat
        paras.append(_describe_lr(f, "catapult", runs, curves, most_cat, steps))
    else:
        headline = None
        paras.append(" ".join(_describe_lr(f, key, runs, curves, lr, steps) for key, lr in
                              (("low", by.lrs[0]), ("high", by.lrs[-1]))[:len(by.lrs)]))
    paras.append(_curvature_text(f, res, runs, headline))
    if len(by.lrs) > 1:
        grid = _grid_text(f, by)
        other = _other_axis(res)
        if other is not None and runs[other].nunique() > 1:
            grid += " " + _axis_text(f, runs, other)
        paras.append(grid)
    for extra in (report_heldout.held_out_text(f, res, runs),
                  report_heldout.warmup_text(f, res, runs)):
        if extra:
            paras.append(extra)
    for axis, fit in fits.items():
        if isinstance(fit, list):
            paras.append(f"Against {axis}: no power law, since a fit needs a best learning "
                         f"rate at 2 values of {axis} at least, and "
                         f"{_without_best_lr(f, axis, fit)}.")
        elif fit is not None:
            if math.isfinite(fit.low):
                ci = (f", {f(f'scaling.{axis}.level_percent', 100 * fit.level)}% bootstrap "
                      "interval over seeds "
                      f"[{f(f'scaling.{axis}.low', fit.low, 3)}, "
                      f"{f(f'scaling.{axis}.high', fit.high, 3)}]")
            else:
                ci = (" (one seed: no interval)" if fit.n_seeds == 1 else " (no interval: no "
                      f"resample of the seeds gave every {axis} a best learning rate)")
            left = fit.left_out()
            fitted = fit.points.loc[fit.points["value"].notna(), axis]
            text = (f"Against {axis}: the best learning rate (lowest median final loss over "
                    f"seeds, diverged runs left out) scales as {axis}^"
                    f"{f(f'scaling.{axis}.exponent', fit.exponent, 3)}{ci}, over "
                    f"{f(f'scaling.{axis}.n', len(fitted))} values of {axis} from "
                    f"{f(f'scaling.{axis}.min', fitted.min())} to "
                    f"{f(f'scaling.{axis}.max', fitted.max())}.")
            if left:
                gap = _without_best_lr(f, axis, left)
                text += f" {gap[0].upper()}{gap[1:]}: no best learning rate, left out of the fit."
            paras.append(text)
    return "\n\n".join(paras), dict(f.values)


def _without_best_lr(f: _Facts, axis: str, values) -> str:
    """'at width 256, 512 every learning rate diverged on half or more of the seeds'."""
    from ..analysis.scaling import NO_VALUE

    named = ", ".join(f(f"scaling.{axis}.left_out.{k}", v) for k, v in enumerate(values))
    return f"at {axis} {named} {NO_VALUE['best_lr']}"


def _scaling_fits(res: Results) -> dict:
    """`_scaling_fit` of each shape axis, computed once for the text and the figures (its
    bootstrap is the slow part of a report on a width sweep)."""
    return {axis: _scaling_fit(res, axis) for axis in SHAPE_AXES}


def _scaling_fit(res: Results, axis: str):
    """The best learning rate's power law against a swept shape axis, or None when the grid
    cannot give one (fewer than 2 shapes or learning rates, or another axis varies); the
    values of `axis` without a best learning rate when too few have one for a fit."""
    from ..analysis.scaling import TooFewValues, scaling

    sweep = res.config.sweep
    if len(sweep.get(axis, ())) < 2 or len(sweep.get(LR, ())) < 2:
        return None
    if any(a not in (axis, LR, "seed") and len(v) > 1 for a, v in sweep.items()):
        return None
    try:
        fit = scaling(res.runs, by=axis, of="best_lr", n_boot=1000)
    except TooFewValues as e:
        return e.missing
    except InputError:
        return None
    return fit if math.isfinite(fit.exponent) else None


# ----------------------------------------------------------------------------------------------
# figures


@dataclass(frozen=True)
class _Figure:
    name: str  # file stem (Markdown) and anchor
    title: str
    caption: str
    png: bytes


def _new_figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    from PIL import Image  # matplotlib's own dependency

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    # a 256-colour palette makes these flat-colour figures about 3x smaller (reports are
    # committed) while every pixel stays within a few levels of the original
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    small = img.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _heatmap_axes(res: Results) -> tuple[str | None, str | None]:
    axes = [a for a in res.axes if a in res.runs.columns]
    if not axes:
        return None, None
    x = LR if LR in axes else axes[0]
    other = next((a for a in axes if a not in (x, "seed")), None)
    if other is not None:
        return x, other  # seeds pooled: majority label / P(diverged) per cell
    rest = [a for a in axes if a != x]
    return x, ("seed" if "seed" in rest else (rest[0] if rest else None))


def _label_every_row(ax, runs: pd.DataFrame, y: str | None) -> None:
    """A handful of rows has room for every label; the plots' tick thinning prefers round
    labels (0.5, 2) and would drop 0.25 and 1 from an init_scale axis."""
    if y is None or y == "seed" or not pd.api.types.is_numeric_dtype(runs[y]):
        return
    v = np.unique(runs[y].to_numpy(float))
    if len(v) <= 8:
        from matplotlib.ticker import FixedLocator

        ax.yaxis.set_major_locator(FixedLocator(v))


# a heatmap grows with its rows up to the labels figure's height at this many rows; more rows
# share that height (thinner rows) so a grid of hundreds of values stays a readable figure
MAX_HEATMAP_ROWS = 32
_LABELS_ROW_IN = 0.09
MAX_HEATMAP_HEIGHT = 1.8 + MAX_HEATMAP_ROWS * _LABELS_ROW_IN
_P_DIVERGED_ROW_IN = 0.35
# what a curves figure's x means, when it has one (plots.loss_curves' markers)
_EXIT_MARK = ("× marks where a run left the plot: where its loss crossed the top edge, or its "
              "last finite value where the recorded loss turned inf/NaN (a run is stopped when "
              "it blows up) without crossing it")


def _threshold_caption(ax, lr: float) -> str:
    """The caption's account of the 2/λ and 4/λ lines: which are drawn, and where those that
    `plots.threshold_lines` left out (outside the learning rates shown) lie."""
    drawn = {ln.get_gid() for ln in ax.lines}
    lo, hi = sorted(ax.get_xlim())
    shown = []
    off: dict[str, list[str]] = {}
    for name, v, style in (("2/λ", lr, "dashed"), ("4/λ", 2 * lr, "dotted")):
        if f"threshold-{name}" in drawn:
            shown.append(f"{style}: {name}")
        else:
            side = "below the smallest" if v < lo else "above the largest"
            off.setdefault(side, []).append(f"{name} = {fmt_number(v, 3)}")
    text = " λ is the median curvature at initialization."
    if shown:
        listed = "; ".join(shown)
        text += f" {listed[0].upper()}{listed[1:]}."
    for side, names in off.items():
        verb = "is" if len(names) == 1 else "are"
        text += (f" {' and '.join(names)} {verb} {side} learning rate shown, so not drawn.")
    return text


def _exit_marks(fig) -> int:
    return sum(1 for ax in fig.axes for ln in ax.lines
               if (ln.get_gid() or "").startswith("diverged-"))


def _figures(res: Results, facts: Mapping, fits: Mapping) -> list[_Figure]:
    from ..viz import plots

    runs, curves = res.runs, res.curves
    out = []
    x, y = _heatmap_axes(res)
    logs = {"log_x": plots.geometric(runs, x), "log_y": plots.geometric(runs, y)}
    if x is not None:
        rows = runs[y].nunique() if y else 1
        h = 1.8 + min(rows, MAX_HEATMAP_ROWS) * _LABELS_ROW_IN if y else 2.2
        fig = _new_figure(7.8, max(h, 3.0) if y else h)
        ax = fig.subplots()
        plots.label_heatmap(runs, x=x, y=y, ax=ax, **logs)
        _label_every_row(ax, runs, y)
        cap = f"Label of every run, {x} against {y}." if y == "seed" else (
            f"Majority label per cell ({x} against {y}), pooling the other axes." if y else
            f"Majority label per {x}.")
        lr_line = facts.get("sharpness.predicted_lr")
        if (lr_line is not None and x == LR and y in ("seed", None)
                and res.config.optimizer.name == "sgd"):
            plots.threshold_lines(ax, predicted_lr=lr_line)
            cap += _threshold_caption(ax, lr_line)
        out.append(_Figure("labels", "Outcome per run", cap, _png(fig)))
        if y is not None and y != "seed":
            fig = _new_figure(7.8, max(3.0, min(1.8 + rows * _P_DIVERGED_ROW_IN,
                                                MAX_HEATMAP_HEIGHT)))
            ax = fig.subplots()
            plots.label_heatmap(runs, x=x, y=y, ax=ax, aggregate="p_diverge", **logs)
            plots.boundary_contour(runs, x=x, y=y, ax=ax, **logs)
            _label_every_row(ax, runs, y)
            out.append(_Figure("p_diverged", "Probability of divergence",
                               f"Fraction of runs that diverged in each cell ({x} against {y}); "
                               "the line is the contour P(diverged) = 0.5.", _png(fig)))
        fig = _new_figure(7.8, max(h, 3.0) if y else 2.6)
        ax = fig.subplots()
        plots.metric_heatmap(runs, "spike_ratio", x=x, y=y, ax=ax, skip_diverged=True, **logs)
        _label_every_row(ax, runs, y)
        hatched = any(c.get_gid() == "all-diverged" for c in ax.collections)
        out.append(_Figure(
            "peak_ratio", "Peak ratio",
            "Largest jump of the loss over its running minimum (spike_ratio = max over steps t "
            "of loss_t / min of the loss before t, over rises of at least "
            f"{SPIKE_MIN_RISE:g} x the initial loss; 1 when it never rose that much"
            + ("; median over the runs of a cell that did not diverge)." if y != "seed" else
               ").")
            + (" Diverged runs are left out (spike_ratio stops before a blow-up: a run that "
               "blew up at its first step reads 1); hatched cells are those whose runs all "
               "diverged." if hatched else ""), _png(fig)))
    if len(curves):
        fig = _label_curves(res)
        if fig is not None:
            where = ("at the learning rate where that label is most common"
                     if LR in runs.columns else "over the whole grid")
            marks = (f" {_EXIT_MARK}; a diverged run without one stayed finite and in range "
                     "and ended above its initial loss." if _exit_marks(fig) else "")
            out.append(_Figure("curves", "Loss curves by label",
                               f"Representative runs of each label, {where} (at most "
                               f"{MAX_CURVES_PER_PANEL} runs per panel).{marks}", _png(fig)))
        lrs = runs[LR].to_numpy(float) if LR in runs.columns else np.array([])
        if _question_lrs(lrs):
            fig = _new_figure(10.0, 3.9)
            axs = fig.subplots(1, 2)
            plots.seed_question_figure(runs, curves, lrs=(0.01, 1.0), axes=axs)
            out.append(_Figure("seed_question", "The seed question: lr 0.01 against lr 1",
                               "Loss against step for every run at lr = 0.01 and lr = 1, "
                               "coloured by label; bold black: the per-step median."
                               + (f" {_EXIT_MARK}." if _exit_marks(fig) else ""),
                               _png(fig)))
    for axis, fit in fits.items():
        if fit is not None and not isinstance(fit, list):
            from .scaling import plot_scaling

            fig = _new_figure(5.0, 3.6)
            plot_scaling(fit, ax=fig.subplots())
            out.append(_Figure(f"scaling_{axis}", f"Best learning rate against {axis}",
                               f"The best learning rate of each {axis} (median over seeds of "
                               "the final loss, diverged runs left out) on log axes, its "
                               f"{fit.level:.0%} bootstrap interval over seeds, and the fitted "
                               "power law." + _left_out_caption(fit, axis), _png(fig)))
    return out


def _left_out_caption(fit, axis: str) -> str:
    from ..analysis.scaling import NO_VALUE

    left = fit.left_out()
    if not left:
        return ""
    return (f" No point at {axis} {', '.join(f'{v:g}' for v in left)}: "
            f"{NO_VALUE['best_lr']} there (left out of the fit).")


def _representative_lr(counts: pd.Series) -> float:
    """The lr where a label is most common; among ties, the middle one."""
    best = counts[counts == counts.max()].index.to_numpy(float)
    return float(best[(len(best) - 1) // 2])


def _label_curves(res: Results):
    from ..viz import plots

    runs = _runs_with_lr(res)
    present = [lab for lab in LABELS if (runs["label"] == lab).any()]
    if not present:
        return None
    ncols = min(len(present), 3)
    nrows = math.ceil(len(present) / ncols)
    fig = _new_figure(3.6 * ncols + 0.2, 2.9 * nrows)
    axs = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    # per-entry learning rates (no learning_rate column): runs of each label from all runs
    by = _by_lr(runs).counts if LR in runs.columns else None
    for ax, lab in zip(axs, present, strict=False):
        if by is None:
            sel = runs.loc[runs["label"] == lab, "run_id"].to_numpy()
            title = f"{lab}: {len(sel)}/{len(runs)} runs"
        else:
            lr = _representative_lr(by[lab])
            sel = runs.loc[_close(runs[LR], lr) & (runs["label"] == lab), "run_id"].to_numpy()
            n_at = int(by.loc[by.index[_close(by.index, lr)][0], "total"])
            title = f"{lab}: lr = {fmt_number(lr, 3)} ({len(sel)}/{n_at} runs)"
        shown = sel[np.unique(np.linspace(0, len(sel) - 1, min(len(sel), MAX_CURVES_PER_PANEL))
                              .round().astype(int))]
        plots.loss_curves(res.curves, runs, run_ids=shown, ax=ax, legend=False, alpha=0.75,
                          linewidth=1.0)
        ax.set_title(title, fontsize="medium")
    for ax in axs[len(present):]:
        ax.remove()
    return fig


# ----------------------------------------------------------------------------------------------
# tables and text blocks


def _divergence_rows(res: Results) -> tuple[list[str], list[list[str]], str]:
    runs = _runs_with_lr(res)
    # per-entry learning rates (no learning_rate column): one row pooling the whole grid
    key = LR if LR in runs.columns else "grid"
    table = divergence_table(runs if key == LR else runs.assign(grid="all runs"), by=[key])
    head = [key, "runs", *LABELS, "P(diverged)", "95% interval", "median peak / initial",
            "catapults recovered", "median steps to recover"]
    rows = []
    for _, r in table.iterrows():
        rows.append([
            fmt_number(r[LR], 3) if key == LR else str(r[key]), str(int(r["n"])),
            *(str(int(r[f"n_{lab}"])) for lab in LABELS),
            f"{r['p_diverged']:.2f}", f"[{r['p_diverged_lo']:.2f}, {r['p_diverged_hi']:.2f}]",
            _cell(r["median_peak_ratio"]),
            "–" if pd.isna(r["n_recovered"]) or not r["n_catapult"] else
            f"{int(r['n_recovered'])}/{int(r['n_catapult'])}",
            "–" if pd.isna(r["median_recover_steps"])
            else fmt_steps(r["median_recover_steps"]),
        ])
    held_head, held_rows = report_heldout.held_out_cells(table)
    head += held_head
    rows = [r + h for r, h in zip(rows, held_rows, strict=True)]
    pooled = [a for a in res.axes if a != key]
    note = ("Each row pools " + (", ".join(pooled) if pooled else "its runs") + ". Wilson score "
            "interval; peak / initial = max_loss / initial_loss over the runs that did not "
            "diverge; a catapult has recovered when its loss is back down to the lowest loss "
            "before its largest spike; steps to recover = spike_recover_step - spike_step "
            "(from the top of the spike) over those runs."
            + (" Held-out loss: median final_test_loss of the runs with that label."
               if held_head else ""))
    return head, rows, note


def _cell(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt_number(v, 3)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                            "-inf" if v == -math.inf else repr(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def _toml_key(k: str) -> str:
    # dotted sweep keys (learning_rate.0) are written as TOML dotted keys, as a user would
    return k if re.fullmatch(r"[A-Za-z0-9_.-]+", k) else json.dumps(k)


def config_toml(res: Results) -> str:
    """The full validated config, defaults included, written as TOML."""
    d = res.config.to_dict()
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for section, body in d.items():
        if not isinstance(body, dict):
            continue
        lines += ["", f"[{section}]"]
        # unset keys (None) take a built-in default; TOML has no null to show them with
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items() if v is not None]
    return "\n".join(lines).lstrip("\n")


def _programs(m: Mapping) -> list:
    return list((m.get("engine") or {}).get("programs") or [])


def _model_text(res: Results, m: Mapping) -> str:
    """meta.json's model names the config's base network; a sweep over width/depth trains one
    network per shape, as its engine record (or else the config) says: all are named."""
    model = str(m["model"])
    shapes = [tuple(p["sizes"]) for p in _programs(m) if p.get("sizes")]
    match = re.fullmatch(r"mlp (\d+)-(?:\d+-)*(\d+)", model)
    sweep = res.config.sweep
    if not shapes and match and any(len(sweep.get(a, ())) > 1 for a in SHAPE_AXES):
        from ..spec.schema import hidden_of

        d_in, d_out = int(match[1]), int(match[2])
        shapes = [(d_in, *hidden_of(res.config.model, w, dp), d_out)
                  for w in sweep.get("width", (None,)) for dp in sweep.get("depth", (None,))]
    shapes = ["-".join(map(str, sh)) for sh in dict.fromkeys(shapes)]
    if len(shapes) < 2:
        return model
    shown = shapes if len(shapes) <= 6 else [*shapes[:2], "…", *shapes[-2:]]
    return f"mlp {', '.join(shown)} ({len(shapes)} shapes)"


def _chunks_text(res: Results, m: Mapping) -> str:
    """How the runs were cut into chunks. Chunks hold at most `chunk_size` runs of one program
    (one compiled network: a value of width, depth, dtype or batch size), so a sweep of
    several programs has smaller chunks; their sizes follow from the runs of each program."""
    t = m.get("timings") or {}
    n, size = int(t["n_chunks"]), t.get("chunk_size")
    n_programs = len(_programs(m))
    split = [a for a in (*SHAPE_AXES, "dtype", "batch_size")
             if len(res.config.sweep.get(a, ())) > 1 and a in res.runs.columns]
    per_program = (res.runs.groupby(split, dropna=False).size().to_numpy() if split
                   else np.array([len(res.runs)]))
    known = isinstance(size, (int, np.integer)) and size > 0
    sizes = []
    for k in per_program.tolist() if known else []:
        full, rest = divmod(k, int(size))
        sizes += [int(size)] * full + ([rest] if rest else [])
    programs = (f", in {n_programs} programs" + (" (one chunk each)" if n == n_programs else "")
                if n_programs > 1 else "")
    if (len(sizes) != n or t.get("resumed_runs") or (n_programs and n_programs != len(per_program))
            or sum(sizes) != t.get("computed_runs", sum(sizes))):
        # not all computed by this process, or the layout is unknown
        return (f"{n} of at most {size} runs" if known else str(n)) + programs
    counts = sorted(pd.Series(sizes).value_counts().items(), reverse=True)
    if len(counts) == 1:
        return f"{n} of {counts[0][0]} runs{programs}"
    return f"{n}: " + ", ".join(f"{c} of {s} runs" for s, c in counts) + programs


def _environment_rows(res: Results) -> list[tuple[str, str]]:
    m = res.meta or {}
    rows = []
    for pkg, ver in (m.get("versions") or {}).items():
        rows.append((pkg, str(ver)))
    for key, name in (("python", "python"), ("platform", "platform"), ("backend", "JAX backend"),
                      ("matmul_precision", "matmul precision"), ("created", "created")):
        if m.get(key) is not None:
            rows.append((name, str(m[key])))
    if m.get("devices"):
        rows.append(("devices", ", ".join(map(str, m["devices"]))))
    data = m.get("data") or {}
    if data:
        how = {True: ", features standardized", False: ", features as given"}.get(
            data.get("standardized"), "")
        # n_samples counts the training rows: the held-out ones are the rest of the data
        held = ((data.get("holdout") or {}).get("n_test")
                or (data.get("test_data") or {}).get("n_samples"))  # ts.run(test_data=)
        held = f"; {held} more rows held out" if held else ""
        rows.append(("data", f"{data.get('source')}: {data.get('n_samples')} x "
                             f"{data.get('n_features')} ({data.get('task')}{how}{held})"))
    if m.get("model"):
        rows.append(("model", _model_text(res, m)))
    t = m.get("timings") or {}

    def secs(key):
        return f"{t[key]:.1f} s" if isinstance(t.get(key), (int, float)) else None

    for key, name in (("total_seconds", "total time"), ("compute_seconds", "compute time"),
                      ("first_chunk_seconds", "first chunk (includes compilation)")):
        if secs(key):
            rows.append((name, secs(key)))
    if isinstance(t.get("run_steps_per_second"), (int, float)):
        rows.append(("throughput", f"{t['run_steps_per_second']:,.0f} run-steps/s"))
    if t.get("n_chunks") is not None:
        rows.append(("chunks", _chunks_text(res, m)))
    if not rows:
        rows.append(("environment", "not recorded with these results"))
    return rows


# ----------------------------------------------------------------------------------------------
# rendering


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
.answer{background:#f6f8fa;border-left:4px solid #0072B2;padding:.6em 1em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f0f0f0}td.key,th.key{text-align:left}
pre{background:#f6f8fa;padding:.8em;white-space:pre-wrap;word-break:break-word;font-size:.85em}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
code{background:#f0f0f0;padding:0 .2em}.note{color:#555;font-size:.9em}
""".strip()


def _shown_path(path) -> str:
    """The results folder as the report names it: relative to the current directory when it
    lies inside it, so a report committed with its results does not carry the absolute path of
    the machine that wrote it; otherwise as given."""
    given = Path(path)
    try:
        return given.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(given)


def _inline(text: str) -> str:
    """Escape for HTML, keeping `code` spans."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p)
                   for i, p in enumerate(parts))


def _html_table(head, rows, key_cols: int = 1) -> str:
    def cells(tag, vals):
        key = ' class="key"'
        return "".join(f"<{tag}{key if i < key_cols else ''}>{html.escape(v)}</{tag}>"
                       for i, v in enumerate(vals))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _render_html(res, text, figs, table, toml, env) -> str:
    name = html.escape(res.config.name)
    paras = "".join(f"<p>{_inline(p)}</p>" for p in text.split("\n\n"))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>trainscape report: {name}</title>", f"<style>{_CSS}</style>", "</head>",
           "<body>", f"<h1>{name}</h1>",
           f'<p class="note">trainscape report of {len(res.runs)} runs'
           + (f" from <code>{html.escape(_shown_path(res.path))}</code>" if res.path else "")
           + "</p>",
           '<section id="answer"><h2>Answer</h2>', f'<div class="answer">{paras}</div>',
           "</section>"]
    sections = [("heatmaps", "Heatmaps", [f for f in figs if f.name not in
                                          ("curves", "seed_question")
                                          and not f.name.startswith("scaling")]),
                ("curves", "Loss curves by label", [f for f in figs if f.name == "curves"]),
                ("seed-question", "The seed question", [f for f in figs
                                                        if f.name == "seed_question"]),
                ("scaling", "Learning rate against width",
                 [f for f in figs if f.name.startswith("scaling")])]
    for anchor, title, group in sections[:1]:
        out.append(_html_figures(anchor, title, group))
    head, rows, note = table
    out += ['<section id="divergence"><h2>Divergence table</h2>', _html_table(head, rows),
            f'<p class="note">{html.escape(note)}</p></section>']
    for anchor, title, group in sections[1:]:
        if group:
            out.append(_html_figures(anchor, title, group))
    out += ['<section id="config"><h2>Configuration</h2>', f"<pre>{html.escape(toml)}</pre>",
            "</section>", '<section id="environment"><h2>Environment</h2>',
            _html_table(["", "value"], [list(r) for r in env], key_cols=2),
            "</section>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_figures(anchor, title, group) -> str:
    body = "".join(
        f'<figure id="fig-{f.name}"><img alt="{html.escape(f.title)}" '
        f'src="data:image/png;base64,{base64.b64encode(f.png).decode("ascii")}">'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>" for f in group)
    if not group:
        body = '<p class="note">No grid axes to map: a single run.</p>'
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _md_table(head, rows, numeric: bool = True) -> str:
    def line(vals):
        return "| " + " | ".join(v.replace("|", "\\|") for v in vals) + " |"

    sep = "|" + "|".join(":---" if i == 0 or not numeric else "---:"
                         for i in range(len(head))) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def _render_md(res, text, figs, table, toml, env, image_names) -> str:
    out = [f"# {res.config.name}", "",
           f"trainscape report of {len(res.runs)} runs"
           + (f" from `{_shown_path(res.path)}`" if res.path else "") + ".", "", "## Answer",
           "", text, ""]

    def figures(group):
        for f in group:
            out.extend([f"![{f.title}]({image_names[f.name]})", "", f"*{f.caption}*", ""])

    out += ["## Heatmaps", ""]
    heat = [f for f in figs if f.name not in ("curves", "seed_question")
            and not f.name.startswith("scaling")]
    figures(heat) if heat else out.extend(["No grid axes to map: a single run.", ""])
    head, rows, note = table
    out += ["## Divergence table", "", _md_table(head, rows), "", note, ""]
    for name, title in (("curves", "Loss curves by label"),
                        ("seed_question", "The seed question"),
                        ("scaling", "Learning rate against width")):
        group = [f for f in figs if f.name == name or (name == "scaling" and
                                                       f.name.startswith("scaling"))]
        if group:
            out += [f"## {title}", ""]
            figures(group)
    out += ["## Configuration", "", "```toml", toml, "```", "", "## Environment", "",
            _md_table(["", "value"], [list(r) for r in env], numeric=False), ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# entry points


def _target(res: Results, fmt: str | None, out) -> tuple[Path, str]:
    if out is not None:
        p = atomic.path_arg(out, "out")
        if fmt is None:
            fmt = "md" if p.suffix.lower() in (".md", ".markdown") else "html"
        if atomic.names_folder(out, p):
            p = p / f"report{_SUFFIX.get(fmt, '')}"
    else:
        fmt = fmt or "html"
        if res.path is None:
            raise InputError("out: these results are not on disk; give out=FILE for the report")
        p = Path(res.path) / f"report{_SUFFIX.get(fmt, '')}"
    if fmt not in FORMATS:
        raise InputError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    _check_target(p)
    return p, fmt


# near the top of every report (title, or the line under it; a zoom's report.md: its title)
MARKS = (b"trainscape report", b"# Boundary zoom: ")


def is_earlier_report(p: Path) -> bool:
    """Whether `p` is a report file this module (or the zoom's report) wrote: the only kind of
    existing file a report replaces."""
    if not p.is_file() or p.suffix.lower() not in _REPORT_SUFFIXES:
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return any(m in head for m in MARKS)


def _check_target(p: Path) -> None:
    """Refuse, before any figure is drawn, a report that would replace anything but an earlier
    report (a finished runs.parquet was once overwritten with HTML) or go to a folder that
    cannot be written."""
    where = f"out {str(p)!r}"
    folder = atomic.check_parent(p, where)
    real = folder.resolve() / p.name  # R/../R/meta.json is R's meta.json
    for top in (real.parent, real.parent.parent):
        first = real.relative_to(top).parts[0]
        if (first in _RESULTS_OWN or first.startswith(store.LOCK)) and \
                store.folder_state(top) in ("interrupted", "finished"):
            raise InputError(f"{where}: would replace {first!r} of the results folder "
                             f"{str(top)!r}; a report never replaces a results folder's own "
                             "files: give another file name")
    if p.exists() and not is_earlier_report(p):
        raise InputError(f"{where}: exists and is not an earlier trainscape report; a report "
                         "replaces only an earlier report: give a new file name")


def build(results_or_path, *, fmt: str | None = None, out=None) -> Path:
    """Write the report of a :class:`Results` (or a results folder) and return its path.

    fmt: ``"html"`` (one file, images embedded as data: URIs, no external resources) or
    ``"md"`` (Markdown; each image is written next to it as ``<stem>-<figure>.png``). None:
    ``md`` when `out` ends in ``.md``, else ``html``.
    out: the report file, or a folder to write ``report.<fmt>`` into. None: ``report.<fmt>``
    inside the results folder (in-memory results need `out`).
    """
    res = _with_runs(results_or_path)
    path, fmt = _target(res, fmt, out)
    replacing = path.exists()  # an earlier report (_check_target): its figures are ours too
    fits = _scaling_fits(res)
    text, facts = _answer(res, fits)
    figs = _figures(res, facts, fits)
    table = _divergence_rows(res)
    toml, env = config_toml(res), _environment_rows(res)
    if fmt == "html":
        doc = _render_html(res, text, figs, table, toml, env)
    else:
        names = {f.name: f"{path.stem}-{f.name}.png" for f in figs}
        taken = [n for n in names.values() if (path.parent / n).exists()]
        if taken and not replacing:
            raise InputError(f"out {str(path)!r}: its figure {taken[0]!r} would replace a "
                             "file that is not part of an earlier report: give a new file name")
        for f in figs:
            atomic.write_bytes(f.png, path.parent / names[f.name])
        doc = _render_md(res, text, figs, table, toml, env, names)
    atomic.write_bytes(doc.encode("utf-8"), path)
    return path
