"""The top-level API: the main names import from ``promptvec`` itself, lazily (``import promptvec``
and the command line do not load torch), and the entry points take what their docs say."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import promptvec


def test_every_exported_name_resolves_to_its_definition():
    assert set(promptvec.__all__) == {"PromptvecError", "__version__", *promptvec._EXPORTS}
    for name in promptvec.__all__:
        value = getattr(promptvec, name)
        assert value is not None, name
        if name in promptvec._EXPORTS:
            module = sys.modules[promptvec._EXPORTS[name]]
            assert getattr(module, name) is value, name
    assert {"load_backbone", "get_task", "train_prompt", "evaluate", "Predictor", "TaskPromptVector", "Origin",
            "VectorStore", "run_suite"} <= set(promptvec.__all__)


@pytest.mark.slow
def test_import_is_lazy():
    code = "import sys, promptvec; print('torch' in sys.modules); promptvec.Origin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_train_prompt_takes_explicit_keywords():
    parameters = inspect.signature(promptvec.train_prompt).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert {"backbone", "data_dir", "task_data", "resume", "overwrite", "progress"} <= set(parameters)


@pytest.mark.slow
def test_run_suite_from_a_yaml_path(tmp_path, tiny_models, toy_task):
    from tests.conftest import tiny_suite_file

    path = tiny_suite_file(tmp_path, tiny_models, toy_task, seeds=[0],
                           methods=[{"name": "zero", "label": "no prompt", "settings": {"prompt": "none"}}],
                           stats={"baseline": "no prompt"})
    outcome = promptvec.run_suite(path, tmp_path / "out", progress=False, log=lambda message: None)
    assert outcome.completed == 1
    [row] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert row["label"] == "no prompt" and row["method"] == "zero"


def _public_members(cls) -> dict[str, object]:
    """The public methods and properties a class defines itself (not those it inherits)."""
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")
            and (inspect.isfunction(member) or isinstance(member, property | classmethod | staticmethod))}


def test_every_exported_name_and_its_public_methods_say_what_they_do():
    missing = []
    for name in promptvec.__all__:
        value = getattr(promptvec, name)
        if name == "__version__":
            continue
        if not (inspect.getdoc(value) or "").strip():
            missing.append(name)
        if inspect.isclass(value):
            for member_name, member in _public_members(value).items():
                function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if not (function.__doc__ or "").strip():
                    missing.append(f"{name}.{member_name}")
    assert missing == []


@pytest.mark.slow
def test_evaluate_and_predict_take_the_obvious_forms(backbones, tiny_models, toy_task, tmp_path):
    """A task by name or file, rows as in the data files, a prompt folder, plain strings to predict."""
    from promptvec import TrainConfig, evaluate, get_task, load_task_data, train_prompt
    from promptvec.evaluation import predict

    backbone = backbones["llama"]
    result = train_prompt(TrainConfig(model=str(tiny_models["llama"]), task=str(toy_task), max_steps=2,
                                      batch_size=4, prompt_length=3, test_examples=8), tmp_path / "run",
                          backbone=backbone, progress=False)
    task = get_task(str(toy_task))
    data = load_task_data(str(toy_task))  # a task file (or a built-in task's name), not only a TaskSpec
    rows = [json.loads(line) for line in (toy_task.parent / "test.jsonl").read_text().splitlines()[:6]]
    by_rows = evaluate(backbone, str(toy_task), rows, prompt=str(tmp_path / "run"))
    by_examples = evaluate(backbone, task, data.test[:6], prompt=promptvec.load_prompt(result.prompt_dir).prompt)
    assert by_rows.metrics == by_examples.metrics and by_rows.predictions == by_examples.predictions
    texts = [row["text"] for row in rows]
    assert predict(backbone, task, texts, prompt=result.prompt_dir).indices == predict(
        backbone, task, data.test[:6], prompt=result.prompt_dir).indices


@pytest.mark.parametrize(("call", "error", "message", "fix"), [
    (lambda b, t: promptvec.evaluate(b, t, ["a great film"]), "DataError", "plain text, which has no label",
     "predict"),
    (lambda b, t: promptvec.evaluate("default", t, []), "ConfigError", "must be a loaded Backbone",
     "load_backbone('default')"),
    (lambda b, t: promptvec.evaluate(b, t, [], prompt=3), "ConfigError", "not a int", "prompt='runs/sst2'"),
    (lambda b, t: promptvec.evaluate(b, t, promptvec.load_task_data(t)), "DataError", "not the whole task data",
     "data.test"),
    (lambda b, t: promptvec.evaluate(b, t, "a great film"), "DataError", "not a str", "evaluate(backbone"),
    (lambda b, t: promptvec.evaluate(b, 42, []), "TaskError", "not a int", "get_task('sst2')"),
    (lambda b, t: promptvec.load_task_data({"task": "sst2"}), "TaskError", "not a dict", "get_task"),
])
def test_the_python_api_explains_what_it_cannot_take(backbones, toy_task, call, error, message, fix):
    from promptvec import errors

    with pytest.raises(getattr(errors, error), match=message) as refused:
        call(backbones["llama"], str(toy_task))
    assert fix in refused.value.hint
