"""What the runner hands a method for one run: the suite and the run (typed), the loaded backbone
and data, where to write, and the budget hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from promptvec.backbones import Backbone
from promptvec.suites.plan import RunSpec
from promptvec.suites.schema import SuiteSpec
from promptvec.tasks import TaskData


@dataclass
class RunContext:
    """What the runner hands a method: the loaded backbone and data, where to write, budget hooks."""

    suite: SuiteSpec
    run: RunSpec
    backbone: Backbone
    data: TaskData | list[TaskData]  # a list for multi-task runs (task ``a+b``)
    out: Path
    suite_out: Path  # the suite folder (where source runs live)
    on_step: Callable[[int], None] | None = None
    progress: bool = False
    #: task name -> TaskData (e.g. the source tasks' data for joint training)
    load_data: Callable[[str], TaskData] | None = None
    data_parallel: bool = True  # False: the suite spreads runs over the processes, each trains alone

    @property
    def task_data(self) -> TaskData:
        """The data of the run's task (of its first task, for a multi-task run)."""
        return self.data[0] if isinstance(self.data, list) else self.data
