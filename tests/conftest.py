"""Shared fixtures: tiny randomly initialised models built from configs, a byte-level BPE
tokenizer trained on the fly, and a small synthetic user task — no downloads anywhere."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSITIVE = ["good", "great", "lovely", "fine", "superb", "happy", "excellent", "wonderful"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "sad", "boring", "horrible", "dull"]
FILLER = ["the", "movie", "was", "really", "plot", "acting", "quite", "a", "film", "story"]


def _sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label == "positive" else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [" ".join(POSITIVE + NEGATIVE + FILLER)] * 20 + [
        "Review: Sentiment: positive negative yes no maybe Premise Hypothesis Question Answer"] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return folder


def _save_model(model, tokenizer_dir: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def _vocab(tokenizer_dir: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    """Folders with tiny llama / gpt2 / t5 / bert models (random weights, seeded)."""
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    vocab = _vocab(tiny_tokenizer_dir)
    torch.manual_seed(0)
    builders = {
        "llama": lambda: LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=1,
            tie_word_embeddings=False, initializer_range=0.2)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256, pad_token_id=0, eos_token_id=1,
            bos_token_id=1, initializer_range=0.2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
        "t5": lambda: T5ForConditionalGeneration(T5Config(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0,
            eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)),
        "bert": lambda: BertModel(BertConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, pad_token_id=0, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)),
    }
    root = tmp_path_factory.mktemp("models")
    return {name: _save_model(build(), tiny_tokenizer_dir, root / name) for name, build in builders.items()}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        rows.append({"text": _sentence(rng, label), "label": label})
    return rows


TASK_YAML = """\
task: toy_sentiment
group: sentiment
data_files:
  train: train.jsonl
  validation: validation.jsonl
  test: test.jsonl
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_target: label
labels: [negative, positive]
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
  - metric: f1
"""


@pytest.fixture(scope="session")
def toy_task(tmp_path_factory) -> Path:
    """A user task YAML with small synthetic train/validation/test files."""
    folder = tmp_path_factory.mktemp("toy_task")
    write_jsonl(folder / "train.jsonl", sentiment_rows(64, 1))
    write_jsonl(folder / "validation.jsonl", sentiment_rows(16, 2))
    write_jsonl(folder / "test.jsonl", sentiment_rows(24, 3))
    (folder / "toy.yaml").write_text(TASK_YAML, encoding="utf-8")
    return folder / "toy.yaml"


@pytest.fixture(scope="session")
def backbones(tiny_models):
    from promptvec.backbones import load_backbone

    return {name: load_backbone(str(path)) for name, path in tiny_models.items()}


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def scale_loss(monkeypatch, backbone, factor) -> None:
    """Make the backbone's training loss ``loss * factor(n)`` on its n-th call (NaN, inf, a climb)."""
    original, calls = type(backbone).loss, {"n": 0}

    def scaled(self, task, batch, prompt):
        calls["n"] += 1
        return original(self, task, batch, prompt) * factor(calls["n"])

    monkeypatch.setattr(type(backbone), "loss", scaled)


@pytest.fixture(scope="session")
def toy_tasks(toy_task) -> dict[str, str]:
    """Three distinct tasks (same toy data, different names and templates): two sources and a target."""
    folder = toy_task.parent
    paths = {}
    for name, word in (("src_a", "Review"), ("src_b", "Text"), ("target", "Opinion")):
        body = toy_task.read_text().replace("task: toy_sentiment", f"task: {name}").replace("Review:", f"{word}:")
        (folder / f"{name}.yaml").write_text(body)
        paths[name] = str(folder / f"{name}.yaml")
    return paths


PS = {"prompt_length": 3, "lr": 0.05}  # the tiny suites' prompt-tuning settings


def tiny_transfer_suite(tmp_path, tiny_models, tasks, name: str, methods: list[dict], steps: int = 3,
                        eval_every: int = 3, **extra) -> str:
    """A suite on the tiny llama: one target, two 16-example sources, 8 target shots, one seed and origin."""
    body = {
        "name": name, "backbone": {"model": str(tiny_models["llama"])}, "tasks": [tasks["target"]],
        "shots": [8], "seeds": [0], "origins": [0],
        "budget": {"steps": steps, "batch_size": 4, "eval_every": eval_every, "val_examples": 8, "test_examples": 12},
        "sources": {"tasks": [tasks["src_a"], tasks["src_b"]], "shots": 16, "steps": 3, "settings": PS,
                    "targets": {tasks["target"]: [tasks["src_a"], tasks["src_b"]]}, **extra.pop("sources", {})},
        "methods": methods, **extra}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True))
    return str(path)


def tiny_suite_file(tmp_path: Path, tiny_models, toy_task, **overrides) -> Path:
    """A two-seed suite on the tiny llama: pt, the untrained origin and no prompt on the toy task."""
    body = {
        "name": "tiny",
        "backbone": {"model": str(tiny_models["llama"])},
        "tasks": [str(toy_task)],
        "shots": [16],
        "seeds": [0, 1],
        "origins": [0],
        "budget": {"steps": 4, "batch_size": 4, "eval_every": 2, "val_examples": 8, "test_examples": 16},
        "methods": [{"name": "pt", "label": "PT", "settings": {"prompt_length": 3, "lr": 0.05}},
                    {"name": "zero", "label": "origin", "settings": {"prompt": "origin", "prompt_length": 3}},
                    {"name": "zero", "label": "no prompt", "settings": {"prompt": "none"}}],
        "stats": {"baseline": "origin"},
    } | overrides
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def answer_rows(n: int, seed: int) -> list[dict]:
    """Free-text rows: a toy review and its sentiment word as the answer (a list: several allowed);
    every fifth row has no answer (an unanswerable question)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if i % 2 else NEGATIVE)]
        rng.shuffle(words)
        key = [w for w in words if w in POSITIVE + NEGATIVE]
        rows.append({"text": " ".join(words), "answers": [] if i % 5 == 4 else key})
    return rows


GENERATION_YAML = """\
task: {name}
group: toy-qa
data_files:
  train: answers_train.jsonl
  validation: answers_validation.jsonl
  test: answers_test.jsonl
output_type: generate_until
doc_to_text: "{word}: {{{{text}}}}\\nAnswer:"
doc_to_target: answers
no_answer_target: none
generation_kwargs:
  max_gen_toks: 4
  until: ["\\n"]
metric_list:
  - metric: squad_f1
  - metric: exact_match
"""


@pytest.fixture(scope="session")
def toy_generation_tasks(tmp_path_factory) -> dict[str, str]:
    """Three free-text tasks (same toy data, different names and templates): two sources and a target."""
    folder = tmp_path_factory.mktemp("toy_generation")
    for split, (n, seed) in {"train": (48, 1), "validation": (12, 2), "test": (16, 3)}.items():
        write_jsonl(folder / f"answers_{split}.jsonl", answer_rows(n, seed))
    paths = {}
    for name, word in (("gen_a", "Review"), ("gen_b", "Text"), ("gen_target", "Opinion")):
        (folder / f"{name}.yaml").write_text(GENERATION_YAML.format(name=name, word=word), encoding="utf-8")
        paths[name] = str(folder / f"{name}.yaml")
    return paths


def tiny_recipe():
    """The library recipe shrunk for tiny models (imported late: HF_HUB_OFFLINE must be set first)."""
    from promptvec.experiments.library_build import LibraryRecipe

    return LibraryRecipe(shots=16, steps=4, lr=0.05, prompt_length=3, batch_size=4, eval_every=2, val_examples=8,
                         test_examples=12, max_length=64)


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory, tiny_models, toy_tasks):
    """A library of the two toy source tasks on the tiny llama, built as `promptvec library build` does."""
    from promptvec.experiments.library_build import library_suite, package_library
    from promptvec.experiments.runner import run_suite

    root = tmp_path_factory.mktemp("library")
    suite = library_suite(str(tiny_models["llama"]), [toy_tasks["src_a"], toy_tasks["src_b"]], tiny_recipe())
    outcome = run_suite(suite, root / "runs", progress=False, log=lambda m: None)
    assert outcome.completed == 4  # two sources, two no-prompt scores
    return package_library(suite, root / "runs", root / "lib")


def random_batch(size: int, task: str = "toy_sentiment"):
    """A batch of random token ids (the first row partly padded) for module-level tests."""
    from promptvec.backbones.base import Batch

    ids = torch.randint(5, 50, (size, 6))
    mask = torch.ones(size, 6, dtype=torch.long)
    mask[0, :2] = 0
    return Batch(ids, mask, torch.zeros(size, dtype=torch.long), task=task)


def dynamic_modules(backbone, rows=3) -> dict:
    """One seeded DTVG, ATTEMPT and Fusion module on ``backbone`` (two sources, ``rows`` rows)."""
    from promptvec.methods.attempt import AttemptPrompt
    from promptvec.methods.dtvg import DTVGPrompt
    from promptvec.methods.fusion import FusionPrompt

    d = backbone.dim
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(2, rows, d, generator=g) * 0.1
    return {
        "dtvg": DTVGPrompt(torch.randn(rows, d, generator=g) * 0.1, torch.randn(rows, d, generator=g) * 0.1,
                           sources, ["a", "b"], "all"),
        "attempt": AttemptPrompt(sources, torch.randn(rows, d, generator=g) * 0.1, ["a", "b"]).bind(backbone),
        "fusion": FusionPrompt(torch.randn(4, rows, d, generator=g) * 0.1, torch.randn(2, d, generator=g),
                               ["toy_sentiment", "other"], private=True).bind(backbone),
    }
