"""The suite file's schema: what a suite may say, validated before anything is loaded — so a
paper-scale suite is checked (and its cost estimated) offline, and a typo anywhere, method and
source settings included, is refused by ``--dry-run`` instead of halfway through the run.

Pure validation: methods and analyses are looked up in their registries (which load their
implementations on first use); expanding a suite into runs is :mod:`promptvec.suites.plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from promptvec.errors import ConfigError, describe_validation_error
from promptvec.io import path_component, read_yaml_mapping
from promptvec.suites.analysis import ANALYSES
from promptvec.suites.method import METHODS
from promptvec.training.config import BackboneFamily, train_field


class SourcesSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(default_factory=list, description="source tasks, trained from every suite origin")
    targets: dict[str, list[str]] = Field(
        default_factory=dict, description="target task -> its source tasks (for transfer methods)")
    shots: int | None = Field(None, ge=1, description="training examples per source task, or all of a task's "
                              "training split when it has fewer (None = all)")
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


class BackboneSpec(BaseModel):
    """The frozen model every run of the suite uses (defaults and limits: :class:`TrainConfig`)."""

    model_config = ConfigDict(extra="forbid")
    model: str = train_field("model")
    family: BackboneFamily | None = train_field("family")
    max_length: int = train_field("max_length")
    chat_template: bool = train_field("chat_template")


class BudgetSpec(BaseModel):
    """Training and evaluation budget shared by every run of the suite (methods may override)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = train_field("max_steps")
    batch_size: int = train_field("batch_size")
    grad_accum: int = train_field("grad_accum")
    eval_every: int = train_field("eval_every")
    val_examples: int | None = train_field("val_examples")
    test_examples: int | None = train_field("test_examples")
    eval_seed: int = train_field("eval_seed")
    precision: Literal["fp32", "bf16", "auto"] = train_field("precision")
    compile: bool = train_field("compile")
    early_stopping_patience: int | None = train_field("early_stopping_patience")
    report_to: list[Literal["tensorboard", "wandb"]] = train_field("report_to")


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="registry name, e.g. pt, zero")
    label: str | None = Field(None, description="name in tables (default: name)")
    settings: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | None = Field(None, description="run only on these of the suite's tasks (e.g. a sensitivity "
                                    "study on one target); default: all")
    shots: list[int | None] | None = Field(None, description="run only at these of the suite's shot sizes (e.g. "
                                           "a costly method at the smallest); default: all")

    _options: BaseModel | None = PrivateAttr(None)

    @property
    def display(self) -> str:
        return self.label or self.name

    def validate_options(self) -> BaseModel:
        """Parse the settings with the method's model (ValueError if they do not fit) and keep the result."""
        self._options = METHODS[self.name].validate_settings(self.settings)
        return self._options

    @property
    def options(self) -> BaseModel:
        """The settings as the method's validated model: parsed once, when the suite is loaded."""
        return self._options if self._options is not None else self.validate_options()


class AcrossTasksSpec(BaseModel):
    """One method against a baseline over all the suite's tasks (each task one value): a t-test of the
    per-task mean differences, a random-effects estimate, a forest plot."""

    model_config = ConfigDict(extra="forbid")
    method: str = Field(description="method label")
    baseline: str = Field(description="method label it is compared with")
    primary: bool = Field(False, description="the study's one primary comparison (tested alone; the others are "
                          "corrected together)")


class StatsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    baseline: str | list[str] | None = Field(
        None, description="method label(s) every other method is compared with (e.g. [pt, spot])")
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=1)
    across_tasks: list[AcrossTasksSpec] = Field(
        default_factory=list, description="comparisons pooled over tasks (e.g. a leave-one-task-out study)")

    @model_validator(mode="after")
    def _one_primary(self) -> StatsSpec:
        if sum(c.primary for c in self.across_tasks) > 1:
            raise ValueError("stats.across_tasks: at most one comparison is primary")
        return self

    @property
    def baselines(self) -> list[str]:
        return [] if self.baseline is None else [self.baseline] if isinstance(self.baseline, str) else self.baseline


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    data_dir: str | None = None
    tasks: list[str] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    shots: list[int | None] = Field(default_factory=lambda: list[int | None]([None]),
                                    description="few-shot sizes; null = all; 0 = evaluate the initial prompt untrained")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="data + training seeds")
    origins: list[int] = Field(default_factory=lambda: [0], min_length=1, description="origin seeds")
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    stats: StatsSpec = Field(default_factory=StatsSpec)
    sources: SourcesSpec = Field(default_factory=SourcesSpec, description="source prompts for transfer methods")
    analyses: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="analyses of the source prompts by name (similarity, cross-origin, ...)")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int | None]) -> list[int | None]:
        if any(s is not None and s < 0 for s in v):
            raise ValueError("shots must be ≥ 0 (0 = untrained initial prompt, null = the full training set)")
        return v

    @model_validator(mode="after")
    def _methods_known(self) -> SuiteSpec:
        labels = [m.display for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method labels must be unique, got {labels} (give each a `label`)")
        _one_folder_each("method", [*labels, "source"], lambda label: label)
        _one_folder_each("task", list(dict.fromkeys([*self.tasks, *self.sources.tasks])),
                         lambda t: Path(t).stem if t.endswith((".yaml", ".yml")) else t)
        for method in self.methods:
            METHODS.check(method.name)
            method.validate_options()
        if self.sources.tasks:
            try:  # sources are `pt` runs: their settings are checked now, not when the first one starts
                METHODS["pt"].validate_settings(dict(self.sources.pt_settings()))
            except ValueError as exc:
                raise ValueError(f"sources.settings: {exc}") from None
        for baseline in self.stats.baselines:
            if baseline not in labels:
                raise ValueError(f"stats.baseline '{baseline}' is not one of the methods {labels}")
        for pooled in self.stats.across_tasks:
            unknown = [x for x in (pooled.method, pooled.baseline) if x not in labels]
            if unknown or pooled.method == pooled.baseline:
                raise ValueError(f"stats.across_tasks names {unknown or [pooled.method]}: give two different "
                                 f"method labels of {labels}")
        for method in self.methods:
            unknown = [t for t in method.tasks or [] if t not in self.tasks]
            if unknown:
                raise ValueError(f"method '{method.display}' names tasks {unknown} that are not in the suite's tasks")
            unknown_shots = [s for s in method.shots or [] if s not in self.shots]
            if unknown_shots:
                raise ValueError(f"method '{method.display}' names shots {unknown_shots} that are not in the suite's "
                                 f"shots {self.shots}")
        for method in self.methods:
            if METHODS[method.name].needs_sources:
                missing = [t for t in method.tasks or self.tasks if t not in self.sources.targets]
                if missing:
                    raise ValueError(f"method '{method.display}' transfers from sources, but tasks {missing} have "
                                     "no entry in sources.targets")
            source = METHODS[method.name].named_source(method.options)
            if METHODS[method.name].needs_sources and source is not None:
                foreign = [t for t in method.tasks or self.tasks if source not in self.sources.targets.get(t, [])]
                if foreign:
                    raise ValueError(f"method '{method.display}' starts from source '{source}', which sources.targets "
                                     f"does not list for {foreign} (limit the method with `tasks:`)")
            if METHODS[method.name].needs_target_examples and 0 in (method.shots or self.shots):
                raise ValueError(f"method '{method.display}' first trains on the target, so it has no 0-shot point: "
                                 "remove 0 from shots (or run it in a suite without it)")
            if METHODS[method.name].needs_multi_task_sources and not self.sources.multi_task:
                raise ValueError(f"method '{method.display}' needs multi-task source prompts: set "
                                 "sources.multi_task: true")
        for name, settings in self.analyses.items():
            ANALYSES[ANALYSES.check(name)].validate_settings(settings, self)
        return self


def _one_folder_each(kind: str, names: list[str], folder_text) -> None:
    """Distinct labels (or tasks) must give distinct run folders: ``PT lr=0.05`` and ``PT lr-0.05``, or
    ``a/task.yaml`` and ``b/task.yaml``, would otherwise silently become one run."""
    seen: dict[str, str] = {}
    for name in names:
        folder = path_component(folder_text(name), name)
        if folder in seen and seen[folder] != name:
            raise ValueError(f"{kind}s '{seen[folder]}' and '{name}' would share the run folder '{folder}'; give "
                             "them names that differ in letters or digits, not only in punctuation or folder")
        seen.setdefault(folder, name)


def load_suite(path: str | Path) -> SuiteSpec:
    """Read and validate a suite file (every method's settings parsed here, once); its name defaults
    to the file's."""
    p = Path(path)
    raw = read_yaml_mapping(p, "suite file", ConfigError)
    raw.setdefault("name", p.stem)
    try:
        return SuiteSpec(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: invalid suite: {describe_validation_error(exc)}",
                          "see docs/experiments.md for the suite keys") from None
