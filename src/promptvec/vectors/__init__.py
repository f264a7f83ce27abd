"""Origins, task prompt vectors, their arithmetic, merges and similarity: pure tensor code with
metadata (no training)."""

from promptvec.vectors.merge import MERGE_METHODS, merge
from promptvec.vectors.origin import Origin, ordinary_token_ids
from promptvec.vectors.similarity import SIMILARITIES, similarity, similarity_matrix
from promptvec.vectors.tpv import TaskPromptVector, VectorMeta, VectorMismatchError

__all__ = ["MERGE_METHODS", "SIMILARITIES", "Origin", "TaskPromptVector", "VectorMeta", "VectorMismatchError",
           "merge", "ordinary_token_ids", "similarity", "similarity_matrix"]
