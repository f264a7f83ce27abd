"""``multi-source``: prompt tuning from one prompt trained on the union of the target's sources
(``sources.multi_task``)."""

from __future__ import annotations

from typing import Any

import torch

from promptvec.methods.pt import PromptTuning
from promptvec.methods.sources import source_folder
from promptvec.peft_folder import load_prompt
from promptvec.suites.context import RunContext
from promptvec.suites.method import register_method


@register_method
class MultiSourceInit(PromptTuning):
    """Initialise from one prompt trained on the union of the target's sources (SPoT's generic,
    multi-task source)."""

    name = "multi-source"
    needs_sources = True
    needs_multi_task_sources = True

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        union = ctx.suite.sources.multi_task_name(ctx.run.task)
        prompt = load_prompt(source_folder(ctx, union), ctx.backbone).prompt
        return prompt, {"init": "multi-task source prompt", "sources": union.split("+"),
                        "origin_seed": ctx.run.origin}
