"""Prompts by Hugging Face Hub id, read the way PEFT reads adapters.

Wherever promptvec reads a prompt, ``namespace/name`` (optionally ``@revision``: a branch, tag or
commit) that names no local path is a Hub repository: its adapter files are downloaded with
``huggingface_hub`` into the Hub cache (only the JSON, safetensors and card files — never a pickle),
and read from there. With ``HF_HUB_OFFLINE`` set, only the cache is read, and a repository that is
not cached gets one message saying so.

A path is never mistaken for a Hub id: a :class:`~pathlib.Path` object is always local, and so is
text that exists here, starts like a path (``./``, ``../``, ``/``, ``~``), has more than one ``/``
before an ``@``, or whose first folder exists here (``runs/sst2`` when ``runs/`` does): a folder that does not exist
yet is reported missing, not looked up on the Hub.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from promptvec.errors import CheckpointError

#: ``namespace/name`` (the Hub's characters) and an optional ``@revision``
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?")


def hub_offline() -> bool:
    """The Hub may not be contacted (any of the offline variables huggingface_hub, datasets and
    transformers read), read when asked so a caller's setting takes effect."""
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True)
class HubRef:
    """A model repository on the Hub, at ``revision`` (None: its default branch)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


#: how a reference that means a local path starts (never taken for a Hub id, even where nothing is there yet)
LOCAL_PATH_PREFIXES = ("./", "../", "/", "~")


def hub_ref(ref: str | os.PathLike) -> HubRef | None:
    """The Hub repository ``ref`` names, or None where it is (or may be meant as) a local path."""
    if not isinstance(ref, str) or ref.startswith(LOCAL_PATH_PREFIXES) or Path(ref).exists():
        return None
    match = _HUB_ID.fullmatch(ref)
    if match is None or Path(match["repo"].split("/")[0]).exists():
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(match["repo"])
    except HFValidationError:
        return None
    return HubRef(match["repo"], match["revision"])


def check_prompt_reference(ref: str | os.PathLike) -> None:
    """Refuse a prompt path that does not exist, before any model loads (commands call this first; a
    Hub id is checked when it is read). A folder between the two renames of its atomic swap counts."""
    if hub_ref(ref) is not None:
        return
    path = Path(ref).expanduser()
    if not path.exists() and not path.with_name(f".{path.name}.old").is_dir():
        raise CheckpointError(f"prompt not found: {ref}", "check the path (or give a Hub id, namespace/name)")


@dataclass(frozen=True)
class ResolvedPrompt:
    """Where a prompt reference is on this machine, and how to name it in records: the local path
    as given, or ``namespace/name@<commit>`` for a Hub repository (the exact version read)."""

    path: Path
    source: str


def resolve_prompt(ref: str | os.PathLike, files: Iterable[str]) -> ResolvedPrompt:
    """A local path as it is; a Hub id downloaded (``files``: the patterns to fetch) into the cache."""
    hub = hub_ref(ref)
    if hub is None:
        return ResolvedPrompt(Path(ref), str(ref))
    folder = download(hub, files, what="prompt")
    return ResolvedPrompt(folder, f"{hub.repo_id}@{folder.name}")


def download(hub: HubRef, files: Iterable[str], what: str) -> Path:
    """The snapshot folder of ``hub`` holding ``files`` (patterns), fetched or read from the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    try:
        return Path(snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=list(files),
                                      local_files_only=offline))
    except LocalEntryNotFoundError:
        if offline:
            raise CheckpointError(
                f"{what} '{hub}' is not a local path, and the Hub repository {hub.repo_id}"
                f"{' at ' + hub.revision if hub.revision else ''} is not in the Hub cache while the Hub is offline "
                "(HF_HUB_OFFLINE is set)",
                "download it once online (unset HF_HUB_OFFLINE), or give the path of a local folder") from None
        raise CheckpointError(f"could not reach the Hub to download {what} '{hub}'",
                              "check the connection, or set HF_HUB_OFFLINE=1 to read the Hub cache only") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"the Hub repository {hub.repo_id} has no revision '{hub.revision}'",
                              "give a branch, tag or commit of the repository (or none for its main branch)") from None
    except GatedRepoError:
        raise CheckpointError(f"the Hub repository {hub.repo_id} is gated: its terms must be accepted first",
                              f"accept them on https://huggingface.co/{hub.repo_id} and log in (`hf auth login`)") \
            from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{what} '{hub}' is neither a local path nor a Hub repository you can read",
                              "check the path or the repository id (a private repository needs `hf auth login`)") \
            from None
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(f"could not download {what} '{hub}' from the Hub ({type(exc).__name__}: {exc})",
                              "check the connection, or set HF_HUB_OFFLINE=1 to read the Hub cache only") from None
