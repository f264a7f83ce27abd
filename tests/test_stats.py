"""Statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from promptvec.evaluation.stats import adjust, compare, summarize


def test_summary_by_hand():
    s = summarize([0.80, 0.84, 0.86])
    assert s.mean == pytest.approx(0.8333333, abs=1e-6)
    # deviations -0.0333, 0.00667, 0.02667 -> sum sq = 0.0018667 -> /2 -> sqrt = 0.030551
    assert s.std == pytest.approx(0.0305505, abs=1e-6)
    assert s.format() == "83.3 ± 3.1"
    assert summarize([0.5]).format() == "50.0"


def test_paired_t_by_hand():
    a = {0: 0.80, 1: 0.84, 2: 0.86}
    b = {0: 0.70, 1: 0.76, 2: 0.74}
    c = compare(a, b)
    # differences 0.10, 0.08, 0.12: mean 0.10, sd 0.02, t = 0.10 / (0.02 / sqrt 3) = 8.660
    assert c.test == "paired" and c.statistic == pytest.approx(8.660254, rel=1e-5)
    assert c.difference == pytest.approx(0.10)
    assert 0.01 < c.p_value < 0.02  # two-sided t(2) at 8.66


def test_welch_when_runs_do_not_pair():
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {5: 2.0, 6: 4.0, 7: 6.0, 8: 8.0}
    c = compare(a, b)
    # means 2 and 5; variances 1 and 6.6667: se = sqrt(1/3 + 6.6667/4) = 1.41421 -> t = -2.12132
    assert c.test == "welch" and c.statistic == pytest.approx(-2.12132, rel=1e-5)


def test_one_sample_against_a_deterministic_baseline():
    c = compare({0: 0.82, 1: 0.84, 2: 0.86}, {None: 0.80})
    # mean 0.84, sd 0.02: t = 0.04 / (0.02 / sqrt 3) = 3.4641
    assert c.test == "one-sample" and c.statistic == pytest.approx(3.464102, rel=1e-5)


def test_zero_variance_and_single_values():
    assert compare({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}).p_value == 1.0
    # seeds that all gave the same score (up to rounding) are not evidence of anything: no test
    same = 0.1 + 0.2
    assert compare({0: same, 1: 0.3, 2: same}, {None: 0.5}).test == "none"
    assert compare({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6}).test == "none"  # a constant paired shift
    assert compare({0: 0.6, 1: 0.8}, {0: 0.5, 1: 0.6}).test == "paired"
    assert compare({None: 0.5}, {None: 0.6}).test == "none"


def test_holm_and_bonferroni_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "none") == p
    assert math.isclose(adjust([0.9, 0.8], "holm")[0], 1.0)


def test_minimal_detectable_difference_has_the_power_it_claims():
    """Checked against simulation: paired differences N(δ, sd²) over n seeds, a two-sided t-test at α."""
    import numpy as np
    from scipy import stats as sps

    from promptvec.evaluation.stats import minimal_detectable_difference

    rng = np.random.default_rng(0)
    for n, alpha in ((5, 0.05), (10, 0.01)):
        delta = minimal_detectable_difference(0.04, n, alpha, power=0.8)
        samples = rng.normal(delta, 0.04, size=(20_000, n))
        detected = sps.ttest_1samp(samples, 0.0, axis=1).pvalue < alpha
        assert detected.mean() == pytest.approx(0.8, abs=0.015), (n, alpha)
    # textbook anchor: n = 5, α = 0.05, power 0.8 needs an effect of about 1.7 standard deviations
    assert minimal_detectable_difference(1.0, 5) == pytest.approx(1.71, abs=0.03)
    assert minimal_detectable_difference(1.0, 1) == math.inf and minimal_detectable_difference(0.0, 5) == 0.0


def test_seeds_needed_is_the_first_n_that_detects_the_difference():
    from promptvec.evaluation.stats import minimal_detectable_difference, seeds_needed

    n = seeds_needed(0.04, 0.03)
    assert minimal_detectable_difference(0.04, n) <= 0.03 < minimal_detectable_difference(0.04, n - 1)
    assert seeds_needed(0.04, 0.03, alpha=0.05 / 60) > n  # a corrected family needs more seeds
    assert seeds_needed(1.0, 1e-4, limit=50) is None


def test_power_statement_reports_the_median_spread_and_what_it_can_detect():
    from promptvec.evaluation.stats import minimal_detectable_difference, seeds_needed, spread_of_differences
    from promptvec.experiments.report import power_statement

    paired = spread_of_differences({0: 0.80, 1: 0.84, 2: 0.86}, {0: 0.78, 1: 0.80, 2: 0.86})
    assert paired == pytest.approx((0.02, 3))  # differences .02 .04 .00 → sd .02
    assert spread_of_differences({0: 0.8, 1: 0.9}, {None: 0.5}) == pytest.approx((0.0707107, 2))
    assert spread_of_differences({0: 0.8, 1: 0.9}, {2: 0.5, 3: 0.6}) is None  # Welch: no paired spread
    text = power_statement([(0.04, 5), (0.02, 5), (0.06, 5)], family=10, alpha=0.05)
    assert "n = 5 seeds" in text and "by 4.0 points" in text and "range 2.0–6.0" in text
    assert f"{100 * minimal_detectable_difference(0.04, 5, 0.05):.1f} points at α = 0.05" in text
    assert f"{100 * minimal_detectable_difference(0.04, 5, 0.005):.1f} points at Holm's strictest level α/10" in text
    assert f"would take {seeds_needed(0.04, 0.03, 0.005)} seeds" in text
    assert power_statement([], 0, 0.05) == ""


def _effect(task, difference, variance, n=5):
    from promptvec.evaluation.stats import TaskEffect

    return TaskEffect(task, difference, variance, n, difference - 0.1, difference + 0.1)


def test_random_effects_pooling_matches_dersimonian_laird_worked_by_hand():
    from promptvec.evaluation.stats import pool_effects

    homogeneous = pool_effects([_effect("a", 0.1, 0.01), _effect("b", 0.0, 0.02), _effect("c", 0.2, 0.01)])
    assert homogeneous.tau2 == 0.0  # Q = 1.4 < k - 1: no between-task variance
    assert homogeneous.re_estimate == pytest.approx(0.12) and homogeneous.re_se == pytest.approx((1 / 250) ** 0.5)
    spread = pool_effects([_effect("a", 0.3, 0.01), _effect("b", 0.0, 0.02), _effect("c", 0.2, 0.01)])
    assert spread.tau2 == pytest.approx(0.00625)  # Q = 3, C = 160
    assert spread.re_estimate == pytest.approx(30.769 / 161.17, rel=1e-3)
    assert spread.re_se == pytest.approx((1 / 161.17) ** 0.5, rel=1e-3) and spread.i2 == pytest.approx(1 / 3)
    assert spread.re_low == pytest.approx(spread.re_estimate - 1.96 * spread.re_se)
    # the t-test over tasks treats each task as one value
    assert spread.mean == pytest.approx(0.5 / 3)
    assert spread.t_p_value == pytest.approx(stats.ttest_1samp([0.3, 0.0, 0.2], 0).pvalue)


def test_task_effects_read_paired_and_one_sample_differences_and_pooling_survives_zero_variance():
    from promptvec.evaluation.stats import pool_effects, task_effect

    paired = task_effect("t", {0: 0.8, 1: 0.9, 2: 0.7}, {0: 0.7, 1: 0.7, 2: 0.7})
    assert paired.difference == pytest.approx(0.1) and paired.variance == pytest.approx(0.01 / 3)
    assert paired.low == pytest.approx(0.1 - stats.t.ppf(0.975, 2) * (0.01 / 3) ** 0.5)
    against_one = task_effect("t", {0: 0.8, 1: 0.9}, {None: 0.5})
    assert against_one.difference == pytest.approx(0.35) and against_one.n == 2
    assert task_effect("t", {0: 0.8}, {1: 0.7}) is None
    copies = task_effect("u", {0: 0.8, 1: 0.9}, {0: 0.8, 1: 0.9})  # a fall-back: the same runs
    assert copies.difference == 0 and copies.variance == 0
    pooled = pool_effects([paired, copies, _effect("v", 0.05, 0.004)])
    assert pooled.k == 3 and pooled.re_se > 0 and abs(pooled.re_estimate) < 0.2
    assert pool_effects([paired]) is None
