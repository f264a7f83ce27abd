"""Attention for a packed sequence, one example at a time: no work on (query, key) pairs that can never meet.

A packed batch (:mod:`promptvec.backbones.packing`) is one sequence of ``L`` tokens under a block-diagonal
mask. Given that mask as a tensor, attention computes every pair of the sequence, ``L × (R + L)``, and throws
most away: at batch 8 of sst2 the pairs that can meet (a token and the prompt, a token and its own example)
are a fifth of them, and the masked attention took 14 % of a training step on SmolLM2. Here each example's
tokens are gathered into a row of a ``[B, S]`` block (``S``: the longest example, its label branches
included), attention runs on the blocks (each row against the prompt's ``R`` keys and its own ``S``), and
the outputs are scattered back to the packed order. The linear layers, most of the work, still run on the
packed sequence without padding; only attention sees the block's few padding slots. The result is the same
attention: a pair across examples is masked in the packed mask, so leaving it out changes nothing.

It is an attention implementation registered with transformers under the name ``promptvec_sdpa`` (SDPA
underneath): a causal backbone switches a model from ``sdpa`` to it (:func:`use_block_attention`). The packed
pass hands it the batch's :class:`~promptvec.backbones.packing.BlockLayout` as the keyword
``promptvec_blocks``, which transformers forwards from the model's call to every attention layer; without one
it is transformers' own SDPA attention. Grouped-query keys/values are shared by their heads inside the kernel
on a CPU, not copied once per head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from promptvec.backbones.packing import BLOCK_ATTENTION, LAYOUT_KWARG, BlockLayout


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
          dropout: float, scaling: float | None, causal: bool = False) -> torch.Tensor:
    """SDPA with grouped-query keys/values: shared by their heads' queries in the kernel on a CPU (no copy of
    the keys per head); repeated per head elsewhere, where a masked grouped call falls back to a slower
    kernel."""
    groups = query.shape[1] // key.shape[1]
    gqa = groups > 1 and query.device.type == "cpu"
    if groups > 1 and not gqa:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling,
                                          is_causal=causal, enable_gqa=gqa)


def block_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract (``query`` ``[1, H, Q, D]``, keys/values ``[1, KV, K, D]``,
    the output ``[1, Q, H, D]``). With a :class:`~promptvec.backbones.packing.BlockLayout` under the keyword
    ``promptvec_blocks`` (its prompt keys added: ``after_prompt(R)``), the keys are the prompt's ``R`` then the
    ``L`` packed tokens', and the queries the packed tokens' — after the prompt's own when the prompt runs
    inline (``Q = R + L``: its rows attend causally among themselves). Without one: transformers' SDPA
    attention."""
    layout: BlockLayout | None = kwargs.pop(LAYOUT_KWARG, None)
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    rows = layout.prompt_rows  # the prompt's keys
    inline = query.shape[2] - layout.scatter.numel()  # the prompt's own queries (0 when its keys come from a cache)
    blocks, width = layout.blocks, layout.width

    def to_blocks(states: torch.Tensor) -> torch.Tensor:
        """``[1, h, L, D]`` -> ``[B, h, S, D]``, gathered token-major (``[L, h, D]``, the layout the projections
        wrote), so that the blocks have the layout attention takes anyway."""
        picked = states[0].transpose(0, 1).index_select(0, layout.gather)
        return picked.view(blocks, width, *picked.shape[1:]).transpose(1, 2)

    def with_prompt(states: torch.Tensor) -> torch.Tensor:  # [1, KV, R + L, D] -> [B, KV, R + S, D]
        own = to_blocks(states[:, :, rows:])
        return torch.cat([states[:, :, :rows].expand(blocks, -1, -1, -1), own], dim=2)

    out = _sdpa(to_blocks(query[:, :, inline:]), with_prompt(key), with_prompt(value), layout.mask, dropout, scaling)
    heads, dim = out.shape[1], out.shape[-1]
    out = out.transpose(1, 2).reshape(blocks * width, heads, dim).index_select(0, layout.scatter)
    if inline:
        own = _sdpa(query[:, :, :inline], key[:, :, :rows], value[:, :, :rows], None, dropout, scaling, causal=True)
        out = torch.cat([own[0].transpose(0, 1), out])
    return out[None], None


AttentionInterface.register(BLOCK_ATTENTION, block_attention)
AttentionMaskInterface.register(BLOCK_ATTENTION, sdpa_mask)  # the masks transformers builds: SDPA's


def use_block_attention(model: Any) -> None:
    """Switch a model that runs transformers' SDPA attention to :func:`block_attention` (the same attention
    until a packed pass gives it a layout). A model on another implementation (eager, flash), or whose
    attention layers do not look theirs up by name, is left as it is: a packed pass then attends under the
    whole mask."""
    if model.config._attn_implementation == "sdpa" and model._can_set_attn_implementation():
        model.set_attn_implementation(BLOCK_ATTENTION)
