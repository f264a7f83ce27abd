"""What every dynamic transfer module (DTVG, ATTEMPT, Fusion) must do — gradients only where it
declares them, never read the gold label, save → load to the same prompts, folders checked — and
every transfer method end to end in a suite with its logs and report sections, `promptvec transfer`,
and reuse of identical trainings. Each method's own behaviour: tests/test_method_<name>.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from promptvec.errors import CheckpointError, ConfigError
from promptvec.experiments.report import build_report
from promptvec.experiments.runner import run_suite
from promptvec.experiments.transfer import transfer
from promptvec.prompts import load_module, save_module
from promptvec.suites.plan import expand, run_dir
from promptvec.suites.run_logs import module_log
from promptvec.suites.schema import load_suite
from promptvec.tasks import get_task, load_task_data
from tests.conftest import PS, dynamic_modules, random_batch, tiny_transfer_suite

DECLARED = {
    "dtvg": {"target_vector", "target_scale", "source_scales"},
    "attempt": {"target", "down.weight", "up.weight", "norm.weight", "norm.bias"},
    "fusion": {"pool", "task_embeddings", "query.weight", "keys", "gate.weight", "gate.bias", "private",
               "loss_log_vars"},
}


@pytest.mark.parametrize("kind", ["dtvg", "attempt", "fusion"])
def test_gradients_reach_exactly_the_declared_parameters(backbones, toy_task, kind):
    backbone = backbones["llama"]
    module = dynamic_modules(backbone)[kind]
    task = get_task(str(toy_task))
    data = load_task_data(task)
    batch = backbone.collate(task, backbone.encode(task, data.train[:4], module.rows), train=True)
    loss = module.combine_losses({batch.task: backbone.loss(task, batch, module(batch))}, {batch.task: 4})
    loss.backward()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == DECLARED[kind]
    assert {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0} == trainable
    assert all(p.grad is None for p in backbone.model.parameters())
    assert all(not b.requires_grad for b in module.buffers())
    groups = module.parameter_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(trainable)


@pytest.mark.parametrize("family", ["llama", "t5", "bert"])
@pytest.mark.parametrize("kind", ["attempt", "fusion"])
def test_modules_that_read_the_input_never_read_the_gold_label(backbones, toy_task, family, kind):
    """A causal training sequence is input + label tokens: ATTEMPT's attention and Fusion's gate must
    pool the input alone, so training computes the prompt that evaluation computes for the same input."""
    from promptvec.backbones.base import Encoded

    backbone = backbones[family]
    module = dynamic_modules(backbone)[kind]
    with torch.no_grad():  # Fusion's gate starts input-independent (zero weights): make it read the input
        for p in module.parameters():
            p.add_(0.5 * torch.randn_like(p))
    module.eval()
    task = get_task(str(toy_task))
    encoded = backbone.encode(task, load_task_data(task).train[:6], module.rows)
    flipped = [Encoded(e.input_ids, 1 - e.label_index) for e in encoded]
    evaluation = module(backbone.collate(task, encoded, train=False))
    training = module(backbone.collate(task, encoded, train=True))
    training_flipped = module(backbone.collate(task, flipped, train=True))
    assert not torch.allclose(evaluation[0], evaluation[1])  # the prompt does depend on the input
    assert torch.allclose(training, evaluation, atol=1e-6, rtol=0)
    assert torch.allclose(training_flipped, training, atol=1e-6, rtol=0)


def test_causal_training_batches_mark_the_label_as_not_input(backbones, toy_task):
    backbone = backbones["llama"]
    task = get_task(str(toy_task))
    encoded = backbone.encode(task, load_task_data(task).train[:4], 2)
    batch = backbone.collate(task, encoded, train=True)
    labels = backbone.label_set(task).token_ids
    for row, item in enumerate(encoded):
        fed = len(labels[item.label_index]) - 1  # a label's last token is predicted, never fed
        real = batch.input_positions[row][batch.attention_mask[row].bool()]
        assert real.tolist() == [1] * len(item.input_ids) + [0] * fed
    assert torch.equal(backbone.collate(task, encoded, train=False).input_positions,
                       backbone.collate(task, encoded, train=False).attention_mask)


@pytest.mark.parametrize("kind", ["dtvg", "attempt", "fusion"])
def test_save_then_load_gives_the_same_prompts(backbones, tmp_path, kind):
    backbone = backbones["llama"]
    module = dynamic_modules(backbone)[kind]
    with torch.no_grad():  # move away from the initial values, so loading really restores state
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    module.eval()
    batch = random_batch(3)
    save_module(tmp_path / "m", module, backbone, {"task": "toy"})
    loaded, document = load_module(tmp_path / "m", backbone)
    loaded.eval()
    assert type(loaded) is type(module) and document["kind"] == kind and document["run"]["task"] == "toy"
    assert torch.equal(loaded(batch), module(batch))
    assert loaded.config() == module.config()
    if kind == "dtvg":
        assert torch.equal(loaded.export(), module.export())


def test_module_folders_are_checked(backbones, tmp_path):
    from safetensors.torch import save_file

    backbone = backbones["llama"]
    save_module(tmp_path / "m", dynamic_modules(backbone)["attempt"], backbone, {})
    with pytest.raises(CheckpointError, match="trained on model"):
        load_module(tmp_path / "m", backbones["gpt2"])
    with pytest.raises(CheckpointError, match="not a promptvec prompt-module folder"):
        load_module(tmp_path / "nowhere")
    state_file = tmp_path / "m" / "module.safetensors"
    from safetensors.torch import load_file

    state = load_file(state_file)
    state.pop("up.weight")
    save_file(state, state_file)
    with pytest.raises(CheckpointError, match="does not fit a 'attempt' module"):
        load_module(tmp_path / "m", backbone)
    document = json.loads((tmp_path / "m" / "module.json").read_text())
    (tmp_path / "m" / "module.json").write_text(json.dumps({**document, "kind": "pickle"}))
    with pytest.raises(CheckpointError, match="unknown prompt-module kind"):
        load_module(tmp_path / "m", backbone)


# ---- every method in a suite, its logs and its report ---------------------------------------------
def _suite_file(tmp_path, tiny_models, tasks) -> str:
    ps = PS
    methods = [{"name": "pt", "settings": ps},
               {"name": "spot", "settings": {**ps, "early_steps": 2}},
               {"name": "spot-multi", "settings": ps},
               {"name": "attempt", "settings": {**ps, "attention_lr": 0.01}},
               {"name": "dtvg", "settings": {**ps, "stage1_steps": 2}},
               {"name": "dtvg", "label": "dtvg fixed", "settings": {**ps, "stage1_steps": 2,
                                                                    "grouping": "fixed-at-start"}},
               {"name": "fusion", "settings": {**ps, "batch_size": 6}},
               {"name": "fusion", "label": "fusion hot", "tasks": [tasks["target"]],
                "settings": {**ps, "temperature": 10.0, "max_sources": 1}}]
    return tiny_transfer_suite(tmp_path, tiny_models, tasks, "methods-tiny", methods, sources={"multi_task": True},
                       stats={"baseline": ["pt", "spot"]})


@pytest.mark.slow
def test_every_transfer_method_runs_in_a_suite_with_logs_and_report(tmp_path, tiny_models, toy_tasks,
                                                                     backbones):
    suite = load_suite(_suite_file(tmp_path, tiny_models, toy_tasks))
    out = tmp_path / "out"
    outcome = run_suite(suite, out, progress=False, log=lambda m: None)
    runs = {r.label: r for r in expand(suite)}
    assert outcome.completed == len(runs) + 2  # + the two single-task sources of three source runs
    record = lambda label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())  # noqa: E731

    spot = record("spot")["init"]
    assert spot["chosen"] in spot["sources"] and set(spot["similarity"]) == set(spot["sources"])
    assert (run_dir(out, runs["spot"]) / "stages" / "early" / "prompt").is_dir()
    assert record("spot-multi")["init"]["init"] == "multi-task source prompt"
    for label in ("attempt", "dtvg", "fusion"):
        folder = run_dir(out, runs[label])
        assert (folder / "module" / "module.json").is_file(), label
        assert {e["step"] for e in module_log(folder)} == {1, 2, 3}, label
    store_ids = {s["vector_sha256"] for s in record("dtvg")["init"]["store"]}
    assert len(store_ids) == 2  # sources named by store id
    assert (run_dir(out, runs["dtvg"]) / "prompt" / "adapter_config.json").is_file()  # P_mix as a PEFT folder
    assert not (run_dir(out, runs["attempt"]) / "prompt").exists()  # per-input prompts have no static export
    fixed = module_log(run_dir(out, runs["dtvg fixed"]))
    assert all(e["group"] == fixed[0]["group"] for e in fixed)
    assert record("fusion hot")["init"]["tasks"] == [toy_tasks["target"], toy_tasks["src_a"]]
    assert record("fusion")["sizes"]["validation"] == 8  # selected on the target alone

    report = (build_report(out) / "report.md").read_text()
    for heading in ("Dynamic Task Vector Grouping: the group over training", "Dynamic Prompt Fusion",
                    "ATTEMPT: attention per target", "Variants of fusion", "Variants of dtvg",
                    "Comparisons with the baselines"):
        assert heading in report, heading
    assert list((out / "report").glob("dtvg-timeline-*.png"))
    assert "| spot | pt |" in report and "| dtvg | spot |" in report  # compared with both baselines


def test_transfer_refuses_the_target_as_its_own_source(tmp_path):
    with pytest.raises(ConfigError, match="never transfers from itself"):
        transfer("dtvg", ["sst2", "imdb"], "imdb", tmp_path)
    with pytest.raises(ConfigError, match="none were given"):
        transfer("attempt", [], "imdb", tmp_path)
    with pytest.raises(ConfigError, match="unknown method"):
        transfer("magic", ["sst2"], "imdb", tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_spot_and_dtvg_need_target_examples(tmp_path, tiny_models, toy_tasks):
    body = yaml.safe_load(Path(_suite_file(tmp_path, tiny_models, toy_tasks)).read_text())
    body["shots"] = [0]
    body["methods"] = [{"name": "dtvg", "settings": {"prompt_length": 3}}]
    body["stats"] = {}
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match="'dtvg' first trains on the target, so it has no 0-shot point"):
        load_suite(tmp_path / "zero.yaml")


def test_transfer_cli_refuses_bad_input_with_one_message(tmp_path):
    from typer.testing import CliRunner

    from promptvec.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["transfer", "--method", "spot", "--sources", "sst2,imdb", "--target", "imdb",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "never transfers from itself" in result.output
    result = runner.invoke(app, ["transfer", "--method", "dtvg", "--sources", "sst2", "--target", "imdb",
                                 "--out", str(tmp_path / "x"), "--set", "grouping"])
    assert result.exit_code == 2 and "--set expects KEY=VALUE" in result.output
    result = runner.invoke(app, ["transfer", "--method", "dtvg", "--sources", "sst2", "--target", "imdb",
                                 "--out", str(tmp_path / "x"), "--set", "grouping=best"])
    assert result.exit_code == 2 and "unknown grouping 'best'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_transfer_cli_trains_sources_then_the_target(tmp_path, tiny_models, toy_tasks):
    from typer.testing import CliRunner

    from promptvec.cli import app

    args = ["transfer", "--method", "attempt", "--sources", f"{toy_tasks['src_a']},{toy_tasks['src_b']}",
            "--target", toy_tasks["target"], "--out", str(tmp_path / "t"), "--model", str(tiny_models["llama"]),
            "--shots", "8", "--steps", "2", "--source-steps", "2", "--source-shots", "8", "--eval-every", "2",
            "--val-examples", "8", "--test-examples", "8", "--set", "prompt_length=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "t" / "runs" / "attempt" / "target" / "8shot" / "o0-s0"
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "completed" and record["init"]["sources"] == [toy_tasks["src_a"], toy_tasks["src_b"]]
    assert (folder / "module" / "module.json").is_file() and "module" in result.output
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "t").rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "t").rglob("*") if p.is_file()}
    changed = [str(p.relative_to(tmp_path)) for p in after if before.get(p) != after[p] and "runs" in p.parts]
    assert changed == [] and after.keys() >= before.keys()  # again: nothing retrained, no run folder touched


@pytest.mark.slow
def test_a_run_that_would_repeat_a_finished_training_reuses_it(tmp_path, tiny_models, toy_tasks):
    """SPoT, the best-family source and the sweep's run from that source all prompt-tune from the
    same source prompt with the same configuration: only the first trains. The copy is what training
    would have given (checked against a suite without the sweep, where the best-family run trains
    itself); another configuration or another start trains."""
    ps = {**PS, "select_initial": False}
    a = toy_tasks["src_a"]
    sweep = [{"name": "single-source", "label": "from a", "settings": {**ps, "source": a}}]
    reusers = [{"name": "single-source", "label": "best-family source", "settings": ps},
               {"name": "spot", "settings": {**ps, "early_steps": 2}},
               {"name": "single-source", "label": "other lr", "settings": {**ps, "source": a, "lr": 0.09}},
               {"name": "tpv-init", "settings": ps}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "reuse-tiny", sweep + reusers))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    runs = {r.label: r for r in expand(suite)}
    record = lambda label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())  # noqa: E731
    twin = record("from a")
    assert "reused_from" not in twin and len(twin["init"]["prompt_sha256"]) == 64
    best = record("best-family source")
    assert best["reused_from"] == f"runs/{runs['from a'].run_id}"
    assert best["init"]["sources"] == [a] and best["test"] == twin["test"] and best["history"] == twin["history"]
    assert (run_dir(out, runs["best-family source"]) / "prompt").is_dir()
    assert (run_dir(out, runs["best-family source"]) / "train_log.jsonl").read_bytes() == \
        (run_dir(out, runs["from a"]) / "train_log.jsonl").read_bytes()
    spot = record("spot")
    assert ("reused_from" in spot) == (spot["init"]["chosen"] == a)  # it chose a: the sweep run, else its own
    assert spot["init"]["similarity"]  # the method's own record is kept
    for label in ("other lr", "tpv-init"):  # another lr; a merged start: trained here
        assert "reused_from" not in record(label)

    (tmp_path / "alone").mkdir()
    alone = load_suite(tiny_transfer_suite(tmp_path / "alone", tiny_models, toy_tasks, "reuse-alone", reusers[:1]))
    run_suite(alone, tmp_path / "out2", progress=False, log=lambda m: None)
    trained = json.loads((run_dir(tmp_path / "out2", expand(alone)[-1]) / "run.json").read_text())
    assert "reused_from" not in trained and trained["test"] == best["test"]
