"""Look up tasks by name (built-in) or by path (user YAML). Both give a :class:`TaskSpec`."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from promptvec.errors import TaskError, describe_validation_error
from promptvec.registry import Registry
from promptvec.tasks.lm_eval_yaml import is_lm_eval_task, read_task_file, translate
from promptvec.tasks.spec import TaskSpec


def _read_builtin(registry: Registry[TaskSpec]) -> None:
    text = resources.files("promptvec.tasks").joinpath("builtin.yaml").read_text(encoding="utf-8")
    for name, body in yaml.safe_load(text).items():
        registry.add(name, TaskSpec(task=name, **body))


BUILTIN_TASKS: Registry[TaskSpec] = Registry("task", TaskError, populate=_read_builtin)


def builtin_task_names() -> list[str]:
    return list(BUILTIN_TASKS)


def load_task_yaml(path: str | Path) -> TaskSpec:
    """Read a user task definition: promptvec's own keys, or an lm-evaluation-harness task file
    (:mod:`promptvec.tasks.lm_eval_yaml`). Relative ``data_files`` are resolved against the YAML's folder."""
    p = Path(path)
    raw = read_task_file(p)
    if is_lm_eval_task(raw):
        raw = translate(raw, p)
    raw.setdefault("task", p.stem)
    files = raw.get("data_files")
    if isinstance(files, dict):
        bad = [split for split, f in files.items() if not isinstance(f, str) or not f or not isinstance(split, str)]
        if bad:
            raise TaskError(f"{p}: data_files must map split names to file paths; {bad} do not",
                            "write e.g. data_files: {train: train.jsonl, test: test.jsonl}")
        raw["data_files"] = {
            split: str((p.parent / f).resolve()) if not Path(str(f)).is_absolute() else str(f)
            for split, f in files.items()
        }
    try:
        return TaskSpec(**raw)
    except ValidationError as exc:
        keys = [str(e["loc"][0]) for e in exc.errors() if e["loc"]]
        line = _key_line(p, keys[0]) if keys else None
        where = f"{p}:{line}" if line else str(p)
        raise TaskError(f"{where}: invalid task definition: {describe_validation_error(exc)}",
                        "see docs/tasks.md for the task YAML keys") from None
    except TypeError as exc:
        raise TaskError(f"{p}: invalid task definition: {exc}", "see docs/tasks.md") from None


def _key_line(path: Path, key: str) -> int | None:
    """The line of a top-level key in a YAML file (1-based), so an error can point at it: the first line
    that starts with the key (plain or quoted) and a colon — a text search, not a second parse."""
    pattern = re.compile(rf"^(?:{re.escape(key)}|'{re.escape(key)}'|\"{re.escape(key)}\")\s*:", re.M)
    found = pattern.search(path.read_text(encoding="utf-8"))
    return None if found is None else found.string.count("\n", 0, found.start()) + 1


def get_task(name_or_path: str | os.PathLike | TaskSpec) -> TaskSpec:
    """A built-in task by name, or a user task from a ``.yaml``/``.yml`` file."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    if not isinstance(name_or_path, str | os.PathLike):
        raise TaskError(f"a task is given by name, file path or TaskSpec, not a {type(name_or_path).__name__}",
                        "e.g. get_task('sst2') or get_task('tasks/my_task.yaml')")
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return load_task_yaml(text)
    if text in BUILTIN_TASKS:
        return BUILTIN_TASKS[text]
    message, hint = BUILTIN_TASKS.unknown_message(text)
    if not hint.startswith("did you mean"):
        hint = "run `promptvec tasks` to list the built-in tasks"
    raise TaskError(message, hint + " (or pass the path of a task YAML file)")
