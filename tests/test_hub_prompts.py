"""Prompts by Hub id and ``promptvec push``, tested offline against a local stand-in for the Hub: a
Hugging Face cache laid out as huggingface_hub lays it out, read with ``HF_HUB_OFFLINE=1`` (the same
code path as a cached download), and an ``HfApi`` whose upload writes into that cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import CheckpointError, ConfigError
from promptvec.hub import HubRef, hub_ref
from promptvec.peft_folder import load_prompt
from promptvec.publish import push_prompt
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import train_prompt


class FakeHub:
    """A Hub that lives in a local Hugging Face cache: a pushed folder becomes a commit (a snapshot
    and a ref) that ``snapshot_download(..., local_files_only=True)`` finds like any cached repo."""

    def __init__(self, cache: Path, monkeypatch) -> None:
        self.cache, self.calls, self.monkeypatch = cache, [], monkeypatch

    def push(self, *args, **kwargs):
        """``push_prompt`` online (the reads around it stay offline: from the cache only)."""
        self.monkeypatch.delenv("HF_HUB_OFFLINE")
        try:
            return push_prompt(*args, **kwargs)
        finally:
            self.monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def publish(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        digest = hashlib.sha1()
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + path.read_bytes())
        commit = digest.hexdigest()
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
        return commit

    def api(self):
        hub = self

        class Api:
            def create_repo(self, repo_id, private=False, exist_ok=False):
                hub.calls.append(("create_repo", repo_id, private))

            def create_branch(self, repo_id, branch, exist_ok=False):
                hub.calls.append(("create_branch", repo_id, branch))

            def upload_folder(self, repo_id, folder_path, revision=None, commit_message=""):
                hub.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir()),
                                  commit_message))
                commit = hub.publish(repo_id, Path(folder_path), revision or "main")
                return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}")

        return Api


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    import huggingface_hub
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for variable in ("HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake = FakeHub(cache, monkeypatch)
    monkeypatch.setattr(huggingface_hub, "HfApi", fake.api())
    return fake


@pytest.fixture(scope="module")
def trained(backbones, tiny_models, toy_task, tmp_path_factory) -> Path:
    """A trained run of the tiny Llama (its prompt records its origin, task and metrics)."""
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=2, eval_every=2,
                         batch_size=4, prompt_length=3, lr=0.05)
    out = tmp_path_factory.mktemp("hub") / "run"
    train_prompt(config, out, backbone=backbones["llama"], progress=False)
    return out


def test_what_is_read_as_a_hub_id_and_what_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub_ref("user/repo") == HubRef("user/repo")
    assert hub_ref("user/repo@v1.0") == HubRef("user/repo", "v1.0")
    assert str(hub_ref("user/repo@refs/pr/1")) == "user/repo@refs/pr/1"
    (tmp_path / "runs").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    for local in ("runs/sst2",  # its first folder exists here: a run not made yet, not a repository
                  "a/b", "./x/y", "../x/y", "/x/y", "~/x", "x/y/z", "x", "user/re po", "user/-repo"):
        assert hub_ref(local) is None, local
    assert hub_ref(Path("user/repo")) is None  # a Path is a path


def test_a_missing_run_folder_is_reported_missing_not_looked_up_on_the_hub(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(CheckpointError, match="prompt not found: runs/sst2"):
        load_prompt("runs/sst2")


def test_a_pushed_prompt_is_read_back_by_hub_id_everywhere(hub, trained, tiny_models, toy_task, tmp_path):
    pushed = hub.push(str(trained), "someone/toy-prompt", license="apache-2.0")
    assert pushed.destination == "someone/toy-prompt" and pushed.url.startswith("https://huggingface.co/someone/")
    assert hub.calls[0] == ("create_repo", "someone/toy-prompt", False)
    assert hub.calls[1][2] == ["README.md", "adapter_config.json", "adapter_model.safetensors", "promptvec.json"]

    original = load_prompt(trained)
    by_id = load_prompt("someone/toy-prompt")
    assert torch.equal(by_id.prompt, original.prompt) and by_id.metadata["origin"] == original.metadata["origin"]
    commit = (hub.cache / "models--someone--toy-prompt" / "refs" / "main").read_text()
    assert by_id.source == f"someone/toy-prompt@{commit}"  # records say exactly which version was read
    assert torch.equal(load_prompt(f"someone/toy-prompt@{commit}").prompt, original.prompt)

    runner = CliRunner()
    model = ["--model", str(tiny_models["llama"])]
    evaluated = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", "someone/toy-prompt", *model,
                                    "--limit", "4", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["prompt"] == f"someone/toy-prompt@{commit}"
    store = tmp_path / "store"
    imported = runner.invoke(app, ["store", "import", "someone/toy-prompt", "--store", str(store)])
    assert imported.exit_code == 0, imported.output
    vector = runner.invoke(app, ["vector", "create", "someone/toy-prompt", str(tmp_path / "v.safetensors"), *model])
    assert vector.exit_code == 0, vector.output
    predicted = runner.invoke(app, ["predict", "--prompt", "someone/toy-prompt", *model, "a great film"])
    assert predicted.exit_code == 0, predicted.output
    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), init_prompt="someone/toy-prompt",
                         max_steps=1, batch_size=4, val_examples=4, test_examples=4)
    record = train_prompt(config, tmp_path / "further", progress=False).record
    assert record["init"] == {"init": "prompt", "source": f"someone/toy-prompt@{commit}"}


def test_lm_eval_reads_a_prompt_by_hub_id(hub, trained, tiny_models):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from promptvec.lm_eval_model import PromptvecLM

    hub.push(str(trained), "someone/toy-prompt")
    request = [Instance(request_type="loglikelihood", doc={}, arguments=("Review: fine.", " positive"), idx=0)]
    by_id = PromptvecLM(model=str(tiny_models["llama"]), prompt="someone/toy-prompt").loglikelihood(request)
    local = PromptvecLM(model=str(tiny_models["llama"]), prompt=str(trained)).loglikelihood(request)
    bare = PromptvecLM(model=str(tiny_models["llama"])).loglikelihood(request)
    assert by_id == local != bare


def test_the_pushed_repository_loads_in_peft_and_its_card_is_what_the_hub_reads(hub, trained, tiny_models):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hub.push(str(trained), "someone/toy-prompt", license="apache-2.0", revision="v1")
    assert ("create_branch", "someone/toy-prompt", "v1") in hub.calls
    repo = hub.cache / "models--someone--toy-prompt"
    snapshot = repo / "snapshots" / (repo / "refs" / "v1").read_text()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]))
    peft_model = PeftModel.from_pretrained(base, str(snapshot))
    embeddings = peft_model.prompt_encoder["default"].embedding.weight
    assert torch.equal(embeddings.detach(), load_prompt(trained).prompt)

    card = ModelCard.load(snapshot / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "peft"
    assert data["pipeline_tag"] == "text-generation"
    assert f"base_model:adapter:{tiny_models['llama']}" in data["tags"]
    [index] = data["model-index"]
    metadata = json.loads((snapshot / "promptvec.json").read_text())
    results = {(r["dataset"]["split"], m["type"]): (r, m) for r in index["results"] for m in r["metrics"]}
    expected = {(split, metric) for split in ("validation", "test") for metric in metadata[split]}
    assert set(results) == expected
    for split, metric in expected:
        result, measured = results[(split, metric)]
        assert measured["value"] == pytest.approx(metadata[split][metric])
        assert result["task"]["type"] == "text-classification"
        assert result["dataset"]["args"] == {k: metadata["evaluated_on"][split][k] for k in ("examples", "seed")}
    assert 'PeftModel.from_pretrained(base, "someone/toy-prompt")' in card.text  # loads it from where it went


def test_a_card_records_no_license_unless_the_owner_gives_one(hub, trained, tmp_path):
    push_prompt(str(trained), to_folder=tmp_path / "repo")
    from huggingface_hub import ModelCard

    assert "license" not in ModelCard.load(tmp_path / "repo" / "README.md").data.to_dict()
    assert torch.equal(load_prompt(tmp_path / "repo").prompt, load_prompt(trained).prompt)


def test_push_refuses_what_it_cannot_do_before_writing_anything(hub, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="'out/repo' is a local path|--to-folder"):
        push_prompt(str(trained), "./out/repo")
    with pytest.raises(ConfigError, match="exactly one"):
        push_prompt(str(trained))
    with pytest.raises(ConfigError, match="the Hub is offline"):
        push_prompt(str(trained), "someone/repo")
    assert hub.calls == [] and not list(hub.cache.iterdir())
    result = CliRunner().invoke(app, ["push", str(trained), "someone/repo"])
    assert result.exit_code == 2 and "HF_HUB_OFFLINE" in result.output and "Traceback" not in result.output


def test_an_uncached_repository_offline_gets_one_message(hub, tmp_path):
    with pytest.raises(CheckpointError, match="not in the Hub cache while the Hub is offline") as refused:
        load_prompt("someone/never-pushed")
    assert "unset HF_HUB_OFFLINE" in refused.value.hint
    result = CliRunner().invoke(app, ["eval", "--task", "sst2", "--prompt", "someone/never-pushed"])
    assert result.exit_code == 2 and "someone/never-pushed" in result.output and "Traceback" not in result.output
