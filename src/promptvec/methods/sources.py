"""What transfer methods start from: the target's source prompts at the run's origin — as finished
source runs of the suite, or as stored prompts and vectors (``<suite>/store``, entries
``task@o<origin>``, filled by the runner before any target run) — and the target prompt-tuned
briefly or fully before the method proper (SPoT's early prompt, DTVG's Stage I)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from promptvec.errors import ConfigError
from promptvec.io import read_json
from promptvec.methods.pt import PromptTuning
from promptvec.methods.runs import finished_run_like
from promptvec.peft_folder import PROMPT_DIR, load_prompt
from promptvec.suites.context import RunContext
from promptvec.suites.plan import STORE_DIR, run_dir, source_run, stored_name
from promptvec.training.config import TrainConfig
from promptvec.training.run_folder import STAGES_DIR
from promptvec.training.trainer import Trainer
from promptvec.vectors import Origin


def source_folder(ctx: RunContext, task: str) -> str:
    """The finished source run of ``task`` at this run's origin (the runner trains sources first)."""
    if task == ctx.run.task:
        raise ConfigError(f"'{task}' cannot be a source of itself", "remove the target from its sources")
    folder = run_dir(ctx.suite_out, source_run(ctx.suite, task, ctx.run.origin_seed))
    record = folder / "run.json"
    if not record.is_file() or read_json(record, "run record").get("status") != "completed":
        raise ConfigError(f"source prompt '{task}' (origin {ctx.run.origin}) is not trained yet ({folder})",
                          "run the whole suite: `promptvec experiment run` trains the sources first")
    return str(folder / PROMPT_DIR)


def target_sources(ctx: RunContext) -> list[str]:
    return list(ctx.suite.sources.targets[ctx.run.task])


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
                         on_step=ctx.on_step, data_parallel=ctx.data_parallel).train(resume=True)
    else:
        record = read_json(reused / "run.json", "run record")
    cost = {"steps": config.max_steps, "selected": "validation" if steps is None else "last step",
            "best_step": record["best"]["step"], "validation": record["best"]["validation"],
            "wall_time_s": record["wall_time_s"],
            "reused_from": str(reused.relative_to(ctx.suite_out)) if reused is not None else None}
    return load_prompt(folder_path / PROMPT_DIR, ctx.backbone).prompt, cost
