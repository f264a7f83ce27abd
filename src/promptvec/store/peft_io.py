"""Exchange with PEFT prompt-tuning adapter folders, and the one explicit conversion of legacy
pickle-based prompt files (``.bin`` / ``.pt``) to safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

from promptvec.backbones import BACKBONES
from promptvec.errors import CheckpointError
from promptvec.hub import resolve_prompt
from promptvec.io import PICKLE_SUFFIXES, save_tensors
from promptvec.peft_folder import CONFIG_FILE, HUB_FILES, PROMPT_KEY, check_compatible, read_adapter, write_adapter
from promptvec.store.store import Entry, VectorStore


def import_peft(store: VectorStore, folder: str | Path, backbone=None, name: str | None = None,
                task: str | None = None) -> Entry:
    """Add a PEFT prompt-tuning adapter folder ([R, d], or seq2seq [2R, d] kept whole) to the store;
    given as text, it may be a Hub repository (``namespace/name[@revision]``)."""
    folder = resolve_prompt(folder, HUB_FILES).path
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: not a PEFT adapter folder",
                              "import a folder written by PEFT's save_pretrained or `promptvec train`")
    adapter = read_adapter(folder)
    meta = dict(adapter.metadata)
    if backbone is not None:
        check_compatible(adapter.prompt, meta, backbone, str(folder))
        meta.setdefault("model", backbone.name)
        meta["model_fingerprint"] = backbone.fingerprint
    if "model_fingerprint" not in meta:
        raise CheckpointError(f"{folder} does not say which model it belongs to",
                              "pass --model so its embedding fingerprint can be recorded")
    meta.update({"rows": adapter.rows, "dim": adapter.weights.shape[1], "peft_config": adapter.config,
                 "task": task or meta.get("task", "")})
    return store.add_prompt(adapter.weights, meta, name=name)


def export_peft(store: VectorStore, ref: str, folder: str | Path, overwrite: bool = False) -> Path:
    """Write a stored prompt as a PEFT adapter folder (its original layout, [R, d] or [2R, d]); a
    folder holding files promptvec did not write is refused unless ``overwrite``."""
    prompt, entry = store.raw_prompt(ref)
    if entry.kind != "prompt":
        raise CheckpointError(f"entry {entry.short_id} is a vector", "apply it to an origin to get a prompt")
    meta = dict(entry.metadata)
    config = dict(meta.pop("peft_config", None) or {})
    if "task_type" not in config and meta.get("family") in BACKBONES:  # the family's PEFT task type
        config["task_type"] = BACKBONES[meta["family"]].peft_task_type
    return write_adapter(folder, prompt, entry.rows, config, meta, overwrite=overwrite)


def convert_legacy(source: str | Path, target: str | Path) -> Path:
    """Convert a pickle-based prompt file (``.bin``/``.pt``, as the TPV repository saves them: a raw
    ``[R, d]`` tensor or a dict with ``prompt_embeddings``) to safetensors.

    This is the only place promptvec reads a pickle, and it uses ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain containers.
    """
    source, target = Path(source), Path(target)
    if source.suffix.lower() not in PICKLE_SUFFIXES:
        raise CheckpointError(f"{source} is not a pickle-based PyTorch file ({', '.join(sorted(PICKLE_SUFFIXES))})",
                              "convert only legacy PyTorch prompt files")
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
