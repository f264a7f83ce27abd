"""Dynamic Task Vector Grouping, Stage II (Zhang, Zhang, Nie 2025; docs/methods.md §6).

``P_mix = P_init + α_t ⊙ T_t + Σ_{s ∈ S'} α_s ⊙ T_s`` where the group S' is chosen again on every
forward pass from the row-scaled vectors (detached) by a :mod:`grouping <promptvec.prompts.grouping>`
strategy. Trainable: the target vector T_t (initialised to the target's Stage-I vector) and the
row scales α_t, α_s (ones). Frozen buffers: the origin P_init and the source vectors T_s.

Each training forward buffers (step, group mask, target similarities) for the run's log; the
grouping itself never leaves the device. The prompt is the same for every input, so the module
also exports ``P_mix`` as a static prompt (PEFT folder) with the group of its last evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from promptvec.backbones.base import Batch
from promptvec.errors import ConfigError
from promptvec.methods.dtvg.grouping import GROUPINGS, target_similarity
from promptvec.prompts.base import PromptModule, register_prompt_module

GROUPING_CHOICES = (*GROUPINGS, "fixed-at-start")


@register_prompt_module
class DTVGPrompt(PromptModule):
    kind = "dtvg"
    # buffers (saved with the module, never trained)
    origin: torch.Tensor  # [R, d]
    source_vectors: torch.Tensor  # [n, R, d]
    fixed_group: torch.Tensor  # [n]: fixed-at-start's group once decided
    group_fixed: torch.Tensor  # []: whether it was decided
    shares_prompt = True

    def __init__(self, origin: torch.Tensor, target_vector: torch.Tensor, source_vectors: torch.Tensor,
                 source_names: list[str], grouping: str = "kc", lam: float = 1.0,
                 sources: list[dict[str, Any]] | None = None, scale_lr: float | None = None) -> None:
        super().__init__()
        if grouping not in GROUPING_CHOICES:
            raise ConfigError(f"unknown DTVG grouping '{grouping}'", f"use one of {sorted(GROUPING_CHOICES)}")
        if source_vectors.dim() != 3 or source_vectors.shape[0] == 0:
            raise ConfigError("DTVG needs at least one source vector ([n, R, d])", "give the target some sources")
        if not (origin.shape == target_vector.shape == source_vectors.shape[1:]):
            raise ConfigError(f"DTVG vectors disagree in shape: origin {tuple(origin.shape)}, target "
                              f"{tuple(target_vector.shape)}, sources {tuple(source_vectors.shape[1:])}",
                              "train the sources and the target with the same model and prompt length")
        if len(source_names) != source_vectors.shape[0]:
            raise ConfigError("one name per source vector is needed", "pass source_names")
        n, rows, _ = source_vectors.shape
        self.grouping, self.lam, self.source_names = grouping, float(lam), list(source_names)
        self.scale_lr = scale_lr
        self.sources = sources or [{"name": name} for name in source_names]
        self.register_buffer("origin", origin.detach().float().clone())
        self.register_buffer("source_vectors", source_vectors.detach().float().clone())
        self.target_vector = nn.Parameter(target_vector.detach().float().clone())
        self.target_scale = nn.Parameter(torch.ones(rows))
        self.source_scales = nn.Parameter(torch.ones(n, rows))
        # fixed-at-start: the mask decided at the first training step (saved, so a resumed run keeps it)
        self.register_buffer("fixed_group", torch.zeros(n))
        self.register_buffer("group_fixed", torch.zeros((), dtype=torch.bool))

    @property
    def rows(self) -> int:
        return self.origin.shape[0]

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.target_vector], "lr": lr},
                {"params": [self.target_scale, self.source_scales], "lr": self.scale_lr or lr}]

    def _scaled(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.target_scale[:, None] * self.target_vector, self.source_scales[..., None] * self.source_vectors

    def group(self, decide: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(membership mask ``[n]``, target similarities ``[n]``) from the current (detached) vectors.
        ``decide``: a training step, where ``fixed-at-start`` settles its group the first time."""
        target, sources = (t.detach() for t in self._scaled())
        target_mean, source_means = target.mean(0), sources.mean(1)
        ts = target_similarity(target_mean, source_means)
        if self.grouping != "fixed-at-start":
            return GROUPINGS[self.grouping](target_mean, source_means, self.lam), ts
        decided = GROUPINGS["kc"](target_mean, source_means, self.lam)
        current = torch.where(self.group_fixed, self.fixed_group, decided)  # on the device: no sync
        if decide:
            self.fixed_group.copy_(current)
            self.group_fixed.fill_(True)
        return current, ts

    def mixed_prompt(self, mask: torch.Tensor) -> torch.Tensor:
        target, sources = self._scaled()
        return self.origin + target + (mask[:, None, None] * sources).sum(0)

    def forward(self, batch: Batch) -> torch.Tensor:
        mask, ts = self.group(decide=self.training)
        self.record(group=mask, similarity=ts)
        return self.mixed_prompt(mask)

    def export(self) -> torch.Tensor:
        """``P_mix`` with the group the current vectors choose (what evaluation uses)."""
        with torch.no_grad():
            return self.mixed_prompt(self.group()[0]).detach().clone()

    def config(self) -> dict[str, Any]:
        return {"grouping": self.grouping, "lam": self.lam, "source_names": self.source_names,
                "sources": self.sources, "scale_lr": self.scale_lr}

    @classmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> DTVGPrompt:
        return cls(state["origin"], state["target_vector"], state["source_vectors"], config["source_names"],
                   config["grouping"], config["lam"], config.get("sources"), config.get("scale_lr"))
