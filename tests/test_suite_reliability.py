"""Suites under adversarial input (issue: reliability, round two): run folders built from user text
stay inside the suite folder, and distinct runs never share a folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import ConfigError, TaskError
from promptvec.suites.plan import RunSpec, run_dir, spec_path
from promptvec.suites.schema import load_suite
from promptvec.tasks import get_task


@pytest.mark.parametrize("label", ["..", ".", "...", "../x", "a/../../b", "/abs/path", "-", " "])
@pytest.mark.parametrize("task", ["sst2", "...yaml", "../../x.yaml", "a/..yaml"])
def test_run_folders_stay_inside_the_suite_folder(tmp_path, label, task):
    out = tmp_path / "suite"
    run = RunSpec("pt", label, (), task, 16, 0, 0)
    for path in (run_dir(out, run), spec_path(out, run)):
        assert path.resolve().is_relative_to(out.resolve()), (label, task, path)
        assert ".." not in path.relative_to(out).parts


def test_a_task_file_named_like_a_parent_folder_is_refused(tmp_path):
    path = tmp_path / "...yaml"
    path.write_text("doc_to_text: '{{text}}'\nlabels: [a, b]\n")
    with pytest.raises(TaskError, match="must not contain '/' or .* start with '.'"):
        get_task(str(path))


def _suite(tmp_path: Path, tasks: list[str], methods: list[dict]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "tasks": tasks, "shots": [16], "seeds": [0], "origins": [0],
                                    "methods": methods, "stats": {"baseline": methods[0]["label"]}}))
    return path


def test_runs_that_would_share_a_folder_are_refused_at_load_and_dry_run(tmp_path):
    """Labels differing only in punctuation, and two task files with one file name, used to become one
    run silently (the second never ran)."""
    labels = _suite(tmp_path, ["sst2"], [{"name": "pt", "label": "PT lr=0.05", "settings": {"lr": 0.05}},
                                         {"name": "pt", "label": "PT lr-0.05", "settings": {"lr": 0.5}}])
    with pytest.raises(ConfigError, match="'PT lr=0.05'.*'PT lr-0.05'.*would share the run folder"):
        load_suite(labels)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "task.yaml").write_text("doc_to_text: '{{text}}'\nlabels: [x, y]\n")
    tasks = _suite(tmp_path, [str(tmp_path / "a" / "task.yaml"), str(tmp_path / "b" / "task.yaml")],
                   [{"name": "pt", "label": "pt"}])
    with pytest.raises(ConfigError, match="a/task.yaml.*b/task.yaml.*would share"):
        load_suite(tasks)
    result = CliRunner().invoke(app, ["experiment", "run", str(tasks), "--dry-run"])
    assert result.exit_code == 2 and "would share the run folder" in result.output and "Traceback" not in result.output
