"""Scores of free-text answers: SQuAD's official exact match and F1 (hand-worked cases of the v2.0
evaluation script, unanswerable questions and several gold answers included), ROUGE-L from
rouge-score, and GSM8K's final-number match."""

from __future__ import annotations

import pytest

from promptvec.evaluation.text_metrics import (
    TEXT_METRICS,
    exact_match,
    final_number,
    normalize_answer,
    numeric_match,
    rouge_l,
    squad_f1,
)


def test_squad_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_and_f1_take_the_best_gold_answer():
    # "the big cat" → [big, cat]; "a cat" → [cat]: 1 common token, P = 1/2, R = 1, F1 = 2/3
    assert squad_f1(["the big cat"], [["a cat"]]) == pytest.approx(2 / 3)
    assert exact_match(["the big cat"], [["a cat"]]) == 0.0
    assert exact_match(["The Big Cat."], [["dog", "big cat"]]) == 1.0  # max over golds
    assert squad_f1(["big cat"], [["dog", "big cat"]]) == 1.0
    assert squad_f1(["cat cat"], [["cat"]]) == pytest.approx(2 / 3)  # token counts, not sets: P 1/2, R 1


def test_unanswerable_questions_are_scored_as_the_official_script_does():
    # no gold answer = the empty answer: right only for an empty prediction (the evaluator turns a
    # task's no_answer_target into the empty answer first: tests/test_generation.py)
    assert exact_match([""], [[]]) == 1.0 and squad_f1([""], [[]]) == 1.0
    assert exact_match(["Paris"], [[]]) == 0.0 and squad_f1(["Paris"], [[]]) == 0.0
    assert exact_match([" . "], [[]]) == 1.0  # normalises to nothing, as in the script
    # an answerable question answered with nothing scores 0
    assert squad_f1([""], [["Paris"]]) == 0.0 and exact_match([""], [["Paris"]]) == 0.0
    # the mean over examples
    assert exact_match(["Paris", "", "x"], [["paris"], [], ["y"]]) == pytest.approx(2 / 3)


def test_rouge_l_is_rouge_scores_f_measure_with_stemming():
    assert rouge_l(["the cat sat"], [["the cat sat"]]) == pytest.approx(1.0)
    # LCS of [a, cat, sit] and [the, cat, sat] is [cat]: P = R = 1/3
    assert rouge_l(["a cat sits"], [["the cat sat"]]) == pytest.approx(1 / 3)
    assert rouge_l(["a cat sits"], [["dog", "a cat sat"]]) == pytest.approx(2 / 3)  # best gold


def test_gsm8k_final_number():
    assert final_number("She has 3 + 4 = 7 apples.\n#### 7") == 7.0
    assert final_number("so the total is 1,250 dollars") == 1250.0  # no ####: the last number
    assert final_number("no number here") is None
    gold = ["Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18"]
    assert numeric_match(["#### 18", "The answer is 18.", "#### 19", "none"], [gold] * 4) == 0.5


def test_the_metrics_are_registered_and_check_their_inputs():
    assert {"exact_match", "squad_f1", "rouge_l", "numeric_match"} <= set(TEXT_METRICS)
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        exact_match(["a", "b"], [["a"]])
