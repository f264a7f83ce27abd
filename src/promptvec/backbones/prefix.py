"""A soft prompt's key/value cache on a decoder-only model, computed once and shared by a batch.

The prompt sits at positions 0…R−1 and, under causal attention, attends only to itself, so its
hidden states and keys/values do not depend on the input. When every example of a batch has the
same prompt ``[R, d]`` (plain prompt tuning and every method that only initialises it, DTVG's mixed
prompt), running those R rows through every layer once per example — what PEFT does — is redundant:
:class:`SharedPrompt` runs them once (``[1, R, d]``, positions 0…R−1) and fills each batch's cache
from that one result expanded over the batch (a copy of the keys/values per layer — memory traffic,
not model compute). Gradients from every example flow back through the expansion and sum into the
one prompt, so loss and gradient equal the per-example path's.

Where it is used: training steps whose prompt module shares its prompt (the cache is recomputed at
every step, since the prompt changes), and evaluation, label continuations and greedy generation
with a fixed prompt (computed once per evaluation, reused by every batch).

Exactness is checked per model rather than assumed: :func:`shares_exactly` compares both paths
once on a tiny padded batch; a model where they differ (positions it does not take from
``position_ids``, a cache it cannot continue, ...) keeps the per-example path and says so once.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from functools import cache
from typing import Any

import torch

from promptvec.backbones.exactness import exact_or_warn, tolerance


def cache_kwarg(model: Any) -> str:
    """The name under which this model's ``forward`` takes a key/value cache: transformers renamed
    ``past_key_values`` to ``cache`` during 5.x (the old name warns, then goes)."""
    model_class: type = type(model)
    return _cache_kwarg(model_class)


@cache
def _cache_kwarg(model_class: type) -> str:
    forward = getattr(model_class, "forward")  # noqa: B009  (a transformers model class)
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def returned_cache(output):
    """The key/value cache a forward returned (``cache`` or, before it, ``past_key_values``)."""
    found = getattr(output, "cache", None)
    return found if found is not None else output.past_key_values


class PromptCache(ABC):
    """Prompt keys/values ready to start a batch's cache: ``rows`` key positions before the inputs, of
    which :meth:`key_mask` says which are real (a row's prompt may be shorter than the longest)."""

    rows: int

    @abstractmethod
    def for_batch(self, size: int):
        """A fresh cache for ``size`` examples, holding the prompt keys/values of each."""

    def key_mask(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """``[size, rows]``: 1 where a row's prompt has a key, 0 for padding (``like``'s dtype and device)."""
        return like.new_ones(size, self.rows)


class SharedPrompt(PromptCache):
    """The per-layer keys/values ``[1, heads, R, head_dim]`` of one prompt at positions 0…R−1."""

    def __init__(self, model: Any, prompt: torch.Tensor) -> None:
        """Run ``prompt`` (``[R, d]``) through ``model`` once. Keeps the autograd graph when gradients
        are on (training), so the batch's loss reaches the prompt through the cache."""
        self.model, self.rows = model, prompt.shape[0]
        device = prompt.device
        embeds = prompt.unsqueeze(0).to(model.get_input_embeddings().weight.dtype)
        # the transformer body alone: the prompt's keys/values are needed, never its logits
        body = model.base_model
        extra = {} if body is not model else {"logits_to_keep": 1}
        out = body(inputs_embeds=embeds, position_ids=torch.arange(self.rows, device=device).unsqueeze(0),
                   use_cache=True, **extra)
        self.layers = [(layer.keys, layer.values) for layer in returned_cache(out).layers]

    def for_batch(self, size: int):
        """A fresh cache for ``size`` examples filled with the prompt's keys/values expanded over the batch,
        through the cache's own ``update`` (so every cache layer type, sliding windows included, handles
        it; it copies once per layer). The shared tensors are never written: a forward appends the batch's
        own keys to its own cache."""
        from transformers import DynamicCache

        batch_cache = DynamicCache(config=self.model.config)
        for index, (keys, values) in enumerate(self.layers):
            batch_cache.update(keys.expand(size, -1, -1, -1), values.expand(size, -1, -1, -1), index)
        return batch_cache


class MixedPrompts(PromptCache):
    """A batch whose rows have different prompts (a server answering requests for several prompts in
    one forward pass): row i starts from ``prompts[i]``'s keys/values, or from none. Shorter prompts
    are padded on the left with masked keys, so every row's inputs sit at the same cache positions
    while their position ids (counted over the real keys only) are what that prompt alone would give
    — the same left-padding equivalence the inputs use. Each prompt's keys were computed once; this
    only copies them into the batch's cache."""

    def __init__(self, model: Any, prompts: list[SharedPrompt | None]) -> None:
        self.model, self.prompts = model, prompts
        self.rows = max((p.rows for p in prompts if p is not None), default=0)
        # each distinct prompt once; row i takes entry index[i] (the last entry: no prompt, all zeros)
        self._distinct = list({id(p): p for p in prompts if p is not None and p.rows}.values())
        position = {id(p): i for i, p in enumerate(self._distinct)}
        self._index = torch.tensor([position.get(id(p), len(self._distinct)) for p in prompts])

    def key_mask(self, size: int, like: torch.Tensor) -> torch.Tensor:
        if size != len(self.prompts):
            raise ValueError(f"a batch of {size} rows for {len(self.prompts)} prompts")
        mask = like.new_zeros(size, self.rows)
        for row, prompt in enumerate(self.prompts):
            if prompt is not None and prompt.rows:
                mask[row, self.rows - prompt.rows:] = 1
        return mask

    def for_batch(self, size: int):
        from transformers import DynamicCache

        if size != len(self.prompts) or not self._distinct:
            raise ValueError(f"a batch of {size} rows for {len(self.prompts)} prompts (with {self.rows} key rows)")
        batch_cache = DynamicCache(config=self.model.config)
        for layer, (keys, _) in enumerate(self._distinct[0].layers):
            # the distinct prompts' keys/values left-padded to the longest (plus a zero entry), then one per row
            shape = (len(self._distinct) + 1, keys.shape[1], self.rows, keys.shape[3])
            padded = [keys.new_zeros(shape), keys.new_zeros(shape)]
            for entry, prompt in enumerate(self._distinct):
                for kind in (0, 1):
                    padded[kind][entry, :, self.rows - prompt.rows:] = prompt.layers[layer][kind][0]
            index = self._index.to(keys.device)
            batch_cache.update(padded[0][index], padded[1][index], layer)
        return batch_cache


def shares_exactly(model: Any, name: str, pad_token_id: int) -> bool:
    """Whether the shared-cache path gives this model's per-example logits (checked once per model
    on a tiny batch with padding between prompt and input). False: say so once, keep the old path."""
    from promptvec.modes import module_mode

    embedding = model.get_input_embeddings().weight
    dtype, device = embedding.dtype, embedding.device
    generator = torch.Generator().manual_seed(0)
    prompt = embedding[torch.randint(0, embedding.shape[0], (3,), generator=generator).to(device)].detach()
    ids = torch.randint(0, embedding.shape[0], (2, 4), generator=generator).to(device)
    ids[0, 0] = pad_token_id
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    full_mask = torch.cat([mask.new_ones(2, 3), mask], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)

    def check() -> bool:
        with torch.no_grad(), module_mode(model, training=False):
            inputs = model.get_input_embeddings()(ids)
            per_example = model(inputs_embeds=torch.cat([prompt.expand(2, -1, -1), inputs], dim=1),
                                attention_mask=full_mask, position_ids=positions, use_cache=False).logits[:, 3:]
            shared = SharedPrompt(model, prompt)
            once = model(inputs_embeds=inputs, attention_mask=full_mask, position_ids=positions[:, 3:],
                         use_cache=False, **{cache_kwarg(model): shared.for_batch(2)}).logits
        close = tolerance(dtype)
        return bool(torch.allclose(once[1:].float(), per_example[1:].float(), rtol=close, atol=close)
                    and torch.allclose(once[0, 1:].float(), per_example[0, 1:].float(), rtol=close, atol=close))

    return exact_or_warn(check, name, "share one prompt's keys/values across a batch",
                         "runs the prompt once per example on it", "its logits differ from the per-example path")
