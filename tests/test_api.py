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


def test_run_suite_from_a_yaml_path(tmp_path, tiny_models, toy_task):
    from tests.conftest import tiny_suite_file

    path = tiny_suite_file(tmp_path, tiny_models, toy_task, seeds=[0],
                           methods=[{"name": "zero", "label": "no prompt", "settings": {"prompt": "none"}}],
                           stats={"baseline": "no prompt"})
    outcome = promptvec.run_suite(path, tmp_path / "out", progress=False, log=lambda message: None)
    assert outcome.completed == 1
    [row] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert row["label"] == "no prompt" and row["method"] == "zero"
