"""Dynamic Prompt Fusion in a suite: a prompt pool mixed per task and per input, trained jointly on
the target and its source tasks with mixed-task batches; selected on the target."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
from pydantic import Field

from promptvec.batching import TaskMixing
from promptvec.errors import ConfigError
from promptvec.methods.fusion.module import FusionPrompt
from promptvec.methods.fusion.report import schedule_sections
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import target_sources
from promptvec.prompts import PromptModule
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method
from promptvec.training.config import TrainConfig
from promptvec.vectors import Origin


class FusionSettings(PTSettings):
    pool_size: int | None = Field(None, ge=1, description="prompts in the pool (default 2 × number of tasks)")
    temperature: float = Field(1.0, gt=0, description="scheduling temperature τ")
    private: bool = Field(False, description="add a private prompt per task")
    gate_bias: float = Field(2.0, description="initial gate pre-activation (σ(2) ≈ 0.88)")
    network_lr: float | None = Field(None, gt=0, description="learning rate of embeddings, scheduler, gate, loss "
                                     "weights (default lr)")
    task_embedding_init: Literal["description", "random"] = "description"
    max_sources: int | None = Field(None, ge=1, description="use only the first k sources (number-of-tasks study)")
    mixing_cap: int | None = Field(None, ge=1, description="cap on a task's size when weighting tasks (default: "
                                   "the target's training size, so the target is drawn as often as each source)")
    mixing_temperature: float = Field(1.0, gt=0)
    target_share: float | None = Field(0.5, gt=0, lt=1, description="fixed share of target examples in each mixed "
                                       "batch (null: the target is weighted like any task)")


@register_method
class Fusion(PromptTuning):
    """Dynamic Prompt Fusion: joint training on the target and its source tasks (mixed batches)."""

    name = "fusion"
    Settings = FusionSettings
    needs_sources = True
    prompt_module = FusionPrompt

    @classmethod
    def report_sections(cls, suite, out, rows, report_dir):
        return schedule_sections(out, rows, report_dir)

    @classmethod
    def _tasks(cls, ctx: RunContext) -> list[str]:
        s = ctx.run.options(FusionSettings)
        sources = target_sources(ctx)
        return [ctx.run.task, *sources[: s.max_sources]]

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        from promptvec.tasks import get_task

        s = ctx.run.options(FusionSettings)
        tasks = cls._tasks(ctx)
        size = s.pool_size or 2 * len(tasks)
        origin_seed = ctx.run.origin or 0
        pool = torch.stack([Origin.sample(ctx.backbone, s.prompt_length, origin_seed * 1000 + m).tensor(ctx.backbone)
                            for m in range(size)])
        specs = [get_task(t) for t in tasks]
        if s.task_embedding_init == "description":
            embeddings = torch.stack([_describe(ctx.backbone, spec) for spec in specs])
        else:
            embeddings = torch.randn(len(tasks), ctx.backbone.dim, generator=torch.Generator().manual_seed(origin_seed))
        mixing = TaskMixing(s.mixing_cap or ctx.run.shots, s.mixing_temperature, s.target_share)
        module = FusionPrompt(pool, embeddings, [spec.task for spec in specs], s.temperature, s.private,
                              s.gate_bias, s.network_lr, [{"name": t} for t in tasks[1:]], mixing)
        return module, {"init": "fusion", "tasks": tasks, "sources": tasks[1:], "pool_size": size,
                        "temperature": s.temperature, "mixing": asdict(mixing), "origin_seed": ctx.run.origin}

    @classmethod
    def configure(cls, ctx: RunContext, config: TrainConfig) -> TrainConfig:
        tasks = cls._tasks(ctx)
        return TrainConfig.model_validate({**config.model_dump(), "extra_tasks": tasks[1:],
                                           "extra_shots": ctx.suite.sources.shots})

    @classmethod
    def task_data(cls, ctx: RunContext):
        if ctx.load_data is None:
            raise ConfigError("fusion needs the source tasks' data", "run it through the experiment runner")
        return [ctx.data] + [ctx.load_data(t) for t in cls._tasks(ctx)[1:]]


def _describe(backbone, task) -> torch.Tensor:
    """The frozen backbone's mean input embedding of a task's description (or name)."""
    ids = backbone.tokenizer(task.description or task.task.replace("_", " "), add_special_tokens=False)["input_ids"]
    rows = torch.tensor(ids or [0], device=backbone.device)
    return backbone.embedding.weight.detach()[rows].float().mean(0).cpu()
