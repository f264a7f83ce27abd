"""SPoT (Vu et al. 2022; docs/methods.md §4). ``spot`` (targeted): train the target briefly from the
run's origin (``early_steps``), pick the stored source prompt most similar to that early prompt
(cosine of row means; or of the task prompt vectors), and prompt-tune the target from it.
``spot-multi`` (generic): start from one prompt trained on the mixture of the sources."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from promptvec.methods.multi_source import MultiSourceInit
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import StoredSources, train_target_stage
from promptvec.suites.context import RunContext
from promptvec.suites.method import PlannedTraining, register_method, settings_as
from promptvec.suites.plan import RunSpec
from promptvec.suites.schema import SuiteSpec


class SpotSettings(PTSettings):
    early_steps: int = Field(10, ge=1, description="steps of target prompt tuning before comparing with sources")
    compare: Literal["prompts", "vectors"] = Field(
        "prompts", description="cosine of row means of the prompts (SPoT) or of their task prompt vectors")


@register_method
class SpotTargeted(PromptTuning):
    """SPoT, targeted: initialise from the source prompt most similar to an early target prompt."""

    name = "spot"
    Settings = SpotSettings
    needs_sources = True
    needs_target_examples = True

    @classmethod
    def planned_trainings(cls, suite: SuiteSpec, run: RunSpec) -> list[PlannedTraining]:
        """The early target prompt, then prompt tuning from the most similar source — one of the target's
        sources, so a copy of the plan's run from that source when it has one from each."""
        early_steps = settings_as(run.options(BaseModel), SpotSettings).early_steps
        batch_size = cls.plain_training(suite, run, frozenset()).batch_size
        return [PlannedTraining(early_steps, batch_size, final=False), *super().planned_trainings(suite, run)]

    @classmethod
    def planned_starts(cls, suite: SuiteSpec, run: RunSpec) -> frozenset[str]:
        return frozenset(f"source:{source}" for source in suite.sources.targets.get(run.task, []))

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = ctx.run.options(SpotSettings)
        sources = StoredSources.load(ctx)
        early, _ = train_target_stage(cls, ctx, "early", s.early_steps)
        origin = sources.origin.tensor(ctx.backbone)
        if s.compare == "vectors":
            query, keys = (early - origin).mean(0), sources.vectors.mean(1)
        else:
            query, keys = early.mean(0), sources.prompts.mean(1)
        similarity = torch.nn.functional.cosine_similarity(keys, query.unsqueeze(0), dim=-1)
        best = int(similarity.argmax())
        return sources.prompts[best].clone(), {
            "init": "most similar source prompt", "sources": sources.names, "chosen": sources.names[best],
            "similarity": dict(zip(sources.names, similarity.tolist(), strict=True)), "compare": s.compare,
            "early_steps": s.early_steps, "origin_seed": ctx.run.origin, "store": sources.refs}


@register_method
class SpotGeneric(MultiSourceInit):
    """SPoT, generic: initialise from one prompt trained on the mixture of the target's sources."""

    name = "spot-multi"
