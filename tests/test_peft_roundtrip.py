"""promptvec checkpoints are PEFT prompt-tuning adapters, and PEFT adapters load into promptvec."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, PromptTuningConfig, get_peft_model

from promptvec.peft_folder import load_prompt, save_prompt
from promptvec.tasks import get_task, load_task_data
from promptvec.vectors import Origin


def _fresh_model(path, family):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM
    return auto.from_pretrained(path).eval()


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_causal_checkpoint_gives_same_label_logits_in_peft(backbones, tiny_models, toy_task, tmp_path, name):
    backbone = backbones[name]
    task = get_task(str(toy_task))
    prompt = Origin.sample(backbone, 6, 2).tensor(backbone) + 0.01 * torch.randn(6, backbone.dim)
    save_prompt(tmp_path / "p", prompt, backbone, {"task": task.task})
    peft_model = PeftModel.from_pretrained(_fresh_model(tiny_models[name], "causal"), str(tmp_path / "p")).eval()
    examples = load_task_data(task).test[:4]
    encoded = backbone.encode(task, examples, 6)
    for item in encoded:  # unpadded, fp32, one example at a time
        batch = backbone.collate(task, [item], train=False)
        ours = backbone.label_scores(task, batch, prompt.unsqueeze(0))
        with torch.no_grad():
            logits = peft_model(input_ids=torch.tensor([item.input_ids])).logits[0, -1]
        theirs = torch.log_softmax(logits.float(), -1)[[lab[0] for lab in backbone.label_set(task).token_ids]]
        assert torch.allclose(ours[0], theirs, atol=1e-4)


def test_seq2seq_checkpoint_gives_same_label_logits_in_peft(backbones, tiny_models, toy_task, tmp_path):
    backbone = backbones["t5"]
    task = get_task(str(toy_task))
    prompt = Origin.sample(backbone, 5, 0).tensor(backbone)
    save_prompt(tmp_path / "p", prompt, backbone, {"task": task.task})
    peft_model = PeftModel.from_pretrained(_fresh_model(tiny_models["t5"], "seq2seq"), str(tmp_path / "p")).eval()
    for item in backbone.encode(task, load_task_data(task).test[:3], 5):
        batch = backbone.collate(task, [item], train=False)
        ours = backbone.label_scores(task, batch, prompt.unsqueeze(0))
        for c, lab in enumerate(backbone.label_set(task).token_ids):
            with torch.no_grad():
                out = peft_model(input_ids=torch.tensor([item.input_ids]), labels=torch.tensor([lab]))
            assert ours[0, c].item() == pytest.approx(-out.loss.item() * len(lab), abs=1e-4)


def test_peft_seq2seq_two_submodule_checkpoint_reads_encoder_half(backbones, tiny_models, tmp_path):
    model = _fresh_model(tiny_models["t5"], "seq2seq")
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=4))
    peft_model.save_pretrained(tmp_path / "peft")
    full = peft_model.get_prompt_embedding_to_save("default")
    assert full.shape[0] == 8  # PEFT's [2R, d] layout
    loaded = load_prompt(tmp_path / "peft", backbones["t5"])
    assert loaded.prompt.shape == (4, backbones["t5"].dim)
    assert torch.equal(loaded.prompt, full[:4].float())


def test_peft_trained_adapter_continues_training_in_promptvec(backbones, tiny_models, toy_task, tmp_path):
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    model = _fresh_model(tiny_models["llama"], "causal")
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    peft_model.save_pretrained(tmp_path / "peft")
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), init_prompt=str(tmp_path / "peft"),
                         max_steps=2, eval_every=2, batch_size=4, lr=0.01)
    record = train_prompt(config, tmp_path / "run", backbone=backbones["llama"], progress=False).record
    assert record["status"] == "completed"
    assert load_prompt(tmp_path / "run", backbones["llama"]).prompt.shape == (3, backbones["llama"].dim)
