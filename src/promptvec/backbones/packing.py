"""No compute on padding: a training batch of a decoder-only model as one packed sequence.

A padded batch ``[B, T]`` spends the model on every padding position; at batch 8 on sst2 that is
about a third of them. Packed, the batch's real tokens are one sequence ``[1, L]`` (``L`` = the sum of
the rows' lengths) under a block-diagonal causal mask: every token sees the shared prompt's
keys/values (computed once, :mod:`promptvec.backbones.prefix`) and the earlier tokens of its own
example, never another example's. Position ids restart after the prompt for every example, so each
example is computed exactly as it would be alone; only the logits that predict label tokens are
taken, and the loss is the same mean over label tokens as the padded batch's.

Packing is not always cheaper: attention with an explicit mask computes every (query, key) pair of
the packed sequence, ``L × (R + L)``, where the padded batch computes ``B × T × (R + T)``. With little
padding and many rows (batch 16 of 64-token inputs) the packed attention costs more than the padding
it saves — measured 1.9× slower per step on SmolLM2 — so each batch is packed only when a FLOP count
of both says packing saves at least :data:`PACKING_MARGIN` (:func:`packing_pays`).

The mask is passed to the model as a ready 4-D mask (``[1, 1, L, R + L]``: boolean for SDPA, additive
for eager attention), which transformers uses as given. Exactness is checked once per model, as the
shared prompt cache is (:func:`packs_exactly`); a model where packing differs keeps the padded path
and says so once.
"""

from __future__ import annotations

from typing import Any

import torch

from promptvec.backbones.exactness import NotSupported, exact_or_warn, tolerance

#: attention implementations that take a custom 4-D mask as given
MASKED_ATTENTION = ("sdpa", "eager")
#: pack only when its FLOPs are below this share of the padded batch's: attention under an explicit mask runs
#: slower per FLOP than the padded batch's (measured on SmolLM2, CPU), so a near tie stays padded
PACKING_MARGIN = 0.85


def packing_pays(attention_mask: torch.Tensor, prompt_rows: int, config: Any) -> bool:
    """Whether the packed batch costs clearly fewer FLOPs than the padded one: per token, the linear
    layers (``2·(2d² + 2d·kv + 3d·ffn)``, the same either way) plus ``4d`` per attended key — every
    key of the packed sequence when packed, of the row's padded width when not."""
    size, width = attention_mask.shape
    real = int(attention_mask.sum())
    d = config.hidden_size
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv = d * (getattr(config, "num_key_value_heads", None) or heads) // heads
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d
    linear = 2 * (2 * d * d + 2 * d * kv + 3 * d * ffn)
    padded = size * width * (linear + 4 * d * (prompt_rows + width))
    packed = real * (linear + 4 * d * (prompt_rows + real))
    return packed < PACKING_MARGIN * padded


def packed_mask(lengths: torch.Tensor, prompt_rows: int, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """``[1, 1, L, R + L]``: each token attends to the prompt and to its own example up to itself."""
    device = lengths.device
    example = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    index = torch.arange(int(example.shape[0]), device=device)
    own = (example[:, None] == example[None, :]) & (index[None, :] <= index[:, None])
    allowed = torch.cat([own.new_ones(own.shape[0], prompt_rows), own], dim=1)[None, None]
    if implementation == "eager":  # an additive mask: 0 where allowed, the dtype's minimum elsewhere
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return allowed


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor, prompt_rows: int):
    """A left-padded batch with right-aligned label targets ``[B, k]`` as one sequence: its ids ``[1, L]``,
    position ids ``[1, L]`` (each example from ``prompt_rows`` on), the lengths of the rows, the packed
    positions whose logits predict a label token, and those tokens."""
    real = attention_mask.bool()
    lengths = real.sum(dim=1)
    ids = input_ids[real][None]  # row by row, padding dropped (rows are left-padded: order is kept)
    starts = lengths.cumsum(0) - lengths
    offsets = torch.arange(ids.shape[1], device=ids.device) - torch.repeat_interleave(starts, lengths)
    longest = targets.shape[1]
    # the k positions before each row's last token predict its (right-aligned) label tokens
    predicting = (starts + lengths - 1 - longest)[:, None] + torch.arange(longest, device=ids.device)[None, :]
    wanted = targets != -100
    return ids, (prompt_rows + offsets)[None], lengths, predicting[wanted], targets[wanted]


def packs_exactly(model: Any, name: str, loss_of) -> bool:
    """Whether packing gives this model's padded loss and gradient (checked once per model on two rows
    of different lengths); ``loss_of(packed)`` computes the loss of the backbone's check batch either way."""
    def check() -> bool:
        implementation = getattr(model.config, "_attn_implementation", None)
        if implementation not in MASKED_ATTENTION:
            raise NotSupported(f"its attention ({implementation}) takes no custom 4-D mask")
        close = tolerance(model.get_input_embeddings().weight.dtype)
        padded, packed = loss_of(False), loss_of(True)
        # relative to the size of the loss and of the gradient: summation order differs with the shapes
        return bool(all((a - b).norm() <= close * b.norm() for a, b in zip(padded, packed, strict=True)))

    return exact_or_warn(check, name, "pack a batch without padding", "keeps the padded batch on it",
                         "its loss differs from the padded batch's")
