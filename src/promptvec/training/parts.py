"""The parts a training run is made of, handed to the :class:`~promptvec.training.trainer.TrainingLoop`
by the :class:`~promptvec.training.trainer.Trainer` that builds them: the examples of each split,
how a prompt is scored on them, and the run folder's best prompt. Each is a plain object with what
it needs, so the loop drives the run without calling back into the trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promptvec.backbones import Backbone
from promptvec.evaluation import evaluate
from promptvec.peft_folder import PROMPT_DIR, load_prompt, save_prompt
from promptvec.prompts import MODULE_DIR, PromptModule, StaticPrompt, load_module, save_module
from promptvec.tasks import Example, TaskData, TaskSpec, few_shot, subsample
from promptvec.training.config import TrainConfig
from promptvec.training.phases import Tally


def training_examples(task: TaskSpec, data: TaskData, shots: int | None, seed: int) -> list:
    """A run's training examples of one task: its seeded few-shot sample, or the whole split (None)."""
    return few_shot(task, data.train, shots, seed) if shots else list(data.train)


@dataclass(frozen=True)
class RunSplits:
    """Per task: the training sample, and the validation and test subsamples of the evaluated tasks."""

    train: list[list[Example]]
    val: list[list[Example]]
    test: list[list[Example]]

    @classmethod
    def sample(cls, config: TrainConfig, tasks: Sequence[TaskSpec], datas: Sequence[TaskData],
               first_only: bool = False) -> RunSplits:
        """The target gives exactly ``shots`` examples; an extra task is auxiliary data (a transfer
        method's sources): ``extra_shots`` examples or, when its split is smaller, all of them — the rule
        of source prompts. Validation and test: the first task alone (``first_only``: the prompt
        module's :attr:`~promptvec.prompts.PromptModule.evaluates_first_task_only`) or every task."""
        wanted = config.extra_shots or config.shots
        extra = [min(wanted, len(data.train)) if wanted else None for data in datas[1:]]
        shots = [config.shots, *extra]
        train = [training_examples(task, data, n, config.data_seed)
                 for task, data, n in zip(tasks, datas, shots, strict=True)]
        evaluated = datas[:1] if first_only else datas
        return cls(train, [subsample(data.validation, config.val_examples, config.eval_seed) for data in evaluated],
                   [subsample(data.test, config.test_examples, config.eval_seed) for data in evaluated])


@dataclass(frozen=True)
class SplitScorer:
    """How a run scores a prompt on its validation or test examples (``tasks``: the evaluated ones)."""

    backbone: Backbone
    tasks: list[TaskSpec]
    config: TrainConfig

    @property
    def primary_metric(self) -> str:
        """What checkpoint selection maximises: the task's primary metric, or ``mean`` over tasks."""
        return self.tasks[0].primary_metric if len(self.tasks) == 1 else "mean"

    def __call__(self, splits: list[list[Example]], prompt: Any, on_batch: Callable[[int], None] | None = None,
                 tally: Tally | None = None) -> dict[str, Any]:
        """One task: its evaluation summary. Several: metrics as ``task/metric`` plus ``mean``, the
        mean of the tasks' primary metrics (what multi-task checkpoint selection maximises).
        ``on_batch``: told how many examples each finished batch scored (progress); ``tally``: the
        examples, tokens scored and tokens decoded are added to it (phase timings)."""
        cfg = self.config
        results = [evaluate(self.backbone, task, examples, prompt, mode=cfg.eval_mode,
                            batch_size=cfg.eval_batch_size, length_normalize=cfg.length_normalize, on_batch=on_batch)
                   for task, examples in zip(self.tasks, splits, strict=True)]
        if tally is not None:
            tally.examples += sum(result.n for result in results)
            tally.tokens += sum(result.tokens for result in results)
            tally.decoded += sum(result.decoded for result in results)
        summaries = [result.summary() for result in results]
        if len(summaries) == 1:
            return summaries[0]
        metrics = {f"{task.task}/{k}": v for task, s in zip(self.tasks, summaries, strict=True)
                   for k, v in s["metrics"].items()}
        metrics["mean"] = sum(s["metrics"][t.primary_metric] for t, s in zip(self.tasks, summaries, strict=True)) / len(
            summaries)
        return {"metrics": metrics, "n": sum(s["n"] for s in summaries),
                "invalid": sum(s.get("invalid", 0) for s in summaries)}


@dataclass(frozen=True)
class BestPrompt:
    """The run folder's best prompt: a PEFT folder where one static prompt exists, and a dynamic
    module also in promptvec's own format (its state + config). ``metadata`` describes the run."""

    out: Path
    backbone: Backbone
    metadata: Callable[[dict[str, Any]], dict[str, Any]]

    def save(self, module: PromptModule | torch.Tensor, info: dict[str, Any]) -> None:
        if isinstance(module, torch.Tensor):
            save_prompt(self.out / PROMPT_DIR, module, self.backbone, self.metadata(info))
            return
        if module.kind != StaticPrompt.kind:
            save_module(self.out / MODULE_DIR, module, self.backbone, self.metadata(info))
        static = module.export()
        if static is not None:
            save_prompt(self.out / PROMPT_DIR, static, self.backbone, self.metadata(info))

    def load(self) -> PromptModule | torch.Tensor:
        if (self.out / MODULE_DIR).is_dir():
            module, _ = load_module(self.out / MODULE_DIR, self.backbone)
            return module.to(self.backbone.device).eval()
        return load_prompt(self.out / PROMPT_DIR, self.backbone).prompt
