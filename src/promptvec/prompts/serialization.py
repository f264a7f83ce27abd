"""promptvec's own format for prompt modules that are more than one static prompt (ATTEMPT,
DTVG, Fusion): a folder with ``module.json`` (format, module kind, constructor config, the
sources by store id and sha256, model fingerprint, run metadata) and ``module.safetensors`` (the
state dict — frozen source prompts included, so the folder is self-contained; ``run`` holds the
training metadata). Written atomically;
read without unpickling anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError
from promptvec.io import atomic_directory, atomic_write_json, load_tensors, read_json, readable_directory, save_tensors
from promptvec.prompts.base import PROMPT_MODULES, PromptModule

MODULE_FORMAT = "promptvec-prompt-module/1"
MODULE_DIR = "module"  # inside a run folder: the best dynamic module
CONFIG_FILE = "module.json"
STATE_FILE = "module.safetensors"


def save_module(directory: str | Path, module: PromptModule, backbone, metadata: dict[str, Any]) -> Path:
    """Write ``module`` (config + state) as one folder, replacing any previous one atomically."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    document = {"format": MODULE_FORMAT, "kind": module.kind, "config": module.config(), "rows": module.rows,
                "model": backbone.name, "model_fingerprint": backbone.fingerprint, "dim": backbone.dim, "run": metadata}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        save_tensors(tmp / STATE_FILE, state, {"format": "pt", "promptvec_module": module.kind})
        atomic_write_json(tmp / CONFIG_FILE, document)
    return directory


def load_module(directory: str | Path, backbone=None) -> tuple[PromptModule, dict[str, Any]]:
    """Rebuild a saved module; with ``backbone`` it must be the model the module was trained on."""
    directory = readable_directory(directory)
    if directory.is_dir() and not (directory / CONFIG_FILE).exists() and readable_directory(
            directory / MODULE_DIR).is_dir():
        directory = readable_directory(directory / MODULE_DIR)  # a run folder: its best module
    config_path, state_path = directory / CONFIG_FILE, directory / STATE_FILE
    if not config_path.is_file() or not state_path.is_file():
        raise CheckpointError(f"{directory} is not a promptvec prompt-module folder (needs {CONFIG_FILE} and "
                              f"{STATE_FILE})", "point to a run's `module` folder written by `promptvec transfer`")
    document = read_json(config_path, "prompt-module config")
    if document.get("format") != MODULE_FORMAT:
        raise CheckpointError(f"{config_path}: unknown format {document.get('format')!r} (expected {MODULE_FORMAT})",
                              "re-create it with this version of promptvec")
    kind = document.get("kind")
    if kind not in PROMPT_MODULES:
        message, known = PROMPT_MODULES.unknown_message(kind)
        raise CheckpointError(f"{config_path}: {message}", f"{known}; install the promptvec version that wrote it")
    if backbone is not None and document.get("model_fingerprint") != backbone.fingerprint:
        raise CheckpointError(f"{directory} was trained on model '{document.get('model')}', not on "
                              f"'{backbone.name}' (their input embeddings differ)",
                              "load it with the model it was trained on")
    state, _ = load_tensors(state_path)
    try:
        module = PROMPT_MODULES[kind].from_config(document["config"], state)
        module.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory}: the state does not fit a '{kind}' module ({str(exc).splitlines()[0]})",
                              "the folder is damaged or was edited; re-create it from its run") from None
    if backbone is not None:
        module.bind(backbone)
    return module, document
