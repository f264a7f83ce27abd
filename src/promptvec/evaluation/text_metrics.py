"""Metrics of free-text answers (generation tasks), each ``(predictions, gold answer lists) -> score``
averaged over examples and, per example, the best over its acceptable answers:

* ``exact_match`` and ``squad_f1`` — SQuAD's official scoring (the v2.0 evaluation script's
  ``normalize_answer``, ``compute_exact`` and ``compute_f1``): lower case, punctuation and the
  articles a/an/the removed, whitespace collapsed; token F1 over the normalised words. An
  unanswerable question has no gold answer and is scored, as the official script does, against the
  empty answer: only an empty prediction is right. (A task trains such questions on a text, its
  ``no_answer_target``; the evaluator turns that text back into the empty answer before scoring.)
* ``rouge_l`` — ROUGE-L F-measure from Google's ``rouge-score`` package (the implementation the
  TPV paper's generation results use), with its stemmer.
* ``numeric_match`` — GSM8K's final answer: the number after ``####`` in the prediction (else its
  last number), commas removed, compared numerically with the gold's.

The SQuAD scoring is a port of the official script (no offline library ships it: ``evaluate``
fetches its script from the Hub), checked against the script's own behaviour in the tests.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence
from functools import cache

from promptvec.registry import Registry

TextMetric = Callable[[Sequence[str], Sequence[Sequence[str]]], float]
TEXT_METRICS: Registry[TextMetric] = Registry("text metric")

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(answers: Sequence[str]) -> list[str]:
    return list(answers) or [""]  # unanswerable: the empty answer, as the official script scores it


def _exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _mean_best(score: Callable[[str, str], float], predictions: Sequence[str], answers: Sequence[Sequence[str]],
               squad: bool = False) -> float:
    """Mean over examples of the best score over each example's answers (SQuAD: no answer = "")."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} examples")
    if not predictions:
        return 0.0
    total = 0.0
    for prediction, golds in zip(predictions, answers, strict=True):
        if squad:
            golds = _golds(golds)
        total += max((score(prediction, gold) for gold in golds), default=0.0)
    return total / len(predictions)


@TEXT_METRICS.register("exact_match")
def exact_match(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    return _mean_best(_exact, predictions, answers, squad=True)


@TEXT_METRICS.register("squad_f1")
def squad_f1(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    return _mean_best(_f1, predictions, answers, squad=True)


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@TEXT_METRICS.register("rouge_l")
def rouge_l(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    scorer = _rouge_scorer()
    return _mean_best(lambda p, g: scorer.score(g, p)["rougeL"].fmeasure, predictions, answers)


def final_number(text: str) -> float | None:
    """The answer of a GSM8K-style solution: the number after ``####``, else the last number."""
    tail = text.split("####", 1)[1] if "####" in text else text
    numbers = _NUMBER.findall(tail)
    if not numbers:
        return None
    try:
        return float((numbers[0] if "####" in text else numbers[-1]).replace(",", ""))
    except ValueError:
        return None


@TEXT_METRICS.register("numeric_match")
def numeric_match(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    def same(prediction: str, gold: str) -> float:
        p, g = final_number(prediction), final_number(gold)
        return float(p is not None and g is not None and abs(p - g) < 1e-6)

    return _mean_best(same, predictions, answers)
