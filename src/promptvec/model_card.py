"""The ``README.md`` of a prompt folder: a model card in the layout PEFT and the Hub use.

A prompt folder is meant to be shared: pushed to the Hub, copied to another machine, loaded in PEFT.
The card says what a reader needs before trusting it: which base model it belongs to and
exactly which weights (for the embedded model: dequantised from a 4-bit GGUF, with the embedding
fingerprint promptvec checks), the task, the metrics with the split and number of examples they were
measured on, the training settings, the promptvec version, and how to load it with PEFT and with
promptvec. It is written from the folder's own metadata, so it cannot disagree with it.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from promptvec.backbones import BACKBONES, Backbone

#: training settings shown in the card (TrainConfig fields), in this order
CARD_SETTINGS = ("shots", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio",
                 "prompt_length", "max_length", "origin_seed", "data_seed", "train_seed", "precision",
                 "chat_template", "init_prompt", "extra_tasks")


#: the Hub's task type of an evaluation, by the task's output type (docs/tasks.md)
EVAL_TASK_TYPES = {"multiple_choice": "text-classification", "regression": "text-classification",
                   "generate_until": "text-generation"}
#: where the card tells a reader to load the prompt from, unless it was pushed somewhere
LOCAL_LOCATION = "path/to/this/folder"


def _family(peft_config: dict[str, Any], metadata: dict[str, Any]) -> type[Backbone] | None:
    """The backbone family a prompt belongs to: as recorded, else the one with its PEFT task type."""
    recorded = metadata.get("family")
    if isinstance(recorded, str) and recorded in BACKBONES.names():
        return BACKBONES[recorded]
    return next((f for f in BACKBONES.values() if f.peft_task_type == peft_config.get("task_type")), None)


def _auto_model_class(peft_config: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The transformers class that loads the base model: the family's own, else ``AutoModel`` (loads
    any architecture, without a head)."""
    family = _family(peft_config, metadata)
    return family.auto_model_class if family else "AutoModel"


def _text(value: Any) -> str:
    """A value as inert Markdown text on one line: HTML escaped, Markdown syntax (links, emphasis, table
    pipes, headings) escaped — a folder or task name cannot add markup, links or lines to the card."""
    flat = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_\[\]#!|~])", r"\\\1", flat)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "–"
    return "–" if value is None else _text(value)


def _setting(key: str, value: Any) -> str:
    if key == "shots" and value is None:
        return "all training examples"
    return _value(value)


def _results(metadata: dict[str, Any]) -> list[str]:
    sizes = metadata.get("evaluated_on") or {}
    rows = []
    for split in ("validation", "test"):
        for metric, value in (metadata.get(split) or {}).items():
            where = sizes.get(split) or {}
            examples = where.get("examples")
            drawn = f"{examples} (drawn with seed {where.get('seed')})" if examples else "–"
            rows.append(f"| {split} | {_text(drawn)} | {_text(metric)} | {_number(value)} |")
    if not rows:
        return ["Not evaluated when this folder was written."]
    return ["| split | examples | metric | value |", "|---|---|---|---|", *rows]


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else _text(value)


def _line(value: Any) -> str:
    return " ".join(str(value).split())


def _eval_results(metadata: dict[str, Any], task: str) -> list[EvalResult]:
    """The metrics as the Hub's ``model-index``: task type, dataset (its Hub id and config where the
    task has one, else the task's name), split, number of examples and sampling seed."""
    datasets = metadata.get("datasets") or []
    dataset = datasets[0] if len(datasets) == 1 and isinstance(datasets[0], dict) else {}
    metrics = {m for split in ("validation", "test") for m in (metadata.get(split) or {})}
    kind = EVAL_TASK_TYPES.get(metadata.get("output_type") or "", "text-classification" if metrics <= {
        "acc", "f1", "macro_f1", "mcc", "pearson", "spearman"} else "text-generation")
    splits = dataset.get("splits") or {}
    results = []
    for split in ("validation", "test"):
        where = (metadata.get("evaluated_on") or {}).get(split) or {}
        sample = {k: where[k] for k in ("examples", "seed") if where.get(k) is not None}
        hub_split = splits.get(split) or split
        if splits and split == "validation" and not splits.get("validation"):  # held out of the training split
            hub_split, sample = splits.get("train") or "train", {**sample, "held_out_of_training": True}
        for metric, value in (metadata.get(split) or {}).items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            results.append(EvalResult(
                task_type=kind, task_name=_line(task), dataset_type=_line(dataset.get("path") or task),
                dataset_name=_line(task), dataset_config=dataset.get("config"), dataset_split=_line(hub_split),
                dataset_args=sample or None, metric_type=_line(metric), metric_name=f"{_line(metric)} ({split})",
                metric_value=float(value)))
    return results


def card_data(peft_config: dict[str, Any], metadata: dict[str, Any]) -> ModelCardData:
    """The card's metadata as the Hub reads it: base model, the ``base_model:adapter:<id>`` tag PEFT
    writes, pipeline tag, datasets, license (the one the folder records, given by its owner at
    ``promptvec push --license``; never invented) and the metrics as
    ``model-index``. huggingface_hub serialises it, so every value is quoted as YAML needs."""
    base = _line(peft_config.get("base_model_name_or_path") or metadata.get("model") or "unknown")
    task = metadata.get("task") or ""
    family = _family(peft_config, metadata)
    tags = ["peft", "prompt-tuning", "promptvec", f"base_model:adapter:{base}", *([_line(task)] if task else [])]
    datasets = [_line(d["path"]) for d in metadata.get("datasets") or [] if isinstance(d, dict) and d.get("path")]
    results = _eval_results(metadata, task) if task else []
    return ModelCardData(base_model=base, library_name="peft", pipeline_tag=family.pipeline_tag if family else None,
                         license=metadata.get("license"), datasets=datasets or None, tags=tags,
                         model_name=f"{_line(task)} soft prompt for {base}" if results else None,
                         eval_results=results or None)


def render_model_card(peft_config: dict[str, Any], metadata: dict[str, Any], location: str = LOCAL_LOCATION) -> str:
    """The card for an adapter folder with this ``adapter_config.json`` and ``promptvec.json``;
    ``location``: where its examples load it from (a Hub id once pushed)."""
    base = peft_config.get("base_model_name_or_path") or metadata.get("model") or "unknown"
    task = metadata.get("task") or "unknown task"
    rows, dim = metadata.get("rows"), metadata.get("dim")
    version = metadata.get("promptvec_version", "unknown")
    name = metadata.get("model") or base
    lines = [f"---\n{card_data(peft_config, metadata).to_yaml()}\n---", "",
             f"# Soft prompt for {_text(task)} on {_text(base)}", "",
             f"A prompt-tuning adapter ({_text(rows)} virtual tokens × {_text(dim)}) for the frozen model "
             f"{_text(base)}, written by promptvec {_text(version)}.", "", "## Base model", "",
             f"- Base model: {_text(base)} (promptvec name: {_text(name)}, family: "
             f"{_text(metadata.get('family', 'unknown'))})"]
    if metadata.get("weights"):
        lines.append(f"- Weights: {_text(metadata['weights'])}.")
    if metadata.get("model_fingerprint"):
        lines.append(f"- Fingerprint (sha256 of the input-embedding matrix, fp32): "
                     f"{_text(metadata['model_fingerprint'])}. promptvec refuses to load this prompt on weights with "
                     "another fingerprint.")
    group = _text(metadata.get("task_group") or "no group")
    lines += ["", "## Task and results", "", f"Task: {_text(task)} ({group}).", "", *_results(metadata)]
    if metadata.get("step") is not None:
        lines += ["", f"The prompt is the checkpoint of step {_text(metadata['step'])}, chosen on validation."]
    config = metadata.get("config") or {}
    if config:
        lines += ["", "## Training", "", "| setting | value |", "|---|---|",
                  *[f"| {key} | {_setting(key, config.get(key))} |" for key in CARD_SETTINGS if key in config]]
        origin = metadata.get("origin") or {}
        if origin:
            lines += ["", f"Initialised from promptvec's random origin {_text(origin.get('seed'))} "
                          f"({_text(origin.get('rows'))} embeddings of ordinary tokens); the task prompt vector is "
                          "this prompt minus that origin."]
    if metadata.get("from_vector"):
        vector = metadata["from_vector"]
        lines += ["", f"Made from a task prompt vector: origin + {_text(vector.get('scale'))} × "
                      f"τ({_text(vector.get('task'))})."]
    auto = _auto_model_class(peft_config, metadata)
    where = json.dumps(_line(location))
    literal = json.dumps(" ".join(str(base).split()))  # a valid Python string literal on one line
    lines += ["", "## How to use it", "", "With PEFT:", "", "```python", "from peft import PeftModel",
              f"from transformers import {auto}", "", f"base = {auto}.from_pretrained({literal})",
              f"model = PeftModel.from_pretrained(base, {where})", "```", ""]
    if peft_config.get("task_type") == "CAUSAL_LM":
        lines += ["To generate text with PEFT on transformers 5, pass `use_cache=False` to `model.generate`. "
                  "Otherwise PEFT inserts the prompt again at every step.", ""]
    if metadata.get("weights"):
        lines += ["The Hub weights are not the ones this prompt was trained on (see Base model): expect "
                  "somewhat different scores with them. `promptvec models` prints where the exact weights are "
                  "and how to load them with transformers and PEFT.", ""]
    shell_task = shlex.quote(" ".join(str(config.get("task") or task).split()))
    shell_where = shlex.quote(_line(location))
    lines += ["With promptvec:", "", "```bash", f'promptvec predict --prompt {shell_where} "your input"',
              f"promptvec eval --task {shell_task} --prompt {shell_where} --model {shlex.quote(_line(name))}",
              f"promptvec lm-eval --model promptvec --model_args prompt={shell_where} --tasks ...", "```", ""]
    return "\n".join(lines)
