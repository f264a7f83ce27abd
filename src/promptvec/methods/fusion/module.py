"""Dynamic Prompt Fusion (Hu et al. 2025; docs/methods.md §7 — the paper gives components, not
equations, so this concrete design is promptvec's own).

* a pool of M prompts ``P_m`` shared by all tasks (origin-style initialisation);
* a task embedding ``e_t`` per task (random, or the frozen backbone's mean input embedding of
  the task's description);
* task-aware scheduling ``π_t = softmax((W_q e_t) · k_m / (√d · τ))`` with learned keys and a
  temperature τ (low τ: each task picks few pool prompts; high τ: an even mix);
* an instance gate ``g = σ(W_g [e_t ; maxpool(input embeddings)] + b) ∈ (0, 1)^R`` that controls
  how much of the fused signal each prompt row carries (W_g starts at zero, so g starts at σ(b));
* ``P(x, t) = P_t^private + g ⊙ Σ_m π_{t,m} P_m`` (private prompts optional, starting at zero);
* learned loss weights for joint multi-task training: ``Σ_t exp(−s_t)·L_t + s_t`` (uncertainty
  weighting) over the tasks of a mixed-task step;
* mixed-task batches (:class:`~promptvec.batching.MixedTaskBatches`, weighted by ``mixing``), and
  validation on the first task (the target) only: the others are sources, auxiliary data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

import torch
from torch import nn

from promptvec.backbones.base import Batch
from promptvec.batching import BatchOrder, MixedTaskBatches, TaskMixing
from promptvec.errors import ConfigError
from promptvec.prompts.base import PromptModule, max_pooled_input, register_prompt_module, seeded_linear


@register_prompt_module
class FusionPrompt(PromptModule):
    kind = "fusion"
    evaluates_first_task_only: ClassVar[bool] = True

    def __init__(self, pool: torch.Tensor, task_embeddings: torch.Tensor, task_names: list[str],
                 temperature: float = 1.0, private: bool = False, gate_bias: float = 2.0,
                 network_lr: float | None = None, sources: list[dict[str, Any]] | None = None,
                 mixing: TaskMixing | None = None) -> None:
        super().__init__()
        if pool.dim() != 3 or pool.shape[0] == 0:
            raise ConfigError("the fusion pool needs at least one prompt ([M, R, d])", "raise pool_size")
        if task_embeddings.shape != (len(task_names), pool.shape[2]):
            raise ConfigError(f"task embeddings {tuple(task_embeddings.shape)} do not fit {len(task_names)} tasks of "
                              f"width {pool.shape[2]}", "give one embedding of the model's width per task")
        if temperature <= 0:
            raise ConfigError(f"fusion temperature must be > 0, got {temperature}", "use e.g. 1.0")
        size, rows, dim = pool.shape
        self.task_names, self.temperature, self.use_private = list(task_names), float(temperature), private
        self.gate_bias, self.network_lr = float(gate_bias), network_lr
        self.sources = sources or []
        self.mixing = mixing or TaskMixing()
        self.pool = nn.Parameter(pool.detach().float().clone())
        self.task_embeddings = nn.Parameter(task_embeddings.detach().float().clone())
        self.query = seeded_linear(dim, dim, seed=size)
        self.keys = nn.Parameter(torch.randn(size, dim, generator=torch.Generator().manual_seed(size)))
        self.gate = nn.Linear(2 * dim, rows)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.private = nn.Parameter(torch.zeros(len(task_names), rows, dim)) if private else None
        self.loss_log_vars = nn.Parameter(torch.zeros(len(task_names)))
        self.embed: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return self.pool.shape[1]

    def bind(self, backbone) -> FusionPrompt:  # noqa: D102
        self.embed = backbone.input_embeds
        return self

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        prompts = [self.pool] + ([self.private] if self.private is not None else [])
        network = [p for n, p in self.named_parameters() if n not in {"pool", "private"}]
        return [{"params": prompts, "lr": lr}, {"params": network, "lr": self.network_lr or lr}]

    def batches(self, lengths: list[int], groups: list[int], batch_size: int, seed: int) -> BatchOrder:
        """Tasks mixed within each batch (one forward per task present; :meth:`combine_losses` adds
        them up); a run on the target alone has nothing to mix and takes the default order."""
        if len(set(groups)) > 1:
            return MixedTaskBatches(groups, batch_size, seed, self.mixing)
        return super().batches(lengths, groups, batch_size, seed)

    @classmethod
    def mean_batch(cls, sizes: list[int], batch_size: int) -> float:
        """Full batches: a Fusion run always mixes its sources in (the method needs them), and mixed
        batches are drawn with replacement."""
        return MixedTaskBatches.mean_batch(sizes, batch_size)

    def task_index(self, task: str | None) -> int:
        if task not in self.task_names:
            raise ConfigError(f"the fusion module was trained on tasks {self.task_names}, not on '{task}'",
                              "evaluate it on one of its tasks")
        return self.task_names.index(task)

    def schedule(self) -> torch.Tensor:
        """``[T, M]`` scheduling weights π of every task over the pool."""
        queries = self.query(self.task_embeddings)
        return torch.softmax(queries @ self.keys.T / (math.sqrt(queries.shape[1]) * self.temperature), dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.embed is None:
            raise ConfigError("the fusion module needs the backbone's input embeddings", "call bind(backbone) first")
        t = self.task_index(batch.task)
        pi = self.schedule()[t]
        fused = torch.einsum("m,mrd->rd", pi, self.pool)
        gate_input = torch.cat([self.task_embeddings[t].expand(batch.size, -1),
                                max_pooled_input(self.embed, batch)], dim=-1)
        g = torch.sigmoid(self.gate(gate_input))  # [B, R]
        self.record(task=batch.task, pi=pi, gate_mean=g.mean(), gate_std=g.std(unbiased=False))
        prompt = g.unsqueeze(-1) * fused
        return prompt + self.private[t] if self.private is not None else prompt

    def combine_losses(self, losses: dict[str, torch.Tensor], counts: dict[str, int]) -> torch.Tensor:
        """Uncertainty weighting: ``Σ_t exp(−s_t)·L_t + s_t`` over the tasks in this step."""
        terms = []
        for task, loss in losses.items():
            s = self.loss_log_vars[self.task_index(task)]
            terms.append(torch.exp(-s) * loss + s)
        return torch.stack(terms).sum()

    def config(self) -> dict[str, Any]:
        return {"task_names": self.task_names, "temperature": self.temperature, "private": self.use_private,
                "gate_bias": self.gate_bias, "network_lr": self.network_lr, "sources": self.sources,
                "mixing": asdict(self.mixing)}

    @classmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> FusionPrompt:
        return cls(state["pool"], state["task_embeddings"], config["task_names"], config["temperature"],
                   config["private"], config["gate_bias"], config.get("network_lr"), config.get("sources"),
                   TaskMixing(**config.get("mixing", {})))
