"""Predict labels (or generate answers) for new text with a trained prompt."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from promptvec.backbones import Backbone, load_backbone
from promptvec.errors import DataError
from promptvec.evaluation import predict
from promptvec.evaluation.evaluator import EvalMode
from promptvec.evaluation.inputs import as_examples
from promptvec.io import not_utf8
from promptvec.peft_folder import check_compatible, load_prompt
from promptvec.tasks import TaskSpec, get_task


@dataclass
class Prediction:
    """A predicted label (or value) with the score of every label — or, for a free-text task, the
    generated text as ``label`` and no scores."""

    label: str | float
    scores: dict[str, float]


class Predictor:
    """Load a prompt (PEFT folder, run folder or Hub id) once, then label batches of inputs.

    The backbone and task default to the ones recorded in the prompt's metadata.
    """

    def __init__(self, prompt_path: str | Path, task: str | TaskSpec | None = None, model: str | None = None,
                 backbone: Backbone | None = None, mode: EvalMode = "rank", batch_size: int = 32) -> None:
        checkpoint = load_prompt(prompt_path)
        meta = checkpoint.metadata
        task_name = task or meta.get("config", {}).get("task") or meta.get("task")
        if task_name is None:
            raise DataError(f"{prompt_path} does not record its task", "pass --task")
        self.task = get_task(task_name)
        self.backbone = backbone or load_backbone(model or meta.get("model", "default"), meta.get("family"))
        check_compatible(checkpoint.prompt, meta, self.backbone, checkpoint.source)
        self.prompt = checkpoint.prompt
        self.mode, self.batch_size = mode, batch_size

    def predict(self, inputs: list[str | dict], on_batch: Callable[[int], None] | None = None) -> list[Prediction]:
        """A prediction per input: plain text (one-field tasks) or a dict of the task's fields
        (``on_batch``: told how many inputs each finished batch labelled)."""
        examples = as_examples(self.task, inputs, labelled=False, name="input")
        if not examples:
            return []
        produced = predict(self.backbone, self.task, examples, self.prompt, self.mode, self.batch_size,
                           on_batch=on_batch)
        if produced.texts is not None:
            return [Prediction(text, {}) for text in produced.texts]
        out = []
        for i, p in enumerate(produced.indices):
            label = (produced.values[i] if produced.values is not None
                     else (self.task.label_names[p] if p >= 0 else "<invalid>"))
            out.append(Prediction(label, dict(zip(self.task.label_names, produced.scores[i], strict=False))))
        return out


def read_inputs(path: str | Path) -> list[str | dict]:
    """Inputs from a file: .jsonl (objects or strings), .csv/.tsv (header = fields) or text lines."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"input file not found: {p}", "check the path")
    try:
        return _read_inputs(p)
    except UnicodeDecodeError as exc:
        raise not_utf8(p, exc, "input file") from None


def _read_inputs(p: Path) -> list[str | dict]:
    if p.suffix == ".jsonl":
        items = []
        for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p}:{lineno}: not valid JSON ({exc.msg})", "one JSON value per line") from None
        return items
    if p.suffix in (".csv", ".tsv"):
        with p.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if p.suffix == ".tsv" else ","))
    return [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
