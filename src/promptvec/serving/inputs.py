"""A request's inputs as engine jobs: checked, encoded as the prompt's training encoded them.

Everything that can be wrong with an input is found here, before anything is queued, and is one
:class:`RequestError` naming the input and the fix: a task field missing, an input longer than the
prompt allows (training would have cut it; a server says so instead of answering about a different
text), ``max_tokens`` beyond what the model can attend to.
"""

from __future__ import annotations

from typing import Any

from promptvec.errors import PromptvecError
from promptvec.evaluation.inputs import as_examples
from promptvec.serving.engine import Job
from promptvec.serving.prompts import PromptPool, ServedPrompt


class RequestError(ValueError):
    """A request that cannot be answered as sent (HTTP 400), with the parameter it is about (a
    ValueError, so that a schema validator may raise it too)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def classify_jobs(pool: PromptPool, served: ServedPrompt | None, inputs: list[str | dict[str, Any]]) -> list[Job]:
    """One job per input: the prompt's task's template and labels."""
    if served is None:
        raise RequestError("classification needs a prompt (its task defines the labels); 'base' has none", "model")
    task = served.task
    if task.generates:
        raise RequestError(f"prompt '{served.name}' answers task '{task.task}' in free text; use /v1/completions",
                           "model")
    return [Job(served, ids, True) for ids in _encoded(pool, served, inputs)]


def completion_jobs(pool: PromptPool, served: ServedPrompt | None, inputs: list[str | dict[str, Any]],
                    max_tokens: int | None, stop: tuple[str, ...] | None) -> list[Job]:
    """One job per input. With a prompt, an input is its task's input (rendered by its template, as in
    training) and the defaults are the task's ``max_gen_toks`` and stop strings; with no prompt
    (``base``) it is plain text, 16 tokens and no stop string by default (OpenAI's defaults)."""
    backbone = pool.backbone
    if not backbone.generates_text:
        raise RequestError(f"model '{backbone.name}' ({backbone.family}) does not generate text; use /v1/classify",
                           "model")
    if served is not None and not served.task.generates:
        raise RequestError(f"prompt '{served.name}' labels task '{served.task.task}'; use /v1/classify", "model")
    if served is None:
        if not all(isinstance(text, str) for text in inputs):
            raise RequestError("'base' continues plain text: give strings", "prompt")
        encoded = [backbone.tokenize_input(str(text)) for text in inputs]
        for number, ids in enumerate(encoded, 1):
            _check_length(len(ids), backbone.max_length, number, "no prompt")
        steps, until = max_tokens or 16, stop or ()
    else:
        encoded = _encoded(pool, served, inputs)
        kwargs = served.task.generation_kwargs
        steps, until = max_tokens or kwargs.max_gen_toks, stop if stop is not None else tuple(kwargs.until)
    rows = served.rows if served is not None else 0
    context = _context_length(pool)
    longest = max(len(ids) for ids in encoded)
    if context is not None and rows + longest + steps > context:
        raise RequestError(f"max_tokens {steps} with {rows} prompt rows and an input of {longest} tokens exceeds the "
                           f"model's {context} positions", "max_tokens")
    return [Job(served, ids, False, steps, until) for ids in encoded]


def _encoded(pool: PromptPool, served: ServedPrompt, inputs: list[str | dict[str, Any]]) -> list[list[int]]:
    """The inputs' token ids as training encoded them; an input longer than the prompt allows is refused."""
    backbone, task = pool.backbone, served.task
    try:
        examples = as_examples(task, inputs, labelled=False, name="input")
        budget = backbone.input_budget(task, served.rows)
    except PromptvecError as exc:
        raise RequestError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message, "input") from None
    encoded = []
    for number, example in enumerate(examples, 1):
        ids = backbone.tokenize_input(example.text or task.render(example.fields, example.source))
        _check_length(len(ids), budget, number, f"prompt '{served.name}'")
        encoded.append(ids)
    return encoded


def _check_length(tokens: int, limit: int, number: int, what: str) -> None:
    if tokens > limit:
        raise RequestError(f"input {number} is {tokens} tokens; {what} allows at most {limit} (the model's max_length "
                           "less the prompt and the label)", "input")


def _context_length(pool: PromptPool) -> int | None:
    config = pool.backbone.model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
