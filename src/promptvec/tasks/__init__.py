"""Tasks: built-in definitions and user YAML tasks, data loading and few-shot sampling."""

from promptvec.tasks.loading import TaskData, example_from_row, few_shot, load_task_data, subsample
from promptvec.tasks.registry import builtin_task_names, get_task, load_task_yaml
from promptvec.tasks.spec import Example, TaskSpec

__all__ = [
    "Example", "TaskData", "TaskSpec", "builtin_task_names", "example_from_row", "few_shot", "get_task",
    "load_task_data",
    "load_task_yaml", "subsample",
]
