"""Each backbone family trains (loss falls), evaluates, and scores labels correctly."""

from __future__ import annotations

import pytest
import torch

from promptvec.encoding import EncodingSpec
from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.tasks import TaskSpec, get_task, load_task_data
from promptvec.vectors import Origin

FAMILIES = {"llama": "causal", "gpt2": "causal", "t5": "seq2seq", "bert": "encoder"}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_detected(backbones, name):
    assert backbones[name].family == FAMILIES[name]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_loss_falls_and_only_the_prompt_gets_gradients(backbones, toy_task, name):
    backbone = backbones[name]
    task = get_task(str(toy_task))
    data = load_task_data(task)
    encoded = backbone.encode(task, data.train[:16], 8)
    batch = backbone.collate(task, encoded, train=True)
    prompt = torch.nn.Parameter(Origin.sample(backbone, 8, 0).tensor(backbone))
    optimizer = torch.optim.Adam([prompt], lr=0.1)
    losses = []
    for _ in range(40):
        loss = backbone.loss(task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.model.parameters())


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_shared_prefix_rank_scores_match_full_forward(backbones, toy_task, name):
    """Scores from one prefix pass + cached continuations equal a full forward per label."""
    backbone = backbones[name]
    base = get_task(str(toy_task))
    task = TaskSpec(**(base.model_dump() | {"task": "toy_multi", "doc_to_choice": ["very bad indeed", "good"]}))
    data = load_task_data(task)
    prompt = Origin.sample(backbone, 5, 1).tensor(backbone)
    encoded = backbone.encode(task, data.test[:6], 5)
    batch = backbone.collate(task, encoded, train=False)
    scores = backbone.label_scores(task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
    labels = backbone.label_set(task).token_ids
    assert max(len(lab) for lab in labels) > 1  # multi-token label exercised
    embed = backbone.embedding
    for row, item in enumerate(encoded):
        for c, lab in enumerate(labels):
            ids = torch.tensor([item.input_ids + lab])
            embeds = torch.cat([prompt.unsqueeze(0), embed(ids)], dim=1)
            with torch.no_grad():
                logits = backbone.model(inputs_embeds=embeds).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            start = prompt.shape[0] + len(item.input_ids)
            expected = sum(logp[start - 1 + j, tok].item() for j, tok in enumerate(lab))
            assert scores[row, c].item() == pytest.approx(expected, abs=1e-4)


def test_seq2seq_rank_scores_match_decoder_loss(backbones, toy_task):
    backbone = backbones["t5"]
    task = get_task(str(toy_task))
    data = load_task_data(task)
    prompt = Origin.sample(backbone, 4, 0).tensor(backbone)
    encoded = backbone.encode(task, data.test[:3], 4)
    batch = backbone.collate(task, encoded, train=False)
    scores = backbone.label_scores(task, batch, prompt.unsqueeze(0).expand(batch.size, -1, -1))
    for row, item in enumerate(encoded):
        for c, lab in enumerate(backbone.label_set(task).token_ids):
            ids = torch.tensor([item.input_ids])
            embeds = torch.cat([prompt.unsqueeze(0), backbone.embedding(ids)], dim=1)
            with torch.no_grad():
                out = backbone.model(inputs_embeds=embeds, labels=torch.tensor([lab]))
            assert scores[row, c].item() == pytest.approx(-out.loss.item() * len(lab), abs=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_evaluate_rank_never_invalid(backbones, toy_task, name):
    task = get_task(str(toy_task))
    data = load_task_data(task)
    result = evaluate(backbones[name], task, data.test, Origin.sample(backbones[name], 4, 0).tensor(backbones[name]))
    assert result.invalid == 0 and result.n == len(data.test)
    assert set(result.predictions) <= {"negative", "positive"}
    assert 0.0 <= result.metrics["acc"] <= 1.0


@pytest.mark.parametrize("name", ["llama", "gpt2", "t5"])
def test_generation_mode_counts_invalid_outputs(backbones, toy_task, name):
    task = get_task(str(toy_task))
    data = load_task_data(task)
    result = evaluate(backbones[name], task, data.test[:8], None, mode="generate")
    # a random tiny model does not produce label words: every output is invalid and scored wrong
    valid = [p for p in result.predictions if p != "<invalid>"]
    assert result.invalid == 8 - len(valid)
    correct = sum(p == e.label for p, e in zip(result.predictions, data.test[:8], strict=True))
    assert result.metrics["acc"] == pytest.approx(correct / 8)


def test_encoder_refuses_generation(backbones, toy_task):
    task = get_task(str(toy_task))
    with pytest.raises(ConfigError, match=r"needs a backbone that decodes \(causal/seq2seq\), not a encoder"):
        evaluate(backbones["bert"], task, load_task_data(task).test[:2], None, mode="generate")


def test_input_is_truncated_never_the_label(backbones, toy_task):
    backbone = backbones["llama"]
    task = get_task(str(toy_task))
    from promptvec.tasks import Example

    long = Example({"text": "the movie " * 400}, "positive", "x", task.render({"text": "the movie " * 400}))
    short = backbone.with_encoding(EncodingSpec(max_length=64))
    [item] = short.encode(task, [long], 10)
    label = short.label_set(task).token_ids[1]
    assert len(item.input_ids) + 10 + len(label) <= 64
    assert short.tokenizer.decode(item.input_ids).endswith("Sentiment:")
    assert backbone.max_length == 256 and len(backbone.encode(task, [long], 10)[0].input_ids) > 64  # not changed


def test_origin_is_reproducible_and_ordinary(backbones):
    backbone = backbones["llama"]
    a, b, c = Origin.sample(backbone, 6, 3), Origin.sample(backbone, 6, 3), Origin.sample(backbone, 6, 4)
    assert a == b and a != c
    assert torch.equal(a.tensor(backbone), b.tensor(backbone))
    special = set(backbone.tokenizer.all_special_ids)
    assert not special & set(a.token_ids)
    assert Origin.from_dict(a.to_dict()) == a


def test_chat_template_wraps_the_input(backbones, toy_task):
    backbone = backbones["llama"]
    task = get_task(str(toy_task))
    example = load_task_data(task).test[0]
    chat = backbone.with_encoding(EncodingSpec(chat_template=True))
    with pytest.raises(ConfigError, match="no chat template"):
        chat.encode(task, [example], 2)
    backbone.tokenizer.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}"
    try:
        [item] = chat.encode(task, [example], 2)
        assert chat.tokenizer.decode(item.input_ids).startswith("<user>Review:")
        assert not backbone.chat_template and not backbone.tokenizer.decode(
            backbone.encode(task, [example], 2)[0].input_ids).startswith("<user>")
    finally:
        backbone.tokenizer.chat_template = None


def test_a_trainer_never_changes_the_backbone_it_was_lent(backbones, toy_task, tmp_path):
    """A suite worker caches one backbone for all its runs: a run with other encoding settings works on
    a view, so the next run (and the caller) sees the backbone as it was."""
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import Trainer

    backbone = backbones["llama"]
    backbone.tokenizer.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}"
    try:
        config = TrainConfig(model=backbone.name, task=str(toy_task), shots=8, max_steps=1, max_length=64,
                             chat_template=True, prompt_length=3, val_examples=4, test_examples=4)
        trainer = Trainer(config, tmp_path / "run", backbone=backbone, progress=False)
        assert trainer.backbone.encoding == EncodingSpec(64, True) and trainer.backbone.model is backbone.model
        assert backbone.encoding == EncodingSpec()  # the lent backbone: unchanged
        same = Trainer(config.model_copy(update={"max_length": 256, "chat_template": False}), tmp_path / "r2",
                       backbone=backbone, progress=False)
        assert same.backbone is backbone  # equal settings: no view needed
    finally:
        backbone.tokenizer.chat_template = None


def test_every_family_describes_itself_and_unknown_families_are_refused_with_the_list():
    """What other modules ask a family: its transformers class, its PEFT task type, detection and
    capabilities — every registered family answers, with names the two libraries know."""
    import transformers
    from peft import TaskType

    from promptvec.backbones import BACKBONES, detect_family
    from promptvec.training.config import TrainConfig

    assert set(BACKBONES) >= {"causal", "seq2seq", "encoder"}
    for name, family in BACKBONES.items():
        assert family.family == name and hasattr(transformers, family.auto_model_class)
        assert family.peft_task_type in {t.value for t in TaskType}
    assert [n for n, f in BACKBONES.items() if f.serves_lm_eval] == ["causal"]
    assert sorted(n for n, f in BACKBONES.items() if f.generates_text) == ["causal", "seq2seq"]
    configs = {"causal": transformers.LlamaConfig(), "seq2seq": transformers.T5Config(),
               "encoder": transformers.BertConfig()}
    for expected, config in configs.items():
        config.architectures = None  # detection from the model type alone
        assert detect_family(config) == expected
    with pytest.raises(ValueError, match="casual.*causal"):
        TrainConfig(task="sst2", family="casual")
