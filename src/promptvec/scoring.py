"""Evaluate a prompt folder, an untrained origin or no prompt on rows of a task split: the work of
``promptvec eval``, offered to the Python API as one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptvec.backbones import load_backbone
from promptvec.display import counting, status_line
from promptvec.errors import ConfigError
from promptvec.evaluation.evaluator import EvalResult, evaluate
from promptvec.evaluation.samples import sample_records, select_rows, write_samples
from promptvec.io import atomic_write_json
from promptvec.peft_folder import check_compatible, load_prompt
from promptvec.tasks import TaskSpec, get_task, load_task_data
from promptvec.training.config import train_default
from promptvec.vectors import Origin


@dataclass
class SplitEvaluation:
    """One evaluation: the task, the scored result, and the summary ``promptvec eval`` prints (and
    writes with ``--output``/``--json``)."""

    task: TaskSpec
    result: EvalResult
    summary: dict[str, Any]


def evaluate_split(task: str, prompt: str | Path | None = None, *, origin_seed: int | None = None,
                   prompt_length: int = train_default("prompt_length"), model: str = "default",
                   split: str = "test", examples: int | None = train_default("test_examples"),
                   limit: int | None = None, rows: str | None = None, mode: Literal["rank", "generate"] = "rank",
                   length_normalize: bool = False, seed: int = train_default("eval_seed"),
                   data_dir: str | Path | None = None, log_samples: str | Path | None = None,
                   output: str | Path | None = None, progress: bool = True) -> SplitEvaluation:
    """Score ``prompt`` (a PEFT prompt folder, a run folder or a Hub id), the untrained origin ``origin_seed`` or,
    with neither, no prompt, on rows of ``split``: the listed ``rows`` ("0,5,10-19"), the first
    ``limit``, or a seeded sample of ``examples`` (None: the whole split). A prompt's own model is used
    unless ``model`` names another (checked by fingerprint). ``log_samples`` writes one JSON line per
    row, ``output`` the summary as JSON."""
    if prompt and origin_seed is not None:
        raise ConfigError("give either --prompt or --origin-seed, not both", "drop one of them")
    if rows is not None and limit is not None:
        raise ConfigError("give either --rows or --limit, not both", "drop one of them")
    spec = get_task(task)
    checkpoint = load_prompt(prompt) if prompt else None
    if checkpoint is not None and model == "default":
        model = checkpoint.metadata.get("model", model)
    with status_line(progress, f"loading model '{model}' and task '{spec.task}'"):
        backbone = load_backbone(model)
        data = load_task_data(spec, data_dir)
    whole = data.split(split)
    indices = select_rows(len(whole), rows=rows, limit=limit, sample=examples, seed=seed)
    selected = [whole[i] for i in indices]
    tensor = None
    if checkpoint is not None:
        check_compatible(checkpoint.prompt, checkpoint.metadata, backbone, checkpoint.source)
        tensor = checkpoint.prompt
    elif origin_seed is not None:
        tensor = Origin.sample(backbone, prompt_length, origin_seed).tensor(backbone)
    with counting(progress, f"{spec.task} {split}", len(selected)) as advance:
        result = evaluate(backbone, spec, selected, tensor, mode=mode, length_normalize=length_normalize,
                          on_batch=advance)
    if log_samples:
        write_samples(log_samples, sample_records(spec, selected, indices, result))
    summary = {"task": spec.task, "split": split, "prompt": None if checkpoint is None else checkpoint.source,
               "origin_seed": origin_seed, "model": model, "mode": "generate" if spec.generates else mode,
               **result.summary()}
    summary.update({k: v for k, v in (("rows", rows), ("limit", limit), ("log_samples", log_samples and str(
        log_samples))) if v is not None})
    if output:
        atomic_write_json(output, summary)
    return SplitEvaluation(spec, result, summary)
