"""The CLI maps onto the library; bad input exits 2 with one readable message."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promptvec.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("promptvec ")


@pytest.mark.slow
def test_tasks_lists_sizes(shared_data):
    result = runner.invoke(app, ["tasks", "--data-dir", str(shared_data)])
    assert result.exit_code == 0
    assert "sst2" in result.stdout and "6909" in result.stdout and "scitail" in result.stdout


def test_methods_lists_the_registry_and_transfer_names_close_matches(tmp_path):
    from promptvec.methods import METHODS

    result = runner.invoke(app, ["methods"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in METHODS.names())
    assert "Dynamic Task Vector Grouping" in result.output
    bad = runner.invoke(app, ["transfer", "--method", "dtv", "--target", "sst2", "--sources", "trec",
                              "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "unknown method 'dtv'" in bad.output and "did you mean dtvg" in bad.output
    assert "Traceback" not in bad.output


def test_train_eval_predict(tiny_models, toy_task, tmp_path):
    model = str(tiny_models["gpt2"])
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(out),
                                 "--steps", "3", "--eval-every", "3", "--batch-size", "4", "--prompt-length", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "prompt" / "adapter_model.safetensors").is_file()

    result = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", str(out), "--model", model,
                                 "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["n"] == 24
    # the command is one library call: the Python API gives the same summary
    from promptvec import evaluate_split

    assert evaluate_split(str(toy_task), out, model=model, progress=False).summary == summary

    result = runner.invoke(app, ["eval", "--task", str(toy_task), "--origin-seed", "1", "--model", model,
                                 "--mode", "generate"])
    assert result.exit_code == 0, result.output

    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "a great film"}\n"plain text line"\n')
    result = runner.invoke(app, ["predict", "--prompt", str(out), "--input", str(inputs), "a dull movie"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(lines) == 3 and all(line["label"] in ("negative", "positive") for line in lines)
    assert set(lines[0]["scores"]) == {"negative", "positive"}

    # the same --out again: refused with a hint
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(out),
                                 "--steps", "3", "--eval-every", "3", "--batch-size", "4", "--prompt-length", "3"])
    assert result.exit_code == 2 and "already holds this run" in result.output and "--resume" in result.output


def test_the_free_text_example_task_trains_evaluates_and_predicts_from_the_cli(tiny_models, tmp_path):
    """examples/tasks/capitals.yaml as a new user would run it: train, eval (generated, whatever --mode
    says), predict prints the generated answer per input."""
    from pathlib import Path

    task = str(Path(__file__).resolve().parents[1] / "examples" / "tasks" / "capitals.yaml")
    model, out = str(tiny_models["llama"]), tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", task, "--model", model, "--out", str(out), "--steps", "2",
                                 "--eval-every", "2", "--batch-size", "4", "--prompt-length", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert set(record["test"]["metrics"]) == {"exact_match", "squad_f1"} and record["test"]["n"] == 16

    result = runner.invoke(app, ["eval", "--task", task, "--prompt", str(out), "--model", model,
                                 "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["mode"] == "generate" and summary["metrics"] == record["test"]["metrics"]

    result = runner.invoke(app, ["predict", "--prompt", str(out), "Peru", '{"country": "Chile"}'])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["input"] for line in lines] == ["Peru", {"country": "Chile"}]
    assert all(isinstance(line["answer"], str) and "scores" not in line for line in lines)


def test_train_says_once_when_it_kept_the_untrained_prompt(tiny_models, toy_task, tmp_path):
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", str(tiny_models["gpt2"]), "--out",
                                 str(tmp_path / "run"), "--steps", "2", "--eval-every", "1", "--batch-size", "4",
                                 "--prompt-length", "3", "--lr", "1e-9"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert text.count("saved prompt is the untrained initial prompt") == 1 and "--no-select-initial" in text


@pytest.mark.slow
def test_bad_inputs_exit_2_without_traceback(tiny_models, toy_task, tmp_path):
    cases = [
        (["train", "--task", "sst3", "--out", str(tmp_path / "a")], "unknown task 'sst3'"),
        (["train", "--task", "sst2", "--out", str(tmp_path / "a"), "--data-dir", str(tmp_path / "nope")],
         "data folder not found"),
        (["train", "--task", str(toy_task), "--out", str(tmp_path / "a"), "--model", str(tmp_path / "no-model")],
         "cannot load model"),
        (["train", "--task", str(toy_task), "--out", str(tmp_path / "a"), "--model", str(tiny_models["llama"]),
          "--shots", "5000"], "larger than the training set"),
        (["train", "--task", str(toy_task), "--out", str(tmp_path / "a"), "--lr", "-1"], "invalid training"),
        (["train", "--task", str(toy_task), "--out", str(tmp_path / "w"), "--model", str(tiny_models["llama"]),
          "--report-to", "wandb"], "needs the wandb package"),
        (["eval", "--task", str(toy_task), "--model", "google-t5/t5-base"], "the Hub is offline"),
        (["eval", "--task", str(toy_task), "--prompt", str(tmp_path / "nothing"), "--model",
          str(tiny_models["llama"])], "not found"),
        (["predict", "--prompt", str(tmp_path)], "nothing to predict"),  # a folder that exists: the inputs are checked
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "a").exists()  # refused input leaves no partial output


def test_checkpoint_of_another_model_is_refused(tiny_models, toy_task, tmp_path):
    out = tmp_path / "run"
    runner.invoke(app, ["train", "--task", str(toy_task), "--model", str(tiny_models["gpt2"]), "--out", str(out),
                        "--steps", "1", "--eval-every", "1", "--batch-size", "4", "--prompt-length", "2"])
    result = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", str(out), "--model",
                                 str(tiny_models["llama"])])
    assert result.exit_code == 2 and "trained on model" in result.output


@pytest.mark.slow
def test_vector_and_store_commands(tiny_models, toy_task, tmp_path):
    model = str(tiny_models["llama"])
    store = str(tmp_path / "store")
    runs = {}
    for task_seed in (0, 1):
        out = tmp_path / f"run{task_seed}"
        result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(out),
                                     "--steps", "2", "--eval-every", "2", "--batch-size", "4", "--prompt-length", "3",
                                     "--data-seed", str(task_seed)])
        assert result.exit_code == 0, result.output
        runs[task_seed] = out
    result = runner.invoke(app, ["vector", "create", str(runs[0]), str(tmp_path / "v0.safetensors"), "--model", model])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["store", "add", str(runs[1]), "--vector", "--model", model, "--name", "v1",
                                 "--store", store])
    assert result.exit_code == 0 and "added vector" in result.output, result.output
    result = runner.invoke(app, ["store", "add", str(tmp_path / "v0.safetensors"), "--store", store])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["store", "add", str(runs[0]), "--store", store, "--name", "p0"])
    assert result.exit_code == 0 and "added prompt" in result.output, result.output
    result = runner.invoke(app, ["store", "list", "--store", store])
    assert result.exit_code == 0 and "vector" in result.output and "prompt" in result.output
    from promptvec.store import VectorStore

    assert sorted(e.kind for e in VectorStore(store).entries(task="toy_sentiment")) == ["prompt", "vector", "vector"]
    result = runner.invoke(app, ["vector", "combine", "v1", str(tmp_path / "v0.safetensors"), "--out",
                                 str(tmp_path / "sum.safetensors"), "--store", store])
    assert result.exit_code == 0, result.output
    import torch

    from promptvec.vectors import TaskPromptVector

    known = TaskPromptVector.load(tmp_path / "v0.safetensors")
    TaskPromptVector(torch.ones_like(known.tensor), known.meta).save(tmp_path / "ones.safetensors")
    TaskPromptVector(-2 * torch.ones_like(known.tensor), known.meta).save(tmp_path / "neg.safetensors")
    result = runner.invoke(app, ["vector", "similarity", str(tmp_path / "ones.safetensors"),
                                 str(tmp_path / "neg.safetensors"), "--heatmap", str(tmp_path / "h.png"),
                                 "--csv", str(tmp_path / "s.csv")])
    assert result.exit_code == 0 and "+1.000" in result.output and "-1.000" in result.output, result.output
    assert (tmp_path / "h.png").stat().st_size > 1000
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("vector,norm") and rows[1].endswith("1.000000,-1.000000")
    result = runner.invoke(app, ["vector", "apply", str(tmp_path / "sum.safetensors"), "--out",
                                 str(tmp_path / "init"), "--origin-seed", "3", "--scale", "0.5", "--model", model])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(tmp_path / "r2"),
                                 "--steps", "1", "--eval-every", "1", "--batch-size", "4",
                                 "--init-prompt", str(tmp_path / "init")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["store", "export", "p0", str(tmp_path / "exported"), "--store", store])
    assert result.exit_code == 0 and (tmp_path / "exported" / "adapter_model.safetensors").is_file()
    result = runner.invoke(app, ["store", "search", "--like", "v1", "--store", store])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["store", "show", "nope", "--store", store])
    assert result.exit_code == 2 and "no store entry 'nope'" in result.output


def test_cli_as_a_person_sees_it(tiny_models, toy_task, tmp_path):
    """Final metrics as a table with 3 decimals (never a Python dict), validation scores printed as they
    are measured, boolean options shown as flags, and help that fits 80 columns."""
    import re

    model = str(tiny_models["gpt2"])
    result = runner.invoke(app, ["train", "--task", str(toy_task), "--model", model, "--out", str(tmp_path / "r"),
                                 "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--prompt-length", "3"])
    assert result.exit_code == 0, result.output
    assert "{" not in result.stdout and re.search(r"acc\s.*\d\.\d{3}\s.*\d\.\d{3}", result.stdout)
    assert "validation" in result.stdout and "test (24 examples)" in result.stdout
    result = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", str(tmp_path / "r"), "--model", model])
    assert result.exit_code == 0 and "{" not in result.stdout and re.search(r"\d\.\d{3}", result.stdout)
    as_json = runner.invoke(app, ["eval", "--task", str(toy_task), "--prompt", str(tmp_path / "r"), "--model", model,
                                  "--json"])
    assert json.loads(as_json.stdout)["n"] == 24
    for command in (["train"], ["eval"], ["transfer"], ["predict"], ["experiment", "run"], ["store", "add"],
                    ["vector", "apply"], ["demo"], ["report"]):
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=80).stdout
        assert "<bool>" not in help_text and "--no-full-test" not in help_text, command
        assert max(map(len, help_text.splitlines())) <= 80, command
    assert "--overwrite " in runner.invoke(app, ["train", "--help"], terminal_width=80).stdout


def test_training_prints_each_validation_score_as_measured(tiny_models, toy_task, tmp_path):
    """The progress display notes every validation pass (here captured from its console)."""
    from promptvec.display import TrainingProgress

    progress = TrainingProgress(True, "toy", total=4, done=0)
    with progress.bar.console.capture() as captured:
        with progress.counting("validation", 16) as advance:
            advance(16)
            [counted] = [task for task in progress.bar.tasks if task.description == "validation"]
            assert (counted.completed, counted.total) == (16, 16)
        progress.note("step     2: validation accuracy 0.625  (best so far)")
    assert [task.description for task in progress.bar.tasks] == ["toy"]  # the evaluation's bar is gone
    progress.close()
    assert "validation accuracy 0.625" in captured.get()


@pytest.mark.slow
def test_mistakes_are_reported_before_torch_loads_and_listing_needs_no_peft(tmp_path):
    """Every mistake a user tried took 8–13 s to be reported (torch, transformers and the model loaded
    first): the commands now check their input with light modules, then import the heavy ones."""
    import subprocess
    import sys

    code = f"""
import sys
from typer.testing import CliRunner
from promptvec.cli import app
for args in (["eval", "--task", "sst3"], ["train", "--task", "sst3", "--out", {str(tmp_path / 'a')!r}],
             ["predict", "--prompt", "nowhere", "text"], ["eval", "--task", "sst2", "--prompt", "nowhere"],
             ["train", "--task", "sst2", "--out", {str(tmp_path / 'b')!r}, "--init-prompt", "nowhere"]):
    result = CliRunner().invoke(app, args)
    print(result.exit_code, "torch" in sys.modules, flush=True)
result = CliRunner().invoke(app, ["methods"])
print(result.exit_code, "peft" in sys.modules or "sklearn" in sys.modules or "transformers" in sys.modules)
"""
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[:6] == ["2 False"] * 5 + ["0 False"]


def test_local_split_sizes_are_counted_without_parsing_and_agree_with_the_data(shared_data):
    from promptvec.tasks import get_task, load_task_data
    from promptvec.tasks.loading import local_split_sizes

    for name in ("sst2", "trec"):
        data = load_task_data(get_task(name), shared_data)
        assert local_split_sizes(get_task(name), shared_data) == {
            "train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    assert local_split_sizes(get_task("scitail"), shared_data) is None  # no local files: only loading says
