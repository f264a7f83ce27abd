"""Prompt tuning that starts from transferred knowledge instead of a random origin (TPV paper's
few-shot experiment; docs/methods.md §3). All train exactly like ``pt`` — only the initial prompt
differs — and at 0 shots evaluate that initial prompt untrained:

* ``random`` — the random origin θ0 (prompt tuning; named for the comparison tables);
* ``tpv-init`` — θ0 + λ·merge(τ_s for the target's sources), λ = 1 by default (the TPV
  repository), or chosen on the target's validation split over the 0…1 grid;
* ``single-source`` — one source's tuned prompt (the first listed, or ``source``);
* ``multi-source`` — the prompt trained on the union of the sources (``sources.multi_task``).

Sources are the suite's source runs at the same origin seed; the target is never its own source.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.experiments.methods import PromptTuning, PTSettings, RunContext, register_method
from promptvec.experiments.sources import source_run
from promptvec.experiments.suite import run_dir
from promptvec.experiments.tpv import LAMBDA_GRID
from promptvec.io import read_json
from promptvec.tasks import subsample
from promptvec.training.checkpoint import PROMPT_DIR, load_prompt
from promptvec.vectors import MERGE_METHODS, Origin, TaskPromptVector, merge


def source_folder(ctx: RunContext, task: str) -> str:
    """The finished source run of ``task`` at this run's origin (the runner trains sources first)."""
    if task == ctx.run.task:
        raise ConfigError(f"'{task}' cannot be a source of itself", "remove the target from its sources")
    folder = run_dir(ctx.suite_out, source_run(ctx.suite, task, ctx.run.origin))
    record = folder / "run.json"
    if not record.is_file() or read_json(record, "run record").get("status") != "completed":
        raise ConfigError(f"source prompt '{task}' (origin {ctx.run.origin}) is not trained yet ({folder})",
                          "run the whole suite: `promptvec experiment run` trains the sources first")
    return str(folder / PROMPT_DIR)


def target_sources(ctx: RunContext) -> list[str]:
    return list(ctx.suite.sources.targets[ctx.run.task])


@register_method
class RandomInit(PromptTuning):
    """Prompt tuning from the random origin — the reference the transfer inits are compared with."""

    name = "random"


class TPVInitSettings(PTSettings):
    scale: float = Field(1.0, ge=0, description="λ in θ0 + λ·Σ τ (1 = the TPV repository's choice)")
    scale_grid: bool = Field(False, description="choose λ on the target's validation split (grid 0…1, 0.05)")
    merge: str = Field("task_arithmetic", description="how source vectors are combined")
    source: str | None = Field(None, description="only this source's vector (one method entry per source, each "
                               "limited with `tasks:` to targets listing it, makes a sweep over single sources)")

    @field_validator("merge")
    @classmethod
    def _merge(cls, v: str) -> str:
        return MERGE_METHODS.check(v)


@register_method
class TPVInit(PromptTuning):
    """Initialise from the origin plus the (merged) task prompt vectors of the target's sources."""

    name = "tpv-init"
    Settings = TPVInitSettings
    needs_sources = True

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = TPVInitSettings(**dict(ctx.run.settings))
        sources = target_sources(ctx)
        if s.source is not None:
            if s.source not in sources:
                raise ConfigError(f"tpv-init: '{s.source}' is not a source of '{ctx.run.task}' ({sources})",
                                  "name one of the target's sources in sources.targets")
            sources = [s.source]
        vectors = [TaskPromptVector.from_checkpoint(source_folder(ctx, t), ctx.backbone) for t in sources]
        if vectors[0].meta.rows != s.prompt_length:
            raise ConfigError(f"source prompts have {vectors[0].meta.rows} rows but tpv-init uses prompt_length "
                              f"{s.prompt_length}", "give the sources and the method the same prompt_length")
        combined = merge(vectors, s.merge)
        origin = Origin.from_dict(vectors[0].meta.origin)
        scale, curve = s.scale, None
        if s.scale_grid:
            budget = ctx.suite.budget
            val = subsample(ctx.data.validation, budget.val_examples, budget.eval_seed)
            primary = ctx.data.spec.primary_metric
            curve = {lam: evaluate(ctx.backbone, ctx.data.spec, val, combined.apply_to(origin, lam, ctx.backbone)
                                   ).metrics[primary] for lam in LAMBDA_GRID}
            scale = max(LAMBDA_GRID, key=lambda lam: (curve[lam], -lam))
        info = {"init": "tpv", "sources": sources, "merge": s.merge, "scale": scale, "origin_seed": ctx.run.origin,
                "vector_norm": combined.norm(), "scale_curve": curve}
        return combined.apply_to(origin, scale, ctx.backbone), info


class SingleSourceSettings(PTSettings):
    source: str | None = Field(None, description="which source prompt (default: the target's first source)")


@register_method
class SingleSourceInit(PromptTuning):
    """Initialise from one source task's tuned prompt (SPoT-style transfer from a named source)."""

    name = "single-source"
    Settings = SingleSourceSettings
    needs_sources = True

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = SingleSourceSettings(**dict(ctx.run.settings))
        sources = target_sources(ctx)
        source = s.source or sources[0]
        if source not in sources:
            raise ConfigError(f"single-source: '{source}' is not a source of '{ctx.run.task}' ({sources})",
                              "name one of the target's sources in sources.targets")
        prompt = load_prompt(source_folder(ctx, source), ctx.backbone).prompt
        return prompt, {"init": "source prompt", "sources": [source], "origin_seed": ctx.run.origin}


@register_method
class MultiSourceInit(PromptTuning):
    """Initialise from one prompt trained on the union of the target's sources (SPoT's generic,
    multi-task source)."""

    name = "multi-source"
    needs_sources = True
    needs_multi_task_sources = True

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        union = ctx.suite.sources.multi_task_name(ctx.run.task)
        prompt = load_prompt(source_folder(ctx, union), ctx.backbone).prompt
        return prompt, {"init": "multi-task source prompt", "sources": union.split("+"),
                        "origin_seed": ctx.run.origin}
