"""What every method is: a registered class that turns one run spec into a run record, and the
context the runner hands it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from promptvec.backbones import Backbone
from promptvec.errors import describe_validation_error
from promptvec.tasks import TaskData


@dataclass
class RunContext:
    """What the runner hands a method: the loaded backbone and data, where to write, budget hooks."""

    # SuiteSpec and RunSpec: typed Any because the suite's plan imports the method registry
    suite: Any
    run: Any
    backbone: Backbone
    data: TaskData | list[TaskData]  # a list for multi-task runs (task ``a+b``)
    out: Path
    suite_out: Path  # the suite folder (where source runs live)
    on_step: Any = None
    progress: bool = False
    load_data: Any = None  # task name -> TaskData (e.g. the source tasks' data for joint training)
    data_parallel: bool = True  # False: the suite spreads runs over the processes, each trains alone

    @property
    def task_data(self) -> TaskData:
        """The data of the run's task (of its first task, for a multi-task run)."""
        return self.data[0] if isinstance(self.data, list) else self.data


class Method(ABC):
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    needs_sources: ClassVar[bool] = False  # transfers from the suite's source prompts
    needs_multi_task_sources: ClassVar[bool] = False
    needs_target_examples: ClassVar[bool] = False  # trains on the target before transferring (no 0-shot point)

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> BaseModel:
        try:
            return cls.Settings(**settings)
        except ValidationError as exc:
            raise ValueError(f"method '{cls.name}' settings: {describe_validation_error(exc)}") from None

    @classmethod
    @abstractmethod
    def axes(cls, settings: dict[str, Any]) -> set[str]:
        """Which of {'shots', 'origin', 'seed'} the result depends on."""

    @classmethod
    @abstractmethod
    def estimate_steps(cls, suite, settings: dict[str, Any]) -> int:
        """Training steps of one run (for the cost estimate)."""

    @classmethod
    @abstractmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        """Do the run (resuming if it was interrupted) and return its record (with ``test``)."""

    @classmethod
    def report_sections(cls, suite, out: Path, rows: list[dict], report_dir: Path) -> list:
        """Report blocks about what this method's runs did (e.g. DTVG's groups over training); the
        report calls this once per method used in the suite."""
        return []
