"""The one check every prompt and task prompt vector passes where it enters or leaves promptvec:
reading or writing an adapter folder, loading or saving a vector, adding to the store (import, pull,
add) and applying a vector to an origin (whose result is written through the same writer).

Why one function: each entry point used to check a different subset, so a NaN prompt came in through
``store pull``, an integer tensor through ``store import``, and ``vector apply --scale 1e39`` wrote an
infinite prompt with exit code 0.
"""

from __future__ import annotations

import torch

from promptvec.errors import CheckpointError


def check_prompt_tensor(tensor: object, where: str, *, rows: int | None = None, dim: int | None = None,
                        fix: str = "re-create it from its source") -> torch.Tensor:
    """``tensor`` if it is a floating-point ``[R, d]`` matrix with R, d ≥ 1, every value finite, and —
    when given — the ``rows``/``dim`` its metadata claims; else one :class:`CheckpointError` naming
    ``where`` and what is wrong."""
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{where}: expected a tensor, got {type(tensor).__name__}", fix)
    if not tensor.is_floating_point():
        raise CheckpointError(f"{where}: values must be floating point, got {tensor.dtype}", fix)
    if tensor.dim() != 2:
        raise CheckpointError(f"{where}: must be an [R, d] matrix, got shape {tuple(tensor.shape)}", fix)
    if tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise CheckpointError(f"{where}: has no rows or no columns (shape {tuple(tensor.shape)})", fix)
    if rows is not None and tensor.shape[0] != rows:
        raise CheckpointError(f"{where}: has {tensor.shape[0]} rows but its metadata says {rows}", fix)
    if dim is not None and tensor.shape[1] != dim:
        raise CheckpointError(f"{where}: is {tensor.shape[1]} wide but its metadata says {dim}", fix)
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{where}: contains NaN or infinite values", fix)
    return tensor


def positive_int(value: object, where: str, name: str) -> int:
    """A metadata count (rows, dim, num_virtual_tokens) that must be a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{where}: '{name}' must be a positive integer, got {value!r}",
                              "the metadata is damaged or was not written by promptvec/PEFT")
    return value
