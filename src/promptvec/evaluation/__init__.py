"""Evaluation: rank classification or generation, and metrics."""

from promptvec.evaluation.evaluator import EvalResult, evaluate, predict
from promptvec.evaluation.metrics import METRIC_FUNCTIONS, compute_metrics

__all__ = ["METRIC_FUNCTIONS", "EvalResult", "compute_metrics", "evaluate", "predict"]
