"""The ``README.md`` of a prompt folder: a model card in the layout PEFT and the Hub use.

A prompt folder is meant to be shared: pushed to the Hub, copied to another machine, loaded in PEFT.
The card says what a reader needs before trusting it: which base model it belongs to and
exactly which weights (for the embedded model: dequantised from a 4-bit GGUF, with the embedding
fingerprint promptvec checks), the task, the metrics with the split and number of examples they were
measured on, the training settings, the promptvec version, and how to load it with PEFT and with
promptvec. It is written from the folder's own metadata, so it cannot disagree with it.
"""

from __future__ import annotations

from typing import Any

#: training settings shown in the card (TrainConfig fields), in this order
CARD_SETTINGS = ("shots", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio",
                 "prompt_length", "max_length", "origin_seed", "data_seed", "train_seed", "precision",
                 "chat_template", "init_prompt", "extra_tasks")
AUTO_CLASSES = {"CAUSAL_LM": "AutoModelForCausalLM", "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
                "FEATURE_EXTRACTION": "AutoModel"}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "–"
    return "–" if value is None else str(value)


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
            rows.append(f"| {split} | {drawn} | {metric} | {value:.4f} |")
    if not rows:
        return ["Not evaluated when this folder was written."]
    return ["| split | examples | metric | value |", "|---|---|---|---|", *rows]


def render_model_card(peft_config: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The card for an adapter folder with this ``adapter_config.json`` and ``promptvec.json``."""
    base = peft_config.get("base_model_name_or_path") or metadata.get("model") or "unknown"
    task = metadata.get("task") or "unknown task"
    rows, dim = metadata.get("rows"), metadata.get("dim")
    version = metadata.get("promptvec_version", "unknown")
    name = metadata.get("model") or base
    tags = ["peft", "prompt-tuning", "promptvec", *([task] if metadata.get("task") else [])]
    lines = ["---", f"base_model: {base}", "library_name: peft", "tags:", *[f"- {t}" for t in tags], "---", "",
             f"# Soft prompt for {task} on {base}", "",
             f"A prompt-tuning adapter ({rows} virtual tokens × {dim}) for the frozen model `{base}`, written by "
             f"promptvec {version}.", "", "## Base model", "",
             f"- Base model: `{base}` (promptvec name: `{name}`, family: {metadata.get('family', 'unknown')})"]
    if metadata.get("weights"):
        lines.append(f"- Weights: {metadata['weights']}.")
    if metadata.get("model_fingerprint"):
        lines.append(f"- Fingerprint (sha256 of the input-embedding matrix, fp32): `{metadata['model_fingerprint']}`. "
                     "promptvec refuses to load this prompt on weights with another fingerprint.")
    lines += ["", "## Task and results", "", f"Task: `{task}` ({metadata.get('task_group') or 'no group'}).", "",
              *_results(metadata)]
    if metadata.get("step") is not None:
        lines += ["", f"The prompt is the checkpoint of step {metadata['step']}, chosen on validation."]
    config = metadata.get("config") or {}
    if config:
        lines += ["", "## Training", "", "| setting | value |", "|---|---|",
                  *[f"| {key} | {_setting(key, config.get(key))} |" for key in CARD_SETTINGS if key in config]]
        origin = metadata.get("origin") or {}
        if origin:
            lines += ["", f"Initialised from promptvec's random origin {origin.get('seed')} ({origin.get('rows')} "
                          "embeddings of ordinary tokens); the task prompt vector is this prompt minus that origin."]
    if metadata.get("from_vector"):
        vector = metadata["from_vector"]
        lines += ["", f"Made from a task prompt vector: origin + {vector.get('scale')} × τ({vector.get('task')})."]
    auto = AUTO_CLASSES.get(str(peft_config.get("task_type")), "AutoModelForCausalLM")
    lines += ["", "## How to use it", "", "With PEFT:", "", "```python", "from peft import PeftModel",
              f"from transformers import {auto}", "", f'base = {auto}.from_pretrained("{base}")',
              'model = PeftModel.from_pretrained(base, "path/to/this/folder")', "```", ""]
    if auto == "AutoModelForCausalLM":
        lines += ["To generate text with PEFT on transformers 5, pass `use_cache=False` to `model.generate`. "
                  "Otherwise PEFT inserts the prompt again at every step.", ""]
    if metadata.get("weights"):
        lines += ["The Hub weights are not the ones this prompt was trained on (see Base model): expect "
                  "somewhat different scores with them.", ""]
    lines += ["With promptvec:", "", "```bash", 'promptvec predict --prompt path/to/this/folder "your input"',
              f"promptvec eval --task {config.get('task') or task} --prompt path/to/this/folder --model {name}",
              "promptvec lm-eval --model promptvec --model_args prompt=path/to/this/folder --tasks ...", "```", ""]
    return "\n".join(lines)
