"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from promptvec.evaluation.metrics import compute_metrics


def test_classification_metrics_by_hand():
    gold = [0, 1, 1, 0, 1]
    pred = [0, 1, 0, 0, -1]  # -1 = invalid generation: wrong
    m = compute_metrics(["acc", "f1", "macro_f1", "mcc"], gold, pred, 2)
    assert m["acc"] == pytest.approx(3 / 5)
    # positive class 1: tp=1, fp=0, fn=2 -> P=1, R=1/3, F1=0.5
    assert m["f1"] == pytest.approx(0.5)
    # class 0: tp=2, fp=1, fn=0 -> P=2/3, R=1, F1=0.8 ; macro = (0.8 + 0.5) / 2
    assert m["macro_f1"] == pytest.approx(0.65)
    assert -1.0 <= m["mcc"] <= 1.0


def test_mcc_by_hand_binary():
    gold, pred = [1, 1, 0, 0], [1, 0, 0, 0]
    # tp=1 tn=2 fp=0 fn=1: (1*2 - 0*1) / sqrt(1*2*3*2)
    assert compute_metrics(["mcc"], gold, pred, 2)["mcc"] == pytest.approx(2 / math.sqrt(12))


def test_correlations_by_hand():
    gold, pred = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.5]
    m = compute_metrics(["pearson", "spearman"], gold, pred, 6)
    assert m["spearman"] == pytest.approx(1.0)
    assert 0.99 < m["pearson"] < 1.0
    assert compute_metrics(["pearson"], gold, [1.0] * 4, 6)["pearson"] == 0.0  # undefined -> 0.0
