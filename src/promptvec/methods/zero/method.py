"""Training-free baselines: no prompt at all, or the untrained origin prompt."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptvec.errors import ConfigError
from promptvec.methods.runs import evaluate_untrained
from promptvec.suites.context import RunContext
from promptvec.suites.method import Method, PlannedTraining, register_method, settings_as
from promptvec.suites.plan import RunSpec, completed_record
from promptvec.suites.schema import SuiteSpec
from promptvec.training.config import train_field
from promptvec.vectors import Origin


class ZeroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("origin", pattern="^(origin|none)$", description="origin = untrained origin; none = no prompt")
    prompt_length: int = train_field("prompt_length")


@register_method
class ZeroShot(Method):
    """Training-free baselines: the untrained origin prompt, or no prompt at all."""

    name = "zero"
    Settings = ZeroSettings

    @classmethod
    def axes(cls, options: BaseModel) -> set[str]:
        return {"origin"} if settings_as(options, ZeroSettings).prompt == "origin" else set()

    @classmethod
    def planned_trainings(cls, suite: SuiteSpec, run: RunSpec) -> list[PlannedTraining]:
        return []

    @classmethod
    def prompt_rows(cls, options: BaseModel) -> int:
        s = settings_as(options, ZeroSettings)
        return s.prompt_length if s.prompt == "origin" else 0

    @classmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        done = completed_record(ctx.out)
        if done is not None:
            return done
        s = ctx.run.options(ZeroSettings)
        if s.prompt == "none":
            return evaluate_untrained(ctx, None, {"prompt": "none"})
        if ctx.run.origin is None:
            raise ConfigError("zero/origin needs an origin seed", "give the suite `origins`")
        origin = Origin.sample(ctx.backbone, s.prompt_length, ctx.run.origin_seed)
        return evaluate_untrained(ctx, origin.tensor(ctx.backbone),
                                  {"prompt": "origin", "prompt_length": s.prompt_length}, origin)
