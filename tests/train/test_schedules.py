"""Learning-rate schedules: the rate each update used, read back from a quadratic's loss curve,
equals optax's own schedule functions at every step."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import trainscape as ts
from trainscape.nn.schedules import lr_at_step
from trainscape.spec import registry, schema

STEPS = 12
PEAK = 0.3
END = 0.25

# x picks one parameter per sample: the outputs are (a, b), the mse loss (a^2 + b^2) / 2, whose
# gradient in a is a, so an update with rate eta multiplies a by (1 - eta)
X = np.eye(2)
Y = np.zeros(2)
MODEL = ts.Model(init=lambda key: [jnp.ones(1), jnp.ones(1)],
                 apply=lambda p, x: x @ jnp.concatenate(p))
START = [np.ones(1), np.ones(1)]


def optax_rate(name, lr, w, steps=STEPS, e=END):
    """optax's schedule for `name` (the issue's definitions), at updates 0 .. steps - 1."""
    if name == "constant" or (name == "warmup_constant" and w == 0):
        # optax's warmup_constant_schedule(0, lr, 0) is 0 forever; no warmup means lr
        fn = optax.constant_schedule(lr)
    elif name == "warmup_constant":
        fn = optax.warmup_constant_schedule(0.0, lr, w)
    elif name == "warmup_cosine":
        fn = optax.warmup_cosine_decay_schedule(0.0, lr, w, steps, e * lr)
    elif name == "cosine":
        fn = optax.cosine_decay_schedule(lr, steps, alpha=e)
    else:
        fn = optax.join_schedules([optax.linear_schedule(0.0, lr, w),
                                   optax.linear_schedule(lr, e * lr, steps - w)], [w])
    return np.array([float(fn(t)) for t in range(steps)])


def rates_from_curve(curves, run_id, moving):
    """The rate of every update of a run from its loss curve: 2 L_t = a_t^2 + (1 if the other
    parameter is frozen); a_{t+1} = (1 - eta_t) a_t."""
    c = curves[curves.run_id == run_id].sort_values("step")
    sq = 2 * c["loss"].to_numpy() - (2 - moving)
    return 1 - np.sqrt(sq[1:] / sq[:-1])


def sweep(schedule, sweep_axes):
    opt = {"name": "sgd", "schedule": schedule}
    if "end_factor" in registry.SCHEDULES[schedule]:
        opt["end_factor"] = END
    cfg = {"data": {"standardize": False}, "loss": {"name": "mse"}, "optimizer": opt,
           "train": {"steps": STEPS, "dtype": "float64"}, "sweep": sweep_axes}
    return ts.run(cfg, data=(X, Y), model=MODEL, init_params=START, out=None, progress=False)


@pytest.mark.parametrize("schedule", list(registry.SCHEDULES))
def test_each_update_uses_optax_schedule(schedule, x64, traces):
    warm = "warmup_steps" in registry.SCHEDULES[schedule]
    axes = {"learning_rate": [PEAK, PEAK / 2]}
    if warm:
        axes["warmup_steps"] = [0, 1, 5, STEPS - 1]
    before = traces()
    res = sweep(schedule, axes)
    traced = traces() - before
    for row in res.runs.itertuples():
        w = int(row.warmup_steps) if warm else 0
        np.testing.assert_allclose(rates_from_curve(res.curves, row.run_id, 2),
                                   optax_rate(schedule, row.learning_rate, w),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(lr_at_step(schedule, row.learning_rate, STEPS, w, END),
                                   optax_rate(schedule, row.learning_rate, w),
                                   rtol=1e-12, atol=1e-15)
    if warm:  # other warmup lengths and peaks: the same compiled program
        before = traces()
        sweep(schedule, {"learning_rate": [0.2], "warmup_steps": [2, 3, 7]})
        assert traces() == before
        assert traced > 0


@pytest.mark.parametrize("schedule", ["warmup_cosine", "warmup_linear"])
def test_per_entry_rates_follow_the_schedule(schedule, x64):
    """Each entry's rate is the schedule with that entry's own peak (the other entry at 0)."""
    res = sweep(schedule, {"learning_rate.0": [0.0, 0.25], "learning_rate.1": [0.0, 0.1],
                           "warmup_steps": [3]})
    for row in res.runs.itertuples():
        lrs = (row._2, row._3)  # learning_rate.0, learning_rate.1
        if (lrs[0] > 0) == (lrs[1] > 0):
            continue
        peak = max(lrs)
        np.testing.assert_allclose(rates_from_curve(res.curves, row.run_id, 1),
                                   optax_rate(schedule, peak, 3), rtol=1e-9, atol=1e-12)


def test_schedule_keys_are_checked():
    with pytest.raises(schema.ConfigError, match="schedule 'constant' has no warmup_steps"):
        schema.parse({"optimizer": {"warmup_steps": 5}})
    with pytest.raises(schema.ConfigError, match="schedule 'warmup_constant' has no end_factor"):
        schema.parse({"optimizer": {"schedule": "warmup_constant"},
                      "sweep": {"end_factor": [0.1]}})
    with pytest.raises(schema.ConfigError, match="needs warmup_steps < .train. steps = 10"):
        schema.parse({"optimizer": {"schedule": "warmup_cosine"}, "train": {"steps": 10},
                      "sweep": {"warmup_steps": [0, 10]}})
    with pytest.raises(schema.ConfigError, match="whole number"):
        schema.parse({"optimizer": {"schedule": "warmup_linear"}, "sweep": {"warmup_steps": [1.5]}})
    with pytest.raises(schema.ConfigError, match=r"in \[0, 1\]"):
        schema.parse({"optimizer": {"schedule": "cosine", "end_factor": 1.5}})
    with pytest.raises(schema.ConfigError, match="did you mean 'cosine'"):
        schema.parse({"optimizer": {"schedule": "cosin"}})


def test_a_config_saved_before_schedules_still_reads():
    """meta.json of older results holds every [optimizer] key of its time (momentum with sgd
    included) and no schedule keys."""
    saved = schema.OptimizerConfig().model_dump()
    for k in ("schedule", *registry.SCHEDULE_KEYS):
        del saved[k]
    exp = schema.parse({"optimizer": saved})
    assert exp.optimizer.schedule == "constant" and exp.optimizer.momentum == 0.9


@pytest.mark.parametrize("schedule", list(registry.SCHEDULES))
def test_lr_at_step_gives_one_rate_per_update(schedule, x64):
    """Every schedule, `constant` too, gives `steps` rates (optax's own values), and an array of
    the shape of `step` when one is given."""
    rates = lr_at_step(schedule, PEAK, STEPS, 3, END)
    assert rates.shape == (STEPS,) and rates.dtype == np.float64
    np.testing.assert_allclose(rates, optax_rate(schedule, PEAK, 3), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lr_at_step(schedule, PEAK, STEPS, 3, END, step=[[0, 5]]),
                               optax_rate(schedule, PEAK, 3)[[[0, 5]]], rtol=1e-12)
    assert lr_at_step(schedule, PEAK, STEPS, 3, END, step=[[0, 5]]).shape == (1, 2)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "cosin"}, r"lr_at_step name: got 'cosin'; allowed: .*\(did you mean 'cosine'\?\)"),
    ({"steps": 0}, "lr_at_step steps: got 0; must be a positive integer"),
    ({"steps": 2.5}, "lr_at_step steps: got 2.5"),
    ({"learning_rate": -0.1}, "lr_at_step learning_rate: got -0.1; learning rates must be pos"),
    ({"learning_rate": "a"}, "lr_at_step learning_rate: expected a number, got 'a'"),
    ({"end_factor": 1.5}, r"lr_at_step end_factor: got 1.5; must be in \[0, 1\]"),
    ({"warmup_steps": -1}, "lr_at_step warmup_steps: got -1; must be >= 0"),
    ({"warmup_steps": 1.5}, "lr_at_step warmup_steps: got 1.5; must be a whole number"),
    ({"warmup_steps": STEPS}, f"needs warmup_steps < steps = {STEPS}"),
    ({"name": "warmup_constant", "warmup_steps": STEPS + 1},
     f"needs warmup_steps <= steps = {STEPS}"),
    ({"step": -1}, "lr_at_step step: got -1; must be update counts"),
    ({"step": [0, 1.5]}, r"lr_at_step step: got \[0, 1.5\]"),
    ({"learning_rate": [0.1]}, r"lr_at_step learning_rate: got \[0.1\]; give one number"),
    ({"learning_rate": np.array([0.1, 0.2])}, r"got an array of shape \(2,\); give one number"),
])
def test_lr_at_step_refuses_what_the_config_refuses(kwargs, match):
    """(and takes a 0-d array, NumPy or JAX, as the number it holds: those were a TypeError
    from the config's duplicate check)"""
    np.testing.assert_allclose(lr_at_step("constant", np.array(0.1), 3, warmup_steps=np.array(0)),
                               [0.1, 0.1, 0.1])
    args = {"name": "warmup_cosine", "learning_rate": PEAK, "steps": STEPS, "warmup_steps": 2,
            "end_factor": END, **kwargs}
    with pytest.raises(ts.ConfigError, match=match) as err:
        lr_at_step(**args)
    assert "\n" not in str(err.value)
