"""Building a prompt library (``promptvec library build``): one source prompt per task, trained with
one recipe as an ordinary suite (so it resumes, runs with ``--jobs``, estimates its cost, and reuses
source runs a ``sources.library`` folder already holds), then packaged as a read-only
:class:`~promptvec.library.PromptLibrary` — prompts, task prompt vectors, scores, recipe, model
fingerprint; no checkpoints.

The suite is :func:`library_suite`; ``examples/suites/library-smollm2.yaml`` is the same suite written
out (a test keeps the two equal), and is how the library shipped with promptvec was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptvec.errors import ConfigError, describe_validation_error
from promptvec.experiments.runner import estimate_seconds, format_duration, run_suite, status_of
from promptvec.io import atomic_directory, atomic_write_json, read_json
from promptvec.library import LIBRARY_FILE, LibraryEntry, LibraryManifest, PromptLibrary
from promptvec.library.library import FORMAT
from promptvec.provenance import code_version
from promptvec.store import VectorStore
from promptvec.suites.plan import STORE_DIR, expand, source_runs, stored_name
from promptvec.suites.results import collect_results
from promptvec.suites.schema import SuiteSpec
from promptvec.tasks import get_task

#: the shipped library's tasks: every built-in task with local data whose inputs fit the recipe
#: (squad_v2's contexts do not fit 128 tokens; gsm8k's chains of reasoning are out of a 135M model's reach)
LIBRARY_TASKS = ("sst2", "imdb", "agnews", "trec", "cola", "mrpc", "qqp", "stsb", "rte", "mnli", "qnli", "snli",
                 "lama_p19", "lama_p131", "lama_p103", "lama_p37", "lama_p36", "lama_p101", "lama_p106",
                 "lama_p140", "lama_p176", "lama_p413")
NO_PROMPT_LABEL = "no prompt"


class LibraryRecipe(BaseModel):
    """How every source prompt of a library is trained (the transfer study's source recipe)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shots: int = Field(1000, ge=1, description="training examples per task (or the whole split when smaller)")
    steps: int = Field(300, ge=1)
    lr: float = Field(0.03, gt=0)
    prompt_length: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    eval_every: int = Field(20, ge=1, description="validation every N steps; the checkpoint is chosen among "
                            "trained steps")
    val_examples: int = Field(100, ge=1)
    test_examples: int = Field(400, ge=1)
    max_length: int = Field(128, ge=16)
    origin: int = Field(0, description="the origin every source starts from")
    seed: int = Field(0, description="data and training seed")

    @classmethod
    def with_overrides(cls, **overrides: Any) -> LibraryRecipe:
        """The recipe with the given settings changed (None = keep the recipe's), checked."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(f"invalid library recipe: {describe_validation_error(exc)}", "fix the option(s) named"
                              ) from None


def library_suite(model: str, tasks: list[str] | tuple[str, ...] = LIBRARY_TASKS,
                  recipe: LibraryRecipe | None = None, sources_library: str | None = None,
                  name: str = "library") -> SuiteSpec:
    """The suite that trains a library: every task as a source (recipe above) and no prompt on each."""
    recipe = recipe or LibraryRecipe()
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise ConfigError("a library needs at least one task", "pass --tasks")
    return SuiteSpec(
        name=name, backbone={"model": model, "max_length": recipe.max_length}, tasks=tasks, shots=[0], seeds=[0],
        origins=[recipe.origin],
        budget={"steps": recipe.steps, "batch_size": recipe.batch_size, "eval_every": recipe.eval_every,
                "val_examples": recipe.val_examples, "test_examples": recipe.test_examples},
        sources={"tasks": tasks, "shots": recipe.shots, "steps": recipe.steps, "seed": recipe.seed,
                 "settings": {"lr": recipe.lr, "prompt_length": recipe.prompt_length}, "library": sources_library},
        methods=[{"name": "zero", "label": NO_PROMPT_LABEL, "settings": {"prompt": "none"}}])


@dataclass
class LibraryPlan:
    """What building a library will do, said before anything runs."""

    suite: SuiteSpec
    out: Path
    runs: int
    done: int
    estimate_s: float | None

    def describe(self) -> str:
        return (f"library for model '{self.suite.backbone.model}': {len(self.suite.sources.tasks)} tasks "
                f"({self.runs} runs: a source prompt and a no-prompt score per task), {self.done} done; estimated "
                f"CPU time for the rest: {format_duration(self.estimate_s)} (resumable: run the same command again)")


def plan_library(model: str, out: str | Path, tasks: list[str] | tuple[str, ...] = LIBRARY_TASKS,
                 recipe: LibraryRecipe | None = None, sources_library: str | None = None,
                 data_dir: str | None = None) -> LibraryPlan:
    """The library suite and its cost (loads no model)."""
    suite = library_suite(model, tasks, recipe, sources_library)
    out = Path(out)
    statuses = [status_of(suite, out, run) for run in expand(suite)]
    return LibraryPlan(suite, out, len(statuses), sum(st.state == "done" for st in statuses),
                       estimate_seconds(suite, statuses, out, data_dir))


def build_library(plan: LibraryPlan, dest: str | Path, jobs: int = 1, data_dir: str | None = None,
                  max_minutes: float | None = None, progress: bool = True, log=print) -> PromptLibrary | None:
    """Train what the plan still lacks (resuming) and package the library into ``dest``; None when the
    time budget stopped it first (run again to continue)."""
    _check_destination(Path(dest))
    outcome = run_suite(plan.suite, plan.out, jobs=jobs, max_minutes=max_minutes, data_dir=data_dir,
                        progress=progress, log=log)
    if outcome.stopped:
        return None
    return package_library(plan.suite, plan.out, Path(dest))


def package_library(suite: SuiteSpec, out: Path, dest: Path, name: str | None = None) -> PromptLibrary:
    """Package the finished library suite in ``out`` as a library folder ``dest`` (written whole, then
    swapped in). ``dest`` may be a library this function wrote before, or a new folder — never a
    folder holding anything else."""
    out, dest = Path(out), Path(dest)
    _check_destination(dest)
    rows = collect_results(suite, out)
    sources = {r["task"]: r for r in rows if r["label"] == "source"}
    no_prompt = {r["task"]: r for r in rows if r["label"] == NO_PROMPT_LABEL}
    missing = [run.task for run in source_runs(suite) if run.task not in sources]
    if missing:
        raise ConfigError(f"the library suite in {out} has not finished: no trained source for {missing}",
                          "run `promptvec library build` again with the same --out (it resumes)")
    suite_store = VectorStore(out / STORE_DIR, read_only=True)
    stored = {(e.kind, e.name): e for e in suite_store.entries()}
    entries: list[LibraryEntry] = []
    with atomic_directory(dest) as tmp:
        library_store = VectorStore(tmp)
        for task, row in sources.items():
            ref = stored_name(task, row["origin"])
            vector_entry, prompt_entry = stored.get(("vector", ref)), stored.get(("prompt", ref))
            if vector_entry is None or prompt_entry is None:
                raise ConfigError(f"source '{ref}' is not in the suite's store {out / STORE_DIR}",
                                  "run `promptvec library build` again with the same --out")
            vector = suite_store.load_vector(vector_entry.sha256)
            prompt, _ = suite_store.raw_prompt(prompt_entry.sha256)
            added_vector = library_store.add_vector(vector, name=ref)
            added_prompt = library_store.add_prompt(prompt, prompt_entry.metadata, name=ref)
            spec = get_task(task)
            record = read_json(out / "runs" / row["run_id"] / "run.json", "run record")
            baseline = no_prompt.get(task)
            entries.append(LibraryEntry(
                task=spec.task, group=spec.group, output_type=spec.output_type, metric=spec.primary_metric,
                score=row["metrics"].get(spec.primary_metric),
                no_prompt=baseline["metrics"].get(spec.primary_metric) if baseline else None,
                validation=(record.get("best") or {}).get("validation", {}).get(spec.primary_metric),
                best_step=row["best_step"], train_examples=(record.get("sizes") or {}).get("train"),
                vector_norm=vector.norm(), prompt_sha256=added_prompt.sha256, vector_sha256=added_vector.sha256))
        first = next(iter(sources.values()))
        manifest = LibraryManifest(
            format=FORMAT, name=name or dest.name, model=suite.backbone.model,
            model_fingerprint=first["model_fingerprint"], rows=vector.meta.rows, dim=vector.meta.dim,
            recipe=_recipe_of(suite), built_with={"suite": suite.name, "code": _codes(rows)}, entries=entries)
        atomic_write_json(tmp / LIBRARY_FILE, manifest.model_dump())
        library_store.seal()
    return PromptLibrary.open(dest)


def _recipe_of(suite: SuiteSpec) -> dict[str, Any]:
    s = suite.sources
    return {"backbone": suite.backbone.model_dump(), "budget": suite.budget.model_dump(exclude={"steps"}),
            "shots": s.shots, "steps": s.steps, "seed": s.seed, "settings": dict(s.settings), "origins": suite.origins}


def _codes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct code versions the library's runs were made with (and the packaging code)."""
    seen: list[dict[str, Any]] = []
    for code in [c for r in rows for c in r.get("code", []) if c] + [code_version()]:
        if code not in seen:
            seen.append(code)
    return seen


def _check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ConfigError(f"--to {dest} is not a folder", "give a new folder (or a library built before)")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / LIBRARY_FILE).is_file():
        raise ConfigError(f"--to {dest} holds files that are not a prompt library; nothing was written",
                          "give a new folder (a library is replaced only by a library)")
