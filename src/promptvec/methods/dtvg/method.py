"""DTVG in a suite: Stage I = the stored source vectors and the target's vector from the target
prompt-tuned to its best validation checkpoint from the same origin (or only ``stage1_steps``
of tuning, the cheaper option); Stage II trains the target vector and row scales with the group
chosen again on every forward pass."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field, field_validator

from promptvec.methods.dtvg.module import GROUPING_CHOICES, DTVGPrompt
from promptvec.methods.dtvg.report import grouping_sections
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import StoredSources, train_target_stage
from promptvec.prompts import PromptModule
from promptvec.suites.context import RunContext
from promptvec.suites.method import PlannedTraining, register_method, settings_as
from promptvec.suites.plan import RunSpec
from promptvec.suites.schema import SuiteSpec


class DTVGSettings(PTSettings):
    grouping: str = Field("kc", description=f"group choice per step: one of {sorted(GROUPING_CHOICES)}")
    lam: float = Field(1.0, ge=0, description="λ of the ts-plus-kc objective mean(TS) + λ·KC")
    stage1_steps: int | None = Field(
        None, ge=1, description="Stage I target vector: null = the target prompt-tuned with this method's budget "
        "and validation-selected (the authors' code; reused from a finished pt run of the suite with the same "
        "settings); N = only N steps of tuning (cheaper, and a noisier target vector)")
    scale_lr: float | None = Field(None, gt=0, description="learning rate of the row scales α (default lr)")

    @field_validator("grouping")
    @classmethod
    def _grouping(cls, v: str) -> str:
        if v not in GROUPING_CHOICES:
            raise ValueError(f"unknown grouping '{v}'; known: {sorted(GROUPING_CHOICES)}")
        return v


@register_method
class DTVG(PromptTuning):
    """Dynamic Task Vector Grouping (Stage I: the store + the trained target; Stage II: this run)."""

    name = "dtvg"
    Settings = DTVGSettings
    needs_sources = True
    needs_target_examples = True
    prompt_module = DTVGPrompt

    @classmethod
    def report_sections(cls, suite, out, rows, report_dir):
        return grouping_sections(suite, out, rows, report_dir)

    @classmethod
    def planned_trainings(cls, suite: SuiteSpec, run: RunSpec) -> list[PlannedTraining]:
        """Stage I (the target prompt-tuned from the origin: to the end, selected on validation, which a
        planned ``pt`` run with ``select_initial: false`` trains too, or ``stage1_steps``), then DTVG."""
        final = cls.plain_training(suite, run, frozenset())
        stage1_steps = settings_as(run.options(BaseModel), DTVGSettings).stage1_steps
        if stage1_steps is None:
            stage1 = replace(cls.plain_training(suite, run, frozenset({"origin"}), select_initial=False), final=False)
        else:
            stage1 = PlannedTraining(stage1_steps, final.batch_size, final=False)
        return [stage1, final]

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        s = ctx.run.options(DTVGSettings)
        sources = StoredSources.load(ctx)
        origin = sources.origin.tensor(ctx.backbone)
        stage1, stage1_cost = train_target_stage(cls, ctx, "stage1", s.stage1_steps)
        module = DTVGPrompt(origin, stage1 - origin, sources.vectors, sources.names, s.grouping, s.lam, sources.refs,
                            scale_lr=s.scale_lr)
        return module, {"init": "dtvg", "grouping": s.grouping, "lam": s.lam, "stage1_steps": s.stage1_steps,
                        "stage1": stage1_cost, "sources": sources.names, "origin_seed": ctx.run.origin,
                        "store": sources.refs}
