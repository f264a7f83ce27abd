"""Packing (promptvec.backbones.packing): a training batch with a shared prompt runs as one sequence
without padding, with the padded batch's loss and gradient — on tiny Llama, Qwen2 and GPT-2, rows of
mixed lengths — and a model that cannot take the packed mask keeps the padded path, saying so once."""

from __future__ import annotations

import copy

import pytest
import torch

from promptvec.backbones import load_backbone
from promptvec.backbones.causal import CausalLMBackbone
from promptvec.tasks import get_task, load_task_data


@pytest.fixture(scope="module")
def causal_models(tiny_models, tiny_tokenizer_dir):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
                                        initializer_range=0.2))
    return {"llama": load_backbone(str(tiny_models["llama"])), "gpt2": load_backbone(str(tiny_models["gpt2"])),
            "qwen2": CausalLMBackbone(qwen.eval(), tokenizer, name="tiny-qwen2")}


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_a_packed_batch_has_the_padded_batch_s_loss_and_gradient(causal_models, toy_task, name):
    backbone = causal_models[name]
    task = get_task(str(toy_task))
    examples = load_task_data(task).train[:8]
    batch = backbone.collate(task, backbone.encode(task, examples, 5), train=True)
    lengths = batch.attention_mask.sum(1)
    assert len(set(lengths.tolist())) > 2  # mixed lengths: the padded batch really pads
    start = torch.randn(5, backbone.dim, generator=torch.Generator().manual_seed(1)) * 0.3

    def loss_and_grad(packed: bool):
        prompt = start.clone().requires_grad_(True)
        loss = (backbone._packed_loss if packed else backbone._padded_loss)(batch, prompt)
        loss.backward()
        return loss.detach(), prompt.grad

    padded, packed = loss_and_grad(False), loss_and_grad(True)
    assert torch.allclose(packed[0], padded[0], atol=1e-5) and torch.allclose(packed[1], padded[1], atol=1e-5)
    assert backbone.packs_batches  # the one-time check agrees
    prompt = start.clone()
    assert torch.equal(backbone.loss(task, batch, prompt), backbone._packed_loss(batch, prompt))  # used in training


def test_a_model_whose_attention_takes_no_custom_mask_keeps_the_padded_batch(tiny_models, toy_task):
    backbone = load_backbone(str(tiny_models["llama"]))
    backbone.model = copy.deepcopy(backbone.model)
    assert backbone.shares_prompt_exactly
    backbone.model.config._attn_implementation = "flash_attention_2"  # takes no 4-D mask (not run: not installed)
    with pytest.warns(UserWarning, match="cannot pack a batch without padding exactly"):
        assert not backbone.packs_batches
    backbone.model.config._attn_implementation = "sdpa"  # runnable here; the decision stays made
    task = get_task(str(toy_task))
    batch = backbone.collate(task, backbone.encode(task, load_task_data(task).train[:4], 3), train=True)
    prompt = torch.zeros(3, backbone.dim)
    assert torch.equal(backbone.loss(task, batch, prompt), backbone._padded_loss(batch, prompt))


def test_the_first_loss_under_no_grad_still_lets_training_pack(tiny_models, toy_task, recwarn):
    """``init auto`` scores its candidates with the training loss under ``no_grad`` before training, so
    the one-time packing check may run there: it takes its own gradients and still finds packing exact."""
    backbone = load_backbone(str(tiny_models["llama"]))
    task = get_task(str(toy_task))
    batch = backbone.collate(task, backbone.encode(task, load_task_data(task).train[:4], 3), train=True)
    with torch.no_grad():
        backbone.loss(task, batch, torch.zeros(3, backbone.dim))
    assert backbone.packs_batches
    assert not [w for w in recwarn if "cannot pack" in str(w.message)]


def test_a_batch_is_packed_only_when_that_saves_work():
    """Packing removes padding but makes attention quadratic in the whole batch: SmolLM2's shapes at
    batch 8 of sst2 (259 of 416 positions real) pack; batch 16 of equal 64-token rows does not (no
    padding to save, 16× the attention pairs) — measured 1.9× slower per step packed."""
    from transformers import LlamaConfig

    from promptvec.backbones.packing import packing_pays

    smollm2 = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)
    sst2 = torch.zeros(8, 52, dtype=torch.long)
    for row, length in enumerate([20, 24, 28, 30, 33, 36, 36, 52]):  # 259 real positions
        sst2[row, 52 - length:] = 1
    assert int(sst2.sum()) == 259 and packing_pays(sst2, 20, smollm2)
    assert not packing_pays(torch.ones(16, 64, dtype=torch.long), 50, smollm2)
    assert not packing_pays(torch.ones(8, 40, dtype=torch.long), 20, smollm2)  # nothing to remove
