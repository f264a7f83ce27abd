"""Experiment suites in YAML: backbone × methods × tasks × shots × origins × seeds → runs.

A suite is validated before anything is loaded, so a paper-scale suite can be checked (and its
cost estimated) offline. Each run gets a stable id and folder; a method declares which axes it
depends on, so e.g. the no-prompt baseline is run once per task instead of once per seed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promptvec.errors import ConfigError, describe_validation_error
from promptvec.experiments.sources import SourcesSpec, source_runs
from promptvec.io import read_yaml_mapping

RUNS_DIR = "runs"


class BackboneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "default"
    family: Literal["causal", "seq2seq", "encoder"] | None = None
    max_length: int = Field(256, ge=16)
    chat_template: bool = False


class BudgetSpec(BaseModel):
    """Training and evaluation budget shared by every run of the suite (methods may override)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    eval_every: int = Field(25, ge=1)
    val_examples: int | None = Field(200, ge=1)
    test_examples: int | None = Field(500, ge=1, description="seeded test subsample (None = full split)")
    eval_seed: int = 1234
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    compile: bool = Field(False, description="torch.compile the frozen model (GPU, long runs)")
    early_stopping_patience: int | None = Field(None, ge=1)
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list, description="off by default")


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="registry name, e.g. pt, zero")
    label: str | None = Field(None, description="name in tables (default: name)")
    settings: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | None = Field(None, description="run only on these of the suite's tasks (e.g. a sensitivity "
                                    "study on one target); default: all")

    @property
    def display(self) -> str:
        return self.label or self.name


class StatsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    baseline: str | list[str] | None = Field(
        None, description="method label(s) every other method is compared with (e.g. [pt, spot])")
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=1)

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
    shots: list[int | None] = Field(default_factory=lambda: [None],
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
        from promptvec.experiments.methods import METHODS

        labels = [m.display for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method labels must be unique, got {labels} (give each a `label`)")
        for method in self.methods:
            if method.name not in METHODS:
                raise ValueError(f"unknown method '{method.name}'; known: {sorted(METHODS)}")
            METHODS[method.name].validate_settings(method.settings)
        for baseline in self.stats.baselines:
            if baseline not in labels:
                raise ValueError(f"stats.baseline '{baseline}' is not one of the methods {labels}")
        for method in self.methods:
            unknown = [t for t in method.tasks or [] if t not in self.tasks]
            if unknown:
                raise ValueError(f"method '{method.display}' names tasks {unknown} that are not in the suite's tasks")
        for method in self.methods:
            if METHODS[method.name].needs_sources:
                missing = [t for t in self.tasks if t not in self.sources.targets]
                if missing:
                    raise ValueError(f"method '{method.display}' transfers from sources, but tasks {missing} have "
                                     "no entry in sources.targets")
            source = method.settings.get("source")
            if METHODS[method.name].needs_sources and source is not None:
                foreign = [t for t in method.tasks or self.tasks if source not in self.sources.targets.get(t, [])]
                if foreign:
                    raise ValueError(f"method '{method.display}' starts from source '{source}', which sources.targets "
                                     f"does not list for {foreign} (limit the method with `tasks:`)")
            if METHODS[method.name].needs_target_examples and 0 in self.shots:
                raise ValueError(f"method '{method.display}' first trains on the target, so it has no 0-shot point: "
                                 "remove 0 from shots (or run it in a suite without it)")
            if METHODS[method.name].needs_multi_task_sources and not self.sources.multi_task:
                raise ValueError(f"method '{method.display}' needs multi-task source prompts: set "
                                 "sources.multi_task: true")
        from promptvec.experiments.analyses import ANALYSES

        for name, settings in self.analyses.items():
            ANALYSES[ANALYSES.check(name)].validate_settings(settings, self)
        return self


def load_suite(path: str | Path) -> SuiteSpec:
    p = Path(path)
    raw = read_yaml_mapping(p, "suite file", ConfigError)
    raw.setdefault("name", p.stem)
    try:
        return SuiteSpec(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: invalid suite: {describe_validation_error(exc)}",
                          "see docs/experiments.md for the suite keys") from None


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: a method on a task at one shots/origin/seed point."""

    method: str
    label: str
    settings: tuple[tuple[str, Any], ...]
    task: str
    shots: int | None  # None = full training set; 0 = training-free
    origin: int | None
    seed: int | None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def run_id(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-") or self.method
        task = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(t).stem if t.endswith((".yaml", ".yml")) else t)
                        for t in self.tasks)
        shots = "full" if self.shots is None else f"{self.shots}shot"
        origin = "o-" if self.origin is None else f"o{self.origin}"
        seed = "s-" if self.seed is None else f"s{self.seed}"
        return f"{slug}/{task}/{shots}/{origin}-{seed}"

    @property
    def tasks(self) -> list[str]:
        """The task(s) of the run: ``a+b`` is a multi-task run over a and b."""
        return [self.task] if "+" not in self.task or Path(self.task).is_file() else self.task.split("+")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "label": self.label, "settings": dict(self.settings), "task": self.task,
                "shots": self.shots, "origin": self.origin, "seed": self.seed, "run_id": self.run_id}

    def payload(self, suite: SuiteSpec) -> dict[str, Any]:
        """Everything that defines the run's result (tracking options do not). A run that sets its
        own ``steps`` (every source run) does not depend on the budget's, so a suite with another
        target budget still finds its sources (in its folder and in a source library)."""
        return {"run": self.to_dict(), "backbone": suite.backbone.model_dump(),
                "budget": suite.budget.model_dump(exclude=NOT_RESULT_FIELDS | self._overridden_budget())}

    def _overridden_budget(self) -> set[str]:
        return {"steps"} & set(dict(self.settings))

    def fingerprint(self, suite: SuiteSpec) -> str:
        """Hash of :meth:`payload` (to detect a changed suite)."""
        return hashlib.sha256(json.dumps(self.payload(suite), sort_keys=True, default=str).encode()).hexdigest()[:16]


NOT_RESULT_FIELDS = {"report_to"}


def same_payload(current: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """Equal up to options added since the run was made, when those keep their defaults, and up to
    budget keys the run overrides (a payload written before they were left out still matches)."""
    if current["run"] != recorded.get("run"):
        return False
    overridden = {"budget": {"steps"} & set(current["run"].get("settings") or {}), "backbone": set()}
    for section, model in (("backbone", BackboneSpec), ("budget", BudgetSpec)):
        defaults = {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
        a, b = current[section], recorded.get(section, {})
        if any(a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)) for k in (set(a) | set(b)) - overridden[section]):
            return False
    return True


def run_dir(out: Path, run: RunSpec) -> Path:
    return out / RUNS_DIR / run.run_id


def expand(suite: SuiteSpec) -> list[RunSpec]:
    """All runs of the suite — source prompts first (targets start from them), then the methods'
    runs, deduplicated along the axes a method does not depend on."""
    from promptvec.experiments.methods import METHODS

    runs: dict[str, RunSpec] = {run.run_id: run for run in source_runs(suite)}
    for method in suite.methods:
        axes = METHODS[method.name].axes(method.settings)
        for task in (t for t in suite.tasks if method.tasks is None or t in method.tasks):
            for shots in (suite.shots if "shots" in axes else [0]):  # training-free = the 0-shot point
                for origin in (suite.origins if "origin" in axes else [None]):
                    # at 0 shots nothing is trained, so the data/training seed does not matter
                    for seed in (suite.seeds if "seed" in axes and shots != 0 else [None]):
                        run = RunSpec(method.name, method.display, tuple(sorted(method.settings.items())), task,
                                      shots, origin, seed)
                        runs.setdefault(run.run_id, run)
    return list(runs.values())
