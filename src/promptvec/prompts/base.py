"""Prompt modules: the only trainable part. Every method differs only in how it produces the
prompt for a batch, so a new method is one new :class:`PromptModule` subclass registered here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from promptvec.backbones.base import Batch

PROMPT_MODULES: dict[str, type[PromptModule]] = {}


def register_prompt_module(cls: type[PromptModule]) -> type[PromptModule]:
    PROMPT_MODULES[cls.kind] = cls
    return cls


class PromptModule(nn.Module, ABC):
    kind: ClassVar[str]

    @abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """The prompt for this batch, ``[B, R, d]``."""

    @property
    @abstractmethod
    def rows(self) -> int:
        """Number of virtual tokens R."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def export(self) -> torch.Tensor | None:
        """A single static ``[R, d]`` prompt, where one exists (None for per-input prompts)."""
        return None
