"""ATTEMPT (docs/methods.md §4): projections initialised as the authors' code does."""

from __future__ import annotations

import torch

from tests.conftest import dynamic_modules


def test_attempt_projections_start_as_the_authors_code_initialises_them(backbones):
    from promptvec.methods.attempt.module import ATTENTION_INIT_STD

    backbone = backbones["llama"]
    first, second = dynamic_modules(backbone)["attempt"], dynamic_modules(backbone)["attempt"]
    for name in ("down", "up"):
        weight = getattr(first, name).weight
        assert abs(float(weight.std()) - ATTENTION_INIT_STD) < 0.1 * ATTENTION_INIT_STD, name  # N(0, 0.01²)
        assert abs(float(weight.mean())) < 0.1 * ATTENTION_INIT_STD, name
        assert torch.equal(weight, getattr(second, name).weight)  # from its own seed, not the global state
    assert ATTENTION_INIT_STD == 0.01
