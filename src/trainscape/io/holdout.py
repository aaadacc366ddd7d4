"""Held-out rows: a stratified, reproducible split of a dataset, and checks of a caller's split.

The held-out rows are never trained on; `train.loop.train_one` evaluates them at the recorded
steps. The split is scikit-learn's `train_test_split`, stratified by class for classification,
with `random_state = data_seed`, so the same config always holds out the same rows; the rows
are recorded in the results folder's meta.json (`data.holdout.test_rows`).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from . import data as data_mod


def split_rows(y: np.ndarray, fraction: float, seed: int, task: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), each sorted: `fraction` of the rows held out, in the
    same proportion from every class when `task` is classification. Refused (one line) when a
    class would be missing from either side."""
    n = len(y)
    rows = np.arange(n)
    classify = task != "regression"
    n_test = int(np.ceil(fraction * n))  # as train_test_split rounds a fraction
    if not 1 <= n_test <= n - 1:
        raise ConfigError(f"[data] holdout: got {fraction!r}; holds out {n_test} of {n} rows, "
                          "leaving no rows on one side")
    if classify:
        classes, counts = np.unique(y, return_counts=True)
        if n_test < len(classes) or n - n_test < len(classes):
            raise ConfigError(f"[data] holdout: got {fraction!r}; {n_test} held-out and "
                              f"{n - n_test} training rows cannot hold all {len(classes)} "
                              "classes")
        rare = classes[counts < 2]
        if len(rare):
            raise ConfigError(f"[data] holdout: got {fraction!r}; class {rare[0]!r} has only "
                              "1 row, so one side would have none of it")
    from sklearn.model_selection import train_test_split  # here: it imports scipy

    train, test = train_test_split(rows, test_size=n_test, random_state=seed, shuffle=True,
                                   stratify=y if classify else None)
    train, test = np.sort(train), np.sort(test)
    if classify:
        for side, idx in (("held-out", test), ("training", train)):
            missing = np.setdiff1d(np.unique(y), np.unique(y[idx]))
            if len(missing):
                raise ConfigError(f"[data] holdout: got {fraction!r}; the {side} rows would "
                                  f"have no row of class {missing[0]!r}")
    return train, test


def standardize_split(x_train: np.ndarray, x_test: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Both sides standardized with the training rows' mean and scale (the held-out rows
    must not shape the inputs the network is trained on)."""
    mean, scale = data_mod.standardizer(x_train)
    return (x_train - mean) / scale, (np.asarray(x_test, np.float64) - mean) / scale


def check_test_data(test_data, x: np.ndarray, y: np.ndarray, task: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A caller's held-out `(x, y)`: arrays as `data=` takes them, with the training data's
    feature count, label shape and kind of labels."""
    if not isinstance(test_data, tuple | list) or len(test_data) != 2:
        raise DataError("test_data=: expected a tuple (x_test, y_test) of arrays")
    xt, yt = data_mod.validate_arrays(test_data[0], test_data[1], "test_data=(x, y)")
    if xt.shape[1] != x.shape[1]:
        raise DataError(f"test_data=: x has {xt.shape[1]} features, the training data "
                        f"{x.shape[1]}; they must be the same")
    if yt.shape[1:] != y.shape[1:]:
        raise DataError(f"test_data=: y has shape {yt.shape}, the training labels "
                        f"{y.shape}; give one label (row) per sample, as for data=")
    if task == "binary" and not np.isin(yt, (0, 1)).all():
        raise DataError("test_data=: the training labels are binary {0, 1}, y_test is not")
    if task == "multiclass" and not (np.issubdtype(yt.dtype, np.integer)
                                     and np.isin(yt, np.unique(y)).all()):
        raise DataError("test_data=: y_test holds labels that are not classes of the "
                        "training labels")
    return xt, yt
