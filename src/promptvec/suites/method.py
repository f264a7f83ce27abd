"""What every method is — a registered class that turns one run spec into a run record — and the
registry of methods. Both live below the methods (in the suite layer) so that the suite schema and
the run plan look methods up without importing them; the built-in methods register when
:mod:`promptvec.methods.builtin` is imported, which the registry does on its first lookup."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from promptvec.errors import describe_validation_error
from promptvec.prompts import PromptModule, StaticPrompt
from promptvec.registry import Registry
from promptvec.training.config import train_default

# The contract names the suite (a SuiteSpec) and the run's context (a RunContext) as Any: the schema
# and the plan import this registry, so this module imports neither, not even for types (no import
# cycle, type-only ones included). Methods annotate them with the real types, which Any allows.


@dataclass(frozen=True)
class PlannedTraining:
    """One training a run will do, as the plan alone knows it — what the cost estimate counts. A plain
    prompt training whose start the plan knows, and that another planned run of the same cell trains
    from that start with the same settings, is copied at run time (``reused_from``), not trained."""

    steps: int
    #: examples per batch: the run's settings' ``batch_size``, else the suite budget's (a stage trains at its run's)
    batch_size: int
    #: where training starts when the plan knows it ("origin", "source:sst2"); several: chosen at run time
    #: among them (a copy only if each is trained elsewhere); empty: not a plain prompt training, never a copy
    starts: frozenset[str] = frozenset()
    #: the settings that, with the start and the run's cell, define the training (JSON; "" with no start)
    settings: str = ""
    #: whether it is the run's own training (its test evaluation is copied with it), not a stage before it
    final: bool = True


class Method(ABC):
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    #: the kind of prompt module a run trains; its ``shares_prompt`` tells the cost estimate whether the
    #: prompt's rows are paid once per batch or on every example (ATTEMPT, Fusion)
    prompt_module: ClassVar[type[PromptModule]] = StaticPrompt
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
    def planned_trainings(cls, suite: Any, run: Any) -> list[PlannedTraining]:
        """The trainings one run does, in order, the run's own last (none for a run that only scores)."""

    @classmethod
    def estimate_steps(cls, suite: Any, run: Any) -> int:
        """Training steps of one run, all stages together (progress and the cost estimate)."""
        return sum(training.steps for training in cls.planned_trainings(suite, run))

    @classmethod
    def planned_scoring(cls, suite: Any, run: Any) -> int:
        """Examples the run scores under fixed prompts before it trains — work the cost estimate prices like
        evaluation. None, unless the method chooses its start by scoring candidates (``auto``)."""
        return 0

    @classmethod
    def unclocked_start_seconds(cls, record: Callable[[], dict[str, Any]]) -> float:
        """Seconds a run of this method spent making its start that its wall time leaves out, from its record
        (``record()`` reads ``run.json``, so a method that needs nothing from it reads nothing). None by default:
        since the ``start`` phase exists it is inside the wall time. A method whose older records, or whose copied
        runs (a fall-back reusing another run), kept such work apart overrides this, so that a study's cost
        counts it (``auto``: the choice)."""
        return 0.0

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
