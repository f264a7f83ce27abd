"""The main job on the embedded default model, sized for a few minutes on 2 CPU cores: a new task
with few labelled examples, started from the prompt library that ships with the model.

The target (sst2) gets 16 training examples and is solved three ways, on the same held-out test
examples: with no prompt (the instruction-tuned model as it is), by prompt tuning from a random
origin, and by prompt tuning from the start ``init: auto`` chooses in the shipped library on those 16
examples alone. The library holds a prompt trained on sst2 itself; the demo leaves it out
(``library_exclude``) so that what it shows is transfer to a task the library does not know — what a
user's own task gets.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptvec.backbones import load_backbone
from promptvec.evaluation import evaluate
from promptvec.io import atomic_write_json
from promptvec.library import PromptLibrary
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.training.config import TrainConfig, train_default
from promptvec.training.trainer import Trainer

DEMO_TARGET, DEMO_SHOTS, DEMO_STEPS, DEMO_TEST_EXAMPLES, DEMO_MAX_LENGTH = "sst2", 16, 40, 200, 128


@dataclass
class DemoRow:
    method: str
    score: float
    seconds: float
    note: str = ""


@dataclass
class DemoResult:
    rows: list[DemoRow]
    #: init auto's record (candidates, scores, the start taken, seconds spent choosing)
    auto: dict[str, Any]


def run_demo(out: str | Path = "demo-out", model: str = "default", data_dir: str | None = None,
             target: str = DEMO_TARGET, shots: int = DEMO_SHOTS, steps: int = DEMO_STEPS,
             test_examples: int = DEMO_TEST_EXAMPLES, max_length: int = DEMO_MAX_LENGTH,
             prompt_length: int = train_default("prompt_length"), library: str | Path | None = None,
             progress: bool = True, overwrite: bool = False, log=print) -> DemoResult:
    """Run the demo (finished parts in ``out`` are reused unless ``overwrite``). ``library``: the prompt
    library ``init: auto`` reads (default: the one shipped for ``model``); the target's own entry, if
    it has one, is left out."""
    out = Path(out)
    start = time.perf_counter()
    backbone = load_backbone(model, max_length=max_length)
    log(f"loaded {model} ({backbone.family}, d={backbone.dim}) in {time.perf_counter() - start:.1f}s")
    task = get_task(target)
    data = load_task_data(task, data_dir)
    base = TrainConfig(model=model, task=target, shots=shots, max_steps=steps, eval_every=max(steps // 2, 1),
                       val_examples=100, test_examples=test_examples, max_length=max_length,
                       prompt_length=prompt_length, select_initial=False)
    test = subsample(data.test, test_examples, base.eval_seed)
    metric = task.primary_metric

    def train(name: str, config: TrainConfig) -> dict:
        trainer = Trainer(config, out / name, backbone=backbone, task_data=data, progress=progress)
        return trainer.train(resume=not overwrite, overwrite=overwrite)  # a finished part is not redone

    rows = []
    t0 = time.perf_counter()
    rows.append(DemoRow("no prompt", evaluate(backbone, task, test, None).metrics[metric], time.perf_counter() - t0))
    log(f"{target}, no prompt: {metric} {rows[-1].score:.3f}")

    t0 = time.perf_counter()
    record = train("pt", base)
    rows.append(DemoRow("prompt tuning from a random origin", record["test"]["metrics"][metric],
                        time.perf_counter() - t0))
    log(f"{target}, prompt tuning ({shots} examples, {steps} steps): {metric} {rows[-1].score:.3f}")

    t0 = time.perf_counter()
    held = {entry.task for entry in PromptLibrary.for_backbone(backbone, library).entries}
    exclude = [task.task] if task.task in held else []
    record = train("auto", TrainConfig(**{**base.model_dump(), "init": "auto", "library_exclude": exclude,
                                          "library": None if library is None else str(library)}))
    auto = record["init"]["auto"]
    rows.append(DemoRow(f"prompt tuning from the library's start: {auto['chosen']}",
                        record["test"]["metrics"][metric], time.perf_counter() - t0,
                        f"{task.task}'s own library prompt left out" if exclude else ""))
    log(f"{target}, init auto ({auto['chosen']}): {metric} {rows[-1].score:.3f}")

    atomic_write_json(out / "demo.json", {"model": model, "target": target, "shots": shots, "steps": steps,
                                          "test_examples": test_examples, "metric": metric,
                                          "rows": [asdict(r) for r in rows], "init": record["init"],
                                          "wall_time_s": time.perf_counter() - start})
    return DemoResult(rows, auto)
