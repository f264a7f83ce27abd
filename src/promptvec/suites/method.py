"""What every method is — a registered class that turns one run spec into a run record — and the
registry of methods. Both live below the methods (in the suite layer) so that the suite schema and
the run plan look methods up without importing them; the built-in methods register when
:mod:`promptvec.methods.builtin` is imported, which the registry does on its first lookup."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from promptvec.errors import describe_validation_error
from promptvec.registry import Registry
from promptvec.training.config import train_default

# The contract names the suite (a SuiteSpec) and the run's context (a RunContext) as Any: the schema
# and the plan import this registry, so this module imports neither, not even for types (no import
# cycle, type-only ones included). Methods annotate them with the real types, which Any allows.


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
    def axes(cls, options: BaseModel) -> set[str]:
        """Which of {'shots', 'origin', 'seed'} the result depends on (``options``: the parsed settings)."""

    @classmethod
    @abstractmethod
    def estimate_steps(cls, suite: Any, options: BaseModel) -> int:
        """Training steps of one run (for the cost estimate)."""

    @classmethod
    def prompt_rows(cls, options: BaseModel) -> int:
        """Rows of the prompt a run trains or scores (the cost estimate's prompt length)."""
        return train_default("prompt_length")

    @classmethod
    def named_source(cls, options: BaseModel) -> str | None:
        """The one source task a run starts from when its settings name one (checked against the
        suite's ``sources.targets``), else None."""
        return None

    @classmethod
    @abstractmethod
    def execute(cls, ctx: Any) -> dict[str, Any]:
        """Do the run (resuming if it was interrupted) and return its record (with ``test``)."""

    @classmethod
    def report_sections(cls, suite: Any, out: Path, rows: list[dict], report_dir: Path) -> list:
        """Report blocks about what this method's runs did (e.g. DTVG's groups over training); the
        report calls this once per method used in the suite."""
        return []


S = TypeVar("S", bound=BaseModel)


def settings_as(options: BaseModel, kind: type[S]) -> S:
    """``options`` (a run's parsed settings) as the model ``kind`` a method declared: typed for the
    method's code, and a clear error (not a wrong attribute later) if a run reached the wrong method."""
    if not isinstance(options, kind):
        raise TypeError(f"settings are {type(options).__name__}, not {kind.__name__}")
    return options


METHODS: Registry[type[Method]] = Registry("method", populate="promptvec.methods.builtin")
register_method = METHODS.register()
