"""Metrics by name (scikit-learn / scipy, not hand-written).

Classification metrics take gold and predicted label indices; an invalid generation is index -1
and counts as wrong. Regression metrics take gold and predicted values. A correlation that is
undefined (constant predictions) is reported as 0.0. scikit-learn and scipy are imported by the
metric that uses them: together they take seconds to import, which listing commands should not pay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from promptvec.registry import Registry

MetricFn = Callable[[Sequence[float], Sequence[float], int], float]
METRIC_FUNCTIONS: Registry[MetricFn] = Registry("metric")
register_metric = METRIC_FUNCTIONS.register


@register_metric("acc")
def accuracy(gold, pred, n_labels: int) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, pred))


@register_metric("f1")
def binary_f1(gold, pred, n_labels: int) -> float:
    """Binary F1 with the second label as the positive class."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=[1], average="macro", zero_division=0.0))


@register_metric("macro_f1")
def macro_f1(gold, pred, n_labels: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(range(n_labels)), average="macro", zero_division=0.0))


@register_metric("mcc")
def matthews(gold, pred, n_labels: int) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(gold, pred))


def _correlation(fn, gold, pred) -> float:
    gold, pred = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    if len(gold) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0
    value = float(fn(gold, pred).statistic)
    return 0.0 if math.isnan(value) else value


@register_metric("pearson")
def pearson(gold, pred, n_labels: int) -> float:
    from scipy import stats

    return _correlation(stats.pearsonr, gold, pred)


@register_metric("spearman")
def spearman(gold, pred, n_labels: int) -> float:
    from scipy import stats

    return _correlation(stats.spearmanr, gold, pred)


def compute_metrics(names: Sequence[str], gold, pred, n_labels: int) -> dict[str, float]:
    return {name: METRIC_FUNCTIONS[name](gold, pred, n_labels) for name in names}
