"""The main job on the embedded default, at a size that fits 10 minutes on 2 CPU cores:
train a prompt per task from a random origin and compare it on held-out test examples with no
prompt and with the untrained origin it started from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from promptvec.backbones import load_backbone
from promptvec.evaluation import evaluate
from promptvec.io import atomic_write_json
from promptvec.peft_folder import PROMPT_DIR, load_prompt
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer
from promptvec.vectors import Origin

DEMO_TASKS = ("sst2", "trec")
DEMO_STEPS, DEMO_SHOTS, DEMO_TEST_EXAMPLES = 60, 200, 200


@dataclass
class DemoRow:
    task: str
    metric: str
    no_prompt: float
    origin: float
    trained: float
    seconds: float


def run_demo(out: str | Path = "demo-out", model: str = "default", data_dir: str | None = None,
             tasks: tuple[str, ...] = DEMO_TASKS, steps: int = DEMO_STEPS, shots: int = DEMO_SHOTS,
             test_examples: int = DEMO_TEST_EXAMPLES,
             progress: bool = True, overwrite: bool = False, log=print) -> list[DemoRow]:
    out = Path(out)
    start = time.perf_counter()
    backbone = load_backbone(model)
    log(f"loaded {model} ({backbone.family}, d={backbone.dim}) in {time.perf_counter() - start:.1f}s")
    rows = []
    for name in tasks:
        t0 = time.perf_counter()
        task = get_task(name)
        data = load_task_data(task, data_dir)
        config = TrainConfig(model=model, task=name, shots=shots, max_steps=steps, eval_every=max(steps // 2, 1),
                             val_examples=64, test_examples=test_examples)
        trainer = Trainer(config, out / name, backbone=backbone, task_data=data, progress=progress)
        record = trainer.train(resume=not overwrite, overwrite=overwrite)  # a finished task is not redone
        test = subsample(data.test, test_examples, config.eval_seed)
        origin = Origin.sample(backbone, config.prompt_length, config.origin_seed).tensor(backbone)
        metric = task.primary_metric
        rows.append(DemoRow(
            task=name, metric=metric,
            no_prompt=evaluate(backbone, task, test, None).metrics[metric],
            origin=evaluate(backbone, task, test, origin).metrics[metric],
            trained=record["test"]["metrics"][metric],
            seconds=time.perf_counter() - t0,
        ))
        load_prompt(out / name / PROMPT_DIR, backbone)  # the saved prompt reloads and fits the backbone
        log(f"{name}: trained {rows[-1].trained:.3f} vs origin {rows[-1].origin:.3f} ({rows[-1].seconds:.0f}s)")
    atomic_write_json(out / "demo.json", {"model": model, "steps": steps, "shots": shots,
                                          "test_examples": test_examples, "rows": [r.__dict__ for r in rows],
                                          "wall_time_s": time.perf_counter() - start})
    return rows
