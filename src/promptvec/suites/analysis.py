"""What every analysis of a suite's source prompts is — a registered class configured under the
suite's ``analyses`` key that writes JSON under ``<suite out>/analyses/`` one item at a time — and
the registry of analyses. Both live in the suite layer so that the schema validates an analysis's
settings without importing the analyses (:mod:`promptvec.experiments.analyses`, imported on the
registry's first lookup)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from promptvec.errors import describe_validation_error
from promptvec.io import atomic_write_json, read_json
from promptvec.registry import Registry

ANALYSES: Registry[type[Analysis]] = Registry("analysis", populate="promptvec.experiments.analyses")
ANALYSES_DIR = "analyses"
register_analysis = ANALYSES.register()


@dataclass
class AnalysisContext:
    suite: Any  # SuiteSpec
    out: Path  # the suite folder
    backbone: Any
    load_data: Any  # task name -> TaskData
    deadline_passed: Any  # () -> bool (the --max-minutes budget)
    source_folder: Any  # (task, origin) -> the folder of that source run

    def source_record(self, task: str, origin: int) -> dict[str, Any]:
        return read_json(self.source_folder(task, origin) / "run.json", "source run record")



def result_path(out: Path, name: str, item: str | None = None) -> Path:
    """Where an analysis item is written: task files are named by their stem, never by their path."""
    base = out / ANALYSES_DIR
    if item is None:
        return base / f"{name}.json"
    slug = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(t).stem if t.endswith((".yaml", ".yml")) else t)
                    for t in item.split("+"))
    return base / name / f"{slug}.json"


class Analysis(ABC):
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    @classmethod
    def validate_settings(cls, settings: dict[str, Any], suite) -> BaseModel:
        try:
            parsed = cls.Settings(**settings)
        except ValidationError as exc:
            raise ValueError(f"analysis '{cls.name}' settings: {describe_validation_error(exc)}") from None
        cls.check(parsed, suite)
        return parsed

    @classmethod
    def check(cls, settings: BaseModel, suite) -> None:
        """Cross-checks against the suite (e.g. tasks that are sources)."""
        if not suite.sources.tasks:
            raise ValueError(f"analysis '{cls.name}' works on source prompts: list them in sources.tasks")

    @classmethod
    @abstractmethod
    def evaluations(cls, settings: BaseModel, suite) -> int:
        """Examples it scores (for the cost estimate)."""

    @classmethod
    def items(cls, settings: BaseModel, suite) -> list[str | None]:
        """Units written one file each (``None``: one file for the whole analysis)."""
        return [None]

    @classmethod
    @abstractmethod
    def compute(cls, settings: BaseModel, ctx: AnalysisContext, item: str | None) -> dict[str, Any]:
        """The JSON result of one item."""

    @classmethod
    def missing(cls, settings: BaseModel, suite, out: Path) -> list[str | None]:
        return [i for i in cls.items(settings, suite) if not result_path(out, cls.name, i).is_file()]

    @classmethod
    def run(cls, settings: BaseModel, ctx: AnalysisContext) -> bool:
        """Compute the missing items; False when stopped by the time budget (resumable)."""
        for item in cls.missing(settings, ctx.suite, ctx.out):
            if ctx.deadline_passed():
                return False
            atomic_write_json(result_path(ctx.out, cls.name, item), cls.compute(settings, ctx, item))
        return True
