"""Prompt folders people can share: a model card from the folder's own metadata, and a base model name
that means the same model on another machine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from promptvec import __version__
from promptvec.backbones import load_backbone
from promptvec.errors import CheckpointError
from promptvec.peft_folder import load_prompt, save_prompt
from promptvec.tasks import get_task
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import train_prompt


def test_a_trained_prompt_carries_a_card_that_matches_its_metadata(backbones, tiny_models, toy_task, tmp_path):
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=2, eval_every=2,
                         batch_size=4, prompt_length=3, lr=0.05)
    train_prompt(config, tmp_path / "run", backbone=backbones["llama"], progress=False)
    folder = tmp_path / "run" / "prompt"
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = json.loads((folder / "promptvec.json").read_text())
    front = card.split("---")[1]
    assert f"base_model: {tiny_models['llama']}" in front and "library_name: peft" in front
    assert f"promptvec {__version__}" in card and meta["promptvec_version"] == __version__
    task = get_task(str(toy_task)).task
    assert "# Soft prompt for " + task.replace("_", "\\_") in card  # Markdown-escaped: renders as the name
    test_size = meta["evaluated_on"]["test"]["examples"]
    assert test_size == 24
    for metric, value in meta["test"].items():  # each test metric, with its split size, as in the metadata
        assert f"| test | {test_size} (drawn with seed 1234) | {metric} | {value:.4f} |" in card
    assert "| lr | 0.05 |" in card and "| prompt_length | 3 |" in card
    assert "PeftModel.from_pretrained" in card and "use_cache=False" in card
    assert meta["model_fingerprint"] in card


def test_embedded_model_is_named_by_its_hub_id_and_refused_on_other_weights(tiny_models, tmp_path):
    """A prompt of the embedded model names the Hub repository it derives from (not a cache path),
    says its weights are dequantised from a 4-bit GGUF, and is refused on other weights with that said."""
    embedded = load_backbone(str(tiny_models["llama"]))
    embedded.name = "default"  # stands in for the embedded SmolLM2 (same code path, tiny weights)
    save_prompt(tmp_path / "p", torch.randn(3, embedded.dim), embedded, {"task": "toy"})
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = (tmp_path / "p" / "README.md").read_text(encoding="utf-8")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "4-bit GGUF" in card
    other = load_backbone(str(tiny_models["gpt2"]))  # same width, other weights
    with pytest.raises(CheckpointError, match="4-bit GGUF") as refused:
        load_prompt(tmp_path / "p", other)
    assert "--model default" in refused.value.hint


@pytest.mark.parametrize("hostile", ["evil\n---\nlicense: mit\n<script>alert(1)</script>", "*alias", "&anc",
                                     "<marquee>x</marquee>", "[x](javascript:alert(1))", "a|b`c``d", "# heading"])
def test_names_cannot_inject_front_matter_markup_or_links_into_the_card(hostile):
    """A model folder or task name is data: the front matter is YAML written by huggingface_hub (so it
    parses, and to the same values), and the body shows it as text — no raw HTML, no link, no new line."""
    import yaml
    from huggingface_hub import ModelCard

    from promptvec.model_card import render_model_card

    card = render_model_card({"base_model_name_or_path": hostile, "task_type": "CAUSAL_LM"},
                             {"task": hostile, "model": hostile, "task_group": hostile, "rows": 3, "dim": 8,
                              "test": {"acc": 0.5}, "evaluated_on": {"test": {"examples": 10, "seed": 1}},
                              "config": {"task": hostile, "lr": 0.05}})
    flat = " ".join(hostile.split())
    front = yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))
    assert set(front) == {"base_model", "library_name", "pipeline_tag", "tags", "model-index"}  # no license added
    assert front["base_model"] == flat and front["library_name"] == "peft"
    assert front["tags"] == ["peft", "prompt-tuning", "promptvec", f"base_model:adapter:{flat}", flat]
    [result] = front["model-index"][0]["results"]
    assert result["dataset"]["name"] == flat and result["metrics"] == [{"name": "acc (test)", "type": "acc",
                                                                         "value": 0.5}]
    assert ModelCard(card).data.to_dict()["base_model"] == flat  # the Hub's own reader agrees
    body = card.split("\n---\n", 1)[1]
    prose = re.sub(r"```.*?```", "", body, flags=re.S)  # code blocks show text as text
    assert not [line for line in card.splitlines() if line.startswith(("license:", "---", "<"))][2:]  # 2 fences
    assert "<script>" not in prose and "<marquee>" not in prose
    assert "](javascript:" not in prose.replace("\\](", "")  # brackets escaped: never a link
    code = body.split("```python\n")[1].split("```")[0]
    compile(code, "card", "exec")  # the hostile name is a valid string literal on one line
    assert not [line for line in body.splitlines() if line.startswith("# ") and line != body.splitlines()[1]]
    assert body.count("\n## ") == 4  # base model, task and results, training, how to use it — nothing added


def test_the_card_names_the_hub_dataset_its_split_and_the_kind_of_task():
    """A built-in task's Hub dataset, config and split go into ``datasets`` and ``model-index``; a
    free-text task is a text-generation result; a seq2seq prompt's pipeline is the family's."""
    import yaml

    from promptvec.model_card import render_model_card

    glue = {"path": "nyu-mll/glue", "config": "sst2", "splits": {"train": "train", "validation": None,
                                                                  "test": "validation"}}
    card = render_model_card({"base_model_name_or_path": "google-t5/t5-small", "task_type": "SEQ_2_SEQ_LM"},
                             {"task": "sst2", "family": "seq2seq", "output_type": "multiple_choice", "datasets": [glue],
                              "validation": {"acc": 0.9}, "test": {"acc": 0.8},
                              "evaluated_on": {"test": {"examples": 500, "seed": 1234}}})
    front = yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))
    assert front["datasets"] == ["nyu-mll/glue"] and front["pipeline_tag"] == "text2text-generation"
    validation, test = front["model-index"][0]["results"]
    assert test["dataset"] == {"name": "sst2", "type": "nyu-mll/glue", "config": "sst2", "split": "validation",
                               "args": {"examples": 500, "seed": 1234}}  # promptvec's test rows: GLUE's validation
    assert test["task"] == {"type": "text-classification", "name": "sst2"}
    assert test["metrics"] == [{"type": "acc", "value": 0.8, "name": "acc (test)"}]
    assert validation["dataset"]["split"] == "train" and validation["dataset"]["args"] == {"held_out_of_training": True}
    free_text = render_model_card({"task_type": "CAUSAL_LM"}, {"task": "lama", "output_type": "generate_until",
                                                               "test": {"exact_match": 0.4}})
    front = yaml.safe_load(free_text.split("\n---\n", 1)[0].removeprefix("---\n"))
    assert front["model-index"][0]["results"][0]["task"]["type"] == "text-generation"
    assert "datasets" not in front  # a task without a Hub dataset names none


def test_every_prompt_committed_in_the_repository_carries_a_card_naming_its_base_by_hub_id():
    from huggingface_hub import ModelCard

    from promptvec.backbones.loading import EMBEDDED_MODELS

    root = Path(__file__).resolve().parents[1]
    folders = sorted(p.parent for p in (root / "docs" / "results").rglob("adapter_config.json"))
    assert len(folders) >= 22
    hub_ids = {m.hub_id for m in EMBEDDED_MODELS.values()}
    for folder in folders:
        base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert base in hub_ids, f"{folder}: {base}"
        data = ModelCard.load(folder / "README.md").data.to_dict()
        assert data["base_model"] == base and f"base_model:adapter:{base}" in data["tags"], folder
        assert json.loads((folder / "promptvec.json").read_text())["weights"], folder


def test_promptvec_models_says_where_the_exact_weights_are_without_converting_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from promptvec.cli import app

    monkeypatch.setenv("PROMPTVEC_CACHE", str(tmp_path / "cache"))
    listed = json.loads(CliRunner().invoke(app, ["models", "--json"]).stdout)
    default = next(m for m in listed if m["name"] == "default")
    assert default["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and default["path"] is None
    assert "4-bit GGUF" in default["weights"] and not (tmp_path / "cache").exists()  # nothing converted
    converted = tmp_path / "cache" / "models" / "smollm2-135m-instruct"
    converted.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        (converted / name).write_text("{}")
    shown = CliRunner().invoke(app, ["models"], terminal_width=200).stdout
    assert f'AutoModelForCausalLM.from_pretrained("{converted}")' in shown
