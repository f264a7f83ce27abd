"""The prompts a server holds: each loaded once, checked against the one model, addressed by name.

A prompt is a few rows in the model's embedding space; what a decoder-only model needs at serving
time is its keys/values (:class:`~promptvec.backbones.prefix.SharedPrompt`), computed once per prompt
and reused by every request. Those caches are larger than the prompts (SmolLM2-135M: ≈ 46 KB per
prompt row against 2.3 KB), so they are kept in a least-recently-used cache bounded in bytes: a
server can hold many prompts and the caches of the ones in use.
"""

from __future__ import annotations

import difflib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from promptvec.backbones import Backbone
from promptvec.backbones.prefix import SharedPrompt
from promptvec.errors import ConfigError
from promptvec.peft_folder import check_compatible, load_prompt
from promptvec.tasks import TaskSpec, get_task

#: the name that addresses the model without a prompt (OpenAI clients need a ``model`` for every call)
BASE = "base"
#: default bound of the prepared prompts' keys/values kept in memory
DEFAULT_CACHE_MB = 512.0


@dataclass(frozen=True)
class ServedPrompt:
    """A named prompt and the task whose template and labels it was trained with."""

    name: str
    prompt: torch.Tensor  # [R, d] on the model's device and dtype
    task: TaskSpec
    source: str  # where it came from, for /v1/models and the logs

    @property
    def rows(self) -> int:
        return int(self.prompt.shape[0])


class PromptPool:
    """Named prompts for one backbone, and their prepared keys/values in a bounded LRU cache.

    Only the serving engine's thread prepares caches (:meth:`prepared`); the listing methods are
    safe from any thread."""

    def __init__(self, backbone: Backbone, cache_mb: float = DEFAULT_CACHE_MB) -> None:
        self.backbone = backbone
        self.cache_bytes = int(cache_mb * 2**20)
        self._prompts: dict[str, ServedPrompt] = {}
        self._cache: OrderedDict[str, tuple[SharedPrompt, int]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    # ---- adding ---------------------------------------------------------------------------------
    def add(self, name: str, prompt: torch.Tensor, task: TaskSpec | str, source: str) -> ServedPrompt:
        """Serve ``prompt`` as ``name`` (refused: the reserved name, a name in use, a prompt of another width)."""
        if name == BASE:
            raise ConfigError(f"'{BASE}' names the model without a prompt", "give the prompt another name")
        if not name or "/" in name or name != name.strip():
            raise ConfigError(f"prompt name '{name}' is not usable in a request", "use letters, digits, - _ .")
        if name in self._prompts:
            raise ConfigError(f"two prompts are named '{name}' ({self._prompts[name].source} and {source})",
                              "give each --prompt its own NAME")
        if prompt.dim() != 2 or prompt.shape[1] != self.backbone.dim:
            raise ConfigError(f"{source}: prompt of shape {tuple(prompt.shape)} does not fit the model's embedding "
                              f"width {self.backbone.dim}", "serve prompts trained on this model")
        embedding = self.backbone.embedding.weight
        served = ServedPrompt(name, prompt.detach().to(embedding.device, embedding.dtype), get_task(task), source)
        self._prompts[name] = served
        return served

    def add_reference(self, name: str, reference: str) -> ServedPrompt:
        """A prompt folder, ``.safetensors`` file, run folder or Hub id (offline: from the local cache),
        checked against the model's width and fingerprint; its task is the one it records."""
        checkpoint = load_prompt(reference, self.backbone)
        meta = checkpoint.metadata
        task = meta.get("config", {}).get("task") or meta.get("task")
        if task is None:
            raise ConfigError(f"{reference} does not record its task", "serve a prompt saved by promptvec")
        return self.add(name, checkpoint.prompt, task, str(reference))

    def add_store(self, path: str | Path) -> list[ServedPrompt]:
        """Every prompt of a store, by its entry name (or short id), each checked against the model."""
        from promptvec.store import VectorStore

        store = VectorStore(path, read_only=True)
        added = []
        for entry in store.entries(kind="prompt"):
            prompt, meta = store.load_prompt(entry.sha256)
            check_compatible(prompt, meta, self.backbone, f"store entry {entry.short_id}")
            if entry.task is None:
                raise ConfigError(f"store entry {entry.short_id} records no task", "serve prompts with a task")
            added.append(self.add(entry.name or entry.short_id, prompt, entry.task,
                                  f"{path} entry {entry.short_id}"))
        return added

    def add_library(self, path: str | Path | None = None) -> list[ServedPrompt]:
        """Every prompt of a prompt library (default: the one shipped for the model), by its task's name."""
        from promptvec.errors import TaskError
        from promptvec.library import PromptLibrary

        library = PromptLibrary.for_backbone(self.backbone, path)
        added = []
        for source in library.sources(self.backbone):
            try:
                task = get_task(source.task)
            except TaskError:
                raise ConfigError(f"library {library.root} holds a prompt for task '{source.task}', which is not a "
                                  "built-in task, so its template and labels are unknown here",
                                  f"serve that prompt with --prompt {source.task}=RUN_FOLDER (its run records the "
                                  "task file)") from None
            added.append(self.add(source.task, source.prompt, task, f"library {library.root.name}"))
        return added

    # ---- using ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._prompts)

    def get(self, name: str) -> ServedPrompt | None:
        """The prompt called ``name``; None for :data:`BASE` (no prompt). Unknown: KeyError with close names."""
        if name == BASE:
            return None
        if name not in self._prompts:
            close = difflib.get_close_matches(name, [*self._prompts, BASE], n=3)
            raise KeyError(f"no prompt '{name}' is served" + (f" (did you mean {', '.join(close)}?)" if close else "")
                           + "; GET /v1/models lists them")
        return self._prompts[name]

    def prepared(self, served: ServedPrompt) -> SharedPrompt:
        """``served``'s keys/values, computed on first use and kept while the cache has room."""
        with self._lock:
            hit = self._cache.get(served.name)
            if hit is not None:
                self._cache.move_to_end(served.name)
                return hit[0]
        with torch.no_grad():
            shared = SharedPrompt(self.backbone.model, served.prompt)
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in shared.layers)
        with self._lock:
            self._cache[served.name] = (shared, size)
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
                _, (_, evicted) = self._cache.popitem(last=False)
                self._cached_bytes -= evicted
        return shared

    @property
    def cached(self) -> tuple[int, int]:
        """(prompts whose keys/values are in memory, their bytes)."""
        with self._lock:
            return len(self._cache), self._cached_bytes
