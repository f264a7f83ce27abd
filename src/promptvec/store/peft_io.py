"""Exchange with PEFT prompt-tuning adapter folders, and the one explicit conversion of legacy
pickle-based prompt files (``.bin`` / ``.pt``) to safetensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError
from promptvec.io import atomic_directory, atomic_write_json, file_sha256, read_json, save_tensors, verify_checksum
from promptvec.store.store import PROMPT_KEY, Entry, VectorStore
from promptvec.training.checkpoint import METADATA_FILE, check_compatible

LEGACY_SUFFIXES = {".bin", ".pt", ".pth"}


def import_peft(store: VectorStore, folder: str | Path, backbone=None, name: str | None = None,
                task: str | None = None) -> Entry:
    """Add a PEFT prompt-tuning adapter folder ([R, d], or seq2seq [2R, d] kept whole) to the store."""
    from promptvec.io import load_tensors

    folder = Path(folder)
    config = read_json(folder / "adapter_config.json", "PEFT adapter config")
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{folder} is a PEFT '{config.get('peft_type')}' adapter, not prompt tuning",
                              "import a prompt-tuning adapter")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no adapter_model.safetensors (pickle files are never read)",
                              "convert a legacy adapter_model.bin with `promptvec store convert` first")
    tensors, _ = load_tensors(weights)
    if PROMPT_KEY not in tensors:
        raise CheckpointError(f"{weights} has no '{PROMPT_KEY}' tensor", "use a PEFT prompt-tuning adapter")
    full = tensors[PROMPT_KEY].float()
    rows = int(config.get("num_virtual_tokens") or full.shape[0])
    submodules = int(config.get("num_transformer_submodules") or 1)
    if full.shape[0] != rows * submodules:
        raise CheckpointError(f"{weights}: {full.shape[0]} rows do not match {rows} virtual tokens x {submodules}",
                              "the adapter folder is inconsistent")
    meta: dict[str, Any] = json.loads((folder / METADATA_FILE).read_text()) if (folder / METADATA_FILE).is_file() \
        else {}
    verify_checksum(weights, meta.pop("weights_sha256", None), "the prompt")  # the store keeps its own hashes
    if backbone is not None:
        check_compatible(full[:rows], meta, backbone, str(folder))
        meta.setdefault("model", backbone.name)
        meta["model_fingerprint"] = backbone.fingerprint
    if "model_fingerprint" not in meta:
        raise CheckpointError(f"{folder} does not say which model it belongs to",
                              "pass --model so its embedding fingerprint can be recorded")
    meta.update({"rows": rows, "dim": full.shape[1], "peft_config": config, "task": task or meta.get("task", "")})
    return store.add_prompt(full, meta, name=name)


def export_peft(store: VectorStore, ref: str, folder: str | Path) -> Path:
    """Write a stored prompt as a PEFT adapter folder (its original layout, [R, d] or [2R, d])."""
    from peft import PromptTuningConfig

    prompt, entry = store.raw_prompt(ref)
    if entry.kind != "prompt":
        raise CheckpointError(f"entry {entry.short_id} is a vector", "apply it to an origin to get a prompt")
    meta = dict(entry.metadata)
    config = dict(meta.get("peft_config") or {})
    config.update({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": entry.rows, "token_dim": entry.dim,
                   "num_transformer_submodules": prompt.shape[0] // entry.rows})
    config.setdefault("task_type", {"seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}.get(
        meta.get("family", ""), "CAUSAL_LM"))
    known = set(PromptTuningConfig.__dataclass_fields__)
    peft_config = PromptTuningConfig(**{k: v for k, v in config.items() if k in known and k != "peft_type"})
    with atomic_directory(folder) as tmp:
        peft_config.save_pretrained(str(tmp))
        weights = tmp / "adapter_model.safetensors"
        save_tensors(weights, {PROMPT_KEY: prompt}, {"format": "pt"})
        atomic_write_json(tmp / METADATA_FILE, {**{k: v for k, v in meta.items() if k != "peft_config"},
                                                "weights_sha256": file_sha256(weights)})
    return Path(folder)


def convert_legacy(source: str | Path, target: str | Path) -> Path:
    """Convert a pickle-based prompt file (``.bin``/``.pt``, as the TPV repository saves them: a raw
    ``[R, d]`` tensor or a dict with ``prompt_embeddings``) to safetensors.

    This is the only place promptvec reads a pickle, and it uses ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain containers.
    """
    source, target = Path(source), Path(target)
    if source.suffix.lower() not in LEGACY_SUFFIXES:
        raise CheckpointError(f"{source} is not a .bin/.pt/.pth file", "convert only legacy PyTorch prompt files")
    if not source.is_file():
        raise CheckpointError(f"file not found: {source}", "check the path")
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for disallowed globals, RuntimeError for corrupted files
        raise CheckpointError(f"{source} could not be loaded safely ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})",
                              "only plain tensor files are converted; re-export the prompt as safetensors") from None
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        tensor = tensors.get(PROMPT_KEY) if PROMPT_KEY in tensors else (
            next(iter(tensors.values())) if len(tensors) == 1 else None)
    else:
        tensor = obj if isinstance(obj, torch.Tensor) else None
    if tensor is None or tensor.dim() != 2 or not tensor.is_floating_point():
        raise CheckpointError(f"{source} holds no [R, d] prompt tensor", "convert a prompt file")
    if target.suffix != ".safetensors":
        target = target.with_suffix(".safetensors")
    save_tensors(target, {PROMPT_KEY: tensor.float()}, {"format": "pt", "converted_from": source.name})
    return target
