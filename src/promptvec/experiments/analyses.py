"""Analyses of a suite's source prompts, run after the sources are trained and before any target
(TPV paper; docs/methods.md §2): task similarity of prompts and vectors, cross-origin transfer, and
pairwise combinations. Each is registered by name, configured under the suite's ``analyses``
key, and writes JSON under ``<suite out>/analyses/`` one item at a time (atomic), so an
interrupted suite resumes an analysis where it stopped; the report draws tables and figures
from those files.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptvec.io import read_json
from promptvec.suites.analysis import ANALYSES_DIR, Analysis, AnalysisContext, register_analysis


class SimilaritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measures: list[str] = Field(default_factory=lambda: ["cosine"], description="cosine, cosine-flat, dtvg")


@register_analysis
class SimilarityAnalysis(Analysis):
    """Task × task similarity of the tuned prompts and of their vectors, averaged over origin pairs."""

    name = "similarity"
    Settings = SimilaritySettings

    @classmethod
    def check(cls, settings, suite) -> None:
        from promptvec.vectors import SIMILARITIES

        super().check(settings, suite)
        for measure in settings.measures:
            SIMILARITIES.check(measure)

    @classmethod
    def evaluations(cls, settings, suite) -> int:
        return 0

    @classmethod
    def compute(cls, settings, ctx: AnalysisContext, item: str | None) -> dict[str, Any]:
        from promptvec.peft_folder import PROMPT_DIR, load_prompt
        from promptvec.tasks import get_task
        from promptvec.vectors import TaskPromptVector, similarity_matrix

        tasks = ctx.suite.sources.tasks
        origins = ctx.suite.origins
        vectors = {t: {o: TaskPromptVector.from_checkpoint(ctx.source_folder(t, o) / PROMPT_DIR, ctx.backbone)
                       for o in origins} for t in tasks}
        prompts = {t: {o: load_prompt(ctx.source_folder(t, o) / PROMPT_DIR, ctx.backbone).prompt for o in origins}
                   for t in tasks}
        result: dict[str, Any] = {"tasks": tasks, "origins": origins,
                                  "groups": {t: get_task(t).group for t in tasks},
                                  "tau_norm": {t: sum(v.norm() for v in vectors[t].values()) / len(origins)
                                               for t in tasks},
                                  "prompt_norm": {t: sum(float(p.norm()) for p in prompts[t].values()) / len(origins)
                                                  for t in tasks},
                                  "matrices": {}}
        for measure in settings.measures:
            result["matrices"][measure] = {
                "tpv": similarity_matrix({t: {o: v.tensor for o, v in by.items()} for t, by in vectors.items()},
                                         measure)[1],
                "prompt": similarity_matrix(prompts, measure)[1]}
        return result


class CrossOriginSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] | None = Field(None, description="source tasks to transfer (default: all single-task sources)")


@register_analysis
class CrossOriginAnalysis(Analysis):
    """Apply each task's vector from origin i to every other origin j and compare with the prompts
    trained from the origins (the originals' scores are the source runs' own test scores)."""

    name = "cross-origin"
    Settings = CrossOriginSettings

    @classmethod
    def check(cls, settings, suite) -> None:
        super().check(settings, suite)
        if len(suite.origins) < 2:
            raise ValueError("cross-origin transfer needs at least two origins (suite `origins`)")
        unknown = [t for t in (settings.tasks or []) if t not in suite.sources.tasks]
        if unknown:
            raise ValueError(f"cross-origin tasks {unknown} are not sources")

    @classmethod
    def evaluations(cls, settings, suite) -> int:
        n = len(settings.tasks or suite.sources.tasks)
        k = len(suite.origins)
        return n * k * (k - 1) * (suite.budget.test_examples or 500)

    @classmethod
    def items(cls, settings, suite) -> list[str | None]:
        return list(settings.tasks or suite.sources.tasks)

    @classmethod
    def compute(cls, settings, ctx: AnalysisContext, item: str | None) -> dict[str, Any]:
        from promptvec.experiments.tpv import cross_origin
        from promptvec.peft_folder import PROMPT_DIR

        item = _one_item(item)
        budget, origins, data = ctx.suite.budget, ctx.suite.origins, ctx.load_data(item)
        originals = [ctx.source_record(item, o)["test"]["metrics"][data.spec.primary_metric] for o in origins]
        row = cross_origin(ctx.backbone, {item: {o: ctx.source_folder(item, o) / PROMPT_DIR for o in origins}},
                           {item: data}, limit=budget.test_examples, seed=budget.eval_seed,
                           originals={item: originals})[0]
        return {**asdict(row), "summary": _plain(row.summary())}


class CombinationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[list[str]] = Field(min_length=1, description="groups of source tasks whose vectors are added")
    origin: int | None = Field(None, description="origin seed of the vectors (default: the suite's first)")
    val_examples: int | None = Field(None, ge=1, description="validation examples per λ (default: the budget's)")


@register_analysis
class CombinationAnalysis(Analysis):
    """θ0 + λ Σ τ over a group of sources, λ on the 0…1 grid by mean validation score; test per task
    at that λ against each task's own prompt (its source run's test score)."""

    name = "combinations"
    Settings = CombinationSettings

    @classmethod
    def check(cls, settings, suite) -> None:
        super().check(settings, suite)
        for group in settings.pairs:
            unknown = [t for t in group if t not in suite.sources.tasks]
            if len(group) < 2 or unknown or len(set(group)) != len(group):
                raise ValueError(f"combination {group}: give ≥ 2 distinct source tasks (not sources: {unknown})")
        if settings.origin is not None and settings.origin not in suite.origins:
            raise ValueError(f"combination origin {settings.origin} is not one of the suite origins {suite.origins}")

    @classmethod
    def evaluations(cls, settings, suite) -> int:
        from promptvec.vectors.scaling import LAMBDA_GRID

        val = settings.val_examples or suite.budget.val_examples or 200
        return sum(len(g) * (len(LAMBDA_GRID) * val + (suite.budget.test_examples or 500)) for g in settings.pairs)

    @classmethod
    def items(cls, settings, suite) -> list[str | None]:
        return ["+".join(group) for group in settings.pairs]

    @classmethod
    def compute(cls, settings, ctx: AnalysisContext, item: str | None) -> dict[str, Any]:
        from promptvec.experiments.tpv import combine_tasks
        from promptvec.peft_folder import PROMPT_DIR

        budget, group = ctx.suite.budget, _one_item(item).split("+")
        origin = settings.origin if settings.origin is not None else ctx.suite.origins[0]
        data = {t: ctx.load_data(t) for t in group}
        single = {t: ctx.source_record(t, origin)["test"]["metrics"][data[t].spec.primary_metric] for t in group}
        result = combine_tasks(ctx.backbone, {t: ctx.source_folder(t, origin) / PROMPT_DIR for t in group}, data,
                               val_limit=settings.val_examples or budget.val_examples,
                               test_limit=budget.test_examples, seed=budget.eval_seed, single=single)
        return {**asdict(result), "origin": origin,
                "validation_curve": {str(k): v for k, v in result.validation_curve.items()}}


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready copy (Summary objects become dicts)."""
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in summary.items()}


def _one_item(item: str | None) -> str:
    """The item an analysis computed per item was called with (never None for those)."""
    if item is None:
        raise ValueError("this analysis is computed one item (task or task group) at a time")
    return item


def load_results(out: Path, name: str) -> Any:
    """What an analysis wrote (a dict, or a list of items), or None."""
    single = out / ANALYSES_DIR / f"{name}.json"
    if single.is_file():
        return read_json(single, f"{name} analysis")
    folder = out / ANALYSES_DIR / name
    if folder.is_dir():
        return [read_json(p, f"{name} analysis") for p in sorted(folder.glob("*.json"))]
    return None
