"""The one file format promptvec writes prompts in: a PEFT prompt-tuning adapter folder.

``adapter_config.json`` + ``adapter_model.safetensors`` (key ``prompt_embeddings``), which
``peft.PeftModel.from_pretrained`` loads, plus ``promptvec.json`` beside them (task, origin, model
fingerprint, metrics, and the sha256 of the weights, checked on every read). Everything that reads
or writes such a folder — training, the vector store's import and export, inference — goes through
:func:`read_adapter` and :func:`write_adapter`, so the rules are the same everywhere:

* a folder whose config names another PEFT type is refused (a config without ``peft_type`` is read as
  prompt tuning); pickle files are never read (``promptvec store convert`` converts them);
* PEFT's seq2seq layout ``[2R, d]`` (``num_transformer_submodules = 2``, encoder half first) is
  read whole by :func:`read_adapter` (the store keeps it for export) and as its encoder half by
  :func:`load_prompt`; promptvec writes ``num_transformer_submodules = 1`` for its own prompts;
* the weights must be a finite float ``[rows × submodules, d]`` matrix that agrees with the config;
* a prompt given as text may be a Hub id (``namespace/name[@revision]``, :mod:`promptvec.hub`): its
  adapter files are downloaded to the Hub cache and read from there by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError, OutputExistsError
from promptvec.hub import ResolvedPrompt, resolve_prompt
from promptvec.io import (
    PICKLE_SUFFIXES,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    load_tensors,
    read_json,
    readable_directory,
    save_tensors,
    verify_checksum,
)
from promptvec.model_card import LOCAL_LOCATION, render_model_card
from promptvec.provenance import package_versions
from promptvec.tensor_checks import check_prompt_tensor, positive_int

PROMPT_KEY = "prompt_embeddings"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
METADATA_FILE = "promptvec.json"
CARD_FILE = "README.md"  # the model card (promptvec.model_card), rewritten with every write
PROMPT_DIR = "prompt"  # inside a run folder: its best prompt, as an adapter folder
#: what an adapter folder written by promptvec holds; anything else in a target folder is the user's
ADAPTER_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, CARD_FILE})
#: what is downloaded of a Hub repository read as a prompt (never a pickle)
HUB_FILES = tuple(sorted(ADAPTER_FILES))


@dataclass
class Adapter:
    """What an adapter folder (or a bare ``.safetensors`` prompt file) holds, as stored."""

    weights: torch.Tensor  # [rows × submodules, d], float32
    rows: int
    submodules: int
    config: dict[str, Any]  # adapter_config.json ({} for a bare file)
    metadata: dict[str, Any]  # promptvec.json ({} when absent), without the weights' checksum
    path: Path  # where it was read on this machine (a Hub repository: its snapshot in the cache)
    source: str  # how records name it: the path as given, or namespace/name@<commit> for the Hub

    @property
    def prompt(self) -> torch.Tensor:
        """The prompt ``[R, d]`` a model is given (the encoder half of PEFT's seq2seq layout)."""
        return self.weights[: self.rows]


def read_adapter(path: str | Path) -> Adapter:
    """Read and check an adapter folder, a bare ``.safetensors`` file holding ``prompt_embeddings``,
    or (given as text) a Hub repository holding an adapter folder."""
    resolved = resolve_prompt(path, HUB_FILES)
    path = readable_directory(resolved.path)
    if path.is_dir():
        weights_path = path / WEIGHTS_FILE
        if not weights_path.is_file():
            legacy = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = ("convert it with `promptvec store convert` (weights-only loader) first" if legacy
                    else "point to a folder made by `promptvec train` or PEFT's save_pretrained")
            what = f"only pickle files {legacy}" if legacy else f"no {WEIGHTS_FILE}"
            raise CheckpointError(f"{path} holds {what}; promptvec never unpickles user files", hint)
        config = read_json(path / CONFIG_FILE, "PEFT adapter config") if (path / CONFIG_FILE).is_file() else {}
        metadata = read_json(path / METADATA_FILE, "promptvec metadata") if (path / METADATA_FILE).is_file() else {}
    elif path.is_file() or path.suffix:
        weights_path, config, metadata = path, {}, {}
    else:
        raise CheckpointError(f"prompt not found: {path}", "check the path")
    _check_json_fields(path, config, metadata)
    if config.get("peft_type", "PROMPT_TUNING") != "PROMPT_TUNING":
        raise CheckpointError(f"{path} is a PEFT '{config.get('peft_type')}' adapter, not prompt tuning",
                              "use a prompt-tuning adapter")
    metadata = dict(metadata)
    verify_checksum(weights_path, metadata.pop("weights_sha256", None), "the prompt")
    tensors, _ = load_tensors(weights_path)
    if PROMPT_KEY not in tensors:
        raise CheckpointError(f"{weights_path} has no '{PROMPT_KEY}' tensor (keys: {sorted(tensors)})",
                              "use a PEFT prompt-tuning adapter or a promptvec prompt file")
    weights = check_prompt_tensor(tensors[PROMPT_KEY], f"{weights_path}: '{PROMPT_KEY}'", fix="re-create the prompt")
    submodules = positive_int(_given(config.get("num_transformer_submodules"), 1), str(path),
                              "num_transformer_submodules")
    rows = positive_int(_given(config.get("num_virtual_tokens"), weights.shape[0] // submodules), str(path),
                        "num_virtual_tokens")
    if weights.shape[0] != rows * submodules or submodules not in (1, 2):
        raise CheckpointError(f"{weights_path}: prompt has {weights.shape[0]} rows but the config says "
                              f"{rows} x {submodules} submodule(s)", "the adapter folder is inconsistent")
    return Adapter(weights.to(torch.float32), rows, submodules, config, metadata, path, resolved.source)


def foreign_entries(directory: str | Path) -> list[str]:
    """What ``directory`` holds that promptvec did not write there: writing an adapter folder over it
    would delete these. A file in the folder's place counts as foreign too."""
    path = Path(directory)
    if path.is_file() or path.is_symlink():
        return [path.name]
    if not path.is_dir():
        return []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if p.name not in ADAPTER_FILES)


def check_output_folder(directory: str | Path, overwrite: bool) -> list[str]:
    """Refuse to write an adapter folder where it would delete what promptvec did not write, unless
    ``overwrite``; returns what will be replaced (for the caller to say)."""
    foreign = foreign_entries(directory)
    if foreign and not overwrite:
        what = "is a file" if Path(directory).is_file() else f"holds {', '.join(foreign[:5])}" + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(f"{directory} {what}, which writing a prompt folder there would delete",
                                "choose a new or empty folder, or pass --overwrite to replace it")
    return foreign


#: promptvec.json fields other code reads, with the type they must have
_METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "model_fingerprint": str, "model": str, "task": str, "family": str, "origin": (dict, type(None)),
    "license": str, "output_type": str, "datasets": list}


def _check_json_fields(path: Path, config: Any, metadata: Any) -> None:
    """The two JSON files of a folder hold objects, and the metadata fields promptvec reads have their
    types: a hostile or damaged folder gets one message instead of a TypeError deep inside."""
    for name, value in ((CONFIG_FILE, config), (METADATA_FILE, metadata)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: {name} must hold a JSON object, got {type(value).__name__}",
                                  "the folder is damaged or was not written by promptvec/PEFT; re-create it")
    for key, kind in _METADATA_TYPES.items():
        if key in metadata and not isinstance(metadata[key], kind):
            raise CheckpointError(f"{path}: {METADATA_FILE} field '{key}' has the wrong type "
                                  f"({type(metadata[key]).__name__})", "the folder is damaged; re-create it")


def _given(value: Any, default: int) -> Any:
    """A config count, or ``default`` where the config leaves it out (null)."""
    return default if value is None else value


def write_adapter(directory: str | Path, weights: torch.Tensor, rows: int, config: dict[str, Any],
                  metadata: dict[str, Any], overwrite: bool = False, card_location: str = LOCAL_LOCATION) -> Path:
    """Write an adapter folder atomically: ``config`` (PromptTuningConfig fields; ``peft_type``,
    ``num_virtual_tokens``, ``token_dim`` and ``num_transformer_submodules`` are set from the
    weights), the weights, ``metadata`` with the weights' sha256, and the model card (whose examples
    load it from ``card_location``). A target that holds anything promptvec did not write is refused
    unless ``overwrite`` (:func:`check_output_folder`)."""
    from peft import PromptTuningConfig

    check_prompt_tensor(weights, f"the prompt to write to {directory}",
                        fix="nothing was written; the prompt was made from NaN/infinite or misshapen values "
                            "(e.g. a huge --scale)")
    check_output_folder(directory, overwrite)
    if overwrite and Path(directory).is_file():
        Path(directory).unlink()

    weights = weights.detach().to("cpu", torch.float32).contiguous()
    fields = {**config, "num_virtual_tokens": rows, "token_dim": weights.shape[1],
              "num_transformer_submodules": weights.shape[0] // rows}
    known = set(PromptTuningConfig.__dataclass_fields__)
    peft_config = PromptTuningConfig(**{k: v for k, v in fields.items() if k in known and k != "peft_type"})
    with atomic_directory(directory) as tmp:
        peft_config.save_pretrained(str(tmp))
        save_tensors(tmp / WEIGHTS_FILE, {PROMPT_KEY: weights}, {"format": "pt"})
        atomic_write_json(tmp / METADATA_FILE, {**metadata, "weights_sha256": file_sha256(tmp / WEIGHTS_FILE)})
        atomic_write_text(tmp / CARD_FILE, render_model_card(peft_config.to_dict(), metadata, card_location))
    return Path(directory)


@dataclass
class PromptCheckpoint:
    """A prompt ``[R, d]`` with the metadata promptvec keeps beside it."""

    prompt: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it was read: a path, or namespace/name@<commit> for a Hub repository

    @property
    def rows(self) -> int:
        return self.prompt.shape[0]


def save_prompt(directory: str | Path, prompt: torch.Tensor, backbone, metadata: dict[str, Any],
                overwrite: bool = False) -> Path:
    """Write a trained prompt ``[R, d]`` of ``backbone`` as an adapter folder (atomically; a folder
    holding files promptvec did not write is refused unless ``overwrite``)."""
    from promptvec.backbones.loading import EMBEDDED_MODELS, base_model_id

    config = backbone.model.config
    peft_config = {
        "task_type": backbone.peft_task_type,
        "num_attention_heads": getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None),
        "num_layers": getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None),
        # a name that means the same model on another machine (an embedded model's Hub id, not a cache path)
        "base_model_name_or_path": base_model_id(backbone),
    }
    embedded = EMBEDDED_MODELS.get(backbone.name)
    meta = {"model": backbone.name, "model_fingerprint": backbone.fingerprint, "family": backbone.family,
            "rows": prompt.shape[0], "dim": prompt.shape[1], "promptvec_version": package_versions()["promptvec"],
            **({"weights": embedded.weights} if embedded else {}), **metadata}
    return write_adapter(directory, prompt, prompt.shape[0], peft_config, meta, overwrite=overwrite)


def locate_prompt(ref: str | Path) -> ResolvedPrompt:
    """The adapter folder (or prompt file) ``ref`` means on this machine: the path itself, a run
    folder's best prompt, or — ``ref`` given as text — a Hub repository's snapshot in the cache."""
    resolved = resolve_prompt(ref, HUB_FILES)
    folder = resolved.path
    if folder.is_dir() and not (folder / CONFIG_FILE).exists() and readable_directory(folder / PROMPT_DIR).is_dir():
        return ResolvedPrompt(folder / PROMPT_DIR, str(folder / PROMPT_DIR))
    return resolved


def load_prompt(path: str | Path, backbone=None) -> PromptCheckpoint:
    """The prompt of an adapter folder, a ``.safetensors`` prompt file, a run folder (its best
    prompt) or, given as text, a Hub repository (``namespace/name[@revision]``), checked against
    ``backbone`` when given."""
    located = locate_prompt(path)
    adapter = read_adapter(located.path)
    if backbone is not None:
        check_compatible(adapter.prompt, adapter.metadata, backbone, located.source)
    return PromptCheckpoint(adapter.prompt, adapter.metadata, located.source)


def check_compatible(prompt: torch.Tensor, metadata: dict[str, Any], backbone, source: str) -> None:
    """A prompt fits ``backbone`` when its width is the model's embedding width and, where it records
    one, its model fingerprint is the backbone's."""
    if prompt.shape[1] != backbone.dim:
        raise CheckpointError(
            f"{source}: prompt width {prompt.shape[1]} does not match the model's embedding width {backbone.dim} "
            f"({backbone.name})", f"use a prompt trained on this model (it was for {metadata.get('model', '?')})")
    expected = metadata.get("model_fingerprint")
    if expected and expected != backbone.fingerprint:
        weights = f" — its weights: {metadata['weights']}" if metadata.get("weights") else ""
        raise CheckpointError(
            f"{source}: prompt was trained on model '{metadata.get('model', '?')}' (fingerprint {expected[:12]}), "
            f"not on '{backbone.name}' (fingerprint {backbone.fingerprint[:12]}){weights}",
            f"load the model the prompt was trained on (--model {metadata.get('model', '?')}), or train a prompt "
            "for this one")
