"""Evaluation: rank classification (default) or greedy generation; free-text tasks are decoded.

Rank classification scores every label verbalization from one shared pass over prompt + input
and takes the best, so it never produces an invalid output. Generation of a label decodes greedily,
keeps the text up to the first newline, strips it and matches it exactly against the
verbalizations; anything else is an invalid output and counts as wrong (the papers' behaviour).
A free-text (``generate_until``) task is always decoded — greedily, batched, stopped at the task's
``until`` strings or EOS — and the text is scored against every acceptable answer by the task's
text metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from promptvec.backbones.base import Backbone
from promptvec.evaluation.inputs import as_backbone, as_examples, as_prompt, as_task
from promptvec.evaluation.metrics import compute_metrics
from promptvec.evaluation.text_metrics import TEXT_METRICS, normalize_answer
from promptvec.modes import module_mode
from promptvec.tasks.spec import Example, TaskSpec

EvalMode = Literal["rank", "generate"]


@dataclass
class EvalResult:
    """Metrics of ``n`` examples, the invalid outputs among them, each prediction (and label scores),
    the input tokens scored and the tokens decoded (what a run's phase timings count)."""

    metrics: dict[str, float]
    n: int
    invalid: int = 0
    predictions: list[str | float] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    tokens: int = 0
    decoded: int = 0  # greedy decoding's tokens (:class:`~promptvec.backbones.base.Generated`); 0 when ranked

    def summary(self) -> dict:
        """Metrics, number of examples and invalid outputs: what records and reports keep."""
        return {"metrics": self.metrics, "n": self.n, "invalid": self.invalid}


@dataclass
class Predictions:
    """What a prompt produced for each example: a label index (-1 = invalid) and the label scores, the
    expected value of a regression task, or the generated text of a free-text task."""

    indices: list[int]
    scores: list[list[float]]
    values: list[float] | None = None
    texts: list[str] | None = None
    tokens: int = 0  # input tokens encoded
    decoded: int = 0  # tokens decoded by greedy generation


def _fixed_prompt(prompt, backbone: Backbone, batch):
    """What the caller passed, made ready once for every batch when it is the same for all of them
    (a ``[R, d]`` tensor, or a module that shares its prompt); None for a prompt that depends on the input."""
    if prompt is None:
        return torch.zeros(0, backbone.dim, device=backbone.device)
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 2:
            return None
        return backbone.prepare_prompt(prompt.to(backbone.device))
    return backbone.prepare_prompt(prompt(batch)) if prompt.shares_prompt else None


def match_generation(text: str, verbalizations: list[str]) -> int:
    answer = text.split("\n", 1)[0].strip()
    for index, verbalization in enumerate(verbalizations):
        if answer == verbalization.strip():
            return index
    return -1


def predict(backbone: Backbone, task: TaskSpec | str, examples: Sequence[Example | dict | str], prompt: Any = None,
            mode: EvalMode = "rank", batch_size: int = 32, length_normalize: bool = False,
            max_new_tokens: int | None = None, autocast: bool = False,
            on_batch: Callable[[int], None] | None = None) -> Predictions:
    """What ``prompt`` makes the model produce for each example (see :class:`Predictions`).

    ``task``: a TaskSpec, a built-in task's name or a task file; ``examples``: Examples, rows (dicts
    of the task's fields) or, for a one-field task, plain strings; ``prompt``: a ``[R, d]`` tensor, a
    prompt module, a loaded prompt, a prompt/run folder or Hub id, or None (no prompt). ``on_batch``
    is called with the number of examples of each finished batch (a progress display's advance).

    Always in eval mode (no dropout in the frozen model or the prompt module), whatever mode the
    caller left them in — a training loop with ``train_dropout`` included — and back to that mode after."""
    backbone = as_backbone(backbone)
    task = as_task(task)
    examples = as_examples(task, examples, labelled=False)
    prompt = as_prompt(prompt, backbone)
    return _predict_checked(backbone, task, examples, prompt, mode, batch_size, length_normalize, max_new_tokens,
                            autocast, on_batch)


def _predict_checked(backbone: Backbone, task: TaskSpec, examples: list[Example], prompt, mode: EvalMode,
                     batch_size: int, length_normalize: bool, max_new_tokens: int | None, autocast: bool,
                     on_batch: Callable[[int], None] | None) -> Predictions:
    """:func:`predict` on inputs it (or :func:`evaluate`) has already checked and converted."""
    with torch.no_grad(), module_mode(backbone.model, prompt, training=False):
        return _predict(backbone, task, examples, prompt, mode, batch_size, length_normalize, max_new_tokens,
                        autocast, on_batch)


def _predict(backbone: Backbone, task: TaskSpec, examples: list[Example], prompt, mode: EvalMode, batch_size: int,
             length_normalize: bool, max_new_tokens: int | None, autocast: bool,
             on_batch: Callable[[int], None] | None) -> Predictions:
    rows = prompt.shape[-2] if isinstance(prompt, torch.Tensor) else (prompt.rows if prompt is not None else 0)
    encoded = backbone.encode(task, examples, rows)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    out = Predictions([0] * len(encoded), [[] for _ in encoded],
                      values=[0.0] * len(encoded) if task.is_regression else None,
                      texts=[""] * len(encoded) if task.generates else None,
                      tokens=sum(len(item.input_ids) for item in encoded))
    if task.generates:
        new_tokens, until = max_new_tokens or task.generation_kwargs.max_gen_toks, tuple(task.generation_kwargs.until)
    else:
        new_tokens, until = max_new_tokens or max(len(t) for t in backbone.label_set(task).token_ids) + 2, ()
    bins = torch.tensor([float(v) for v in task.label_names] if task.is_regression else [])
    device_type = backbone.device.type
    fixed = None  # a prompt shared by every batch: prepared once (a decoder's keys/values computed once)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        batch = backbone.collate(task, [encoded[i] for i in idx], train=False).to(backbone.device)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            if start == 0:
                fixed = _fixed_prompt(prompt, backbone, batch)
            p = fixed if fixed is not None else (prompt if isinstance(prompt, torch.Tensor) else prompt(batch))
            if task.generates or mode == "generate":
                generated = backbone.generate(batch, p, new_tokens, until)
                out.decoded += generated.decoded
                for i, text in zip(idx, generated.texts, strict=True):
                    if out.texts is not None:
                        out.texts[i] = text.strip()
                    else:
                        out.indices[i] = match_generation(text, task.verbalizations)
                if on_batch is not None:
                    on_batch(len(idx))
                continue
            s = backbone.label_scores(task, batch, p, length_normalize=length_normalize).float().cpu()
        best = s.argmax(-1).tolist()
        for row, i in enumerate(idx):
            out.indices[i] = best[row]
            out.scores[i] = s[row].tolist()
            if out.values is not None:
                out.values[i] = expected_value(s[row], bins)
        if on_batch is not None:
            on_batch(len(idx))
    return out


def expected_value(scores: torch.Tensor, bins: torch.Tensor) -> float:
    """A regression task's prediction: the expected value of its score bins under the label scores."""
    return float(torch.softmax(scores, -1) @ bins)


def as_answer(task: TaskSpec, text: str) -> str:
    """A generated text as an answer to score: the task's ``no_answer_target`` (normalised) means no answer."""
    target = task.no_answer_target
    return "" if target is not None and normalize_answer(text) == normalize_answer(target) else text


def score_texts(task: TaskSpec, texts: list[str], examples: list[Example]) -> dict[str, float]:
    """The task's text metrics of generated ``texts`` against every example's acceptable answers."""
    answers = [list(e.answers) for e in examples]
    predictions = [as_answer(task, text) for text in texts]
    return {name: TEXT_METRICS[name](predictions, answers) for name in task.metrics}


def evaluate(backbone: Backbone, task: TaskSpec | str, examples: Sequence[Example | dict], prompt: Any = None,
             mode: EvalMode = "rank", batch_size: int = 32, length_normalize: bool = False,
             max_new_tokens: int | None = None, autocast: bool = False,
             on_batch: Callable[[int], None] | None = None) -> EvalResult:
    """Score labelled ``examples`` (Examples, or rows as in the task's files) with ``prompt`` (as
    :func:`predict` takes it; None: no prompt). ``mode`` applies to label tasks; a free-text task is
    always decoded."""
    backbone = as_backbone(backbone)
    task = as_task(task)
    examples = as_examples(task, examples, labelled=True)
    prompt = as_prompt(prompt, backbone)
    out = _predict_checked(backbone, task, examples, prompt, mode, batch_size, length_normalize, max_new_tokens,
                           autocast, on_batch)
    if out.texts is not None:
        return EvalResult(score_texts(task, out.texts, examples), len(examples), 0, list[str | float](out.texts),
                          tokens=out.tokens, decoded=out.decoded)
    pred, scores, values = out.indices, out.scores, out.values
    if values is not None and mode == "rank":
        gold = [float(e.label) for e in examples]
        metrics = compute_metrics(task.metrics, gold, values, len(task.label_names))
        return EvalResult(metrics, len(examples), 0, list[str | float](values), scores, out.tokens, out.decoded)
    gold = [backbone.label_index(task, e) for e in examples]
    if task.is_regression:  # generated bins compared to gold values
        predicted = [float(task.label_names[p]) if p >= 0 else 0.0 for p in pred]
        metrics = compute_metrics(task.metrics, [float(e.label) for e in examples], predicted,
                                  len(task.label_names))
    else:
        metrics = compute_metrics(task.metrics, gold, pred, len(task.label_names))
    invalid = sum(1 for p in pred if p < 0)
    names: list[str | float] = [task.label_names[p] if p >= 0 else "<invalid>" for p in pred]
    return EvalResult(metrics, len(examples), invalid, names, scores, out.tokens, out.decoded)
