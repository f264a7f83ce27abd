"""The store under adversarial use (issue: reliability, round two): references that look like SQL
patterns, a removal killed half-way, a full disk during a write and during a rebuild, a rebuild with a
concurrent writer, and a rebuild of a store that does not exist. Each test failed before the fix."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import torch

from promptvec.store import StoreError, VectorStore
from promptvec.vectors import TaskPromptVector, VectorMeta


def _vec(task: str, value: float) -> TaskPromptVector:
    tensor = torch.full((2, 3), value)
    return TaskPromptVector(tensor, VectorMeta("f" * 64, 2, 3, "m", task, {"seed": 0, "rows": 2}))


def test_sql_pattern_characters_in_a_reference_match_nothing(tmp_path):
    store = VectorStore(tmp_path / "s")
    kept = [store.add_vector(_vec(t, v)) for t, v in (("sst2", 1.0), ("trec", 2.0))]
    for ref in ("______", "%%%%%%", "%", "_" * 64, kept[0].sha256[:5] + "%"):
        with pytest.raises(StoreError, match="no store entry"):
            store.remove(ref)
    assert {e.sha256 for e in store.entries()} == {e.sha256 for e in kept}  # nothing was removed
    assert store.get(kept[1].sha256[:6].upper()).task == "trec"  # a real id prefix, in any case, still works


def test_an_ambiguous_reference_is_refused_listing_the_matches(tmp_path):
    store = VectorStore(tmp_path / "s")
    a = store.add_vector(_vec("sst2", 1.0), name="dup")
    b = store.add_vector(_vec("trec", 2.0), name="dup")
    with pytest.raises(StoreError, match="matches 2 entries") as refused:
        store.remove("dup")
    assert a.short_id in refused.value.message and b.short_id in refused.value.message
    assert len(store.entries()) == 2


@pytest.mark.slow
def test_a_removal_killed_half_way_is_not_undone_by_a_rebuild(tmp_path):
    """kill -9 between the two steps of `store rm` (a real process): the entry must stay removed after
    `store rebuild`, and `store rm` again finishes it."""
    store = VectorStore(tmp_path / "s")
    gone = store.add_vector(_vec("sst2", 1.0), name="remove-me")
    kept = store.add_vector(_vec("trec", 2.0), name="keep-me")
    code = "import sys; from promptvec.store import VectorStore; VectorStore(sys.argv[1]).remove('remove-me')"
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True,
                            env={**os.environ, "PROMPTVEC_FAULT": "store.remove.between"})
    assert killed.returncode == -9
    assert VectorStore.repair(tmp_path / "s") == 1
    assert [e.sha256 for e in VectorStore(tmp_path / "s").entries()] == [kept.sha256]
    with pytest.raises(StoreError, match="no store entry"):
        VectorStore(tmp_path / "s").get(gone.sha256)


@pytest.mark.slow
def test_removal_killed_half_way_then_removed_again(tmp_path):
    store = VectorStore(tmp_path / "s")
    store.add_vector(_vec("sst2", 1.0), name="remove-me")
    code = "import sys; from promptvec.store import VectorStore; VectorStore(sys.argv[1]).remove('remove-me')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True,
                   env={**os.environ, "PROMPTVEC_FAULT": "store.remove.between"})
    VectorStore(tmp_path / "s").remove("remove-me")  # the row whose file is gone: rm finishes the job
    assert VectorStore(tmp_path / "s").entries() == []


class _FullDisk:
    """A sqlite3 connection whose writes fail as on a full disk."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "COMMIT")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def executemany(self, sql, *args):
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_full_disk_is_reported_as_such_and_a_rebuild_keeps_the_old_index(tmp_path, monkeypatch):
    store = VectorStore(tmp_path / "s")
    first = store.add_vector(_vec("sst2", 1.0), name="first")
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real_connect(*a, **k)))
    with pytest.raises(StoreError, match="disk is full") as add_failed:
        store.add_vector(_vec("trec", 2.0))
    assert "rebuild" not in add_failed.value.hint.replace("do not rebuild", "")
    with pytest.raises(StoreError, match="disk is full"):
        store.rebuild()
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert [e.sha256 for e in store.entries()] == [first.sha256]  # the old index is whole
    assert not list((tmp_path / "s").glob("*.rebuild"))


def test_an_add_during_a_rebuild_waits_and_is_kept(tmp_path, monkeypatch):
    store = VectorStore(tmp_path / "s")
    for i in range(3):
        store.add_vector(_vec(f"t{i}", float(i + 1)))
    import promptvec.store.store as module

    slow = module.load_tensors

    def load_slowly(path):
        time.sleep(0.1)
        return slow(path)

    monkeypatch.setattr(module, "load_tensors", load_slowly)
    rebuilding = threading.Thread(target=store.rebuild)
    rebuilding.start()
    time.sleep(0.05)  # the rebuild holds the writer lock and scans the objects
    added = VectorStore(tmp_path / "s").add_vector(_vec("late", 9.0))
    rebuilding.join()
    assert added.task == "late"
    assert "late" in {e.task for e in VectorStore(tmp_path / "s").entries()}


def test_rebuild_of_a_store_that_does_not_exist_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        VectorStore.repair(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def _user_folder(path):
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    (path / "sub").mkdir()
    (path / "sub" / "more.txt").write_text("also mine")
    return path


def test_export_and_vector_apply_never_delete_what_promptvec_did_not_write(backbones, tiny_models, tmp_path):
    """`store export REF DIR` and `vector apply --out DIR` used to replace DIR whole (rc 0), deleting the
    user's files; an existing file was replaced by a folder. Now: refused unless --overwrite, which
    says what it replaces; rewriting a prompt folder promptvec wrote is fine."""
    from typer.testing import CliRunner

    from promptvec.cli import app
    from promptvec.peft_folder import save_prompt
    from promptvec.store import import_peft

    runner = CliRunner()
    backbone = backbones["llama"]
    save_prompt(tmp_path / "p", torch.randn(3, backbone.dim), backbone, {"task": "toy"})
    store = VectorStore(tmp_path / "s")
    entry = import_peft(store, tmp_path / "p", backbone=backbone, name="p")
    store.add_vector(_vec_for(backbone), name="tau")
    folder = _user_folder(tmp_path / "mine")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    base = ["--store", str(tmp_path / "s")]
    for target in (folder, a_file):
        for command in (["store", "export", entry.short_id, str(target), *base],
                        ["vector", "apply", "tau", "--out", str(target), "--model", str(tiny_models["llama"]), *base]):
            result = runner.invoke(app, command)
            assert result.exit_code == 2 and "--overwrite" in result.output and "Traceback" not in result.output
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "sub" / "more.txt").is_file()
    assert a_file.read_text() == "keep"
    again = runner.invoke(app, ["store", "export", entry.short_id, str(tmp_path / "p"), *base])
    assert again.exit_code == 0, again.output  # a folder promptvec wrote is rewritten without asking
    forced = runner.invoke(app, ["store", "export", entry.short_id, str(folder), "--overwrite", *base])
    assert forced.exit_code == 0 and "notes.txt" in forced.output and "sub/" in forced.output, forced.output
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "notes.txt").exists()


def _vec_for(backbone) -> TaskPromptVector:
    tensor = torch.randn(3, backbone.dim) * 0.01
    return TaskPromptVector(tensor, VectorMeta(backbone.fingerprint, 3, backbone.dim, backbone.name, "toy",
                                               {"seed": 0, "rows": 3}))
