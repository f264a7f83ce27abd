"""Checked once per model, never assumed: whether a faster path gives the plain path's numbers.

The shared prompt cache and batch packing each rely on how a model's ``forward`` treats position ids,
caches and masks — behaviour a new architecture or transformers release may change. Each is checked
once per model on a tiny batch; a mismatch, or any model-specific failure while checking, means the
model keeps the plain path, and says so once."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class NotSupported(Exception):
    """The model cannot take the faster path at all (the message says why)."""


def tolerance(dtype: torch.dtype) -> float:
    """How far float summation order may move a result in ``dtype``."""
    return 1e-4 if dtype == torch.float32 else 5e-2


def exact_or_warn(check: Callable[[], bool], name: str, cannot: str, instead: str, differs: str) -> bool:
    """Run ``check`` (True: the faster path is exact). Otherwise warn once — "model NAME cannot CANNOT
    exactly (why); promptvec INSTEAD (correct, slower)" — and return False."""
    try:
        exact, reason = check(), differs
    except NotSupported as exc:
        exact, reason = False, str(exc)
    except Exception as exc:  # any model-specific failure means: do not take the faster path on this model
        exact, reason = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not exact:
        warnings.warn(f"model '{name}' cannot {cannot} exactly ({reason}); promptvec {instead} (correct, slower)",
                      stacklevel=4)
    return exact
