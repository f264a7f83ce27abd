"""Packing (promptvec.backbones.packing): a batch with a shared prompt runs as one sequence without
padding — training with the padded batch's loss and gradient, ranking with its label scores (labels of
several tokens on their own branches) — on tiny Llama, Qwen2 and GPT-2, rows of mixed lengths, the prompt
from its cache or inline in the packed pass, attention one example at a time
(promptvec.backbones.block_attention) or under the whole sequence's mask; a model that cannot take the
packed mask keeps the padded path, saying so once."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from promptvec.backbones import load_backbone
from promptvec.backbones.block_attention import block_attention
from promptvec.backbones.causal import CausalLMBackbone
from promptvec.backbones.packing import PackedRows, attention_window, forward_flops
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


def under_whole_mask(backbone: CausalLMBackbone) -> CausalLMBackbone:
    """The backbone on a copy of its model that runs transformers' SDPA attention: a packed pass then
    attends under the whole sequence's mask (what a model on eager attention does too)."""
    view = copy.copy(backbone)
    view.model = copy.deepcopy(backbone.model)
    view.model.set_attn_implementation("sdpa")
    assert backbone.attends_by_block and not view.attends_by_block
    return view


ATTENTION = {"by block": lambda backbone: backbone, "whole mask": under_whole_mask}


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_a_packed_batch_has_the_padded_batch_s_loss_and_gradient(causal_models, toy_task, name, attention):
    backbone = ATTENTION[attention](causal_models[name])
    task = get_task(str(toy_task))
    encoded = backbone.encode(task, load_task_data(task).train[:8], 5)
    encoded[0].input_ids = encoded[0].input_ids * 4  # one long row: packing saves work even at these tiny widths
    batch = backbone.collate(task, encoded, train=True)
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
    assert backbone.runs_packed(batch, prompt)  # used in training
    assert torch.equal(backbone.loss(task, batch, prompt), backbone._packed_loss(batch, prompt))


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
    """Under the whole packed mask, packing removes padding but makes attention quadratic in the whole batch:
    SmolLM2's shapes at batch 8 of sst2 (251 of 408 positions real) pack; batch 16 of equal 64-token rows
    does not (no padding to save, 16× the attention pairs) — measured 1.9× slower per step packed. With
    attention by block, the padding alone decides."""
    from transformers import LlamaConfig

    smollm2 = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)

    def rows(*lengths: int) -> list[list[int]]:
        return [[1] * n for n in lengths]

    sst2 = PackedRows.for_training(rows(20, 24, 28, 30, 33, 36, 36, 52), [1] * 8)  # each row's last token not fed
    assert sst2.length == 251 and sst2.rows * sst2.width == 408 and sst2.pays(20, smollm2)
    assert not PackedRows.for_training(rows(*[64] * 16), [1] * 16).pays(50, smollm2)
    assert not PackedRows.for_training(rows(*[40] * 8), [1] * 8).pays(20, smollm2)  # nothing to remove
    # ranking counts the padded path's continuation pass too: two-token labels on equal rows still do not pack
    assert not PackedRows.for_ranking(rows(*[40] * 8), [[5, 6], [7, 8]]).pays(20, smollm2)
    # ranking batches measured on SmolLM2 (evaluator's length-sorted batches, R 20): trec at batch 32 (375 of 448
    # positions real) ranked in 0.83× the padded time packed; agnews at batch 32 (1,330 of 1,632) took 1.16×
    trec = PackedRows.for_ranking(rows(*[11] * 24, *[14] * 8), [[5]] * 6)
    assert (trec.length, trec.rows * trec.width) == (376, 448) and trec.pays(20, smollm2)
    agnews = PackedRows.for_ranking(rows(*[40] * 16, *[43] * 8, *[51] * 6, 20, 20), [[5]] * 4)
    assert (agnews.length, agnews.rows * agnews.width) == (1330, 1632) and not agnews.pays(20, smollm2)
    # attention one example at a time costs what the padded batch's does: the padding the linear layers skip
    # decides, and a tie packs (no padding: the training prompt runs inline in the packed pass)
    assert agnews.pays(20, smollm2, blocked=True) and sst2.pays(20, smollm2, blocked=True)
    assert PackedRows.for_training(rows(*[64] * 16), [1] * 16).pays(50, smollm2, blocked=True)
    # a block holds its example's branches too: on equal rows, two-token labels make it the wider
    assert not PackedRows.for_ranking(rows(*[40] * 8), [[5, 6], [7, 8]]).pays(20, smollm2, blocked=True)
    _, blocked = sst2.flops(20, smollm2, blocked=True)
    assert blocked.attention == forward_flops(smollm2, 8 * 51, 20 + 51).attention  # 8 blocks of the longest row fed


def test_a_sliding_window_is_read_from_the_model_s_config():
    """Mistral's window holds in every layer; Qwen2's only where a layer is marked sliding (none by default)."""
    from transformers import MistralConfig, Qwen2Config

    assert attention_window(MistralConfig(sliding_window=4096)) == 4096
    assert attention_window(MistralConfig(sliding_window=None)) is None
    assert attention_window(Qwen2Config()) is None
    assert attention_window(Qwen2Config(use_sliding_window=True, sliding_window=64, max_window_layers=0)) == 64
    # each row's last token is not fed: rows of 9 and 6 span 8 positions after the prompt
    packed = PackedRows.for_training([[1] * 9, [1] * 6], [1, 1])
    assert packed.span == 8 and PackedRows.for_ranking([[1] * 4], [[5, 6, 7]]).span == 6  # a branch numbers on
    assert packed.within_window(2, MistralConfig(sliding_window=10))
    assert not packed.within_window(3, MistralConfig(sliding_window=10))


@pytest.mark.parametrize("window", [64, 8])
def test_an_example_beyond_the_sliding_window_runs_padded(tiny_tokenizer_dir, toy_task, window):
    """Packed attention knows no window. Within the window a packed batch has the padded batch's loss; once an
    example and its prompt outgrow it, packing would change the loss, so the batch runs padded, under the
    model's own masks (equal rows: the padded batch is each example computed alone)."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
                                             sliding_window=window, initializer_range=0.2))
    backbone = CausalLMBackbone(model.eval(), tokenizer, name=f"tiny-mistral-{window}")
    task = get_task(str(toy_task))
    encoded = [e for e in backbone.encode(task, load_task_data(task).train[:16], 5) if e.label_index == 0][:4]
    for example in encoded:
        example.input_ids = (example.input_ids * 8)[:12]
    batch = backbone.collate(task, encoded, train=True)
    assert len(encoded) == 4 and bool(batch.attention_mask.all())
    prompt = torch.randn(5, backbone.dim, generator=torch.Generator().manual_seed(1)) * 0.3
    packed, padded = backbone._packed_loss(batch, prompt), backbone._padded_loss(batch, prompt)
    fits = 5 + batch.packed.span <= window
    assert fits == (window == 64) and backbone.packs_batches
    assert torch.allclose(packed, padded, atol=1e-5) == fits  # beyond the window, packing is not exact
    assert backbone.runs_packed(batch, prompt) == fits
    assert torch.equal(backbone.loss(task, batch, prompt), packed if fits else padded)


LAYOUTS = {"training": PackedRows.for_training([[5, 6, 7, 8, 9], [1, 2], [3, 4, 5, 6, 7, 8, 9, 9]], [2, 1, 1]),
           "ranking": PackedRows.for_ranking([[5, 6, 7, 8], [1, 2], [3, 4, 5, 6, 7, 8, 9]],
                                             [[10, 11], [12], [13, 14, 15]])}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("prompt", ["inline", "cached", "none"])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_attention_one_example_at_a_time_is_attention_under_the_packed_mask(layout, prompt, kv_heads):
    """Output and gradients (queries, keys, values) of block attention equal SDPA under the whole packed mask
    — examples of different lengths, label branches, the prompt's keys cached, inline (its own rows attending
    causally) or absent, grouped-query keys or one per head."""
    packed = LAYOUTS[layout]
    rows = 0 if prompt == "none" else 3
    inline = prompt == "inline"
    heads, dim, generator = 4, 8, torch.Generator().manual_seed(4)
    query = torch.randn(1, heads, packed.length + (rows if inline else 0), dim, generator=generator)
    key, value = (torch.randn(1, kv_heads, rows + packed.length, dim, generator=generator) for _ in range(2))
    inputs = [t.requires_grad_(True) for t in (query, key, value)]
    module = torch.nn.Module()
    module.num_key_value_groups = heads // kv_heads
    ours, _ = block_attention(module, *inputs, None, promptvec_blocks=packed.blocks.after_prompt(rows))
    groups = heads // kv_heads
    whole = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1),
        attn_mask=packed.mask(rows, "sdpa", torch.float32, inline)).transpose(1, 2)
    assert ours.shape == whole.shape and torch.allclose(ours, whole, atol=1e-6)
    upstream = torch.randn(whole.shape, generator=generator)
    for a, b in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(whole, inputs, upstream),
                    strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
def test_a_packed_pass_attends_one_example_at_a_time(causal_models, toy_task, name, monkeypatch):
    """The backbone runs its model on block attention: a packed training step's attention sees blocks of one
    example per row (never the whole sequence as one row), and the whole sequence's mask is never built."""
    from torch.profiler import ProfilerActivity, profile

    backbone = causal_models[name]
    assert backbone.model.config._attn_implementation == "promptvec_sdpa"
    task = get_task(str(toy_task))
    batch = backbone.collate(task, backbone.encode(task, load_task_data(task).train[:6], 3), train=True)
    monkeypatch.setattr(PackedRows, "mask", lambda *args, **kwargs: pytest.fail("the whole mask was built"))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        backbone._packed_loss(batch, torch.zeros(3, backbone.dim, requires_grad=True)).backward()
    attention = [event.input_shapes[0] for event in prof.events()
                 if event.name == "aten::scaled_dot_product_attention"]
    layers = backbone.model.config.num_hidden_layers
    # per layer: the prompt's own rows (one sequence of 3), then the examples' blocks (6 rows)
    assert sorted(shape[0] for shape in attention) == [1] * layers + [6] * layers, attention


def test_packed_rows_put_each_label_on_its_own_branch_after_its_example():
    """Ranking rows [a b] and [c] on labels [x y] and [z]: the sequence is a b x | c x, the branch token x
    numbered on from its example's end, seeing its example (and the prompt) but no other example."""
    packed = PackedRows.for_ranking([[10, 11], [12]], [[20, 21], [22]])
    assert packed.ids.tolist() == [[10, 11, 20, 12, 20]]
    assert packed.positions(3).tolist() == [[3, 4, 5, 3, 4]]
    assert packed.keep.tolist() == [1, 2, 3, 4]  # each example's last token, each branch token
    # (kept position, token, pair): x after b, y after x, z after b; then the same for the second example
    assert list(zip(packed.read.tolist(), packed.token.tolist(), packed.pair.tolist(), strict=True)) == [
        (0, 20, 0), (1, 21, 0), (0, 22, 1), (2, 20, 2), (3, 21, 2), (2, 22, 3)]
    allowed = packed.mask(1, "sdpa", torch.float32)[0, 0].int().tolist()
    assert allowed == [[1, 1, 0, 0, 0, 0],
                       [1, 1, 1, 0, 0, 0],
                       [1, 1, 1, 1, 0, 0],
                       [1, 0, 0, 0, 1, 0],
                       [1, 0, 0, 0, 1, 1]]
    additive = packed.mask(1, "eager", torch.float32)[0, 0]
    assert torch.equal(additive == 0, torch.tensor(allowed, dtype=torch.bool))


def test_an_inline_prompt_comes_first_and_sees_only_its_own_earlier_rows():
    """Training runs the prompt in the packed pass itself: its R rows lead the sequence at positions
    0 … R − 1, attend causally among themselves (as when their keys/values are computed alone) and never
    to an example; every example still sees all of them."""
    packed = PackedRows.for_training([[10, 11, 14], [12, 13, 15]], [1, 1])
    # a row's last token (its label's last) is predicted by the position before it, and never fed
    assert packed.ids.tolist() == [[10, 11, 12, 13]]
    assert (packed.keep.tolist(), packed.token.tolist()) == ([1, 3], [14, 15])
    assert packed.positions(2, inline=True).tolist() == [[0, 1, 2, 3, 2, 3]]
    allowed = packed.mask(2, "sdpa", torch.float32, inline=True)[0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0],
                       [1, 1, 1, 0, 0, 0],
                       [1, 1, 1, 1, 0, 0],
                       [1, 1, 0, 0, 1, 0],
                       [1, 1, 0, 0, 1, 1]]


def two_branch_task(toy_task) -> str:
    """The toy task with labels of different token lengths, so ranking packs continuation branches."""
    body = toy_task.read_text().replace('doc_to_choice: ["negative", "positive"]',
                                        'doc_to_choice: ["very negative", "positive"]')
    path = toy_task.parent / "toy_branches.yaml"
    path.write_text(body.replace("task: toy_sentiment", "task: toy_branches"))
    return str(path)


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("rows", [5, 0])
def test_packed_ranking_gives_the_padded_label_scores(causal_models, toy_task, name, rows, attention):
    """Every label's log-likelihood from one packed pass (labels of different lengths on their branches)
    equals the padded pass with its cached continuations, with a shared prompt and with none."""
    backbone = ATTENTION[attention](causal_models[name])
    task = get_task(two_branch_task(toy_task))
    labels = backbone.label_set(task).token_ids
    assert len({len(lab) for lab in labels}) == 2 and max(len(lab) for lab in labels) > 1
    batch = backbone.collate(task, backbone.encode(task, load_task_data(task).test[:6], rows), train=False)
    assert len(set(batch.attention_mask.sum(1).tolist())) > 2
    raw = torch.randn(rows, backbone.dim, generator=torch.Generator().manual_seed(2)) * 0.3
    prompt = backbone.prepare_prompt(raw)
    padded = backbone._padded_label_scores(batch, prompt, labels)
    packed = backbone._packed_label_scores(batch, prompt, len(labels))
    assert torch.allclose(packed, padded, atol=1e-5)
    # the prompt inline, in the packed pass itself (as training runs it), scores the same
    assert torch.allclose(backbone._packed_label_scores(batch, raw, len(labels)), padded, atol=1e-5)
    batch.packed = dataclasses.replace(batch.packed, width=4 * batch.packed.width)  # make packing pay here
    assert torch.equal(backbone.label_scores(task, batch, prompt), packed)  # used in evaluation


def test_a_prompt_per_row_is_ranked_padded(causal_models, toy_task):
    """Packing needs one prompt for the whole batch: ``[B, R, d]`` prompts (ATTEMPT) keep the padded pass."""
    backbone = causal_models["llama"]
    task = get_task(two_branch_task(toy_task))
    batch = backbone.collate(task, backbone.encode(task, load_task_data(task).test[:4], 3), train=False)
    batch.packed = dataclasses.replace(batch.packed, width=4 * batch.packed.width)
    per_row = torch.randn(4, 3, backbone.dim, generator=torch.Generator().manual_seed(3))
    assert not backbone.runs_packed(batch, per_row)
    labels = backbone.label_set(task).token_ids
    padded = backbone._padded_label_scores(batch, per_row, labels)
    assert torch.equal(backbone.label_scores(task, batch, per_row), padded)
