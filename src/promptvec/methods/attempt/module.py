"""ATTEMPT (Asai et al. 2022; docs/methods.md §5): frozen source prompts and a trainable target prompt,
mixed per input by attention.

``x̂ = maxpool(input embeddings)`` over the real tokens, ``h = LayerNorm(W_up SiLU(W_down x̂))``
(d → 100 → d, no bias), keys ``p̂_j = maxpool_rows(P_j)`` for every source **and the target**,
``a = softmax_j(p̂_j · h / T)`` with ``T = d·e``, and ``P(x) = Σ_j a_j P_j + P_target`` (the target
prompt is in the attention set and is added again, as in the released code). Trained: the target
prompt and the attention network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from promptvec.backbones.base import Batch
from promptvec.errors import ConfigError
from promptvec.prompts.base import PromptModule, max_pooled_input, register_prompt_module, seeded_linear

ATTENTION_INIT_STD = 0.01  # std of W_down and W_up at initialisation (docs/methods.md)


@register_prompt_module
class AttemptPrompt(PromptModule):
    kind = "attempt"
    source_prompts: torch.Tensor  # buffer [n, R, d]: frozen

    def __init__(self, source_prompts: torch.Tensor, target_init: torch.Tensor, source_names: list[str],
                 hidden: int = 100, temperature: float | None = None, attention_lr: float | None = None,
                 sources: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        if source_prompts.dim() != 3 or source_prompts.shape[0] == 0:
            raise ConfigError("ATTEMPT needs at least one source prompt ([n, R, d])", "give the target some sources")
        if source_prompts.shape[1:] != target_init.shape:
            raise ConfigError(f"ATTEMPT source prompts {tuple(source_prompts.shape[1:])} and target prompt "
                              f"{tuple(target_init.shape)} differ in shape", "use one model and prompt length")
        dim = target_init.shape[1]
        self.source_names, self.hidden = list(source_names), hidden
        self.sources = sources or [{"name": name} for name in source_names]
        self.temperature = temperature or dim * math.e
        self.attention_lr = attention_lr
        self.register_buffer("source_prompts", source_prompts.detach().float().clone())
        self.target = nn.Parameter(target_init.detach().float().clone())
        # N(0, 0.01²), as the authors' code re-initialises them (torch's default would be uniform ±1/√fan_in)
        self.down = seeded_linear(dim, hidden, seed=1, std=ATTENTION_INIT_STD)
        self.up = seeded_linear(hidden, dim, seed=2, std=ATTENTION_INIT_STD)
        self.norm = nn.LayerNorm(dim)
        #: the backbone's (frozen) input embedding, kept outside the module's parameters and state
        self.embed: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return self.target.shape[0]

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        attention = [*self.down.parameters(), *self.up.parameters(), *self.norm.parameters()]
        return [{"params": [self.target], "lr": lr}, {"params": attention, "lr": self.attention_lr or lr}]

    def attention(self, batch: Batch) -> torch.Tensor:
        """``[B, n + 1]`` weights over the sources and (last) the target prompt."""
        if self.embed is None:
            raise ConfigError("ATTEMPT needs the backbone's input embeddings", "call bind(backbone) first")
        h = self.norm(self.up(F.silu(self.down(max_pooled_input(self.embed, batch)))))
        prompts = torch.cat([self.source_prompts, self.target.unsqueeze(0)])
        keys = prompts.max(dim=1).values  # [n + 1, d]
        return torch.softmax(h @ keys.T / self.temperature, dim=-1)

    def bind(self, backbone) -> AttemptPrompt:  # noqa: D102
        self.embed = backbone.input_embeds
        return self

    def forward(self, batch: Batch) -> torch.Tensor:
        weights = self.attention(batch)
        self.record(task=batch.task, attention=weights.mean(0))
        prompts = torch.cat([self.source_prompts, self.target.unsqueeze(0)])
        return torch.einsum("bj,jrd->brd", weights, prompts) + self.target

    def config(self) -> dict[str, Any]:
        return {"source_names": self.source_names, "hidden": self.hidden, "temperature": self.temperature,
                "attention_lr": self.attention_lr, "sources": self.sources}

    @classmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> AttemptPrompt:
        return cls(state["source_prompts"], state["target"], config["source_names"], config["hidden"],
                   config["temperature"], config.get("attention_lr"), config.get("sources"))
