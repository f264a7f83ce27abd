"""Which source vectors join the target at a DTVG step (docs/methods.md §6, steps 2–5), as pure
tensor code: every strategy maps (target row-mean, source row-means) to a 0/1 membership mask
without leaving the device — no ``.item()``, no Python branch on tensor values — so grouping on
every forward pass never synchronises host and device.

Strategies (``dtvg --grouping``):

* ``kc`` (default, the released code): keep sources with target similarity TS ≥ 0, rank them by
  TS, and take the prefix whose knowledge consistency KC (mean pairwise similarity; KC(1) = 0) is
  highest — the first such prefix on ties; empty when no source is positive;
* ``ts-plus-kc`` (the paper's summary): the prefix maximising mean(TS over the prefix) + λ·KC;
* ``all-positive``: every source with TS ≥ 0; ``all``: every source; ``target-only``: none.

(``fixed-at-start`` is ``kc`` decided once at the first step; the module keeps that mask.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from promptvec.registry import Registry

GroupingFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
GROUPINGS: Registry[GroupingFn] = Registry("grouping")
register_grouping = GROUPINGS.register


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DTVG's sim of row-mean vectors: ``a · b / d`` (broadcasts: ``[n, d] @ [d]`` → ``[n]``)."""
    return a @ b.T / a.shape[-1] if b.dim() == 2 else a @ b / a.shape[-1]


def target_similarity(target_mean: torch.Tensor, source_means: torch.Tensor) -> torch.Tensor:
    """TS_s for every source, ``[n]``."""
    return similarity(source_means, target_mean)


def _prefix_scores(target_mean: torch.Tensor, source_means: torch.Tensor):
    """Sources ranked by TS (stable, descending), how many are positive, and per prefix length k
    (index k-1) its knowledge consistency KC(k) and mean TS."""
    ts = target_similarity(target_mean, source_means)
    order = torch.sort(ts, descending=True, stable=True).indices
    positive = (ts >= 0).sum()
    pair = similarity(source_means[order], source_means[order])
    pair = pair - torch.diag_embed(torch.diagonal(pair))  # i ≠ j only
    block = pair.cumsum(0).cumsum(1).diagonal()  # sum over the k×k leading block
    k = torch.arange(1, len(ts) + 1, device=ts.device, dtype=ts.dtype)
    kc = torch.where(k > 1, block / (k * (k - 1)).clamp(min=1), torch.zeros_like(block))
    mean_ts = ts[order].cumsum(0) / k
    return order, positive, kc, mean_ts, k


def _best_prefix(order, positive, objective, k) -> torch.Tensor:
    """Mask of the prefix (among the positive sources) maximising ``objective``; first on ties."""
    objective = torch.where(k <= positive, objective, torch.full_like(objective, float("-inf")))
    size = (torch.argmax(objective) + 1) * (positive > 0)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return (rank < size).to(objective.dtype)


@register_grouping("kc")
def knowledge_consistency(target_mean: torch.Tensor, source_means: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    order, positive, kc, _, k = _prefix_scores(target_mean, source_means)
    return _best_prefix(order, positive, kc, k)


@register_grouping("ts-plus-kc")
def ts_plus_kc(target_mean: torch.Tensor, source_means: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    order, positive, kc, mean_ts, k = _prefix_scores(target_mean, source_means)
    return _best_prefix(order, positive, mean_ts + lam * kc, k)


@register_grouping("all-positive")
def all_positive(target_mean: torch.Tensor, source_means: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return (target_similarity(target_mean, source_means) >= 0).to(source_means.dtype)


@register_grouping("all")
def all_sources(target_mean: torch.Tensor, source_means: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return torch.ones(source_means.shape[0], dtype=source_means.dtype, device=source_means.device)


@register_grouping("target-only")
def target_only(target_mean: torch.Tensor, source_means: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return torch.zeros(source_means.shape[0], dtype=source_means.dtype, device=source_means.device)
