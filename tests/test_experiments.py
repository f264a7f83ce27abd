"""Suites: validation, expansion, resumable runner, budget guard, parallel jobs, results and report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import ConfigError
from promptvec.experiments import runner as runner_module
from promptvec.experiments.report import build_report
from promptvec.experiments.runner import run_suite, status_of
from promptvec.suites.plan import expand
from promptvec.suites.schema import load_suite
from promptvec.training.phases import PHASES
from tests.conftest import PS, tiny_suite_file, tiny_transfer_suite

ZERO_ONLY = [{"name": "zero", "label": "z"}]


def test_expansion_deduplicates_training_free_methods(tmp_path, tiny_models, toy_task):
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task))
    ids = [r.run_id for r in expand(suite)]
    assert ids == ["PT/toy/16shot/o0-s0", "PT/toy/16shot/o0-s1", "origin/toy/0shot/o0-s-",
                   "no-prompt/toy/0shot/o--s-"]


def test_a_method_can_be_limited_to_some_shot_sizes(tmp_path, tiny_models, toy_task):
    methods = [{"name": "pt", "label": "PT"}, {"name": "pt", "label": "PT small", "shots": [4]}]
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, shots=[4, 16], seeds=[0], methods=methods,
                                       stats={}))
    assert [r.run_id for r in expand(suite)] == ["PT/toy/4shot/o0-s0", "PT/toy/16shot/o0-s0",
                                                 "PT-small/toy/4shot/o0-s0"]
    methods[1]["shots"] = [8]
    with pytest.raises(ConfigError, match=r"names shots \[8\] that are not in the suite's shots \[4, 16\]"):
        load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, shots=[4, 16], methods=methods, stats={}))


@pytest.mark.parametrize("change, message", [
    ({"methods": [{"name": "nope"}]}, "unknown method 'nope'"),
    ({"tasks": []}, "'tasks'"),
    ({"stats": {"baseline": "zzz"}}, "not one of the methods"),
    ({"methods": [{"name": "pt", "settings": {"lr": -1}}]}, "lr"),
    ({"shots": [-1]}, "shots must be ≥ 0"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_suites_are_refused_with_the_field(tmp_path, tiny_models, toy_task, change, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, **change))


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\ntasks: [sst2\n")
    with pytest.raises(ConfigError, match="line"):
        load_suite(path)


def test_run_skip_resume_results_and_report(tmp_path, tiny_models, toy_task, backbones):
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task))
    out = tmp_path / "out"
    first = run_suite(suite, out, progress=False, log=lambda m: None)
    assert first.completed == 4 and not first.stopped
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["model_fingerprint"] and len(row["data_hash"]) == 64 and row["versions"]["torch"]
        assert row["n_test"] == 16 and len(row["code"][0]["commit"]) == 40  # the code each run ran
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4
    again = run_suite(suite, out, progress=False, log=lambda m: None)
    assert again.completed == 0  # nothing redone
    for row in rows:  # where each run's time went: the trained ones by phase, the untrained scored once
        phases = row["phases"]
        expected = set(PHASES) if row["label"] == "PT" else {"test"}
        assert set(phases) == expected and phases["test"]["examples"] == 16 and phases["test"]["tokens"] > 0
    report = build_report(out)
    md = (report / "report.md").read_text()
    assert "| PT |" in md and "| origin (baseline) |" in md
    assert "one-sample" in md  # PT (2 seeds) vs the deterministic origin baseline
    time_table = md.split("## Where the time went")[1].split("\n## ")[0]
    pt = next(line for line in time_table.splitlines() if line.startswith("| PT |")).split(" | ")
    trained = [row for row in rows if row["label"] == "PT"]
    assert pt[1:3] == ["2", "2"] and float(pt[4 + PHASES.index("steps")]) == pytest.approx(  # runs, timed; steps (s)
        sum(r["phases"]["steps"]["seconds"] for r in trained), abs=0.6)
    assert (report / "scores_by_task.png").stat().st_size > 1000
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html


def test_budget_stop_then_resume_matches_uninterrupted(tmp_path, tiny_models, toy_task, monkeypatch):
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, stats={}, methods=[
        {"name": "pt", "label": "PT", "settings": {"prompt_length": 3, "lr": 0.05}}]))
    reference = run_suite(suite, tmp_path / "ref", progress=False, log=lambda m: None)
    assert reference.completed == 2

    class Clock:  # deterministic time: the budget runs out after a fixed number of checks
        calls = 0

        @classmethod
        def time(cls):
            cls.calls += 1
            return 1000.0 if cls.calls <= 4 else 10**9

    monkeypatch.setattr(runner_module, "time", Clock)
    stopped = run_suite(suite, tmp_path / "cut", max_minutes=1, progress=False, log=lambda m: None)
    assert stopped.stopped and stopped.completed == 0
    status = status_of(suite, tmp_path / "cut", expand(suite)[0])
    assert status.state == "partial" and 0 < status.step < 4
    monkeypatch.undo()
    resumed = run_suite(suite, tmp_path / "cut", progress=False, log=lambda m: None)
    assert resumed.completed == 2
    ref_rows = (tmp_path / "ref" / "results.jsonl").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "results.jsonl").read_text().splitlines()
    assert [json.loads(r)["metrics"] for r in ref_rows] == [json.loads(r)["metrics"] for r in cut_rows]


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results(tmp_path, tiny_models, toy_task):
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task))
    run_suite(suite, tmp_path / "serial", progress=False, log=lambda m: None)
    outcome = run_suite(suite, tmp_path / "parallel", jobs=2, progress=False, log=lambda m: None)
    assert outcome.completed == 4
    serial = {json.loads(r)["run_id"]: json.loads(r)["metrics"]
              for r in (tmp_path / "serial" / "results.jsonl").read_text().splitlines()}
    parallel = {json.loads(r)["run_id"]: json.loads(r)["metrics"]
                for r in (tmp_path / "parallel" / "results.jsonl").read_text().splitlines()}
    assert serial == parallel


def test_changed_suite_is_refused_for_an_existing_run(tmp_path, tiny_models, toy_task):
    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, stats={}, methods=ZERO_ONLY))
    run_suite(suite, tmp_path / "out", progress=False, log=lambda m: None)
    changed = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, stats={}, methods=ZERO_ONLY,
                                budget={"test_examples": 8}))
    with pytest.raises(ConfigError, match="different suite settings"):
        run_suite(changed, tmp_path / "out", progress=False, log=lambda m: None)


@pytest.mark.slow
def test_dry_run_of_a_paper_scale_suite_answers_offline(tmp_path):
    body = {"name": "paper", "backbone": {"model": "google-t5/t5-base"}, "tasks": ["mnli", "qnli", "rte", "mrpc"],
            "shots": [None], "seeds": [0, 1, 2], "origins": [0, 1],
            "budget": {"steps": 30000, "batch_size": 32, "eval_every": 1000, "test_examples": None},
            "methods": [{"name": "pt", "settings": {"lr": 0.3, "prompt_length": 100}},
                        {"name": "zero", "settings": {"prompt": "none"}}]}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(body))
    result = CliRunner().invoke(app, ["experiment", "run", str(path), "--out", str(tmp_path / "o"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "28 runs, 0 done" in result.output and " h" in result.output  # 24 PT + 4 no-prompt, hours of CPU
    by_kind = r"\(steps [\d.]+ h, evaluation [\d.]+ (h|min), other [\d.]+ (s|min)\)"  # each run's fixed cost too
    assert re.search(by_kind, " ".join(result.output.split()))
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_report_cli_on_a_non_suite_folder(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a suite folder" in result.output


def test_runs_made_before_a_new_option_still_count_as_done(tmp_path, tiny_models, toy_task):
    import json as _json

    from promptvec.suites.plan import spec_path

    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, stats={}, methods=ZERO_ONLY))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    [run] = expand(suite)
    spec_file = spec_path(out, run)
    recorded = _json.loads(spec_file.read_text())
    del recorded["payload"]["budget"]["early_stopping_patience"]  # as if the option did not exist back then
    recorded["fingerprint"] = "0" * 16
    spec_file.write_text(_json.dumps(recorded))
    assert status_of(suite, out, run).state == "done"
    tracked = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task, stats={}, methods=ZERO_ONLY,
                                budget=suite.budget.model_dump() | {"report_to": ["tensorboard"]}))
    assert run.fingerprint(suite) == expand(tracked)[0].fingerprint(tracked)  # tracking is not a result setting


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("examples/suites/*.yaml")),
                         ids=lambda p: p.stem)
def test_example_suites_are_valid(path):
    from promptvec.suites.plan import is_source

    suite = load_suite(path)
    runs = expand(suite)
    assert runs and all(r.task not in suite.sources.targets.get(r.task, []) for r in runs)
    if path.stem == "transfer-smollm2":  # the study on the real model: issue 15's design
        names = {m.name for m in suite.methods}
        assert {"zero", "pt", "tpv-init", "single-source", "spot", "attempt", "dtvg", "fusion"} <= names
        assert set(suite.stats.baselines) == {"pt", "spot", "no prompt"} and len(suite.seeds) >= 5
        assert all(len(sources) >= 2 for sources in suite.sources.targets.values()) and suite.sources.library
        assert suite.sources.shots >= 1000
    elif path.stem.startswith("transfer"):  # the MiniLM reproduction: every method, compared with pt and spot
        names = {m.name for m in suite.methods}
        assert {"pt", "tpv-init", "spot", "spot-multi", "attempt", "dtvg", "fusion"} <= names
        assert sum(m.name == "dtvg" for m in suite.methods) >= 3 and suite.stats.baselines == ["pt", "spot"]
        assert len(suite.seeds) == 3 and any(not is_source(r) and r.task in ("rte", "mrpc") for r in runs)


TPV_FEWSHOT = {"random origin", "TPV init", "single source", "multi-source", "no prompt"}


@pytest.mark.parametrize(("calibration_file", "study_file", "required"), [
    ("calibration-transfer.yaml", "transfer-smollm2.yaml", {"dtvg", "tpv-init", "pt"}),
    ("calibration-generation.yaml", "generation.yaml", {"dtvg", "tpv-init", "pt"}),
    ("calibration-tpv-fewshot.yaml", "tpv-fewshot.yaml", TPV_FEWSHOT),  # every method, on a smaller model
])
def test_a_calibration_suite_is_its_study_on_fewer_tasks_seeds_and_methods(calibration_file, study_file, required):
    """A calibration suite checks the cost model on today's code against its study's runs: it must do the same work
    per run — the same model, budget and source recipe, and per method the same settings — on a subset of the
    study's tasks, shots, seeds and methods."""
    suites = Path(__file__).parent.parent / "examples" / "suites"
    calibration, study = load_suite(suites / calibration_file), load_suite(suites / study_file)
    assert (calibration.backbone, calibration.origins, calibration.budget) == (study.backbone, study.origins,
                                                                              study.budget)
    assert set(calibration.tasks) <= set(study.tasks) and set(calibration.shots) <= set(study.shots)
    assert set(calibration.seeds) < set(study.seeds)
    recipe = ("shots", "steps", "settings", "library", "multi_task")
    assert [getattr(calibration.sources, f) for f in recipe] == [getattr(study.sources, f) for f in recipe]
    assert set(calibration.sources.tasks) <= set(study.sources.tasks)
    assert calibration.sources.targets == {t: study.sources.targets[t] for t in calibration.tasks
                                           if t in study.sources.targets}
    studied = {method.label: method for method in study.methods}
    assert required <= {method.label for method in calibration.methods}
    for method in calibration.methods:
        same = studied[method.label]
        assert method.model_copy(update={"tasks": None}) == same.model_copy(update={"tasks": None})
        assert set(method.tasks or calibration.tasks) <= set(same.tasks or study.tasks)


def test_report_says_what_the_table_could_detect(tmp_path):
    """Synthetic results of two methods over 5 paired seeds: the report's power paragraph gives the
    spread of the paired differences and the detectable difference computed from it."""
    from promptvec.evaluation.stats import minimal_detectable_difference
    from promptvec.suites.schema import SuiteSpec

    suite = SuiteSpec(name="power", tasks=["sst2"], shots=[16], seeds=[0, 1, 2, 3, 4],
                      methods=[{"name": "pt", "label": "pt"}, {"name": "random", "label": "other"}],
                      stats={"baseline": "pt"})
    (tmp_path / "suite.json").write_text(json.dumps(suite.model_dump()))
    base = [0.80, 0.82, 0.79, 0.85, 0.81]
    other = [0.83, 0.82, 0.83, 0.86, 0.87]  # differences .03 .00 .04 .01 .06
    rows = [{"run_id": f"{label}/{seed}", "label": label, "method": label, "task": "sst2", "shots": 16,
             "seed": seed, "origin": 0, "metrics": {"acc": score}, "n_test": 500, "best_step": 10,
             "model_fingerprint": "f" * 64, "versions": {}, "status": "completed"}
            for label, scores in (("pt", base), ("other", other)) for seed, score in enumerate(scores)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = (build_report(tmp_path) / "report.md").read_text()
    import numpy as np

    sd = float(np.std([o - b for o, b in zip(other, base, strict=True)], ddof=1))
    assert f"Power: over n = 5 seeds the tested differences vary from seed to seed by {100 * sd:.1f} points" in md
    assert f"{100 * minimal_detectable_difference(sd, 5, 0.05):.1f} points at α = 0.05 uncorrected" in md
    # one summary per method and baseline, ties stated with their range (p ≈ 0.06 here: a tie)
    assert ("**other** vs **pt** (1 cell): better on none; worse on none; no significant difference on 1 "
            "(difference +2.8 points).") in md


def test_figures_give_each_method_its_own_style_and_a_chance_line():
    from promptvec.experiments.plots import chance_level, method_styles

    styles = method_styles([f"m{i}" for i in range(14)])
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == 14
    assert len({s["color"] for s in styles.values()}) == 14  # colours alone already differ
    assert chance_level("sst2") == 0.5 and chance_level("trec") == pytest.approx(1 / 6)
    assert chance_level("cola") == 0.0  # MCC
    assert chance_level("sst2+trec") is None


def test_each_training_default_and_limit_is_the_train_configs(tmp_path, tiny_models, toy_task):
    """The suite budget, the backbone section and every method's settings take their defaults and
    limits from TrainConfig — and a bad value anywhere, sources.settings included, is refused when the
    suite is loaded (so by --dry-run), not when the run reaches it."""
    from promptvec.methods.pt import PTSettings
    from promptvec.suites.schema import BackboneSpec, BudgetSpec
    from promptvec.training.config import TrainConfig

    defaults = {n: (f.default_factory() if f.default_factory else f.default)
                for n, f in TrainConfig.model_fields.items()}
    budget, backbone, pt = BudgetSpec(), BackboneSpec(), PTSettings()
    assert budget.steps == defaults["max_steps"] and budget.val_examples == defaults["val_examples"]
    assert budget.eval_seed == defaults["eval_seed"] and budget.test_examples == defaults["test_examples"]
    assert backbone.max_length == defaults["max_length"] and backbone.model == defaults["model"]
    assert (pt.prompt_length, pt.lr, pt.weight_decay, pt.warmup_ratio, pt.select_initial) == tuple(
        defaults[k] for k in ("prompt_length", "lr", "weight_decay", "warmup_ratio", "select_initial"))
    with pytest.raises(ValidationError):
        PTSettings(prompt_length=4096)  # TrainConfig's limit (≤ 2048)
    with pytest.raises(ValidationError):
        BackboneSpec(max_length=8)

    path = Path(tiny_suite_file(tmp_path, tiny_models, toy_task))
    body = yaml.safe_load(path.read_text())
    body["methods"] = [{"name": "tpv-init", "settings": {"prompt_length": 2}}]
    body["sources"] = {"tasks": ["sst2"], "targets": {body["tasks"][0]: ["sst2"]}, "settings": {"lr_rate": 0.3}}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match="sources.settings: method 'pt' settings: 'lr_rate'"):
        load_suite(path)
    body["sources"]["settings"] = {"prompt_length": 5000}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match="prompt_length"):
        load_suite(path)


def test_a_worker_whose_suite_process_is_gone_stops_instead_of_training_on(tmp_path, tiny_models, toy_task):
    """Killing `promptvec experiment run` (a kill, not Ctrl-C) used to leave its `--jobs` workers
    training on alone, writing into the suite folder beside the next run of the same suite. A worker
    now checks at every step that the suite's process still exists, stops at a checkpoint if not, and
    the run resumes with the next `experiment run`."""
    import os

    from promptvec.experiments.runner import WorkerResources, execute_run

    class SuiteDiesDuringTraining(WorkerResources):
        checks = 0

        def orphaned(self) -> bool:  # the suite's process is gone from the third check on
            self.checks += 1
            return self.checks > 2

    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task))
    run = next(r for r in expand(suite) if r.method == "pt")
    out = tmp_path / "out"
    assert WorkerResources(parent_pid=os.getppid() + 10_000).orphaned()
    dying = SuiteDiesDuringTraining(parent_pid=os.getppid())
    assert execute_run(suite.model_dump(), run, str(out), None, None, dying)["status"] == "stopped"
    assert dying.checks == 3  # checked before the run and at each step: stopped at the second step
    alive = WorkerResources(parent_pid=os.getppid())
    assert not alive.orphaned()
    assert execute_run(suite.model_dump(), run, str(out), None, None, alive)["status"] == "completed"


def test_the_cost_estimate_follows_the_input_length(tmp_path, toy_task):
    """A run's work is counted in tokens of each task's own inputs, read from its local data without
    loading a model (characters / 4, cut at max_length); a task whose data is not here counts as the
    default length; a split smaller than the budget is scored whole, as the runs score it; the estimate adds
    the work up at the calibrated prices."""
    from promptvec.experiments.cost import CALIBRATION, DEFAULT_INPUT_TOKENS, UNKNOWN_SPLIT, CostModel, task_tokens
    from promptvec.experiments.runner import estimate_breakdown, estimate_seconds

    long_folder = tmp_path / "long"
    long_folder.mkdir()
    for split, size in (("train", 6), ("validation", 10), ("test", 4)):
        rows = [{"text": "word " * 100, "label": ["positive", "negative"][i % 2]} for i in range(size)]
        (long_folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    long_task = long_folder / "long.yaml"
    long_task.write_text(toy_task.read_text().replace("toy_sentiment", "long_reviews"))
    long = task_tokens(str(long_task), 256, None)
    assert long.input == pytest.approx(len("Review: " + "word " * 100 + "\nSentiment:") / 4, rel=0.05)
    assert (long.answer, long.decoded) == (0, 0)  # a label task: scored by rank classification
    assert long.input > 4 * task_tokens(str(toy_task), 256, None).input
    assert task_tokens(str(long_task), 64, None).input == 64  # max_length
    # each input is cut on its own: half of them 4× as long as the cut, half 1/4 of it, average 3/4 of it
    mixed_folder = tmp_path / "mixed"
    mixed_folder.mkdir()
    rows = [{"text": "abcd" * (256 if i % 2 else 4), "label": "positive"} for i in range(10)]
    for split in ("train", "validation", "test"):
        (mixed_folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mixed_task = mixed_folder / "mixed.yaml"
    mixed_task.write_text(toy_task.read_text().replace("toy_sentiment", "mixed_lengths"))
    short = len("Review: " + "abcd" * 4 + "\nSentiment:") / 4
    assert task_tokens(str(mixed_task), 64, None).input == pytest.approx((64 + short) / 2)
    assert task_tokens("scitail", 256, None).input == DEFAULT_INPUT_TOKENS  # a Hub-only task, no local data
    # the splits' sizes cap what a budget scores; no limit scores the whole split (unknown: the stated default)
    assert (long.validated(8), long.scored(6), long.validated(None), long.scored(None)) == (8, 4, 10, 4)
    assert (long.trained(4), long.trained(None), task_tokens("scitail", 256, None).trained(4)) == (4, 6, None)
    assert task_tokens("scitail", 256, None).scored(None) == UNKNOWN_SPLIT["test"]

    body = {"name": "e", "backbone": {"model": "default"}, "tasks": [str(long_task)], "shots": [6], "seeds": [0],
            "budget": {"steps": 10, "batch_size": 4, "eval_every": 5, "val_examples": 8, "test_examples": 6},
            "methods": [{"name": "pt", "settings": {"prompt_length": 20}}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(body))
    suite = load_suite(tmp_path / "e.yaml")
    (run,) = expand(suite)
    work = CostModel(suite).work(run)
    # 10 steps of 3 examples (6 examples at batch 4: batches of 4 and 2), the shared prompt's 20 rows once per step;
    # evaluations: the start and 2 during training on 8 validation examples, then the test split's 4 (the budget
    # asks 6)
    assert work.train_tokens == pytest.approx(10 * 3 * long.input + 10 * 20)
    assert work.rank_tokens == pytest.approx((3 * 8 + 4) * long.input)
    assert work.decode_tokens == 0
    expected = CALIBRATION.per_run_s + CALIBRATION.train_token_s * work.train_tokens \
        + CALIBRATION.rank_token_s * work.rank_tokens
    assert estimate_seconds(suite, [status_of(suite, tmp_path / "none", run)]) == pytest.approx(expected)
    # by kind of work (what the dry run prints beside the total): the steps at the training price, the evaluations
    # at the rank price, no start to make, no analysis
    assert estimate_breakdown(suite, [status_of(suite, tmp_path / "none", run)]) == pytest.approx({
        "start": 0.0, "steps": CALIBRATION.train_token_s * work.train_tokens,
        "evaluation": CALIBRATION.rank_token_s * work.rank_tokens, "other": CALIBRATION.per_run_s, "analyses": 0.0})
    assert CostModel(suite).work(run, done_steps=5).train_tokens == pytest.approx(work.train_tokens / 2)


def test_the_cost_estimate_scales_a_model_by_its_compute_per_token(tmp_path):
    """Another model's tokens cost the reference's prices times its compute per token: the weights of its layers
    (attention at its key/value heads' size, a gated MLP's three matrices, a seq2seq decoder's cross-attention),
    not its embedding tables — a larger vocabulary costs nothing, a deeper model proportionally more."""
    from promptvec.experiments.cost import REFERENCE_COMPUTE, compute_parameters, model_compute

    smollm2 = {"hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "num_attention_heads": 9,
               "num_key_value_heads": 3, "hidden_act": "silu", "vocab_size": 49152}
    per_layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536
    assert compute_parameters(smollm2) == 30 * per_layer == REFERENCE_COMPUTE
    assert model_compute("default") == REFERENCE_COMPUTE
    assert compute_parameters({**smollm2, "vocab_size": 10 * 49152}) == REFERENCE_COMPUTE
    assert compute_parameters({**smollm2, "num_hidden_layers": 60}) == 2 * REFERENCE_COMPUTE
    assert compute_parameters({**smollm2, "hidden_act": "gelu"}) == 30 * (per_layer - 576 * 1536)  # not gated
    assert model_compute("minilm") == pytest.approx(0.1 * REFERENCE_COMPUTE)  # 6 layers of 384: 0.17× stored
    t5 = {"d_model": 512, "num_layers": 6, "d_ff": 2048, "num_heads": 8, "d_kv": 64, "is_encoder_decoder": True}
    layer = 4 * 512 * 512 + 2 * 512 * 2048
    assert compute_parameters(t5) == 6 * layer + 6 * (layer + 4 * 512 * 512) == model_compute("t5-small")
    folder = tmp_path / "local-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**smollm2, "num_hidden_layers": 15}))
    assert model_compute(str(folder)) == REFERENCE_COMPUTE / 2
    assert model_compute("HuggingFaceTB/SmolLM2-1.7B") == 1.7e9  # a size in the name: its stored count
    assert model_compute("someone/unnamed-model") is None


def test_the_cost_estimate_counts_the_steps_a_few_shot_run_fills(tmp_path, toy_task):
    """A step trains on the batch the run's order cuts, at the batch size the run trains with: 10 examples at
    batch 8 are batches of 8 and 2, so 30 steps train 150 examples, not 240; 16 or all 64 of the toy task's
    examples fill every batch of 8; a method whose settings set batch 16 trains 16 per step on 64 examples,
    and 10 on 10."""
    from promptvec.experiments.cost import CostModel, task_tokens

    body = {"name": "f", "backbone": {"model": "default"}, "tasks": [str(toy_task)], "shots": [10, 16, None],
            "seeds": [0], "budget": {"steps": 30, "batch_size": 8, "eval_every": 30, "val_examples": 8,
                                     "test_examples": 8},
            "methods": [{"name": "pt", "settings": {"prompt_length": 4}},
                        {"name": "pt", "label": "batch 16", "settings": {"prompt_length": 4, "batch_size": 16}}]}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(body))
    suite = load_suite(tmp_path / "f.yaml")
    model = CostModel(suite)
    per_example = task_tokens(str(toy_task), suite.backbone.max_length, None).input
    trained = {(run.label, run.shots): model.work(run).train_tokens for run in expand(suite)}
    assert trained["pt", 10] == pytest.approx(150 * per_example + 30 * 4)
    assert trained["pt", 16] == pytest.approx(240 * per_example + 30 * 4) == trained["pt", None]
    assert trained["batch 16", 10] == pytest.approx(300 * per_example + 30 * 4)  # 10 examples: one batch of 10
    assert trained["batch 16", None] == pytest.approx(480 * per_example + 30 * 4)


def test_the_cost_estimate_counts_answers_and_decoding_steps(tmp_path, toy_generation_tasks):
    """A free-text task trains on its answer too; an evaluation decodes up to max_gen_toks steps per
    example until a prompt has trained (then about the answer's length)."""
    from promptvec.experiments.cost import CostModel, task_tokens
    from promptvec.tasks import get_task, load_task_data

    tokens = task_tokens(toy_generation_tasks["gen_a"], 256, None)
    data = load_task_data(get_task(toy_generation_tasks["gen_a"]))
    assert tokens.input == pytest.approx(sum(len(e.text) for e in data.train[:200]) / len(data.train[:200]) / 4)
    assert tokens.answer == pytest.approx(sum(len(e.label) for e in data.train[:200]) / len(data.train[:200]) / 4 + 1)
    assert tokens.decoded == 4  # max_gen_toks
    body = {"name": "g", "backbone": {"model": "default"}, "tasks": [toy_generation_tasks["gen_a"]], "shots": [0, 8],
            "seeds": [0], "origins": [0],
            "budget": {"steps": 2, "batch_size": 4, "eval_every": 2, "val_examples": 8, "test_examples": 6},
            "methods": [{"name": "pt", "settings": {"prompt_length": 5}}]}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(body))
    suite = load_suite(tmp_path / "g.yaml")
    untrained, trained = sorted(expand(suite), key=lambda r: r.shots or 0)
    model = CostModel(suite)
    assert model.work(untrained).decode_tokens == pytest.approx(6 * 4)  # the origin scored untrained
    # trained: the start's validation decodes to the limit, the later one and the test about the answer
    assert model.work(trained).decode_tokens == pytest.approx(8 * 4 + (8 + 6) * min(4, tokens.answer))
    assert model.work(trained).train_tokens == pytest.approx(2 * 4 * (tokens.input + tokens.answer) + 2 * 5)


def test_the_cost_estimate_counts_a_planned_copy_once_and_a_per_input_prompt_on_every_example(
        tmp_path, tiny_models, toy_tasks):
    """Trainings another planned run does identically are copied at run time, so they cost nothing:
    DTVG's Stage I when pt trains the same, SPoT's training when the plan trains from each of its
    sources, the default single source when a named one is the same; a prompt made per input (ATTEMPT)
    pays its rows on every example instead of once per step."""
    from promptvec.experiments.cost import CostModel

    plain = {"select_initial": False, **PS}
    path = tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "copies", [
        {"name": "pt", "settings": plain},
        {"name": "single-source", "label": "from a", "settings": {**plain, "source": toy_tasks["src_a"]}},
        {"name": "single-source", "label": "from b", "settings": {**plain, "source": toy_tasks["src_b"]}},
        {"name": "single-source", "label": "first source", "settings": plain},
        {"name": "spot", "settings": {**plain, "early_steps": 1}},
        {"name": "dtvg", "settings": plain},
        {"name": "dtvg", "label": "dtvg pt-like", "settings": {**plain, "lr": 0.01}},
        {"name": "attempt", "settings": plain}])
    suite = load_suite(path)
    model = CostModel(suite)
    runs = {(r.label or r.method): r for r in expand(suite) if not r.run_id.startswith("source/")}
    assert model.copied(runs["pt"]) == [False]
    assert model.copied(runs["from a"]) == [False] and model.copied(runs["from b"]) == [False]
    assert model.copied(runs["first source"]) == [True]  # = from a
    assert model.copied(runs["spot"]) == [False, True]  # its early prompt is its own; its training is a copy
    assert model.copied(runs["dtvg"]) == [True, False]  # Stage I = pt's run
    assert model.copied(runs["dtvg pt-like"]) == [False, False]  # another lr: its Stage I is its own
    assert model.work(runs["first source"]).train_tokens == 0
    assert model.work(runs["dtvg"]).train_tokens == pytest.approx(model.work(runs["pt"]).train_tokens)
    attempt, pt = model.work(runs["attempt"]), model.work(runs["pt"])
    steps, batch, rows = 3, 4, PS["prompt_length"]
    assert attempt.train_tokens - pt.train_tokens == pytest.approx(steps * batch * rows - steps * rows)


def test_the_cost_estimate_counts_the_candidates_auto_scores_before_training(tmp_path, tiny_models, toy_tasks):
    """``auto`` scores no prompt, the origin, each source and the combinations of the 2..combine best on the run's
    training examples before it trains: that is evaluation work on top of pt's, and none once training began."""
    from promptvec.experiments.cost import CostModel, task_tokens

    plain = {"select_initial": False, **PS}
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "auto-cost", [
        {"name": "pt", "settings": plain}, {"name": "auto", "settings": plain},
        {"name": "auto", "label": "singles", "settings": {**plain, "combine": 0}}]))
    model = CostModel(suite)
    runs = {(r.label or r.method): r for r in expand(suite) if not r.run_id.startswith("source/")}
    per_example = task_tokens(toy_tasks["target"], suite.backbone.max_length, None).input
    pt = model.work(runs["pt"]).rank_tokens
    shots, sources = 8, 2
    assert model.work(runs["auto"]).rank_tokens - pt == pytest.approx((2 + sources + 1) * shots * per_example)
    assert model.work(runs["singles"]).rank_tokens - pt == pytest.approx((2 + sources) * shots * per_example)
    assert model.work(runs["auto"], done_steps=1).rank_tokens == model.work(runs["pt"], done_steps=1).rank_tokens


def test_the_cost_estimate_splits_a_run_as_its_record_splits_its_phases(tmp_path, tiny_models, toy_tasks):
    """The work of a run, by the phases its record times (what the cost benchmark fits phase by phase): an
    ``auto`` choice and a stage trained before the run's own training (DTVG's Stage I) are ``start``; the
    run's own steps, its validations and test, and its fixed cost are apart; together they are the run."""
    import dataclasses

    from promptvec.experiments.cost import CostModel, RunWork

    plain = {"select_initial": False, **PS}
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "phase-cost", [
        {"name": "pt", "settings": plain}, {"name": "auto", "settings": plain},
        {"name": "dtvg", "settings": {**plain, "lr": 0.01}}]))  # another lr than pt's: its Stage I is its own
    model = CostModel(suite)
    runs = {(r.label or r.method): r for r in expand(suite) if not r.run_id.startswith("source/")}
    for run in runs.values():
        total = sum(model.phase_work(run).values(), RunWork())
        assert dataclasses.astuple(total) == pytest.approx(dataclasses.astuple(model.work(run)))
    pt, auto, dtvg = (model.phase_work(runs[name]) for name in ("pt", "auto", "dtvg"))
    assert pt["start"] == RunWork() and pt["other"] == RunWork(runs=1.0)
    assert pt["steps"] == RunWork(train_tokens=model.work(runs["pt"]).train_tokens)
    assert pt["evaluation"] == RunWork(rank_tokens=model.work(runs["pt"]).rank_tokens)
    assert auto["steps"] == pt["steps"] and auto["evaluation"] == pt["evaluation"]
    assert auto["start"].rank_tokens > 0 and auto["start"].train_tokens == 0  # the candidates it scores
    assert dtvg["start"].train_tokens > 0 and dtvg["start"].rank_tokens > 0  # Stage I and its validations
    assert dtvg["steps"].train_tokens > 0 and dtvg["evaluation"].rank_tokens > 0


@pytest.mark.slow
def test_across_tasks_pools_each_comparison_over_tasks_with_a_forest_plot(tmp_path, tiny_models, toy_tasks):
    from promptvec.evaluation.stats import pool_effects, task_effect

    path = tiny_suite_file(tmp_path, tiny_models, toy_tasks["src_a"], tasks=[toy_tasks["src_a"], toy_tasks["target"]],
                           stats={"baseline": "origin", "across_tasks": [
                               {"method": "PT", "baseline": "no prompt", "primary": True},
                               {"method": "PT", "baseline": "origin"}, {"method": "origin", "baseline": "no prompt"}]})
    out = tmp_path / "out"
    run_suite(load_suite(path), out, progress=False, log=lambda m: None)
    report = (build_report(out) / "report.md").read_text()
    assert "## Across tasks" in report and (out / "report" / "forest-PT-vs-no-prompt-16-shot.png").is_file()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    def values(label, task):
        return {(r["seed"], r["origin"]): r["metrics"]["acc"] for r in rows
                if r["label"] == label and r["task"] == task}

    effects = [task_effect(t, values("PT", t), values("no prompt", t))
               for t in (toy_tasks["src_a"], toy_tasks["target"])]
    pooled = pool_effects(effects)
    line = next(row for row in report.splitlines() if row.startswith("| PT vs no prompt 16-shot (primary)"))
    assert f"{100 * pooled.mean:+.1f} [{100 * pooled.t_low:+.1f}, {100 * pooled.t_high:+.1f}]" in line
    assert f"{100 * pooled.re_estimate:+.1f}" in line and "(adj." not in line  # the primary is tested alone
    secondary = [row for row in report.splitlines() if row.startswith("| PT vs origin") or row.startswith(
        "| origin vs no prompt")]
    assert len(secondary) == 2 and "(adj." in secondary[0]
    assert secondary[1].startswith("| origin vs no prompt 16-shot | 0 | – |")  # two single values: no test


@pytest.mark.parametrize(("across", "message"), [
    ([{"method": "PT", "baseline": "nope"}], "stats.across_tasks names"),
    ([{"method": "PT", "baseline": "origin", "primary": True},
      {"method": "origin", "baseline": "no prompt", "primary": True}], "at most one comparison is primary"),
])
def test_across_tasks_is_checked(tmp_path, tiny_models, toy_task, across, message):
    path = tiny_suite_file(tmp_path, tiny_models, toy_task, stats={"across_tasks": across})
    with pytest.raises(ConfigError, match=message):
        load_suite(path)


def test_method_settings_are_parsed_once_when_the_suite_loads_and_carried_typed(tmp_path, tiny_models, toy_task,
                                                                                  monkeypatch):
    """Every run of a method entry carries the model the loader parsed (no method re-parses its
    settings); generic code asks the method (prompt rows, a named source) instead of reading keys."""
    from promptvec.methods.pt import PTSettings
    from promptvec.methods.zero.method import ZeroSettings
    from promptvec.suites.method import METHODS

    suite = load_suite(tiny_suite_file(tmp_path, tiny_models, toy_task))
    parsed = {m.display: m.options for m in suite.methods}
    calls = []
    original = PTSettings.__init__

    def counting(self, **data):
        calls.append(data)
        original(self, **data)

    monkeypatch.setattr(PTSettings, "__init__", counting)
    for run in expand(suite):
        if run.label in parsed:
            assert run.options(type(parsed[run.label])) is parsed[run.label]
    assert calls == []  # nothing parsed again
    with pytest.raises(TypeError, match="not ZeroSettings"):
        next(r for r in expand(suite) if r.method == "pt").options(ZeroSettings)
    assert METHODS["pt"].prompt_rows(METHODS["pt"].validate_settings({"prompt_length": 7})) == 7
    assert METHODS["zero"].prompt_rows(METHODS["zero"].validate_settings({"prompt": "none"})) == 0
    assert METHODS["tpv-init"].named_source(METHODS["tpv-init"].validate_settings({"source": "x"})) == "x"
    assert METHODS["pt"].named_source(METHODS["pt"].validate_settings({})) is None


@pytest.mark.slow
def test_the_cost_model_benchmark_sets_estimates_against_the_committed_runs(shared_data):
    """benchmarks/cost_model.py: per method, the estimate of every committed run and its recorded time;
    a recorded copy (its twin paid for it) is measured as free and the plan alone already counts it as
    a copy (SPoT's training = the sweep's run from the source it picks); the fitted prices, held out
    by study, predict a study from the others."""
    from benchmarks.cost_model import fit, per_method, study_samples

    samples = study_samples("transfer", "transfer-smollm2.yaml", str(shared_data))
    rows = {r["label"]: r for r in per_method(samples, fit(samples))}
    recorded = [json.loads(line) for line in
                (Path(__file__).parents[1] / "docs/results/transfer/results.jsonl").read_text().splitlines()]
    pt = [r for r in recorded if r["label"] == "pt"]
    assert rows["pt"]["runs"] == len(pt)
    assert rows["pt"]["measured_s"] == pytest.approx(sum(r["wall_time_s"] for r in pt))
    assert 0.5 < rows["pt"]["ratio"] < 2  # fitted on this study: the right order of magnitude at least
    spot = rows["spot"]
    assert spot["recorded_copies"] == spot["predicted_copies"] == spot["runs"] > 0 and spot["measured_s"] == 0
    assert spot["ratio"] == 1.0  # all copies, and counted as copies

    # the library study: its sources were copied from a library (copies on both sides); runs in flight while the
    # study was paused are left out; an auto run's choice, which its wall time left out then, is its own cost
    from benchmarks.cost_model import PAUSED

    folder = Path(__file__).parents[1] / "docs/results/library/runs"
    library = study_samples("library/runs", "library-loto.yaml", str(shared_data))
    rows = {r["label"]: r for r in per_method(library, fit(samples))}
    assert rows["source"]["runs"] == rows["source"]["recorded_copies"] == rows["source"]["predicted_copies"] == 22
    assert rows["source"]["measured_s"] == 0
    recorded = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    paused = PAUSED["library/runs"]
    assert rows["pt"]["runs"] == sum(r["label"] == "pt" and r["run_id"] not in paused for r in recorded)
    auto = [r for r in recorded if r["label"] == "auto" and r["run_id"] not in paused]
    chosen = sum(json.loads((folder / "runs" / r["run_id"] / "run.json").read_text())["init"]["auto"]["seconds"]
                 for r in auto)
    assert rows["auto"]["measured_s"] == pytest.approx(sum(r["wall_time_s"] for r in auto if not r.get("reused_from"))
                                                      + chosen)
    # its runs recorded phases: the fit matches them phase group by phase group (the transfer study's, older, by
    # wall time); the groups hold the whole run, an auto choice as its start
    from benchmarks.cost_model import per_phase

    assert all(s.measured_phases is None and len(s.equations()) == 1 for s in samples)
    timed = [s for s in library if s.label == "auto" and not s.recorded_copy]
    assert timed and all(len(s.equations()) == 4 and s.measured_phases["start"] > 0 for s in timed)
    trained_itself = [r for r in auto if not r.get("reused_from")]  # (a fall-back that copied pt is a copy)
    assert sum(s.measured_phases["start"] for s in timed) == pytest.approx(sum(
        json.loads((folder / "runs" / r["run_id"] / "run.json").read_text())["init"]["auto"]["seconds"]
        for r in trained_itself))
    assert all(sum(s.measured_phases.values()) == pytest.approx(s.measured_s) for s in timed)
    by_phase = per_phase(library, fit(samples))["library/runs"]
    assert sum(g["measured_s"] for g in by_phase.values()) == pytest.approx(
        sum(s.measured_s for s in library if s.measured_phases is not None and not s.recorded_copy))

    # a study re-run with later code is predicted, never fitted on: it is not among the fitted studies
    from benchmarks.cost_model import HELD_OUT, STUDIES

    assert HELD_OUT and not set(HELD_OUT) & set(STUDIES)
    for name, suite_file in HELD_OUT.items():
        again = per_method(study_samples(name, suite_file, str(shared_data)), fit(samples))
        assert again and any(r["measured_s"] > 0 for r in again)
        # each method either ran here, or (sources copied from the committed library) is all copies on both sides
        assert all(r["runs"] and (r["measured_s"] > 0 or r["recorded_copies"] == r["predicted_copies"] == r["runs"])
                   for r in again)


def test_the_report_states_the_common_test_size_and_the_tasks_scored_on_fewer():
    """A split smaller than the budget is scored whole: the report names it instead of a bare '277/400'."""
    from promptvec.experiments.report import _test_sizes

    rows = [{"task": "sst2", "n_test": 400}, {"task": "rte", "n_test": 277}, {"task": "qqp", "n_test": 400},
            {"task": "rte", "n_test": 277}]
    assert _test_sizes(rows) == "Every run of a task is scored on the same 400 seeded test examples (rte 277)."
    assert _test_sizes(rows[:1]) == "Every run of a task is scored on the same 400 seeded test examples."


def test_the_time_table_counts_what_each_run_did_itself(tmp_path):
    """Where the time went, from the runs' own cost: a source copied from a library and a copied training count
    nothing; an auto run recorded before its choice was a phase adds that choice (as *start*); a fall-back (a copy
    of pt's training) adds only its choice; a run whose wall time holds its start phase is taken as it is. Which
    work a record keeps outside its wall time is its method's to say: pt's (no such work) ignores an init.auto."""
    from promptvec.experiments.time_report import own_cost, time_sections
    from promptvec.io import atomic_write_json

    def phases(steps: float, test: float, **more: float) -> dict:
        entries = {"steps": steps, "test": test, **more}
        return {k: {"seconds": v, "count": 1, "examples": 8, "tokens": 80} for k, v in entries.items()}

    def run(run_id: str, method: str, wall: float, record: dict | None = None, spec: dict | None = None,
            **row: object) -> dict:
        if record is not None:
            atomic_write_json(tmp_path / "runs" / run_id / "run.json", record)
        if spec is not None:
            atomic_write_json(tmp_path / "specs" / f"{run_id}.json", spec)
        return {"run_id": run_id, "method": method, "label": method, "wall_time_s": wall, **row}

    rows = [run("source/a/1000shot/o0-s0", "pt", 900.0, spec={"from_library": "lib/a"}, phases=phases(800, 90)),
            run("pt/t/16shot/o0-s0", "pt", 100.0, {"init": {"auto": {"seconds": 30.0}}}, phases=phases(60, 30)),
            run("auto/t/16shot/o0-s0", "auto", 100.0, {"init": {"auto": {"seconds": 40.0}}}, phases=phases(60, 30)),
            run("auto/t/16shot/o0-s1", "auto", 100.0, {"init": {"auto": {"seconds": 20.0}}},
                reused_from="runs/pt/t/16shot/o0-s1", phases=phases(60, 30)),
            run("auto/t/16shot/o0-s2", "auto", 150.0, {"init": {"auto": {"seconds": 45.0}}},
                phases=phases(60, 30, start=45))]
    costs = [own_cost(tmp_path, r) for r in rows]
    assert [c.copy for c in costs] == [True, False, False, True, False]
    assert [c.seconds for c in costs] == [0.0, 100.0, 140.0, 20.0, 150.0]
    table = time_sections(tmp_path, rows)[1]
    by_label = {line[0]: line for line in table.rows}
    assert set(by_label) == {"pt", "auto"}  # the library's source cost this suite nothing
    start = 1 + 3 + list(PHASES).index("start")
    assert by_label["auto"][1:4] == ["2", "2", f"{310 / 60:.1f}"] and by_label["auto"][start] == "105"
    assert by_label["pt"][1:4] == ["1", "1", f"{100 / 60:.1f}"] and by_label["pt"][start] == "–"
