"""Transfer methods that go beyond choosing an initial prompt (docs/methods.md §4–§7):

* ``spot`` — SPoT targeted: train the target briefly from the run's origin (``early_steps``),
  pick the stored source prompt most similar to that early prompt (cosine of row means; or of
  the task prompt vectors), and prompt-tune the target from it;
* ``spot-multi`` — SPoT generic: start from one prompt trained on the mixture of the sources;
* ``attempt`` — ATTEMPT: frozen source prompts + a trainable target prompt, mixed per input;
* ``dtvg`` — Dynamic Task Vector Grouping: Stage I = the stored source vectors and the target's
  vector from the target prompt-tuned to its best validation checkpoint from the same origin (or
  only ``stage1_steps`` of tuning, the cheaper option); Stage II trains the target vector
  and row scales with the group chosen again on every forward pass;
* ``fusion`` — Dynamic Prompt Fusion: a prompt pool mixed per task and per input, trained jointly
  on the target and its source tasks with mixed-task batches; selected on the target.

Sources are read from the suite's store (``<suite>/store``, entries ``task@o<origin>``), which the
runner fills from the suite's source runs before any target run; modules record each source's
store id and sha256. The target is never its own source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from promptvec.errors import ConfigError
from promptvec.experiments.init_methods import MultiSourceInit, target_sources
from promptvec.experiments.methods import PromptTuning, PTSettings, RunContext, finished_run_like, register_method
from promptvec.experiments.sources import STORE_DIR, stored_name
from promptvec.io import read_json
from promptvec.prompts import AttemptPrompt, DTVGPrompt, FusionPrompt, PromptModule
from promptvec.prompts.dtvg import GROUPING_CHOICES
from promptvec.training.checkpoint import PROMPT_DIR, load_prompt
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import STAGES_DIR, Trainer
from promptvec.vectors import Origin


@dataclass
class StoredSources:
    """The target's source prompts and vectors at the run's origin, as stored."""

    names: list[str]
    prompts: torch.Tensor  # [n, R, d]
    vectors: torch.Tensor  # [n, R, d]
    origin: Origin
    refs: list[dict[str, Any]]  # name, store id, sha256 of each source's vector and prompt

    @classmethod
    def load(cls, ctx: RunContext) -> StoredSources:
        from promptvec.store import VectorStore
        from promptvec.store.store import StoreError

        names = target_sources(ctx)
        if ctx.run.task in names:
            raise ConfigError(f"'{ctx.run.task}' cannot be a source of itself", "remove the target from its sources")
        store_path = ctx.suite_out / STORE_DIR
        if not (store_path / "index.sqlite").is_file():
            raise ConfigError(f"no source store in {ctx.suite_out}", "run the whole suite: `promptvec experiment "
                              "run` trains the sources and stores them before the targets")
        store = VectorStore(store_path)
        by_name = {(e.kind, e.name): e for e in store.entries()}
        prompts, vectors, refs, origins = [], [], [], []
        for name in names:
            ref = stored_name(name, ctx.run.origin)
            vector_entry, prompt_entry = by_name.get(("vector", ref)), by_name.get(("prompt", ref))
            if vector_entry is None or prompt_entry is None:
                raise ConfigError(f"source '{ref}' is not in the suite's store {store_path}",
                                  "run the whole suite so the source is trained and stored first")
            try:
                vector = store.load_vector(vector_entry.sha256)
                prompt, _ = store.load_prompt(prompt_entry.sha256)
            except StoreError as exc:
                raise ConfigError(f"source '{ref}' in {store_path} cannot be read: {exc.message}",
                                  exc.hint or "re-run the suite to store it again") from None
            vector.check_compatible(prompt, "source prompt")
            if vector.meta.model_fingerprint != ctx.backbone.fingerprint:
                raise ConfigError(f"stored source '{ref}' was trained on another model ({vector.meta.model})",
                                  "use a fresh suite folder for a different backbone")
            prompts.append(prompt.float())
            vectors.append(vector.tensor)
            refs.append({"name": name, "store_name": ref, "vector_sha256": vector_entry.sha256,
                         "prompt_sha256": prompt_entry.sha256})
            origins.append(vector.meta.origin)
        if any(o != origins[0] for o in origins) or not origins[0]:
            raise ConfigError(f"the stored sources of '{ctx.run.task}' were not all trained from one recorded origin",
                              "re-run the suite's sources from its origins")
        return cls(names, torch.stack(prompts), torch.stack(vectors), Origin.from_dict(origins[0]), refs)


def train_target_stage(method: type[PromptTuning], ctx: RunContext, folder: str,
                       steps: int | None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Prompt-tune the target from the run's origin before the method proper — SPoT's early prompt,
    DTVG's Stage I — and return that prompt and what it cost (for the run's record).

    ``steps=None``: with the method's whole prompt-tuning budget, the checkpoint chosen on validation
    among *trained* steps (a zero vector would say nothing about the target). A finished run of the
    same suite that trained exactly this from the same origin (e.g. its ``pt`` baseline with
    ``select_initial: false``) is reused instead of training again. ``steps=N``: N steps, the prompt
    after them. Either way a resumable sub-run in ``<run>/stages/<folder>``."""
    if ctx.run.shots == 0:
        raise ConfigError(f"method '{ctx.run.method}' first trains the target, so it needs target examples "
                          "(shots ≥ 1, or null for all)", "drop shots: 0 for this method")
    updates: dict[str, Any] = {"select_initial": False}
    if steps is not None:
        updates |= {"max_steps": steps, "eval_every": steps}
    config = TrainConfig.model_validate({**method.train_config(ctx).model_dump(), **updates})
    reused = finished_run_like(ctx, config) if steps is None else None
    folder_path = reused or ctx.out / STAGES_DIR / folder
    if reused is None:
        record = Trainer(config, folder_path, backbone=ctx.backbone, task_data=ctx.data, progress=False,
                         data_parallel=ctx.data_parallel).train(resume=True)
    else:
        record = read_json(reused / "run.json", "run record")
    cost = {"steps": config.max_steps, "selected": "validation" if steps is None else "last step",
            "best_step": record["best"]["step"], "validation": record["best"]["validation"],
            "wall_time_s": record["wall_time_s"],
            "reused_from": str(reused.relative_to(ctx.suite_out)) if reused is not None else None}
    return load_prompt(folder_path / PROMPT_DIR, ctx.backbone).prompt, cost


class ModuleMethod(PromptTuning):
    """A method that trains a prompt module other than a plain prompt (it overrides :meth:`build`)."""

    needs_sources = True


class SpotSettings(PTSettings):
    early_steps: int = Field(10, ge=1, description="steps of target prompt tuning before comparing with sources")
    compare: Literal["prompts", "vectors"] = Field(
        "prompts", description="cosine of row means of the prompts (SPoT) or of their task prompt vectors")


@register_method
class SpotTargeted(PromptTuning):
    """SPoT, targeted: initialise from the source prompt most similar to an early target prompt."""

    name = "spot"
    Settings = SpotSettings
    needs_sources = True
    needs_target_examples = True

    @classmethod
    def estimate_steps(cls, suite, settings):
        return super().estimate_steps(suite, settings) + SpotSettings(**settings).early_steps

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = SpotSettings(**dict(ctx.run.settings))
        sources = StoredSources.load(ctx)
        early, _ = train_target_stage(cls, ctx, "early", s.early_steps)
        origin = sources.origin.tensor(ctx.backbone)
        if s.compare == "vectors":
            query, keys = (early - origin).mean(0), sources.vectors.mean(1)
        else:
            query, keys = early.mean(0), sources.prompts.mean(1)
        similarity = torch.nn.functional.cosine_similarity(keys, query.unsqueeze(0), dim=-1)
        best = int(similarity.argmax())
        return sources.prompts[best].clone(), {
            "init": "most similar source prompt", "sources": sources.names, "chosen": sources.names[best],
            "similarity": dict(zip(sources.names, similarity.tolist(), strict=True)), "compare": s.compare,
            "early_steps": s.early_steps, "origin_seed": ctx.run.origin, "store": sources.refs}


@register_method
class SpotGeneric(MultiSourceInit):
    """SPoT, generic: initialise from one prompt trained on the mixture of the target's sources."""

    name = "spot-multi"


class AttemptSettings(PTSettings):
    target_init: Literal["origin", "first-source"] = Field(
        "origin", description="where the target prompt starts (the released code: the first source)")
    attention_lr: float | None = Field(None, gt=0, description="learning rate of the attention network (default lr)")
    hidden: int = Field(100, ge=1, description="width of the attention network's bottleneck")
    temperature: float | None = Field(None, gt=0, description="softmax temperature (default d·e)")


@register_method
class Attempt(ModuleMethod):
    """ATTEMPT: per-input attention over frozen source prompts and the trainable target prompt."""

    name = "attempt"
    Settings = AttemptSettings

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        s = AttemptSettings(**dict(ctx.run.settings))
        sources = StoredSources.load(ctx)
        target = sources.origin.tensor(ctx.backbone) if s.target_init == "origin" else sources.prompts[0]
        module = AttemptPrompt(sources.prompts, target, sources.names, s.hidden, s.temperature, s.attention_lr,
                               sources.refs)
        return module, {"init": f"attempt (target from {s.target_init})", "sources": sources.names,
                        "origin_seed": ctx.run.origin, "store": sources.refs}


class DTVGSettings(PTSettings):
    grouping: str = Field("kc", description=f"group choice per step: one of {sorted(GROUPING_CHOICES)}")
    lam: float = Field(1.0, ge=0, description="λ of the ts-plus-kc objective mean(TS) + λ·KC")
    stage1_steps: int | None = Field(
        None, ge=1, description="Stage I target vector: null = the target prompt-tuned with this method's budget "
        "and validation-selected (the authors' code; reused from a finished pt run of the suite with the same "
        "settings); N = only N steps of tuning (cheaper, and a noisier target vector)")
    scale_lr: float | None = Field(None, gt=0, description="learning rate of the row scales α (default lr)")

    @field_validator("grouping")
    @classmethod
    def _grouping(cls, v: str) -> str:
        if v not in GROUPING_CHOICES:
            raise ValueError(f"unknown grouping '{v}'; known: {sorted(GROUPING_CHOICES)}")
        return v


@register_method
class DTVG(ModuleMethod):
    """Dynamic Task Vector Grouping (Stage I: the store + the trained target; Stage II: this run)."""

    name = "dtvg"
    Settings = DTVGSettings
    needs_target_examples = True

    @classmethod
    def estimate_steps(cls, suite, settings):
        steps = super().estimate_steps(suite, settings)
        return steps + (DTVGSettings(**settings).stage1_steps or steps)

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        s = DTVGSettings(**dict(ctx.run.settings))
        sources = StoredSources.load(ctx)
        origin = sources.origin.tensor(ctx.backbone)
        stage1, stage1_cost = train_target_stage(cls, ctx, "stage1", s.stage1_steps)
        module = DTVGPrompt(origin, stage1 - origin, sources.vectors, sources.names, s.grouping, s.lam, sources.refs,
                            scale_lr=s.scale_lr)
        return module, {"init": "dtvg", "grouping": s.grouping, "lam": s.lam, "stage1_steps": s.stage1_steps,
                        "stage1": stage1_cost, "sources": sources.names, "origin_seed": ctx.run.origin,
                        "store": sources.refs}


class FusionSettings(PTSettings):
    pool_size: int | None = Field(None, ge=1, description="prompts in the pool (default 2 × number of tasks)")
    temperature: float = Field(1.0, gt=0, description="scheduling temperature τ")
    private: bool = Field(False, description="add a private prompt per task")
    gate_bias: float = Field(2.0, description="initial gate pre-activation (σ(2) ≈ 0.88)")
    network_lr: float | None = Field(None, gt=0, description="learning rate of embeddings, scheduler, gate, loss "
                                     "weights (default lr)")
    task_embedding_init: Literal["description", "random"] = "description"
    max_sources: int | None = Field(None, ge=1, description="use only the first k sources (number-of-tasks study)")
    mixing_cap: int | None = Field(None, ge=1, description="cap on a task's size when weighting tasks (default: "
                                   "the target's training size, so the target is drawn as often as each source)")
    mixing_temperature: float = Field(1.0, gt=0)
    target_share: float | None = Field(0.5, gt=0, lt=1, description="fixed share of target examples in each mixed "
                                       "batch (null: the target is weighted like any task)")


@register_method
class Fusion(ModuleMethod):
    """Dynamic Prompt Fusion: joint training on the target and its source tasks (mixed batches)."""

    name = "fusion"
    Settings = FusionSettings

    @classmethod
    def _tasks(cls, ctx: RunContext) -> list[str]:
        s = FusionSettings(**dict(ctx.run.settings))
        sources = target_sources(ctx)
        return [ctx.run.task, *sources[: s.max_sources]]

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule, dict[str, Any]]:
        from promptvec.tasks import get_task

        s = FusionSettings(**dict(ctx.run.settings))
        tasks = cls._tasks(ctx)
        size = s.pool_size or 2 * len(tasks)
        origin_seed = ctx.run.origin or 0
        pool = torch.stack([Origin.sample(ctx.backbone, s.prompt_length, origin_seed * 1000 + m).tensor(ctx.backbone)
                            for m in range(size)])
        specs = [get_task(t) for t in tasks]
        if s.task_embedding_init == "description":
            embeddings = torch.stack([_describe(ctx.backbone, spec) for spec in specs])
        else:
            embeddings = torch.randn(len(tasks), ctx.backbone.dim, generator=torch.Generator().manual_seed(origin_seed))
        module = FusionPrompt(pool, embeddings, [spec.task for spec in specs], s.temperature, s.private,
                              s.gate_bias, s.network_lr, [{"name": t} for t in tasks[1:]])
        return module, {"init": "fusion", "tasks": tasks, "sources": tasks[1:], "pool_size": size,
                        "temperature": s.temperature, "origin_seed": ctx.run.origin}

    @classmethod
    def configure(cls, ctx: RunContext, config: TrainConfig) -> TrainConfig:
        s = FusionSettings(**dict(ctx.run.settings))
        tasks = cls._tasks(ctx)
        return config.model_copy(update={
            "extra_tasks": tasks[1:], "extra_shots": ctx.suite.sources.shots, "task_mixing": "mixed",
            "mixing_cap": s.mixing_cap or ctx.run.shots, "mixing_temperature": s.mixing_temperature,
            "mixing_first_share": s.target_share,
            "select_on": "first"})

    @classmethod
    def task_data(cls, ctx: RunContext):
        if ctx.load_data is None:
            raise ConfigError("fusion needs the source tasks' data", "run it through the experiment runner")
        return [ctx.data] + [ctx.load_data(t) for t in cls._tasks(ctx)[1:]]


def _describe(backbone, task) -> torch.Tensor:
    """The frozen backbone's mean input embedding of a task's description (or name)."""
    ids = backbone.tokenizer(task.description or task.task.replace("_", " "), add_special_tokens=False)["input_ids"]
    rows = torch.tensor(ids or [0], device=backbone.device)
    return backbone.embedding.weight.detach()[rows].float().mean(0).cpu()

