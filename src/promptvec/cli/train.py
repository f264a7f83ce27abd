"""``promptvec train``, ``transfer`` and ``demo``: commands that train prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from promptvec.cli.common import (
    DataDir,
    LibraryDir,
    Model,
    app,
    auto_choice_table,
    comma_list,
    console,
    friendly,
    out_console,
    print_outcome,
    show_notes,
)
from promptvec.errors import ConfigError
from promptvec.training.config import train_default


@app.command("train")
@friendly
def train_command(
    task: Annotated[str, typer.Option("--task", help="built-in task name or task YAML path")],
    out: Annotated[Path, typer.Option("--out", help="run folder (prompt/, run.json, checkpoint/)")],
    model: Model = "default",
    also: Annotated[list[str] | None, typer.Option(
        "--also", help="train one prompt jointly on further tasks (multi-task prompt; repeatable)")] = None,
    preset: Annotated[str, typer.Option(help="cpu-small (default) or paper-t5")] = "cpu-small",
    shots: Annotated[int | None, typer.Option(help="few-shot training set size (total)")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="optimizer steps")] = None,
    prompt_length: Annotated[int | None, typer.Option(help="virtual tokens R")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="gradient accumulation steps")] = None,
    origin_seed: Annotated[int | None, typer.Option(help="which random origin")] = None,
    data_seed: Annotated[int | None, typer.Option(help="few-shot sample and data order")] = None,
    train_seed: Annotated[int | None, typer.Option(help="dropout and other training randomness")] = None,
    precision: Annotated[str | None, typer.Option(
        help="fp32, bf16 (autocast) or auto (bf16 on a GPU that supports it)")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the frozen model (GPU, long runs)")
                             ] = False,
    log_every: Annotated[int | None, typer.Option(help="steps between reading losses from the device")] = None,
    eval_every: Annotated[int | None, typer.Option(help="evaluate on validation every N steps")] = None,
    val_examples: Annotated[int | None, typer.Option(help="validation subsample size")] = None,
    test_examples: Annotated[int | None, typer.Option(
        help=f"test subsample size (default {train_default('test_examples')})")] = None,
    full_test: Annotated[bool, typer.Option("--full-test", help="evaluate on the whole test split")] = False,
    early_stopping: Annotated[int | None, typer.Option(help="stop after N evaluations without improvement")] = None,
    select_initial: Annotated[bool, typer.Option(
        "--select-initial/--no-select-initial",
        help="may keep the untrained initial prompt if no trained checkpoint beats it on validation (off for "
             "task-vector sources, whose vector would be zero)")] = True,
    init_prompt: Annotated[str | None, typer.Option(help="start from this prompt (PEFT folder or Hub id)")] = None,
    init: Annotated[str, typer.Option(
        "--init", help="origin (a random origin), or auto: the prompt library's start that fits the training "
        "examples best, chosen on them alone (falls back to the origin, and says so)")] = "origin",
    library: Annotated[str | None, typer.Option(
        "--library", help="prompt library for --init auto (default: the one shipped for the model)")] = None,
    library_exclude: Annotated[str | None, typer.Option(
        "--library-exclude", help="library tasks --init auto leaves out, comma-separated (e.g. the target's own "
        "prompt, to see transfer to a task the library holds)")] = None,
    max_length: Annotated[int | None, typer.Option(help="max tokens of prompt + input + label")] = None,
    family: Annotated[str | None, typer.Option(help="backbone family, e.g. causal (default: detected from the "
                                               "model's config; a wrong name lists the families)")] = None,
    chat_template: Annotated[bool, typer.Option("--chat-template", help="wrap inputs in the model's chat template")
                             ] = False,
    report_to: Annotated[list[str] | None, typer.Option(help="tracker: tensorboard or wandb (repeatable)")] = None,
    eval_mode: Annotated[str | None, typer.Option(help="rank (default) or generate")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace whatever --out holds")] = False,
    data_dir: DataDir = None,
) -> None:
    """Prompt-tune a frozen model on one task."""
    from promptvec.display import status_line
    from promptvec.hub import check_prompt_reference
    from promptvec.tasks import get_task
    from promptvec.training.config import TrainConfig

    config = TrainConfig.from_preset(
        preset, model=model, task=task, shots=shots, max_steps=steps, prompt_length=prompt_length, lr=lr,
        batch_size=batch_size, grad_accum=grad_accum, origin_seed=origin_seed, data_seed=data_seed,
        train_seed=train_seed, precision=precision, eval_every=eval_every, val_examples=val_examples,
        test_examples=test_examples, early_stopping_patience=early_stopping, init_prompt=init_prompt, init=init,
        library=library, library_exclude=comma_list(library_exclude) or None,
        max_length=max_length, family=family, eval_mode=eval_mode, chat_template=chat_template or None,
        report_to=report_to or None, extra_tasks=also or None, select_initial=None if select_initial else False,
        compile=compile_model or None, log_every=log_every)
    if full_test:
        config.test_examples = None
    for name in (config.task, *config.extra_tasks):  # mistakes are reported before the model loads
        get_task(name)
    if config.init_prompt:
        check_prompt_reference(config.init_prompt)
    from promptvec.training.trainer import Trainer

    with status_line(True, f"loading model '{model}' and task '{task}'"):
        trainer = Trainer(config, out, data_dir=data_dir)
    show_notes(trainer.tasks)
    if trainer.init_info is not None and trainer.init_info["init"] == "auto":
        out_console.print(auto_choice_table(trainer.init_info["auto"]))
    record = trainer.train(resume=resume, overwrite=overwrite)
    for warning in record.get("warnings", []):
        console.print(f"warning: {warning['message']}", style="yellow", markup=False, highlight=False)
    print_outcome(record)
    out_console.print(f"prompt saved to {out / 'prompt'} (a PEFT adapter folder); record: {out / 'run.json'}")


@app.command("transfer")
@friendly
def transfer_command(
    method: Annotated[str, typer.Option("--method", help="a method name (`promptvec methods` lists them)")],
    target: Annotated[str, typer.Option("--target", help="the task to learn (built-in name or task YAML)")],
    out: Annotated[Path, typer.Option("--out", help="folder: sources, store, the run (reused and resumed)")],
    sources: Annotated[list[str] | None, typer.Option(
        "--sources", help="source tasks, comma-separated or repeated (never the target)")] = None,
    model: Model = "default",
    shots: Annotated[int | None, typer.Option(help="target training examples (default: all)")] = None,
    seed: Annotated[int, typer.Option(help="data and training seed of the target")] = 0,
    origin: Annotated[int, typer.Option(help="origin seed shared by the sources and the target")] = 0,
    steps: Annotated[int, typer.Option(help="target training steps")] = train_default("max_steps"),
    batch_size: Annotated[int, typer.Option(help="examples per step")] = train_default("batch_size"),
    source_steps: Annotated[int | None, typer.Option(help="training steps of each source (default --steps)")] = None,
    source_shots: Annotated[int | None, typer.Option(help="training examples per source (default all)")] = None,
    setting: Annotated[list[str] | None, typer.Option(
        "--set", help="method setting KEY=VALUE (YAML value; repeatable), e.g. --set grouping=all-positive")] = None,
    max_length: Annotated[int, typer.Option(help="max tokens of prompt + input + label")] = train_default("max_length"),
    eval_every: Annotated[int, typer.Option(help="evaluate on validation every N steps")] = train_default("eval_every"),
    val_examples: Annotated[int, typer.Option(help="validation subsample size")] = train_default("val_examples"),
    test_examples: Annotated[int, typer.Option(help="test subsample size")] = train_default("test_examples"),
    data_dir: DataDir = None,
) -> None:
    """Learn a target task by transfer from source tasks (the sources are trained first, from the same
    origin, and kept in OUT/store); writes the same run record as `promptvec train`."""
    import yaml

    from promptvec.experiments.transfer import transfer

    settings = {}
    for item in setting or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'", "e.g. --set grouping=all-positive")
        settings[key.strip()] = yaml.safe_load(value)
    names = [name for item in sources or [] for name in comma_list(item)]
    result = transfer(method, names, target, out, shots=shots, seed=seed, origin=origin, model=model,
                      max_length=max_length, steps=steps, batch_size=batch_size, source_steps=source_steps,
                      source_shots=source_shots, settings=settings, eval_every=eval_every, val_examples=val_examples,
                      test_examples=test_examples, data_dir=data_dir,
                      log=lambda m: console.print(m, highlight=False))
    record, folder = result.record, result.folder
    print_outcome(record)
    saved = [f"{folder / name}" for name in ("prompt", "module") if (folder / name).is_dir()]
    out_console.print(f"record: {folder / 'run.json'}" + (f"; saved: {', '.join(saved)}" if saved else ""))


@app.command("demo")
@friendly
def demo_command(
    out: Annotated[Path, typer.Option(help="where prompts and demo.json go")] = Path("demo-out"),
    model: Model = "default",
    library: LibraryDir = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="retrain even if --out holds the demo's runs")] = False,
    data_dir: DataDir = None,
) -> None:
    """A new task with 16 examples (sst2): no prompt, prompt tuning, and prompt tuning from the start that
    --init auto chooses in the shipped prompt library (sst2's own prompt left out)."""
    from promptvec.demo import DEMO_SHOTS, DEMO_STEPS, DEMO_TARGET, DEMO_TEST_EXAMPLES, run_demo

    result = run_demo(out=out, model=model, data_dir=data_dir, library=library, overwrite=overwrite,
                      log=lambda m: console.print(m))
    out_console.print(auto_choice_table(result.auto))
    table = Table(title=f"promptvec demo: {DEMO_TARGET} with {DEMO_SHOTS} training examples, {DEMO_STEPS} steps, "
                        f"{DEMO_TEST_EXAMPLES} test examples ({model})")
    for column, justify in (("method", "left"), ("score", "right"), ("vs no prompt", "right"), ("seconds", "right"),
                            ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    rows = result.rows
    for r in rows:
        table.add_row(r.method, f"{r.score:.3f}", f"{r.score - rows[0].score:+.3f}", f"{r.seconds:.0f}", r.note)
    out_console.print(table)
    out_console.print("One seed is one draw: docs/results/library compares them on 12 tasks × 5 seeds each.")
