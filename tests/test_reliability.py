"""Faults, bad inputs and hostile files across the library (RELIABILITY.md lists each one)."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptvec.errors import CheckpointError, PromptvecError, StorageError
from promptvec.io import append_jsonl, atomic_write_json, load_tensors, read_json, read_jsonl, save_tensors
from promptvec.peft_folder import load_prompt, save_prompt
from promptvec.store import StoreError, VectorStore
from promptvec.training.checkpoint import load_training_state, save_training_state
from promptvec.vectors import TaskPromptVector, VectorMeta
from tests.conftest import TASK_YAML, scale_loss, sentiment_rows, write_jsonl

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _vec(tensor: torch.Tensor, task: str = "t", fingerprint: str = "f" * 64) -> TaskPromptVector:
    return TaskPromptVector(tensor, VectorMeta(fingerprint, tensor.shape[0], tensor.shape[1], "m", task))


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".old")]


# ---- a full disk during a save -------------------------------------------------------------------
def _disk_full(monkeypatch) -> None:
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_full_disk_during_a_prompt_save_keeps_the_old_prompt(backbones, tmp_path, monkeypatch):
    b = backbones["llama"]
    old = torch.randn(3, b.dim)
    save_prompt(tmp_path / "p", old, b, {"task": "toy"})
    _disk_full(monkeypatch)
    with pytest.raises(StorageError, match="No space left.*previous version.*intact") as caught:
        save_prompt(tmp_path / "p", torch.randn(3, b.dim), b, {"task": "toy"})
    assert "free space" in str(caught.value)
    monkeypatch.undo()
    assert torch.equal(load_prompt(tmp_path / "p", b).prompt, old)
    assert _no_temp_files(tmp_path)


def test_full_disk_during_a_record_or_log_write(tmp_path, monkeypatch):
    atomic_write_json(tmp_path / "run.json", {"step": 1})
    append_jsonl(tmp_path / "log.jsonl", [{"step": 1}])
    _disk_full(monkeypatch)
    with pytest.raises(StorageError, match="run.json"):
        atomic_write_json(tmp_path / "run.json", {"step": 2})
    with pytest.raises(StorageError, match="log.jsonl"):
        append_jsonl(tmp_path / "log.jsonl", [{"step": 2}])
    monkeypatch.undo()
    assert read_json(tmp_path / "run.json") == {"step": 1}
    assert _no_temp_files(tmp_path)


def test_a_log_line_cut_by_a_crash_loses_only_itself(tmp_path):
    log = tmp_path / "log.jsonl"
    append_jsonl(log, [{"step": 1}])
    with open(log, "a") as fh:
        fh.write('{"step": 2, "lo')  # the process died here
    append_jsonl(log, [{"step": 3}])
    assert read_jsonl(log) == [{"step": 1}, {"step": 3}]


# ---- corrupted and hostile safetensors --------------------------------------------------------
def test_a_bit_flip_in_saved_values_is_caught_by_the_checksum(backbones, tmp_path):
    b = backbones["llama"]
    save_prompt(tmp_path / "p", torch.randn(3, b.dim), b, {})
    save_training_state(tmp_path / "state", {"weight": torch.randn(5, 5), "step": 3})
    for path in (tmp_path / "p" / "adapter_model.safetensors", tmp_path / "state" / "state.safetensors"):
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x10  # inside the tensor values: the layout stays valid
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_prompt(tmp_path / "p", b)
    with pytest.raises(CheckpointError, match="checksum"):
        load_training_state(tmp_path / "state")


def _header_file(path: Path, header: dict, payload: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    return path


@pytest.mark.parametrize("header, message", [
    ({"x": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 2**62]}}, "outside|invalid|size"),
    ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, "size|shape|bytes"),
    ({"x": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]}}, "dtype|malformed"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "shape|malformed|outside"),
    ({"x": "not an entry"}, "invalid|entry"),
])
def test_absurd_headers_are_rejected_before_any_allocation(tmp_path, header, message):
    import tracemalloc

    path = _header_file(tmp_path / "h.safetensors", header, b"\0" * 16)
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=message):
        load_tensors(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20  # nothing near the claimed sizes (up to exabytes) was allocated


def test_a_header_length_of_two_to_the_63_is_rejected(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63 - 1) + b"{}")
    with pytest.raises(CheckpointError, match="invalid safetensors header"):
        load_tensors(path)


@pytest.fixture(scope="module")
def valid_safetensors(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("st") / "v.safetensors"
    save_tensors(path, {"prompt_embeddings": torch.randn(3, 8), "other": torch.arange(6)})
    return path.read_bytes()


@PROPERTY
@given(data=st.data())
def test_truncated_or_flipped_safetensors_never_escape_as_other_errors(tmp_path, valid_safetensors, data):
    blob = bytearray(valid_safetensors)
    if data.draw(st.booleans(), "truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), "cut at")]
    for _ in range(data.draw(st.integers(0, 4), "flips")):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1), "at")] ^= data.draw(st.integers(1, 255), "mask")
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(blob))
    try:
        tensors, _ = load_tensors(path)
    except CheckpointError as exc:  # one promptvec error naming the file, with a fix
        assert str(path) in exc.message and exc.hint, str(exc)
    else:  # a flip inside names or values can leave a well-formed file: the checksums above catch those
        assert all(isinstance(t, torch.Tensor) for t in tensors.values())


# ---- bad YAML and data: one readable error, never a traceback ------------------------------------
_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=6)
_TASK = yaml.safe_load(TASK_YAML)


@pytest.mark.parametrize("text", ["?", "1: x\n", "null: 3\n"])
def test_yaml_keys_that_are_not_names_are_refused(tmp_path, text):
    """Found by the property test above: a bare `?` is a mapping with a null key (a TypeError before)."""
    from promptvec.errors import ConfigError, TaskError
    from promptvec.suites.schema import load_suite
    from promptvec.tasks import get_task

    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    for load, error in ((get_task, TaskError), (load_suite, ConfigError)):
        with pytest.raises(error, match="keys must be names"):
            load(str(path))


_TASK_BODIES = st.builds(
    lambda changes, removed: yaml.safe_dump({k: v for k, v in (_TASK | changes).items() if k not in removed}),
    st.dictionaries(st.sampled_from([*_TASK, "bogus", "label_column", "input_columns"]), _VALUES, max_size=3),
    st.sets(st.sampled_from(list(_TASK)), max_size=2))
_SUITE_BODIES = st.builds(
    lambda changes: yaml.safe_dump({"name": "s", "tasks": ["sst2"], "methods": [{"name": "pt"}]} | changes),
    st.dictionaries(st.sampled_from(["name", "backbone", "tasks", "shots", "seeds", "origins", "budget", "methods",
                                     "stats", "sources", "analyses", "bogus"]), _VALUES, max_size=3))


def _loaded_or_refused_readably(load, path: Path, text: str) -> None:
    """One fuzz per input kind: a near-valid body (a field changed, added or removed) or arbitrary
    text is either loaded or refused with one promptvec error that names the file and says how to fix it."""
    path.write_text(text, encoding="utf-8")
    try:
        load(str(path))
    except PromptvecError as exc:
        assert str(path) in exc.message, exc.message
        assert exc.hint, exc.message


@PROPERTY
@given(text=_TASK_BODIES | st.text(max_size=200))
def test_a_task_yaml_is_loaded_or_refused_naming_the_file_and_the_fix(tmp_path, text):
    from promptvec.tasks import get_task

    _loaded_or_refused_readably(get_task, tmp_path / "t.yaml", text)


@PROPERTY
@given(text=_SUITE_BODIES | st.text(max_size=200))
def test_a_suite_yaml_is_loaded_or_refused_naming_the_file_and_the_fix(tmp_path, text):
    from promptvec.suites.schema import load_suite

    _loaded_or_refused_readably(load_suite, tmp_path / "s.yaml", text)


@PROPERTY
@given(rows=st.lists(st.dictionaries(st.sampled_from(["text", "label", "extra"]),
                                     st.none() | st.integers() | st.text(max_size=10) | st.sampled_from(
                                         ["positive", "negative"]), max_size=3), min_size=1, max_size=6),
       junk=st.sampled_from(["", "{not json\n", "[1, 2]\n", "\ufeff\n"]))
def test_data_rows_are_loaded_or_refused_with_file_and_line(tmp_path, rows, junk):
    from promptvec.tasks import get_task, load_task_data

    folder = tmp_path / "task"
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / "validation.jsonl", sentiment_rows(4, 2))
    write_jsonl(folder / "test.jsonl", sentiment_rows(4, 3))
    train = write_jsonl(folder / "train.jsonl", rows)
    with open(train, "a", encoding="utf-8") as fh:
        fh.write(junk)
    (folder / "toy.yaml").write_text(TASK_YAML)
    try:
        load_task_data(get_task(str(folder / "toy.yaml")))
    except PromptvecError as exc:
        assert "train.jsonl" in str(exc)


def test_vectors_of_the_wrong_shape_dtype_or_model_are_refused(backbones, tmp_path):
    from promptvec.vectors.tpv import VectorMismatchError

    b = backbones["llama"]
    good = _vec(torch.randn(3, b.dim), fingerprint=b.fingerprint)
    good.save(tmp_path / "v.safetensors")
    with pytest.raises(VectorMismatchError, match="was made on model"):
        TaskPromptVector.load(tmp_path / "v.safetensors", backbones["gpt2"])
    with pytest.raises(VectorMismatchError, match="prompt length or model width"):
        good.apply_to(torch.randn(4, b.dim))
    tensors, metadata = load_tensors(tmp_path / "v.safetensors")
    for bad in ({k: v.to(torch.int64) for k, v in tensors.items()}, {k: v[0] for k, v in tensors.items()}):
        save_tensors(tmp_path / "bad.safetensors", bad, metadata)
        with pytest.raises(PromptvecError, match="float|matrix|shape|dtype"):
            TaskPromptVector.load(tmp_path / "bad.safetensors", b)


# ---- the store: locked by another process, many writers --------------------------------------------
_HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@pytest.mark.slow
def test_a_store_locked_by_another_process_gets_a_clear_error_then_works(tmp_path, monkeypatch):
    store = VectorStore(tmp_path / "s")
    store.add_vector(_vec(torch.ones(2, 4), "a"))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(store.index_path), "3"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    monkeypatch.setattr(VectorStore, "lock_timeout_s", 0.5)
    with pytest.raises(StoreError, match="locked by another process") as caught:
        store.add_vector(_vec(torch.zeros(2, 4), "b"))
    assert "rebuild" not in str(caught.value)
    holder.wait(timeout=30)
    store.add_vector(_vec(torch.zeros(2, 4), "b"))
    assert sorted(e.task for e in store.entries()) == ["a", "b"]


def _many_writes(root: str, worker: int, count: int) -> None:
    store = VectorStore(Path(root) / "store")
    for i in range(count):
        store.add_vector(_vec(torch.full((2, 4), float(worker * 1000 + i)), f"w{worker}"))
        atomic_write_json(Path(root) / "results.json", {"worker": worker, "i": i, "rows": list(range(50))})
        append_jsonl(Path(root) / "log.jsonl", [{"worker": worker, "i": i}])


def _read_while_written(root: str, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if (Path(root) / "results.json").exists():
            assert read_json(Path(root) / "results.json")["rows"] == list(range(50))


@pytest.mark.slow
def test_four_processes_writing_200_times_to_one_store_and_folder_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_many_writes, args=(str(tmp_path), w, 200)) for w in range(4)]
    reader = ctx.Process(target=_read_while_written, args=(str(tmp_path), 10.0))
    for p in [*writers, reader]:
        p.start()
    for p in [*writers, reader]:
        p.join(timeout=600)
        assert p.exitcode == 0
    entries = VectorStore(tmp_path / "store").entries()
    assert len(entries) == 800 and len({e.sha256 for e in entries}) == 800
    log = read_jsonl(tmp_path / "log.jsonl")
    assert sorted((r["worker"], r["i"]) for r in log) == [(w, i) for w in range(4) for i in range(200)]
    assert read_json(tmp_path / "results.json")["i"] == 199
    assert _no_temp_files(tmp_path)


# ---- numerical faults ------------------------------------------------------------------------------
def test_a_climbing_loss_is_reported_as_a_diverging_learning_rate(backbones, tiny_models, toy_task, tmp_path,
                                                                  monkeypatch):
    """A loss that climbs without becoming NaN (what too high a learning rate does to a real model; the
    tiny random model's loss cannot climb, so the climb is simulated) is reported in the record."""
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    config = TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=12, eval_every=3,
                         batch_size=4, lr=0.05, prompt_length=4, val_examples=8, test_examples=8)
    sane = train_prompt(config, tmp_path / "ok", backbone=backbones["llama"], progress=False).record
    assert [w["kind"] for w in sane["warnings"] if w["kind"] == "diverging"] == []

    backbone = backbones["llama"]
    scale_loss(monkeypatch, backbone, lambda n: 1.3 ** n)
    record = train_prompt(config, tmp_path / "r", backbone=backbone, progress=False).record
    diverging = [w for w in record["warnings"] if w["kind"] == "diverging"]
    assert len(diverging) == 1  # once, not at every evaluation
    assert "learning rate is probably too high" in diverging[0]["message"]
    assert read_json(tmp_path / "r" / "run.json")["warnings"] == record["warnings"]
