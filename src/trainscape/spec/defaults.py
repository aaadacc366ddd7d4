"""The built-in `seed-question` experiment: what `trainscape run` runs with no config.

It is also in `experiments/seed_question.toml` (a test keeps the two equal).
"""

SEED_QUESTION = {
    "name": "seed-question",
    "data": {"name": "breast_cancer", "standardize": True},
    "model": {"hidden": [128, 64], "activation": "tanh", "init": "seed"},
    "loss": {"name": "bce"},
    "optimizer": {"name": "sgd"},
    "train": {"steps": 200, "dtype": "float32", "record_every": 1},
    # 21 log-spaced rates, 5 per decade: 0.01 and 1.0 are grid points exactly
    "sweep": {"learning_rate": {"geomspace": [0.001, 10.0], "num": 21}, "seed": {"range": 16}},
}
