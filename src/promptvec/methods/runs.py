"""What methods share about runs of the suite: finding a finished run that trained exactly the
same thing (and reusing it), and scoring a fixed prompt without training."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from promptvec.evaluation import evaluate
from promptvec.io import atomic_directory, atomic_write_json, read_json
from promptvec.peft_folder import PROMPT_DIR
from promptvec.prompts import PromptModule
from promptvec.suites.context import RunContext
from promptvec.suites.plan import completed_record, expand, run_dir
from promptvec.tasks import subsample
from promptvec.training.config import TrainConfig
from promptvec.training.phases import Tally, add_phase
from promptvec.training.record import new_run_record, peak_memory_mb
from promptvec.training.trainer import config_differences
from promptvec.vectors import Origin


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


def evaluate_untrained(ctx: RunContext, prompt: torch.Tensor | PromptModule | None, config: dict[str, Any],
                       origin: Origin | None = None) -> dict[str, Any]:
    """Score a fixed prompt (or none) on the suite's test subsample and write the run record."""
    start = time.perf_counter()
    budget = ctx.suite.budget
    data = ctx.task_data
    test = subsample(data.test, budget.test_examples, budget.eval_seed)
    result = evaluate(ctx.backbone, data.spec, test, prompt)
    record = new_run_record(ctx.backbone, data.spec.task,
                            {**config, "eval_seed": budget.eval_seed, "test_examples": budget.test_examples},
                            origin.to_dict() if origin else None)
    add_phase(record, "test", time.perf_counter() - start, Tally(result.n, result.tokens, result.decoded))
    record["status"], record["test"] = "completed", result.summary()
    record["wall_time_s"], record["peak_memory"] = time.perf_counter() - start, peak_memory_mb()
    ctx.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.out / "run.json", record)
    return dict(record)
