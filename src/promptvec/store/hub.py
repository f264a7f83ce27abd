"""Share store entries through a Hugging Face Hub repository (or a local folder standing in for one).

A shared repository holds ``manifest.json`` and ``objects/<sha256>.safetensors``. Pulling reads
only those: every path named by the manifest must stay inside the repository (no ``..``, absolute
paths or links), pickle files are refused, and each object's content digest must match the
manifest before it enters the store. Offline mode (``HF_HUB_OFFLINE``) is respected.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from promptvec.errors import CheckpointError
from promptvec.hub import hub_offline
from promptvec.io import PICKLE_SUFFIXES, atomic_write_json, load_tensors, read_json
from promptvec.store.store import Entry, StoreError, VectorStore, check_store_object, content_digest
from promptvec.vectors.tpv import FORMAT as VECTOR_FORMAT

MANIFEST = "manifest.json"


def _is_local(repo: str) -> bool:
    return repo.startswith("file://") or Path(repo).is_dir()


def _local_path(repo: str) -> Path:
    return Path(repo[len("file://"):] if repo.startswith("file://") else repo)


def push(store: VectorStore, refs: list[str], repo: str) -> int:
    """Upload entries (by id/name) to ``repo``; returns how many were written."""
    entries = [store.get(ref) for ref in refs]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "objects").mkdir()
        manifest: list[dict[str, Any]] = []
        for entry in entries:
            store._verified_tensors(entry)  # never share a corrupted object
            name = f"objects/{entry.sha256}.safetensors"
            shutil.copyfile(store._object_path(entry.sha256), folder / name)
            manifest.append({"file": name, "sha256": entry.sha256, "kind": entry.kind, "name": entry.name,
                             "task": entry.task, "model_fingerprint": entry.model_fingerprint})
        if _is_local(repo):
            target = _local_path(repo)
            previous = read_json(target / MANIFEST, "manifest")["entries"] if (target / MANIFEST).is_file() else []
            known = {e["sha256"] for e in manifest}
            merged = [e for e in previous if e["sha256"] not in known] + manifest
            (target / "objects").mkdir(parents=True, exist_ok=True)
            for item in manifest:
                shutil.copyfile(folder / item["file"], target / item["file"])
            atomic_write_json(target / MANIFEST, {"format": "promptvec.store.v1", "entries": merged})
            return len(manifest)
        if hub_offline():
            raise StoreError(f"cannot push to the Hub repository '{repo}': the Hub is offline (HF_HUB_OFFLINE)",
                             "go online, or push to a local folder")
        atomic_write_json(folder / MANIFEST, {"format": "promptvec.store.v1", "entries": manifest})
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="promptvec store push")
        return len(manifest)


def _safe_member(root: Path, name: str) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not name:
        raise CheckpointError(f"the repository manifest names an unsafe path '{name}'",
                              "refusing to read outside the repository; do not pull from this source")
    path = root.joinpath(*pure.parts)
    if path.is_symlink() or not path.resolve().is_relative_to(root.resolve()):
        raise CheckpointError(f"'{name}' in the repository is a link or leaves the repository",
                              "refusing to follow it; do not pull from this source")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"'{name}' is a pickle file; promptvec never unpickles downloaded files",
                              "ask the publisher for safetensors files")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"'{name}' is not a safetensors file", "only safetensors objects are pulled")
    return path


def pull(store: VectorStore, repo: str) -> list[Entry]:
    """Add every entry of ``repo`` to the store after validating paths and digests."""
    if _is_local(repo):
        root = _local_path(repo)
    else:
        if hub_offline():
            raise StoreError(f"cannot pull '{repo}': the Hub is offline (HF_HUB_OFFLINE)",
                             "go online, or pull from a local folder")
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(repo, allow_patterns=[MANIFEST, "objects/*.safetensors"]))
    manifest = read_json(root / MANIFEST, "store manifest")
    items = manifest.get("entries") if isinstance(manifest, dict) else None
    if not isinstance(items, list):
        raise CheckpointError(f"{root / MANIFEST} is not a promptvec store manifest",
                              "push with `promptvec store push`")
    validated = []  # everything is checked before anything enters the store
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise CheckpointError(f"{root / MANIFEST}: entry {number} is not an object naming a file ({item!r:.60})",
                                  "the repository is damaged; push it again with `promptvec store push`")
        path = _safe_member(root, item["file"])
        tensors, metadata = load_tensors(path)
        if content_digest(tensors, metadata) != item.get("sha256"):
            raise CheckpointError(f"'{item['file']}' does not match its manifest digest",
                                  "the repository is corrupted or was tampered with")
        try:
            meta = json.loads(metadata["promptvec"])
        except (KeyError, json.JSONDecodeError):
            raise CheckpointError(f"'{item['file']}' lacks promptvec metadata", "push with promptvec") from None
        kind = "vector" if metadata.get("format") == VECTOR_FORMAT else "prompt"  # what the file is
        if item.get("kind", kind) != kind:
            raise CheckpointError(f"'{item['file']}' is a {kind}, but the manifest says {item.get('kind')!r}",
                                  "the repository was tampered with; pull nothing from it")
        check_store_object(tensors, kind, meta, f"'{item['file']}'")
        validated.append((tensors, metadata, kind, meta))
    return [store._add_object(t, m, kind, m.get("store_name") or None, meta) for t, m, kind, meta in validated]
