"""Prompt modules: the only trainable part. Every method differs only in how it produces the
prompt for a batch, so a new method is one new :class:`PromptModule` subclass registered here.

Besides ``forward``, a module tells the trainer what it cannot guess:

* :meth:`parameter_groups` — learning rates per parameter group (ATTEMPT's attention network and
  DTVG's scales train at their own rates);
* :meth:`batches` and :attr:`evaluates_first_task_only` — how a multi-task run draws its examples
  (:meth:`mean_batch`: how many a step holds, for the cost estimate) and which tasks it is selected on
  (Fusion mixes tasks within a batch and selects on the target);
* :meth:`combine_losses` — how per-task losses of a mixed-task step add up (Fusion learns them);
* :meth:`drain_log` — what it observed during training (DTVG's group per step, Fusion's weights),
  buffered as tensors and read only at log intervals so the step never waits on the device.

Modules whose prompt depends on the input or the task are saved in promptvec's own format
(:mod:`promptvec.prompts.serialization`): :meth:`config` + the state dict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from promptvec.backbones.base import Batch
from promptvec.batching import BatchOrder, BucketedBatches
from promptvec.errors import CheckpointError
from promptvec.registry import Registry

PROMPT_MODULES: Registry[type[PromptModule]] = Registry("prompt-module kind", CheckpointError,
                                                        populate="promptvec.methods.builtin")


def register_prompt_module(cls: type[PromptModule]) -> type[PromptModule]:
    return PROMPT_MODULES.add(cls.kind, cls)


class PromptModule(nn.Module, ABC):
    kind: ClassVar[str]
    #: the prompt is the same for every example of a batch (it depends on nothing in the batch but its
    #: task): ``forward`` returns ``[R, d]`` and a decoder-only backbone computes it once for the batch
    shares_prompt: ClassVar[bool] = False
    #: the first task is the one the prompt is for; any further tasks are auxiliary training data (a
    #: transfer method's sources), neither evaluated nor selected on. Off: a multi-task prompt, selected
    #: on the mean of every task's primary metric (SPoT's generic source)
    evaluates_first_task_only: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        #: the training step the next forward belongs to (set by the trainer; used in logs)
        self.step = 0
        self._log: list[dict[str, Any]] = []

    @abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """The prompt for this batch: ``[R, d]`` where :attr:`shares_prompt`, else ``[B, R, d]``."""

    @property
    @abstractmethod
    def rows(self) -> int:
        """Number of virtual tokens R."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; by default one group at the run's learning rate."""
        return [{"params": self.trainable_parameters(), "lr": lr}]

    def batches(self, lengths: list[int], groups: list[int], batch_size: int, seed: int) -> BatchOrder:
        """The order training draws examples in (``groups``: each example's task, 0 = the first). By
        default length-bucketed batches of one task each, tasks drawn in proportion to their size:
        little padding, and a multi-task prompt sees each task as often as its data allow."""
        return BucketedBatches(lengths, batch_size, seed, groups=groups if len(set(groups)) > 1 else None)

    @classmethod
    def mean_batch(cls, sizes: list[int], batch_size: int) -> float:
        """Examples a batch of :meth:`batches` holds on average over an epoch (``sizes``: each task's training
        examples): what the cost estimate counts per step, without data or an order."""
        return BucketedBatches.mean_batch(sizes, batch_size)

    def combine_losses(self, losses: dict[str, torch.Tensor], counts: dict[str, int]) -> torch.Tensor:
        """One loss from the per-task losses of a step: the example-weighted mean (= the loss of the
        whole batch), which single-task training reduces to."""
        total = sum(counts.values())
        return torch.stack([loss * (counts[task] / total) for task, loss in losses.items()]).sum()

    def bind(self, backbone) -> PromptModule:
        """Attach what the module reads from the frozen backbone (input embeddings) without making
        it part of the module's parameters or state; a no-op for modules that need nothing."""
        return self

    def export(self) -> torch.Tensor | None:
        """A single static ``[R, d]`` prompt, where one exists (None for per-input prompts)."""
        return None

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments: with the state dict they rebuild the module."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> PromptModule:
        """Rebuild a saved module (shapes come from the state; values are loaded after)."""

    # ---- training logs ------------------------------------------------------------------------
    def record(self, **values: Any) -> None:
        """Buffer one log entry (tensors stay on the device until :meth:`drain_log`)."""
        if self.training:
            self._log.append({"step": self.step, **{k: v.detach() if isinstance(v, torch.Tensor) else v
                                                     for k, v in values.items()}})

    def drain_log(self) -> list[dict[str, Any]]:
        """The buffered entries as plain JSON values, and an empty buffer."""
        entries = [{k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in e.items()} for e in self._log]
        self._log.clear()
        return entries


def seeded_linear(fan_in: int, fan_out: int, seed: int, bias: bool = False, std: float | None = None) -> nn.Linear:
    """A linear layer initialised from its own seed — like torch's default (uniform ±1/√fan_in), or
    N(0, std²) where a method's reference code says so — so a module's initial state does not depend
    on the global random state (runs are reproducible and a rebuilt module equals the original)."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / fan_in ** 0.5
    with torch.no_grad():
        for param in layer.parameters():
            if std is None:
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.normal_(0.0, std, generator=generator)
    return layer


def masked_max(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the real tokens of ``[B, L, d]`` input embeddings (padding never wins)."""
    filled = embeds.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(embeds.dtype).min)
    return filled.max(dim=1).values


def max_pooled_input(embed: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> torch.Tensor:
    """``[B, d]`` max over the frozen input embeddings of the batch's *input* tokens — never its
    padding, never the gold label a causal training sequence ends with (:attr:`Batch.input_positions`),
    so a training batch and an evaluation batch of the same examples pool to the same vectors."""
    with torch.no_grad():
        return masked_max(embed(batch.input_ids).float(), batch.input_positions)
