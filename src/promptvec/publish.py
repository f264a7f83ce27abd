"""Push a prompt to the Hugging Face Hub as a repository PEFT loads
(``PeftModel.from_pretrained(base, "namespace/name")``), with its model card — or write the same
repository to a local folder.

What is pushed is the adapter folder promptvec writes (``adapter_config.json``,
``adapter_model.safetensors``, ``promptvec.json``, ``README.md``), with the card's examples loading
it by its repository id and, with ``license``, the owner's license recorded (none is ever
invented). A prompt of an embedded model names that model's Hub id as its base and says how its
weights differ from it, also when its folder was written before promptvec recorded either.

``store push`` is something else: it shares store entries as a manifest and objects, a layout only
promptvec reads.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from promptvec.errors import ConfigError, StorageError
from promptvec.hub import LOCAL_PATH_PREFIXES, hub_offline, hub_ref
from promptvec.peft_folder import ADAPTER_FILES, locate_prompt, read_adapter, write_adapter


@dataclass(frozen=True)
class PushResult:
    """Where a prompt went: the repository id (with the commit's URL) or the local folder."""

    destination: str
    files: tuple[str, ...]
    url: str | None = None


def _repository(repo_id: str) -> str:
    """``repo_id`` checked to be a Hub repository id, never a local path taken for one."""
    ref = hub_ref(repo_id)
    if ref is None or ref.revision:
        what = ("a local path" if Path(repo_id).exists() or repo_id.startswith(LOCAL_PATH_PREFIXES)
                else "not a Hub repository id (namespace/name)")
        raise ConfigError(f"'{repo_id}' is {what}", "give the repository as namespace/name (a branch with "
                          "--revision), or write a local folder with --to-folder PATH")
    return ref.repo_id


def push_prompt(prompt: str | Path, repo_id: str | None = None, *, to_folder: str | Path | None = None,
                private: bool = False, revision: str | None = None, license: str | None = None,
                commit_message: str | None = None, overwrite: bool = False) -> PushResult:
    """Upload ``prompt`` (a prompt folder, a run folder's best prompt, or a Hub id) to the Hub
    repository ``repo_id`` (created if missing; ``private``; on branch ``revision``), or write it to
    the local folder ``to_folder`` (refused over files promptvec did not write unless ``overwrite``)."""
    if (repo_id is None) == (to_folder is None):
        raise ConfigError("give either a Hub repository id or --to-folder, exactly one of them",
                          "e.g. promptvec push runs/sst2 my-name/sst2-prompt")
    repository = _repository(repo_id) if repo_id is not None else None
    adapter = read_adapter(locate_prompt(prompt).path)
    config, metadata = dict(adapter.config), dict(adapter.metadata)
    _name_the_base(config, metadata)
    if license:
        metadata["license"] = license
    files = tuple(sorted(ADAPTER_FILES))
    if repository is None:
        target = Path(str(to_folder))
        write_adapter(target, adapter.weights, adapter.rows, config, metadata, overwrite=overwrite,
                      card_location=str(target))
        return PushResult(str(target), files)
    if hub_offline():
        raise ConfigError(f"cannot push to the Hub repository {repository}: the Hub is offline (HF_HUB_OFFLINE is set)",
                          "unset HF_HUB_OFFLINE, or write a local folder with --to-folder")
    with tempfile.TemporaryDirectory() as tmp:
        staged = write_adapter(Path(tmp) / "repo", adapter.weights, adapter.rows, config, metadata,
                               card_location=repository)
        url = _upload(staged, repository, private, revision,
                      commit_message or f"promptvec: soft prompt for {metadata.get('task') or 'a task'}")
    return PushResult(repository, files, url)


def _name_the_base(config: dict, metadata: dict) -> None:
    """An embedded model's prompt names the model's Hub id and how the weights relate to it."""
    from promptvec.backbones.loading import EMBEDDED_MODELS

    embedded = EMBEDDED_MODELS.get(str(metadata.get("model")))
    if embedded is not None:
        config["base_model_name_or_path"] = embedded.hub_id
        metadata.setdefault("weights", embedded.weights)


def _upload(folder: Path, repository: str, private: bool, revision: str | None, message: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi()
    try:
        api.create_repo(repository, private=private, exist_ok=True)
        if revision:
            api.create_branch(repository, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repository, folder_path=str(folder), revision=revision,
                                 commit_message=message)
    except LocalTokenNotFoundError:
        raise StorageError(f"pushing to {repository} needs a Hugging Face token",
                           "log in with `hf auth login` (a token with write access) or set HF_TOKEN") from None
    except (HfHubHTTPError, OSError) as exc:
        raise StorageError(f"the push to {repository} failed ({type(exc).__name__}: {exc})",
                           "check the repository id, your write access (`hf auth whoami`) and the connection") \
            from None
    return str(info.commit_url)
