"""The orders in which training draws its examples: seeded, resumable, chosen by the prompt module
(:meth:`~promptvec.prompts.PromptModule.batches`).

:class:`BucketedBatches` (the default) is length-bucketed: each epoch shuffles the examples with
a generator seeded by (data seed, epoch), sorts windows of 50 batches by length (so a batch pads
little), cuts them into batches and shuffles the batches. The order is a pure function of (seed,
epoch), so the data state is just (epoch, position). With ``groups`` (one id per example, e.g.
its task in multi-task training) a batch never mixes groups: windows are sorted by (group, length)
and cut where the group changes, so groups are drawn in proportion to their size. Without groups
the order is the single-task one.

:class:`MixedTaskBatches` mixes tasks within a batch (joint training with auxiliary tasks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

WINDOW_BATCHES = 50


class BatchOrder(Protocol):
    """What the training loop asks of a batch order: the next batch (example indices), each
    example's group (its task: the loop runs one forward per task present), and a small state saved
    with every checkpoint so a resumed run draws the same batches."""

    def next(self) -> list[int]: ...

    def group(self, index: int) -> int: ...

    def state(self) -> dict[str, int]: ...

    def load_state(self, state: dict[str, int]) -> None: ...


@dataclass
class BucketedBatches:
    lengths: list[int]
    batch_size: int
    seed: int
    groups: list[int] | None = None
    epoch: int = 0
    position: int = 0

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        window = self.batch_size * WINDOW_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start: start + window], key=lambda i: (self.group(i), self.lengths[i]))
            current: list[int] = []
            for i in chunk:
                if current and (len(current) == self.batch_size or self.group(i) != self.group(current[0])):
                    batches.append(current)
                    current = []
                current.append(i)
            batches.append(current)
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffle]

    def group(self, index: int) -> int:
        return self.groups[index] if self.groups is not None else 0

    @staticmethod
    def mean_batch(sizes: Sequence[int], batch_size: int) -> float:
        """Examples per batch, on average over an epoch of ``sizes[g]`` examples of each group: a window's
        examples of one group end in a partial batch (10 examples at batch 8 make batches of 8 and 2, so a
        step trains on 5 on average). Exact for one group, and for several within one window; beyond that,
        each window is taken to hold the groups in proportion to their sizes. What the cost estimate
        counts per step, without building an order."""
        total = sum(sizes)
        if not total:
            return float(batch_size)
        window = batch_size * WINDOW_BATCHES
        batches = 0
        for start in range(0, total, window):
            held = min(window, total - start)
            batches += sum(math.ceil(held * size / (total * batch_size)) for size in sizes if size)
        return total / batches

    def next(self) -> list[int]:
        batches = self.epoch_batches(self.epoch)
        if self.position >= len(batches):
            self.epoch, self.position = self.epoch + 1, 0
            batches = self.epoch_batches(self.epoch)
        batch = batches[self.position]
        self.position += 1
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


@dataclass(frozen=True)
class TaskMixing:
    """How :class:`MixedTaskBatches` weights tasks: ∝ min(n_t, ``cap``)^(1/``temperature``), and
    optionally a fixed ``first_share`` for the first task (transfer: the target)."""

    cap: int | None = None
    temperature: float = 1.0
    first_share: float | None = None


@dataclass
class MixedTaskBatches:
    """Batches that mix tasks (joint multi-task training, e.g. Dynamic Prompt Fusion): every slot of
    a batch draws a task with probability ∝ min(n_t, cap)^(1/temperature) — examples-proportional
    with a cap at temperature 1, uniform over tasks as the temperature grows; optionally the first
    task gets a fixed share and the others split the rest that way — then an example of
    that task, with replacement. Batch k is a pure function of (seed, k), so the state is k alone.
    Within a batch, examples are sorted by task so the trainer runs one forward per task."""

    groups: list[int]
    batch_size: int
    seed: int
    mixing: TaskMixing = field(default_factory=TaskMixing)
    position: int = 0

    @staticmethod
    def mean_batch(sizes: Sequence[int], batch_size: int) -> float:
        """Every batch is full: its examples are drawn with replacement."""
        return float(batch_size)

    def __post_init__(self) -> None:
        self.members: dict[int, list[int]] = {}
        for index, group in enumerate(self.groups):
            self.members.setdefault(group, []).append(index)
        self.order = sorted(self.members)
        mixing = self.mixing
        sizes = torch.tensor([float(len(self.members[g])) for g in self.order])
        if mixing.cap is not None:
            sizes = sizes.clamp(max=float(mixing.cap))
        weights = sizes ** (1.0 / mixing.temperature)
        self.weights = weights / weights.sum()
        if mixing.first_share is not None and len(self.order) > 1:
            rest = self.weights[1:] / self.weights[1:].sum()
            self.weights = torch.cat([torch.tensor([mixing.first_share]), (1 - mixing.first_share) * rest])

    def next(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.position)
        tasks = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=generator).tolist()
        batch = []
        for slot in sorted(tasks):
            pool = self.members[self.order[slot]]
            batch.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        self.position += 1
        return batch

    def group(self, index: int) -> int:
        return self.groups[index]

    def state(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
