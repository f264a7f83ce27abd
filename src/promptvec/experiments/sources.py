"""Source prompts of a suite: prompts trained once per origin *before* any target run, which
transfer methods (tpv-init, single-source, multi-source, and later SPoT, ATTEMPT, DTVG) start from.

They are ordinary ``pt`` runs in the suite's own folder (``runs/source/<task>/…``), so they resume,
are skipped when done and appear in the results with provenance; a multi-task prompt over several
sources is a ``pt`` run whose task is ``a+b`` (tasks sorted, so ``sst2+trec`` and ``trec+sst2``
share one). Checkpoints are selected among *trained* steps only by default: a source whose
validation never beats its origin would otherwise give a zero task prompt vector.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SOURCE_LABEL = "source"
STORE_DIR = "store"  # inside a suite folder: every source prompt and its vector, named task@o<origin>


def stored_name(task: str, origin: int | None) -> str:
    """The store name of a source prompt/vector: ``task@o<origin>``."""
    return f"{task}@o{origin}"


class SourcesSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(default_factory=list, description="source tasks, trained from every suite origin")
    targets: dict[str, list[str]] = Field(
        default_factory=dict, description="target task -> its source tasks (for transfer methods)")
    shots: int | None = Field(None, ge=1, description="training examples per source task (None = all)")
    steps: int | None = Field(None, ge=1, description="training steps of a source (default: the suite budget)")
    seed: int = Field(0, description="data/training seed of the sources (trained once, not per suite seed)")
    settings: dict[str, Any] = Field(default_factory=dict, description="`pt` settings (lr, prompt_length, ...)")
    select_initial: bool = Field(False, description="allow a source to keep its untrained origin (zero vector)")
    multi_task: bool = Field(False, description="also train one prompt on the union of each target's sources")
    library: str | None = Field(
        None, description="a folder shared by suites: source runs found there (same model, task, shots, steps, "
        "settings, origin, seed and budget) are copied instead of trained; sources trained here are added to it")

    @model_validator(mode="after")
    def _consistent(self) -> SourcesSpec:
        for target, sources in self.targets.items():
            if not sources:
                raise ValueError(f"target '{target}' lists no sources")
            if target in sources:
                raise ValueError(f"target '{target}' is listed as one of its own sources; a target never transfers "
                                 "from itself")
            missing = [s for s in sources if s not in self.tasks]
            if missing:
                raise ValueError(f"sources {missing} of target '{target}' are not in sources.tasks {self.tasks}")
        return self

    def pt_settings(self, extra: dict[str, Any] | None = None) -> tuple[tuple[str, Any], ...]:
        settings = {**self.settings, "select_initial": self.select_initial, **(extra or {})}
        if self.steps is not None:
            settings["steps"] = self.steps
        return tuple(sorted(settings.items()))

    def multi_task_name(self, target: str) -> str:
        return "+".join(sorted(self.targets[target]))


def source_runs(suite) -> list:
    """The suite's source RunSpecs: each source task (and each multi-task union) × origin."""
    from promptvec.experiments.suite import RunSpec

    spec: SourcesSpec = suite.sources
    tasks = list(spec.tasks)
    if spec.multi_task:
        tasks += sorted({spec.multi_task_name(t) for t in spec.targets})
    return [RunSpec("pt", SOURCE_LABEL, spec.pt_settings(), task, spec.shots, origin, spec.seed)
            for task in tasks for origin in suite.origins]


def source_run(suite, task: str, origin: int):
    """The RunSpec of one source prompt (``task`` may be an ``a+b`` union)."""
    from promptvec.experiments.suite import RunSpec

    spec: SourcesSpec = suite.sources
    return RunSpec("pt", SOURCE_LABEL, spec.pt_settings(), task, spec.shots, origin, spec.seed)


def is_source(run) -> bool:
    return run.label == SOURCE_LABEL
