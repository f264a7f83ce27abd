"""Transfer methods (SPoT, ATTEMPT, DTVG, Fusion): DTVG groups known by hand, gradients only where
each module declares them, save → load of every dynamic module, mixed-task batches, exact resume,
and every method end to end in a suite with its logs and report sections."""

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
from promptvec.methods.attempt import AttemptPrompt
from promptvec.methods.dtvg import GROUPINGS, DTVGPrompt
from promptvec.methods.fusion import FusionPrompt
from promptvec.prompts import load_module, save_module
from promptvec.suites.plan import expand, run_dir
from promptvec.suites.run_logs import module_log
from promptvec.suites.schema import load_suite
from promptvec.tasks import get_task, load_task_data
from promptvec.training.batching import MixedTaskBatches
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer
from tests.conftest import PS, tiny_transfer_suite

T = torch.tensor


def group(name: str, target, sources, lam: float = 1.0) -> list[int]:
    return GROUPINGS[name](T(target, dtype=torch.float32), T(sources, dtype=torch.float32), lam).int().tolist()


# ---- DTVG grouping, by hand ------------------------------------------------------------------------
# target mean (1, 0, 0, 0); sim(a, b) = a·b / 4
#   A (2, 0): TS .5    B (1, 1): TS .25    C (.5, -3): TS .125    D (-1, 0): TS −.25 (never joins)
#   pairs: A·B .5, A·C .25, B·C −.625  →  KC(1) 0, KC(2) .5, KC(3) (.5 + .25 − .625)/3 ≈ .042
TARGET = [1.0, 0, 0, 0]
SOURCES = [[2.0, 0, 0, 0], [1.0, 1, 0, 0], [0.5, -3, 0, 0], [-1.0, 0, 0, 0]]


def test_kc_takes_the_most_consistent_prefix_of_positive_sources():
    assert group("kc", TARGET, SOURCES) == [1, 1, 0, 0]
    # the ranking is by TS, not by list order
    assert group("kc", TARGET, [SOURCES[2], SOURCES[3], SOURCES[1], SOURCES[0]]) == [0, 0, 1, 1]


def test_kc_with_disagreeing_sources_keeps_only_the_closest():
    # A·E < 0: KC(2) < KC(1) = 0, so the group is the top-ranked source alone
    assert group("kc", TARGET, [[2.0, 1, 0, 0], [1.0, -5, 0, 0]]) == [1, 0]


def test_no_positive_source_gives_an_empty_group():
    assert group("kc", TARGET, [[-1.0, 0, 0, 0], [-0.5, 2, 0, 0]]) == [0, 0]
    assert group("all-positive", TARGET, [[-1.0, 0, 0, 0], [-0.5, 2, 0, 0]]) == [0, 0]
    assert group("ts-plus-kc", TARGET, [[-1.0, 0, 0, 0]]) == [0]


def test_single_source():
    assert group("kc", TARGET, [[3.0, 1, 0, 0]]) == [1]
    assert group("kc", TARGET, [[-3.0, 1, 0, 0]]) == [0]


def test_identical_sources_tie_and_the_first_maximum_wins():
    # KC(2) = KC(3) = KC(4) = sim(s, s) > 0: the shortest such prefix (k = 2), in list order on TS ties
    assert group("kc", TARGET, [[1.0, 0, 0, 0]] * 4) == [1, 1, 0, 0]


def test_ties_in_consistency_choose_the_shorter_group():
    # three sources with equal TS and equal pairwise similarity: KC(2) = KC(3) → k* = 2
    s = [[1.0, 1, 0, 0], [1.0, 0, 1, 0], [1.0, 0, 0, 1]]
    assert group("kc", TARGET, s) == [1, 1, 0]


def test_ablation_groupings():
    assert group("all-positive", TARGET, SOURCES) == [1, 1, 1, 0]
    assert group("all", TARGET, SOURCES) == [1, 1, 1, 1]
    assert group("target-only", TARGET, SOURCES) == [0, 0, 0, 0]
    # mean TS + λ·KC: λ = 0 keeps the best single source; a large λ follows KC
    assert group("ts-plus-kc", TARGET, SOURCES, lam=0.0) == [1, 0, 0, 0]
    assert group("ts-plus-kc", TARGET, SOURCES, lam=100.0) == [1, 1, 0, 0]
    # λ = 1: k=1 → .5; k=2 → .375 + .5; k=3 → .29 + .04 — the pair wins
    assert group("ts-plus-kc", TARGET, SOURCES, lam=1.0) == [1, 1, 0, 0]


def _dtvg(grouping="kc", rows=2):
    """Row means equal to TARGET / SOURCES (every row identical), origin zero."""
    target = T(TARGET).repeat(rows, 1)
    sources = torch.stack([T(s).repeat(rows, 1) for s in SOURCES])
    return DTVGPrompt(torch.zeros(rows, 4), target, sources, ["A", "B", "C", "D"], grouping)


def test_dtvg_prompt_mixes_the_group_and_logs_every_training_forward():
    module = _dtvg()
    batch = _batch(3)
    prompt = module(batch)
    assert module.shares_prompt and prompt.shape == (2, 4)  # one prompt for the whole batch
    expected = T(TARGET) + T(SOURCES[0]) + T(SOURCES[1])  # P_init (0) + T_t + T_A + T_B, scales 1
    assert torch.allclose(prompt[0], expected)
    module.step = 7
    module(batch)
    log = module.drain_log()
    assert [e["step"] for e in log] == [0, 7] and log[1]["group"] == [1.0, 1.0, 0.0, 0.0]
    assert module.drain_log() == []
    module.eval()
    module(batch)
    assert module.drain_log() == []  # evaluation is not logged


def test_dtvg_group_follows_the_vectors_except_when_fixed_at_start():
    # turned towards −e2: TS = A 0, B −.25, C .75, D 0 → ranked C, A, D; KC(2) = C·A/4 > 0 > KC(3)
    for grouping, after in (("kc", [1, 0, 1, 0]), ("fixed-at-start", [1, 1, 0, 0])):
        module = _dtvg(grouping)
        module(_batch(1))  # first training step
        with torch.no_grad():
            module.target_vector.copy_(T([0.0, -1, 0, 0]).repeat(2, 1))
        module(_batch(1))
        assert module.drain_log()[-1]["group"] == after, grouping


def test_dtvg_refuses_bad_vectors():
    with pytest.raises(ConfigError, match="disagree in shape"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(1, 2, 4), ["a"])
    with pytest.raises(ConfigError, match="at least one source"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(0, 2, 4), [])
    with pytest.raises(ConfigError, match="unknown DTVG grouping"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(1, 2, 4), ["a"], "best")


# ---- modules on a real (tiny) backbone --------------------------------------------------------------
def _batch(size: int, task: str = "toy_sentiment"):
    from promptvec.backbones.base import Batch

    ids = torch.randint(5, 50, (size, 6))
    mask = torch.ones(size, 6, dtype=torch.long)
    mask[0, :2] = 0
    return Batch(ids, mask, torch.zeros(size, dtype=torch.long), task=task)


def _modules(backbone, rows=3):
    d = backbone.dim
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(2, rows, d, generator=g) * 0.1
    return {
        "dtvg": DTVGPrompt(torch.randn(rows, d, generator=g) * 0.1, torch.randn(rows, d, generator=g) * 0.1,
                           sources, ["a", "b"], "all"),
        "attempt": AttemptPrompt(sources, torch.randn(rows, d, generator=g) * 0.1, ["a", "b"]).bind(backbone),
        "fusion": FusionPrompt(torch.randn(4, rows, d, generator=g) * 0.1, torch.randn(2, d, generator=g),
                               ["toy_sentiment", "other"], private=True).bind(backbone),
    }


DECLARED = {
    "dtvg": {"target_vector", "target_scale", "source_scales"},
    "attempt": {"target", "down.weight", "up.weight", "norm.weight", "norm.bias"},
    "fusion": {"pool", "task_embeddings", "query.weight", "keys", "gate.weight", "gate.bias", "private",
               "loss_log_vars"},
}


@pytest.mark.parametrize("kind", ["dtvg", "attempt", "fusion"])
def test_gradients_reach_exactly_the_declared_parameters(backbones, toy_task, kind):
    backbone = backbones["llama"]
    module = _modules(backbone)[kind]
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
    module = _modules(backbone)[kind]
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


def test_attempt_projections_start_as_the_authors_code_initialises_them(backbones):
    from promptvec.methods.attempt.module import ATTENTION_INIT_STD

    backbone = backbones["llama"]
    first, second = _modules(backbone)["attempt"], _modules(backbone)["attempt"]
    for name in ("down", "up"):
        weight = getattr(first, name).weight
        assert abs(float(weight.std()) - ATTENTION_INIT_STD) < 0.1 * ATTENTION_INIT_STD, name  # N(0, 0.01²)
        assert abs(float(weight.mean())) < 0.1 * ATTENTION_INIT_STD, name
        assert torch.equal(weight, getattr(second, name).weight)  # from its own seed, not the global state
    assert ATTENTION_INIT_STD == 0.01


def test_causal_training_batches_mark_the_label_as_not_input(backbones, toy_task):
    backbone = backbones["llama"]
    task = get_task(str(toy_task))
    encoded = backbone.encode(task, load_task_data(task).train[:4], 2)
    batch = backbone.collate(task, encoded, train=True)
    labels = backbone.label_set(task).token_ids
    for row, item in enumerate(encoded):
        label = len(labels[item.label_index])
        assert batch.input_positions[row].sum() == len(item.input_ids)
        assert batch.input_positions[row, -label:].sum() == 0 and batch.attention_mask[row, -label:].all()
    assert torch.equal(backbone.collate(task, encoded, train=False).input_positions,
                       backbone.collate(task, encoded, train=False).attention_mask)


@pytest.mark.parametrize("kind", ["dtvg", "attempt", "fusion"])
def test_save_then_load_gives_the_same_prompts(backbones, tmp_path, kind):
    backbone = backbones["llama"]
    module = _modules(backbone)[kind]
    with torch.no_grad():  # move away from the initial values, so loading really restores state
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    module.eval()
    batch = _batch(3)
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
    save_module(tmp_path / "m", _modules(backbone)["attempt"], backbone, {})
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


def test_fusion_refuses_an_unknown_task(backbones):
    module = _modules(backbones["llama"])["fusion"]
    with pytest.raises(ConfigError, match="not on 'elsewhere'"):
        module(_batch(2, task="elsewhere"))


def test_fusion_loss_weights_are_uncertainty_weighting(backbones):
    module = _modules(backbones["llama"])["fusion"]
    with torch.no_grad():
        module.loss_log_vars.copy_(T([0.0, 1.0]))
    loss = module.combine_losses({"toy_sentiment": T(2.0), "other": T(3.0)}, {"toy_sentiment": 1, "other": 7})
    assert loss.item() == pytest.approx(2.0 + 0 + 3.0 * torch.exp(T(-1.0)).item() + 1.0)


# ---- mixed-task batches -----------------------------------------------------------------------------
def test_mixed_batches_are_deterministic_resumable_and_weighted():
    groups = [0] * 10 + [1] * 100 + [2] * 1000
    a = MixedTaskBatches(groups, 16, seed=3, cap=100)
    first = [a.next() for _ in range(5)]
    b = MixedTaskBatches(groups, 16, seed=3, cap=100)
    b.load_state({"position": 2})
    assert b.next() == first[2]
    drawn = [groups[i] for _ in range(300) for i in a.next()]
    share = [drawn.count(g) / len(drawn) for g in range(3)]
    assert share[0] == pytest.approx(10 / 210, abs=0.02) and share[1] == pytest.approx(100 / 210, abs=0.03)
    even = MixedTaskBatches(groups, 16, seed=3, first_share=0.5)
    drawn = [groups[i] for _ in range(300) for i in even.next()]
    assert drawn.count(0) / len(drawn) == pytest.approx(0.5, abs=0.03)
    assert all(batch == sorted(batch, key=lambda i: groups[i]) for batch in first)  # grouped by task


class Stop(Exception):
    pass


def test_a_mixed_task_fusion_run_resumes_to_the_same_module(backbones, tiny_models, toy_tasks, tmp_path):
    backbone = backbones["llama"]
    config = TrainConfig(model=str(tiny_models["llama"]), task=toy_tasks["target"], extra_tasks=[toy_tasks["src_a"]],
                         shots=8, extra_shots=16, task_mixing="mixed", mixing_first_share=0.5, select_on="first",
                         max_steps=5, eval_every=2, batch_size=4, lr=0.05, prompt_length=3, val_examples=8,
                         test_examples=8)
    names = [get_task(toy_tasks["target"]).task, get_task(toy_tasks["src_a"]).task]

    def module():
        g = torch.Generator().manual_seed(1)
        return FusionPrompt(torch.randn(3, 3, backbone.dim, generator=g) * 0.1,
                            torch.randn(2, backbone.dim, generator=g), names)

    whole = Trainer(config, tmp_path / "whole", backbone=backbone, prompt_module=module(), progress=False).train()

    def interrupt(step):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        Trainer(config, tmp_path / "cut", backbone=backbone, prompt_module=module(), progress=False,
                on_step=interrupt).train()
    resumed = Trainer(config, tmp_path / "cut", backbone=backbone, prompt_module=module(),
                      progress=False).train(resume=True)
    assert resumed["test"] == whole["test"] and list(resumed["test"]["metrics"]) == ["acc", "f1"]
    a, _ = load_module(tmp_path / "whole", backbone)
    b, _ = load_module(tmp_path / "cut", backbone)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    log = module_log(tmp_path / "cut")  # steps logged twice by the interruption appear once
    assert sorted({e["step"] for e in log}) == [1, 2, 3, 4, 5]
    assert {e["task"] for e in log} <= set(names)


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


def test_dtvg_stage1_is_the_trained_validation_selected_target_prompt(tmp_path, tiny_models, toy_tasks):
    """By default Stage I trains the target with the method's own budget and keeps its best validation
    checkpoint among trained steps (the authors' code) — reused from the suite's pt run when that run
    trained exactly the same; ``stage1_steps`` is the explicit cheaper option."""
    from promptvec.suites.method import METHODS

    ps = PS
    methods = [{"name": "pt", "settings": {**ps, "select_initial": False}},
               {"name": "dtvg", "settings": ps},
               {"name": "dtvg", "label": "dtvg own lr", "settings": {**ps, "lr": 0.07}},
               {"name": "dtvg", "label": "dtvg short", "settings": {**ps, "stage1_steps": 2}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "stage1-tiny", methods, steps=4,
                                           eval_every=2))
    assert METHODS["dtvg"].estimate_steps(suite, ps) == 8 and METHODS["dtvg"].estimate_steps(
        suite, {**ps, "stage1_steps": 2}) == 6
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    runs = {r.label: r for r in expand(suite)}
    record = lambda label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())  # noqa: E731

    pt = record("pt")
    reused = record("dtvg")["init"]["stage1"]
    assert reused["reused_from"] == f"runs/{runs['pt'].run_id}"
    assert not (run_dir(out, runs["dtvg"]) / "stages").exists()  # nothing trained twice
    assert (reused["best_step"], reused["validation"]) == (pt["best"]["step"], pt["best"]["validation"])

    own = record("dtvg own lr")["init"]["stage1"]  # another lr: not the pt run, so trained here
    stage = json.loads((run_dir(out, runs["dtvg own lr"]) / "stages" / "stage1" / "run.json").read_text())
    assert own["reused_from"] is None and own["steps"] == 4 and own["selected"] == "validation"
    assert [h["step"] for h in stage["history"]] == [0, 2, 4] and stage["config"]["lr"] == 0.07
    trained = [h for h in stage["history"] if h["step"] > 0]
    assert own["best_step"] == max(trained, key=lambda h: h["validation"]["acc"])["step"]  # never step 0
    assert own["wall_time_s"] > 0

    short = record("dtvg short")["init"]["stage1"]
    assert (short["steps"], short["best_step"], short["selected"]) == (2, 2, "last step")


def test_a_single_source_sweep_reports_the_best_source_and_spots_hit_rate(tmp_path, tiny_models, toy_tasks):
    ps = PS
    target = toy_tasks["target"]
    sweep = [{"name": "tpv-init", "label": f"from {name[-1]}", "tasks": [target],
              "settings": {**ps, "source": toy_tasks[name]}} for name in ("src_a", "src_b")]
    methods = [{"name": "pt", "settings": ps}, *sweep, {"name": "spot", "settings": {**ps, "early_steps": 2}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "sweep-tiny", methods))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    runs = {r.label: r for r in expand(suite)}
    record = json.loads((run_dir(out, runs["from a"]) / "run.json").read_text())
    assert record["init"]["sources"] == [toy_tasks["src_a"]]  # only that source's vector
    report = (build_report(out) / "report.md").read_text()
    assert "Which source helps, and does similarity find it?" in report
    spot = json.loads((run_dir(out, runs["spot"]) / "run.json").read_text())["init"]
    scores = {label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())["test"]["metrics"]["acc"]
              for label in ("from a", "from b")}
    chosen = scores["from a" if spot["chosen"] == toy_tasks["src_a"] else "from b"]
    hit = int(chosen >= max(scores.values()) - 0.01)
    assert f"**spot** chose a source within 1 point of the best single source in {hit} of 1 runs" in report
    assert (out / "report" / "similarity_vs_gain.png").is_file()


def test_a_sweep_source_must_be_a_source_of_every_target_it_runs_on(tmp_path, tiny_models, toy_tasks):
    methods = [{"name": "tpv-init", "settings": {**PS, "source": "imdb"}}]
    with pytest.raises(ConfigError, match="starts from source 'imdb'"):
        load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "bad-sweep", methods))


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
