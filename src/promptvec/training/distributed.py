"""Several processes (``accelerate launch``, any backend): data-parallel training of one prompt
module, and suites that share their runs out between the processes (:class:`Processes`).

Every process draws the same *global* batch (same data seed) and trains on its own slice of it;
gradients are averaged with one flat all-reduce. The global batch size, the learning-rate schedule
and the data order are those of a single-process run, so a run on N processes follows the same
loss curve as one process (up to floating-point summation order) and the prompts stay identical on
every rank.

Why not ``accelerator.prepare(module)`` (DistributedDataParallel): prompt modules are tiny (a few
hundred thousand parameters), so one all-reduce of a flat gradient costs nothing next to the frozen
model's forward, and it needs none of DDP's bookkeeping for parameters a step does not use (DTVG's
unchosen source groups, a Fusion task absent from one rank's slice). A prepared scheduler would
also step once per process per step, shortening the schedule N-fold.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def release_at_exit() -> None:
    """Tear the process group down when the process exits. Left to interpreter shutdown, gloo's
    threads can outlive it and abort the process ("terminate called without an active exception")
    after all the work is done."""
    global _RELEASE_REGISTERED
    if not _RELEASE_REGISTERED:
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
        _RELEASE_REGISTERED = True


_RELEASE_REGISTERED = False


def local_slice(indices: list[int], rank: int, world: int) -> list[int]:
    """This process's share of a global batch (strided, so shares differ in size by at most one)."""
    return indices[rank::world]


def local_weight(local: int, total: int, world: int) -> float:
    """Factor on a process's mean loss so that averaging over processes gives the mean over the
    global batch: each process's mean counts in proportion to its number of examples."""
    return local * world / total


def average_gradients(parameters: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes in one all-reduce, without reading anything back to the
    host. A process with no gradient for a parameter (no examples this step, or none that used it)
    contributes zeros — what those examples contribute in a single process over the whole batch.
    (Only a parameter that *no* example used differs: a single process leaves its gradient ``None``
    and AdamW skips it, here it gets a zero gradient and its weight decay. promptvec's modules use
    every parameter on every example.)"""
    if world == 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for param in parameters:
        param.grad = flat[offset: offset + param.numel()].view_as(param)
        offset += param.numel()


class LossBuffer:
    """Per-step training losses kept on the device and read in one transfer at log intervals, so
    the training step never waits for the device (no ``.item()`` per step). On several processes
    the read also sums the processes' weighted shares into the global batch's loss."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.steps.append(step)
        self.values.append(loss.detach().float().reshape(()))

    def read(self) -> list[tuple[int, float]]:
        """(step, global loss) for every buffered step, and an empty buffer."""
        if not self.values:
            return []
        values = torch.stack(self.values)
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        pairs = list(zip(self.steps, values.tolist(), strict=True))
        self.steps, self.values = [], []
        return pairs


def agree(value: float, device: torch.device, world: int) -> float:
    """Rank 0's value on every process: decisions taken from numbers each process computes itself
    (a validation score) must not diverge through floating-point noise, or the processes would
    stop at different steps and wait on each other forever."""
    if world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


class Processes:
    """The processes ``accelerate launch`` started for a suite (one when run plainly): which one
    this is, and the two collective operations a suite needs — waiting for the others, and taking
    the main process's decision."""

    def __init__(self) -> None:
        self.rank, self.world, self._state = 0, 1, None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self._state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = self._state.process_index, self._state.num_processes
            release_at_exit()

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        """This process's GPU under ``accelerate launch`` (None: let the caller choose)."""
        return str(self._state.device) if self._state is not None and self._state.device.type == "cuda" else None

    def share(self, items: list) -> list:
        """This process's part of a list of independent jobs (round-robin)."""
        return items[self.rank::self.world]

    def wait(self) -> None:
        if self._state is not None and self.world > 1:
            self._state.wait_for_everyone()

    def total(self, value: int) -> int:
        """The sum of a count over all processes (each counts only its own runs)."""
        if self.world == 1:
            return int(value)
        from accelerate.utils import gather_object

        return sum(int(v) for v in gather_object([int(value)]))

    def decide(self, value: bool) -> bool:
        """The main process's value on every process."""
        if self.world == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return bool(broadcast_object_list([value], from_process=0)[0])
