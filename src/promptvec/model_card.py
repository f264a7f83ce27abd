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

from huggingface_hub import ModelCardData

from promptvec.backbones import BACKBONES

#: training settings shown in the card (TrainConfig fields), in this order
CARD_SETTINGS = ("shots", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio",
                 "prompt_length", "max_length", "origin_seed", "data_seed", "train_seed", "precision",
                 "chat_template", "init_prompt", "extra_tasks")


def _auto_model_class(task_type: Any) -> str:
    """The transformers class that loads the base model of a prompt with this PEFT task type: the
    backbone family's own, else ``AutoModel`` (loads any architecture, without a head)."""
    for family in BACKBONES.values():
        if family.peft_task_type == task_type:
            return family.auto_model_class
    return "AutoModel"


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


def front_matter(base: str, tags: list[str]) -> str:
    """The card's YAML metadata, written by huggingface_hub's serializer: any value is quoted as YAML
    needs, so no name can end the block or add keys."""
    data = ModelCardData(base_model=" ".join(base.split()), library_name="peft", tags=[" ".join(t.split())
                                                                                       for t in tags])
    return f"---\n{data.to_yaml()}\n---"


def render_model_card(peft_config: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The card for an adapter folder with this ``adapter_config.json`` and ``promptvec.json``."""
    base = peft_config.get("base_model_name_or_path") or metadata.get("model") or "unknown"
    task = metadata.get("task") or "unknown task"
    rows, dim = metadata.get("rows"), metadata.get("dim")
    version = metadata.get("promptvec_version", "unknown")
    name = metadata.get("model") or base
    tags = ["peft", "prompt-tuning", "promptvec", *([task] if metadata.get("task") else [])]
    lines = [front_matter(str(base), [str(t) for t in tags]), "",
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
    auto = _auto_model_class(peft_config.get("task_type"))
    literal = json.dumps(" ".join(str(base).split()))  # a valid Python string literal on one line
    lines += ["", "## How to use it", "", "With PEFT:", "", "```python", "from peft import PeftModel",
              f"from transformers import {auto}", "", f"base = {auto}.from_pretrained({literal})",
              'model = PeftModel.from_pretrained(base, "path/to/this/folder")', "```", ""]
    if peft_config.get("task_type") == "CAUSAL_LM":
        lines += ["To generate text with PEFT on transformers 5, pass `use_cache=False` to `model.generate`. "
                  "Otherwise PEFT inserts the prompt again at every step.", ""]
    if metadata.get("weights"):
        lines += ["The Hub weights are not the ones this prompt was trained on (see Base model): expect "
                  "somewhat different scores with them.", ""]
    shell_task = shlex.quote(" ".join(str(config.get("task") or task).split()))
    lines += ["With promptvec:", "", "```bash", 'promptvec predict --prompt path/to/this/folder "your input"',
              f"promptvec eval --task {shell_task} --prompt path/to/this/folder --model "
              f"{shlex.quote(' '.join(str(name).split()))}",
              "promptvec lm-eval --model promptvec --model_args prompt=path/to/this/folder --tasks ...", "```", ""]
    return "\n".join(lines)
