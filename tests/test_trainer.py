"""Trainer: records, selection, resume equivalence, output-folder rules, divergence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

import promptvec
from promptvec.errors import ConfigError, DataError, OutputExistsError
from promptvec.peft_folder import load_prompt
from promptvec.training.checkpoint import load_training_state
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer, TrainingDivergedError, train_prompt
from tests.conftest import scale_loss


class Stop(Exception):
    pass


def _config(tiny_models, toy_task, **kw):
    base = dict(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=6, eval_every=2, batch_size=4,
                lr=0.05, prompt_length=4)
    return TrainConfig(**(base | kw))


def test_record_has_everything(backbones, tiny_models, toy_task, tmp_path):
    result = train_prompt(_config(tiny_models, toy_task), tmp_path / "r", backbone=backbones["llama"], progress=False)
    record = result.record
    saved = json.loads((tmp_path / "r" / "run.json").read_text())
    assert saved == record and saved["status"] == "completed" == result.status
    # the typed result reads the record: what most callers want, without knowing its keys
    assert result.test == saved["test"]["metrics"] and result.validation == saved["best"]["validation"]
    assert result.best_step == saved["best"]["step"] and result.prompt_dir == tmp_path / "r" / "prompt"
    assert result.warnings == saved.get("warnings", [])
    # where the time went: 6 steps of 4 examples, 4 validations of 16, one test of 24, and saving
    phases = saved["phases"]
    assert set(phases) == {"load", "start", "setup", "steps", "validation", "test", "saving"}
    assert (phases["steps"]["count"], phases["steps"]["examples"]) == (6, 24) and phases["steps"]["tokens"] > 24
    assert (phases["validation"]["count"], phases["validation"]["examples"]) == (4, 64)
    assert (phases["test"]["count"], phases["test"]["examples"]) == (1, 24)
    assert phases["test"]["decoded"] == phases["validation"]["decoded"] == 0  # a label task is ranked, not decoded
    # the phases account for the run's wall time (loading is before it starts): what is left is bookkeeping
    accounted = sum(p["seconds"] for name, p in phases.items() if name != "load")
    assert 0.8 * saved["wall_time_s"] <= accounted <= saved["wall_time_s"]
    assert [h["step"] for h in saved["history"]] == [0, 2, 4, 6]
    assert saved["versions"]["torch"] and saved["seeds"] == {"origin": 0, "data": 0, "train": 0, "eval": 1234}
    head = subprocess.run(["git", "-C", str(Path(promptvec.__file__).parents[2]), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert saved["code"]["commit"] == head and isinstance(saved["code"]["dirty"], bool)  # a source checkout
    assert saved["code"]["promptvec"] == saved["versions"]["promptvec"]
    assert saved["wall_time_s"] > 0 and saved["peak_memory"]["cpu_rss_mb"] > 0
    assert saved["test"]["n"] == 24 and "acc" in saved["test"]["metrics"]
    best = max(saved["history"], key=lambda h: h["validation"]["acc"])
    assert saved["best"]["validation"]["acc"] == best["validation"]["acc"]
    assert load_prompt(tmp_path / "r").metadata["test"] == saved["test"]["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_resume_ends_with_the_same_prompt(backbones, tiny_models, toy_task, tmp_path, stop_at):
    config = _config(tiny_models, toy_task, grad_accum=2)
    full = train_prompt(config, tmp_path / "full", backbone=backbones["llama"], progress=False).record

    def interrupt(step):
        if step == stop_at:
            raise Stop

    with pytest.raises(Stop):
        Trainer(config, tmp_path / "cut", backbone=backbones["llama"], progress=False, on_step=interrupt).train()
    redone = []
    resumed = Trainer(config, tmp_path / "cut", backbone=backbones["llama"], progress=False,
                      on_step=redone.append).train(resume=True)
    assert redone == list(range(stop_at + 1, 7))  # resumes at the next step: nothing is trained twice
    last_full = load_training_state(tmp_path / "full" / "checkpoint")["module"]
    last_cut = load_training_state(tmp_path / "cut" / "checkpoint")["module"]
    assert last_full.keys() == last_cut.keys() and all(torch.equal(last_full[k], last_cut[k]) for k in last_full)
    assert torch.equal(load_prompt(tmp_path / "full").prompt, load_prompt(tmp_path / "cut").prompt)
    assert [h["validation"] for h in full["history"]] == [h["validation"] for h in resumed["history"]]


def test_output_folder_rules(backbones, tiny_models, toy_task, tmp_path):
    config = _config(tiny_models, toy_task, max_steps=2)
    train_prompt(config, tmp_path / "r", backbone=backbones["llama"], progress=False)
    with pytest.raises(OutputExistsError, match="already holds this run"):
        train_prompt(config, tmp_path / "r", backbone=backbones["llama"], progress=False)
    other = _config(tiny_models, toy_task, max_steps=2, lr=0.1)
    with pytest.raises(OutputExistsError, match=r"different run \(differs in \['lr'\]\)"):
        train_prompt(other, tmp_path / "r", backbone=backbones["llama"], progress=False)
    again = train_prompt(other, tmp_path / "r", backbone=backbones["llama"], progress=False, overwrite=True).record
    assert again["config"]["lr"] == 0.1
    # resuming a completed run returns its record without training again
    assert train_prompt(other, tmp_path / "r", backbone=backbones["llama"], progress=False,
                        resume=True).record["test"] == again["test"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        train_prompt(config, tmp_path / "junk", backbone=backbones["llama"], progress=False)


def test_early_stopping(backbones, tiny_models, toy_task, tmp_path):
    config = _config(tiny_models, toy_task, max_steps=40, eval_every=1, early_stopping_patience=2, lr=1e-6)
    record = train_prompt(config, tmp_path / "r", backbone=backbones["llama"], progress=False).record
    assert record["stopped_early"] and record["history"][-1]["step"] < 40


def test_non_finite_loss_stops_with_a_clear_message(backbones, tiny_models, toy_task, tmp_path, monkeypatch):
    backbone = backbones["llama"]
    scale_loss(monkeypatch, backbone, lambda n: float("nan") if n > 3 else 1.0)
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 4"):
        train_prompt(_config(tiny_models, toy_task), tmp_path / "r", backbone=backbone, progress=False)
    assert (tmp_path / "r" / "checkpoint" / "state.json").is_file()  # last good checkpoint (step 2) kept
    assert json.loads((tmp_path / "r" / "run.json").read_text())["history"][-1]["step"] == 2


def test_buffered_losses_find_a_nan_at_the_next_read_and_keep_the_good_checkpoint(
        backbones, tiny_models, toy_task, tmp_path, monkeypatch):
    """Losses are read from the device every ``log_every`` steps; a NaN at step 5 is found at the
    read of step 6, named by its own step, and the checkpoint of step 3 is what stays on disk."""
    from safetensors.torch import load_file

    from promptvec.training.checkpoint import load_training_state

    backbone = backbones["llama"]
    scale_loss(monkeypatch, backbone, lambda n: float("inf") if n > 4 else 1.0)
    config = _config(tiny_models, toy_task, max_steps=9, eval_every=9, save_every=3, log_every=3)
    with pytest.raises(TrainingDivergedError, match="loss became (inf|nan) at step 5"):
        train_prompt(config, tmp_path / "r", backbone=backbone, progress=False)
    assert load_training_state(tmp_path / "r" / "checkpoint")["step"] == 3
    saved = load_file(tmp_path / "r" / "checkpoint" / "state.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values() if t.is_floating_point())


def test_precision_auto_is_fp32_without_a_gpu():
    from promptvec.training.config import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_too_many_shots(backbones, tiny_models, toy_task, tmp_path):
    with pytest.raises(DataError, match="larger than the training set"):
        train_prompt(_config(tiny_models, toy_task, shots=1000), tmp_path / "r", backbone=backbones["llama"],
                     progress=False)


@pytest.mark.parametrize("name", ["gpt2", "t5", "bert"])
def test_every_family_trains_end_to_end(backbones, tiny_models, toy_task, tmp_path, name):
    config = TrainConfig(model=str(tiny_models[name]), task=str(toy_task), max_steps=3, eval_every=3,
                         batch_size=4, prompt_length=3, precision="bf16" if name == "t5" else "fp32")
    record = train_prompt(config, tmp_path / "r", backbone=backbones[name], progress=False).record
    assert record["status"] == "completed" and record["family"] == backbones[name].family


def test_report_to_tensorboard_writes_events(backbones, tiny_models, toy_task, tmp_path):
    pytest.importorskip("tensorboard")
    record = train_prompt(_config(tiny_models, toy_task, max_steps=2, report_to=["tensorboard"]), tmp_path / "r",
                          backbone=backbones["llama"], progress=False).record
    assert record["status"] == "completed"
    assert list((tmp_path / "r" / "tracking").rglob("events.out.tfevents.*"))


def test_new_options_with_defaults_do_not_break_resume():
    from promptvec.training.trainer import config_differences

    current = TrainConfig(task="sst2").model_dump()
    older = {k: v for k, v in current.items() if k not in ("report_to", "save_every")}  # made before they existed
    assert config_differences(current, older) == []
    assert config_differences(current | {"lr": 0.1}, older) == ["lr"]
    assert config_differences(current | {"report_to": ["tensorboard"]}, older) == ["report_to"]


def test_settings_retired_into_the_prompt_module_neither_block_resume_nor_pass_silently():
    from promptvec.training.trainer import config_differences

    current = TrainConfig(task="sst2").model_dump()
    plain = current | {"task_mixing": "per-batch", "mixing_cap": None, "mixing_temperature": 1.0,
                       "mixing_first_share": None, "select_on": "mean"}  # a record written while they existed
    fusion = current | {"task_mixing": "mixed", "mixing_cap": 16, "mixing_first_share": 0.5, "select_on": "first"}
    assert config_differences(current, plain) == [] and config_differences(current, fusion) == []
    assert config_differences(current | {"lr": 0.1}, fusion) == ["lr"]
    with pytest.raises(ConfigError, match="'task_mixing' is no longer a training setting") as retired:
        TrainConfig(task="sst2", task_mixing="mixed")
    assert "fusion method" in retired.value.hint


@pytest.mark.parametrize(("given", "meant"), [("learning_rate", "lr"), ("steps", "max_steps"),
                                              ("num_virtual_tokens", "prompt_length"), ("max_step", "max_steps"),
                                              ("batchsize", "batch_size")])
def test_a_setting_named_as_elsewhere_is_refused_with_the_name_meant(given, meant):
    with pytest.raises(ConfigError, match=f"unknown training setting '{given}'") as refused:
        TrainConfig(task="sst2", **{given: 1})
    assert refused.value.hint == f"did you mean {meant}?"


def test_selection_can_exclude_the_initial_prompt(backbones, tiny_models, toy_task, tmp_path):
    # lr so small that no trained checkpoint can beat the origin on validation by much; excluded, step 0
    # is still evaluated (history) but never chosen
    config = _config(tiny_models, toy_task, lr=1e-6, select_initial=False)
    record = train_prompt(config, tmp_path / "r", backbone=backbones["llama"], progress=False).record
    assert record["history"][0]["step"] == 0
    assert record["best"]["step"] > 0
    assert load_prompt(tmp_path / "r").metadata["step"] == record["best"]["step"]


@pytest.mark.parametrize(("sizes", "batch_size"), [([10], 8), ([500], 8), ([1000], 8), ([16], 8), ([7, 30], 4),
                                                  ([3, 5, 9], 2), ([250, 300], 8)])
def test_the_mean_batch_is_what_an_epoch_of_the_order_holds(sizes, batch_size):
    """What the cost estimate counts per step: a window's examples of one task end in a partial batch (10
    examples at batch 8: batches of 8 and 2), exactly as the order cuts them — one task, or several within one
    window; several tasks over many windows (250 + 300 at batch 8) within 2 %, and every epoch of that order
    tried (the cut depends on how the shuffle spreads the tasks over the windows)."""
    from promptvec.batching import BucketedBatches

    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    order = BucketedBatches(list(range(len(groups))), batch_size, seed=1,
                            groups=groups if len(sizes) > 1 else None)
    held = [len(groups) / len(order.epoch_batches(epoch)) for epoch in range(5)]
    expected = BucketedBatches.mean_batch(sizes, batch_size)
    if len(sizes) == 1 or len(groups) <= 50 * batch_size:
        assert held == [pytest.approx(expected)] * 5
    else:
        assert all(value == pytest.approx(expected, rel=0.02) for value in held)
    assert BucketedBatches.mean_batch([10], 8) == 5 and BucketedBatches.mean_batch([16], 8) == 8


def test_multi_task_training_never_mixes_tasks_in_a_batch(backbones, tiny_models, toy_task, tmp_path):
    from promptvec.batching import BucketedBatches

    groups = [0] * 10 + [1] * 30
    batches = BucketedBatches(list(range(40)), 4, seed=3, groups=groups)
    seen = [batches.next() for _ in range(40)]
    assert all(len({groups[i] for i in b}) == 1 for b in seen)
    first_epoch = batches.epoch_batches(0)
    assert sorted(i for b in first_epoch for i in b) == list(range(40))  # every example once per epoch
    assert BucketedBatches(list(range(40)), 4, seed=3).epoch_batches(0) == \
        BucketedBatches(list(range(40)), 4, seed=3, groups=[0] * 40).epoch_batches(0)  # one group = single task

    other = toy_task.parent / "toy_b.yaml"
    other.write_text(toy_task.read_text().replace("task: toy_sentiment", "task: toy_b"))
    config = _config(tiny_models, toy_task, extra_tasks=[str(other)], shots=8)
    record = train_prompt(config, tmp_path / "m", backbone=backbones["llama"], progress=False).record
    assert record["task"] == "toy_sentiment+toy_b" and record["sizes"]["train"] == 16
    assert set(record["test"]["metrics"]) == {"toy_sentiment/acc", "toy_sentiment/f1", "toy_b/acc", "toy_b/f1",
                                              "mean"}
    assert record["test"]["metrics"]["mean"] == pytest.approx(
        (record["test"]["metrics"]["toy_sentiment/acc"] + record["test"]["metrics"]["toy_b/acc"]) / 2)
    with pytest.raises(ValueError, match="extra_tasks"):
        _config(tiny_models, toy_task, extra_tasks=[str(toy_task)])
    # an extra task with fewer training rows than extra_shots gives all of them (the target's shots stay exact)
    many = _config(tiny_models, toy_task, extra_tasks=[str(other)], shots=8, extra_shots=1000, max_steps=1,
                   eval_every=1)
    record = train_prompt(many, tmp_path / "all", backbone=backbones["llama"], progress=False).record
    assert record["sizes"]["train"] == 8 + 64  # toy_b's whole training split: 64 rows
    with pytest.raises(DataError, match="larger than the training set"):
        train_prompt(_config(tiny_models, toy_task, shots=1000), tmp_path / "target", backbone=backbones["llama"],
                     progress=False)


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(backbones, tiny_models, toy_task, tmp_path):
    """``compile=True`` (torch.compile of the frozen model, dynamic shapes) follows the same loss curve, and
    the backbone lent to the run stays eager (compiling happens on a view)."""
    from promptvec.io import read_jsonl

    config = _config(tiny_models, toy_task, max_steps=3, eval_every=3, log_every=1)
    lent = backbones["llama"]
    train_prompt(config.model_copy(update={"compile": True}), tmp_path / "compiled", backbone=lent, progress=False)
    assert lent.model._compiled_call_impl is None and type(lent.model).__name__ == "LlamaForCausalLM"
    train_prompt(config, tmp_path / "eager", backbone=lent, progress=False)
    eager = [row["loss"] for row in read_jsonl(tmp_path / "eager" / "train_log.jsonl")]
    compiled = [row["loss"] for row in read_jsonl(tmp_path / "compiled" / "train_log.jsonl")]
    assert len(eager) == 3 and compiled == pytest.approx(eager, rel=1e-4)


def test_module_mode_restores_every_submodule_even_after_an_error():
    from promptvec.modes import module_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.Linear(2, 2))
    model.train()
    model[1].eval()  # a caller's deliberate mixed state
    with pytest.raises(Stop), module_mode(model, torch.zeros(1), None, training=False):
        assert not any(m.training for m in model.modules())
        raise Stop
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_dropout_is_off_at_every_evaluation_and_the_backbone_keeps_its_mode(tiny_tokenizer_dir, toy_task, tmp_path):
    """train_dropout trains with the frozen model's dropout on; validation selection, the test score
    and any later use of the backbone run without it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from promptvec.backbones import load_backbone
    from promptvec.evaluation import evaluate
    from promptvec.training.parts import RunSplits
    from tests.conftest import _save_model, _vocab

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=_vocab(tiny_tokenizer_dir), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
        bos_token_id=1, initializer_range=0.2, attention_dropout=0.5))
    backbone = load_backbone(str(_save_model(model, tiny_tokenizer_dir, tmp_path / "dropout-llama")))
    config = TrainConfig(model=str(tmp_path / "dropout-llama"), task=str(toy_task), max_steps=4, eval_every=2,
                         batch_size=4, lr=0.05, prompt_length=4, train_dropout=True)
    trainer = Trainer(config, tmp_path / "r", backbone=backbone, progress=False)
    splits = RunSplits.sample(config, trainer.tasks, trainer.datas)
    val, test = splits.val, splits.test
    record = trainer.train()
    assert not any(m.training for m in backbone.model.modules())  # as the caller passed it in
    best = load_prompt(tmp_path / "r").prompt
    again = evaluate(backbone, trainer.task, test[0], best)
    assert again.metrics == record["test"]["metrics"]
    assert again.scores == evaluate(backbone, trainer.task, test[0], best).scores  # deterministic
    assert evaluate(backbone, trainer.task, val[0], best).metrics == record["best"]["validation"]
    # the dropout really is on while training: two training losses of one batch differ
    batch_task = trainer.task
    batch = backbone.collate(batch_task, backbone.encode(batch_task, test[0][:4], 4), train=True)
    backbone.model.train()
    losses = {float(backbone.loss(batch_task, batch, best.unsqueeze(0).expand(4, -1, -1))) for _ in range(3)}
    backbone.model.eval()
    assert len(losses) > 1


def test_keeping_the_untrained_prompt_is_said_plainly(backbones, tiny_models, toy_task, tmp_path):
    # lr so small that no trained checkpoint beats the origin: the saved prompt is the origin
    record = train_prompt(_config(tiny_models, toy_task, lr=1e-7), tmp_path / "r", backbone=backbones["llama"],
                          progress=False).record
    assert record["best"]["step"] == 0
    [warning] = [w for w in record["warnings"] if w["kind"] == "initial-kept"]
    assert "saved prompt is the untrained initial prompt" in warning["message"]
    assert "--no-select-initial" in warning["message"] and "--steps" in warning["message"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["warnings"] == record["warnings"]
    trained = train_prompt(_config(tiny_models, toy_task, lr=1e-7, select_initial=False), tmp_path / "t",
                           backbone=backbones["llama"], progress=False).record
    assert trained["best"]["step"] > 0 and not any(w["kind"] == "initial-kept" for w in trained["warnings"])


def test_every_evaluation_counts_its_examples_as_it_goes(backbones, tiny_models, toy_task, tmp_path, monkeypatch):
    """Validation and test show how many examples are done of how many (with the time left), not a
    spinner: each evaluation advances its bar by every batch it scores, up to its total."""
    from contextlib import contextmanager

    from promptvec.display import TrainingProgress

    seen = []
    original = TrainingProgress.counting

    @contextmanager
    def spy(self, what, total):
        done = []
        with original(self, what, total) as advance:
            yield lambda n: (done.append(n), advance(n))
        seen.append((what, total, sum(done), len(done)))

    monkeypatch.setattr(TrainingProgress, "counting", spy)
    config = _config(tiny_models, toy_task, max_steps=4, eval_every=2, eval_batch_size=4)
    train_prompt(config, tmp_path / "r", backbone=backbones["llama"], progress=True)
    assert seen == [("validation", 16, 16, 4)] * 3 + [("test (best prompt)", 24, 24, 6)]


def test_evaluate_reports_each_batch_it_finishes(backbones, toy_task):
    from promptvec import evaluate, get_task, load_task_data

    task = get_task(str(toy_task))
    batches = []
    result = evaluate(backbones["llama"], task, load_task_data(task).test, batch_size=5, on_batch=batches.append)
    assert batches == [5, 5, 5, 5, 4] and result.n == 24
