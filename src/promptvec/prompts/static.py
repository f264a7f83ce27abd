"""A plain soft prompt ``[R, d]`` — prompt tuning, and any method that only *initialises* it
(a task prompt vector applied to an origin, SPoT's source prompt)."""

from __future__ import annotations

import torch
from torch import nn

from promptvec.backbones.base import Batch
from promptvec.prompts.base import PromptModule, register_prompt_module


@register_prompt_module
class StaticPrompt(PromptModule):
    kind = "static"
    shares_prompt = True

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        if init.dim() != 2:
            raise ValueError(f"a static prompt is a [R, d] matrix, got shape {tuple(init.shape)}")
        self.weight = nn.Parameter(init.detach().to(torch.float32).clone())

    @property
    def rows(self) -> int:
        return self.weight.shape[0]

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.weight

    def export(self) -> torch.Tensor:
        return self.weight.detach().clone()

    def config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict, state: dict[str, torch.Tensor]) -> StaticPrompt:
        return cls(state["weight"])
