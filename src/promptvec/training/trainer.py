"""Prompt tuning on Accelerate: AdamW + warmup/linear decay, gradient accumulation, optional bf16
autocast, length-bucketed batches, evaluation every N steps with best-checkpoint selection on the
validation split, early stopping, and exact resume (optimizer, scheduler, RNG and data order are
saved with the prompt, so a resumed run ends with the same prompt as an uninterrupted one).

Output folder layout::

    out/prompt/{adapter_config.json, adapter_model.safetensors, promptvec.json}   best prompt (PEFT folder)
    out/run.json                                                                   the run record
    out/checkpoint/state.{json,safetensors}                                        last state, for --resume
    out/module/{module.json, module.safetensors}   best dynamic prompt module (ATTEMPT, DTVG, Fusion)
    out/module_log.jsonl                           what the module observed per step (DTVG groups, ...)
    out/train_log.jsonl                            the training loss of every step (global batch)
    out/stages/<name>/                             preliminary sub-runs of transfer methods (same layout)
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from promptvec.backbones import Backbone, load_backbone
from promptvec.errors import ConfigError, OutputExistsError, PromptvecError
from promptvec.evaluation import evaluate
from promptvec.faults import fault_point
from promptvec.io import append_jsonl, atomic_write_json, read_json
from promptvec.modes import module_mode
from promptvec.prompts import MODULE_DIR, PromptModule, StaticPrompt, load_module, save_module
from promptvec.tasks import TaskData, few_shot, get_task, load_task_data, subsample
from promptvec.training.batching import BucketedBatches, MixedTaskBatches
from promptvec.training.checkpoint import (
    PROMPT_DIR,
    load_prompt,
    load_training_state,
    rng_state,
    save_prompt,
    save_training_state,
    set_rng_state,
)
from promptvec.training.config import TrainConfig, resolve_precision
from promptvec.training.distributed import (
    LossBuffer,
    agree,
    average_gradients,
    local_slice,
    local_weight,
    release_at_exit,
)
from promptvec.training.record import package_versions, peak_memory_mb
from promptvec.vectors import Origin

MODULE_LOG = "module_log.jsonl"
TRAIN_LOG = "train_log.jsonl"
STAGES_DIR = "stages"  # inside a run folder: its preliminary sub-runs (SPoT's early prompt, DTVG's Stage I)


class TrainingDivergedError(PromptvecError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def config_differences(current: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """Keys whose values differ; a key missing on one side counts as its default, so runs made before
    a new option existed still match (and resume) when the new option keeps its default."""
    defaults = {name: field.get_default(call_default_factory=True)
                for name, field in TrainConfig.model_fields.items() if not field.is_required()}
    return sorted(k for k in set(current) | set(previous)
                  if current.get(k, defaults.get(k)) != previous.get(k, defaults.get(k)))


def prepare_output_dir(out: Path, config: dict[str, Any], resume: bool, overwrite: bool) -> dict | None:
    """Decide what to do with an existing folder; returns the previous record when resuming."""
    record_path = out / "run.json"
    if overwrite and out.exists():
        shutil.rmtree(out)
    if not out.exists() or not any(p.name != STAGES_DIR for p in out.iterdir()):
        return None
    if not record_path.is_file():
        raise OutputExistsError(f"output folder {out} is not empty and holds no promptvec run",
                                "choose another --out, or pass --overwrite to replace its contents")
    previous = read_json(record_path, "run record")
    changed = config_differences(config, previous.get("config", {}))
    if changed:
        raise OutputExistsError(f"output folder {out} already holds a different run (differs in {changed})",
                                "choose another --out, or pass --overwrite to replace it")
    if not resume:
        status = previous.get("status")
        raise OutputExistsError(f"output folder {out} already holds this run ({status})",
                                "pass --resume to continue it, or --overwrite to start again")
    return previous


DIVERGENCE_FACTOR = 2.0  # a training loss this many times its lowest earlier value is reported


def warn_if_diverging(record: dict[str, Any], train_loss: float | None, step: int, lr: float) -> None:
    """Report (once per run, in the record's ``warnings``) a training loss that climbs far above its
    lowest earlier value: a learning rate that diverges without producing NaN is not hidden."""
    earlier = [(h["train_loss"], h["step"]) for h in record["history"] if h.get("train_loss") is not None]
    warnings = record.setdefault("warnings", [])
    if train_loss is None or not earlier or any(w["kind"] == "diverging" for w in warnings):
        return
    lowest, at = min(earlier)
    if train_loss > DIVERGENCE_FACTOR * lowest:
        warnings.append({"kind": "diverging", "step": step, "message": (
            f"training loss rose from {lowest:.3g} (step {at}) to {train_loss:.3g} (step {step}) at lr {lr:.3g}: "
            "the learning rate is probably too high; try a lower --lr")})


def warn_if_initial_kept(record: dict[str, Any], primary: str, lr: float) -> None:
    """Say plainly (once, in the record's ``warnings``) when validation never beat the initial prompt,
    so the saved prompt *is* the untrained initial prompt: "best … at step 0" alone reads like success."""
    best, warnings = record.get("best") or {}, record.setdefault("warnings", [])
    if best.get("step") != 0 or any(w["kind"] == "initial-kept" for w in warnings):
        return
    trained = [h for h in record["history"] if h["step"] > 0 and primary in h["validation"]]
    if not trained:
        return
    top = max(trained, key=lambda h: h["validation"][primary])
    warnings.append({"kind": "initial-kept", "step": 0, "message": (
        f"no trained checkpoint beat the initial prompt on validation ({primary} {best['validation'][primary]:.4g} "
        f"at step 0; best trained {top['validation'][primary]:.4g} at step {top['step']}), so the saved prompt is "
        f"the untrained initial prompt. Fix: train longer (--steps), try another learning rate (now {lr:.3g}), "
        "or pass --no-select-initial to keep the best trained checkpoint instead")})


class Trainer:
    """Train one prompt module on one task (or jointly on several: ``config.extra_tasks``).
    ``prompt_module`` defaults to a static prompt initialised from the configured origin (or
    ``init_prompt``). ``task_data`` gives the data of the first task(s); the rest is loaded.

    Under ``accelerate launch`` the run is data-parallel over all processes; ``data_parallel=False``
    keeps it on this process alone (a suite spreading whole runs over the processes)."""

    def __init__(self, config: TrainConfig, output_dir: str | Path, backbone: Backbone | None = None,
                 data_dir: str | Path | None = None, task_data: TaskData | list[TaskData] | None = None,
                 prompt_module: PromptModule | None = None, progress: bool = True,
                 on_step: Callable[[int], None] | None = None, data_parallel: bool = True) -> None:
        self.config = config
        self.data_parallel = data_parallel
        self.out = Path(output_dir)
        self.tasks = [get_task(name) for name in (config.task, *config.extra_tasks)]
        self.task = self.tasks[0]
        self.backbone = backbone or load_backbone(config.model, config.family, config.max_length)
        self.backbone.max_length = config.max_length
        self.backbone.chat_template = config.chat_template
        given = [task_data] if isinstance(task_data, TaskData) else list(task_data or [])
        self.datas = given + [load_task_data(task, data_dir) for task in self.tasks[len(given):]]
        self.data = self.datas[0]
        self.progress = progress
        self.on_step = on_step
        self.origin: Origin | None = None
        self.prompt_module = (prompt_module or self._initial_prompt()).bind(self.backbone)

    # ---- setup ------------------------------------------------------------------------------
    def _initial_prompt(self) -> PromptModule:
        if self.config.init_prompt:
            return StaticPrompt(load_prompt(self.config.init_prompt, self.backbone).prompt)
        self.origin = Origin.sample(self.backbone, self.config.prompt_length, self.config.origin_seed)
        return StaticPrompt(self.origin.tensor(self.backbone))

    def _datasets(self):
        """Per task: few-shot training sample (``shots`` per task), validation and test subsamples."""
        cfg = self.config
        shots = [cfg.shots] + [cfg.extra_shots or cfg.shots] * (len(self.tasks) - 1)
        train = [few_shot(task, data.train, n, cfg.data_seed) if n else list(data.train)
                 for task, data, n in zip(self.tasks, self.datas, shots, strict=True)]
        evaluated = self.datas[:1] if cfg.select_on == "first" else self.datas
        val = [subsample(data.validation, cfg.val_examples, cfg.eval_seed) for data in evaluated]
        test = [subsample(data.test, cfg.test_examples, cfg.eval_seed) for data in evaluated]
        return train, val, test

    @property
    def evaluated_tasks(self) -> list:
        return self.tasks[:1] if self.config.select_on == "first" else self.tasks

    @property
    def primary_metric(self) -> str:
        return self.task.primary_metric if len(self.evaluated_tasks) == 1 else "mean"

    @property
    def task_name(self) -> str:
        return "+".join(task.task for task in self.tasks)

    def _evaluate(self, splits: list[list], prompt) -> dict[str, Any]:
        """One task: its evaluation summary. Several: metrics as ``task/metric`` plus ``mean``, the
        mean of the tasks' primary metrics (what multi-task checkpoint selection maximises)."""
        cfg = self.config
        summaries = [evaluate(self.backbone, task, examples, prompt, mode=cfg.eval_mode,
                              batch_size=cfg.eval_batch_size, length_normalize=cfg.length_normalize).summary()
                     for task, examples in zip(self.evaluated_tasks, splits, strict=True)]
        if len(summaries) == 1:
            return summaries[0]
        tasks = self.evaluated_tasks
        metrics = {f"{task.task}/{k}": v for task, s in zip(tasks, summaries, strict=True)
                   for k, v in s["metrics"].items()}
        metrics["mean"] = sum(s["metrics"][t.primary_metric] for t, s in zip(tasks, summaries, strict=True)) / len(
            summaries)
        return {"metrics": metrics, "n": sum(s["n"] for s in summaries),
                "invalid": sum(s.get("invalid", 0) for s in summaries)}

    def _metadata(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {"task": self.task_name, "task_group": self.task.group if len(self.tasks) == 1 else "multi-task",
                "config": self.config.model_dump(), "origin": self.origin.to_dict() if self.origin else None, **extra}

    # ---- the loop ---------------------------------------------------------------------------
    def train(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Run (or resume) training. Under ``accelerate launch`` every process runs this: each trains
        on its slice of the global batch, the main process alone writes files.

        The frozen model trains in eval mode unless ``train_dropout``; every evaluation inside the run
        switches to eval mode and back (:func:`~promptvec.evaluation.predict`); afterwards the backbone
        and the prompt module are in whatever mode the caller had them."""
        with module_mode(self.backbone.model, training=self.config.train_dropout), \
                module_mode(self.prompt_module, training=True):
            return self._train(resume, overwrite)

    def _train(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        from accelerate import Accelerator
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        config_dict = cfg.model_dump()
        # Precision is applied with torch.autocast below rather than Accelerator(mixed_precision=...):
        # Accelerate's precision is a process-wide singleton, and suites run many configs per process.
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=_trackers(cfg.report_to),
                                  project_dir=str(self.out / "tracking"))
        parallel = self.data_parallel and accelerator.num_processes > 1
        if accelerator.num_processes > 1:
            release_at_exit()
        world, rank = (accelerator.num_processes, accelerator.process_index) if parallel else (1, 0)
        main, device = rank == 0, accelerator.device

        def wait_for_everyone() -> None:
            if parallel:
                accelerator.wait_for_everyone()

        train, val, test = self._datasets()  # before any folder is touched: bad data leaves everything as it was
        if overwrite and main and self.out.exists():
            shutil.rmtree(self.out)
        wait_for_everyone()
        previous = prepare_output_dir(self.out, config_dict, resume, overwrite=False)
        if previous is not None and previous.get("status") == "completed":
            return previous
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        wait_for_everyone()

        encoded, groups = [], []
        for group, (task, examples) in enumerate(zip(self.tasks, train, strict=True)):
            encoded.extend(self.backbone.encode(task, examples, self.prompt_module.rows))
            groups.extend([group] * len(examples))
        batches: MixedTaskBatches | BucketedBatches
        if cfg.task_mixing == "mixed" and len(self.tasks) > 1:
            batches = MixedTaskBatches(groups, cfg.batch_size, cfg.data_seed, cfg.mixing_cap, cfg.mixing_temperature,
                                       cfg.mixing_first_share)
        else:
            batches = BucketedBatches([len(e.input_ids) for e in encoded], cfg.batch_size, cfg.data_seed,
                                      groups=groups if len(self.tasks) > 1 else None)

        if cfg.report_to:
            accelerator.init_trackers(f"promptvec-{self.task_name}",
                                      config={k: v for k, v in config_dict.items() if isinstance(v, int | float | str)})
        autocast_kwargs = {"device_type": device.type, "dtype": torch.bfloat16,
                           "enabled": resolve_precision(cfg.precision, device) == "bf16"}
        self.backbone.model.to(device)
        if cfg.compile:
            self.backbone.model.compile(dynamic=True)
        torch.manual_seed(cfg.train_seed)
        random.seed(cfg.train_seed)
        module = self.prompt_module.to(device)
        parameters = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(module.parameter_groups(cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup, cfg.max_steps)

        record: dict[str, Any] = {
            "status": "running", "config": config_dict, "task": self.task_name, "model": self.backbone.name,
            "model_fingerprint": self.backbone.fingerprint, "family": self.backbone.family,
            "seeds": {"origin": cfg.origin_seed, "data": cfg.data_seed, "train": cfg.train_seed,
                      "eval": cfg.eval_seed},
            "origin": self.origin.to_dict() if self.origin else None,
            "data_origin": self.data.origin if len(self.datas) == 1 else [d.origin for d in self.datas],
            "sizes": {"train": sum(map(len, train)), "validation": sum(map(len, val)), "test": sum(map(len, test))},
            "processes": world, "versions": package_versions(), "history": [], "best": None, "test": None,
            "wall_time_s": 0.0, "peak_memory": None,
        }
        step, best_score, since_best, elapsed_before = 0, -math.inf, 0, 0.0
        losses: list[float] = []  # training losses since the last evaluation
        pending = LossBuffer(world)  # losses still on the device
        checkpoint_dir = self.out / "checkpoint"
        if previous is not None and (checkpoint_dir / "state.json").is_file():
            state = load_training_state(checkpoint_dir)
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            batches.load_state(state["data"])
            set_rng_state(state["rng"])
            step, best_score, since_best = state["step"], state["best_score"], state["since_best"]
            losses[:] = state.get("losses", [])
            record = state["record"]
            elapsed_before = record["wall_time_s"]

        primary = self.primary_metric
        start = time.perf_counter()
        progress = _progress(self.progress and main, self.task_name, cfg.max_steps, step)

        def read_losses() -> None:
            """Bring the buffered losses to the host; a non-finite one stops the run before anything
            after it is saved, so the last checkpoint on disk is the last good one."""
            read = pending.read()
            if main and read:  # the loss curve; a resumed run may repeat a few steps (readers keep the last)
                append_jsonl(self.out / TRAIN_LOG, [{"step": at, "loss": value} for at, value in read])
            for at, value in read:
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"training loss became {value} at step {at} (lr {scheduler.get_last_lr()[0]:.3g}); "
                        f"the last good checkpoint is kept in {checkpoint_dir}",
                        "lower --lr (e.g. by 10x) or use --precision fp32")
                losses.append(value)
                progress.show(loss=value)

        def checkpoint() -> None:
            read_losses()
            entries = module.drain_log()
            if not main:
                return
            if entries:  # before the state: a crash in between re-logs steps, which readers deduplicate
                append_jsonl(self.out / MODULE_LOG, entries)
            record["step"] = step
            record["wall_time_s"] = elapsed_before + time.perf_counter() - start
            record["peak_memory"] = peak_memory_mb()
            save_training_state(checkpoint_dir, {
                "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "data": batches.state(), "rng": rng_state(), "step": step,
                "best_score": best_score, "since_best": since_best, "losses": list(losses), "record": record})
            atomic_write_json(self.out / "run.json", record)

        def evaluate_and_select(selectable: bool = True) -> bool:
            nonlocal best_score, since_best
            read_losses()
            train_loss = sum(losses) / len(losses) if losses else None
            losses.clear()
            metrics = self._evaluate(val, module)
            score = agree(metrics["metrics"][primary], device, world)
            warn_if_diverging(record, train_loss, step, scheduler.get_last_lr()[0])
            entry = {"step": step, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                     "validation": metrics["metrics"], "elapsed_s": elapsed_before + time.perf_counter() - start}
            record["history"].append(entry)
            if cfg.report_to:
                accelerator.log({**({"train_loss": train_loss} if train_loss is not None else {}), "lr": entry["lr"],
                                 **{f"validation/{k}": v for k, v in metrics["metrics"].items()}}, step=step)
            if not selectable:
                return False
            if score > best_score:
                best_score, since_best = score, 0
                record["best"] = {"step": step, "validation": metrics["metrics"]}
                if main:
                    self._save_best(module, {"step": step, "validation": metrics["metrics"]})
            else:
                since_best += 1
            return cfg.early_stopping_patience is not None and since_best >= cfg.early_stopping_patience

        if step == 0 and not record["history"]:
            evaluate_and_select(selectable=cfg.select_initial)
            checkpoint()
        stopped_early = False
        while step < cfg.max_steps and not stopped_early:
            step_loss = torch.zeros((), device=device)
            module.step = step + 1
            for _ in range(cfg.grad_accum):
                global_batch = batches.next()
                by_task: dict[int, list[int]] = {}
                for i in local_slice(global_batch, rank, world):
                    by_task.setdefault(batches.group(i), []).append(i)
                if not by_task:  # a global batch smaller than the number of processes
                    continue
                losses_now, counts = {}, {}
                for group, idx in by_task.items():  # one forward per task (mixed batches may hold several)
                    task = self.tasks[group]
                    batch = self.backbone.collate(task, [encoded[i] for i in idx], train=True).to(device)
                    with torch.autocast(**autocast_kwargs):
                        losses_now[task.task] = self.backbone.loss(task, batch, module(batch))
                    counts[task.task] = len(idx)
                share = local_weight(sum(counts.values()), len(global_batch), world)
                loss = module.combine_losses(losses_now, counts) * (share / cfg.grad_accum)
                accelerator.backward(loss)
                step_loss += loss.detach()
            average_gradients(parameters, world)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            pending.add(step, step_loss)
            progress.advance()
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                stopped_early = evaluate_and_select()
                checkpoint()
            elif step % cfg.save_every == 0:
                checkpoint()
            elif step % cfg.log_every == 0:
                read_losses()
            fault_point("train.step")
            if self.on_step:  # after the checkpoint: an interruption here resumes at the next step
                self.on_step(step)
        progress.close()

        wait_for_everyone()  # the best prompt is on disk (written by the main process)
        best = self._load_best()
        record["test"] = self._evaluate(test, best)
        if cfg.report_to:
            accelerator.log({f"test/{k}": v for k, v in record["test"]["metrics"].items()}, step=step)
            accelerator.end_training()
        record["stopped_early"] = stopped_early
        warn_if_initial_kept(record, primary, cfg.lr)
        record["status"] = "completed"
        record["wall_time_s"] = elapsed_before + time.perf_counter() - start
        record["peak_memory"] = peak_memory_mb()
        if main:
            self._save_best(best, {"step": record["best"]["step"], "validation": record["best"]["validation"],
                                   "test": record["test"]["metrics"]})
            atomic_write_json(self.out / "run.json", record)
        wait_for_everyone()
        return record

    def _save_best(self, module: PromptModule | torch.Tensor, info: dict[str, Any]) -> None:
        """The best prompt as a PEFT folder where one static prompt exists; a dynamic module also
        in promptvec's own format (its state + config)."""
        if isinstance(module, torch.Tensor):
            save_prompt(self.out / PROMPT_DIR, module, self.backbone, self._metadata(info))
            return
        if module.kind != StaticPrompt.kind:
            save_module(self.out / MODULE_DIR, module, self.backbone, self._metadata(info))
        static = module.export()
        if static is not None:
            save_prompt(self.out / PROMPT_DIR, static, self.backbone, self._metadata(info))

    def _load_best(self) -> PromptModule | torch.Tensor:
        if (self.out / MODULE_DIR).is_dir():
            module, _ = load_module(self.out / MODULE_DIR, self.backbone)
            return module.to(self.backbone.device).eval()
        return load_prompt(self.out / PROMPT_DIR, self.backbone).prompt


def _trackers(names: Sequence[str]) -> list[str] | None:
    """Check that the packages behind the requested trackers are installed (one clear message if not)."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in names:
        if not available[name]():
            raise ConfigError(f"report_to '{name}' needs the {name} package", f"pip install {name}, or drop it")
    return list(names) or None


class _progress:
    """A rich progress bar (or nothing), so the loop stays free of display code."""

    def __init__(self, enabled: bool, label: str, total: int, done: int) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.id = self.bar.add_task(label, total=total, completed=done, loss=float("nan"))

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(self.id, advance=1)

    def show(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.id, loss=loss)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train_prompt(config: TrainConfig, output_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Library entry point: train a prompt and return the run record."""
    resume = kwargs.pop("resume", False)
    overwrite = kwargs.pop("overwrite", False)
    return Trainer(config, output_dir, **kwargs).train(resume=resume, overwrite=overwrite)
