"""``tpv-init`` (the TPV paper's few-shot experiment; docs/methods.md §3): prompt tuning from the
origin plus λ × the merged task prompt vectors of the target's sources (λ = 1 by default, as the TPV
repository; or chosen on the target's validation split over the 0…1 grid)."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, Field, field_validator

from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import source_folder, target_sources
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method, settings_as
from promptvec.tasks import subsample
from promptvec.vectors import MERGE_METHODS, TaskPromptVector, merge
from promptvec.vectors.scaling import choose_scale


class TPVInitSettings(PTSettings):
    scale: float = Field(1.0, ge=0, description="λ in θ0 + λ·Σ τ (1 = the TPV repository's choice)")
    scale_grid: bool = Field(False, description="choose λ on the target's validation split (grid 0…1, 0.05)")
    merge: str = Field("task_arithmetic", description="how source vectors are combined")
    source: str | None = Field(None, description="only this source's vector (one method entry per source, each "
                               "limited with `tasks:` to targets listing it, makes a sweep over single sources)")

    @field_validator("merge")
    @classmethod
    def _merge(cls, v: str) -> str:
        return MERGE_METHODS.check(v)


@register_method
class TPVInit(PromptTuning):
    """Initialise from the origin plus the (merged) task prompt vectors of the target's sources."""

    name = "tpv-init"
    Settings = TPVInitSettings
    needs_sources = True

    @classmethod
    def named_source(cls, options: BaseModel) -> str | None:
        return settings_as(options, TPVInitSettings).source

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = ctx.run.options(TPVInitSettings)
        sources = target_sources(ctx)
        if s.source is not None:
            if s.source not in sources:
                raise ConfigError(f"tpv-init: '{s.source}' is not a source of '{ctx.run.task}' ({sources})",
                                  "name one of the target's sources in sources.targets")
            sources = [s.source]
        vectors = [TaskPromptVector.from_checkpoint(source_folder(ctx, t), ctx.backbone) for t in sources]
        if vectors[0].meta.rows != s.prompt_length:
            raise ConfigError(f"source prompts have {vectors[0].meta.rows} rows but tpv-init uses prompt_length "
                              f"{s.prompt_length}", "give the sources and the method the same prompt_length")
        combined = merge(vectors, s.merge)
        origin = vectors[0].recorded_origin
        scale, curve = s.scale, None
        if s.scale_grid:
            budget = ctx.suite.budget
            data = ctx.task_data
            val = subsample(data.validation, budget.val_examples, budget.eval_seed)
            primary = data.spec.primary_metric
            scale, curve = choose_scale(lambda lam: evaluate(
                ctx.backbone, data.spec, val, combined.apply_to(origin, lam, ctx.backbone)).metrics[primary])
        info = {"init": "tpv", "sources": sources, "merge": s.merge, "scale": scale, "origin_seed": ctx.run.origin,
                "vector_norm": combined.norm(), "scale_curve": curve}
        return combined.apply_to(origin, scale, ctx.backbone), info
