"""Every name in spec.registry has a builder, and no builder has a name the registry lacks."""

import jax
import pytest

from trainscape.io import data
from trainscape.nn import losses, models, optim, schedules
from trainscape.spec import registry, schema


def test_builders_know_exactly_the_registered_names():
    assert set(optim.DIRECTIONS) == set(registry.OPTIMIZERS)
    assert set(losses.LOSSES) == set(registry.LOSSES)
    assert set(models.ACTIVATIONS) == set(registry.ACTIVATIONS)
    assert set(data.BUILTINS) == set(registry.DATASETS)
    assert set(schedules.BUILDERS) == set(registry.SCHEDULES)
    assert set(schema.HPARAM_AXES) >= set(registry.SCHEDULE_KEYS)


@pytest.mark.parametrize("init", registry.INITS)
@pytest.mark.parametrize("parameterization", registry.PARAMETERIZATIONS)
def test_every_init_and_parameterization_builds(init, parameterization):
    sizes = (3, 4, 1)
    params = models.mlp_init(jax.random.PRNGKey(0), sizes, init=init,
                             parameterization=parameterization)
    assert [p["w"].shape for p in params] == [(3, 4), (4, 1)]
    assert len(models.multipliers(sizes, parameterization)) == 2


def test_unknown_names_are_refused_with_the_registered_ones():
    for section, key, bad in (("optimizer", "name", "adamm"), ("loss", "name", "bcee"),
                              ("model", "activation", "tahn"), ("model", "init", "lecunn")):
        with pytest.raises(schema.ConfigError, match="did you mean"):
            schema.parse({section: {key: bad}})


def test_one_wording_for_an_optimizer_key_it_does_not_read():
    why = registry.unused_optimizer_key("sgd", "momentum")
    assert why == "optimizer 'sgd' has no momentum; optimizers that use it: momentum, nesterov"
    with pytest.raises(schema.ConfigError, match="optimizer 'sgd' has no momentum"):
        schema.parse({"optimizer": {"name": "sgd"}, "sweep": {"momentum": [0.5, 0.9]}})
    assert registry.unused_optimizer_key("adam", "b1") is None
    assert registry.unused_optimizer_key("sgd", "learning_rate") is None
