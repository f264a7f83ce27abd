"""Bad or hostile prompt files get one clear CheckpointError."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from promptvec.errors import CheckpointError
from promptvec.io import load_tensors, save_tensors
from promptvec.peft_folder import load_prompt, save_prompt


def _save(backbone, folder, rows=4):
    return save_prompt(folder, torch.randn(rows, backbone.dim), backbone, {"task": "toy"})


def test_round_trip_keeps_metadata(backbones, tmp_path):
    b = backbones["llama"]
    prompt = torch.randn(4, b.dim)
    save_prompt(tmp_path / "p", prompt, b, {"task": "toy"})
    loaded = load_prompt(tmp_path / "p", b)
    assert torch.equal(loaded.prompt, prompt)
    assert loaded.metadata["task"] == "toy" and loaded.metadata["model_fingerprint"] == b.fingerprint
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4


def test_other_width_is_refused(backbones, tmp_path):
    _save(backbones["bert"], tmp_path / "p")
    b = backbones["llama"]
    b2 = backbones["t5"]
    assert b.dim == b2.dim  # same width, different model: refused by fingerprint
    with pytest.raises(CheckpointError, match="trained on model"):
        load_prompt(_save(b2, tmp_path / "q"), b)


def test_other_model_same_width_is_refused_by_fingerprint(backbones, tmp_path):
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_prompt(_save(backbones["gpt2"], tmp_path / "p"), backbones["llama"])


def test_width_mismatch_message(backbones, tmp_path):
    b = backbones["llama"]
    save_prompt(tmp_path / "p", torch.randn(3, b.dim), b, {})
    meta = tmp_path / "p" / "promptvec.json"
    meta.write_text(json.dumps({"model": "x"}))
    save_tensors(tmp_path / "p" / "adapter_model.safetensors", {"prompt_embeddings": torch.randn(3, b.dim + 1)})
    with pytest.raises(CheckpointError, match="width"):
        load_prompt(tmp_path / "p", b)


def test_pickle_files_are_refused(tmp_path):
    folder = tmp_path / "legacy"
    folder.mkdir()
    torch.save({"prompt_embeddings": torch.randn(2, 4)}, folder / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_prompt(folder)
    with pytest.raises(CheckpointError, match="pickle"):
        load_tensors(folder / "adapter_model.bin")


def test_truncated_and_corrupted_safetensors(tmp_path):
    path = tmp_path / "x.safetensors"
    save_tensors(path, {"prompt_embeddings": torch.randn(4, 8)})
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated|corrupted|outside"):
        load_tensors(path)
    path.write_bytes(struct.pack("<Q", 10**12) + data[8:])
    with pytest.raises(CheckpointError, match="invalid safetensors header"):
        load_tensors(path)
    path.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="truncated"):
        load_tensors(path)


def test_missing_key_and_nan(tmp_path):
    save_tensors(tmp_path / "a.safetensors", {"other": torch.randn(2, 4)})
    with pytest.raises(CheckpointError, match="no 'prompt_embeddings'"):
        load_prompt(tmp_path / "a.safetensors")
    save_tensors(tmp_path / "b.safetensors", {"prompt_embeddings": torch.full((2, 4), float("nan"))})
    with pytest.raises(CheckpointError, match="NaN"):
        load_prompt(tmp_path / "b.safetensors")


def test_missing_prompt_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found|holds"):
        load_prompt(tmp_path / "nothing")


def test_swap_interrupted_between_renames_is_recovered(backbones, tmp_path):
    import os

    b = backbones["llama"]
    prompt = torch.randn(4, b.dim)
    save_prompt(tmp_path / "run" / "prompt", prompt, b, {})
    # simulate a crash after `prompt -> .prompt.old` and before `tmp -> prompt`
    os.replace(tmp_path / "run" / "prompt", tmp_path / "run" / ".prompt.old")
    # a reader gets the previous complete version and renames nothing (a live writer may be mid-swap)
    assert torch.equal(load_prompt(tmp_path / "run", b).prompt, prompt)
    assert not (tmp_path / "run" / "prompt").exists() and (tmp_path / "run" / ".prompt.old").is_dir()
    # the folder's owner restores the swap when it next runs (under the run folder's lock)
    from promptvec.training.run_folder import remove_leftovers

    remove_leftovers(tmp_path / "run")
    assert (tmp_path / "run" / "prompt").is_dir() and not (tmp_path / "run" / ".prompt.old").exists()
    assert torch.equal(load_prompt(tmp_path / "run", b).prompt, prompt)
