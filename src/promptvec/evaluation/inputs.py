"""What :func:`~promptvec.evaluation.evaluate` and :func:`~promptvec.evaluation.predict` accept from a
caller, made into what they compute on — or refused with one message and its fix.

The obvious forms are accepted: a task by name or file, rows as the task's data files hold them
(dicts), plain strings for prediction on a one-field task, a prompt as a tensor, a prompt module, a
loaded prompt, or a prompt folder, run folder or Hub id. Anything else is a
:class:`~promptvec.errors.PromptvecError` naming what was given and what to give instead, not an
``AttributeError`` from deep inside. Inputs already in the computed form pass through untouched (the
training loop's evaluations take this path).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from promptvec.backbones.base import Backbone
from promptvec.errors import ConfigError, DataError
from promptvec.peft_folder import PromptCheckpoint, check_compatible, load_prompt
from promptvec.prompts import PromptModule
from promptvec.tasks import Example, TaskData, TaskSpec, example_from_row, get_task


def as_backbone(backbone: Any) -> Backbone:
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"the model must be a loaded Backbone, not a {type(backbone).__name__}",
                          f"load it first: backbone = promptvec.load_backbone({backbone!r:.60})"
                          if isinstance(backbone, str) else "load it with promptvec.load_backbone(...)")
    return backbone


def as_task(task: Any) -> TaskSpec:
    return get_task(task)


def as_examples(task: TaskSpec, items: Any, labelled: bool, name: str = "example") -> list[Example]:
    """Examples of ``task`` from Examples, data rows (dicts) or — when no label is needed — plain
    strings of a one-field task (``name``: what an item is called in messages)."""
    if isinstance(items, TaskData):
        raise DataError("give the examples of one split, not the whole task data", "e.g. data.test or data.validation")
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise DataError(f"examples must be a list (of Examples, rows or strings), not a {type(items).__name__}",
                        'e.g. evaluate(backbone, "sst2", data.test) or predict(backbone, "sst2", ["a great film"])')
    if all(isinstance(item, Example) for item in items):
        return list(items)
    return [_example(task, item, f"{name} {i + 1}", labelled) for i, item in enumerate(items)]


def _example(task: TaskSpec, item: Any, where: str, labelled: bool) -> Example:
    if isinstance(item, Example):
        return item
    if isinstance(item, str):
        if labelled:
            raise DataError(f"{where} is plain text, which has no label to score against",
                            "give rows with the label (dicts, as in the task's files), or use predict(...) / "
                            "Predictor to label new text")
        names = task.template_fields
        if len(names) != 1:
            raise DataError(f"{where}: task '{task.task}' needs the fields {names}, got plain text",
                            "give dicts with those keys")
        item = {names[0]: item}
    if not isinstance(item, dict):
        raise DataError(f"{where} is a {type(item).__name__}", "give an Example, a row (dict) or a string")
    if labelled:
        return example_from_row(task, item, where)
    missing = [f for f in task.template_fields if f not in item]
    if missing:
        raise DataError(f"{where} lacks the input field(s) {missing}", f"task '{task.task}' needs "
                        f"{task.template_fields}")
    fields = {f: item[f] for f in task.template_fields}
    return Example(fields=fields, label="", source=where, text=task.render(fields, where))


def as_prompt(prompt: Any, backbone: Backbone) -> Any:
    """A tensor, a prompt module or None as they are; a loaded prompt's tensor; a folder, run folder or
    Hub id loaded (and checked against ``backbone``)."""
    if prompt is None or isinstance(prompt, torch.Tensor | PromptModule):
        return prompt
    if isinstance(prompt, PromptCheckpoint):
        check_compatible(prompt.prompt, prompt.metadata, backbone, prompt.source or "the prompt")
        return prompt.prompt
    if isinstance(prompt, str | os.PathLike):
        return load_prompt(prompt if isinstance(prompt, str) else Path(prompt), backbone).prompt
    raise ConfigError(f"a prompt must be a tensor, a prompt module, a loaded prompt or a path, not a "
                      f"{type(prompt).__name__}", "e.g. prompt='runs/sst2' (a run or prompt folder) or a [R, d] tensor")
