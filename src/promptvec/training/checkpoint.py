"""Files on disk: PEFT prompt-tuning adapter folders and resumable training state.

* A prompt is a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors`` with
  key ``prompt_embeddings``) that ``peft.PeftModel.from_pretrained`` loads, plus ``promptvec.json``
  (task, origin, model fingerprint, metrics). PEFT's seq2seq layout ``[2R, d]`` (encoder half
  first) is read; promptvec writes ``num_transformer_submodules = 1`` (encoder-side prompt only).
* Training state (optimizer, scheduler, RNG, data order) is safetensors for tensors + JSON for the
  rest — never pickle — written atomically as one folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
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

PROMPT_KEY = "prompt_embeddings"
METADATA_FILE = "promptvec.json"
PROMPT_DIR = "prompt"  # inside a run folder: the best prompt as a PEFT adapter folder
_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


@dataclass
class PromptCheckpoint:
    """A prompt ``[R, d]`` with the metadata promptvec keeps beside it."""

    prompt: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.prompt.shape[0]


def save_prompt(directory: str | Path, prompt: torch.Tensor, backbone, metadata: dict[str, Any]) -> Path:
    """Write a PEFT prompt-tuning adapter folder atomically."""
    from peft import PromptTuningConfig

    prompt = prompt.detach().to("cpu", torch.float32).contiguous()
    config = backbone.model.config
    peft_config = PromptTuningConfig(
        task_type=_TASK_TYPES[backbone.family],
        num_virtual_tokens=prompt.shape[0],
        token_dim=prompt.shape[1],
        num_transformer_submodules=1,
        num_attention_heads=getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None),
        num_layers=getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None),
        base_model_name_or_path=str(getattr(config, "_name_or_path", "") or backbone.name),
    )
    meta = {"model": backbone.name, "model_fingerprint": backbone.fingerprint, "family": backbone.family,
            "rows": prompt.shape[0], "dim": prompt.shape[1], **metadata}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        peft_config.save_pretrained(str(tmp))
        weights = tmp / "adapter_model.safetensors"
        save_tensors(weights, {PROMPT_KEY: prompt}, {"format": "pt"})
        atomic_write_json(tmp / METADATA_FILE, {**meta, "weights_sha256": file_sha256(weights)})
    return directory


def load_prompt(path: str | Path, backbone=None) -> PromptCheckpoint:
    """Read a PEFT prompt-tuning adapter (folder or .safetensors file), checking it fits ``backbone``."""
    path = Path(path)
    recover_directory(path / PROMPT_DIR)
    recover_directory(path)
    if path.is_dir() and (path / PROMPT_DIR).is_dir() and not (path / "adapter_config.json").exists():
        path = path / PROMPT_DIR  # a run folder: use its best prompt
    if path.is_dir():
        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            legacy = [p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth"}]
            hint = ("convert it with `promptvec store convert` (weights-only loader) first" if legacy
                    else "point to a folder made by `promptvec train` or PEFT's save_pretrained")
            what = f"only pickle files {legacy}" if legacy else "no adapter_model.safetensors"
            raise CheckpointError(f"{path} holds {what}; promptvec never unpickles user files", hint)
        config = read_json(path / "adapter_config.json", "PEFT adapter config") \
            if (path / "adapter_config.json").is_file() else {}
        metadata = read_json(path / METADATA_FILE, "promptvec metadata") if (path / METADATA_FILE).is_file() else {}
    elif path.is_file() or path.suffix:
        weights, config, metadata = path, {}, {}
    else:
        raise CheckpointError(f"prompt not found: {path}", "check the path")
    if config and config.get("peft_type") not in (None, "PROMPT_TUNING"):
        raise CheckpointError(f"{path} is a PEFT '{config.get('peft_type')}' adapter, not prompt tuning",
                              "use a prompt-tuning adapter")
    verify_checksum(weights, metadata.get("weights_sha256"), "the prompt")
    tensors, _ = load_tensors(weights)
    if PROMPT_KEY not in tensors:
        raise CheckpointError(f"{weights} has no '{PROMPT_KEY}' tensor (keys: {sorted(tensors)})",
                              "use a PEFT prompt-tuning adapter or a promptvec prompt file")
    prompt = tensors[PROMPT_KEY]
    if prompt.dim() != 2 or not prompt.is_floating_point():
        raise CheckpointError(f"{weights}: '{PROMPT_KEY}' must be a float [R, d] matrix, "
                              f"got {tuple(prompt.shape)} {prompt.dtype}", "re-create the prompt")
    submodules = int(config.get("num_transformer_submodules") or 1)
    rows = int(config.get("num_virtual_tokens") or prompt.shape[0] // submodules)
    if prompt.shape[0] == rows * submodules and submodules == 2:
        prompt = prompt[:rows]  # PEFT seq2seq layout: the first half is the encoder prompt
    elif prompt.shape[0] != rows:
        raise CheckpointError(f"{weights}: prompt has {prompt.shape[0]} rows but the config says "
                              f"{rows} x {submodules} submodule(s)", "the adapter folder is inconsistent")
    if not torch.isfinite(prompt).all():
        raise CheckpointError(f"{weights}: the prompt contains NaN or infinite values", "use a healthy checkpoint")
    if backbone is not None:
        check_compatible(prompt, metadata, backbone, str(path))
    return PromptCheckpoint(prompt.to(torch.float32), metadata)


def check_compatible(prompt: torch.Tensor, metadata: dict[str, Any], backbone, source: str) -> None:
    if prompt.shape[1] != backbone.dim:
        raise CheckpointError(
            f"{source}: prompt width {prompt.shape[1]} does not match the model's embedding width {backbone.dim} "
            f"({backbone.name})", f"use a prompt trained on this model (it was for {metadata.get('model', '?')})")
    expected = metadata.get("model_fingerprint")
    if expected and expected != backbone.fingerprint:
        raise CheckpointError(
            f"{source}: prompt was trained on model '{metadata.get('model', '?')}' (fingerprint {expected[:12]}), "
            f"not on '{backbone.name}' (fingerprint {backbone.fingerprint[:12]})",
            "load the model the prompt was trained on (--model), or train a prompt for this one")


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


def dumps_config(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)
