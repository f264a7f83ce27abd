"""`promptvec eval --log-samples / --limit / --rows`: per-example output that another tool can be
compared with row by row (here: PEFT's own log-likelihoods)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import ConfigError
from promptvec.evaluation.samples import parse_rows, select_rows
from promptvec.peft_folder import save_prompt
from promptvec.tasks import Example, get_task, load_task_data, subsample
from promptvec.vectors import Origin

runner = CliRunner()


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_row_selections():
    assert parse_rows("0,5,10-12,5", 20) == [0, 5, 10, 11, 12]
    assert select_rows(10, limit=3) == [0, 1, 2]
    assert select_rows(10, limit=30) == list(range(10))
    sample = select_rows(100, sample=10, seed=4)
    assert len(set(sample)) == 10 and sample == select_rows(100, sample=10, seed=4)
    rows = [Example({"text": str(i)}, "x") for i in range(100)]
    assert [rows[i] for i in sample] == subsample(rows, 10, 4)  # --examples draws the rows it always drew
    for bad, message in (("a", "not a row number"), ("5-3", "not a valid range"), ("-1", "not a row number"),
                         ("3,20", "past the end of the split"), (",", "selects no row")):
        with pytest.raises(ConfigError, match=message):
            parse_rows(bad, 20)


def test_log_samples_scores_equal_peft_row_by_row(backbones, tiny_models, toy_task, tmp_path):
    """Every logged label score is PEFT's log-likelihood of that label after the same input, the
    prediction is the best-scored label, and the summary's accuracy is the mean of `correct`."""
    backbone = backbones["llama"]
    task = get_task(str(toy_task))
    prompt = Origin.sample(backbone, 5, 1).tensor(backbone) + 0.05 * torch.randn(5, backbone.dim)
    save_prompt(tmp_path / "p", prompt, backbone, {"task": task.task})
    samples = tmp_path / "samples.jsonl"
    result = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", str(tmp_path / "p"), "--model",
                                 str(tiny_models["llama"]), "--rows", "3,0,7-9", "--log-samples", str(samples),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    records = _lines(samples)
    assert [r["row"] for r in records] == [3, 0, 7, 8, 9] and summary["n"] == 5
    test = load_task_data(task).test
    assert [r["source"] for r in records] == [test[i].source for i in (3, 0, 7, 8, 9)]
    from transformers import AutoModelForCausalLM

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]),
                                           str(tmp_path / "p")).eval()
    labels = backbone.label_set(task)
    for record in records:
        assert record["gold"] == test[record["row"]].label
        assert record["prediction"] == max(record["scores"], key=record["scores"].get)
        assert record["correct"] == (record["prediction"] == record["gold"])
        ids = backbone.tokenize_input(record["input"])
        for name, label_ids in zip(labels.names, labels.token_ids, strict=True):
            with torch.no_grad():
                logits = peft_model(input_ids=torch.tensor([ids + label_ids[:-1]])).logits[0, -len(label_ids):]
            theirs = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(label_ids)[:, None]).sum()
            assert record["scores"][name] == pytest.approx(float(theirs), abs=1e-4)
    accuracy = summary["metrics"]["accuracy"] if "accuracy" in summary["metrics"] else summary["metrics"]["acc"]
    assert accuracy == pytest.approx(sum(r["correct"] for r in records) / len(records))


def test_log_samples_of_a_free_text_task_with_limit(tiny_models, toy_generation_tasks, tmp_path):
    samples = tmp_path / "gen.jsonl"
    result = runner.invoke(app, ["eval", "--task", toy_generation_tasks["gen_a"], "--model", str(tiny_models["llama"]),
                                 "--limit", "4", "--log-samples", str(samples), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    records = _lines(samples)
    assert [r["row"] for r in records] == [0, 1, 2, 3]
    test = load_task_data(get_task(toy_generation_tasks["gen_a"])).test
    for record, example in zip(records, test, strict=False):
        assert record["gold"] == list(example.answers) and isinstance(record["prediction"], str)
    for metric, value in summary["metrics"].items():
        assert value == pytest.approx(sum(r["metrics"][metric] for r in records) / len(records))


def test_row_options_refused_clearly(tiny_models, toy_task):
    for extra, message in ((["--rows", "0", "--limit", "2"], "either --rows or --limit"),
                           (["--rows", "999"], "past the end of the split"),
                           (["--examples", "0"], "--examples")):
        result = runner.invoke(app, ["eval", "--task", str(toy_task), "--model", str(tiny_models["llama"]), *extra])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
