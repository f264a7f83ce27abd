"""Similarity of task prompt vectors (or raw prompts), by name in :data:`SIMILARITIES`.

* ``cosine`` (default, the TPV paper's text): cosine of the row-averaged vectors,
  ``cos(mean_rows(a), mean_rows(b))``;
* ``cosine-flat`` (one of the TPV repository's scripts): cosine of the flattened matrices;
* ``dtvg`` (Dynamic Task Vector Grouping): ``mean_rows(a) · mean_rows(b) / d`` — not normalised,
  so it also reflects magnitude.

:func:`similarity_matrix` averages over origin pairs (docs/methods.md §2): for tasks a ≠ b,
the mean of sim(τ_a^(i), τ_b^(j)) over all origins (i, j); on the diagonal only i ≠ j, which
measures how origin-independent a task's vector is (NaN when a task has a single origin).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from promptvec.registry import Registry

Similarity = Callable[[torch.Tensor, torch.Tensor], float]


def cosine_of_means(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float().mean(0), b.float().mean(0), dim=0))


def cosine_flat(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def dtvg_dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.float().mean(0) @ b.float().mean(0)) / a.shape[-1]


SIMILARITIES: Registry[Similarity] = Registry("similarity")
SIMILARITIES.add("cosine", cosine_of_means)
SIMILARITIES.add("cosine-flat", cosine_flat)
SIMILARITIES.add("dtvg", dtvg_dot)


def similarity(a: torch.Tensor, b: torch.Tensor, measure: str = "cosine") -> float:
    measure_fn = SIMILARITIES[measure]
    if a.shape[-1] != b.shape[-1] or (measure == "cosine-flat" and a.shape != b.shape):
        from promptvec.vectors.tpv import VectorMismatchError

        raise VectorMismatchError(f"cannot compare tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}",
                                  "compare vectors of the same model (and, for cosine-flat, the same R)")
    return measure_fn(a, b)


def similarity_matrix(vectors: Mapping[str, Mapping[object, torch.Tensor]], measure: str = "cosine"
                      ) -> tuple[list[str], list[list[float]]]:
    """``vectors[task][origin] -> tensor``; returns (tasks, matrix) averaged over origin pairs."""
    tasks = list(vectors)
    matrix = []
    for a in tasks:
        row = []
        for b in tasks:
            values = [similarity(ta, tb, measure) for i, ta in vectors[a].items() for j, tb in vectors[b].items()
                      if a != b or i != j]
            row.append(sum(values) / len(values) if values else math.nan)
        matrix.append(row)
    return tasks, matrix
