"""Dynamic Prompt Fusion (docs/methods.md §7): unknown tasks refused, uncertainty loss weights,
mixed-task batches (deterministic, resumable, weighted) and an exact resume of a mixed-task run."""

from __future__ import annotations

import pytest
import torch

from promptvec.batching import MixedTaskBatches, TaskMixing
from promptvec.errors import ConfigError
from promptvec.methods.fusion import FusionPrompt
from promptvec.prompts import load_module
from promptvec.suites.run_logs import module_log
from promptvec.tasks import get_task
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer
from tests.conftest import dynamic_modules, random_batch


def test_fusion_refuses_an_unknown_task(backbones):
    module = dynamic_modules(backbones["llama"])["fusion"]
    with pytest.raises(ConfigError, match="not on 'elsewhere'"):
        module(random_batch(2, task="elsewhere"))


def test_fusion_loss_weights_are_uncertainty_weighting(backbones):
    module = dynamic_modules(backbones["llama"])["fusion"]
    with torch.no_grad():
        module.loss_log_vars.copy_(torch.tensor([0.0, 1.0]))
    losses = {"toy_sentiment": torch.tensor(2.0), "other": torch.tensor(3.0)}
    loss = module.combine_losses(losses, {"toy_sentiment": 1, "other": 7})
    assert loss.item() == pytest.approx(2.0 + 0 + 3.0 * torch.exp(torch.tensor(-1.0)).item() + 1.0)


# ---- mixed-task batches -----------------------------------------------------------------------------
def test_mixed_batches_are_deterministic_resumable_and_weighted():
    groups = [0] * 10 + [1] * 100 + [2] * 1000
    a = MixedTaskBatches(groups, 16, seed=3, mixing=TaskMixing(cap=100))
    first = [a.next() for _ in range(5)]
    b = MixedTaskBatches(groups, 16, seed=3, mixing=TaskMixing(cap=100))
    b.load_state({"position": 2})
    assert b.next() == first[2]
    drawn = [groups[i] for _ in range(300) for i in a.next()]
    share = [drawn.count(g) / len(drawn) for g in range(3)]
    assert share[0] == pytest.approx(10 / 210, abs=0.02) and share[1] == pytest.approx(100 / 210, abs=0.03)
    even = MixedTaskBatches(groups, 16, seed=3, mixing=TaskMixing(first_share=0.5))
    drawn = [groups[i] for _ in range(300) for i in even.next()]
    assert drawn.count(0) / len(drawn) == pytest.approx(0.5, abs=0.03)
    assert all(batch == sorted(batch, key=lambda i: groups[i]) for batch in first)  # grouped by task


class Stop(Exception):
    pass


def test_a_mixed_task_fusion_run_resumes_to_the_same_module(backbones, tiny_models, toy_tasks, tmp_path):
    backbone = backbones["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=toy_tasks["target"], extra_tasks=[toy_tasks["src_a"]],
                         shots=8, extra_shots=16, max_steps=5, eval_every=2, batch_size=4, lr=0.05, prompt_length=3,
                         val_examples=8, test_examples=8)
    names = [get_task(toy_tasks["target"]).task, get_task(toy_tasks["src_a"]).task]

    def module():
        g = torch.Generator().manual_seed(1)
        return FusionPrompt(torch.randn(3, 3, backbone.dim, generator=g) * 0.1,
                            torch.randn(2, backbone.dim, generator=g), names, mixing=TaskMixing(first_share=0.5))

    whole = Trainer(config, tmp_path / "whole", backbone=backbone, prompt_module=module(), progress=False).train()

    def interrupt(step):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        Trainer(config, tmp_path / "cut", backbone=backbone, prompt_module=module(), progress=False,
                on_step=interrupt).train()
    resumed = Trainer(config, tmp_path / "cut", backbone=backbone, prompt_module=module(),
                      progress=False).train(resume=True)
    # the module's own choices: selected and tested on the target alone, batches that mix both tasks
    assert resumed["test"] == whole["test"] and list(resumed["test"]["metrics"]) == ["acc", "f1"]
    a, _ = load_module(tmp_path / "whole", backbone)
    b, _ = load_module(tmp_path / "cut", backbone)
    assert isinstance(a, FusionPrompt) and a.mixing == TaskMixing(first_share=0.5)  # saved with the module
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    log = module_log(tmp_path / "cut")  # steps logged twice by the interruption appear once
    assert sorted({e["step"] for e in log}) == [1, 2, 3, 4, 5]
    assert {e["task"] for e in log} <= set(names)
    assert any({e["task"] for e in log if e["step"] == step} == set(names) for step in range(1, 6))
