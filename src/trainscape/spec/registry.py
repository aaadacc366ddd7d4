"""The one table of names: every optimizer, learning-rate schedule, loss, activation, init,
parameterization, dataset and dtype trainscape knows, with the keys each one reads.

Validation (`spec.schema`) and the builders (`nn.optim`, `nn.losses`, `nn.models`, `io.data`)
read these tables; a builder keeps its implementations in a dict keyed by the same names, and
tests/spec/test_registry.py checks that every name here has one and nothing else does.
"""

from __future__ import annotations

import difflib

# optimizer -> the hyperparameters it reads besides OPTIMIZER_COMMON (every optimizer's)
OPTIMIZER_COMMON = ("learning_rate", "weight_decay", "l2", "grad_clip")
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("b1", "b2", "eps"),
    "adamw": ("b1", "b2", "eps"),
    "rmsprop": ("decay", "eps"),
}
# keys only some optimizers read
OPTIMIZER_SPECIFIC = tuple(dict.fromkeys(k for keys in OPTIMIZERS.values() for k in keys))

# learning-rate schedule -> the [optimizer] keys it reads (nn.schedules builds them)
SCHEDULE_KEYS = ("warmup_steps", "end_factor")
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": (),
    "warmup_constant": ("warmup_steps",),
    "warmup_cosine": ("warmup_steps", "end_factor"),
    "cosine": ("end_factor",),
    "warmup_linear": ("warmup_steps", "end_factor"),
}

LOSSES = ("bce", "cross_entropy", "mse")
ACTIVATIONS = ("tanh", "relu", "gelu", "sigmoid", "identity")
INITS = ("seed", "normal", "lecun", "he", "glorot")
PARAMETERIZATIONS = ("standard", "ntk", "mean_field", "mup")
DTYPES = ("float32", "float64", "bfloat16")

# built-in dataset -> the [data] keys it reads besides DATA_COMMON; "file" is a data file
DATA_COMMON = ("name", "path", "data_seed", "standardize")
DATASETS: dict[str, tuple[str, ...]] = {
    "breast_cancer": (),
    "moons": ("n_samples", "noise"),
    "circles": ("n_samples", "noise"),
    "xor": ("n_samples", "noise", "n_features"),
    "blobs": ("n_samples", "noise", "n_features", "n_classes"),
    "teacher": ("n_samples", "noise", "n_features", "teacher_hidden", "n_outputs"),
}
DATA_FILE_KEYS = ("target",)
# what an unset [data] key means (per dataset where it differs)
DATA_DEFAULTS = {
    "n_samples": 256,
    "noise": {"moons": 0.1, "circles": 0.1, "xor": 0.1, "blobs": 1.0, "teacher": 0.0},
    "data_seed": 0,
    "standardize": True,
    "n_features": {"xor": 2, "blobs": 2, "teacher": 8},
    "n_classes": 2,
    "teacher_hidden": 32,
    "n_outputs": 1,
    "target": "y",
}


def optimizer_uses(name: str) -> tuple[str, ...]:
    """Every hyperparameter optimizer `name` reads."""
    return (*OPTIMIZER_COMMON, *OPTIMIZERS[name])


def unused_optimizer_key(optimizer, key: str) -> str | None:
    """Why `optimizer` does not read `key` (one wording for config keys, overrides and sweep
    axes), or None if it does or the question does not apply."""
    if key not in OPTIMIZER_SPECIFIC or optimizer not in OPTIMIZERS or key in OPTIMIZERS[optimizer]:
        return None
    users = ", ".join(k for k, v in OPTIMIZERS.items() if key in v)
    return f"optimizer {optimizer!r} has no {key}; optimizers that use it: {users}"


def unused_schedule_key(schedule, key: str) -> str | None:
    """Why `schedule` does not read `key` (config keys and sweep axes), or None if it does or
    the question does not apply."""
    if key not in SCHEDULE_KEYS or schedule not in SCHEDULES or key in SCHEDULES[schedule]:
        return None
    users = ", ".join(k for k, v in SCHEDULES.items() if key in v)
    return f"schedule {schedule!r} has no {key}; schedules that use it: {users}"


def did_you_mean(given, allowed) -> str:
    """' (did you mean 'x'?)' for the allowed name closest to `given`, or ''."""
    # compared case-folded, so 'X' is suggested for 'x' (difflib alone rates them unrelated)
    by_folded = {str(a).casefold(): str(a) for a in allowed}
    near = difflib.get_close_matches(str(given).casefold(), list(by_folded), n=1)
    return f" (did you mean {by_folded[near[0]]!r}?)" if near else ""


def allowed(given, names) -> str:
    """'got X; allowed: a, b, c (did you mean ...)', the tail of a one-line error."""
    return f"got {given!r}; allowed: {', '.join(map(str, names))}{did_you_mean(given, names)}"
