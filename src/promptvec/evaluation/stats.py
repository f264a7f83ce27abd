"""Statistics for comparing methods over seeds.

* summaries: mean ± sample standard deviation (ddof = 1) over seeds;
* a method against a baseline: a **paired** t-test when both have the same seeds (runs pair up by
  seed: same few-shot sample and data order), **Welch's** t-test for independent runs, and a
  **one-sample** t-test when the baseline is deterministic (a single value, e.g. no prompt);
* Bonferroni or Holm correction over all comparisons of a table;
* power: the smallest true difference a paired/one-sample t-test over n seeds detects with a given
  power (:func:`minimal_detectable_difference`, from the noncentral t distribution), and the seeds
  needed for a difference (:func:`seeds_needed`) — what a study can claim before it is run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

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


def _design(method: Mapping[object, float], baseline: Mapping[object, float]) -> tuple[str, np.ndarray, float]:
    """Which test the scores allow, the values it reads and the mean they are tested against: the varying
    side against a single value (one-sample), the per-seed differences against 0 (paired), or neither
    (welch: two independent samples; none: too few values)."""
    shared = sorted(set(method) & set(baseline), key=str)
    if len(baseline) == 1 and len(method) >= 2:
        return "one-sample", np.asarray(list(method.values()), dtype=float), float(next(iter(baseline.values())))
    if len(method) == 1 and len(baseline) >= 2:
        return "one-sample", np.asarray(list(baseline.values()), dtype=float), float(next(iter(method.values())))
    if len(shared) == len(method) == len(baseline) and len(shared) >= 2:
        return "paired", np.asarray([method[k] - baseline[k] for k in shared], dtype=float), 0.0
    if len(method) >= 2 and len(baseline) >= 2:
        return "welch", np.empty(0), 0.0
    return "none", np.empty(0), 0.0


def compare(method: Mapping[object, float], baseline: Mapping[object, float]) -> Comparison:
    """Compare scores keyed by seed (or any pairing key)."""
    a = np.asarray(list(method.values()), dtype=float)
    b = np.asarray(list(baseline.values()), dtype=float)
    diff = float(a.mean() - b.mean())
    test, values, against = _design(method, baseline)
    tolerance = 1e-12
    # every seed gave the same score (e.g. all kept the initial prompt): a t statistic would be 0/0 or ±inf
    # from rounding, which says nothing about sampling variability — no test
    if test == "none" or (test == "welch" and np.ptp(a) < tolerance and np.ptp(b) < tolerance) or (
            test != "welch" and np.ptp(values) < tolerance):
        return Comparison("none", math.nan, 1.0, diff)
    result = stats.ttest_ind(a, b, equal_var=False) if test == "welch" else stats.ttest_1samp(values, against)
    return Comparison(test, float(result.statistic), float(result.pvalue), diff)


def spread_of_differences(method: Mapping[object, float], baseline: Mapping[object, float]) -> tuple[float, int] | None:
    """(standard deviation, number) of the values a paired or one-sample test of these scores looks at —
    the per-seed differences, or the varying side against a single value; None where neither applies."""
    test, values, _ = _design(method, baseline)
    if test not in ("paired", "one-sample"):
        return None
    return float(np.std(values, ddof=1)), len(values)


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


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)
_QUANTILES, _QUANTILE_WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2  # Gauss–Legendre on (0, 1)


def _power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided one-sample (or paired) t-test over n values with standard deviation sd,
    at level alpha, when the true mean difference is delta.

    T = (Z + shift) / sqrt(V / df) with V ~ χ²_df, so power = E_V[P(|Z + shift| > c·sqrt(V/df))]; the
    expectation is taken over V's quantiles by Gauss–Legendre quadrature (vectorised, and finite where
    the noncentral t's own tail functions return NaN: small df, large shift)."""
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = delta / (sd / math.sqrt(n))
    bound = critical * _chi_scale(df)
    rejected = stats.norm.sf(bound - shift) + stats.norm.cdf(-bound - shift)
    return float(rejected @ _QUANTILE_WEIGHTS)


@lru_cache(maxsize=256)
def _chi_scale(df: int) -> np.ndarray:
    """sqrt(V / df) at the quadrature's quantiles of V ~ χ²_df."""
    return np.sqrt(stats.chi2.ppf(_QUANTILES, df) / df)


def minimal_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference that a two-sided paired (or one-sample) t-test over ``n``
    values whose differences have standard deviation ``sd`` detects with probability ``power`` at
    level ``alpha`` (for a corrected family, pass the corrected level, e.g. alpha / m for Holm's
    first step). ``inf`` with fewer than two values; 0 when there is no spread."""
    if n < 2:
        return math.inf
    if sd <= 0:
        return 0.0
    high = sd
    while _power(high, sd, n, alpha) < power:
        high *= 2
    from scipy.optimize import brentq

    return float(brentq(lambda delta: _power(delta, sd, n, alpha) - power, 0.0, high, xtol=sd * 1e-6))


def seeds_needed(sd: float, difference: float, alpha: float = 0.05, power: float = 0.8,
                 limit: int = 10_000) -> int | None:
    """The fewest seeds whose paired t-test detects ``difference`` with ``power`` at ``alpha`` (None
    above ``limit``)."""
    def enough(n: int) -> bool:
        return minimal_detectable_difference(sd, n, alpha, power) <= difference

    if not enough(limit):
        return None
    low, high = 1, 2  # enough(high) once the doubling stops; never enough(1)
    while not enough(high):
        low, high = high, min(2 * high, limit)
    while high - low > 1:  # the detectable difference shrinks as n grows: bisect
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


# ---- across tasks: one method against a baseline over many targets ---------------------------------


@dataclass(frozen=True)
class TaskEffect:
    """A method's difference from a baseline on one task: the mean of the per-seed differences (or of
    the method's scores minus a deterministic baseline), its sampling variance, a 95 % t interval."""

    task: str
    difference: float
    variance: float  # of the mean difference (s² / n); 0 when every seed gave the same difference
    n: int
    low: float
    high: float


def task_effect(task: str, method: Mapping[object, float], baseline: Mapping[object, float]) -> TaskEffect | None:
    """The effect on one task, from the values a paired / one-sample test would read; None otherwise."""
    test, values, against = _design(method, baseline)
    if test not in ("paired", "one-sample"):
        return None
    diffs = values - against
    n = len(diffs)
    mean = float(diffs.mean())
    variance = float(diffs.var(ddof=1)) / n
    half = float(stats.t.ppf(0.975, n - 1)) * math.sqrt(variance)
    return TaskEffect(task, mean, variance, n, mean - half, mean + half)


@dataclass(frozen=True)
class Pooled:
    """The effects of many tasks pooled two ways:

    * ``t_*``: a one-sample t-test of the per-task mean differences against 0 (each task one value:
      tasks are the unit the claim is about), with its 95 % interval;
    * ``re_*``: DerSimonian–Laird's random-effects estimate, which weights tasks by their precision
      and widens the interval by the between-task variance ``tau2`` (I² = the share of the spread
      that is between tasks rather than seed noise)."""

    k: int
    mean: float
    t_statistic: float
    t_p_value: float
    t_low: float
    t_high: float
    re_estimate: float
    re_se: float
    re_low: float
    re_high: float
    re_p_value: float
    tau2: float
    i2: float


def pool_effects(effects: Sequence[TaskEffect]) -> Pooled | None:
    """Pool per-task effects (at least 2). A task whose seeds all gave the same difference (e.g. a
    method that fell back to the baseline's own runs: differences exactly 0) has no variance of its
    own; it gets the median variance of the others, so that it neither dominates nor vanishes."""
    k = len(effects)
    if k < 2:
        return None
    y = np.asarray([e.difference for e in effects], dtype=float)
    positive = [e.variance for e in effects if e.variance > 0]
    fill = float(np.median(positive)) if positive else 0.0
    v = np.asarray([e.variance if e.variance > 0 else fill for e in effects], dtype=float)
    mean = float(y.mean())
    sd = float(y.std(ddof=1))
    if sd > 0:
        t = stats.ttest_1samp(y, 0.0)
        t_stat, t_p = float(t.statistic), float(t.pvalue)
    else:
        t_stat, t_p = math.nan, 1.0
    half = float(stats.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)
    if not np.all(v > 0):  # no seed noise anywhere: the random-effects model is the plain mean
        tau2, weights = float(y.var(ddof=1)), np.ones(k)
        re_var = tau2 / k
        q = math.nan
    else:
        w = 1 / v
        fixed = float((w * y).sum() / w.sum())
        q = float((w * (y - fixed) ** 2).sum())
        c = float(w.sum() - (w ** 2).sum() / w.sum())
        tau2 = max(0.0, (q - (k - 1)) / c)
        weights = 1 / (v + tau2)
        re_var = float(1 / weights.sum())
    estimate = float((weights * y).sum() / weights.sum())
    se = math.sqrt(re_var)
    re_p = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else 1.0
    i2 = max(0.0, (q - (k - 1)) / q) if q and not math.isnan(q) and q > 0 else 0.0
    return Pooled(k, mean, t_stat, t_p, mean - half, mean + half, estimate, se, estimate - 1.96 * se,
                  estimate + 1.96 * se, re_p, tau2, i2)
