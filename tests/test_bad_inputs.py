"""Bad input from files and options — text that is not UTF-8, output folders that cannot be written,
option values out of range, damaged prompt folders and safetensors headers, hostile store pulls,
damaged results, exploding templates: each gets one promptvec message (exit code 2) or is refused,
never a traceback or a silent acceptance."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import CheckpointError
from promptvec.store import VectorStore, pull, push
from promptvec.store.store import content_digest
from promptvec.vectors import TaskPromptVector, VectorMeta

runner = CliRunner()


def _refused(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"{args}: {result.exception!r}"
    assert result.exit_code == 2 and message in result.output, (args, result.output)


@pytest.fixture(scope="module")
def trained(tiny_models, toy_task, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    model = str(tiny_models["llama"])
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(root / "run"),
                                 "--steps", "2", "--eval-every", "2", "--batch-size", "4", "--prompt-length", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["vector", "create", str(root / "run"), str(root / "v.safetensors"), "--model", model])
    assert result.exit_code == 0, result.output
    (root / "a-file").write_text("not a folder")
    return {"root": root, "run": root / "run", "vector": root / "v.safetensors", "file": root / "a-file",
            "model": Path(model), "task": Path(toy_task)}


def test_text_files_that_are_not_utf8(trained, tmp_path):
    task = yaml.safe_load(trained["task"].read_text())
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_bytes('{"text": "caf\xe9 great", "label": "positive"}\n'.encode("latin-1"))
    task["data_files"] = {"train": "train.jsonl", "test": "test.jsonl"}
    (tmp_path / "latin.yaml").write_text(yaml.safe_dump(task))
    _refused(["eval", "--task", str(tmp_path / "latin.yaml"), "--model", str(trained["model"])], "not UTF-8 text")
    (tmp_path / "in.jsonl").write_bytes('{"text": "x"}\n'.encode("utf-16"))
    (tmp_path / "in.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    for name in ("in.jsonl", "in.csv"):
        _refused(["predict", "--prompt", str(trained["run"]), "--input", str(tmp_path / name)], "not UTF-8 text")


def test_output_folders_that_cannot_be_folders(trained, tiny_suite_path):
    file = trained["file"]
    base = ["--task", str(trained["task"]), "--model", str(trained["model"]), "--steps", "1"]
    _refused(["train", *base, "--out", str(file)], "is a file, not a folder")
    _refused(["train", *base, "--out", str(file / "sub")], "which is a file")
    _refused(["experiment", "run", str(tiny_suite_path), "--out", str(file)], "is a file, not a folder")
    _refused(["store", "list", "--store", str(file)], "which is a file")
    from promptvec.suites.schema import SuiteSpec

    suite_folder = tiny_suite_path.parent / "done"
    suite_folder.mkdir()
    suite = SuiteSpec(name="s", tasks=["sst2"], methods=[{"name": "zero", "label": "none", "settings":
                                                          {"prompt": "none"}}], stats={"baseline": "none"})
    (suite_folder / "suite.json").write_text(json.dumps(suite.model_dump(), default=str))
    _refused(["report", str(suite_folder), "--out", str(file)], "is a file, not a folder")


def test_read_only_output_folders(trained, tmp_path, monkeypatch):
    """A folder the user may not write to (simulated: the tests run as root, who may write anywhere)."""
    import os

    real_access = os.access
    locked = tmp_path / "read-only"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (Path(path) == locked and mode & os.W_OK)
                        and real_access(path, mode))
    base = ["--task", str(trained["task"]), "--model", str(trained["model"]), "--steps", "1"]
    _refused(["train", *base, "--out", str(locked)], "is not writable")


@pytest.fixture
def tiny_suite_path(tmp_path, tiny_models, toy_task) -> Path:
    from tests.conftest import tiny_suite_file

    return tiny_suite_file(tmp_path, tiny_models, toy_task)


def test_option_values_checked_at_the_boundary(trained):
    store = ["--store", str(trained["root"] / "store")]
    vector = str(trained["vector"])
    _refused(["predict", "--prompt", str(trained["run"]), "--batch-size", "0", "hi"], "--batch-size")
    _refused(["vector", "combine", vector, vector, "--out", str(trained["root"] / "s.safetensors"), "--weights",
              "a,b"], "must be comma-separated numbers")
    _refused(["vector", "combine", vector, vector, "--out", str(trained["root"] / "s.safetensors"), "--weights",
              "1"], "needs 2 finite numbers")
    _refused(["store", "list", "--kind", "bogus", *store], "unknown --kind 'bogus'")
    _refused(["store", "search", "--like", vector, "--measure", "bogus", *store], "unknown --measure 'bogus'")
    _refused(["store", "search", "--like", vector, "--top", "-1", *store], "--top")
    for scale, message in (("nan", "not a finite number"), ("1e39", "NaN or infinite values")):
        out = trained["root"] / f"applied-{scale}"
        _refused(["vector", "apply", vector, "--out", str(out), "--scale", scale, "--model", str(trained["model"])],
                 message)
        assert not out.exists()  # nothing written


def _variant(trained, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(trained["run"] / "prompt", folder)
    return folder


def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _set_weights(folder: Path, tensor: torch.Tensor) -> None:
    save_file({"prompt_embeddings": tensor}, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    _edit_json(folder / "promptvec.json", lambda m: {k: v for k, v in m.items() if k != "weights_sha256"})


@pytest.mark.slow
@pytest.mark.parametrize(("name", "damage", "message"), [
    ("config-list", lambda f: (f / "adapter_config.json").write_text("[1, 2]"), "must hold a JSON object"),
    ("rows-four", lambda f: _edit_json(f / "adapter_config.json", lambda c: {**c, "num_virtual_tokens": "four"}),
     "'num_virtual_tokens' must be a positive integer"),
    ("rows-negative", lambda f: _edit_json(f / "adapter_config.json", lambda c: {**c, "num_virtual_tokens": -3}),
     "'num_virtual_tokens' must be a positive integer"),
    ("meta-list", lambda f: (f / "promptvec.json").write_text("[1]"), "must hold a JSON object"),
    ("meta-not-json", lambda f: (f / "promptvec.json").write_text("{nope"), "is not valid JSON"),
    ("fingerprint-int", lambda f: _edit_json(f / "promptvec.json", lambda m: {**m, "model_fingerprint": 5}),
     "'model_fingerprint' has the wrong type"),
    ("nan", lambda f: _set_weights(f, torch.full((3, 32), float("nan"))), "NaN or infinite"),
    ("integers", lambda f: _set_weights(f, torch.ones((3, 32), dtype=torch.int64)), "floating point"),
    ("zero-rows", lambda f: _set_weights(f, torch.ones((0, 32))), "no rows"),
    ("shape-lies", lambda f: (_set_weights(f, torch.ones((3, 32))),
                              _edit_json(f / "adapter_config.json", lambda c: {**c, "num_virtual_tokens": 2})),
     "the config says 2"),
])
def test_damaged_prompt_folders_are_refused_by_every_reader(trained, tmp_path, name, damage, message):
    folder = _variant(trained, tmp_path, name)
    damage(folder)
    model = str(trained["model"])
    _refused(["eval", "--task", str(trained["task"]), "--prompt", str(folder), "--model", model, "--examples", "2"],
             message)
    _refused(["store", "import", str(folder), "--model", model, "--store", str(tmp_path / "store")], message)
    assert VectorStore(tmp_path / "store").entries() == []


@pytest.mark.parametrize("offsets", [["0", "10"], None])
def test_safetensors_headers_with_non_integer_offsets(trained, tmp_path, offsets):
    raw = trained["vector"].read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8: 8 + size])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = offsets
    encoded = json.dumps(header).encode()
    path = tmp_path / "v.safetensors"
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size:])
    _refused(["vector", "similarity", str(path), str(path)], "malformed header entry")


def _repo_with(tmp_path: Path, tensors: dict, metadata: dict, kind: str | None = None) -> Path:
    """A local store repository holding one crafted object (its digest made to match)."""
    repo = tmp_path / "repo"
    (repo / "objects").mkdir(parents=True)
    sha = content_digest(tensors, metadata)
    save_file(tensors, str(repo / "objects" / f"{sha}.safetensors"), metadata=metadata)
    entry = {"file": f"objects/{sha}.safetensors", "sha256": sha, **({"kind": kind} if kind else {})}
    (repo / "manifest.json").write_text(json.dumps({"entries": [entry]}))
    return repo


def _vector_metadata(meta) -> dict:
    return {"format": "promptvec.tpv.v1", "promptvec": json.dumps(meta), "store_name": ""}


@pytest.mark.parametrize(("case", "message"), [
    ("meta-list", "metadata must be a mapping"),
    ("meta-empty", "names no model fingerprint"),
    ("rows-two", "'rows' must be a positive integer"),
    ("nan", "NaN or infinite"),
    ("integers", "floating point"),
    ("shape-lies", "has 3 rows but its metadata says 2"),
    ("kind-lies", "the manifest says 'prompt'"),
])
def test_pull_validates_every_object_before_adding_any(tmp_path, case, message):
    from promptvec.vectors.tpv import FORMAT, VECTOR_KEY

    meta = {"model_fingerprint": "f" * 64, "rows": 3, "dim": 4, "model": "m", "task": "t", "origin": None}
    tensor = torch.ones(3, 4)
    if case == "meta-list":
        meta = []
    elif case == "meta-empty":
        meta = {}
    elif case == "rows-two":
        meta = {**meta, "rows": "two"}
    elif case == "nan":
        tensor = torch.full((3, 4), float("nan"))
    elif case == "integers":
        tensor = torch.ones(3, 4, dtype=torch.int32)
    elif case == "shape-lies":
        meta = {**meta, "rows": 2}
    metadata = {**_vector_metadata(meta), "format": FORMAT}
    repo = _repo_with(tmp_path, {VECTOR_KEY: tensor}, metadata, kind="prompt" if case == "kind-lies" else "vector")
    with pytest.raises(CheckpointError, match=message):
        pull(VectorStore(tmp_path / "s"), str(repo))
    assert VectorStore(tmp_path / "s").entries() == []


@pytest.mark.parametrize("entry", ["objects/x.safetensors", None, 5])
def test_pull_manifest_entries_that_are_not_objects(tmp_path, entry):
    source = VectorStore(tmp_path / "a")
    tensor = torch.ones(2, 3)
    added = source.add_vector(TaskPromptVector(tensor, VectorMeta("f" * 64, 2, 3, "m", "t", {"seed": 0})))
    repo = tmp_path / "repo"
    repo.mkdir()
    push(source, [added.short_id], str(repo))
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["entries"].append(entry)
    (repo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="is not an object naming a file"):
        pull(VectorStore(tmp_path / "s"), str(repo))
    assert VectorStore(tmp_path / "s").entries() == []


def test_report_on_damaged_results_and_suite_files(tmp_path):
    from promptvec.experiments.report import build_report
    from promptvec.suites.schema import SuiteSpec

    suite = SuiteSpec(name="s", tasks=["sst2"], methods=[{"name": "zero", "label": "none", "settings":
                                                          {"prompt": "none"}}], stats={"baseline": "none"})
    row = {"label": "none", "task": "sst2", "metrics": {"acc": 0.5}, "run_id": "none/sst2/0shot/o--s-", "shots": 0,
           "method": "zero", "seed": None, "origin": None}
    for name, suite_json, rows, message in (
            ("cut", suite.model_dump(), json.dumps(row) + "\n" + json.dumps(row)[:30], ":2: not a JSON row"),
            ("no-metrics", suite.model_dump(), json.dumps({k: v for k, v in row.items() if k != "metrics"}),
             "the row lacks ['metrics']"),
            ("unknown-key", {**suite.model_dump(), "bogus": 1}, json.dumps(row), "'bogus': Extra inputs")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "suite.json").write_text(json.dumps(suite_json, default=str))
        (folder / "results.jsonl").write_text(rows + "\n")
        _refused(["report", str(folder)], message)
        with pytest.raises(Exception, match="rewrites results.jsonl|restore the file|re-run"):
            build_report(folder)


@pytest.mark.slow
@pytest.mark.parametrize(("template", "message"), [
    ("{{ text * 100000000000 }}", "a repetition longer than"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}", "a range of more than"),
    ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", "took more than"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "something task templates may not do"),
    ("{{ 2 ** 100000 }}", "a power above"),
])
def test_templates_that_explode_or_escape_are_stopped(trained, tmp_path, template, message):
    task = yaml.safe_load(trained["task"].read_text())
    task["data_files"] = {k: str(trained["task"].parent / v) for k, v in task["data_files"].items()}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**task, "doc_to_text": template}))
    _refused(["eval", "--task", str(path), "--model", str(trained["model"]), "--examples", "2"], message)


def test_identical_verbalizations_and_a_csv_row_missing_a_column(trained, tmp_path):
    task = yaml.safe_load(trained["task"].read_text())
    task["data_files"] = {k: str(trained["task"].parent / v) for k, v in task["data_files"].items()}
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump({**task, "doc_to_choice": ["good", "good"]}))
    _refused(["eval", "--task", str(tmp_path / "dup.yaml"), "--model", str(trained["model"])], "repeat ['good']")
    (tmp_path / "train.csv").write_text("text,label\ngood film,positive\nbad film\n")
    csv_task = {**task, "data_files": {"train": "train.csv", "test": "train.csv"}}
    (tmp_path / "csv.yaml").write_text(yaml.safe_dump(csv_task))
    _refused(["eval", "--task", str(tmp_path / "csv.yaml"), "--model", str(trained["model"])],
             "train.csv:3: no value for column(s) ['label']")
