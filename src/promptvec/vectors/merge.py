"""Merging several task prompt vectors into one (mergekit-style: one function per method,
looked up by name in :data:`MERGE_METHODS`). Tensor kernels come from ``peft.utils.merge_utils``.

Conventions (they differ, so they are stated):

* ``task_arithmetic``: Σ_i w_i τ_i — a **sum** (weights default to 1), as in the TPV paper's
  combinations ``θ0 + λ Σ τ_i``;
* ``ties``: trim each τ_i to its top-``density`` magnitudes, elect the per-entry majority sign, then
  the **mean** over the weighted entries that agree with it (PEFT's disjoint merge);
* ``dare_linear``: drop entries with probability 1 − density, rescale by 1/density, then a weighted
  **sum**; ``dare_ties``: DARE pruning followed by TIES' sign election and mean.

DARE is random: a ``seed`` makes it reproducible (the global RNG is left untouched).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch

from promptvec.errors import ConfigError
from promptvec.registry import Registry
from promptvec.vectors.tpv import TaskPromptVector, VectorMismatchError


def _kernels() -> ModuleType:
    """PEFT's merge kernels, imported when a merge runs (importing peft takes seconds; listing
    methods or tasks should not pay for it)."""
    from peft.utils import merge_utils

    return merge_utils


MergeFn = Callable[[list[torch.Tensor], torch.Tensor, float], torch.Tensor]
MERGE_METHODS: Registry[MergeFn] = Registry("merge method")
MERGE_METHODS.add("task_arithmetic", lambda tensors, weights, density: _kernels().task_arithmetic(tensors, weights))
MERGE_METHODS.add("ties", lambda tensors, weights, density: _kernels().ties(tensors, weights, density))
MERGE_METHODS.add("dare_linear", lambda tensors, weights, density: _kernels().dare_linear(tensors, weights, density))
MERGE_METHODS.add("dare_ties", lambda tensors, weights, density: _kernels().dare_ties(tensors, weights, density))


def merge(vectors: list[TaskPromptVector], method: str = "task_arithmetic", weights: list[float] | None = None,
          density: float = 1.0, seed: int = 0) -> TaskPromptVector:
    """Merge compatible vectors with a named method."""
    combine = MERGE_METHODS[method]
    if not vectors:
        raise VectorMismatchError("nothing to merge", "give at least one vector")
    for v in vectors[1:]:
        vectors[0].check_compatible(v)
    if weights is None:
        weights = [1.0] * len(vectors)
    if len(weights) != len(vectors):
        raise ConfigError(f"{len(weights)} weights for {len(vectors)} vectors", "give one weight per vector")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density}", "e.g. --density 0.5")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tensor = combine([v.tensor for v in vectors], torch.tensor(weights, dtype=torch.float32),
                        density)
    name = f"{method}(" + ",".join(v.meta.task for v in vectors) + ")"
    merged = vectors[0]._derive(tensor, method, vectors, name)
    merged.meta.provenance.update({"weights": list(weights), "density": density, "seed": seed})
    return merged
