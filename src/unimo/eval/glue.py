"""GLUE metrics as the official UNIMO ``glue_eval.py`` reports them (fractions, not percentages).

* SST-2 / MNLI-m / MNLI-mm: accuracy (MNLI matched and mismatched are simply accuracy on each split);
* CoLA: Matthews correlation (scikit-learn's ``matthews_corrcoef``, 0.0 when a confusion-matrix margin is empty);
* STS-B: Pearson and Spearman (SciPy) and their mean ``corr``.
"""
from __future__ import annotations

import math
import warnings
from typing import Hashable, Sequence

import numpy as np

from .fileio import EvalInputError, check_same_length, finite_or_none

GLUE_METRICS = ("acc", "mcc", "pearson_spearman")


def _check(preds: Sequence, labels: Sequence) -> None:
    check_same_length("predictions", len(preds), "labels", len(labels))
    if len(preds) == 0:
        raise EvalInputError("no examples to evaluate")


def accuracy(preds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Fraction of positions where ``preds[i] == labels[i]``."""
    _check(preds, labels)
    return float(np.mean([p == y for p, y in zip(preds, labels)]))


def matthews_corr(preds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient (binary or multi-class), as scikit-learn defines it."""
    from sklearn.metrics import matthews_corrcoef

    _check(preds, labels)
    with warnings.catch_warnings():
        # a single class on both sides is a legitimate (degenerate) input; sklearn returns 0.0 for it
        warnings.simplefilter("ignore", UserWarning)
        try:
            return float(matthews_corrcoef(list(labels), list(preds)))
        except ValueError as e:  # e.g. continuous values instead of class labels
            raise EvalInputError(f"Matthews correlation needs class labels: {e}") from e


def pearson_spearman(preds: Sequence[float], labels: Sequence[float]) -> dict[str, float | None | str]:
    """Pearson r, Spearman rho and their mean ``corr``; null (with a reason) when an input is constant."""
    from scipy.stats import pearsonr, spearmanr

    _check(preds, labels)
    p = np.asarray(preds, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    for name, arr in (("predictions", p), ("labels", y)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise EvalInputError(f"{name}: non-finite value {arr[bad[0]]} at position {bad[0] + 1}")
    if len(p) < 2:
        raise EvalInputError("correlation needs at least 2 examples")
    out: dict[str, float | None | str] = {}
    if np.all(p == p[0]) or np.all(y == y[0]):
        out.update(pearson=None, spearman=None, corr=None,
                   correlation_undefined="an input is constant: the correlation coefficient is not defined")
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(pearsonr(p, y)[0])
        rho = float(spearmanr(p, y)[0])
    out.update(pearson=finite_or_none(r), spearman=finite_or_none(rho),
               corr=finite_or_none((r + rho) / 2) if math.isfinite(r + rho) else None)
    return out


def glue_metric(metric: str, preds: Sequence, labels: Sequence) -> dict:
    """Dispatch by metric name: ``acc`` -> {"acc"}, ``mcc`` -> {"mcc"}, ``pearson_spearman`` -> {pearson, ...}."""
    if metric == "acc":
        return {"acc": accuracy(preds, labels), "num_examples": len(preds)}
    if metric == "mcc":
        return {"mcc": matthews_corr(preds, labels), "num_examples": len(preds)}
    if metric == "pearson_spearman":
        return {**pearson_spearman(preds, labels), "num_examples": len(preds)}
    raise ValueError(f"unknown GLUE metric {metric!r}; choose one of {GLUE_METRICS}")


def parse_labels(values: Sequence[str], source: str, numeric: bool) -> list:
    """Turn the text fields of a prediction / label file into comparable values.

    ``numeric=True`` (correlations) requires every field to be a float. Otherwise labels stay strings, except
    that when every field is a number they are compared as numbers (so "1" and "1.0" agree).
    """
    out: list = []
    as_float: list[float] = []
    all_numeric = True
    for i, v in enumerate(values, 1):
        s = v.strip()
        if s == "":
            raise EvalInputError(f"{source}: line {i}: empty label")
        try:
            f = float(s)
        except ValueError:
            if numeric:
                raise EvalInputError(f"{source}: line {i}: {s!r} is not a number") from None
            all_numeric = False
            f = math.nan
        if numeric and not math.isfinite(f):
            raise EvalInputError(f"{source}: line {i}: non-finite value {s!r}")
        out.append(s)
        as_float.append(f)
    return as_float if (numeric or all_numeric) else out
