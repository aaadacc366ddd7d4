"""`train_one`: training of ONE run, one compiled loop over its recorded steps (a
`lax.while_loop` that stops once its group is frozen; a `lax.scan` without early exit).

It knows nothing about grids: `engine/compile.py` is the only place that vmaps and jits it
over runs.
Summaries (min, max, peak step, divergence step, recovery step, largest rebound) are computed
online in the loop's carry, so a run never has to ship its whole curve to the host to be labelled.
A run whose loss becomes non-finite, or exceeds `BLOWUP_FACTOR` x its initial loss, is frozen
at that step: its parameters stop changing and later curve points are NaN, so garbage neither
spreads nor poisons the summaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..nn import curvature, losses, optim
from ..nn.models import Model
from ..train.classify import BLOWUP_FACTOR, SPIKE_MIN_RISE


class Static(NamedTuple):
    """Everything that fixes the compiled program (hashable); swept values are NOT here."""

    model: Model
    loss: str
    optimizer: str
    steps: int
    record_every: int
    dtype: str
    accuracy: bool
    # True: every run starts from the caller's init_params (one pytree, shared by all runs);
    # False: each run from its own draw, model.init(run_keys(seed)[0]), which the engine makes
    # in a separate program (engine.compiled_init) and passes in with a leading run axis
    custom_init: bool
    batch_size: int | None = None  # None: full batch
    dropout: bool = False  # model.apply_dropout(params, x, key, rate) in training steps
    l2: bool = False  # add l2/2 ||params||^2 to the objective
    grad_clip: bool = False  # clip the gradient's global norm to hp["grad_clip"]
    sharpness: bool = False
    sharpness_every: int = 0  # 0: only at init and at the end
    sharpness_iters: int = 20
    sharpness_which: str = "largest"
    matmul_precision: str = "highest"  # jax.default_matmul_precision while tracing
    # True: the loop over steps ends once every run trained together is frozen (`_until_frozen`);
    # False: every step is computed (the same results, bit for bit)
    early_exit: bool = True
    schedule: str = "constant"  # the learning rate's schedule over the steps (nn.schedules)
    test: bool = False  # evaluate held-out data (train_one's `test`) at the recorded steps
    # per layer ((leaf name, factor), ...): static learning-rate factors (muP, `nn.mup`)
    lr_scale: tuple | None = None
    # with early_exit, recorded blocks per iteration of the loop over them (`_until_frozen`):
    # that many copies of the block in the program, one loop condition per that many blocks;
    # the same results for every value. None: the platform's (`plan.loop_unroll`), set by the
    # engine when it compiles the program
    unroll: int | None = None


class Stats(NamedTuple):
    alive: jax.Array
    initial: jax.Array
    final: jax.Array
    min: jax.Array
    max: jax.Array
    peak_step: jax.Array
    diverged_step: jax.Array
    recover_step: jax.Array
    running_min: jax.Array
    rebound: jax.Array
    spike: jax.Array
    spike_step: jax.Array
    spike_base: jax.Array  # the running minimum just before the largest spike
    spike_recover: jax.Array
    above_since: jax.Array
    final_acc: jax.Array


class Trajectory(NamedTuple):
    """One run's result. `loss_R` holds the recorded steps `record_steps(steps, record_every)`."""

    loss_R: jax.Array
    acc_R: jax.Array
    sharpness_R: jax.Array  # NaN at recorded steps where sharpness was not computed
    initial_loss: jax.Array
    final_loss: jax.Array
    min_loss: jax.Array
    max_loss: jax.Array
    peak_step: jax.Array
    diverged_step: jax.Array  # -1: never
    recover_step: jax.Array  # -1: never (first step after the peak back below initial)
    rebound: jax.Array
    spike_ratio: jax.Array
    spike_step: jax.Array  # step of spike_ratio, the top of the largest spike; -1: none
    spike_recover_step: jax.Array  # first later step back at or below the loss before it; -1
    above_since: jax.Array  # start of the final stretch above the initial loss; -1: none
    final_accuracy: jax.Array
    sharpness_init: jax.Array
    sharpness_final: jax.Array
    # steps computed for the run's group, the evaluation at `steps` included: steps + 1, less
    # the steps early exit skipped once every run of the group was frozen
    steps_computed: jax.Array
    # held-out loss and accuracy at the recorded steps, with the parameters of `loss_R`, NaN
    # where it is; None (no output at all) without held-out data
    test_loss_R: jax.Array | None = None
    test_acc_R: jax.Array | None = None


def record_steps(steps: int, every: int) -> list[int]:
    """Steps at which the curve is recorded: 0, every, 2 every, ..., and always `steps`."""
    rec = list(range(0, steps, every))
    return [*rec, steps]


def stat_dtype(dtype: str):
    # bfloat16 runs keep their summaries in float32 so labels are not decided by rounding
    return jnp.float32 if dtype == "bfloat16" else jnp.dtype(dtype)


def _init_stats(dt) -> Stats:
    z = jnp.zeros((), dt)
    m1 = jnp.array(-1, jnp.int32)
    inf = jnp.array(jnp.inf, dt)
    return Stats(jnp.array(True), z, z, inf, jnp.array(-jnp.inf, dt),
                 jnp.array(0, jnp.int32), m1, m1, inf, z,
                 jnp.ones((), dt), m1, inf, m1, m1, z)


def _update_stats(s: Stats, loss, acc, t):
    """Fold the loss at step `t` into the summaries.

    Returns (stats, still_alive, recorded loss, recorded accuracy); the recorded values are
    NaN once the run was frozen at an earlier step."""
    initial = jnp.where(t == 0, loss, s.initial)
    ok = jnp.isfinite(loss) & (loss <= BLOWUP_FACTOR * initial)
    live = s.alive & ok
    dies = s.alive & ~ok
    new_peak = live & (loss > s.max)
    recovers = live & ~new_peak & (s.recover_step < 0) & (t > s.peak_step) & (loss < initial)
    running_min = jnp.where(live, jnp.minimum(s.running_min, loss), s.running_min)
    big_rise = live & (t > 0) & (loss - s.running_min >= SPIKE_MIN_RISE * initial)
    jump = loss / s.running_min
    # a new largest spike (ties keep the first); its recovery is measured from its top
    new_spike = big_rise & (jump > s.spike)
    back = live & (s.spike_step >= 0) & (s.spike_recover < 0) & (loss <= s.spike_base)
    s2 = Stats(
        alive=live,
        initial=initial,
        final=jnp.where(s.alive, loss, s.final),
        min=jnp.where(live, jnp.minimum(s.min, loss), s.min),
        max=jnp.where(new_peak, loss, s.max),
        peak_step=jnp.where(new_peak, t, s.peak_step),
        diverged_step=jnp.where(dies, t, s.diverged_step),
        recover_step=jnp.where(new_peak, -1, jnp.where(recovers, t, s.recover_step)),
        running_min=running_min,
        # against the running minimum of the steps before t: the same maximum (the rise at
        # t over a minimum that includes t is 0), without subtracting the loss from itself,
        # which XLA may compute twice in different fusions and round differently (a
        # strictly falling curve then got a rebound of about one ulp)
        rebound=jnp.where(live, jnp.maximum(s.rebound, loss - s.running_min), s.rebound),
        spike=jnp.where(big_rise, jnp.maximum(s.spike, jump), s.spike),
        spike_step=jnp.where(new_spike, t, s.spike_step),
        spike_base=jnp.where(new_spike, s.running_min, s.spike_base),
        spike_recover=jnp.where(new_spike, -1, jnp.where(back, t, s.spike_recover)),
        above_since=jnp.where(~live, s.above_since, jnp.where(
            loss > initial, jnp.where(s.above_since < 0, t, s.above_since), -1)),
        final_acc=jnp.where(s.alive, acc, s.final_acc),
    )
    return s2, live, jnp.where(s.alive, loss, jnp.nan), jnp.where(s.alive, acc, jnp.nan)


def run_keys(seed) -> jax.Array:
    """A run's four independent random streams, all from its own seed: initial weights,
    mini-batch order, dropout masks, the sharpness's start vector."""
    return jax.random.split(jax.random.PRNGKey(seed), 4)


def init_params_of(model: Model, seed):
    """The weights a run with this seed starts from, before `init_scale`: model.init of the
    run's first stream. `engine.compiled_init` vmaps this over a block's seeds."""
    return model.init(run_keys(seed)[0])


def train_one(hp: dict[str, jax.Array], x_NxD, y, static: Static,
              init_params: Any = None, group: str | None = None,
              test: tuple = (), max_blocks=None) -> Trajectory:
    """Train one run with hyperparameters `hp` (scalars: `seed`, `learning_rate`, ...).

    `init_params`: the run's starting weights (the caller's shared ones, or its own draw made
    by the engine's init program); None draws them here from the seed, the same weights.
    `group`: the name of the vmapped axis of the runs trained together with this one (None:
    it is trained alone); with `static.early_exit` their loop ends once all are frozen.
    `test`: held-out `(x, y)`, never trained on, evaluated when `static.test`.
    `max_blocks` (with `static.early_exit`; a traced integer, None: no limit): compute at most
    the first this many recorded blocks and stop there, without the end's evaluation (the
    engine's probe, `execute.probe_order`); the results are those of a run cut short."""
    dt = jnp.dtype(static.dtype)
    sdt = stat_dtype(static.dtype)
    _, k_batch, k_drop, k_sharp = run_keys(hp["seed"])

    params = init_params if init_params is not None else init_params_of(static.model,
                                                                        hp["seed"])
    scale = hp["init_scale"]
    params = jax.tree.map(lambda p: (p * scale).astype(dt), params)
    # hyperparameters stay in float32 for bfloat16 runs: 0.01 is 0.010009765625 in bfloat16
    hpt = {k: jnp.asarray(v, sdt) for k, v in hp.items() if k != "seed"}
    opt = optim.make_optimizer(static.optimizer, hpt, optim.n_top_level(params),
                               clip=static.grad_clip, schedule=static.schedule,
                               steps=static.steps, lr_scale=static.lr_scale)
    opt_state = opt.init(params)
    loss_of = losses.LOSSES[static.loss]
    n = x_NxD.shape[0]

    def penalty(p):
        if not static.l2:
            return 0.0
        sq = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(p))
        return 0.5 * hpt["l2"] * sq

    # A model that reads the data transposed (the built-in MLP when its layers are narrower
    # than the samples, models.feature_major) gets x as the transpose of a (d, n) array
    # materialized here, once: XLA then folds the model's own x.T away. Otherwise the (n, d)
    # array in the loop made the first layer's weight gradient a slow transposed-operand
    # matmul (measured: 1.25x run-steps/s on the `small` bench workload from this alone).
    wants_t = static.model.transposed_input
    x_DxN = x_NxD.T if wants_t is not None and wants_t(params, x_NxD) else None

    def objective(p, xb=x_NxD, yb=y, drop_key=None):
        """Training objective: mean loss (+ l2/2 ||p||^2); dropout only when a key is given."""
        if x_DxN is not None and xb is x_NxD:
            xb = x_DxN.T
        if drop_key is None:
            out = static.model.apply(p, xb)
        else:
            out = static.model.apply_dropout(p, xb, drop_key, hpt["dropout"])
        return loss_of(out, yb) + penalty(p), out

    def full_loss(p):
        return objective(p)[0]

    def acc_of(out):
        if not static.accuracy:
            return jnp.zeros((), sdt)
        return losses.accuracy(out, y, static.loss).astype(sdt)

    def sharpness(p):
        if not static.sharpness:
            return jnp.zeros((), sdt)
        eig = curvature.top_eigenvalue(full_loss, p, k_sharp, num_iters=static.sharpness_iters,
                                       which=static.sharpness_which)
        return eig.eigval.astype(sdt)

    value_and_grad = jax.value_and_grad(objective, has_aux=True)
    stochastic = static.batch_size is not None or static.dropout

    def gradient(p, t):
        """(full-batch loss, outputs, gradient) at step t. Mini-batches and dropout change
        only the gradient; the recorded loss is always the full-batch, dropout-free one."""
        if not stochastic:
            (loss, out), g = value_and_grad(p)
            return loss, out, g
        xb, yb = x_NxD, y
        if static.batch_size is not None:
            bs = static.batch_size
            per_epoch = n // bs
            perm = jax.random.permutation(jax.random.fold_in(k_batch, t // per_epoch), n)
            idx = lax.dynamic_slice(perm, ((t % per_epoch) * bs,), (bs,))
            xb, yb = x_NxD[idx], y[idx]
        drop_key = jax.random.fold_in(k_drop, t) if static.dropout else None
        _, g = value_and_grad(p, xb, yb, drop_key)
        loss, out = objective(p)
        return loss, out, g

    k, T = static.record_every, static.steps

    def step(carry, t):
        """Step t: the loss at the current weights goes into the summaries, then the weights
        move (at t = T, the end, the move is computed and dropped)."""
        params, opt_state, stats = carry
        loss, out, g = gradient(params, t)
        stats, live, rec, rec_acc = _update_stats(stats, loss.astype(sdt), acc_of(out), t)
        upd, new_state = opt.update(g, opt_state, params)
        new_params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, upd)
        # a frozen run keeps its last finite parameters: no NaN spreading
        params = jax.tree.map(lambda a, b: jnp.where(live, a, b), new_params, params)
        opt_state = jax.tree.map(lambda a, b: jnp.where(live, a, b), new_state, opt_state)
        return (params, opt_state, stats), (rec, rec_acc)

    def held_out(carry):
        """Held-out loss and accuracy (no l2 penalty, no dropout) at a recorded step, with the
        parameters the recorded training loss is computed from; NaN where that loss is (the
        run was frozen at an earlier step). Nothing at all without held-out data."""
        if not static.test:
            return ()
        p, _, stats = carry
        out = static.model.apply(p, test[0])
        loss = loss_of(out, test[1]).astype(sdt)
        acc = (losses.accuracy(out, test[1], static.loss).astype(sdt) if static.accuracy
               else jnp.zeros((), sdt))
        return jnp.where(stats.alive, loss, jnp.nan), jnp.where(stats.alive, acc, jnp.nan)

    every = static.sharpness_every

    def sharpness_at(t0, p):
        """The sharpness at a recorded step t0: computed at the start, at the end and every
        `sharpness_every` steps (t0 is the same for every run of a vmapped batch, so this
        `cond` stays a real branch); NaN elsewhere."""
        if not static.sharpness:
            return jnp.zeros((), sdt)
        due = (t0 == 0) | (t0 == T)
        if every:
            due = due | (t0 % every == 0)
        return lax.cond(due, sharpness, lambda p: jnp.full((), jnp.nan, sdt), p)

    # One loop over the recorded steps 0, k, 2k, ... and T, each followed by the unrecorded
    # steps up to the next one, so the step's code appears once in the program, the end (T)
    # included: a separate final evaluation, a shorter last block or a second call site of
    # the sharpness each added a copy of their code to compile (README, version 0.10.0;
    # results/bench/README.md, "One copy of the step").
    starts = np.array(record_steps(T, k), np.int32)
    if k == 1:  # every step recorded: no inner loop (XLA would keep a while loop of one trip)
        def block(carry, t0):
            sharp = sharpness_at(t0, carry[0])
            held = held_out(carry)
            carry, (rec, acc) = step(carry, t0)
            return carry, (rec, acc, sharp, held)
        xs = starts
    else:
        def block(carry, xs):
            t0, length = xs
            sharp = sharpness_at(t0, carry[0])
            held = held_out(carry)

            def one(i, c):  # the block's steps; the first one's loss is the recorded one
                c, rec, acc = c
                c, (r, a) = step(c, t0 + i)
                return c, jnp.where(i == 0, r, rec), jnp.where(i == 0, a, acc)
            nan = jnp.full((), jnp.nan, sdt)
            carry, rec, acc = lax.fori_loop(0, length, one, (carry, nan, nan))
            return carry, (rec, acc, sharp, held)
        xs = (starts, np.diff(starts, append=T + 1).astype(np.int32))
    carry = (params, opt_state, _init_stats(sdt))
    if static.early_exit:
        (_, _, stats), (rec_R, acc_R, sh_R, held_R), stop = _until_frozen(
            block, carry, xs, group, max_blocks, static.unroll or 1)
        # steps 0 .. starts[stop] - 1, then the evaluation at T
        computed = jnp.asarray(np.append(starts, T))[stop] + 1
        if not static.sharpness:
            sh_R = jnp.zeros_like(sh_R)  # what the scan records (the loop's copy is dropped)
        elif every:
            # the skipped recorded steps where the sharpness was due: a frozen run's weights
            # no longer change, so it is the value measured at the end (as the full loop has)
            due_R = np.array([t0 == T or t0 % every == 0 for t0 in starts])
            r = np.arange(len(starts))
            skipped = (r >= stop) & (r < len(starts) - 1)
            sh_R = jnp.where(skipped & due_R, sh_R[-1], sh_R)
    else:
        (_, _, stats), (rec_R, acc_R, sh_R, held_R) = lax.scan(block, carry, xs)
        computed = T + 1
    sharp_init, sharp_final = sh_R[0], sh_R[-1]
    if static.sharpness and not every:
        sh_R = sh_R.at[0].set(jnp.nan)  # measured at the start, recorded only at the end
    # a run whose initial loss was already non-finite has no finite step: its min and max are
    # NaN (as `classify.summarize_curve` has them), not the +inf / -inf they started from
    none = stats.min > stats.max
    return Trajectory(
        loss_R=rec_R,
        acc_R=acc_R,
        sharpness_R=sh_R,
        initial_loss=stats.initial,
        final_loss=stats.final,
        min_loss=jnp.where(none, jnp.nan, stats.min),
        max_loss=jnp.where(none, jnp.nan, stats.max),
        peak_step=stats.peak_step,
        diverged_step=stats.diverged_step,
        recover_step=stats.recover_step,
        rebound=stats.rebound,
        spike_ratio=stats.spike,
        spike_step=stats.spike_step,
        spike_recover_step=stats.spike_recover,
        above_since=stats.above_since,
        final_accuracy=stats.final_acc,
        sharpness_init=sharp_init,
        sharpness_final=sharp_final,
        steps_computed=jnp.asarray(computed, jnp.int32),
        **(dict(zip(("test_loss_R", "test_acc_R"), held_R, strict=True)) if static.test else {}),
    )


def _until_frozen(block, carry, xs, group: str | None, max_blocks=None, unroll: int = 1):
    """`lax.scan(block, carry, xs)` over the recorded blocks, except that once every run of
    `group` is frozen the blocks left are skipped up to the last one (the end, `steps`), which
    still runs: it is where the full loop measures the final sharpness, and it keeps the step's
    code in one place. Returns (carry, outputs, stop): `stop` is the first skipped block (the
    number of blocks if none was; counted from the iterations the loop ran), and the skipped
    blocks' outputs are NaN, which is what a frozen run records.

    Exact: a frozen run's weights, optimizer state and summaries no longer change and its
    recorded values are NaN, so skipping its steps changes none of its results; a group with a
    live run computes every block for all its runs, as the scan does. `group` names the vmapped
    axis (a `psum` over it tells each run whether any of the group is alive, one value for the
    group, so the loop index and the sharpness's `cond` stay unbatched); None: the run alone.
    `max_blocks`: the loop ends before block `max_blocks` (None: no limit; see `train_one`).
    `unroll`: blocks per iteration of the loop, each one after the loop's end masked out (its
    carry and outputs dropped): one loop condition per `unroll` blocks, for accelerators where
    a loop condition costs a copy to the host (`plan.loop_unroll`)."""
    n = len(jax.tree.leaves(xs)[0])
    xs = jax.tree.map(jnp.asarray, xs)
    shapes = jax.eval_shape(block, carry, jax.tree.map(lambda a: a[0], xs))[1]
    ys = jax.tree.map(lambda s: jnp.full((n, *s.shape), jnp.nan, s.dtype), shapes)
    end = n if max_blocks is None else jnp.minimum(n, max_blocks)

    def one(i, carry, ys, ran, valid=None):
        """Block i; with `valid` (a traced bool) its effects only where it is true (then i
        may be past the last block: the block computed is the last one, and dropped)."""
        at = i if valid is None else jnp.minimum(i, n - 1)
        new, y = block(carry, jax.tree.map(lambda a: a[at], xs))
        if valid is not None:
            new = jax.tree.map(lambda a, b: jnp.where(valid, a, b), new, carry)
            y = jax.tree.map(lambda v, buf: jnp.where(valid, v, buf[at]), y, ys)
        ran = ran + (1 if valid is None else valid.astype(jnp.int32))
        ys = jax.tree.map(lambda buf, v: buf.at[at].set(v), ys, y)
        alive = new[2].alive
        anyone = alive if group is None else lax.psum(alive.astype(jnp.int32), group) > 0
        nxt = jnp.where(anyone, i + 1, jnp.maximum(i + 1, n - 1))
        return (nxt if valid is None else jnp.where(valid, nxt, i)), new, ys, ran

    def body(c):
        c = one(*c)
        for _ in range(unroll - 1):
            c = one(*c, valid=c[0] < end)
        return c

    zero = jnp.zeros((), jnp.int32)
    _, carry, ys, ran = lax.while_loop(lambda c: c[0] < end, body, (zero, carry, ys, zero))
    # the loop ran blocks 0 .. stop - 1 and then the last one
    return carry, ys, jnp.where(ran < n, ran - 1, n)
