"""Methods a suite can compare, looked up by name. A method turns one :class:`RunSpec` into a
run record; transfer methods (``init_methods``: random, tpv-init, single-source, multi-source; later
spot, attempt, dtvg, fusion) register here without touching the runner."""

from __future__ import annotations

import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptvec.backbones import Backbone
from promptvec.errors import ConfigError, describe_validation_error
from promptvec.evaluation import evaluate
from promptvec.experiments.suite import expand, run_dir
from promptvec.io import atomic_directory, atomic_write_json, read_json, tensor_sha256
from promptvec.prompts import PromptModule, StaticPrompt
from promptvec.registry import Registry
from promptvec.tasks import TaskData, subsample
from promptvec.training.checkpoint import PROMPT_DIR
from promptvec.training.config import TrainConfig
from promptvec.training.record import package_versions, peak_memory_mb
from promptvec.training.trainer import Trainer, config_differences
from promptvec.vectors import Origin

METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register()


@dataclass
class RunContext:
    """What the runner hands a method: the loaded backbone and data, where to write, budget hooks."""

    suite: Any  # SuiteSpec
    run: Any  # RunSpec
    backbone: Backbone
    data: TaskData | list[TaskData]  # a list for multi-task runs (task ``a+b``)
    out: Path
    suite_out: Path | None = None  # the suite folder (where source runs live)
    on_step: Any = None
    progress: bool = False
    load_data: Any = None  # task name -> TaskData (e.g. the source tasks' data for joint training)
    data_parallel: bool = True  # False: the suite spreads runs over the processes, each trains alone


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
    def axes(cls, settings: dict[str, Any]) -> set[str]:
        """Which of {'shots', 'origin', 'seed'} the result depends on."""

    @classmethod
    @abstractmethod
    def estimate_steps(cls, suite, settings: dict[str, Any]) -> int:
        """Training steps of one run (for the cost estimate)."""

    @classmethod
    @abstractmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        """Do the run (resuming if it was interrupted) and return its record (with ``test``)."""


class PTSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt_length: int = Field(20, ge=1)
    lr: float = Field(0.03, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    steps: int | None = Field(None, ge=1, description="overrides the suite budget")
    batch_size: int | None = Field(None, ge=1, description="overrides the suite budget")
    select_initial: bool = Field(True, description="the initial prompt may be kept if training never beats it")


@register_method
class PromptTuning(Method):
    """Prompt tuning from a random origin (Lester et al.). Subclasses change only where training
    starts (:meth:`initial_prompt`); at 0 shots the initial prompt is evaluated untrained."""

    name = "pt"
    Settings = PTSettings

    @classmethod
    def axes(cls, settings):
        return {"shots", "origin", "seed"}

    @classmethod
    def estimate_steps(cls, suite, settings):
        return settings.get("steps") or suite.budget.steps

    @classmethod
    def initial_prompt(cls, ctx: RunContext) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """The prompt training starts from, and a description for the record; ``None`` = the run's
        random origin (recorded by the trainer, so the result yields a task prompt vector)."""
        return None, {"init": "origin", "origin_seed": ctx.run.origin}

    @classmethod
    def train_config(cls, ctx: RunContext) -> TrainConfig:
        s = cls.Settings(**dict(ctx.run.settings))
        b, bb = ctx.suite.budget, ctx.suite.backbone
        return TrainConfig(
            model=bb.model, family=bb.family, max_length=bb.max_length, chat_template=bb.chat_template,
            task=ctx.run.tasks[0], extra_tasks=ctx.run.tasks[1:], shots=ctx.run.shots,
            prompt_length=s.prompt_length, origin_seed=ctx.run.origin, data_seed=ctx.run.seed,
            train_seed=ctx.run.seed, lr=s.lr, weight_decay=s.weight_decay, warmup_ratio=s.warmup_ratio,
            max_steps=s.steps or b.steps, batch_size=s.batch_size or b.batch_size, grad_accum=b.grad_accum,
            eval_every=b.eval_every,
            val_examples=b.val_examples, test_examples=b.test_examples, eval_seed=b.eval_seed,
            precision=b.precision, compile=b.compile, select_initial=s.select_initial,
            early_stopping_patience=b.early_stopping_patience, report_to=b.report_to)

    @classmethod
    def build(cls, ctx: RunContext) -> tuple[PromptModule | None, dict[str, Any]]:
        """The prompt module to train and a description of it for the record; ``None`` = a static
        prompt at the run's origin. Plain transfer inits only override :meth:`initial_prompt`; their
        record keeps the initial prompt's hash, which with the configuration defines the training."""
        init, info = cls.initial_prompt(ctx)
        if init is None:
            return None, info
        return StaticPrompt(init), {**info, "prompt_sha256": tensor_sha256(init)}

    @classmethod
    def configure(cls, ctx: RunContext, config: TrainConfig) -> TrainConfig:
        """Adjust the training configuration (e.g. joint training on further tasks)."""
        return config

    @classmethod
    def task_data(cls, ctx: RunContext) -> TaskData | list[TaskData]:
        return ctx.data

    @classmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        done = completed_record(ctx.out)
        if done is not None:
            return done
        module, info = cls.build(ctx)
        if ctx.run.shots == 0:
            s = cls.Settings(**dict(ctx.run.settings))
            origin = Origin.sample(ctx.backbone, s.prompt_length, ctx.run.origin) if module is None else None
            prompt = origin.tensor(ctx.backbone) if module is None else module.bind(ctx.backbone).eval()
            return evaluate_untrained(ctx, prompt, {**info, "prompt_length": s.prompt_length}, origin)
        config = cls.configure(ctx, cls.train_config(ctx))
        start = training_start(info)
        twin = finished_run_like(ctx, config, start) if start is not None else None
        if twin is not None:
            return reuse_run(ctx, twin, info)
        trainer = Trainer(config, ctx.out, backbone=ctx.backbone,
                          task_data=cls.task_data(ctx), prompt_module=module, progress=ctx.progress,
                          on_step=ctx.on_step, data_parallel=ctx.data_parallel)
        record = trainer.train(resume=True)
        record["init"] = info
        atomic_write_json(ctx.out / "run.json", record)
        return record


def completed_record(out: Path) -> dict[str, Any] | None:
    """The run record in ``out`` if that run completed, else None."""
    record_path = out / "run.json"
    if record_path.is_file():
        previous = read_json(record_path, "run record")
        if previous.get("status") == "completed":
            return previous
    return None


def training_start(init: dict[str, Any]) -> str | None:
    """What a plain prompt-tuning run starts from, as recorded: ``"origin"`` (the run's origin) or
    the initial prompt's hash; None for a run that trains anything else (a prompt module)."""
    if init.get("init") == "origin":
        return "origin"
    return init.get("prompt_sha256")


def finished_run_like(ctx: RunContext, config: TrainConfig, start: str = "origin") -> Path | None:
    """A completed run of the suite (same task, shots, origin and seed) trained with exactly
    ``config`` from the same start (:func:`training_start`) — so its prompt is the one this training
    would give (CPU training is deterministic given data, seed and start). Used by DTVG's Stage I
    and by every plain run, so that e.g. SPoT's run from the source it chose reuses the sweep's run
    from that source instead of training it again."""
    if ctx.suite_out is None:
        return None
    wanted = config.model_dump()
    for run in expand(ctx.suite):
        if run == ctx.run or (run.task, run.shots, run.origin, run.seed) != (
                ctx.run.task, ctx.run.shots, ctx.run.origin, ctx.run.seed):
            continue
        folder = run_dir(ctx.suite_out, run)
        record = completed_record(folder)
        if (record is not None and training_start(record.get("init") or {}) == start
                and not config_differences(wanted, record.get("config", {})) and (folder / PROMPT_DIR).is_dir()):
            return folder
    return None


def reuse_run(ctx: RunContext, twin: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Make this run a copy of the finished run ``twin`` that trained exactly the same thing; its
    record keeps this method's own ``init`` (e.g. SPoT's similarities) and says where it came from.
    ``wall_time_s`` stays the twin's: the cost of the training this run stands for."""
    record = {**read_json(twin / "run.json", "run record"), "init": info,
              "reused_from": str(twin.relative_to(ctx.suite_out))}
    with atomic_directory(ctx.out) as tmp:
        shutil.copytree(twin, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("run.json"))
        atomic_write_json(tmp / "run.json", record)
    return record


def evaluate_untrained(ctx: RunContext, prompt: torch.Tensor | None, config: dict[str, Any],
                       origin: Origin | None = None) -> dict[str, Any]:
    """Score a fixed prompt (or none) on the suite's test subsample and write the run record."""
    start = time.perf_counter()
    budget = ctx.suite.budget
    test = subsample(ctx.data.test, budget.test_examples, budget.eval_seed)
    result = evaluate(ctx.backbone, ctx.data.spec, test, prompt)
    record = {"status": "completed", "task": ctx.data.spec.task, "model": ctx.backbone.name,
              "model_fingerprint": ctx.backbone.fingerprint, "family": ctx.backbone.family,
              "config": {**config, "eval_seed": budget.eval_seed, "test_examples": budget.test_examples},
              "origin": origin.to_dict() if origin else None, "history": [], "best": None,
              "test": result.summary(), "versions": package_versions(),
              "wall_time_s": time.perf_counter() - start, "peak_memory": peak_memory_mb()}
    ctx.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.out / "run.json", record)
    return record


class ZeroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("origin", pattern="^(origin|none)$", description="origin = untrained origin; none = no prompt")
    prompt_length: int = Field(20, ge=1)


@register_method
class ZeroShot(Method):
    """Training-free baselines: the untrained origin prompt, or no prompt at all."""

    name = "zero"
    Settings = ZeroSettings

    @classmethod
    def axes(cls, settings):
        return {"origin"} if ZeroSettings(**settings).prompt == "origin" else set()

    @classmethod
    def estimate_steps(cls, suite, settings):
        return 0

    @classmethod
    def execute(cls, ctx: RunContext) -> dict[str, Any]:
        done = completed_record(ctx.out)
        if done is not None:
            return done
        s = ZeroSettings(**dict(ctx.run.settings))
        if s.prompt == "none":
            return evaluate_untrained(ctx, None, {"prompt": "none"})
        if ctx.run.origin is None:
            raise ConfigError("zero/origin needs an origin seed", "give the suite `origins`")
        origin = Origin.sample(ctx.backbone, s.prompt_length, ctx.run.origin)
        return evaluate_untrained(ctx, origin.tensor(ctx.backbone),
                                  {"prompt": "origin", "prompt_length": s.prompt_length}, origin)


from promptvec.experiments import init_methods, transfer_methods  # noqa: E402, F401  (register the transfer methods)
