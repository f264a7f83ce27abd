"""Origins and (in later modules) task prompt vectors: pure tensor code with metadata."""

from promptvec.vectors.origin import Origin, ordinary_token_ids

__all__ = ["Origin", "ordinary_token_ids"]
