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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import ValidationError

from promptvec.backbones import Backbone, load_backbone
from promptvec.backbones.base import Encoded
from promptvec.display import TrainingProgress
from promptvec.encoding import EncodingSpec
from promptvec.errors import ConfigError, OutputExistsError, PromptvecError, describe_validation_error
from promptvec.faults import fault_point
from promptvec.io import append_jsonl, atomic_write_json, output_folder, read_json
from promptvec.modes import module_mode
from promptvec.peft_folder import PROMPT_DIR, load_prompt
from promptvec.prompts import MODULE_DIR, PromptModule, StaticPrompt
from promptvec.provenance import code_version
from promptvec.tasks import TaskData, TaskSpec, get_task, load_task_data
from promptvec.training.checkpoint import load_training_state, rng_state, save_training_state, set_rng_state
from promptvec.training.config import RETIRED_FIELDS, TrainConfig, resolve_precision
from promptvec.training.distributed import (
    LossBuffer,
    agree,
    average_gradients,
    local_slice,
    local_weight,
    release_at_exit,
)
from promptvec.training.parts import BestPrompt, RunSplits, SplitScorer, training_examples
from promptvec.training.phases import Tally, add_phase, timed
from promptvec.training.record import RunRecord, new_run_record, peak_memory_mb
from promptvec.training.run_folder import (
    LOCK_FILE,
    MODULE_LOG,
    STAGES_DIR,
    TRAIN_LOG,
    RunFolderLock,
    remove_leftovers,
    unstarted_run_entries,
)
from promptvec.vectors import Origin


class TrainingDivergedError(PromptvecError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def config_differences(current: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """Keys whose values differ; a key missing on one side counts as its default, so runs made before
    a new option existed still match (and resume) when the new option keeps its default. Retired
    settings (:data:`~promptvec.training.config.RETIRED_FIELDS`) are not compared: what they set is
    now the prompt module's."""
    defaults = {name: field.get_default(call_default_factory=True)
                for name, field in TrainConfig.model_fields.items() if not field.is_required()}
    return sorted(k for k in (set(current) | set(previous)) - set(RETIRED_FIELDS)
                  if current.get(k, defaults.get(k)) != previous.get(k, defaults.get(k)))


#: what a run writes into its folder before its first record (run.json): a folder holding only these
#: is a run killed before it started, which starts again
BEFORE_RECORD = frozenset({PROMPT_DIR, MODULE_DIR, "checkpoint", TRAIN_LOG, MODULE_LOG, STAGES_DIR})


def empty_run_folder(out: Path) -> None:
    """Delete everything in a run folder but its lock (``--overwrite``)."""
    for entry in out.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_output_dir(out: Path, config: dict[str, Any], resume: bool) -> dict | None:
    """Decide what to do with an existing folder (already emptied for ``--overwrite``); returns the
    previous record when resuming."""
    record_path = out / "run.json"
    if not out.exists():
        return None
    if not record_path.is_file():
        unstarted = unstarted_run_entries(out, BEFORE_RECORD)
        if unstarted is None:
            raise OutputExistsError(f"output folder {out} is not empty and holds no promptvec run",
                                    "choose another --out, or pass --overwrite to replace its contents")
        for name in (TRAIN_LOG, MODULE_LOG):  # a killed start's log lines must not precede the new run's
            if name in unstarted:
                (out / name).unlink()
        return None  # a run killed before its first record: it starts again (its files get replaced)
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


def warn_if_diverging(record: RunRecord, train_loss: float | None, step: int, lr: float) -> None:
    """Report (once per run, in the record's ``warnings``) a training loss that climbs far above its
    lowest earlier value: a learning rate that diverges without producing NaN is not hidden."""
    earlier = [(h["train_loss"], h["step"]) for h in record["history"] if h.get("train_loss") is not None]
    if record.get("first_loss"):  # a loss that explodes from the first steps has no earlier evaluation to compare
        earlier.append((record["first_loss"]["loss"], record["first_loss"]["step"]))
    warnings = record.setdefault("warnings", [])
    if train_loss is None or not earlier or any(w["kind"] == "diverging" for w in warnings):
        return
    lowest, at = min(earlier)
    if train_loss > DIVERGENCE_FACTOR * lowest:
        warnings.append({"kind": "diverging", "step": step, "message": (
            f"training loss rose from {lowest:.3g} (step {at}) to {train_loss:.3g} (step {step}) at lr {lr:.3g}: "
            "the learning rate is probably too high; try a lower --lr")})


#: no prompt-tuning recipe uses a learning rate near this (the papers: 0.3 at most; promptvec's default 0.03)
EXTREME_LR = 10.0


def warn_if_extreme_lr(record: RunRecord, lr: float) -> None:
    """Report (once) a learning rate far beyond any prompt-tuning recipe: normalisation layers can keep
    the loss flat while the prompt runs off to huge values, so the loss alone would not show it."""
    warnings = record.setdefault("warnings", [])
    if lr > EXTREME_LR and not any(w["kind"] == "extreme-lr" for w in warnings):
        warnings.append({"kind": "extreme-lr", "step": 0, "message": (
            f"lr {lr:.3g} is far above any prompt-tuning recipe (promptvec's default 0.03, the papers at most 0.3): "
            "the prompt will move far from every token embedding; use a lower --lr unless this is deliberate")})


def warn_if_initial_kept(record: RunRecord, primary: str, lr: float) -> None:
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


def warn_if_targets_cut(record: RunRecord, tasks: Sequence[TaskSpec], encoded: Sequence[Sequence[Encoded]]) -> None:
    """Say (once per run, in the record's ``warnings``) how many free-text training targets were longer
    than their task's ``max_gen_toks`` and trained cut to it: a model cannot learn an answer's end it never sees."""
    warnings = record.setdefault("warnings", [])
    if any(w["kind"] == "targets-cut" for w in warnings):
        return
    for task, items in zip(tasks, encoded, strict=True):
        cut = sum(item.target_truncated for item in items)
        if cut:
            limit = task.generation_kwargs.max_gen_toks
            warnings.append({"kind": "targets-cut", "step": 0, "message": (
                f"{cut} of {len(items)} training answers of task '{task.task}' are longer than max_gen_toks = "
                f"{limit} tokens and were cut to it; raise generation_kwargs.max_gen_toks in the task to train "
                "on whole answers")})


class Trainer:
    """Train one prompt module on one task (or jointly on several: ``config.extra_tasks``).
    ``prompt_module`` defaults to a static prompt initialised from the configured origin (or
    ``init_prompt``). ``task_data`` gives the data of the first task(s); the rest is loaded.

    Under ``accelerate launch`` the run is data-parallel over all processes; ``data_parallel=False``
    keeps it on this process alone (a suite spreading whole runs over the processes)."""

    def __init__(self, config: TrainConfig, output_dir: str | Path, backbone: Backbone | None = None,
                 data_dir: str | Path | None = None, task_data: TaskData | list[TaskData] | None = None,
                 prompt_module: PromptModule | None = None, progress: bool = True,
                 on_step: Callable[[int], None] | None = None, data_parallel: bool = True,
                 start_seconds: float = 0.0) -> None:
        started = time.perf_counter()
        self.config = config
        self.data_parallel = data_parallel
        self.out = Path(output_dir)
        self.tasks = [get_task(name) for name in (config.task, *config.extra_tasks)]
        self.task = self.tasks[0]
        lent = backbone or load_backbone(config.model, config.family, config.max_length)
        # this run's encoding settings, on a view: a lent (cached, shared) backbone is never changed
        self.backbone = lent.with_encoding(EncodingSpec(config.max_length, config.chat_template))
        if config.compile:  # a view whose model is compiled: the lent model itself stays eager
            self.backbone = self.backbone.compiled()
        given = [task_data] if isinstance(task_data, TaskData) else list(task_data or [])
        self.datas = given + [load_task_data(task, data_dir) for task in self.tasks[len(given):]]
        self.data = self.datas[0]
        self.progress = progress
        self.on_step = on_step
        self.origin: Origin | None = None
        self.init_info: dict[str, Any] | None = None  # the start's prompt or init auto's choice (record's ``init``)
        #: what this process spent loading the model (unless lent) and the data
        self.load_seconds = time.perf_counter() - started
        begun = time.perf_counter()
        module = prompt_module or self._initial_prompt()
        #: what making the start prompt took — init auto's choice; a suite method's sources and earlier stages
        #: (``start_seconds``, timed by the caller that made ``prompt_module``): part of the run's wall time
        self.start_seconds = start_seconds + (0.0 if prompt_module else time.perf_counter() - begun)
        self.prompt_module = module.bind(self.backbone)

    # ---- setup ------------------------------------------------------------------------------
    def _initial_prompt(self) -> PromptModule:
        if self.config.init_prompt:
            start = load_prompt(self.config.init_prompt, self.backbone)
            self.init_info = {"init": "prompt", "source": start.source}  # a Hub id's exact commit, for the record
            return StaticPrompt(start.prompt)
        self.origin = Origin.sample(self.backbone, self.config.prompt_length, self.config.origin_seed)
        if self.config.init == "auto":
            return StaticPrompt(self._auto_start(self.origin))
        return StaticPrompt(self.origin.tensor(self.backbone))

    def _auto_start(self, origin: Origin) -> torch.Tensor:
        """init auto: the start chosen from the library on this run's own training examples."""
        from promptvec.library import AutoPolicy, PromptLibrary, choose_start

        library = PromptLibrary.for_backbone(self.backbone, self.config.library)
        policy = AutoPolicy()
        choice = choose_start(self.backbone, self.task, self.training_sample(), origin,
                              library.sources(self.backbone, exclude=set(self.config.library_exclude)), policy)
        self.init_info = {"init": "auto", "origin_seed": origin.seed, "library": str(library.root),
                          "library_exclude": self.config.library_exclude, "auto": choice.record(policy)}
        return origin.tensor(self.backbone) if choice.prompt is None else choice.prompt

    def training_sample(self) -> list:
        """The first task's training examples: its few-shot sample, or the whole split."""
        cfg = self.config
        return training_examples(self.task, self.data, cfg.shots, cfg.data_seed)

    @property
    def task_name(self) -> str:
        return "+".join(task.task for task in self.tasks)

    def metadata(self, extra: dict[str, Any]) -> dict[str, Any]:
        """What a saved prompt records about the run that made it (its model card is written from it:
        the task's kind of output and its Hub datasets go into the card's metadata)."""
        datasets = [{"path": t.dataset_path, "config": t.dataset_name,
                     "splits": {"train": t.training_split, "validation": t.validation_split, "test": t.test_split}}
                    for t in self.tasks if t.dataset_path]
        return {"task": self.task_name, "task_group": self.task.group if len(self.tasks) == 1 else "multi-task",
                "output_type": self.task.output_type, "datasets": datasets, "config": self.config.model_dump(),
                "origin": self.origin.to_dict() if self.origin else None, **extra}

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
        first_only = self.prompt_module.evaluates_first_task_only
        tasks = self.tasks[:1] if first_only else self.tasks
        loop = TrainingLoop(self, RunSplits.sample(self.config, self.tasks, self.datas, first_only),
                            SplitScorer(self.backbone, tasks, self.config),
                            BestPrompt(self.out, self.backbone, self.metadata))
        try:
            return loop.run(resume, overwrite)
        finally:
            loop.release()


@dataclass
class TrainingState:
    """Where a run is, besides the states of its module, optimizer, scheduler, data order and RNG: the
    step, the best validation score so far and the evaluations since it, the training losses since
    the last evaluation, and the run record being built. Saved with every checkpoint; the keys of
    :meth:`state_dict` are those of checkpoints written before this class existed, so they resume."""

    record: RunRecord
    step: int = 0
    best_score: float = -math.inf
    since_best: int = 0
    losses: list[float] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "best_score": self.best_score, "since_best": self.since_best,
                "losses": list(self.losses), "record": self.record}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.best_score, self.since_best = state["step"], state["best_score"], state["since_best"]
        self.losses = list(state.get("losses", []))
        self.record = state["record"]


class TrainingLoop:
    """One training run in progress, as named steps — :meth:`prepare` (the output folder),
    :meth:`setup` (devices, data order, optimizer; restored from the last checkpoint when resuming),
    :meth:`optimizer_step`, :meth:`evaluate_and_select`, :meth:`checkpoint`, :meth:`finish` — around
    one explicit :class:`TrainingState` — and :meth:`run`, which says in which order they run. It is
    given its parts (the trainer that built the run, read-only, and the splits, the scorer and the best-
    prompt folder) and calls nothing back."""

    def __init__(self, trainer: Trainer, splits: RunSplits, score: SplitScorer, best: BestPrompt) -> None:
        from accelerate import Accelerator

        self.trainer, self.cfg = trainer, trainer.config
        self.train, self.val, self.test = splits.train, splits.val, splits.test
        self.score, self.best = score, best
        # Precision is applied with torch.autocast rather than Accelerator(mixed_precision=...):
        # Accelerate's precision is a process-wide singleton, and suites run many configs per process.
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=_trackers(self.cfg.report_to),
                                       project_dir=str(trainer.out / "tracking"))
        self.parallel = trainer.data_parallel and self.accelerator.num_processes > 1
        if self.accelerator.num_processes > 1:
            release_at_exit()
        self.world: int = self.accelerator.num_processes if self.parallel else 1
        self.rank: int = self.accelerator.process_index if self.parallel else 0
        self.main, self.device = self.rank == 0, self.accelerator.device
        self.checkpoint_dir = trainer.out / "checkpoint"
        self.pending = LossBuffer(self.world)  # training losses still on the device
        self.start = time.perf_counter()
        self.elapsed_before = 0.0

    def wait_for_everyone(self) -> None:
        if self.parallel:
            self.accelerator.wait_for_everyone()

    # ---- the output folder and the data ------------------------------------------------------
    def prepare(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """Decide what the output folder holds (the data was sampled before any folder is touched: bad
        data leaves everything as it was); the previous record when resuming (or finished)."""
        trainer = self.trainer
        if self.main:  # the data is valid: now the folder may be created, and locked for this process
            output_folder(trainer.out, "output folder (--out)")
            self.lock = RunFolderLock(trainer.out)
            if overwrite:
                empty_run_folder(trainer.out)
            remove_leftovers(trainer.out)
        self.wait_for_everyone()
        previous = prepare_output_dir(trainer.out, self.cfg.model_dump(), resume)
        self.wait_for_everyone()
        return previous

    def run(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        """The run, or its resumption: validate the start, step, evaluate every ``eval_every`` steps,
        checkpoint, and test the best prompt at the end."""
        cfg = self.cfg
        previous = self.prepare(resume, overwrite)
        if previous is not None and previous.get("status") == "completed":
            return previous
        self.setup(resumable=previous is not None)
        if self.state.step == 0 and not self.state.record["history"]:
            self.evaluate_and_select(selectable=cfg.select_initial)
            self.checkpoint()
        stopped_early = False
        while self.state.step < cfg.max_steps and not stopped_early:
            self.optimizer_step()
            step = self.state.step
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                stopped_early = self.evaluate_and_select()
                self.checkpoint()
            elif step % cfg.save_every == 0:
                self.checkpoint()
            elif step % cfg.log_every == 0:
                self.read_losses()
            fault_point("train.step")
            if self.trainer.on_step:  # after the checkpoint: an interruption here resumes at the next step
                self.trainer.on_step(step)
        return self.finish(stopped_early)

    def release(self) -> None:
        """Give up the run folder's lock (the process's exit would too)."""
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.release()

    def setup(self, resumable: bool) -> None:
        """Encode the training data, order it, put the module on the device with its optimizer and
        schedule, and restore the last checkpoint when there is one to resume."""
        from transformers import get_linear_schedule_with_warmup

        started = time.perf_counter()
        trainer, cfg = self.trainer, self.cfg
        per_task = [trainer.backbone.encode(task, examples, trainer.prompt_module.rows)
                    for task, examples in zip(trainer.tasks, self.train, strict=True)]
        encoded = [item for items in per_task for item in items]
        groups = [group for group, items in enumerate(per_task) for _ in items]
        self.encoded = encoded
        self.batches = trainer.prompt_module.batches([e.length for e in encoded], groups, cfg.batch_size,
                                                     cfg.data_seed)
        config_dict = cfg.model_dump()
        if cfg.report_to:
            self.accelerator.init_trackers(f"promptvec-{trainer.task_name}", config={
                k: v for k, v in config_dict.items() if isinstance(v, int | float | str)})
        self.autocast = {"device_type": self.device.type, "dtype": torch.bfloat16,
                         "enabled": resolve_precision(cfg.precision, self.device) == "bf16"}
        trainer.backbone.model.to(self.device)
        torch.manual_seed(cfg.train_seed)
        random.seed(cfg.train_seed)
        self.module = trainer.prompt_module.to(self.device)
        self.parameters = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.module.parameter_groups(cfg.lr), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, cfg.warmup, cfg.max_steps)
        self.state = TrainingState(record=self._new_record(config_dict))
        if resumable and (self.checkpoint_dir / "state.json").is_file():
            saved = load_training_state(self.checkpoint_dir)
            self.module.load_state_dict(saved["module"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.batches.load_state(saved["data"])
            set_rng_state(saved["rng"])
            self.state.load_state_dict(saved)
            self.elapsed_before = self.state.record["wall_time_s"]
            if self.state.record.get("code") != code_version():  # part of this run was made by other code
                self.state.record.setdefault("code_resumed", []).append(code_version())
        warn_if_targets_cut(self.state.record, trainer.tasks, per_task)
        add_phase(self.state.record, "load", trainer.load_seconds)
        add_phase(self.state.record, "start", trainer.start_seconds)
        add_phase(self.state.record, "setup", time.perf_counter() - started)
        self.elapsed_before += trainer.start_seconds  # made before this clock started, but this run's work
        self.progress = TrainingProgress(trainer.progress and self.main, trainer.task_name, cfg.max_steps,
                                         self.state.step)
        self.start = started  # a run's wall time counts its setup; model and data loading are the caller's

    def _new_record(self, config_dict: dict[str, Any]) -> RunRecord:
        trainer, cfg = self.trainer, self.cfg
        record = new_run_record(trainer.backbone, trainer.task_name, config_dict,
                                trainer.origin.to_dict() if trainer.origin else None)
        record["seeds"] = {"origin": cfg.origin_seed, "data": cfg.data_seed, "train": cfg.train_seed,
                           "eval": cfg.eval_seed}
        record["data_origin"] = trainer.data.origin if len(trainer.datas) == 1 else [d.origin for d in trainer.datas]
        record["sizes"] = {"train": sum(map(len, self.train)), "validation": sum(map(len, self.val)),
                           "test": sum(map(len, self.test))}
        record["processes"] = self.world
        if trainer.init_info is not None:
            record["init"] = trainer.init_info
        return record

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    # ---- the steps ----------------------------------------------------------------------------
    def optimizer_step(self) -> None:
        """One optimizer step over ``grad_accum`` global batches (this process's slice of each; one
        forward per task when a batch mixes tasks)."""
        with timed(self.state.record, "steps") as tally:
            self._step(tally)
        self.pending.add(self.state.step, self.step_loss)
        self.progress.advance()

    def _step(self, tally: Tally) -> None:
        cfg, trainer, module = self.cfg, self.trainer, self.module
        step_loss = torch.zeros((), device=self.device)
        module.step = self.state.step + 1
        for _ in range(cfg.grad_accum):
            global_batch = self.batches.next()
            by_task: dict[int, list[int]] = {}
            for i in local_slice(global_batch, self.rank, self.world):
                by_task.setdefault(self.batches.group(i), []).append(i)
            if not by_task:  # a global batch smaller than the number of processes
                continue
            losses, counts = {}, {}
            for group, idx in by_task.items():
                task = trainer.tasks[group]
                items = [self.encoded[i] for i in idx]
                tally.examples += len(items)
                tally.tokens += sum(item.length for item in items)
                batch = trainer.backbone.collate(task, items, train=True).to(self.device)
                with torch.autocast(**self.autocast):
                    losses[task.task] = trainer.backbone.loss(task, batch, module(batch))
                counts[task.task] = len(idx)
            share = local_weight(sum(counts.values()), len(global_batch), self.world)
            loss = module.combine_losses(losses, counts) * (share / cfg.grad_accum)
            self.accelerator.backward(loss)
            step_loss += loss.detach()
        average_gradients(self.parameters, self.world)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.step_loss = step_loss

    def read_losses(self) -> None:
        """Bring the buffered losses to the host; a non-finite one stops the run before anything after
        it is saved, so the last checkpoint on disk is the last good one."""
        read = self.pending.read()
        if self.main and read:  # the loss curve; a resumed run may repeat a few steps (readers keep the last)
            append_jsonl(self.trainer.out / TRAIN_LOG, [{"step": at, "loss": value} for at, value in read])
        for at, value in read:
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"training loss became {value} at step {at} (lr {self.scheduler.get_last_lr()[0]:.3g}); "
                    f"the last good checkpoint is kept in {self.checkpoint_dir}",
                    "lower --lr (e.g. by 10x) or use --precision fp32")
            self.state.losses.append(value)
            self.state.record.setdefault("first_loss", {"step": at, "loss": value})
            self.progress.show(loss=value)

    def evaluate_and_select(self, selectable: bool = True) -> bool:
        """Score the module on validation, log it, and keep it as the best prompt when it is; True
        when early stopping says to stop."""
        cfg, state = self.cfg, self.state
        self.read_losses()
        train_loss = sum(state.losses) / len(state.losses) if state.losses else None
        state.losses.clear()
        with self.progress.counting("validation", sum(map(len, self.val))) as advance, \
                timed(state.record, "validation") as tally:
            metrics = self.score(self.val, self.module, advance, tally)
        score = agree(metrics["metrics"][self.score.primary_metric], self.device, self.world)
        lr = self.scheduler.get_last_lr()[0]
        warn_if_diverging(state.record, train_loss, state.step, lr)
        warn_if_extreme_lr(state.record, cfg.lr)
        entry = {"step": state.step, "train_loss": train_loss, "lr": lr, "validation": metrics["metrics"],
                 "elapsed_s": self._elapsed()}
        state.record["history"].append(entry)
        if cfg.report_to:
            self.accelerator.log({**({"train_loss": train_loss} if train_loss is not None else {}), "lr": lr,
                                  **{f"validation/{k}": v for k, v in metrics["metrics"].items()}}, step=state.step)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics["metrics"].items())
        better = selectable and score > state.best_score
        self.progress.note(f"step {state.step:>5}: validation {shown}" + ("  (best so far)" if better else ""))
        if not selectable:
            return False
        if score > state.best_score:
            state.best_score, state.since_best = score, 0
            state.record["best"] = {"step": state.step, "validation": metrics["metrics"]}
            if self.main:
                with timed(state.record, "saving"):
                    self.best.save(self.module, {"step": state.step, "validation": metrics["metrics"]})
        else:
            state.since_best += 1
        return cfg.early_stopping_patience is not None and state.since_best >= cfg.early_stopping_patience

    def checkpoint(self) -> None:
        """Everything needed to resume exactly, written atomically (by the main process)."""
        self.read_losses()
        entries = self.module.drain_log()
        if not self.main:
            return
        out, record = self.trainer.out, self.state.record
        if entries:  # before the state: a crash in between re-logs steps, which readers deduplicate
            append_jsonl(out / MODULE_LOG, entries)
        started = time.perf_counter()
        record["step"] = self.state.step
        record["wall_time_s"] = self._elapsed()
        record["peak_memory"] = peak_memory_mb()
        save_training_state(self.checkpoint_dir, {
            "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "data": self.batches.state(), "rng": rng_state(),
            **self.state.state_dict()})
        atomic_write_json(out / "run.json", record)
        add_phase(record, "saving", time.perf_counter() - started)  # counted from the next write on

    def finish(self, stopped_early: bool) -> dict[str, Any]:
        """Score the best prompt on the test split and complete the run record."""
        trainer, record = self.trainer, self.state.record
        self.wait_for_everyone()  # the best prompt is on disk (written by the main process)
        best = self.best.load()
        with self.progress.counting("test (best prompt)", sum(map(len, self.test))) as advance, \
                timed(record, "test") as tally:
            tested = record["test"] = self.score(self.test, best, advance, tally)
        self.progress.close()
        if self.cfg.report_to:
            self.accelerator.log({f"test/{k}": v for k, v in tested["metrics"].items()}, step=self.state.step)
            self.accelerator.end_training()
        record["stopped_early"] = stopped_early
        warn_if_initial_kept(record, self.score.primary_metric, self.cfg.lr)
        record["status"] = "completed"
        selected = record.get("best") or {}
        if self.main:
            sample = {"seed": self.cfg.eval_seed, "data": record.get("data_origin")}
            with timed(record, "saving"):
                self.best.save(best, {"step": selected.get("step"), "validation": selected.get("validation"),
                                      "test": tested["metrics"], "evaluated_on": {
                                          "validation": {"examples": sum(map(len, self.val)), **sample},
                                          "test": {"examples": tested["n"], **sample}}})
        record["wall_time_s"] = self._elapsed()
        record["peak_memory"] = peak_memory_mb()
        if self.main:
            atomic_write_json(trainer.out / "run.json", record)
        self.wait_for_everyone()
        return dict(record)


def _trackers(names: Sequence[str]) -> list[str] | None:
    """Check that the packages behind the requested trackers are installed (one clear message if not)."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in names:
        if not available[name]():
            raise ConfigError(f"report_to '{name}' needs the {name} package", f"pip install {name}, or drop it")
    return list(names) or None


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_prompt` returns: the run folder and its record (``run.json``), with what most
    callers read as typed attributes."""

    run_dir: Path
    record: RunRecord

    @property
    def status(self) -> str:
        """``completed`` (a run that returns has finished)."""
        return self.record["status"]

    @property
    def prompt_dir(self) -> Path:
        """The selected prompt, as a PEFT adapter folder."""
        return self.run_dir / PROMPT_DIR

    @property
    def best_step(self) -> int | None:
        """The step whose prompt was selected on validation (0: the initial prompt was kept)."""
        best = self.record.get("best")
        return best.get("step") if best else None

    @property
    def validation(self) -> dict[str, float]:
        """The selected prompt's validation metrics."""
        best = self.record.get("best")
        return dict(best.get("validation") or {}) if best else {}

    @property
    def test(self) -> dict[str, float]:
        """The selected prompt's test metrics."""
        test = self.record.get("test")
        return dict(test.get("metrics") or {}) if test else {}

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """What went wrong without stopping the run (diverging, initial prompt kept)."""
        return list(self.record.get("warnings", []))


def train_prompt(config: TrainConfig, output_dir: str | Path, *, backbone: Backbone | None = None,
                 data_dir: str | Path | None = None, task_data: TaskData | list[TaskData] | None = None,
                 prompt_module: PromptModule | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, init: str | None = None, library: str | Path | None = None
                 ) -> TrainResult:
    """Train a prompt as ``config`` says; the result holds the run record (also in
    ``output_dir/run.json``) and its metrics as attributes.

    Args:
        config: every training setting (:class:`~promptvec.training.config.TrainConfig`; presets via
            ``TrainConfig.from_preset``).
        output_dir: the run folder: ``prompt/`` (the best prompt, a PEFT adapter folder), ``run.json``,
            ``checkpoint/`` (for ``resume``).
        backbone: an already loaded model (default: load ``config.model``).
        data_dir: folder with ``<task>/{train,validation,test}.jsonl`` (default: ``$PROMPTVEC_DATA_DIR``,
            else the Hugging Face Hub).
        task_data: data already loaded (the task's, then each of ``config.extra_tasks``'), instead of
            ``data_dir``.
        prompt_module: a prompt module to train instead of a static prompt from ``config``'s origin
            (the transfer methods pass theirs).
        resume: continue an interrupted run in ``output_dir`` from its last checkpoint.
        overwrite: replace whatever ``output_dir`` holds (otherwise a different run there is refused).
        progress: show a progress bar on stderr.
        init: where training starts, overriding ``config.init``: ``"origin"``, or ``"auto"`` — the prompt
            library's best start for this task, chosen on its training examples only (the record's
            ``init.auto`` lists every candidate; docs/methods.md §9).
        library: the prompt library for ``init="auto"`` (default: the one shipped for the model).
    """
    if init is not None or library is not None:
        updates = {"init": init or config.init, "library": str(library) if library is not None else config.library}
        try:
            config = TrainConfig.model_validate({**config.model_dump(), **updates})
        except ValidationError as exc:
            raise ConfigError(f"invalid training configuration: {describe_validation_error(exc)}",
                              "fix the argument(s) named") from None
    trainer = Trainer(config, output_dir, backbone=backbone, data_dir=data_dir, task_data=task_data,
                      prompt_module=prompt_module, progress=progress)
    return TrainResult(trainer.out, cast(RunRecord, trainer.train(resume=resume, overwrite=overwrite)))
