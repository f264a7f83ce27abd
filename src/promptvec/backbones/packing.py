"""No compute on padding: a batch of a decoder-only model as one packed sequence.

A padded batch ``[B, T]`` spends the model on every padding position; at batch 8 on sst2 that is
about a third of them. Packed, the batch's real tokens are one sequence ``[1, L]`` (``L`` = the sum of
the rows' lengths) under a block-diagonal causal mask: every token sees the shared prompt and the
earlier tokens of its own example, never another example's. In training the prompt's R rows run inline,
first in the same sequence (one pass: a prompt computed apart would be a second pass of R rows, slow
matrix products on a CPU); in evaluation a fixed prompt's keys/values come from their cache, computed
once for every batch (:mod:`promptvec.backbones.prefix`). Position ids restart after the prompt for
every example, so each example is computed exactly as it would be alone; only the logits that are read
are computed.

- **Training** reads the positions that predict label tokens; the loss is the same mean over label
  tokens as the padded batch's. Neither feeds a row's last token: it predicts nothing that is scored.
- **Rank evaluation** also packs each label's continuation: a label of ``k`` tokens adds its first
  ``k - 1`` tokens as a *branch* after its example, numbered on from the example's end and attending to
  the example and to its own earlier tokens only (a tree-shaped mask). One forward pass then gives every
  label's log-likelihood, where the padded path runs a second pass over the key/value cache, once per
  (example, label) pair.

Every index is built on the host when the batch is collated (:class:`PackedRows`) and moves to the
device with the batch, through pinned memory: packing reads nothing back from the device, so on a GPU
it adds no synchronisation to a step.

Attention never meets a pair of tokens from two examples. On a model whose attention is
:mod:`promptvec.backbones.block_attention` (what a causal backbone switches an SDPA model to), each
example's tokens are gathered into a row of a ``[B, S]`` block for attention alone (:class:`BlockLayout`,
``S`` the longest example), so attention costs what the padded batch's does and the linear layers skip
the padding. Any other attention takes the packed mask as a ready 4-D mask (``[1, 1, L, R + L]``, or
``[1, 1, R + L, R + L]`` with the prompt inline: boolean for SDPA, additive for eager attention), which
transformers uses as given, and computes every (query, key) pair of the packed sequence, ``L × (R + L)``,
against the padded batch's ``B × T × (R + T)``: with little padding and many rows (batch 16 of 64-token
inputs) that costs more than the padding it saves (measured 1.9× slower per step on SmolLM2). So each
batch is packed only when a FLOP count of both paths, with the attention the model runs, says so
(:meth:`PackedRows.pays`). Exactness is checked once per model, as the shared prompt cache is
(:func:`packs_exactly`); a model where packing differs keeps the padded path and says so once. A model with
a sliding attention window (:func:`attention_window`) packs a batch only when every example, after the
prompt, fits in the window: packed attention knows no window, so a longer example runs padded, through the
model's own masks (:meth:`PackedRows.within_window`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch

from promptvec.backbones.exactness import NotSupported, exact_or_warn, tolerance

#: the attention implementation that computes a packed sequence one example at a time, given its
#: :class:`BlockLayout` (:mod:`promptvec.backbones.block_attention`, where it is registered with transformers)
BLOCK_ATTENTION = "promptvec_sdpa"
#: the keyword a packed pass gives that attention its layout under (transformers passes it on to the attention layers)
LAYOUT_KWARG = "promptvec_blocks"
#: attention implementations that take a custom 4-D mask as given
MASKED_ATTENTION = ("sdpa", "eager", BLOCK_ATTENTION)
#: pack only when its FLOPs are below this share of the padded batch's. Training: the backward pass of attention
#: under an explicit mask runs slower per FLOP than the padded batch's (measured on SmolLM2, CPU), so a near tie
#: stays padded. Ranking (forward only) costs what its FLOPs say: a least-squares fit of 60 evaluation batches of
#: five tasks put an attended key at 0.95× its FLOP share of a linear layer's cost, so the cheaper count wins.
#: Both for attention under the whole packed mask; attention by block packs whenever its count is no higher
#: (:meth:`PackedRows.pays`).
PACKING_MARGIN = {"training": 0.85, "ranking": 1.0}
PackingKind = Literal["training", "ranking"]


def attention_window(config: Any) -> int | None:
    """The model's sliding attention window, where any of its layers has one: a query at position ``p`` attends
    to keys at ``p - window + 1 … p`` only (Mistral's 4,096; Qwen2 or Gemma layers marked ``sliding_attention``).
    None when every layer attends to all earlier keys."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


@dataclass(frozen=True)
class Flops:
    """FLOPs of a forward pass, split into the linear layers' (the same packed or padded) and attention's
    (``4d`` per attended key): the split lets a benchmark fit what each costs on a machine."""

    linear: int
    attention: int

    @property
    def total(self) -> int:
        return self.linear + self.attention

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.linear + other.linear, self.attention + other.attention)


def forward_flops(config: Any, queries: int, keys: int) -> Flops:
    """FLOPs of ``queries`` tokens through the model's layers (not its output projection), each attending to
    ``keys`` keys: per token and layer, the linear layers (``2·(2d² + 2d·kv + 3d·ffn)``) plus ``4d`` per
    attended key."""
    d = config.hidden_size
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    kv = d * (getattr(config, "num_key_value_heads", None) or heads) // heads
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d
    return Flops(layers * queries * 2 * (2 * d * d + 2 * d * kv + 3 * d * ffn), layers * queries * 4 * d * keys)


@dataclass(frozen=True)
class BlockLayout:
    """Where each packed token sits in the ``[B, S]`` blocks, built on the host with the packed rows.

    ``gather`` ``[B·S]``: the packed token in each block slot (a padding slot points at token 0, whose output
    is dropped); ``scatter`` ``[L]``: each packed token's slot ``b·S + s``; ``mask`` ``[B, 1, S, P + S]``: which
    keys a slot attends to — the ``prompt_rows`` (``P``) prompt keys, all of them, then those of its own block
    (the packed mask's diagonal block; a padding slot attends to itself only, so that no row of the softmax is
    empty). Collation builds it with no prompt keys; a pass adds its prompt's once (:meth:`after_prompt`),
    not once per layer."""

    gather: torch.Tensor
    scatter: torch.Tensor
    mask: torch.Tensor
    prompt_rows: int = 0

    @property
    def blocks(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[-1]) - self.prompt_rows

    def after_prompt(self, rows: int) -> BlockLayout:
        """This layout with ``rows`` prompt keys before every block's own (attended by every slot)."""
        mask = self.mask[..., self.prompt_rows:]
        return replace(self, mask=torch.cat([mask.new_ones(*mask.shape[:-1], rows), mask], dim=-1), prompt_rows=rows)

    @classmethod
    def from_segments(cls, example: torch.Tensor, branch: torch.Tensor) -> BlockLayout:
        """The layout of a packed sequence whose token ``i`` belongs to example ``example[i]`` (examples in
        order, each contiguous) and to its branch ``branch[i]`` (0: the example's own tokens, ``j + 1``:
        label ``j``'s continuation). A token attends to the earlier tokens of its example that are its own
        or on its branch — the packed mask's rule, within one block."""
        blocks = int(example[-1]) + 1
        counts = torch.bincount(example, minlength=blocks)
        width = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(example.numel()) - starts[example]
        scatter = example * width + slot
        gather = torch.zeros(blocks * width, dtype=torch.long)
        gather[scatter] = torch.arange(example.numel())
        real = torch.zeros(blocks * width, dtype=torch.bool)
        real[scatter] = True
        on_branch = torch.zeros(blocks * width, dtype=torch.long)
        on_branch[scatter] = branch
        real, on_branch = real.view(blocks, width), on_branch.view(blocks, width)
        index = torch.arange(width)
        earlier = index[None, :] <= index[:, None]
        reachable = (on_branch[:, None, :] == 0) | (on_branch[:, None, :] == on_branch[:, :, None])
        mask = real[:, None, :] & earlier[None] & reachable
        mask |= ~real[:, :, None] & torch.eye(width, dtype=torch.bool)[None]
        return cls(gather, scatter, mask[:, None])

    def to(self, move: Callable[[torch.Tensor], torch.Tensor]) -> BlockLayout:
        return replace(self, gather=move(self.gather), scatter=move(self.scatter), mask=move(self.mask))

    def attended_pairs(self, prompt_rows: int) -> int:
        """(query, key) pairs attention computes over the blocks: every slot against the prompt and its block."""
        return self.blocks * self.width * (prompt_rows + self.width)


@dataclass(frozen=True)
class PackedRows:
    """A batch's rows as one sequence, every index built on the host at collation.

    ``ids``/``offsets`` ``[1, L]``: the tokens and each one's position within its example (the prompt's
    rows come first: the model's position id is ``R + offset``); ``example``/``branch`` ``[L]``: the row a
    token belongs to, and 0 for the row's own tokens or ``j + 1`` for label ``j``'s continuation; ``keep``
    ``[K]``: the packed positions whose logits are computed; ``read``/``token``/``pair`` ``[E]``: each scored
    token — which kept position predicts it, the token, and (rank evaluation) its ``example · C + label``.
    ``rows``, ``width`` and ``continuations`` (pairs, steps) describe the padded batch, and ``kind`` (training or
    ranking) which margin :meth:`pays` applies."""

    ids: torch.Tensor
    offsets: torch.Tensor
    example: torch.Tensor
    branch: torch.Tensor
    keep: torch.Tensor
    read: torch.Tensor
    token: torch.Tensor
    pair: torch.Tensor
    blocks: BlockLayout
    rows: int
    width: int
    kind: PackingKind
    continuations: tuple[int, int] = (0, 0)

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    @property
    def span(self) -> int:
        """Positions the longest example reaches after the prompt: its row, then (ranking) its longest label
        branch — what the padded batch's continuation pass reaches too."""
        return self.width + self.continuations[1]

    @classmethod
    def for_training(cls, rows: list[list[int]], label_lengths: list[int]) -> PackedRows:
        """Rows of input + label tokens; each row's last ``label_lengths[i]`` tokens are predicted, each by
        the position before it. A row's last token is packed without: it predicts nothing that is scored
        and no scored position sees it."""
        keep: list[int] = []
        token: list[int] = []
        start = 0
        for row, labels in zip(rows, label_lengths, strict=True):
            for t in range(len(row) - labels, len(row)):
                keep.append(start + t - 1)
                token.append(row[t])
            start += len(row) - 1
        return cls._build([row[:-1] for row in rows], [], keep, list(range(len(keep))), token, [0] * len(keep),
                          "training")

    @classmethod
    def for_ranking(cls, rows: list[list[int]], labels: list[list[int]]) -> PackedRows:
        """Input rows to score every label of ``labels`` after: the row's last position predicts each label's
        first token, and a label's branch token ``t`` its token ``t + 1``."""
        keep: list[int] = []
        read: list[int] = []
        token: list[int] = []
        pair: list[int] = []
        start = 0
        for i, row in enumerate(rows):
            last = len(keep)
            keep.append(start + len(row) - 1)
            position = start + len(row)  # the first branch token
            for j, label in enumerate(labels):
                read.append(last)
                token.append(label[0])
                pair.append(i * len(labels) + j)
                for t in range(1, len(label)):
                    read.append(len(keep))
                    keep.append(position)
                    token.append(label[t])
                    pair.append(i * len(labels) + j)
                    position += 1
            start = position
        steps = max(len(label) for label in labels) - 1
        return cls._build(rows, [label[:-1] for label in labels], keep, read, token, pair, "ranking",
                          continuations=(len(rows) * len(labels) if steps else 0, steps))

    @classmethod
    def _build(cls, rows: list[list[int]], branches: list[list[int]], keep: list[int], read: list[int],
               token: list[int], pair: list[int], kind: PackingKind,
               continuations: tuple[int, int] = (0, 0)) -> PackedRows:
        """The packed sequence: each row, then (ranking) every label's branch after it."""
        ids: list[int] = []
        offsets: list[int] = []
        example: list[int] = []
        branch: list[int] = []
        for i, row in enumerate(rows):
            ids += row
            offsets += range(len(row))
            example += [i] * len(row)
            branch += [0] * len(row)
            for j, tokens in enumerate(branches):
                ids += tokens
                offsets += range(len(row), len(row) + len(tokens))
                example += [i] * len(tokens)
                branch += [j + 1] * len(tokens)

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long)

        segments = tensor(example), tensor(branch)
        return cls(tensor(ids)[None], tensor(offsets)[None], *segments, tensor(keep), tensor(read), tensor(token),
                   tensor(pair), BlockLayout.from_segments(*segments), len(rows), max(len(row) for row in rows),
                   kind, continuations)

    def flops(self, prompt_rows: int, config: Any, blocked: bool = False) -> tuple[Flops, Flops]:
        """The padded batch's FLOPs and this packed sequence's, after a prompt of ``prompt_rows``: the padded
        count includes, when ranking multi-token labels, the continuation pass over every (example, label)
        pair; the packed count's attention is over the whole sequence, or (``blocked``: the model runs
        :mod:`promptvec.backbones.block_attention`) over :attr:`blocks`."""
        pairs, steps = self.continuations
        padded = (forward_flops(config, self.rows * self.width, prompt_rows + self.width)
                  + forward_flops(config, pairs * steps, prompt_rows + self.span))
        packed = forward_flops(config, self.length, prompt_rows + self.length)
        if blocked:
            attention = forward_flops(config, 1, self.blocks.attended_pairs(prompt_rows)).attention
            packed = Flops(packed.linear, attention)
        return padded, packed

    def pays(self, prompt_rows: int, config: Any, blocked: bool = False) -> bool:
        """Whether this packed sequence costs fewer FLOPs than the padded batch, by the kind's
        :data:`PACKING_MARGIN` under the whole mask. Attention by block (``blocked``) runs at the padded
        batch's speed per FLOP, and the packed pass does less besides (a training prompt runs inline, in
        matrix products of ``R + L`` rows rather than ``R``; an evaluation's cached prompt is not copied per
        row), so a tie packs: batch 16 of 64-token rows, no padding at all, trained 5 % faster packed on
        SmolLM2 (R 50 and 100)."""
        padded, packed = self.flops(prompt_rows, config, blocked)
        if blocked:
            return packed.total <= padded.total
        return packed.total < PACKING_MARGIN[self.kind] * padded.total

    def within_window(self, prompt_rows: int, config: Any) -> bool:
        """Whether every example, after a prompt of ``prompt_rows``, fits the model's sliding attention window
        (:func:`attention_window`), so that no query's window ends before the prompt: packed attention (by block or
        under the whole mask) attends to every earlier key of an example, and outside the window that is not
        what the model computes."""
        window = attention_window(config)
        return window is None or prompt_rows + self.span <= window

    def to(self, move: Callable[[torch.Tensor], torch.Tensor]) -> PackedRows:
        """The indices moved by ``move`` (the batch's own move: pinned and non-blocking to a GPU)."""
        moved: dict[str, Any] = {f.name: move(getattr(self, f.name)) for f in fields(self)
                                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved, blocks=self.blocks.to(move))

    def positions(self, prompt_rows: int, inline: bool = False) -> torch.Tensor:
        """``[1, L]`` position ids: every example numbered from the end of the prompt; ``inline``: ``[1, R + L]``,
        the prompt's own rows (0 … R − 1) first."""
        positions = self.offsets + prompt_rows
        if inline:
            positions = torch.cat([torch.arange(prompt_rows, device=positions.device)[None], positions], dim=1)
        return positions

    def mask(self, prompt_rows: int, implementation: str, dtype: torch.dtype, inline: bool = False) -> torch.Tensor:
        """``[1, 1, L, R + L]``: each token attends to the prompt, to its own example up to itself and, on a
        label's branch, to that branch's earlier tokens — never another example or another label's branch.
        ``inline`` (the prompt runs in the same pass, its rows first): ``[1, 1, R + L, R + L]``, the prompt's
        rows attending causally among themselves only, as they do when their keys/values are computed alone."""
        index = torch.arange(self.length, device=self.ids.device)
        own = ((self.example[:, None] == self.example[None, :]) & (index[None, :] <= index[:, None])
               & ((self.branch[None, :] == 0) | (self.branch[None, :] == self.branch[:, None])))
        allowed = torch.cat([own.new_ones(own.shape[0], prompt_rows), own], dim=1)
        if inline:
            prompt = torch.ones(prompt_rows, prompt_rows, dtype=torch.bool, device=own.device).tril()
            allowed = torch.cat([torch.cat([prompt, own.new_zeros(prompt_rows, self.length)], dim=1), allowed])
        allowed = allowed[None, None]
        if implementation == "eager":  # an additive mask: 0 where allowed, the dtype's minimum elsewhere
            return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(dtype).min)
        return allowed


def packs_exactly(model: Any, name: str, loss_of: Callable[[bool], tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Whether packing gives this model's padded loss and gradient (checked once per model on two rows
    of different lengths); ``loss_of(packed)`` computes the loss of the backbone's check batch either way.
    Ranking uses the same mask and position ids with other entries, so the one check covers it."""
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
