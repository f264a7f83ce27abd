"""A prompt shared by the whole batch is computed once on decoder-only models: loss, prompt gradient,
label scores and generated text equal the per-example path (tiny random Llama, Qwen2 and GPT-2),
evaluation prepares it once, per-input prompts never take the shared path, and a model where sharing
is not exact falls back and says so."""

from __future__ import annotations

import warnings

import pytest
import torch

from promptvec.backbones import prefix as prefix_module
from promptvec.backbones.base import left_pad, pad_token_id
from promptvec.backbones.causal import CausalLMBackbone
from promptvec.evaluation import evaluate
from promptvec.methods.attempt import AttemptPrompt
from promptvec.prompts import StaticPrompt
from promptvec.tasks import TaskSpec, get_task, load_task_data
from promptvec.vectors import Origin


def _qwen2(vocab: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=1,
        tie_word_embeddings=False, initializer_range=0.2))


@pytest.fixture(scope="module")
def decoders(backbones, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    qwen = CausalLMBackbone(_qwen2(len(tokenizer)), tokenizer, name="tiny-qwen2")
    return {"llama": backbones["llama"], "qwen2": qwen, "gpt2": backbones["gpt2"]}


@pytest.fixture(scope="module")
def multi_token_task(toy_task):
    base = get_task(str(toy_task))
    return TaskSpec(**(base.model_dump() | {"task": "toy_multi", "doc_to_choice": ["very bad indeed", "good"]}))


def _batch(backbone, task, n=7, rows=5, train=True):
    encoded = backbone.encode(task, load_task_data(task).train[:n], rows)
    batch = backbone.collate(task, encoded, train=train)
    return batch, encoded


def _origin(backbone, rows=5):
    return Origin.sample(backbone, rows, 0).tensor(backbone)


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_loss_and_prompt_gradient_equal_the_per_example_path(decoders, multi_token_task, name):
    backbone = decoders[name]
    assert backbone.shares_prompt_exactly
    batch, encoded = _batch(backbone, multi_token_task)
    assert len({len(e.input_ids) for e in encoded}) > 1  # mixed lengths: padding between prompt and input
    assert max(len(t) for t in backbone.label_set(multi_token_task).token_ids) > 1  # multi-token labels
    grads, losses = {}, {}
    for path in ("shared", "per-example"):
        prompt = torch.nn.Parameter(_origin(backbone))
        given = prompt if path == "shared" else prompt.unsqueeze(0).expand(batch.size, -1, -1)
        loss = backbone.loss(multi_token_task, batch, given)
        loss.backward()
        losses[path], grads[path] = loss.item(), prompt.grad
    assert abs(losses["shared"] - losses["per-example"]) < 1e-5
    assert (grads["shared"] - grads["per-example"]).abs().max() < 1e-5
    assert grads["shared"].abs().sum() > 0


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_label_scores_and_generation_equal_the_per_example_path(decoders, multi_token_task, name):
    backbone = decoders[name]
    batch, _ = _batch(backbone, multi_token_task, train=False)
    prompt = _origin(backbone)
    with torch.no_grad():
        shared = backbone.label_scores(multi_token_task, batch, backbone.prepare_prompt(prompt))
        per_example = backbone.label_scores(multi_token_task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
        assert torch.allclose(shared, per_example, atol=1e-5, rtol=1e-6)  # scores of ~80: float32 rounding
        shared = backbone.generate(batch, backbone.prepare_prompt(prompt), 6)
        assert shared == backbone.generate(batch, prompt.unsqueeze(0).expand(batch.size, -1, -1), 6)


def test_evaluation_prepares_a_fixed_prompt_once(decoders, multi_token_task, monkeypatch):
    backbone = decoders["llama"]
    built = []
    original = prefix_module.SharedPrompt.__init__

    def counting(self, model, prompt):
        built.append(prompt.shape)
        original(self, model, prompt)

    monkeypatch.setattr(prefix_module.SharedPrompt, "__init__", counting)
    examples = load_task_data(multi_token_task).test[:20]
    module = StaticPrompt(_origin(backbone))
    result = evaluate(backbone, multi_token_task, examples, module, batch_size=4)  # 5 batches
    assert built == [(5, backbone.dim)]
    monkeypatch.setattr(backbone, "shares_prompt_exactly", False)  # the per-example path, for reference
    reference = evaluate(backbone, multi_token_task, examples, module, batch_size=4)
    assert built == [(5, backbone.dim)]
    assert torch.allclose(torch.tensor(result.scores), torch.tensor(reference.scores), atol=1e-5, rtol=0)


def test_a_prompt_that_depends_on_the_input_is_never_shared(decoders, multi_token_task, monkeypatch):
    backbone = decoders["llama"]
    sources = torch.stack([_origin(backbone), _origin(backbone) * 0.5])
    module = AttemptPrompt(sources, _origin(backbone), ["a", "b"]).bind(backbone)
    assert not AttemptPrompt.shares_prompt and StaticPrompt.shares_prompt

    def refuse(*args, **kwargs):
        raise AssertionError("a per-input prompt took the shared path")

    monkeypatch.setattr(prefix_module.SharedPrompt, "__init__", refuse)
    batch, _ = _batch(backbone, multi_token_task)
    prompt = module(batch)
    assert prompt.shape == (batch.size, 5, backbone.dim)
    backbone.loss(multi_token_task, batch, prompt).backward()
    evaluate(backbone, multi_token_task, load_task_data(multi_token_task).test[:6], module, batch_size=3)


def test_a_model_that_cannot_share_exactly_falls_back_and_says_so(tiny_models, multi_token_task):
    from promptvec.backbones import load_backbone

    backbone = load_backbone(str(tiny_models["llama"]))
    model_forward = backbone.model.forward

    def no_cache(*args, **kwargs):  # a model that cannot continue from a given cache
        if kwargs.get(prefix_module.cache_kwarg(backbone.model)) is not None:
            raise NotImplementedError("no cache continuation")
        return model_forward(*args, **kwargs)

    backbone.model.forward = no_cache
    batch, _ = _batch(backbone, multi_token_task)
    prompt = _origin(backbone)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = backbone.loss(multi_token_task, batch, prompt)
        backbone.loss(multi_token_task, batch, prompt)
    messages = [str(w.message) for w in caught if "cannot share one prompt" in str(w.message)]
    assert len(messages) == 1 and "NotImplementedError" in messages[0]  # said once, with the reason
    assert not backbone.shares_prompt_exactly
    expected = backbone.loss(multi_token_task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
    assert torch.equal(fallback, expected)


def test_training_with_accumulation_ends_where_the_per_example_path_ends(decoders, tiny_models, toy_task, tmp_path,
                                                                         monkeypatch):
    from promptvec.peft_folder import load_prompt
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    backbone = decoders["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=4, eval_every=2,
                         batch_size=5, grad_accum=2, lr=0.05, prompt_length=4, select_initial=False)
    shared = train_prompt(config, tmp_path / "shared", backbone=backbone, progress=False).record
    monkeypatch.setattr(backbone, "shares_prompt_exactly", False)
    per_example = train_prompt(config, tmp_path / "per-example", backbone=backbone, progress=False).record
    a, b = (load_prompt(tmp_path / name, backbone).prompt for name in ("shared", "per-example"))
    assert (a - b).abs().max() < 1e-4
    assert shared["test"]["metrics"] == per_example["test"]["metrics"]
    assert [h["train_loss"] for h in shared["history"]] == pytest.approx(
        [h["train_loss"] for h in per_example["history"]], abs=1e-5)


def test_bf16_autocast_keeps_the_shared_path_close(decoders, multi_token_task):
    backbone = decoders["llama"]
    batch, _ = _batch(backbone, multi_token_task)
    prompt = _origin(backbone)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        shared = backbone.loss(multi_token_task, batch, prompt)
        per_example = backbone.loss(multi_token_task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
    assert abs(shared.item() - per_example.item()) < 0.05 * abs(per_example.item())


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_loss_is_the_models_own_loss_on_the_label_tokens(decoders, multi_token_task, name):
    """Independent reference: the model's own shifted cross-entropy over [prompt; input; label] with
    every position but the label tokens ignored (what PEFT computes, without the logits shortcut)."""
    backbone = decoders[name]
    batch, encoded = _batch(backbone, multi_token_task)
    prompt = _origin(backbone)
    rows, size = prompt.shape[0], batch.size
    label_ids = [backbone.label_set(multi_token_task).token_ids[item.label_index] for item in encoded]
    # the whole sequences, label included (the batch itself does not feed a label's last token)
    ids, input_mask = left_pad([item.input_ids + label for item, label in zip(encoded, label_ids, strict=True)],
                               pad_token_id(backbone.tokenizer))
    labels = torch.full((size, rows + ids.shape[1]), -100)
    for row, label in enumerate(label_ids):
        labels[row, -len(label):] = torch.tensor(label)
    mask = torch.cat([input_mask.new_ones(size, rows), input_mask], dim=1)
    embeds = torch.cat([prompt.expand(size, -1, -1), backbone.input_embeds(ids)], dim=1)
    with torch.no_grad():
        reference = backbone.model(inputs_embeds=embeds, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(
            min=0), labels=labels).loss
        ours = backbone.loss(multi_token_task, batch, prompt)
    assert abs(ours.item() - reference.item()) < 1e-5


@pytest.mark.parametrize("per_input", [False, True], ids=["shared prompt", "a prompt per input"])
def test_the_padded_loss_projects_the_vocabulary_with_one_matrix_product(decoders, multi_token_task, per_input):
    """The padded batch's logits at its label positions come from one matrix product against the vocabulary,
    forward and backward. A strided slice of hidden states that need gradients makes torch's matmul broadcast
    the projection's weight over the batch instead (a batched product reading it once per row: 6× slower at
    batch 16 on SmolLM2), so the positions are asked for by index."""
    from torch.profiler import ProfilerActivity, profile

    backbone = decoders["llama"]
    batch, _ = _batch(backbone, multi_token_task)
    vocab = backbone.model.config.vocab_size
    prompt = torch.nn.Parameter(_origin(backbone))
    given = prompt.unsqueeze(0).expand(batch.size, -1, -1) if per_input else prompt
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        backbone._padded_loss(batch, given).backward()  # the path a batch takes when packing it saves no work
    products = [(event.name, event.input_shapes) for event in prof.events()
                if event.name in ("aten::mm", "aten::bmm")
                and any(vocab in shape for shape in event.input_shapes if isinstance(shape, list))]
    assert {name for name, _ in products} == {"aten::mm"}, products
    assert len(products) >= 2  # the projection forward and its input gradient
