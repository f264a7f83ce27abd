"""Suites with source prompts: sources trained first and stored, analyses of the sources, and the
transfer-init methods (random, tpv-init, single-source, multi-source) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptvec.errors import ConfigError, DataError
from promptvec.experiments.analyses import load_results
from promptvec.experiments.cost import CostModel
from promptvec.experiments.report import build_report
from promptvec.experiments.runner import run_suite
from promptvec.peft_folder import PROMPT_DIR
from promptvec.store import VectorStore
from promptvec.suites.plan import expand, run_dir, source_run
from promptvec.suites.schema import load_suite
from promptvec.vectors import Origin, TaskPromptVector


def _suite(tmp_path: Path, tiny_models, tasks, **overrides) -> Path:
    body = {
        "name": "transfer-tiny",
        "backbone": {"model": str(tiny_models["llama"])},
        "tasks": [tasks["target"]],
        "shots": [0, 8],
        "seeds": [0],
        "origins": [0, 1],
        "budget": {"steps": 3, "batch_size": 4, "eval_every": 3, "val_examples": 8, "test_examples": 12},
        "sources": {"tasks": [tasks["src_a"], tasks["src_b"]], "shots": 16, "steps": 3, "multi_task": True,
                    "settings": {"prompt_length": 3, "lr": 0.05},
                    "targets": {tasks["target"]: [tasks["src_a"], tasks["src_b"]]}},
        "analyses": {"similarity": {"measures": ["cosine", "dtvg"]}, "cross-origin": {},
                     "combinations": {"pairs": [[tasks["src_a"], tasks["src_b"]]], "val_examples": 4}},
        "methods": [{"name": "random", "settings": {"prompt_length": 3, "lr": 0.05}},
                    {"name": "tpv-init", "settings": {"prompt_length": 3, "lr": 0.05}},
                    {"name": "tpv-init", "label": "tpv-grid", "settings": {"prompt_length": 3, "scale_grid": True}},
                    {"name": "single-source", "settings": {"prompt_length": 3, "lr": 0.05}},
                    {"name": "multi-source", "settings": {"prompt_length": 3, "lr": 0.05}}],
        "stats": {"baseline": "random"},
    } | overrides
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.slow
def test_sources_first_then_analyses_then_targets(tmp_path, tiny_models, toy_tasks, backbones):
    suite = load_suite(_suite(tmp_path, tiny_models, toy_tasks))
    ids = [r.run_id for r in expand(suite)]
    assert ids[:6] == ["source/src_a/16shot/o0-s0", "source/src_a/16shot/o1-s0", "source/src_b/16shot/o0-s0",
                       "source/src_b/16shot/o1-s0", "source/src_a+src_b/16shot/o0-s0",
                       "source/src_a+src_b/16shot/o1-s0"]
    assert "tpv-init/target/0shot/o0-s-" in ids and "tpv-init/target/8shot/o1-s0" in ids
    out = tmp_path / "out"
    outcome = run_suite(suite, out, progress=False, log=lambda m: None)
    assert outcome.completed == len(ids)
    backbone = backbones["llama"]

    # sources choose among trained checkpoints only, so their vectors are never zero
    a0 = run_dir(out, source_run(suite, toy_tasks["src_a"], 0)) / PROMPT_DIR
    b0 = run_dir(out, source_run(suite, toy_tasks["src_b"], 0)) / PROMPT_DIR
    tau_a, tau_b = (TaskPromptVector.from_checkpoint(p, backbone) for p in (a0, b0))
    assert json.loads((a0.parent / "run.json").read_text())["best"]["step"] > 0
    assert tau_a.norm() > 0
    # a multi-task source trained on both tasks
    multi = json.loads((run_dir(out, source_run(suite, f"{toy_tasks['src_a']}+{toy_tasks['src_b']}", 0))
                        / "run.json").read_text())
    assert {"src_a/acc", "src_b/acc", "mean"} <= set(multi["test"]["metrics"])

    # tpv-init at 0 shots evaluates exactly θ0 + (τa + τb); single-source = the first source's prompt
    origin = Origin.sample(backbone, 3, 0)
    expected = (tau_a + tau_b).apply_to(origin, 1.0, backbone)
    record = json.loads((out / "runs/tpv-init/target/0shot/o0-s-/run.json").read_text())
    assert record["config"]["init"] == "tpv" and record["config"]["scale"] == 1.0
    from promptvec.evaluation import evaluate
    from promptvec.tasks import get_task, load_task_data, subsample

    data = load_task_data(get_task(toy_tasks["target"]))
    direct = evaluate(backbone, data.spec, subsample(data.test, 12, 1234), expected).metrics["acc"]
    assert record["test"]["metrics"]["acc"] == pytest.approx(direct)
    grid = json.loads((out / "runs/tpv-grid/target/0shot/o1-s-/run.json").read_text())["config"]
    assert len(grid["scale_curve"]) == 21 and grid["scale"] == float(max(
        grid["scale_curve"], key=lambda lam: (grid["scale_curve"][lam], -float(lam))))
    single = json.loads((out / "runs/single-source/target/8shot/o0-s0/run.json").read_text())
    assert single["init"]["sources"] == [toy_tasks["src_a"]]

    # stored: a prompt and a vector per source run
    store = VectorStore(out / "store")
    assert len(store.entries(kind="vector")) == 6 and len(store.entries(kind="prompt")) == 6

    # analyses
    sim = load_results(out, "similarity")
    assert set(sim["matrices"]) == {"cosine", "dtvg"} and len(sim["matrices"]["cosine"]["tpv"]) == 2
    cross = load_results(out, "cross-origin")
    assert len(cross) == 2 and all(len(row["mixed"]) == 2 for row in cross)
    combos = load_results(out, "combinations")
    assert len(combos) == 1 and len(combos[0]["validation_curve"]) == 21

    report = build_report(out)
    text = (report / "report.md").read_text()
    for heading in ("Source prompts", "Task similarity", "Cross-origin transfer", "Combinations"):
        assert heading in text
    assert (report / "similarity_tpv_cosine.png").is_file()
    assert (report / "source_validation_curves.png").is_file()  # did the sources converge?
    assert "Validation score of every source run over its training steps" in text
    # the similarity analysis measured ‖τ‖: the source table shows it (a suite without it has no such column)
    source_rows = [line for line in text.splitlines() if line.split("|")[1:2] == [f" {toy_tasks['src_a']} "]]
    assert "‖τ‖ = norm of the task prompt vector" in text and source_rows and source_rows[0].count("|") == 6

    # a second run does nothing
    assert run_suite(suite, out, progress=False, log=lambda m: None).completed == 0


@pytest.mark.parametrize("change, message", [
    ({"targets": "self"}, "its own sources"),
    ({"targets": "missing"}, "no entry in sources.targets"),
    ({"multi_task": False}, "sources.multi_task"),
])
def test_bad_transfer_suites(tmp_path, tiny_models, toy_tasks, change, message):
    path = _suite(tmp_path, tiny_models, toy_tasks)
    body = yaml.safe_load(path.read_text())
    if change.get("targets") == "self":
        body["sources"]["targets"] = {toy_tasks["target"]: [toy_tasks["target"]]}
        body["sources"]["tasks"].append(toy_tasks["target"])
    elif change.get("targets") == "missing":
        body["sources"]["targets"] = {}
    else:
        body["sources"].update(change)
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=message):
        load_suite(path)


def test_a_source_library_trains_each_source_once_across_suites(tmp_path, tiny_models, toy_tasks, monkeypatch):
    """Suite A trains its sources and adds them to the library; suite B (other name, other methods,
    other target steps, same sources) copies them instead of training; a source with other settings
    is trained anew."""
    from promptvec.training import trainer as trainer_module

    library = tmp_path / "library"
    trained = []
    original = trainer_module.Trainer.train

    def counting(self, *args, **kwargs):
        trained.append(self.task_name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "train", counting)
    small = {"analyses": {}, "origins": [0], "shots": [0],
             "methods": [{"name": "tpv-init", "settings": {"prompt_length": 3}}], "stats": {}}
    body = yaml.safe_load(_suite(tmp_path, tiny_models, toy_tasks).read_text()) | small
    body["sources"] = {**body["sources"], "multi_task": False, "library": str(library)}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(body | {"name": "suite-a"}))
    run_suite(load_suite(tmp_path / "a.yaml"), tmp_path / "a", progress=False, log=lambda m: None)
    assert sorted(trained) == ["src_a", "src_b"]
    assert len(list(library.glob("*/*/run/run.json"))) == 2
    assert not list(library.rglob(".promptvec.lock"))  # a process's run lock is not part of the library

    trained.clear()
    messages = []
    b = body | {"name": "suite-b", "methods": [{"name": "single-source", "settings": {"prompt_length": 3}}],
                "budget": {**body["budget"], "steps": 5}}  # sources set their own steps: not part of their identity
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(b))
    suite_b = load_suite(tmp_path / "b.yaml")
    cost = CostModel(suite_b)  # the dry-run's estimate counts the sources the library holds as copies
    assert [cost.run_seconds(source_run(suite_b, toy_tasks[t], 0)) for t in ("src_a", "src_b")] == [0, 0]
    assert cost.run_seconds(next(r for r in expand(suite_b) if r.method == "single-source")) > 0
    run_suite(suite_b, tmp_path / "b", progress=False, log=messages.append)
    assert trained == []  # nothing retrained
    assert any("2 source run(s) copied from the library" in m for m in messages)
    for task in ("src_a", "src_b"):
        run = source_run(suite_b, toy_tasks[task], 0)
        copied = run_dir(tmp_path / "b", run) / PROMPT_DIR / "adapter_model.safetensors"
        assert copied.read_bytes() == (run_dir(tmp_path / "a", run) / PROMPT_DIR / "adapter_model.safetensors"
                                       ).read_bytes()
    assert len(VectorStore(tmp_path / "b" / "store").entries(kind="vector")) == 2  # its own store, from the copies

    c = b | {"name": "suite-c", "sources": {**b["sources"], "steps": 2}}  # other settings: another source
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(c))
    run_suite(load_suite(tmp_path / "c.yaml"), tmp_path / "c", progress=False, log=lambda m: None)
    assert sorted(trained) == ["src_a", "src_b"]
    assert len(list(library.glob("*/*/run/run.json"))) == 4


def _library_suite(tmp_path, tiny_models, toy_tasks, library: Path) -> None:
    """s.yaml: the tiny transfer suite with a source library, one origin and one training-free method."""
    body = yaml.safe_load(_suite(tmp_path, tiny_models, toy_tasks).read_text()) | {
        "analyses": {}, "origins": [0], "shots": [0], "stats": {},
        "methods": [{"name": "tpv-init", "settings": {"prompt_length": 3}}]}
    body["sources"] = {**body["sources"], "multi_task": False, "library": str(library)}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))


def test_finished_sources_reach_the_library_even_when_the_budget_stops_the_rest(tmp_path, tiny_models, toy_tasks,
                                                                                 monkeypatch):
    from promptvec.experiments import runner as runner_module

    library = tmp_path / "library"
    _library_suite(tmp_path, tiny_models, toy_tasks, library)
    original = runner_module.execute_run

    def budget_ends_at_src_b(suite_dict, run, *args, **kwargs):
        if run.task == toy_tasks["src_b"]:
            return {"run_id": run.run_id, "status": "stopped"}
        return original(suite_dict, run, *args, **kwargs)

    monkeypatch.setattr(runner_module, "execute_run", budget_ends_at_src_b)
    messages = []
    outcome = run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "out", progress=False, log=messages.append)
    assert outcome.stopped
    assert [p.parents[2].name for p in library.glob("*/*/run/run.json")] == ["src_a"]  # <task>/<fingerprint>/run
    assert any("added to the library" in m and "src_a" in m for m in messages)


def test_each_finished_source_reaches_the_library_at_once_even_if_the_suite_then_dies(tmp_path, tiny_models,
                                                                                     toy_tasks, monkeypatch):
    """A library build stopped by a crash (or the end of a work period) keeps every source it finished."""
    from promptvec.experiments import runner as runner_module

    library = tmp_path / "library"
    _library_suite(tmp_path, tiny_models, toy_tasks, library)
    original = runner_module.execute_run

    def dies_at_src_b(suite_dict, run, *args, **kwargs):
        if run.task == toy_tasks["src_b"]:
            raise RuntimeError("the process died here")
        return original(suite_dict, run, *args, **kwargs)

    monkeypatch.setattr(runner_module, "execute_run", dies_at_src_b)
    with pytest.raises(RuntimeError, match="died"):
        run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "out", progress=False, log=lambda m: None)
    assert [p.parents[2].name for p in library.glob("*/*/run/run.json")] == ["src_a"]


def test_a_source_with_fewer_examples_than_asked_trains_on_all_of_them(tmp_path, tiny_models, toy_tasks):
    """sources.shots means "N examples, or the whole split if smaller" (imdb has 899 training reviews
    against a study's 1,000); a target asking for more than its split is still refused."""
    body = yaml.safe_load(_suite(tmp_path, tiny_models, toy_tasks).read_text())
    body |= {"analyses": {}, "origins": [0], "shots": [8], "stats": {},
             "methods": [{"name": "tpv-init", "settings": {"prompt_length": 3, "steps": 1}}]}
    body["sources"] = {**body["sources"], "multi_task": False, "shots": 10_000}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))
    suite = load_suite(tmp_path / "s.yaml")
    run_suite(suite, tmp_path / "out", progress=False, log=lambda m: None)
    record = json.loads((run_dir(tmp_path / "out", source_run(suite, toy_tasks["src_a"], 0)) / "run.json").read_text())
    assert record["status"] == "completed" and record["sizes"]["train"] == 64  # the whole toy split

    body["shots"] = [10_000]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(DataError, match="larger than the training set"):
        run_suite(load_suite(tmp_path / "t.yaml"), tmp_path / "out", progress=False, log=lambda m: None)
