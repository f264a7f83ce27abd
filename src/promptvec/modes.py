"""Train/eval mode of torch modules, set for a block and restored exactly after it.

Dropout (and anything else that reads ``module.training``) must be off whenever a prompt is scored
and on only where a run asked for it. A flag flip (``model.train()`` … ``model.eval()``) leaks: an
exception or an early return leaves the model in the wrong mode, the caller's model is changed for
good, and it overwrites whatever mode each submodule had (a model with some layers deliberately in
eval mode comes back all in train mode). :func:`module_mode` saves every submodule's flag and puts
each one back, whatever happens inside the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


@contextmanager
def module_mode(*modules: Any, training: bool) -> Iterator[None]:
    """Put every :class:`~torch.nn.Module` among ``modules`` in train (``training=True``) or eval mode
    for the block; anything else (a prompt tensor, ``None``) is ignored, so callers need not check."""
    blocks = [m for m in modules if isinstance(m, nn.Module)]
    saved = [(sub, sub.training) for module in blocks for sub in module.modules()]
    for module in blocks:
        module.train(training)
    try:
        yield
    finally:
        for sub, was_training in saved:
            sub.training = was_training
