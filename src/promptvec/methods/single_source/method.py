"""``single-source``: prompt tuning from one source task's tuned prompt (SPoT-style transfer from a
named source; the first listed by default). At the source's own origin this is the origin plus
that source's task prompt vector, so a sweep over sources uses it."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, Field

from promptvec.errors import ConfigError
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import source_folder, target_sources
from promptvec.peft_folder import load_prompt
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method, settings_as
from promptvec.suites.plan import RunSpec
from promptvec.suites.schema import SuiteSpec


class SingleSourceSettings(PTSettings):
    source: str | None = Field(None, description="which source prompt (default: the target's first source)")


@register_method
class SingleSourceInit(PromptTuning):
    """Initialise from one source task's tuned prompt (SPoT-style transfer from a named source)."""

    name = "single-source"
    Settings = SingleSourceSettings
    needs_sources = True

    @classmethod
    def named_source(cls, options: BaseModel) -> str | None:
        return settings_as(options, SingleSourceSettings).source

    @classmethod
    def planned_starts(cls, suite: SuiteSpec, run: RunSpec) -> frozenset[str]:
        source = settings_as(run.options(BaseModel), SingleSourceSettings).source
        sources = suite.sources.targets.get(run.task, [])
        return frozenset({f"source:{source or sources[0]}"}) if source or sources else frozenset()

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = ctx.run.options(SingleSourceSettings)
        sources = target_sources(ctx)
        source = s.source or sources[0]
        if source not in sources:
            raise ConfigError(f"single-source: '{source}' is not a source of '{ctx.run.task}' ({sources})",
                              "name one of the target's sources in sources.targets")
        prompt = load_prompt(source_folder(ctx, source), ctx.backbone).prompt
        return prompt, {"init": "source prompt", "sources": [source], "origin_seed": ctx.run.origin}
