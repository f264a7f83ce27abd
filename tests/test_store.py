"""The vector store: entries, search, concurrency, corruption, PEFT exchange, legacy conversion."""

from __future__ import annotations

import os

import pytest
import torch

from promptvec.errors import CheckpointError
from promptvec.store import StoreError, VectorStore, convert_legacy, export_peft, import_peft
from promptvec.vectors import TaskPromptVector, VectorMeta


def _vec(task: str, direction: torch.Tensor, fingerprint: str = "f" * 64, rows: int = 3) -> TaskPromptVector:
    tensor = direction.expand(rows, -1).clone()
    return TaskPromptVector(tensor, VectorMeta(fingerprint, rows, tensor.shape[1], "m", task,
                                               {"seed": 0, "rows": rows}))


def test_add_get_list_search_remove(tmp_path):
    store = VectorStore(tmp_path / "s")
    x, y = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    a = store.add_vector(_vec("sst2", x), name="sst2-o0")
    store.add_vector(_vec("imdb", x + 0.1 * y))
    store.add_vector(_vec("trec", y))
    store.add_vector(_vec("other-model", x, fingerprint="g" * 64))
    assert store.add_vector(_vec("sst2", x), name="sst2-o0").sha256 == a.sha256  # same content: one entry
    assert len(store.entries()) == 4
    assert store.get(a.sha256[:8]).task == "sst2" and store.get("sst2-o0").sha256 == a.sha256
    query, task = store.query_vector("sst2")
    ranked = store.search(query, top=5, exclude_task=task)
    assert [e.task for e, _ in ranked] == ["imdb", "trec"]  # nearest first; other model excluded
    assert ranked[0][1] > 0.99 and abs(ranked[1][1]) < 1e-6
    store.remove("sst2-o0")
    with pytest.raises(StoreError, match="no store entry"):
        store.get("sst2-o0")


def test_corrupted_object_is_detected(tmp_path):
    store = VectorStore(tmp_path / "s")
    entry = store.add_vector(_vec("sst2", torch.tensor([1.0, 2.0])))
    path = next((tmp_path / "s" / "objects").glob("*/*.safetensors"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        store.load_vector(entry.short_id)


def test_damaged_index_is_reported_and_rebuilt(tmp_path):
    store = VectorStore(tmp_path / "s")
    store.add_vector(_vec("sst2", torch.tensor([1.0, 2.0])), name="keep-me")
    store.add_vector(_vec("trec", torch.tensor([2.0, 1.0])))
    for suffix in ("-wal", "-shm"):
        (tmp_path / "s" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    (tmp_path / "s" / "index.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="damaged"):
        VectorStore(tmp_path / "s").entries()
    assert VectorStore.repair(tmp_path / "s") == 2
    assert VectorStore(tmp_path / "s").get("keep-me").task == "sst2"


@pytest.mark.parametrize("name, task_type", [("llama", "CAUSAL_LM"), ("t5", "SEQ_2_SEQ_LM")])
def test_peft_import_export_round_trip(tmp_path, backbones, tiny_models, name, task_type):
    from peft import PeftModel, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if name == "t5" else AutoModelForCausalLM
    peft_model = get_peft_model(auto.from_pretrained(tiny_models[name]),
                                PromptTuningConfig(task_type=task_type, num_virtual_tokens=4))
    peft_model.save_pretrained(tmp_path / "adapter")
    original = peft_model.get_prompt_embedding_to_save("default")
    store = VectorStore(tmp_path / "s")
    entry = import_peft(store, tmp_path / "adapter", backbone=backbones[name], task="toy")
    assert entry.rows == 4
    prompt, _ = store.load_prompt(entry.short_id)
    assert torch.equal(prompt, original[:4].float())  # encoder half for seq2seq [2R, d]
    export_peft(store, entry.short_id, tmp_path / "exported")
    reloaded = PeftModel.from_pretrained(auto.from_pretrained(tiny_models[name]), str(tmp_path / "exported"))
    assert torch.equal(reloaded.get_prompt_embedding_to_save("default"), original)  # layout kept ([2R, d] for T5)


def test_import_without_model_identity_is_refused(tmp_path, tiny_models):
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]),
                                PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    peft_model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(CheckpointError, match="pass --model"):
        import_peft(VectorStore(tmp_path / "s"), tmp_path / "adapter")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/promptvec-pwned",))


def test_convert_legacy_files_and_refuse_code(tmp_path):
    torch.save(torch.randn(5, 8), tmp_path / "raw.bin")
    torch.save({"prompt_embeddings": torch.randn(5, 8)}, tmp_path / "dict.pt")
    for source in ("raw.bin", "dict.pt"):
        target = convert_legacy(tmp_path / source, tmp_path / source.replace(".", "_"))
        from promptvec.peft_folder import load_prompt

        assert load_prompt(target).prompt.shape == (5, 8)
    torch.save({"prompt_embeddings": _Evil()}, tmp_path / "evil.bin")
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        convert_legacy(tmp_path / "evil.bin", tmp_path / "evil")
    assert not os.path.exists("/tmp/promptvec-pwned")


def test_push_pull_through_a_local_repository(tmp_path, monkeypatch):
    from promptvec.store import pull, push

    source = VectorStore(tmp_path / "a")
    e1 = source.add_vector(_vec("sst2", torch.tensor([1.0, 2.0])), name="sst2-v")
    e2 = source.add_vector(_vec("trec", torch.tensor([2.0, -1.0])))
    repo = tmp_path / "repo"
    repo.mkdir()
    assert push(source, [e1.short_id, "sst2-v", e2.short_id], str(repo)) == 3
    target = VectorStore(tmp_path / "b")
    pulled = pull(target, str(repo))
    assert {e.sha256 for e in pulled} == {e1.sha256, e2.sha256}
    assert target.get("sst2-v").sha256 == e1.sha256
    assert torch.equal(target.load_vector("sst2-v").tensor, source.load_vector("sst2-v").tensor)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StoreError, match="Hub is offline"):
        pull(target, "someone/some-repo")
    with pytest.raises(StoreError, match="Hub is offline"):
        push(source, ["sst2-v"], "someone/some-repo")


@pytest.mark.parametrize("bad_file, message", [
    ("../outside.safetensors", "unsafe path"),
    ("/etc/passwd", "unsafe path"),
    ("objects/prompt.bin", "pickle"),
    ("objects/link.safetensors", "link"),
])
def test_pull_refuses_hostile_repositories(tmp_path, bad_file, message):
    import json

    from promptvec.store import pull

    repo = tmp_path / "repo"
    (repo / "objects").mkdir(parents=True)
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    (repo / "objects" / "prompt.bin").write_bytes(b"x")
    (repo / "objects" / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    good = VectorStore(tmp_path / "good")
    entry = good.add_vector(_vec("sst2", torch.tensor([1.0, 2.0])))
    from promptvec.store import push

    push(good, [entry.short_id], str(repo))  # one valid entry first: it must not be imported either
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["entries"].append({"file": bad_file, "sha256": "0"})
    (repo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        pull(VectorStore(tmp_path / "s"), str(repo))
    assert VectorStore(tmp_path / "s").entries() == []


def test_pull_detects_a_tampered_object(tmp_path):
    from promptvec.store import pull, push

    source = VectorStore(tmp_path / "a")
    entry = source.add_vector(_vec("sst2", torch.tensor([1.0, 2.0])))
    repo = tmp_path / "repo"
    repo.mkdir()
    push(source, [entry.short_id], str(repo))
    obj = next((repo / "objects").glob("*.safetensors"))
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01
    obj.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its manifest digest"):
        pull(VectorStore(tmp_path / "b"), str(repo))
