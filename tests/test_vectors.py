"""Task prompt vectors: identities, merges and similarities on known tensors, compatibility, files."""

from __future__ import annotations

import math

import pytest
import torch

from promptvec.errors import CheckpointError, ConfigError
from promptvec.vectors import (
    Origin,
    TaskPromptVector,
    VectorMeta,
    VectorMismatchError,
    merge,
    similarity,
    similarity_matrix,
)


def _vec(tensor, task="t", fingerprint="f" * 64):
    tensor = torch.as_tensor(tensor, dtype=torch.float32)
    return TaskPromptVector(tensor, VectorMeta(fingerprint, tensor.shape[0], tensor.shape[1], "m", task))


def test_apply_recovers_the_tuned_prompt(backbones):
    b = backbones["llama"]
    origin = Origin.sample(b, 4, 0)
    tuned = origin.tensor(b) + torch.randn(4, b.dim)
    tau = TaskPromptVector.from_prompts(tuned, origin.tensor(b), model_fingerprint=b.fingerprint, task="x",
                                        origin_info=origin)
    assert torch.allclose(tau.apply_to(origin, backbone=b), tuned, atol=1e-6)
    assert torch.allclose(tau.apply_to(origin.tensor(b), scale=0.5), origin.tensor(b) + 0.5 * tau.tensor)


def test_arithmetic_identities():
    a, b = _vec(torch.randn(3, 5), "a"), _vec(torch.randn(3, 5), "b")
    assert torch.allclose(((a + b) - b).tensor, a.tensor, atol=1e-6)
    assert torch.allclose((-a).tensor, -a.tensor)
    assert torch.allclose((2 * a).tensor, (a * 2).tensor) and torch.allclose((a / 2).tensor, 0.5 * a.tensor)
    assert torch.allclose(TaskPromptVector.mean([a, b]).tensor, (a.tensor + b.tensor) / 2)
    assert (a + b).meta.task == "a+b" and (a + b).meta.provenance["op"] == "add"


def test_builtin_sum_adds_vectors():
    a, b, c = _vec(torch.randn(3, 5), "a"), _vec(torch.randn(3, 5), "b"), _vec(torch.randn(3, 5), "c")
    total = sum([a, b, c])
    assert isinstance(total, TaskPromptVector)
    assert torch.allclose(total.tensor, a.tensor + b.tensor + c.tensor)
    assert total.meta.task == "a+b+c"
    assert sum([a]) is a
    with pytest.raises(TypeError):
        sum([a, b], 1)  # only 0 is the neutral start
    with pytest.raises(TypeError):
        a + 1


def test_incompatible_vectors_are_refused():
    a = _vec(torch.zeros(3, 5))
    with pytest.raises(VectorMismatchError, match="different models"):
        a + _vec(torch.zeros(3, 5), fingerprint="g" * 64)
    with pytest.raises(VectorMismatchError, match="prompt length or model width"):
        a + _vec(torch.zeros(4, 5))
    with pytest.raises(VectorMismatchError, match="prompt length or model width"):
        a.apply_to(torch.zeros(3, 6))


def test_merges_on_known_tensors():
    a = _vec([[1.0, -2.0, 3.0]], "a")
    b = _vec([[3.0, 2.0, -1.0]], "b")
    assert merge([a, b]).tensor.tolist() == [[4.0, 0.0, 2.0]]  # task arithmetic: the sum
    assert merge([a, b], weights=[0.5, 0.5]).tensor.tolist() == [[2.0, 0.0, 1.0]]
    # TIES, density 1: elected signs from the column sums (4, 0, 2) are (+, + (ties go to +), +); each column
    # averages the entries that agree: (1 + 3) / 2, 2 / 1, 3 / 1
    with pytest.warns(UserWarning, match="no pruning"):
        assert merge([a, b], "ties", density=1.0).tensor.tolist() == [[2.0, 2.0, 3.0]]
    # density 0.7 keeps the 2 largest magnitudes of each: a -> (0, -2, 3), b -> (3, 2, 0); signs (+, +, +)
    assert merge([a, b], "ties", density=0.7).tensor.tolist() == [[3.0, 2.0, 3.0]]
    # DARE: reproducible with a seed, and the global RNG is untouched
    state = torch.get_rng_state()
    d1 = merge([a, b], "dare_linear", density=0.5, seed=3).tensor
    d2 = merge([a, b], "dare_linear", density=0.5, seed=3).tensor
    assert torch.equal(d1, d2) and torch.equal(state, torch.get_rng_state())
    for j, value in enumerate(d1[0].tolist()):  # each entry: kept ones rescaled by 1 / density, then summed
        x, y = a.tensor[0, j].item(), b.tensor[0, j].item()
        assert value in {0.0, 2 * x, 2 * y, 2 * (x + y)}
    with pytest.raises(ConfigError, match="unknown merge"):
        merge([a, b], "average")


def test_similarities_on_known_tensors():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # row mean (1, 1)
    assert similarity(a, b) == pytest.approx(1 / math.sqrt(2))
    # flattened: a = (1,0,1,0), b = (0,1,2,1): dot 2, norms sqrt2, sqrt6
    assert similarity(a, b, "cosine-flat") == pytest.approx(2 / math.sqrt(12))
    assert similarity(a, b, "dtvg") == pytest.approx((1 * 1 + 0 * 1) / 2)


def test_similarity_matrix_averages_over_origin_pairs():
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    vectors = {"a": {0: x, 1: x}, "b": {0: y, 1: x}, "c": {0: y}}
    tasks, m = similarity_matrix(vectors)
    assert tasks == ["a", "b", "c"]
    assert m[0][0] == pytest.approx(1.0)  # a's two origins agree
    assert m[1][1] == pytest.approx(0.0)  # b's origins disagree (i != j only)
    assert m[0][1] == pytest.approx(0.5)  # mean of cos(x,y), cos(x,x), cos(x,y), cos(x,x)
    assert math.isnan(m[2][2])  # one origin: no i != j pair


def test_save_load_round_trip_and_refusals(tmp_path, backbones):
    b = backbones["llama"]
    tau = _vec(torch.randn(3, b.dim), "sst2", fingerprint=b.fingerprint)
    tau.save(tmp_path / "v.safetensors")
    loaded = TaskPromptVector.load(tmp_path / "v.safetensors", b)
    assert torch.equal(loaded.tensor, tau.tensor) and loaded.meta == tau.meta
    with pytest.raises(VectorMismatchError, match="was made on model"):
        TaskPromptVector.load(tmp_path / "v.safetensors", backbones["gpt2"])
    (tmp_path / "v.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="never unpickles"):
        TaskPromptVector.load(tmp_path / "v.pt")


def test_vector_from_a_trained_checkpoint(backbones, tiny_models, toy_task, tmp_path):
    from promptvec.peft_folder import load_prompt
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    b = backbones["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=2, eval_every=1,
                         batch_size=4, prompt_length=3, origin_seed=5)
    train_prompt(config, tmp_path / "r", backbone=b, progress=False)
    tau = TaskPromptVector.from_checkpoint(tmp_path / "r", b)
    origin = Origin.sample(b, 3, 5)
    assert tau.meta.origin["seed"] == 5 and tau.meta.task == "toy_sentiment"
    assert torch.allclose(tau.apply_to(origin, backbone=b), load_prompt(tmp_path / "r").prompt, atol=1e-6)


def test_the_scale_is_the_best_of_the_grid_with_ties_to_the_smaller_and_always_one():
    from promptvec.vectors.scaling import LAMBDA_GRID, choose_scale

    assert LAMBDA_GRID[0] == 0.0 and LAMBDA_GRID[-1] == 1.0 and len(LAMBDA_GRID) == 21
    best, curve = choose_scale(lambda lam: min(lam, 0.5))  # a plateau from 0.5 on: the smaller λ
    assert best == 0.5 and list(curve) == list(LAMBDA_GRID)
    assert choose_scale(lambda lam: -1.0 - lam)[0] == 0.0  # no score above 0: still a λ (the best one)
    assert choose_scale(lambda lam: -abs(lam - 0.3), grid=(0.1, 0.3, 0.9))[0] == 0.3
