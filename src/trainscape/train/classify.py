"""Trajectory summaries -> labels. Pure and vectorized; every threshold is named here.

A run is summarised by its initial, final, min and max loss, whether (and when) it left the
finite range, its largest *rebound* (the biggest rise of the loss above its running minimum,
``max_t loss_t - min_{s<=t} loss_s``) and its *spike ratio* (the largest ``loss_t / min_{s<t}
loss_s`` among rises of at least ``SPIKE_MIN_RISE`` x the initial loss; 1 when there is none).
The spike ratio is what makes the seed question's catapult visible: with saturated initial
logits the loss can fall far below its initial value before it spikes, and the spike (e.g.
0.29 -> 3.4 at lr = 1) comes after that fall, not above the initial loss. The labels,
checked in this order:

``diverged``
    the loss became non-finite, or exceeded ``BLOWUP_FACTOR`` x the initial loss (the run is
    frozen at that step; ``diverged_step`` records it), or it ended above
    ``(1 + STALL_TOL)`` x the initial loss (``diverged_step`` is then the first step of the
    final stretch above the initial loss, after which it never came back).
``stalled``
    it ended within ``STALL_TOL`` (relative) of the initial loss.
``catapult``
    its spike ratio is at least ``SPIKE_FACTOR`` (the loss jumped to at least twice the lowest
    value it had reached, by a rise of at least ``SPIKE_MIN_RISE`` x the initial loss; a rise
    to twice the initial loss counts too), and it ended below ``(1 - STALL_TOL)`` x the initial
    loss.
``oscillating``
    no catapult-sized spike, but the loss rebounded above its running minimum by more than
    ``REBOUND_TOL`` x the initial loss at some step, and it ended below the initial loss.
``converged``
    none of the above: the loss fell (almost) monotonically to below the initial loss.

When sharpness is measured on plain gradient descent (optimizer ``sgd``, one learning rate for
all parameters), a run that would be ``converged`` but ends with ``sharpness_final`` above
``EOS_FACTOR`` x 2/lr is labelled ``oscillating`` instead: it sits at the edge of stability,
where the loss keeps making small non-monotone moves that are below ``REBOUND_TOL`` of the
initial loss but are not convergence.
"""

from __future__ import annotations

import numpy as np

LABELS = ("converged", "catapult", "oscillating", "stalled", "diverged")

BLOWUP_FACTOR = 1e3  # loss above this multiple of the initial loss counts as diverged
STALL_TOL = 0.05  # final within (1 -/+ this) x initial, ends included: "about where it started"
SPIKE_FACTOR = 2.0  # a catapult's spike is at least this multiple of the running minimum
SPIKE_MIN_RISE = 0.05  # ...and rises by at least this x the initial loss (not float noise)
REBOUND_TOL = 0.02  # rises above the running minimum smaller than this x initial are noise
EOS_FACTOR = 1.05  # plain GD ending with sharpness above this x 2/lr is not at rest: oscillating


def label_codes(initial, final, spike, rebound, diverged_step) -> np.ndarray:
    """Integer label codes (indices into LABELS) for arrays of run summaries.

    `diverged_step` is an integer array with -1 (or a masked/NA value) for runs that stayed
    finite and below the blow-up factor.
    """
    initial = np.asarray(initial, dtype=np.float64)
    final = np.asarray(final, dtype=np.float64)
    spike = np.asarray(spike, dtype=np.float64)
    rebound = np.asarray(rebound, dtype=np.float64)
    blew_up = np.asarray(diverged_step, dtype=np.float64) >= 0
    # Products, not the ratio final / initial: 21 / 20 - 1 rounds to just above 0.05, which
    # made a run ending at exactly 1.05 x its initial loss neither `stalled` nor `diverged`
    # (and a zero initial loss gave 0 / 0). The losses are >= 0.
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(final) & np.isfinite(initial) & ~blew_up
        diverged = ~ok | (final > (1 + STALL_TOL) * initial)
        stalled = ~diverged & (final >= (1 - STALL_TOL) * initial)
        catapult = ~diverged & ~stalled & (spike >= SPIKE_FACTOR)
        oscillating = ~diverged & ~stalled & ~catapult & (rebound > REBOUND_TOL * initial)
    code = np.zeros(initial.shape, dtype=np.int64)  # converged
    code[oscillating] = LABELS.index("oscillating")
    code[catapult] = LABELS.index("catapult")
    code[stalled] = LABELS.index("stalled")
    code[diverged] = LABELS.index("diverged")
    return code


def labels(initial, final, spike, rebound, diverged_step) -> np.ndarray:
    """Label strings for arrays of run summaries (see the module docstring)."""
    return np.asarray(LABELS, dtype=object)[
        label_codes(initial, final, spike, rebound, diverged_step)
    ]


def summarize_curve(loss_T) -> dict:
    """Summaries of one full loss curve (every step recorded), as the engine computes them
    online: used for hand-made curves and as an independent check of the engine."""
    loss = np.asarray(loss_T, dtype=np.float64)
    init = loss[0]
    bad = ~np.isfinite(loss) | (loss > BLOWUP_FACTOR * init)
    div = int(np.argmax(bad)) if bad.any() else -1
    live = loss if div < 0 else loss[: div + 1]
    good = live if div < 0 else live[:-1]
    run_min = np.minimum.accumulate(good) if good.size else good
    rebound = float(np.max(good - run_min)) if good.size else 0.0
    before = run_min[:-1]  # running minimum strictly before each step t >= 1
    rise = good[1:] - before
    big = rise >= SPIKE_MIN_RISE * init
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 at a zero loss
        jump = good[1:] / before
        spike = float(np.max(jump[big])) if big.any() else 1.0
        top = big & (jump > 1)  # as the engine: a jump that raises the largest so far
    spike_step = spike_recover = -1
    if top.any():  # the top of the largest spike (the first, on ties) and its way back down
        spike_step = int(np.argmax(np.where(top, jump, -np.inf))) + 1
        back = np.nonzero((np.arange(good.size) > spike_step)
                          & (good <= run_min[spike_step - 1]))[0]
        spike_recover = int(back[0]) if back.size else -1
    peak = int(np.argmax(good)) if good.size else 0
    after = np.nonzero((np.arange(good.size) > peak) & (good < init))[0]
    not_above = np.nonzero(good <= init)[0]
    last_ok = int(not_above[-1]) if not_above.size else -1
    above_since = last_ok + 1 if last_ok + 1 < good.size else -1
    return {
        "initial_loss": float(init),
        "final_loss": float(live[-1]),
        "min_loss": float(np.min(good)) if good.size else float("nan"),
        "max_loss": float(good[peak]) if good.size else float("nan"),
        "peak_step": peak,
        "diverged_step": div,
        "recover_step": int(after[0]) if after.size else -1,
        "rebound": rebound,
        "spike_ratio": spike,
        "spike_step": spike_step,
        "spike_recover_step": spike_recover,
        "above_since": above_since,
    }


def edge_of_stability(codes, sharpness_final, lr) -> np.ndarray:
    """Relabel `converged` runs whose final sharpness exceeds EOS_FACTOR x 2/lr (plain GD)."""
    codes = np.asarray(codes).copy()
    with np.errstate(invalid="ignore"):
        above = np.asarray(sharpness_final) * np.asarray(lr) / 2 > EOS_FACTOR
    codes[(codes == LABELS.index("converged")) & above] = LABELS.index("oscillating")
    return codes


def diverged_steps(codes, blowup_step, above_since) -> np.ndarray:
    """The `diverged_step` column: the blow-up step, else for runs labelled diverged the start of
    their final stretch above the initial loss, else -1 (never)."""
    blowup_step = np.asarray(blowup_step)
    is_div = np.asarray(codes) == LABELS.index("diverged")
    return np.where(blowup_step >= 0, blowup_step, np.where(is_div, above_since, -1))


def label_curve(loss_T) -> str:
    """Label of one fully recorded loss curve."""
    s = summarize_curve(loss_T)
    return str(
        labels(s["initial_loss"], s["final_loss"], s["spike_ratio"], s["rebound"],
               s["diverged_step"])
    )
