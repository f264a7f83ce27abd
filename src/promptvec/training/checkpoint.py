"""Resumable training state (optimizer, scheduler, RNG, data order): safetensors for the tensors
and JSON for the rest — never pickle — written atomically as one folder. Prompts themselves are
PEFT adapter folders (:mod:`promptvec.peft_folder`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError
from promptvec.io import (
    atomic_directory,
    atomic_write_json,
    file_sha256,
    load_tensors,
    read_json,
    recover_directory,
    save_tensors,
    verify_checksum,
)


# ---- training state (resumable, pickle-free) -----------------------------------------------
def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in state["cuda"]])


def save_training_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a nested state (tensors anywhere inside) as state.safetensors + state.json;
    the JSON records the tensors file's sha256, checked on load."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    with atomic_directory(directory) as tmp:
        save_tensors(tmp / "state.safetensors", tensors)
        atomic_write_json(tmp / "state.json", {"tensors_sha256": file_sha256(tmp / "state.safetensors"),
                                               "state": skeleton})


def load_training_state(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    recover_directory(directory)
    stored = read_json(directory / "state.json", "training state")
    # states written before checksums were recorded are the bare skeleton
    skeleton = stored.get("state", stored)
    verify_checksum(directory / "state.safetensors", stored.get("tensors_sha256"), "the training state")
    tensors, _ = load_tensors(directory / "state.safetensors")
    try:
        return _unflatten(skeleton, tensors)
    except KeyError as exc:
        raise CheckpointError(f"{directory}: training state refers to a missing tensor {exc}",
                              "the checkpoint is corrupted; start again with --overwrite") from None
