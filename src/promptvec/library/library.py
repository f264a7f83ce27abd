"""A prompt library: source prompts and their task prompt vectors for one model, read-only.

promptvec ships one for the embedded SmolLM2-135M-Instruct inside the package
(``promptvec/library/shipped/<name>/``), so ``init: auto`` works offline right after ``pip install``.
A library is a :class:`~promptvec.store.VectorStore` folder (so ``promptvec store search --like``
works on it) plus ``library.json``: the model it was trained on (name and fingerprint), the recipe,
and one entry per task with its scores — what ``promptvec library`` lists without loading a model.

A plain store a user built (``promptvec store add --vector``) also serves as a library: every task
prompt vector in it that records its origin is a source (its prompt = origin + vector).

A library is only ever used with the model it was trained on: :meth:`PromptLibrary.check_model`
compares fingerprints, because a prompt is a point in one model's embedding space.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptvec.backbones import Backbone
from promptvec.errors import ConfigError, describe_validation_error
from promptvec.io import read_json
from promptvec.library.auto import SourcePrompt
from promptvec.store import VectorStore
from promptvec.store.store import Entry

LIBRARY_FILE = "library.json"
FORMAT = "promptvec.library.v1"
SHIPPED_DIR = Path(__file__).parent / "shipped"


class LibraryEntry(BaseModel):
    """One source prompt of a library, as ``library.json`` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str
    group: str = ""
    output_type: str = "multiple_choice"
    metric: str = Field(description="the task's primary metric")
    score: float | None = Field(None, description="test score of the prompt (recipe's test examples)")
    no_prompt: float | None = Field(None, description="test score of the model without a prompt, same examples")
    validation: float | None = Field(None, description="validation score of the selected checkpoint")
    best_step: int | None = None
    train_examples: int | None = None
    vector_norm: float
    prompt_sha256: str | None = Field(None, description="store id of the tuned prompt (None: origin + vector)")
    vector_sha256: str = Field(description="store id of the task prompt vector")

    @property
    def gain(self) -> float | None:
        """Score minus no prompt (None when either is unknown)."""
        return None if self.score is None or self.no_prompt is None else self.score - self.no_prompt


class LibraryManifest(BaseModel):
    """``library.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str
    name: str
    model: str = Field(description="the model as promptvec names it (e.g. default)")
    model_fingerprint: str
    rows: int = Field(ge=1)
    dim: int = Field(ge=1)
    recipe: dict[str, Any] = Field(default_factory=dict, description="how the sources were trained")
    built_with: dict[str, Any] = Field(default_factory=dict, description="the code and suite that built it")
    entries: list[LibraryEntry]


@dataclass
class PromptLibrary:
    """A read-only library of source prompts (see the module docstring)."""

    root: Path
    manifest: LibraryManifest
    store: VectorStore

    # ---- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> PromptLibrary:
        """A library folder (``library.json`` + store) or a plain store folder."""
        root = Path(path)
        if not root.is_dir():
            raise ConfigError(f"no prompt library at {root} (not a folder)",
                              "pass --library a library folder (`promptvec library build`) or a store folder")
        store = VectorStore(root, read_only=True)
        if (root / LIBRARY_FILE).is_file():
            raw = read_json(root / LIBRARY_FILE, "library manifest")
            try:
                manifest = LibraryManifest.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"{root / LIBRARY_FILE} is not a valid library manifest: "
                                  f"{describe_validation_error(exc)}", "rebuild it with `promptvec library build`"
                                  ) from None
            if manifest.format != FORMAT:
                raise ConfigError(f"{root / LIBRARY_FILE} has format '{manifest.format}', this promptvec reads "
                                  f"'{FORMAT}'", "rebuild the library with this promptvec")
            return cls(root, manifest, store)
        return cls(root, _manifest_of_store(store), store)

    @classmethod
    def shipped(cls) -> list[PromptLibrary]:
        """The libraries installed with promptvec."""
        if not SHIPPED_DIR.is_dir():
            return []
        return [cls.open(p) for p in sorted(SHIPPED_DIR.iterdir()) if (p / LIBRARY_FILE).is_file()]

    @classmethod
    def for_model(cls, model: str, path: str | Path | None = None) -> PromptLibrary:
        """``path``'s library, or the shipped one made for ``model`` (by name; listing needs no weights —
        :meth:`check_model` compares fingerprints before any prompt is used)."""
        if path is not None:
            return cls.open(path)
        shipped = cls.shipped()
        for library in shipped:
            if library.manifest.model == model:
                return library
        have = ", ".join(f"'{lib.manifest.model}'" for lib in shipped) or "none"
        raise ConfigError(f"no prompt library ships for model '{model}' (shipped: {have})",
                          f"build one: `promptvec library build --model {model} --to FOLDER`, then pass "
                          "--library FOLDER")

    @classmethod
    def for_backbone(cls, backbone: Backbone, path: str | Path | None = None) -> PromptLibrary:
        """``path``'s library, or the shipped one whose fingerprint is the backbone's; checked either way."""
        if path is None:
            for library in cls.shipped():
                if library.manifest.model_fingerprint == backbone.fingerprint:
                    return library
            library = cls.for_model(backbone.name)  # the name matches but the weights differ: say so below
        else:
            library = cls.open(path)
        library.check_model(backbone)
        return library

    # ---- using ------------------------------------------------------------------------------
    def check_model(self, backbone: Backbone) -> None:
        """Refuse a library trained on other weights: its prompts mean nothing to this model."""
        if self.manifest.model_fingerprint != backbone.fingerprint:
            raise ConfigError(
                f"prompt library {self.root} was built for model '{self.manifest.model}' (fingerprint "
                f"{self.manifest.model_fingerprint[:12]}), not for '{backbone.name}' ({backbone.fingerprint[:12]})",
                f"use a library built for this model: `promptvec library build --model {backbone.name} --to "
                "FOLDER`, then --library FOLDER")

    @property
    def entries(self) -> list[LibraryEntry]:
        return list(self.manifest.entries)

    def entry(self, task: str) -> LibraryEntry:
        for entry in self.manifest.entries:
            if entry.task == task:
                return entry
        names = [entry.task for entry in self.manifest.entries]
        close = difflib.get_close_matches(task, names, n=3)
        raise ConfigError(f"the library {self.root} has no prompt for task '{task}'"
                          + (f" (did you mean {', '.join(close)}?)" if close else ""),
                          f"run `promptvec library` to see its tasks ({len(names)})")

    def sources(self, backbone: Backbone, exclude: set[str] | frozenset[str] = frozenset()) -> list[SourcePrompt]:
        """Every library prompt (minus the tasks in ``exclude``) with its vector, checked against the model.
        A name in ``exclude`` the library does not hold is refused: a misspelt name would leave nothing out
        and silently let in the prompt it was meant to keep out (e.g. the target's own)."""
        self.check_model(backbone)
        for task in sorted(exclude):
            self.entry(task)
        out = []
        for entry in self.manifest.entries:
            if entry.task in exclude:
                continue
            vector = self.store.load_vector(entry.vector_sha256)
            if entry.prompt_sha256 is not None:
                prompt, _ = self.store.load_prompt(entry.prompt_sha256)
            else:
                prompt = vector.apply_to(vector.recorded_origin, 1.0, backbone)
            vector.check_compatible(prompt, "library prompt")
            out.append(SourcePrompt(entry.task, prompt.float(), vector))
        return out


def _manifest_of_store(store: VectorStore) -> LibraryManifest:
    """A plain store as a library: its task prompt vectors that record an origin, all of one model."""
    vectors = [e for e in store.entries(kind="vector") if e.task and e.metadata.get("origin")]
    if not vectors:
        raise ConfigError(f"store {store.root} holds no task prompt vector that records its origin, so it cannot "
                          "serve as a prompt library", "add vectors with `promptvec store add RUN --vector` (or "
                          "build a library with `promptvec library build`)")
    models = {e.model_fingerprint for e in vectors}
    if len(models) > 1:
        raise ConfigError(f"store {store.root} holds vectors of {len(models)} models; a library is for one model",
                          "make a store per model (or build a library with `promptvec library build`)")
    by_task: dict[str, Entry] = {}
    for entry in vectors:  # the newest vector of each task
        by_task[entry.task or ""] = entry
    first = vectors[0]
    entries = [LibraryEntry(task=task, metric="", vector_norm=store.load_vector(e.sha256).norm(),
                            vector_sha256=e.sha256) for task, e in sorted(by_task.items())]
    return LibraryManifest(format=FORMAT, name=store.root.name, model=first.model or "", model_fingerprint=
                           first.model_fingerprint, rows=first.rows, dim=first.dim, entries=entries)
