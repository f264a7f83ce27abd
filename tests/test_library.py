"""Prompt libraries and ``init: auto``: the choice on the run's own training examples (scores equal
to the model's loss, the lowest taken, the fallback), a library built by a suite and packaged
read-only, refused for another model, and auto from the API, the trainer record and a suite."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.experiments.library_build import LIBRARY_TASKS, library_suite, package_library
from promptvec.experiments.report import build_report
from promptvec.experiments.runner import run_suite
from promptvec.library import AutoPolicy, PromptLibrary, SourcePrompt, choose_start
from promptvec.store import VectorStore
from promptvec.store.store import StoreError
from promptvec.suites.plan import expand
from promptvec.suites.schema import load_suite
from promptvec.tasks import few_shot, get_task, load_task_data
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer, train_prompt
from promptvec.vectors import Origin, TaskPromptVector
from tests.conftest import tiny_recipe, tiny_transfer_suite

ROOT = Path(__file__).resolve().parents[1]


def _direct_loss(backbone, task, examples, prompt) -> float:
    rows = 0 if prompt is None else prompt.shape[0]
    batch = backbone.collate(task, backbone.encode(task, examples, rows), train=True)
    with torch.no_grad():
        return float(backbone.loss(task, batch, torch.zeros(0, backbone.dim) if prompt is None else prompt))


@pytest.fixture(scope="module")
def toy_sources(backbones, toy_tasks, tmp_path_factory):
    """A source prompt trained on the toy data (it fits the target) and a wild one (it does not)."""
    backbone = backbones["llama"]
    out = tmp_path_factory.mktemp("src") / "a"
    train_prompt(TrainConfig(model=backbone.name, task=toy_tasks["src_a"], shots=32, max_steps=12, eval_every=6,
                             batch_size=8, lr=0.1, prompt_length=3, val_examples=8, test_examples=8), out,
                 backbone=backbone, progress=False)
    good = TaskPromptVector.from_checkpoint(out, backbone)
    origin = Origin.sample(backbone, 3, 0)
    wild = TaskPromptVector.from_prompts(origin.tensor(backbone) + 40 * torch.randn(3, backbone.dim,
                                         generator=torch.Generator().manual_seed(0)),
                                         origin.tensor(backbone), model_fingerprint=backbone.fingerprint,
                                         task="wild", origin_info=origin)
    return {"good": SourcePrompt("good", good.apply_to(origin, 1.0, backbone), good),
            "wild": SourcePrompt("wild", wild.apply_to(origin, 1.0, backbone), wild)}


def _target(toy_tasks, shots=8, seed=0):
    spec = get_task(toy_tasks["target"])
    return spec, few_shot(spec, load_task_data(spec).train, shots, seed)


LOSS = AutoPolicy(score="loss")  # the loss alone (the default ranks by accuracy first, the loss breaking ties)


def test_auto_scores_every_candidate_by_the_models_loss_and_takes_the_lowest(backbones, toy_tasks, toy_sources):
    backbone = backbones["llama"]
    spec, examples = _target(toy_tasks)
    origin = Origin.sample(backbone, 3, 0)
    choice = choose_start(backbone, spec, examples, origin, [toy_sources["wild"], toy_sources["good"]], LOSS)
    by_name = {c["name"]: c for c in choice.candidates}
    assert set(by_name) == {"no prompt", "origin", "good", "wild", "tpv:good+wild"}
    starts = {"no prompt": None, "origin": origin.tensor(backbone), "good": toy_sources["good"].prompt,
              "wild": toy_sources["wild"].prompt,
              "tpv:good+wild": (toy_sources["good"].vector + toy_sources["wild"].vector).apply_to(origin, 1.0,
                                                                                                    backbone)}
    for name, start in starts.items():  # each score is the training loss on exactly these examples
        assert by_name[name]["loss"] == pytest.approx(_direct_loss(backbone, spec, examples, start), rel=1e-4)
    # the prompt trained on the same data fits it best, better than no prompt and the origin
    assert choice.chosen == "good" and not choice.fell_back
    assert torch.equal(choice.prompt, toy_sources["good"].prompt)
    assert by_name["good"]["loss"] < min(by_name["no prompt"]["loss"], by_name["origin"]["loss"])
    assert [c["name"] for c in choice.candidates][0] == "good" and by_name["good"]["chosen"]
    record = choice.record(LOSS)
    assert record["chosen"] == "good" and record["seconds"] > 0 and record["policy"]["score"] == "loss"


def test_auto_falls_back_to_the_origin_when_no_source_beats_no_prompt_and_the_origin(backbones, toy_tasks,
                                                                                      toy_sources):
    backbone = backbones["llama"]
    spec, examples = _target(toy_tasks)
    origin = Origin.sample(backbone, 3, 0)
    choice = choose_start(backbone, spec, examples, origin, [toy_sources["wild"]], LOSS)
    by_name = {c["name"]: c for c in choice.candidates}
    assert by_name["wild"]["loss"] > min(by_name["origin"]["loss"], by_name["no prompt"]["loss"])
    assert choice.fell_back and choice.chosen == "origin" and choice.prompt is None
    assert by_name["origin"]["chosen"] and not by_name["wild"]["chosen"]


def test_auto_refuses_sources_of_another_shape_and_an_empty_training_set(backbones, toy_tasks, toy_sources):
    backbone = backbones["llama"]
    spec, examples = _target(toy_tasks)
    with pytest.raises(ConfigError, match="do not have the run's shape"):
        choose_start(backbone, spec, examples, Origin.sample(backbone, 4, 0), [toy_sources["good"]])
    with pytest.raises(ConfigError, match="no training examples"):
        choose_start(backbone, spec, [], Origin.sample(backbone, 3, 0), [toy_sources["good"]])


def test_the_default_policy_is_the_pilots_choice_under_its_committed_rule():
    """AutoPolicy's defaults are frozen from the policy pilot (docs/results/library/pilot.json) by the rule
    committed before it ran: the highest mean validation gain of the chosen start over the origin, unless
    within 1 point of the default then (loss, combine 3)."""
    summary = json.loads((Path(__file__).parents[1] / "docs/results/library/pilot.json").read_text())["summary"]
    best = max(summary, key=lambda name: summary[name]["gain_over_origin"])
    if summary[best]["gain_over_origin"] - summary["loss, combine 3"]["gain_over_origin"] <= 0.01:
        best = "loss, combine 3"
    score, combine = best.split(", combine ")
    assert (AutoPolicy().score, AutoPolicy().combine) == (score, int(combine)) == ("accuracy", 3)


def test_accuracy_scoring_ranks_by_accuracy_with_loss_breaking_ties(backbones, toy_tasks, toy_sources):
    backbone = backbones["llama"]
    spec, examples = _target(toy_tasks, shots=16)
    choice = choose_start(backbone, spec, examples, Origin.sample(backbone, 3, 0), list(toy_sources.values()),
                          AutoPolicy(score="accuracy", combine=0))
    keys = [(-c["accuracy"], c["loss"]) for c in choice.candidates]
    assert keys == sorted(keys) and all(0 <= c["accuracy"] <= 1 for c in choice.candidates)


def test_a_packaged_library_lists_its_prompts_with_scores_and_nothing_else(tiny_library, toy_tasks, backbones):
    lib = PromptLibrary.open(tiny_library.root)
    assert sorted(os.listdir(lib.root)) == ["index.sqlite", "library.json", "objects"]  # no journal, lock, run
    entries = {e.task: e for e in lib.entries}
    assert set(entries) == {"src_a", "src_b"}  # a task file's entry is named by its task, not its path
    for entry in entries.values():
        assert entry.metric == "acc" and 0 <= entry.score <= 1 and 0 <= entry.no_prompt <= 1
        assert entry.gain == pytest.approx(entry.score - entry.no_prompt) and entry.vector_norm > 0
        assert entry.group == "sentiment" and entry.train_examples == 16
    assert lib.manifest.recipe["shots"] == 16 and lib.manifest.recipe["settings"]["prompt_length"] == 3
    assert lib.manifest.built_with["code"][0]["promptvec"]
    backbone = backbones["llama"]
    sources = lib.sources(backbone)
    for source in sources:  # the stored prompt is the stored vector applied to its recorded origin
        rebuilt = source.vector.apply_to(source.vector.recorded_origin, 1.0, backbone)
        assert torch.allclose(source.prompt, rebuilt, atol=1e-6)
    # the store's search works on it
    hits = lib.store.search(sources[0].vector, top=5)
    assert hits[0][1] == pytest.approx(1.0)


def test_a_library_is_read_only_and_refused_for_another_model(tiny_library, backbones):
    lib = PromptLibrary.open(tiny_library.root)
    before = sorted(str(p.relative_to(lib.root)) for p in lib.root.rglob("*"))
    with pytest.raises(StoreError, match="read-only"):
        lib.store.add_vector(lib.sources(backbones["llama"])[0].vector, name="x")
    assert sorted(str(p.relative_to(lib.root)) for p in lib.root.rglob("*")) == before
    with pytest.raises(ConfigError, match="was built for model .* not for"):
        lib.sources(backbones["gpt2"])
    with pytest.raises(ConfigError, match="was built for model"):
        PromptLibrary.for_backbone(backbones["gpt2"], lib.root)


def test_a_library_folder_is_checked(tmp_path, tiny_library):
    with pytest.raises(ConfigError, match="not a folder"):
        PromptLibrary.open(tmp_path / "missing")
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(tiny_library.root, broken)
    (broken / "library.json").write_text(json.dumps({"format": "promptvec.library.v1"}))
    with pytest.raises(ConfigError, match="not a valid library manifest"):
        PromptLibrary.open(broken)
    with pytest.raises(ConfigError, match="holds files that are not a prompt library"):
        (tmp_path / "user").mkdir()
        (tmp_path / "user" / "notes.txt").write_text("mine")
        package_library(load_suite_of(tiny_library), tiny_library.root.parent / "runs", tmp_path / "user")
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


def load_suite_of(library: PromptLibrary):
    from promptvec.suites.schema import SuiteSpec

    return SuiteSpec.model_validate(json.loads((library.root.parent / "runs" / "suite.json").read_text()))


def test_a_plain_store_of_vectors_serves_as_a_library(tmp_path, tiny_library, backbones):
    backbone = backbones["llama"]
    store = VectorStore(tmp_path / "store")
    for source in tiny_library.sources(backbone):
        store.add_vector(source.vector, name=source.task)
    lib = PromptLibrary.open(tmp_path / "store")
    assert {e.task for e in lib.entries} == {e.task for e in tiny_library.entries}
    got = {s.task: s.prompt for s in lib.sources(backbone)}
    for source in tiny_library.sources(backbone):
        assert torch.allclose(got[source.task], source.prompt, atol=1e-6)


def test_train_prompt_init_auto_records_the_choice(tmp_path, tiny_library, toy_tasks, backbones, tiny_models):
    backbone = backbones["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=toy_tasks["target"], shots=8, max_steps=2,
                         eval_every=2, batch_size=4, prompt_length=3, val_examples=8, test_examples=8)
    record = train_prompt(config, tmp_path / "run", backbone=backbone, progress=False, init="auto",
                          library=tiny_library.root).record
    auto = record["init"]["auto"]
    names = {c["name"] for c in auto["candidates"]}
    assert {"no prompt", "origin", "src_a", "src_b"} <= names
    assert record["init"]["library"] == str(tiny_library.root) and record["config"]["init"] == "auto"
    assert sum(c["chosen"] for c in auto["candidates"]) == 1 and auto["seconds"] > 0
    # choosing is part of the run: its "start" phase, inside the wall time (loading the model is not)
    assert auto["seconds"] <= record["phases"]["start"]["seconds"] <= record["wall_time_s"]
    # the choice saw only the run's own training examples
    trainer = Trainer(config.model_copy(update={"init": "auto", "library": str(tiny_library.root)}),
                      tmp_path / "again", backbone=backbone, progress=False)
    assert trainer.init_info["auto"] == {**auto, "seconds": trainer.init_info["auto"]["seconds"]}
    with pytest.raises(ConfigError, match="was built for model"):
        train_prompt(config.model_copy(update={"model": str(tiny_models["gpt2"])}), tmp_path / "q",
                     backbone=backbones["gpt2"], progress=False, init="auto", library=tiny_library.root)


def test_init_auto_leaves_out_the_library_tasks_named(tmp_path, tiny_library, toy_tasks, backbones, tiny_models):
    backbone = backbones["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=toy_tasks["target"], shots=8, max_steps=2,
                         eval_every=2, batch_size=4, prompt_length=3, val_examples=8, test_examples=8, init="auto",
                         library=str(tiny_library.root), library_exclude=["src_a"])
    trainer = Trainer(config, tmp_path / "run", backbone=backbone, progress=False)
    names = {c["name"] for c in trainer.init_info["auto"]["candidates"]}
    assert "src_b" in names and not any("src_a" in name for name in names)
    assert trainer.init_info["library_exclude"] == ["src_a"]
    # a misspelt name would leave nothing out: refused, with the close match, before any folder is made
    with pytest.raises(ConfigError, match=r"no prompt for task 'src_c' \(did you mean src_b, src_a\?\)"):
        Trainer(config.model_copy(update={"library_exclude": ["src_c"]}), tmp_path / "typo", backbone=backbone,
                progress=False)
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(("updates", "message"), [
    ({"init": "auto", "init_prompt": "x"}, "cannot be combined with init_prompt"),
    ({"library": "x"}, r"library is read by init auto only: .* drop library \["),
    ({"library_exclude": ["sst2"]}, "drop library_exclude"),
    ({"init": "best"}, "init"),
])
def test_init_auto_settings_are_checked(updates, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(task="sst2", **updates)


def test_the_suite_method_auto_chooses_among_the_targets_sources(tmp_path, tiny_models, toy_tasks, monkeypatch):
    methods = [{"name": "pt", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}},
               {"name": "auto", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "auto-tiny", methods))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    record = json.loads((out / "runs/auto/target/8shot/o0-s0/run.json").read_text())
    names = {c["name"] for c in record["init"]["auto"]["candidates"]}
    assert names >= {"no prompt", "origin", toy_tasks["src_a"], toy_tasks["src_b"]}
    if record["init"]["auto"]["fell_back"]:  # plain prompt tuning: the pt run, copied
        assert record["reused_from"] == "runs/pt/target/8shot/o0-s0"
    else:
        assert record["init"]["init"] == "auto" and "reused_from" not in record
    # the report says where it started: both sources share the target's family (the toy tasks are sentiment)
    auto = record["init"]["auto"]
    section = (build_report(out) / "report.md").read_text().split("Where `auto` started")[1].split("\n#")[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {toy_tasks['target']} | sentiment |"))
    row = row.split(" | ")
    assert row[3:7] == ["1", auto["chosen"], str(int(auto["fell_back"])), "0 of 1" if auto["fell_back"] else "1 of 1"]
    assert set(row[2].split(", ")) == {toy_tasks["src_a"], toy_tasks["src_b"]}
    assert f"fell back to the origin in {int(auto['fell_back'])}" in section


def test_the_report_counts_starts_fall_backs_and_starts_from_the_targets_family(tmp_path):
    """S2 of the library study, from run records alone: sst2 (sentiment; imdb is its kin) starts once from imdb,
    once from a combination holding imdb and once falls back; cola (no kin in the library) starts from mrpc."""
    from types import SimpleNamespace

    from promptvec.methods.auto.report import start_sections

    def auto(chosen: str, kind: str, sources: list[str] | None = None) -> dict:
        picked = {"name": chosen, "kind": kind, "chosen": True, **({"sources": sources} if sources else {})}
        others = [{"name": name, "kind": "source", "chosen": False} for name in ("imdb", "mrpc", "trec")
                  if name != chosen]
        return {"chosen": chosen, "fell_back": kind == "origin", "candidates": [picked, *others], "seconds": 3.0}

    runs = [("sst2", 0, auto("imdb", "source")), ("sst2", 1, auto("tpv:trec+imdb", "combination", ["trec", "imdb"])),
            ("sst2", 2, auto("origin", "origin")), ("cola", 0, auto("mrpc", "source"))]
    rows = []
    for task, seed, record in runs:
        run_id = f"auto/{task}/16shot/o0-s{seed}"
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "runs" / run_id / "run.json").write_text(json.dumps({"init": {"init": "auto", "auto": record}}))
        rows.append({"method": "auto", "task": task, "run_id": run_id})
    suite = SimpleNamespace(tasks=["sst2", "cola"], sources=SimpleNamespace(tasks=["imdb", "mrpc", "trec"]))
    heading, summary, table = start_sections(suite, tmp_path, rows)
    assert table.rows == [
        ["sst2", "sentiment", "imdb", "3", "imdb, tpv:trec+imdb, origin", "1", "2 of 3", "3"],
        ["cola", "acceptability", "none", "1", "mrpc", "0", "–", "3"]]
    assert summary.text.startswith("`auto` started from a library prompt or combination in 3 of 4 runs and fell "
                                   "back to the origin in 1. Where the library holds a task of the target's family, "
                                   "the start included one in 2 of 3 runs (67 %).")


@pytest.mark.slow
def test_a_fallback_in_a_suite_is_a_copy_of_the_pt_run(tmp_path, tiny_models, toy_tasks, monkeypatch):
    from promptvec.library import AutoChoice
    from promptvec.methods.auto import method

    monkeypatch.setattr(method, "choose_start", lambda *a, **k: AutoChoice(None, "origin", True, [], 0.1))
    methods = [{"name": "zero", "label": "no prompt", "settings": {"prompt": "none"}},
               {"name": "pt", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}},
               {"name": "auto", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}},
               {"name": "tpv-init", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "auto-tiny", methods,
                                           seeds=[0, 1], stats={"baseline": ["pt", "no prompt"]}))
    run_suite(suite, tmp_path / "out", progress=False, log=lambda m: None)
    record = json.loads((tmp_path / "out/runs/auto/target/8shot/o0-s0/run.json").read_text())
    assert record["reused_from"] == "runs/pt/target/8shot/o0-s0" and record["init"]["auto"]["fell_back"]
    # the report shows the copies as the same runs, and tests each pair of cells once
    report = (build_report(tmp_path / "out") / "report.md").read_text()
    assert "= the runs of **pt**" in report and "(= pt)" in report
    section = report.split("### Comparisons with the baselines")[1].split("## Figures")[0]
    listed = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ") and "8-shot" in line]
    pairs = [tuple(sorted(cell.strip() for cell in pair)) for pair in listed]
    # pt–no prompt once (not also no prompt–pt), tpv-init against each; auto is pt's copy: not tested again
    assert sorted(pairs) == [("no prompt", "pt"), ("no prompt", "tpv-init"), ("pt", "tpv-init")]
    assert "auto" not in section


def test_a_suite_runs_choice_is_its_start_phase_inside_its_wall_time(tmp_path, tiny_models, toy_tasks, monkeypatch):
    """Choosing is ``auto``'s own work, done before its trainer starts: the run's ``start`` phase, counted in its
    wall time (and so in the report's and the cost model's times)."""
    from promptvec.library import AutoChoice
    from promptvec.methods.auto import method

    def slow_choice(backbone, task, examples, origin, sources, policy):
        time.sleep(0.5)
        return AutoChoice(sources[0].prompt, sources[0].task, False, [], 0.5)

    monkeypatch.setattr(method, "choose_start", slow_choice)
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "auto-timed", [
        {"name": "auto", "settings": {"prompt_length": 3, "lr": 0.05, "select_initial": False}}]))
    run_suite(suite, tmp_path / "out", progress=False, log=lambda m: None)
    record = json.loads((tmp_path / "out/runs/auto/target/8shot/o0-s0/run.json").read_text())
    phases = record["phases"]
    assert record["init"]["init"] == "auto" and phases["start"]["seconds"] >= 0.5
    assert record["wall_time_s"] >= sum(phases[name]["seconds"] for name in ("start", "steps", "validation", "test"))


def test_the_library_suite_file_is_the_library_build_suite():
    """examples/suites/library-smollm2.yaml (how the shipped library was made) is exactly what
    `promptvec library build --model default` runs: every run has the same fingerprint."""
    written = load_suite(ROOT / "examples/suites/library-smollm2.yaml")
    built = library_suite("default", LIBRARY_TASKS, sources_library=written.sources.library)
    assert [r.fingerprint(written) for r in expand(written)] == [r.fingerprint(built) for r in expand(built)]
    assert yaml.safe_load((ROOT / "examples/suites/library-smollm2.yaml").read_text())["sources"]["tasks"] == list(
        LIBRARY_TASKS)


def test_the_library_commands(tmp_path, tiny_library, tiny_models, toy_tasks):
    from typer.testing import CliRunner

    from promptvec.cli import app

    runner = CliRunner()
    lib = str(tiny_library.root)
    listed = runner.invoke(app, ["library", "--library", lib], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    for entry in tiny_library.entries:
        assert entry.task in listed.output and f"{entry.gain:+.3f}" in listed.output
    assert "gain" in listed.output and "‖τ‖" in listed.output
    found = runner.invoke(app, ["library", "search", "--like", "src_a", "--library", lib], terminal_width=200)
    assert found.exit_code == 0 and "src_b" in found.output, found.output
    model = str(tiny_models["llama"])
    trained = runner.invoke(app, ["train", "--model", model, "--task", toy_tasks["target"], "--shots", "8",
                                  "--steps", "2", "--prompt-length", "3", "--val-examples", "8", "--test-examples",
                                  "8", "--init", "auto", "--library", lib, "--out", str(tmp_path / "run")],
                            terminal_width=200)
    assert trained.exit_code == 0, trained.output
    assert "init auto:" in trained.output and "← start" in trained.output and "no prompt" in trained.output
    record = json.loads((tmp_path / "run/run.json").read_text())
    assert record["init"]["auto"]["chosen"] in trained.output
    # a library of another model, a missing one, and a shipped library for a model without one
    other = runner.invoke(app, ["train", "--model", str(tiny_models["gpt2"]), "--task", toy_tasks["target"],
                                "--shots", "8", "--steps", "2", "--prompt-length", "3", "--init", "auto",
                                "--library", lib, "--out", str(tmp_path / "other")], terminal_width=200)
    assert other.exit_code == 2 and "was built for model" in other.output and "Traceback" not in other.output
    assert not (tmp_path / "other").exists()
    missing = runner.invoke(app, ["library", "--library", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no prompt library at" in missing.output
    unknown = runner.invoke(app, ["library", "--model", "some/model"], terminal_width=200)
    assert unknown.exit_code == 2 and "no prompt library ships for model 'some/model'" in unknown.output
    assert "promptvec library build" in unknown.output


def test_library_build_prints_its_cost_first_and_resumes_into_a_library(tmp_path, tiny_models, toy_tasks):
    from typer.testing import CliRunner

    from promptvec.cli import app

    runner = CliRunner()
    model = str(tiny_models["llama"])
    args = ["library", "build", "--model", model, "--tasks", f"{toy_tasks['src_a']},{toy_tasks['src_b']}",
            "--out", str(tmp_path / "runs"), "--to", str(tmp_path / "lib"), "--shots", "16", "--steps", "2",
            "--prompt-length", "3", "--max-length", "64"]
    dry = runner.invoke(app, [*args, "--dry-run"], terminal_width=200)
    assert dry.exit_code == 0, dry.output
    said = " ".join(dry.output.split())
    assert "2 tasks (4 runs" in said and "estimated CPU time" in said
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lib").exists()
    built = runner.invoke(app, args, terminal_width=200)
    assert built.exit_code == 0, built.output
    assert "library of 2 prompts written to" in built.output
    assert {e.task for e in PromptLibrary.open(tmp_path / "lib").entries} == {"src_a", "src_b"}
    again = runner.invoke(app, args, terminal_width=200)  # everything done: nothing trained, library rewritten
    assert again.exit_code == 0 and "4 done" in " ".join(again.output.split()), again.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "runs"]


def test_auto_chooses_for_free_text_tasks_too(backbones, toy_generation_tasks, toy_sources):
    """The score is the training loss, so a free-text target (answer tokens + EOS) is chosen for the same
    way, with label-task prompts among its candidates."""
    import math

    backbone = backbones["llama"]
    spec = get_task(toy_generation_tasks["gen_target"])
    examples = few_shot(spec, load_task_data(spec).train, 8, 0)
    origin = Origin.sample(backbone, 3, 0)
    choice = choose_start(backbone, spec, examples, origin, list(toy_sources.values()))
    by_name = {c["name"]: c for c in choice.candidates}
    assert set(by_name) >= {"no prompt", "origin", "good", "wild"}
    assert all(math.isfinite(c["loss"]) and c["loss"] > 0 for c in choice.candidates)
    for name, start in (("no prompt", None), ("origin", origin.tensor(backbone))):
        assert by_name[name]["loss"] == pytest.approx(_direct_loss(backbone, spec, examples, start), rel=1e-4)
    best = min((c for c in choice.candidates if c["kind"] != "baseline"), key=lambda c: c["loss"])
    assert choice.chosen == ("origin" if choice.fell_back else best["name"])


def test_the_leave_one_task_out_suite_uses_the_librarys_own_prompts():
    """Every source of the study is exactly a library prompt (same fingerprint: copied, never retrained),
    and each target's candidates are all the other library tasks."""
    from promptvec.suites.plan import source_runs

    library = load_suite(ROOT / "examples/suites/library-smollm2.yaml")
    study = load_suite(ROOT / "examples/suites/library-loto.yaml")
    assert {r.task: r.fingerprint(study) for r in source_runs(study)} == {
        r.task: r.fingerprint(library) for r in source_runs(library)}
    for target in study.tasks:
        assert sorted(study.sources.targets[target]) == sorted(t for t in LIBRARY_TASKS if t != target)
    assert [c.primary for c in study.stats.across_tasks].count(True) == 1


@pytest.mark.slow
def test_the_policy_pilot_runs_on_a_library_of_builtin_tasks(tmp_path, tiny_models, shared_data, monkeypatch):
    """examples/library_policy_pilot.py (how init auto's policy was chosen) end to end on a tiny library of
    two built-in tasks: every variant chooses for every target and seed, and the summary is written."""
    import json
    import runpy
    import sys

    monkeypatch.setenv("PROMPTVEC_DATA_DIR", str(shared_data))
    recipe = tiny_recipe().model_copy(update={"max_length": 128, "test_examples": 8, "val_examples": 8})
    suite = library_suite(str(tiny_models["llama"]), ["sst2", "trec"], recipe)
    run_suite(suite, tmp_path / "runs", progress=False, log=lambda m: None, data_dir=str(shared_data))
    library = package_library(suite, tmp_path / "runs", tmp_path / "lib")
    out = tmp_path / "pilot.json"
    monkeypatch.setattr(sys, "argv", ["pilot", "--library", str(library.root), "--model", str(tiny_models["llama"]),
                                      "--seeds", "100", "--val-examples", "8", "--out", str(out)])
    runpy.run_path(str(ROOT / "examples/library_policy_pilot.py"), run_name="__main__")
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"loss, combine 0", "loss, combine 3", "accuracy, combine 0",
                                      "accuracy, combine 3"}
    assert len(result["rows"]) == 2 * 4 and {r["target"] for r in result["rows"]} == {"sst2", "trec"}
    for row in result["rows"]:  # a target never chooses itself
        assert row["target"] not in row["candidates"] and row["chosen"] in row["candidates"]
    # resumable: finished targets are read back, not scored again (a second run scores nothing)
    import promptvec.library.auto as auto_module

    def never(*args, **kwargs):
        raise AssertionError("a finished target was scored again")

    monkeypatch.setattr(auto_module, "score_candidates", never)
    out.unlink()
    runpy.run_path(str(ROOT / "examples/library_policy_pilot.py"), run_name="__main__")
    again = json.loads(out.read_text())
    assert again["summary"] == result["summary"] and len(again["rows"]) == len(result["rows"])


@pytest.mark.slow
def test_the_library_for_the_embedded_model_ships_in_the_installed_package(tmp_path):
    """Built as a wheel and installed into a clean folder, promptvec lists its library offline: the 22
    tasks of the recipe, for the embedded model, read from the installed files (not this checkout)."""
    import shutil
    import subprocess
    import sys

    source = tmp_path / "source"  # built from a copy: a build writes build/ and *.egg-info next to its sources
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("promptvec-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", str(wheel), "--no-deps", "-q", "--target",
                    str(tmp_path / "site")], check=True, capture_output=True)
    script = ("import json, promptvec; from promptvec.library import PromptLibrary; "
              "[lib] = PromptLibrary.shipped(); "
              "print(json.dumps({'file': promptvec.__file__, 'root': str(lib.root), 'model': lib.manifest.model, "
              "'fingerprint': lib.manifest.model_fingerprint, 'tasks': [e.task for e in lib.entries], "
              "'vectors': len(lib.store.entries(kind='vector'))}))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HF_HUB_OFFLINE": "1"}
    listed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    info = json.loads(listed.stdout)
    assert info["file"].startswith(str(tmp_path / "site")) and info["root"].startswith(str(tmp_path / "site"))
    assert info["model"] == "default" and info["tasks"] == list(LIBRARY_TASKS) and info["vectors"] == 22
    shipped = json.loads((ROOT / "src/promptvec/library/shipped/smollm2-135m-instruct/library.json").read_text())
    assert info["fingerprint"] == shipped["model_fingerprint"]
    cli = subprocess.run([sys.executable, "-m", "promptvec", "library"], env={**env, "COLUMNS": "200"},
                         capture_output=True, text=True)
    assert cli.returncode == 0 and all(task in cli.stdout for task in LIBRARY_TASKS), cli.stdout + cli.stderr


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5", "bert"])
def test_the_loss_read_from_label_scores_is_the_training_loss(backbones, toy_task, family):
    """``init: auto`` reads each candidate's loss from its rank-classification pass: that must be the loss
    training computes, for every family, on inputs of mixed lengths and labels of different token counts."""
    task_file = toy_task.parent / "toy_long_labels.yaml"
    task_file.write_text(toy_task.read_text().replace("task: toy_sentiment", "task: toy_long_labels")
                         .replace('["negative", "positive"]', '["quite negative indeed", "positive"]'))
    spec = get_task(str(task_file))
    examples = few_shot(spec, load_task_data(spec).train, 12, 0)
    backbone = backbones[family]
    assert len({len(ids) for ids in backbone.label_set(spec).token_ids}) == 2
    assert len({len(backbone.encode(spec, [example], 3)[0].input_ids) for example in examples}) > 1
    prompt = Origin.sample(backbone, 3, 0).tensor(backbone)
    result = evaluate(backbone, spec, examples, prompt)
    gold = torch.tensor([backbone.label_index(spec, example) for example in examples])
    read = float(backbone.label_loss(spec, torch.tensor(result.scores), gold))
    assert read == pytest.approx(_direct_loss(backbone, spec, examples, prompt), rel=1e-5, abs=1e-6)
