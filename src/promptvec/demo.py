"""The main job on the embedded default model, sized for about 5 minutes on 2 CPU cores: transfer to
a new task with few examples, in the setting where the SmolLM2 transfer study
(docs/results/transfer) found it helps most.

The target (sst2) gets 16 training examples and is solved three ways, on the same held-out test
examples: with no prompt (the instruction-tuned model as it is), by prompt tuning from a random
origin, and by prompt tuning from that origin plus the task prompt vectors of two source tasks
(imdb sentiment and agnews topics: ``tpv-init``). Source prompts are the expensive part — the study
trained each once on 1,000 examples — so the demo takes them from a source library (the study's,
committed in the repository) and trains them now, on fewer examples, only when none is there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from promptvec.backbones import Backbone, load_backbone
from promptvec.errors import PromptvecError
from promptvec.evaluation import evaluate
from promptvec.io import atomic_write_json
from promptvec.peft_folder import PROMPT_DIR, check_compatible, load_prompt
from promptvec.prompts import StaticPrompt
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer
from promptvec.vectors import Origin, TaskPromptVector

DEMO_TARGET, DEMO_SOURCES = "sst2", ("imdb", "agnews")
DEMO_SHOTS, DEMO_STEPS, DEMO_TEST_EXAMPLES, DEMO_MAX_LENGTH = 16, 40, 200, 128
#: the library the transfer study committed (relative to the repository root, where `make demo` runs)
STUDY_LIBRARY = Path("docs/results/transfer/source-library")
#: a source trained by the demo itself when no library holds one: fewer examples than the study's 1,000
FALLBACK_SOURCE_SHOTS, FALLBACK_SOURCE_STEPS = 200, 60


@dataclass
class DemoRow:
    method: str
    score: float
    seconds: float
    note: str = ""


def library_prompt(library: Path | None, task: str, backbone: Backbone) -> Path | None:
    """A finished source prompt of ``task`` in a source library (``<library>/<task>/<id>/run/prompt``)
    that belongs to this model, or None."""
    if library is None or not (library / task).is_dir():
        return None
    for folder in sorted((library / task).glob(f"*/run/{PROMPT_DIR}")):
        try:
            checkpoint = load_prompt(folder, backbone)
            check_compatible(checkpoint.prompt, checkpoint.metadata, backbone, str(folder))
        except PromptvecError:
            continue  # another model's source, or an unreadable entry: not this demo's
        return folder
    return None


def run_demo(out: str | Path = "demo-out", model: str = "default", data_dir: str | None = None,
             target: str = DEMO_TARGET, sources: tuple[str, ...] = DEMO_SOURCES, shots: int = DEMO_SHOTS,
             steps: int = DEMO_STEPS, test_examples: int = DEMO_TEST_EXAMPLES, max_length: int = DEMO_MAX_LENGTH,
             library: Path | None = STUDY_LIBRARY, progress: bool = True, overwrite: bool = False,
             log=print) -> list[DemoRow]:
    """Run the demo (finished parts in ``out`` are reused unless ``overwrite``); one row per method."""
    out = Path(out)
    start = time.perf_counter()
    backbone = load_backbone(model, max_length=max_length)
    log(f"loaded {model} ({backbone.family}, d={backbone.dim}) in {time.perf_counter() - start:.1f}s")
    task = get_task(target)
    data = load_task_data(task, data_dir)
    base = TrainConfig(model=model, task=target, shots=shots, max_steps=steps, eval_every=max(steps // 2, 1),
                       val_examples=100, test_examples=test_examples, max_length=max_length, select_initial=False)
    test = subsample(data.test, test_examples, base.eval_seed)
    metric = task.primary_metric

    def train(name: str, config: TrainConfig, init=None, task_data=None) -> dict:
        module = StaticPrompt(init) if init is not None else None
        trainer = Trainer(config, out / name, backbone=backbone, task_data=task_data, prompt_module=module,
                          progress=progress)
        return trainer.train(resume=not overwrite, overwrite=overwrite)  # a finished part is not redone

    rows = []
    t0 = time.perf_counter()
    rows.append(DemoRow("no prompt", evaluate(backbone, task, test, None).metrics[metric], time.perf_counter() - t0))
    log(f"{target}, no prompt: {metric} {rows[-1].score:.3f}")

    t0 = time.perf_counter()
    record = train("pt", base, task_data=data)
    rows.append(DemoRow("prompt tuning from a random origin", record["test"]["metrics"][metric],
                        time.perf_counter() - t0))
    log(f"{target}, prompt tuning ({shots} examples, {steps} steps): {metric} {rows[-1].score:.3f}")

    vectors, notes = [], []
    for source in sources:
        t0 = time.perf_counter()
        name = get_task(source).task
        folder = library_prompt(library, name, backbone)
        if folder is None:
            source_data = load_task_data(get_task(source), data_dir)
            source_shots = min(FALLBACK_SOURCE_SHOTS, len(source_data.train))
            config = TrainConfig(model=model, task=source, shots=source_shots, max_steps=FALLBACK_SOURCE_STEPS,
                                 eval_every=FALLBACK_SOURCE_STEPS // 2, val_examples=100, test_examples=100,
                                 max_length=max_length, select_initial=False)
            train(f"source-{name}", config, task_data=source_data)
            folder = out / f"source-{name}" / PROMPT_DIR
            notes.append(f"{name}: trained now ({source_shots} examples, {FALLBACK_SOURCE_STEPS} steps)")
        else:
            notes.append(f"{name}: from the library ({folder.parent.parent})")
        vectors.append(TaskPromptVector.from_checkpoint(folder, backbone))
        log(f"source {notes[-1]}, ‖τ‖ {vectors[-1].norm():.2f} ({time.perf_counter() - t0:.0f}s)")

    t0 = time.perf_counter()
    origin = Origin.sample(backbone, base.prompt_length, base.origin_seed)
    start_prompt = sum(vectors[1:], vectors[0]).apply_to(origin, 1.0, backbone)  # θ0 + Σ τ
    record = train("tpv-init", base, init=start_prompt, task_data=data)
    names = " + ".join(get_task(source).task for source in sources)
    rows.append(DemoRow(f"prompt tuning from origin + τ({names})", record["test"]["metrics"][metric],
                        time.perf_counter() - t0, "; ".join(notes)))
    log(f"{target}, from the source vectors: {metric} {rows[-1].score:.3f}")

    atomic_write_json(out / "demo.json", {"model": model, "target": target, "sources": list(sources), "shots": shots,
                                          "steps": steps, "test_examples": test_examples, "metric": metric,
                                          "rows": [asdict(r) for r in rows],
                                          "wall_time_s": time.perf_counter() - start})
    return rows
