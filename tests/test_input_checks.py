"""Bad input, third audit: each case here used to end in a traceback, be accepted silently or take far
too long; now each gets one promptvec message (exit code 2), or works without writing anything."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import ConfigError
from promptvec.evaluation.samples import parse_rows
from promptvec.tasks.spec import TaskSpec

runner = CliRunner()


def _refused(args: list[str], message: str) -> None:
    result = runner.invoke(app, args, terminal_width=300)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"{args}: {result.exception!r}"
    assert result.exit_code == 2 and message in " ".join(result.output.split()), (args, result.output)


@pytest.fixture(scope="module")
def trained(tiny_models, toy_task, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("input-checks")
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", str(tiny_models["llama"]), "--out",
                                 str(root / "run"), "--steps", "2", "--eval-every", "2", "--batch-size", "4",
                                 "--prompt-length", "3", "--val-examples", "4", "--test-examples", "4"])
    assert result.exit_code == 0, result.output
    return {"root": root, "run": root / "run", "model": Path(tiny_models["llama"]), "task": Path(toy_task)}


def test_predict_with_an_input_that_is_not_json_says_so(trained):
    _refused(["predict", "--prompt", str(trained["run"]), "--model", str(trained["model"]), "{bad json"],
             "input 1 starts with '{' but is not a JSON object")


@pytest.mark.parametrize(("choices", "message"), [
    (["yes", ""], "an empty or invisible choice"),
    (["yes", "   "], "an empty or invisible choice"),
    (["yes", "\u200b"], "an empty or invisible choice"),
    (["yes", "ye\u200bs"], "repeat"),
    (["caf\u00e9", "cafe\u0301"], "repeat"),  # NFC and NFD of the same word
])
def test_verbalizers_a_reader_cannot_tell_apart_are_refused(choices, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec(task="t", doc_to_text="{{text}}", labels=["a", "b"], doc_to_choice=choices)
    TaskSpec(task="t", doc_to_text="{{text}}", labels=["a", "b"], doc_to_choice=["caf\u00e9", "cafe"])  # differ


def test_reading_a_store_writes_nothing(trained, tmp_path, monkeypatch):
    """`store list/show/search/export` open the store read-only: no journal, lock or index write — so a
    store on a read-only disk (simulated: the folder reported unwritable) can be read."""
    store = tmp_path / "store"
    model = str(trained["model"])
    assert runner.invoke(app, ["store", "add", str(trained["run"]), "--vector", "--model", model, "--name", "v",
                               "--store", str(store)]).exit_code == 0
    assert runner.invoke(app, ["store", "add", str(trained["run"]), "--name", "p", "--store",
                               str(store)]).exit_code == 0
    for leftover in ("index.sqlite-wal", "index.sqlite-shm", "store.lock"):
        (store / leftover).unlink(missing_ok=True)

    def snapshot() -> dict[str, float]:
        return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")}

    before = snapshot()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == store and mode & os.W_OK
                        else real_access(path, mode, **kw))
    for command in (["store", "list"], ["store", "show", "v"], ["store", "search", "--like", "v"],
                    ["store", "export", "p", str(tmp_path / "exported")]):
        result = runner.invoke(app, [*command, "--store", str(store)], terminal_width=200)
        assert result.exit_code == 0, (command, result.output)
    assert snapshot() == before


def test_a_task_file_with_many_unknown_keys_gets_a_short_message(tmp_path, trained):
    body = {"task": "big", "doc_to_text": "{{text}}", "labels": ["a", "b"]} | {f"key{i}": i for i in range(5000)}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(body))
    result = runner.invoke(app, ["train", "--task", str(path), "--out", str(tmp_path / "o")], terminal_width=300)
    assert result.exit_code == 2 and "and 4990 more" in result.output and len(result.output) < 2000


@pytest.mark.parametrize("spec", ["٣", "+3", "1_0", " 3 - 4", "0x3"])
def test_rows_are_ascii_numbers_and_ranges_only(spec):
    with pytest.raises(ConfigError, match="is not a row number or a range"):
        parse_rows(spec, 100)


def test_a_bad_part_after_a_huge_range_is_reported_at_once():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="'abc'"):
        parse_rows("0-59999,abc", 70_000)
    assert parse_rows("3,1-4,3", 10) == [3, 1, 2, 4]
    assert len(parse_rows("0-59999", 70_000)) == 60_000
    assert time.perf_counter() - started < 2  # was 13 s: the range was expanded with a quadratic dedupe


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf"])
def test_non_finite_learning_rates_are_refused(trained, tmp_path, lr):
    _refused(["train", "--task", str(trained["task"]), "--model", str(trained["model"]), "--lr", lr, "--out",
              str(tmp_path / "o")], "'lr': Input should be a finite number")
    assert not (tmp_path / "o").exists()


def test_an_extreme_learning_rate_is_reported_and_a_loss_rising_from_the_first_step_too(trained, tmp_path):
    """lr 1e9 used to train to the end without a word: normalisation layers keep the loss flat while the
    prompt runs off. The run now says so; and a loss that climbs from the very first step (no earlier
    evaluation to compare with) is reported as diverging."""
    import json

    from promptvec.training.trainer import warn_if_diverging

    out = tmp_path / "huge-lr"
    result = runner.invoke(app, ["train", "--task", str(trained["task"]), "--model", str(trained["model"]), "--lr",
                                 "1e9", "--steps", "4", "--eval-every", "4", "--batch-size", "4", "--prompt-length",
                                 "3", "--val-examples", "4", "--test-examples", "4", "--out", str(out)],
                           terminal_width=300)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert [w["kind"] for w in record["warnings"]].count("extreme-lr") == 1
    assert "is far above any prompt-tuning recipe" in " ".join(result.output.split())
    assert math.isfinite(record["first_loss"]["loss"]) and record["first_loss"]["step"] == 1
    rising = {"history": [{"step": 0, "train_loss": None}], "first_loss": {"step": 1, "loss": 2.0}}
    warn_if_diverging(rising, 9.0, 20, 0.03)  # the first evaluation's mean loss, 4.5x the first step's
    assert [w["kind"] for w in rising["warnings"]] == ["diverging"]
    assert "rose from 2 (step 1)" in rising["warnings"][0]["message"]
    steady = {"history": [{"step": 0, "train_loss": None}], "first_loss": {"step": 1, "loss": 2.0}}
    warn_if_diverging(steady, 1.5, 20, 0.03)
    assert steady["warnings"] == []


def test_max_gen_toks_must_be_an_integer():
    with pytest.raises(ValueError, match="max_gen_toks"):
        TaskSpec(task="t", output_type="generate_until", doc_to_text="{{q}}", doc_to_target="a",
                 metric_list=[{"metric": "exact_match"}], generation_kwargs={"max_gen_toks": True})


def test_a_dry_run_checks_the_output_folder_too(tmp_path, tiny_models, toy_task):
    from tests.conftest import tiny_suite_file

    suite = tiny_suite_file(tmp_path, tiny_models, toy_task)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    _refused(["experiment", "run", str(suite), "--out", str(afile), "--dry-run"], "it is a file")
