"""``auto``: prompt tuning from the start ``init: auto`` chooses among the target's sources — each
source prompt, the origin plus the summed vectors of the best sources, or the plain origin — scored
only on the run's own training examples (docs/methods.md §9). In a suite the candidates are the
target's sources (``sources.targets``), so a leave-one-task-out study lists every other library task.

When the choice falls back to the origin the run is plain prompt tuning; a finished ``pt`` run of the
suite with the same configuration is then reused (and shown as a copy), not trained again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from promptvec.library import AutoPolicy, SourcePrompt, choose_start
from promptvec.library.auto import policy_field
from promptvec.methods.auto.report import start_sections
from promptvec.methods.pt import PromptTuning, PTSettings
from promptvec.methods.sources import source_folder, target_sources
from promptvec.peft_folder import load_prompt
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method
from promptvec.training.parts import training_examples
from promptvec.vectors import Origin, TaskPromptVector


class AutoSettings(PTSettings):
    score: Literal["loss", "accuracy"] = policy_field("score")
    combine: int = policy_field("combine")

    def policy(self) -> AutoPolicy:
        return AutoPolicy(score=self.score, combine=self.combine)


@register_method
class AutoInit(PromptTuning):
    """Start from the source, combination or origin that fits the target's own training examples best."""

    name = "auto"
    Settings = AutoSettings
    needs_sources = True

    @classmethod
    def report_sections(cls, suite, out, rows, report_dir):
        return start_sections(suite, out, rows)

    @classmethod
    def planned_scoring(cls, suite, run) -> int:
        """Every candidate (no prompt, the origin, each source, the combinations of the 2..``combine`` best)
        scored on the run's training examples, at most the policy's ``max_examples``."""
        s = run.options(AutoSettings)
        sources = len(suite.sources.targets.get(run.task, ()))
        candidates = 2 + sources + max(0, min(s.combine, sources) - 1)
        limit = AutoPolicy.model_fields["max_examples"].default
        return candidates * (limit if run.shots is None else min(run.shots, limit))

    @classmethod
    def unclocked_start_seconds(cls, record: Callable[[], dict[str, Any]]) -> float:
        """The choice's seconds (``init.auto.seconds``): records made before the ``start`` phase existed
        kept the choice out of the wall time, and a fall-back's wall time is the ``pt`` run it copies."""
        return float(((record().get("init") or {}).get("auto") or {}).get("seconds", 0.0))

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor | None, dict[str, Any]]:
        s = ctx.run.options(AutoSettings)
        policy = s.policy()
        sources = []
        for task in target_sources(ctx):
            folder = source_folder(ctx, task)
            sources.append(SourcePrompt(task, load_prompt(folder, ctx.backbone).prompt,
                                        TaskPromptVector.from_checkpoint(folder, ctx.backbone)))
        data = ctx.task_data
        shots = cls.shots(ctx)
        examples = training_examples(data.spec, data, shots, ctx.run.data_seed)  # exactly what the run trains on
        origin = Origin.sample(ctx.backbone, s.prompt_length, ctx.run.origin_seed)
        choice = choose_start(ctx.backbone, data.spec, examples, origin, sources, policy)
        info = {"init": "origin" if choice.prompt is None else "auto", "origin_seed": ctx.run.origin,
                "auto": choice.record(policy)}
        return choice.prompt, info
