"""Prompt tuning (Lester et al. 2021; docs/methods.md §1): a prompt trained from a random origin
— and the base of every method that only changes where training starts."""

from __future__ import annotations

import time
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from promptvec.io import atomic_write_json, tensor_sha256
from promptvec.methods.runs import evaluate_untrained, finished_run_like, reuse_run, training_start
from promptvec.prompts import PromptModule, StaticPrompt
from promptvec.suites.context import RunContext
from promptvec.suites.method import Method, PlannedTraining, register_method, settings_as
from promptvec.suites.plan import RunSpec, completed_record, is_source
from promptvec.suites.schema import SuiteSpec
from promptvec.tasks import TaskData
from promptvec.training.config import TrainConfig, train_field
from promptvec.training.trainer import Trainer
from promptvec.vectors import Origin


class PTSettings(BaseModel):
    """What a prompt-tuning method may set; defaults and limits are :class:`TrainConfig`'s."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    prompt_length: int = train_field("prompt_length")
    lr: float = train_field("lr")
    weight_decay: float = train_field("weight_decay")
    warmup_ratio: float = train_field("warmup_ratio")
    steps: int | None = Field(None, ge=1, description="overrides the suite budget")
    batch_size: int | None = Field(None, ge=1, description="overrides the suite budget")
    select_initial: bool = train_field("select_initial")


@register_method
class PromptTuning(Method):
    """Prompt tuning from a random origin (Lester et al.). Subclasses change only where training
    starts (:meth:`initial_prompt`); at 0 shots the initial prompt is evaluated untrained."""

    name = "pt"
    Settings = PTSettings

    @classmethod
    def axes(cls, options: BaseModel) -> set[str]:
        return {"shots", "origin", "seed"}

    @classmethod
    def planned_trainings(cls, suite: SuiteSpec, run: RunSpec) -> list[PlannedTraining]:
        if run.shots == 0:
            return []  # the initial prompt is scored untrained
        return [cls.plain_training(suite, run, cls.planned_starts(suite, run))]

    @classmethod
    def plain_training(cls, suite: SuiteSpec, run: RunSpec, starts: frozenset[str],
                       select_initial: bool | None = None) -> PlannedTraining:
        """A prompt training with the run's settings (``select_initial`` overridden for a stage), the
        settings that define it written with the suite's budget filled in."""
        s = settings_as(run.options(BaseModel), PTSettings)
        steps, batch_size = s.steps or suite.budget.steps, s.batch_size or suite.budget.batch_size
        settings = PTSettings(**{**s.model_dump(include=set(PTSettings.model_fields)), "steps": steps,
                                 "batch_size": batch_size,
                                 **({} if select_initial is None else {"select_initial": select_initial})})
        return PlannedTraining(steps, batch_size, starts, settings.model_dump_json() if starts else "")

    @classmethod
    def planned_starts(cls, suite: SuiteSpec, run: RunSpec) -> frozenset[str]:
        """Where the run's training starts, as far as the plan knows: the origin for a method that keeps
        prompt tuning's start and module; a method that changes either says where it starts, or nothing
        (then its training is never counted as another run's copy)."""
        keeps_start = cls.initial_prompt.__func__ is PromptTuning.initial_prompt.__func__  # type: ignore[attr-defined]
        keeps_module = cls.build.__func__ is PromptTuning.build.__func__  # type: ignore[attr-defined]
        return frozenset({"origin"}) if keeps_start and keeps_module else frozenset()

    @classmethod
    def prompt_rows(cls, options: BaseModel) -> int:
        return settings_as(options, PTSettings).prompt_length

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """The prompt training starts from, and a description for the record; ``None`` = the run's
        random origin (recorded by the trainer, so the result yields a task prompt vector)."""
        return None, {"init": "origin", "origin_seed": ctx.run.origin}

    @classmethod
    def train_config(cls, ctx: RunContext) -> TrainConfig:
        s = ctx.run.options(PTSettings)
        b, bb = ctx.suite.budget, ctx.suite.backbone
        return TrainConfig(
            model=bb.model, family=bb.family, max_length=bb.max_length, chat_template=bb.chat_template,
            task=ctx.run.tasks[0], extra_tasks=ctx.run.tasks[1:], shots=cls.shots(ctx),
            prompt_length=s.prompt_length, origin_seed=ctx.run.origin, data_seed=ctx.run.seed,
            train_seed=ctx.run.seed, lr=s.lr, weight_decay=s.weight_decay, warmup_ratio=s.warmup_ratio,
            max_steps=s.steps or b.steps, batch_size=s.batch_size or b.batch_size, grad_accum=b.grad_accum,
            eval_every=b.eval_every,
            val_examples=b.val_examples, test_examples=b.test_examples, eval_seed=b.eval_seed,
            precision=b.precision, compile=b.compile, select_initial=s.select_initial,
            early_stopping_patience=b.early_stopping_patience, report_to=b.report_to)

    @classmethod
    def shots(cls, ctx: RunContext) -> int | None:
        """The run's training examples. A source asks for ``sources.shots`` examples "or the whole
        split if smaller" (a source task with fewer trains on all of them); a target that asks for more
        than its split has is refused (a typo, not a wish)."""
        shots = ctx.run.shots
        if is_source(ctx.run) and shots is not None and shots > len(ctx.task_data.train):
            return None
        return shots

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule | None, dict[str, Any]]:
        """The prompt module to train and a description of it for the record; ``None`` = a static
        prompt at the run's origin. Plain transfer inits only override :meth:`initial_prompt`; their
        record keeps the initial prompt's hash, which with the configuration defines the training."""
        init, info = cls.initial_prompt(ctx)
        if init is None:
            return None, info
        return StaticPrompt(init), {**info, "prompt_sha256": tensor_sha256(init)}

    @classmethod
    def configure(cls, ctx: RunContext, config: TrainConfig) -> TrainConfig:
        """Adjust the training configuration (e.g. joint training on further tasks)."""
        return config

    @classmethod
    def task_data(cls, ctx: RunContext) -> TaskData | list[TaskData]:
        return ctx.data

    @classmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        done = completed_record(ctx.out)
        if done is not None:
            return done
        began = time.perf_counter()
        module, info = cls.build(ctx)
        start_seconds = time.perf_counter() - began  # the run's work: init auto's choice, a stage trained first
        if ctx.run.shots == 0:
            s = ctx.run.options(PTSettings)
            described = {**info, "prompt_length": s.prompt_length}
            if module is None:
                origin = Origin.sample(ctx.backbone, s.prompt_length, ctx.run.origin_seed)
                return evaluate_untrained(ctx, origin.tensor(ctx.backbone), described, origin)
            return evaluate_untrained(ctx, module.bind(ctx.backbone).eval(), described)
        config = cls.configure(ctx, cls.train_config(ctx))
        start = training_start(info)
        twin = finished_run_like(ctx, config, start) if start is not None else None
        if twin is not None:
            return reuse_run(ctx, twin, info)
        trainer = Trainer(config, ctx.out, backbone=ctx.backbone,
                          task_data=cls.task_data(ctx), prompt_module=module, progress=ctx.progress,
                          on_step=ctx.on_step, data_parallel=ctx.data_parallel, start_seconds=start_seconds)
        record = trainer.train(resume=True)
        record["init"] = info
        atomic_write_json(ctx.out / "run.json", record)
        return record



@register_method
class RandomInit(PromptTuning):
    """Prompt tuning from the random origin — the reference the transfer inits are compared with."""

    name = "random"
