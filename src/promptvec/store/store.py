"""A local registry of prompts and task prompt vectors.

* **Files are content-addressed**: ``objects/ab/<sha256>.safetensors``, where the sha256 is taken
  over a canonical form of the content (tensor names, dtypes, shapes and bytes, then the metadata
  as sorted JSON — safetensors' own header order is not deterministic). It is checked on every
  read, so a corrupted object is detected instead of silently used.
* **The index is SQLite** (WAL mode, busy timeout), safe with several processes adding at once;
  it holds only what can be rebuilt from the objects themselves (each object carries its metadata),
  so a damaged index is repaired with :meth:`VectorStore.rebuild`.

Entries are addressed by a unique prefix of their sha256 (like git) or by their name.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promptvec.errors import CheckpointError, PromptvecError
from promptvec.faults import fault_point
from promptvec.io import atomic_write_bytes, load_tensors, output_folder
from promptvec.peft_folder import PROMPT_KEY
from promptvec.tensor_checks import check_prompt_tensor, positive_int
from promptvec.vectors.similarity import similarity
from promptvec.vectors.tpv import FORMAT as VECTOR_FORMAT
from promptvec.vectors.tpv import VECTOR_KEY, TaskPromptVector, VectorMeta

STORE_ENV = "PROMPTVEC_STORE"
PROMPT_FORMAT = "promptvec.prompt.v1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('prompt', 'vector')),
    name TEXT,
    task TEXT,
    model TEXT,
    model_fingerprint TEXT NOT NULL,
    rows INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    origin_seed INTEGER,
    created REAL NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS by_task ON entries(task);
CREATE INDEX IF NOT EXISTS by_name ON entries(name);
"""


class StoreError(PromptvecError):
    """A store that cannot be used as asked (unknown entry, damaged index or object)."""


@dataclass(frozen=True)
class Entry:
    sha256: str
    kind: str
    name: str | None
    task: str | None
    model: str | None
    model_fingerprint: str
    rows: int
    dim: int
    origin_seed: int | None
    created: float
    metadata: dict[str, Any]

    @property
    def short_id(self) -> str:
        return self.sha256[:12]


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 of the canonical content of a safetensors object."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    return digest.hexdigest()


_INSERT = "INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def check_store_object(tensors: dict[str, torch.Tensor], kind: str, meta: Any, where: str) -> None:
    """What enters the store (add, import, pull): metadata naming the model and a positive shape, and
    the one tensor of its kind passing :func:`check_prompt_tensor` with that shape (a prompt may be
    PEFT's seq2seq layout, two blocks of ``rows``)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: its metadata must be a mapping, got {type(meta).__name__}",
                              "add it from its source with promptvec")
    if not isinstance(meta.get("model_fingerprint"), str) or not meta["model_fingerprint"]:
        raise CheckpointError(f"{where}: its metadata names no model fingerprint", "add it with --model")
    rows, dim = positive_int(meta.get("rows"), where, "rows"), positive_int(meta.get("dim"), where, "dim")
    key = VECTOR_KEY if kind == "vector" else PROMPT_KEY
    if set(tensors) != {key}:
        raise CheckpointError(f"{where}: a stored {kind} holds one tensor '{key}', got {sorted(tensors)}",
                              "the file is not what its manifest or format says")
    tensor = check_prompt_tensor(tensors[key], f"{where}: the {kind}", dim=dim)
    allowed = (rows,) if kind == "vector" else (rows, 2 * rows)
    if tensor.shape[0] not in allowed:
        raise CheckpointError(f"{where}: the {kind} has {tensor.shape[0]} rows but its metadata says {rows}",
                              "the file is damaged or its metadata is wrong")


def _new_entry(sha: str, kind: str, name: str | None, meta: dict[str, Any]) -> Entry:
    return Entry(sha, kind, name, meta.get("task") or None, meta.get("model") or None, meta["model_fingerprint"],
                 int(meta["rows"]), int(meta["dim"]), (meta.get("origin") or {}).get("seed"), time.time(), meta)


def _row(entry: Entry) -> tuple:
    return (entry.sha256, entry.kind, entry.name, entry.task, entry.model, entry.model_fingerprint, entry.rows,
            entry.dim, entry.origin_seed, entry.created, json.dumps(entry.metadata, sort_keys=True))


def default_store_path() -> Path:
    from promptvec.backbones.loading import cache_dir

    return Path(os.environ.get(STORE_ENV) or cache_dir() / "store").expanduser()


class VectorStore:
    """A content-addressed store of prompts and task prompt vectors: safetensors objects named by their
    sha256 and a SQLite index, safe with concurrent writers, verified on every read, searchable by
    task and by similarity (``promptvec store``)."""

    #: how long a write waits for another process holding the index before giving up with a message
    lock_timeout_s: float = 60.0

    def __init__(self, root: str | Path | None = None, read_only: bool = False) -> None:
        """Open (or create) the store at ``root``. ``read_only``: open an existing store without
        writing anything — not the index, not a lock, not a folder — so a store on a read-only file
        system or inside an installed package (the prompt library) can be listed, searched and read."""
        self.read_only = read_only
        self._set_paths(root)
        if read_only:
            if not self.index_path.is_file() or not self.objects.is_dir():
                raise StoreError(f"no store at {self.root} (it needs index.sqlite and objects/)",
                                 "check the path; nothing was created")
            return
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _set_paths(self, root: str | Path | None) -> None:
        self.root = Path(root) if root else default_store_path()
        self.objects = self.root / "objects"
        if not self.read_only:
            output_folder(self.objects, "store folder (--store)")
        self.index_path = self.root / "index.sqlite"

    @classmethod
    def repair(cls, root: str | Path | None = None) -> int:
        """Rebuild the index of a store whose index cannot be opened; returns the objects indexed."""
        path = Path(root) if root else default_store_path()
        if not (path / "objects").is_dir():  # a typo must not create an empty store
            raise StoreError(f"no store at {path} (it has no objects folder)",
                             "check --store (or $PROMPTVEC_STORE); nothing was created")
        store = cls.__new__(cls)
        store.read_only = False
        store._set_paths(path)
        return store.rebuild()

    # ---- the index ------------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            if self.read_only:  # nothing is written: no journal, no -wal/-shm files where none may be made
                immutable = "&immutable=1" if not os.access(self.root, os.W_OK) else ""
                db = sqlite3.connect(f"{self.index_path.resolve().as_uri()}?mode=ro{immutable}", uri=True,
                                     timeout=self.lock_timeout_s, isolation_level=None)
            else:
                db = sqlite3.connect(self.index_path, timeout=self.lock_timeout_s, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout_s * 1000)}")
            if not self.read_only:
                db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise self._index_error(exc) from None
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise self._index_error(exc) from None
        finally:
            db.close()

    def _index_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"store index {self.index_path} is locked by another process (waited "
                              f"{self.lock_timeout_s:g} s)", "let the other promptvec process finish (or stop it), "
                              "then run the command again; nothing was written")
        if "disk is full" in text or "disk I/O error" in text:  # a write that failed, not a damaged index
            return StoreError(f"cannot write the store index {self.index_path}: the disk is full (or failing) "
                              f"({text})", "free space on that disk and run the command again; the index keeps "
                              "what it held before (do not rebuild it)")
        return StoreError(f"store index {self.index_path} is damaged ({exc})",
                          "run `promptvec store rebuild` to recreate it from the stored files")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time across processes (``store.lock``): adds, removals and rebuilds do not
        interleave, so a rebuild never drops an entry added while it ran."""
        import fcntl

        self._check_writable()
        lock_path = self.root / "store.lock"
        with open(lock_path, "a+b") as handle:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(f"store {self.root} is being written by another process (waited "
                                         f"{self.lock_timeout_s:g} s)", "let it finish, then run the command "
                                         "again; nothing was written") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.root} was opened read-only", "nothing was changed; add to or remove "
                             "from a store you own (a shipped library is never changed)")

    def _object_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / f"{sha}.safetensors"

    # ---- adding ---------------------------------------------------------------------------------
    def _add_object(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str], kind: str,
                    name: str | None, meta: dict[str, Any]) -> Entry:
        from safetensors.torch import save

        self._check_writable()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        check_store_object(tensors, kind, meta, name or "the new entry")
        sha = content_digest(tensors, metadata)
        path = self._object_path(sha)
        if not path.is_file():
            atomic_write_bytes(path, save(tensors, metadata=metadata))
        entry = _new_entry(sha, kind, name, meta)
        with self._writing(), self._db() as db:
            db.execute(_INSERT, _row(entry))
            stored = db.execute("SELECT * FROM entries WHERE sha256 = ?", (sha,)).fetchone()
        return self._row_to_entry(stored)  # the entry as indexed (an identical object added earlier keeps its row)

    def add_vector(self, vector: TaskPromptVector, name: str | None = None) -> Entry:
        """Store a task prompt vector (an identical one already stored keeps its entry)."""
        metadata = {"format": VECTOR_FORMAT, "promptvec": vector.meta.to_json(), "store_name": name or ""}
        return self._add_object({VECTOR_KEY: vector.tensor}, metadata, "vector", name, dict(vector.meta.__dict__))

    def add_prompt(self, prompt: torch.Tensor, meta: dict[str, Any], name: str | None = None) -> Entry:
        """``prompt`` as stored (PEFT seq2seq [2R, d] kept whole); ``meta`` needs model_fingerprint, rows, dim."""
        missing = [k for k in ("model_fingerprint", "rows", "dim") if k not in meta]
        if missing:
            raise StoreError(f"prompt metadata lacks {missing}", "load it with a backbone (--model) first")
        metadata = {"format": PROMPT_FORMAT, "promptvec": json.dumps(meta, sort_keys=True, default=str),
                    "store_name": name or ""}
        return self._add_object({PROMPT_KEY: prompt.float()}, metadata, "prompt", name, meta)

    # ---- reading ----------------------------------------------------------------------------------
    def _row_to_entry(self, row: Any) -> Entry:
        sha256, kind, name, task, model, fingerprint, rows, dim, origin_seed, created, metadata = row
        return Entry(sha256, kind, name, task, model, fingerprint, rows, dim, origin_seed, created,
                     json.loads(metadata))

    def entries(self, kind: str | None = None, task: str | None = None) -> list[Entry]:
        """The stored entries, optionally of one kind (``prompt``/``vector``) and one task."""
        query, args = "SELECT * FROM entries WHERE 1=1", list[str]()
        if kind:
            query, args = query + " AND kind = ?", [*args, kind]
        if task:
            query, args = query + " AND task = ?", [*args, task]
        with self._db() as db:
            return [self._row_to_entry(r) for r in db.execute(query + " ORDER BY created, sha256", args)]

    def get(self, ref: str) -> Entry:
        """An entry by name, or by a prefix of its sha256 (at least 6 hex digits) compared exactly —
        never as a pattern, so ``_`` or ``%`` in a reference match nothing but themselves."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM entries WHERE name = ?", (ref,)).fetchall()
            prefix = ref.lower()
            if not rows and re.fullmatch(r"[0-9a-f]{6,64}", prefix):
                rows = db.execute("SELECT * FROM entries WHERE substr(sha256, 1, ?) = ?",
                                  (len(prefix), prefix)).fetchall()
        if not rows:
            raise StoreError(f"no store entry '{ref}'", "run `promptvec store list` to see the entries (an id "
                             "prefix needs at least 6 hex digits)")
        if len(rows) > 1:
            found = ", ".join(f"{r[0][:12]} ({r[2] or 'no name'})" for r in rows[:10])
            raise StoreError(f"'{ref}' matches {len(rows)} entries: {found}",
                             "use a longer id prefix (nothing was changed)")
        return self._row_to_entry(rows[0])

    def _verified_tensors(self, entry: Entry) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        path = self._object_path(entry.sha256)
        if not path.is_file():
            raise StoreError(f"store object of {entry.short_id} is missing ({path})",
                             "remove the entry (`promptvec store rm`) or restore the file")
        try:
            tensors, metadata = load_tensors(path)
        except CheckpointError:
            tensors, metadata = {}, {}
        if content_digest(tensors, metadata) != entry.sha256:
            raise CheckpointError(f"store object {entry.short_id} is corrupted (its sha256 no longer matches)",
                                  "remove it with `promptvec store rm` and add it again from its source")
        return tensors, metadata

    def load_vector(self, ref: str) -> TaskPromptVector:
        """The vector an id prefix or name refers to, its object verified against its digest."""
        entry = self.get(ref)
        if entry.kind != "vector":
            raise StoreError(f"entry {entry.short_id} is a prompt, not a vector",
                             "make a vector from it with `promptvec vector create`")
        tensors, metadata = self._verified_tensors(entry)
        return TaskPromptVector(tensors[VECTOR_KEY], VectorMeta(**json.loads(metadata["promptvec"])))

    def load_prompt(self, ref: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """(prompt [R, d] as used by promptvec, metadata); a PEFT seq2seq [2R, d] yields its encoder half."""
        entry = self.get(ref)
        if entry.kind != "prompt":
            raise StoreError(f"entry {entry.short_id} is a vector, not a prompt", "apply it to an origin first")
        tensors, _ = self._verified_tensors(entry)
        return tensors[PROMPT_KEY][: entry.rows], entry.metadata

    def raw_prompt(self, ref: str) -> tuple[torch.Tensor, Entry]:
        """A stored prompt as stored (a PEFT seq2seq ``[2R, d]`` whole, for export), with its entry."""
        entry = self.get(ref)
        tensors, _ = self._verified_tensors(entry)
        return tensors[PROMPT_KEY], entry

    # ---- maintenance --------------------------------------------------------------------------------
    def remove(self, ref: str) -> Entry:
        """Remove an entry: its object file first, then its index row. A crash in between leaves a row
        whose file is gone (``rm`` again finishes it; a rebuild drops it) — never a file that a rebuild
        would bring back after the user removed it."""
        with self._writing():
            entry = self.get(ref)
            self._object_path(entry.sha256).unlink(missing_ok=True)
            fault_point("store.remove.between")
            with self._db() as db:
                db.execute("DELETE FROM entries WHERE sha256 = ?", (entry.sha256,))
        return entry

    def rebuild(self) -> int:
        """Recreate the index from the objects (after damage); corrupted objects are skipped. The new
        index is built beside the old one and swapped in when complete, so a failure (a full disk)
        leaves the old index as it was."""
        with self._writing():  # no add or removal between the scan and the swap
            return self._rebuild()

    def _rebuild(self) -> int:
        entries = []
        for path in sorted(self.objects.glob("*/*.safetensors")):
            try:
                tensors, metadata = load_tensors(path)
                meta = json.loads(metadata["promptvec"])
                kind = "vector" if metadata.get("format") == VECTOR_FORMAT else "prompt"
            except (CheckpointError, KeyError, json.JSONDecodeError):
                continue
            if content_digest(tensors, metadata) != path.stem:
                continue  # corrupted: not indexed
            entries.append(_new_entry(path.stem, kind, metadata.get("store_name") or None, meta))
        fresh = self.index_path.with_name(self.index_path.name + ".rebuild")
        fresh.unlink(missing_ok=True)
        try:
            db = sqlite3.connect(fresh, isolation_level=None)
            try:
                db.executescript(_SCHEMA)
                db.execute("BEGIN")
                db.executemany(_INSERT, [_row(e) for e in entries])
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            fresh.unlink(missing_ok=True)
            raise self._index_error(exc) from None
        for suffix in ("-wal", "-shm"):  # the old index's journal must not be applied to the new one
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, self.index_path)
        return len(entries)

    def seal(self) -> None:
        """Make the folder a self-contained snapshot to ship or copy read-only: the index in one file
        (no write-ahead log beside it) and no writer lock left behind."""
        self._check_writable()
        with self._db() as db:
            db.execute("PRAGMA journal_mode = DELETE")
        (self.root / "store.lock").unlink(missing_ok=True)

    # ---- search -----------------------------------------------------------------------------------
    def search(self, query: TaskPromptVector, top: int = 5, measure: str = "cosine",
               exclude_task: str | None = None) -> list[tuple[Entry, float]]:
        """Stored vectors nearest to ``query`` among the compatible ones (same model, same d)."""
        scored = []
        for entry in self.entries(kind="vector"):
            if entry.model_fingerprint != query.meta.model_fingerprint or entry.dim != query.meta.dim:
                continue
            if exclude_task and entry.task == exclude_task:
                continue
            if measure == "cosine-flat" and entry.rows != query.meta.rows:
                continue
            vector = self.load_vector(entry.sha256)
            scored.append((entry, similarity(query.tensor, vector.tensor, measure)))
        scored.sort(key=lambda item: -item[1])
        return scored[:top]

    def query_vector(self, ref: str) -> tuple[TaskPromptVector, str | None]:
        """A search query: a stored entry (id or name), a vector file, or a task name (mean of its vectors)."""
        if Path(ref).is_file():
            vector = TaskPromptVector.load(ref)
            return vector, vector.meta.task or None
        task_entries = self.entries(kind="vector", task=ref)
        if task_entries:
            vectors = [self.load_vector(e.sha256) for e in task_entries]
            same = [v for v in vectors if v.meta.model_fingerprint == vectors[0].meta.model_fingerprint]
            return TaskPromptVector.mean(same), ref
        vector = self.load_vector(ref)
        return vector, vector.meta.task or None
