"""Origins: reproducible random prompt initialisations, identified by (model fingerprint, R, seed).

Following Lester et al. and the TPV paper, an origin copies R rows of the input-embedding matrix
at token ids sampled without replacement from 5,000 *ordinary* tokens:

* sentencepiece vocabularies ordered by frequency (T5): the first 5,000 non-special ids;
* byte-level BPE and WordPiece vocabularies (Llama, GPT-2, SmolLM, BERT): the first 5,000 ids, in
  vocabulary order (≈ merge order ≈ frequency), whose text is a word of ≥ 2 letters — no special,
  byte, sub-word-continuation or punctuation tokens **(our choice)**.

Sampling uses a seeded ``torch.Generator`` so the same seed gives the same origin everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from promptvec.backbones.base import Backbone
from promptvec.errors import CheckpointError, ConfigError

ORDINARY_POOL = 5000


def _is_sentencepiece(tokenizer) -> bool:
    sample = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), 2000))))
    return sum(1 for t in sample if isinstance(t, str) and t.startswith("\u2581")) > len(sample) // 4


@lru_cache(maxsize=8)
def _ordinary_ids_cached(tokenizer) -> tuple[int, ...]:
    special = set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)
    if _is_sentencepiece(tokenizer):
        ids = [i for i in range(vocab_size) if i not in special]
        return tuple(ids[:ORDINARY_POOL])
    picked = []
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        piece = tokenizer.convert_ids_to_tokens(token_id)
        if not isinstance(piece, str) or piece.startswith("##") or piece.startswith("<"):
            continue
        text = tokenizer.decode([token_id]).strip()
        if len(text) >= 2 and text.isascii() and text.isalpha():
            picked.append(token_id)
            if len(picked) == ORDINARY_POOL:
                break
    return tuple(picked)


def ordinary_token_ids(tokenizer) -> list[int]:
    """The pool of ordinary token ids origins are sampled from (at most 5,000)."""
    return list(_ordinary_ids_cached(tokenizer))


@dataclass(frozen=True)
class Origin:
    """A random prompt initialisation: which embedding rows of which model."""

    model_fingerprint: str
    rows: int
    seed: int
    token_ids: tuple[int, ...]

    @classmethod
    def sample(cls, backbone: Backbone, rows: int, seed: int) -> Origin:
        """``rows`` ordinary tokens drawn by ``seed`` from this model's vocabulary: the random start whose
        difference from a tuned prompt is its task prompt vector."""
        if rows < 1:
            raise ConfigError(f"prompt length must be at least 1, got {rows}", "use --prompt-length 20")
        pool = ordinary_token_ids(backbone.tokenizer)
        if rows > len(pool):
            raise ConfigError(f"prompt length {rows} exceeds the {len(pool)} ordinary tokens of this vocabulary",
                              f"use at most {len(pool)} rows")
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(pool), generator=generator)[:rows].tolist()
        return cls(backbone.fingerprint, rows, int(seed), tuple(pool[i] for i in order))

    def tensor(self, backbone: Backbone) -> torch.Tensor:
        """The ``[R, d]`` origin prompt (fp32), after checking it belongs to this backbone."""
        if backbone.fingerprint != self.model_fingerprint:
            raise CheckpointError(
                f"origin (seed {self.seed}) was made for model {self.model_fingerprint[:12]} but the backbone "
                f"is {backbone.fingerprint[:12]}", "re-sample the origin on this backbone")
        ids = torch.tensor(self.token_ids, dtype=torch.long, device=backbone.device)
        return backbone.embedding.weight.detach()[ids].to(torch.float32).cpu().clone()

    def to_dict(self) -> dict:
        """As recorded in run records and prompt metadata (JSON)."""
        data = asdict(self)
        data["token_ids"] = list(self.token_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Origin:
        """An origin as :meth:`to_dict` recorded it."""
        return cls(str(data["model_fingerprint"]), int(data["rows"]), int(data["seed"]),
                   tuple(int(t) for t in data["token_ids"]))
