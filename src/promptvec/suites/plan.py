"""The run plan of a suite: which runs it has (methods × tasks × shots × origins × seeds, source
prompts first), their stable ids, and where each writes (``<suite>/runs/<run id>/``).

Each run gets a stable id and folder; a method declares which axes it depends on, so e.g. the
no-prompt baseline is run once per task instead of once per seed. Source prompts (trained once per
origin *before* any target run, which transfer methods start from) are ordinary ``pt`` runs in the
suite's own folder (``runs/source/<task>/…``), so they resume, are skipped when done and appear in
the results with provenance; a multi-task prompt over several sources is a ``pt`` run whose task
is ``a+b`` (tasks sorted, so ``sst2+trec`` and ``trec+sst2`` share one). Checkpoints are selected
among *trained* steps only by default: a source whose validation never beats its origin would
otherwise give a zero task prompt vector.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from promptvec.errors import ConfigError
from promptvec.io import path_component, read_json
from promptvec.suites.method import METHODS, settings_as
from promptvec.suites.schema import BackboneSpec, BudgetSpec, SourcesSpec, SuiteSpec

RUNS_DIR = "runs"
SPECS_DIR = "specs"  # per-run bookkeeping (fingerprint, data hash), kept outside the trainer's folder
SOURCE_LABEL = "source"
S = TypeVar("S", bound=BaseModel)

STORE_DIR = "store"  # inside a suite folder: every source prompt and its vector, named task@o<origin>


def stored_name(task: str, origin: int | None) -> str:
    """The store name of a source prompt/vector: ``task@o<origin>``."""
    return f"{task}@o{origin}"


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
    #: ``settings`` as the method's validated model, when the suite already parsed them (else on first use)
    parsed: BaseModel | None = field(default=None, compare=False, hash=False, repr=False)

    def options(self, kind: type[S]) -> S:
        """The run's settings as its method's validated model ``kind`` — parsed once (when the suite was
        loaded, or on first use for runs the plan makes itself, such as source runs), never per use."""
        return settings_as(self.parsed if self.parsed is not None else self._parsed_settings, kind)

    @cached_property
    def _parsed_settings(self) -> BaseModel:
        return METHODS[self.method].validate_settings(dict(self.settings))

    @property
    def run_id(self) -> str:
        """``label/task/shots/origin-seed``, each part one safe path component (see :func:`path_component`)."""
        slug = path_component(self.label, self.method)
        task = "+".join(path_component(Path(t).stem if t.endswith((".yaml", ".yml")) else t, "task")
                        for t in self.tasks)
        shots = "full" if self.shots is None else f"{self.shots}shot"
        origin = "o-" if self.origin is None else f"o{self.origin}"
        seed = "s-" if self.seed is None else f"s{self.seed}"
        return f"{slug}/{task}/{shots}/{origin}-{seed}"

    @property
    def origin_seed(self) -> int:
        """The origin of a run whose result depends on one (every run that trains or starts a prompt)."""
        if self.origin is None:
            raise ValueError(f"run {self.run_id} has no origin: its method does not depend on one")
        return self.origin

    @property
    def data_seed(self) -> int:
        """The seed (training sample and order) of a run whose result depends on one."""
        if self.seed is None:
            raise ValueError(f"run {self.run_id} has no seed: its method does not depend on one")
        return self.seed

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
    return _inside(out / RUNS_DIR, run.run_id)


def _inside(root: Path, relative: str) -> Path:
    """``root / relative``, checked to resolve inside ``root`` (a second guard behind the safe ids)."""
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"run id '{relative}' would write outside {root}", "rename the method label or task")
    return path


def expand(suite: SuiteSpec) -> list[RunSpec]:
    """All runs of the suite — source prompts first (targets start from them), then the methods'
    runs, deduplicated along the axes a method does not depend on."""
    runs: dict[str, RunSpec] = {}
    for run in source_runs(suite):
        _add_unique(runs, run)
    for method in suite.methods:
        axes = METHODS[method.name].axes(method.options)
        for task in (t for t in suite.tasks if method.tasks is None or t in method.tasks):
            shot_sizes = [s for s in suite.shots if method.shots is None or s in method.shots]
            for shots in (shot_sizes if "shots" in axes else [0]):  # training-free = the 0-shot point
                for origin in (suite.origins if "origin" in axes else [None]):
                    # at 0 shots nothing is trained, so the data/training seed does not matter
                    for seed in (suite.seeds if "seed" in axes and shots != 0 else [None]):
                        run = RunSpec(method.name, method.display, tuple(sorted(method.settings.items())), task,
                                      shots, origin, seed, parsed=method.options)
                        _add_unique(runs, run)
    return list(runs.values())


def _add_unique(runs: dict[str, RunSpec], run: RunSpec) -> None:
    """Add ``run`` unless an identical run is there (a method's runs repeat along axes it does not
    depend on); two *different* runs with one id (labels or task files that make the same folder
    name) are refused, naming both, instead of silently becoming one run."""
    existing = runs.setdefault(run.run_id, run)
    if existing != run:
        def describe(r: RunSpec) -> str:
            return f"method '{r.label}' ({r.method}) on task '{r.task}'"

        raise ConfigError(f"{describe(existing)} and {describe(run)} would share the run folder '{run.run_id}'",
                          "give them labels (or task file names) that differ in letters or digits, not only "
                          "in punctuation")


def spec_path(out: Path, run: RunSpec) -> Path:
    return _inside(out / SPECS_DIR, f"{run.run_id}.json")


def completed_record(out: Path) -> dict[str, Any] | None:
    """The run record in ``out`` if that run completed, else None."""
    record_path = out / "run.json"
    if record_path.is_file():
        previous = read_json(record_path, "run record")
        if previous.get("status") == "completed":
            return previous
    return None


def source_runs(suite: SuiteSpec) -> list[RunSpec]:
    """The suite's source RunSpecs: each source task (and each multi-task union) × origin."""
    spec: SourcesSpec = suite.sources
    tasks = list(spec.tasks)
    if spec.multi_task:
        tasks += sorted({spec.multi_task_name(t) for t in spec.targets})
    return [RunSpec("pt", SOURCE_LABEL, spec.pt_settings(), task, spec.shots, origin, spec.seed)
            for task in tasks for origin in suite.origins]


def source_run(suite: SuiteSpec, task: str, origin: int) -> RunSpec:
    """The RunSpec of one source prompt (``task`` may be an ``a+b`` union)."""
    spec: SourcesSpec = suite.sources
    return RunSpec("pt", SOURCE_LABEL, spec.pt_settings(), task, spec.shots, origin, spec.seed)


def is_source(run: RunSpec) -> bool:
    return run.label == SOURCE_LABEL
