"""ATTEMPT in a suite: frozen source prompts + a trainable target prompt, mixed per input."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from promptvec.methods.attempt.module import AttemptPrompt
from promptvec.methods.attempt.report import attention_sections
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import StoredSources
from promptvec.prompts import PromptModule
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method


class AttemptSettings(PTSettings):
    target_init: Literal["origin", "first-source"] = Field(
        "origin", description="where the target prompt starts (the released code: the first source)")
    attention_lr: float | None = Field(None, gt=0, description="learning rate of the attention network (default lr)")
    hidden: int = Field(100, ge=1, description="width of the attention network's bottleneck")
    temperature: float | None = Field(None, gt=0, description="softmax temperature (default d·e)")


@register_method
class Attempt(PromptTuning):
    """ATTEMPT: per-input attention over frozen source prompts and the trainable target prompt."""

    name = "attempt"
    Settings = AttemptSettings
    needs_sources = True
    prompt_module = AttemptPrompt

    @classmethod
    def report_sections(cls, suite, out, rows, report_dir):
        return attention_sections(out, rows, report_dir)

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        s = ctx.run.options(AttemptSettings)
        sources = StoredSources.load(ctx)
        target = sources.origin.tensor(ctx.backbone) if s.target_init == "origin" else sources.prompts[0]
        module = AttemptPrompt(sources.prompts, target, sources.names, s.hidden, s.temperature, s.attention_lr,
                               sources.refs)
        return module, {"init": f"attempt (target from {s.target_init})", "sources": sources.names,
                        "origin_seed": ctx.run.origin, "store": sources.refs}
