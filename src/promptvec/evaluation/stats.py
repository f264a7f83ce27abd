"""Statistics for comparing methods over seeds.

* summaries: mean ± sample standard deviation (ddof = 1) over seeds;
* a method against a baseline: a **paired** t-test when both have the same seeds (runs pair up by
  seed: same few-shot sample and data order), **Welch's** t-test for independent runs, and a
  **one-sample** t-test when the baseline is deterministic (a single value, e.g. no prompt);
* Bonferroni or Holm correction over all comparisons of a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int

    def format(self, digits: int = 1, scale: float = 100.0) -> str:
        if self.n > 1:
            return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return Summary(float(arr.mean()), std, len(arr))


@dataclass(frozen=True)
class Comparison:
    test: str  # paired / welch / one-sample / none
    statistic: float
    p_value: float
    difference: float  # mean(method) - mean(baseline)


def compare(method: Mapping[object, float], baseline: Mapping[object, float]) -> Comparison:
    """Compare scores keyed by seed (or any pairing key)."""
    a = np.asarray(list(method.values()), dtype=float)
    b = np.asarray(list(baseline.values()), dtype=float)
    diff = float(a.mean() - b.mean())
    shared = sorted(set(method) & set(baseline), key=str)
    if len(b) == 1 and len(a) >= 2:
        test, run = "one-sample", lambda: stats.ttest_1samp(a, float(b[0]))
    elif len(a) == 1 and len(b) >= 2:
        test, run = "one-sample", lambda: stats.ttest_1samp(b, float(a[0]))
    elif len(shared) == len(a) == len(b) and len(a) >= 2:
        test, run = "paired", lambda: stats.ttest_rel([method[k] for k in shared], [baseline[k] for k in shared])
    elif len(a) >= 2 and len(b) >= 2:
        test, run = "welch", lambda: stats.ttest_ind(a, b, equal_var=False)
    else:
        return Comparison("none", math.nan, 1.0, diff)
    if _no_variance(a, b, test, method, baseline, shared):
        # every seed gave the same score (e.g. all kept the initial prompt): a t statistic would be
        # 0/0 or ±inf from rounding, which says nothing about sampling variability — no test
        return Comparison("none", math.nan, 1.0, diff)
    result = run()
    return Comparison(test, float(result.statistic), float(result.pvalue), diff)


def _no_variance(a, b, test, method, baseline, shared) -> bool:
    tolerance = 1e-12
    if test == "paired":
        return np.ptp([method[k] - baseline[k] for k in shared]) < tolerance
    if test == "one-sample":
        return np.ptp(a if len(a) > 1 else b) < tolerance
    return np.ptp(a) < tolerance and np.ptp(b) < tolerance


def adjust(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise error correction: 'holm' (step-down), 'bonferroni' or 'none'."""
    m = len(p_values)
    if method == "none" or m == 0:
        return list(p_values)
    if method == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    if method != "holm":
        raise ValueError(f"unknown correction '{method}'")
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
