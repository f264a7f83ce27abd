"""The ``promptvec`` command: a thin layer over the library; every command is one library call."""

from __future__ import annotations

import json
import sys
from functools import wraps
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from promptvec.errors import ConfigError, PromptvecError
from promptvec.training.config import train_default

# plain (click) help: flags shown as flags, and it fits an 80-column terminal
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Soft-prompt tuning and transfer on frozen language models.")
console = Console(stderr=True)
out_console = Console()

DataDir = Annotated[str | None, typer.Option("--data-dir", help="folder with <task>/{train,validation,test}.jsonl "
                                             "(default: $PROMPTVEC_DATA_DIR, else the Hugging Face Hub)")]
Model = Annotated[str, typer.Option("--model", help="'default' (embedded SmolLM2-135M), 'minilm', a Hub id or a "
                                    "local folder")]
LibraryDir = Annotated[Path | None, typer.Option("--library", help="a library folder or a store (default: the "
                                                 "library shipped for --model)")]


def metrics_table(title: str, columns: dict[str, dict[str, float] | None]) -> Table:
    """Metrics (rows) of one or more evaluations (columns), 3 decimals: what a person reads at the end."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    names: list[str] = []
    for values in columns.values():
        names += [n for n in values or {} if n not in names]
    for header in columns:
        table.add_column(header, justify="right")
    for name in names:
        table.add_row(name, *["–" if (v := (values or {}).get(name)) is None else f"{v:.3f}"
                              for values in columns.values()])
    return table


def show_notes(tasks) -> None:
    """How a task file was read (an lm-eval file's unused keys, scoring details): said once, on stderr."""
    for spec in tasks:
        for note in spec.notes:
            console.print(f"note ({spec.task}): {note}", style="yellow", markup=False, highlight=False)


def friendly(fn):
    """Turn PromptvecError into one readable message and exit code 2 (no traceback)."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PromptvecError as exc:
            console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
            if exc.hint:
                console.print(f"  [bold]fix:[/] {exc.hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            again = ("run the same command with --resume to continue from the last step" if fn.__name__ ==
                     "train_command" else "run the same command again to continue (finished runs are kept, "
                     "interrupted ones resume at their last step)")
            console.print(f"interrupted; {again}", highlight=False)
            raise typer.Exit(130) from None
    return wrapper


def _version(value: bool) -> None:
    if value:
        out_console.print(f"promptvec {metadata.version('promptvec')}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and exit")] = False) -> None:
    """promptvec: train, evaluate and transfer soft prompts."""


@app.command("tasks")
@friendly
def tasks_command(data_dir: DataDir = None) -> None:
    """List the built-in tasks (with split sizes where local data is present)."""
    from promptvec.tasks import builtin_task_names, get_task, load_task_data
    from promptvec.tasks.loading import resolve_data_dir

    folder = resolve_data_dir(data_dir)
    table = Table(title="built-in tasks")
    for column in ("task", "group", "labels", "metric", "train / val / test", "source"):
        table.add_column(column)
    for name in builtin_task_names():
        spec = get_task(name)
        sizes, source = "-", f"hub:{spec.dataset_path}"
        if folder is not None and (folder / name).is_dir():
            data = load_task_data(spec, folder)
            sizes, source = f"{len(data.train)} / {len(data.validation)} / {len(data.test)}", "local"
        labels = ("free text" if spec.generates else ", ".join(spec.label_names) if len(spec.label_names) <= 6
                  else f"{len(spec.label_names)} labels")
        table.add_row(name, spec.group, labels, spec.primary_metric, sizes, source)
    out_console.print(table)


def _eval_mode(mode: str) -> Literal["rank", "generate"]:
    """``--mode`` checked here, so a typo gets one message instead of a failure deep in evaluation."""
    if mode not in ("rank", "generate"):
        raise ConfigError(f"unknown --mode '{mode}'", "use rank (score each label) or generate (free text)")
    return "rank" if mode == "rank" else "generate"


@app.command("methods")
@friendly
def methods_command() -> None:
    """List the methods a suite or `promptvec transfer` can use (read from the method registry)."""
    from promptvec.methods import METHODS

    table = Table(title="methods")
    for column in ("method", "what it does", "uses sources"):
        table.add_column(column)
    for name in METHODS.names():
        method = METHODS[name]
        summary = " ".join((method.__doc__ or "").strip().split("\n\n")[0].split())
        table.add_row(name, summary, "yes" if method.needs_sources else "no")
    out_console.print(table)


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
    init_prompt: Annotated[str | None, typer.Option(help="start from this prompt (PEFT folder)")] = None,
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
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import Trainer

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
    with status_line(True, f"loading model '{model}' and task '{task}'"):
        trainer = Trainer(config, out, data_dir=data_dir)
    show_notes(trainer.tasks)
    if trainer.init_info is not None:
        out_console.print(auto_choice_table(trainer.init_info["auto"]))
    record = trainer.train(resume=resume, overwrite=overwrite)
    for warning in record.get("warnings", []):
        console.print(f"warning: {warning['message']}", style="yellow", markup=False, highlight=False)
    _print_outcome(record)
    out_console.print(f"prompt saved to {out / 'prompt'} (a PEFT adapter folder); record: {out / 'run.json'}")


def comma_list(text: str | None) -> list[str]:
    """The names of a comma-separated option ("a, b,c" -> [a, b, c]; empty or missing -> [])."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def auto_choice_table(auto: dict, shown: int = 5) -> Table:
    """init auto's choice in one short table: the best candidates, no prompt and the origin, the start taken."""
    candidates = auto["candidates"]
    keep = [c for i, c in enumerate(candidates) if i < shown or c["kind"] in ("baseline", "origin") or c["chosen"]]
    title = (f"init auto: {auto['chosen']}" + (" (no library prompt beat no prompt and the origin on the training "
             "examples: plain prompt tuning)" if auto["fell_back"] else "")
             + f" — {len(candidates)} candidates scored in {auto['seconds']:.1f} s")
    table = Table(title=title, title_justify="left")
    score_columns = [k for k in ("loss", "accuracy") if any(k in c for c in candidates)]
    for column in ("candidate", "kind", *score_columns, ""):
        table.add_column(column, justify="right" if column in score_columns else "left")
    for c in keep:
        table.add_row(c["name"], c["kind"], *[f"{c[k]:.4f}" if k in c else "–" for k in score_columns],
                      "← start" if c["chosen"] else "")
    return table


def _print_outcome(record: dict) -> None:
    """The selected prompt's validation and test metrics as one table."""
    best, test = record.get("best") or {}, record["test"]
    title = f"{record.get('task', '')}: " + (f"best prompt at step {best['step']}" if best else "final prompt")
    out_console.print(metrics_table(title, {"validation": best.get("validation"),
                                            f"test ({test['n']} examples)": test["metrics"]}))


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
    _print_outcome(record)
    saved = [f"{folder / name}" for name in ("prompt", "module") if (folder / name).is_dir()]
    out_console.print(f"record: {folder / 'run.json'}" + (f"; saved: {', '.join(saved)}" if saved else ""))


@app.command("eval")
@friendly
def eval_command(
    task: Annotated[str, typer.Option("--task", help="built-in task name or task YAML path")],
    prompt: Annotated[str | None, typer.Option(help="prompt (PEFT folder or run folder); omit for no prompt")]
    = None,
    origin_seed: Annotated[int | None, typer.Option(help="evaluate the untrained origin with this seed")] = None,
    prompt_length: Annotated[int, typer.Option(help="origin rows (with --origin-seed)")] = train_default(
        "prompt_length"),
    model: Model = "default",
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    examples: Annotated[int | None, typer.Option(min=1, help="seeded subsample size")] = train_default(
        "test_examples"),
    full: Annotated[bool, typer.Option("--full", help="use the whole split")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="the first N rows of the split, in file order (as "
                                              "lm-eval's --limit)")] = None,
    rows: Annotated[str | None, typer.Option(help="these rows of the split, counted from 0, e.g. 0,5,10-19")] = None,
    log_samples: Annotated[Path | None, typer.Option(help="write one JSON line per example: row, input, gold, "
                                                     "prediction, label scores or generated text")] = None,
    mode: Annotated[str, typer.Option(help="rank or generate (label tasks; free-text tasks always generate)")] = "rank",
    length_normalize: Annotated[bool, typer.Option("--length-normalize", help="rank by mean token log-likelihood")
                                ] = False,
    seed: Annotated[int, typer.Option(help="subsample seed")] = train_default("eval_seed"),
    output: Annotated[Path | None, typer.Option("--output", help="write the result as JSON here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON instead of a table")] = False,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a prompt, an untrained origin, or no prompt on a task split."""
    from promptvec.backbones import load_backbone
    from promptvec.display import status_line
    from promptvec.evaluation import evaluate
    from promptvec.evaluation.samples import sample_records, select_rows, write_samples
    from promptvec.io import atomic_write_json
    from promptvec.peft_folder import check_compatible, load_prompt
    from promptvec.tasks import get_task, load_task_data
    from promptvec.vectors import Origin

    eval_mode = _eval_mode(mode)
    if prompt and origin_seed is not None:
        raise ConfigError("give either --prompt or --origin-seed, not both", "drop one of them")
    if rows is not None and limit is not None:
        raise ConfigError("give either --rows or --limit, not both", "drop one of them")
    spec = get_task(task)
    show_notes([spec])
    checkpoint = load_prompt(prompt) if prompt else None
    if checkpoint is not None and model == "default":
        model = checkpoint.metadata.get("model", model)
    with status_line(not as_json, f"loading model '{model}' and task '{spec.task}'"):
        backbone = load_backbone(model)
        data = load_task_data(spec, data_dir)
    whole = data.split(split)
    indices = select_rows(len(whole), rows=rows, limit=limit, sample=None if full else examples, seed=seed)
    selected = [whole[i] for i in indices]
    tensor = None
    if checkpoint is not None:
        check_compatible(checkpoint.prompt, checkpoint.metadata, backbone, str(prompt))
        tensor = checkpoint.prompt
    elif origin_seed is not None:
        tensor = Origin.sample(backbone, prompt_length, origin_seed).tensor(backbone)
    with status_line(not as_json, f"evaluating on {len(selected)} {split} examples"):
        result = evaluate(backbone, spec, selected, tensor, mode=eval_mode, length_normalize=length_normalize)
    if log_samples:
        write_samples(log_samples, sample_records(spec, selected, indices, result))
    summary = {"task": spec.task, "split": split, "prompt": prompt, "origin_seed": origin_seed, "model": model,
               "mode": "generate" if spec.generates else mode, **result.summary()}
    summary.update({k: v for k, v in (("rows", rows), ("limit", limit), ("log_samples", log_samples and str(
        log_samples))) if v is not None})
    if output:
        atomic_write_json(output, summary)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    what = f"prompt {prompt}" if prompt else (f"origin {origin_seed}" if origin_seed is not None else "no prompt")
    out_console.print(metrics_table(f"{spec.task}, {what} ({model}, {summary['mode']})",
                                    {f"{split} ({result.n} examples)": result.metrics}))
    if result.invalid:
        out_console.print(f"{result.invalid} generated answers matched no label (counted wrong)")


@app.command("predict")
@friendly
def predict_command(
    prompt: Annotated[str, typer.Option(help="prompt (PEFT folder or run folder)")],
    text: Annotated[list[str] | None, typer.Argument(help="input text(s); JSON objects for multi-field tasks")]
    = None,
    task: Annotated[str | None, typer.Option(help="task (default: the one the prompt was trained on)")] = None,
    input: Annotated[Path | None, typer.Option("--input", help=".jsonl, .csv/.tsv or a text file, one input "
                                               "per line")] = None,
    model: Annotated[str | None, typer.Option(help="backbone (default: the prompt's)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="inputs per forward pass")] = 32,
    mode: Annotated[str, typer.Option(help="rank or generate (label tasks; free-text tasks always generate)")] = "rank",
) -> None:
    """Label new text (or generate the answer of a free-text task) with a trained prompt: one JSON line per input."""
    from promptvec.errors import DataError
    from promptvec.inference import Predictor, read_inputs

    items: list = []
    if input is not None:
        items.extend(read_inputs(input))
    for number, t in enumerate(text or [], 1):
        stripped = t.strip()
        if not stripped.startswith("{"):
            items.append(t)
            continue
        try:
            items.append(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise DataError(f"input {number} starts with '{{' but is not a JSON object ({exc.msg} at character "
                            f"{exc.pos + 1})", "give a JSON object with the task's fields, e.g. '{\"premise\": "
                            "\"...\", \"hypothesis\": \"...\"}' — or plain text not starting with '{' (a text file "
                            "with --input reads each line as text)") from None
    if not items:
        raise DataError("nothing to predict", "pass TEXT arguments or --input FILE")
    from promptvec.display import status_line

    with status_line(True, f"loading the prompt {prompt} and its model"):
        predictor = Predictor(prompt, task=task, model=model, mode=_eval_mode(mode), batch_size=batch_size)
    for item, pred in zip(items, predictor.predict(items), strict=True):
        line = ({"input": item, "answer": pred.label} if predictor.task.generates
                else {"input": item, "label": pred.label, "scores": pred.scores})
        sys.stdout.write(json.dumps(line) + "\n")


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


@app.command("lm-eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
@friendly
def lm_eval_command(ctx: typer.Context) -> None:
    """lm-evaluation-harness with the `promptvec` model type registered: the same arguments as `lm_eval`, e.g.
    `promptvec lm-eval --model promptvec --model_args prompt=runs/sst2 --tasks sst2` (needs the `lm-eval` extra)."""
    try:
        from promptvec.lm_eval_model import run_cli
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("lm_eval"):
            raise
        raise ConfigError("lm-evaluation-harness is not installed",
                          "pip install 'promptvec[lm-eval]' (or pip install lm-eval)") from None
    run_cli(list(ctx.args))


experiment_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Run experiment suites (methods x tasks x shots x seeds).")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
@friendly
def experiment_run_command(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE.yaml", help="the suite definition")],
    out: Annotated[Path | None, typer.Option("--out", help="suite folder (default runs/<suite name>)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate, list runs, estimate cost; load nothing")
                       ] = False,
    jobs: Annotated[int, typer.Option(min=0, help="parallel worker processes (one GPU each when GPUs exist); "
                                      "0 = one per GPU")] = 1,
    max_minutes: Annotated[float | None, typer.Option(help="stop cleanly (resumable) after this budget")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run a suite; completed runs are skipped and interrupted ones resume at their last step."""
    from promptvec.experiments.runner import analysis_status, estimate_seconds, format_duration, run_suite, status_of
    from promptvec.suites.plan import expand
    from promptvec.suites.schema import load_suite

    suite = load_suite(suite_path)
    out = out or Path("runs") / suite.name
    if dry_run:
        from promptvec.io import check_output_path

        check_output_path(out, folder=True)  # a dry run says what the real run would say about --out
        statuses = [status_of(suite, out, run) for run in expand(suite)]
        table = Table(title=f"suite '{suite.name}' ({suite.backbone.model})")
        for column in ("run", "method", "steps", "state"):
            table.add_column(column)
        for st in statuses:
            state = st.state if st.state != "partial" else f"partial (step {st.step}/{st.total_steps})"
            table.add_row(st.run.run_id, st.run.method, str(st.total_steps), state)
        for analysis, settings, missing in analysis_status(suite, out):
            items = analysis.items(settings, suite)
            state = "done" if not missing else f"todo ({len(items) - len(missing)}/{len(items)} done)"
            table.add_row(f"analysis: {analysis.name}", "(after the sources)", "–", state)
        out_console.print(table)
        done = sum(st.state == "done" for st in statuses)
        out_console.print(f"{len(statuses)} runs, {done} done; estimated CPU time for the rest: "
                          f"{format_duration(estimate_seconds(suite, statuses, out, data_dir))}")
        return
    outcome = run_suite(suite, out, jobs=jobs, max_minutes=max_minutes, data_dir=data_dir,
                        log=lambda m: console.print(m, highlight=False, markup=False))
    if outcome.main:
            out_console.print(f"{outcome.completed} runs completed in {format_duration(outcome.wall_time_s)}; "
                          f"results in {out / 'results.csv'}"
                          + (" (stopped by the time budget)" if outcome.stopped else ""))


store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="The local store of prompts and task prompt vectors.")
vector_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Task prompt vectors: create, combine, apply, compare.")
app.add_typer(store_app, name="store")
app.add_typer(vector_app, name="vector")
Top = Annotated[int, typer.Option(min=1, help="how many")]
Measure = Annotated[str, typer.Option(help="cosine, cosine-flat or dtvg")]
StoreDir = Annotated[Path | None, typer.Option("--store", help="store folder (default $PROMPTVEC_STORE or "
                                               "~/.cache/promptvec/store)")]


def _store(path: Path | None, write: bool = True):
    """The store at ``path``; commands that only read open an existing store read-only (nothing
    written: it may be on a read-only disk, or a library shipped inside the package)."""
    from promptvec.store import VectorStore
    from promptvec.store.store import default_store_path

    if not write and ((path or default_store_path()) / "index.sqlite").is_file():
        return VectorStore(path or default_store_path(), read_only=True)
    return VectorStore(path)


def _entry_row(e) -> list[str]:
    return [e.short_id, e.kind, e.name or "", e.task or "", e.model or "", f"[{e.rows}, {e.dim}]",
            "" if e.origin_seed is None else str(e.origin_seed)]


def _print_entries(entries, title: str, extra: list[tuple[str, list[str]]] | None = None) -> None:
    table = Table(title=title)
    for column in ("id", "kind", "name", "task", "model", "shape", "origin"):
        table.add_column(column)
    for header, _ in extra or []:
        table.add_column(header, justify="right")
    for i, e in enumerate(entries):
        table.add_row(*_entry_row(e), *[values[i] for _, values in extra or []])
    out_console.print(table)


def _vector_from(ref: str, store_path: Path | None, backbone=None):
    """A vector from a file, a store entry, or a prompt/run folder (with its recorded origin)."""
    from promptvec.vectors import TaskPromptVector

    path = Path(ref)
    if path.is_file():
        return TaskPromptVector.load(path, backbone)
    if path.is_dir():
        if backbone is None:
            raise _config_error("making a vector from a prompt folder needs its backbone", "pass --model")
        return TaskPromptVector.from_checkpoint(path, backbone)
    return _store(store_path).load_vector(ref)


def _config_error(message: str, hint: str):
    from promptvec.errors import ConfigError

    return ConfigError(message, hint)


@store_app.command("add")
@friendly
def store_add(
    path: Annotated[Path, typer.Argument(help="a vector file, or a prompt/run folder")],
    name: Annotated[str | None, typer.Option(help="a name to find it by")] = None,
    vector: Annotated[bool, typer.Option("--vector", help="store the prompt's task vector (prompt - origin)")]
    = False,
    model: Annotated[str | None, typer.Option(help="backbone (for --vector, or a PEFT folder without metadata)")]
    = None,
    store: StoreDir = None,
) -> None:
    """Add a prompt or a task prompt vector to the store."""
    from promptvec.backbones import load_backbone
    from promptvec.peft_folder import PROMPT_DIR, load_prompt
    from promptvec.store import import_peft

    s = _store(store)
    if path.is_file():
        entry = s.add_vector(_vector_from(str(path), store), name=name)
    else:
        folder = path / PROMPT_DIR if (path / PROMPT_DIR).is_dir() else path
        meta = load_prompt(folder).metadata
        backbone = load_backbone(model or meta.get("model", "default")) if (vector or model) else None
        if vector:
            entry = s.add_vector(_vector_from(str(folder), store, backbone), name=name)
        else:
            entry = import_peft(s, folder, backbone=backbone, name=name)
    out_console.print(f"added {entry.kind} {entry.short_id} ({entry.task or 'no task'})")


@store_app.command("list")
@friendly
def store_list(kind: Annotated[str | None, typer.Option(help="prompt or vector")] = None,
               task: Annotated[str | None, typer.Option(help="only this task")] = None,
               store: StoreDir = None) -> None:
    """List stored prompts and vectors."""
    if kind not in (None, "prompt", "vector"):
        raise ConfigError(f"unknown --kind '{kind}'", "use prompt or vector (or omit it for both)")
    s = _store(store, write=False)
    _print_entries(s.entries(kind=kind, task=task), f"store {s.root}")


@store_app.command("show")
@friendly
def store_show(ref: Annotated[str, typer.Argument(help="id prefix or name")], store: StoreDir = None) -> None:
    """Show one entry's metadata."""
    entry = _store(store, write=False).get(ref)
    out_console.print_json(json.dumps({"id": entry.sha256, "kind": entry.kind, "name": entry.name,
                                       "metadata": entry.metadata}, default=str))


@store_app.command("rm")
@friendly
def store_rm(ref: Annotated[str, typer.Argument(help="id prefix or name")], store: StoreDir = None) -> None:
    """Remove an entry and its file."""
    entry = _store(store).remove(ref)
    out_console.print(f"removed {entry.kind} {entry.short_id}")


@store_app.command("search")
@friendly
def store_search(
    like: Annotated[str, typer.Option("--like", help="a task name, store entry or vector file")],
    top: Top = 5,
    measure: Measure = "cosine",
    store: StoreDir = None,
) -> None:
    """Stored vectors most similar to a task or vector: which sources to transfer from."""
    _print_nearest(_store(store, write=False), like, top, measure)


def _print_nearest(store, like: str, top: int, measure: str) -> None:
    """The store's vectors nearest to ``like`` (a task, entry or vector file), as a table."""
    _check_measure(measure)
    query, task = store.query_vector(like)
    results = store.search(query, top=top, measure=measure, exclude_task=task)
    _print_entries([e for e, _ in results], f"nearest to {like} ({measure})",
                   [("similarity", [f"{v:+.3f}" for _, v in results])])


@store_app.command("import")
@friendly
def store_import(folder: Annotated[Path, typer.Argument(help="PEFT prompt-tuning adapter folder")],
                 model: Annotated[str | None, typer.Option(help="its backbone (records the fingerprint)")] = None,
                 task: Annotated[str | None, typer.Option(help="task it was trained on")] = None,
                 name: Annotated[str | None, typer.Option(help="a name")] = None,
                 store: StoreDir = None) -> None:
    """Import a PEFT adapter folder ([R, d] or seq2seq [2R, d])."""
    from promptvec.backbones import load_backbone
    from promptvec.store import import_peft

    backbone = load_backbone(model) if model else None
    entry = import_peft(_store(store), folder, backbone=backbone, name=name, task=task)
    out_console.print(f"imported prompt {entry.short_id}")


def _replacing(folder: Path, overwrite: bool) -> None:
    """Refuse to write a prompt folder over what promptvec did not write (unless --overwrite), and
    say what --overwrite replaces."""
    from promptvec.peft_folder import check_output_folder

    foreign = check_output_folder(folder, overwrite)
    if foreign:
        console.print(f"--overwrite: replacing {folder} (it held {', '.join(foreign)})", highlight=False,
                      markup=False)


@store_app.command("export")
@friendly
def store_export(ref: Annotated[str, typer.Argument(help="id prefix or name of a prompt")],
                 folder: Annotated[Path, typer.Argument(help="PEFT adapter folder to write")],
                 overwrite: Annotated[bool, typer.Option("--overwrite", help="replace what FOLDER holds")] = False,
                 store: StoreDir = None) -> None:
    """Export a stored prompt as a PEFT adapter folder (its original layout)."""
    from promptvec.store import export_peft

    _replacing(folder, overwrite)
    out_console.print(f"exported to {export_peft(_store(store, write=False), ref, folder, overwrite=overwrite)}")


@store_app.command("convert")
@friendly
def store_convert(source: Annotated[Path, typer.Argument(help="legacy .bin/.pt prompt file")],
                  target: Annotated[Path, typer.Argument(help="safetensors file to write")]) -> None:
    """Convert a legacy pickle-based prompt file with torch's weights-only loader (the only pickle read)."""
    from promptvec.store import convert_legacy

    out_console.print(f"wrote {convert_legacy(source, target)}")


@store_app.command("push")
@friendly
def store_push(refs: Annotated[list[str], typer.Argument(help="entries (id prefix or name)")],
               repo: Annotated[str, typer.Option("--repo", help="Hub repository id, or a local folder")],
               store: StoreDir = None) -> None:
    """Share entries through a Hugging Face Hub repository (respects HF_HUB_OFFLINE)."""
    from promptvec.store import push

    out_console.print(f"pushed {push(_store(store), refs, repo)} entries to {repo}")


@store_app.command("pull")
@friendly
def store_pull(repo: Annotated[str, typer.Argument(help="Hub repository id, or a local folder")],
               store: StoreDir = None) -> None:
    """Add a shared repository's entries (safetensors only, paths and digests checked)."""
    from promptvec.store import pull

    entries = pull(_store(store), repo)
    _print_entries(entries, f"pulled from {repo}")


@store_app.command("rebuild")
@friendly
def store_rebuild(store: StoreDir = None) -> None:
    """Recreate a damaged index from the stored files."""
    from promptvec.store import VectorStore

    out_console.print(f"indexed {VectorStore.repair(store)} objects")


def _weights(text: str, count: int) -> list[float]:
    """``--weights 1,0.5``: one finite number per vector."""
    import math

    try:
        values = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights '{text}' must be comma-separated numbers", "e.g. --weights 1,0.5") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--weights needs {count} finite numbers (one per vector), got '{text}'",
                          "e.g. --weights " + ",".join(["1"] * count))
    return values


def _check_measure(measure: str) -> None:
    from promptvec.vectors import SIMILARITIES

    if measure not in SIMILARITIES:
        raise ConfigError(f"unknown --measure '{measure}'", f"use one of {', '.join(SIMILARITIES.names())}")


@vector_app.command("create")
@friendly
def vector_create(prompt: Annotated[Path, typer.Argument(help="prompt or run folder (records its origin)")],
                  out: Annotated[Path, typer.Argument(help="vector file (.safetensors) to write")],
                  model: Model = "default") -> None:
    """τ = tuned prompt − its origin."""
    from promptvec.backbones import load_backbone
    from promptvec.vectors import TaskPromptVector

    vector = TaskPromptVector.from_checkpoint(prompt, load_backbone(model))
    vector.save(out)
    out_console.print(f"{vector!r} -> {out}")


@vector_app.command("combine")
@friendly
def vector_combine(
    vectors: Annotated[list[str], typer.Argument(help="vector files or store entries")],
    out: Annotated[Path, typer.Option("--out", help="vector file to write")],
    method: Annotated[str, typer.Option(help="task_arithmetic, ties, dare_linear or dare_ties")] = "task_arithmetic",
    weights: Annotated[str | None, typer.Option(help="comma-separated weights (default all 1)")] = None,
    density: Annotated[float, typer.Option(help="fraction kept (TIES/DARE)")] = 1.0,
    seed: Annotated[int, typer.Option(help="DARE's random seed")] = 0,
    store: StoreDir = None,
) -> None:
    """Merge several vectors into one."""
    from promptvec.vectors import merge

    parsed = _weights(weights, len(vectors)) if weights else None
    merged = merge([_vector_from(v, store) for v in vectors], method, parsed, density, seed)
    merged.save(out)
    out_console.print(f"{merged!r} -> {out}")


@vector_app.command("apply")
@friendly
def vector_apply(
    vector: Annotated[str, typer.Argument(help="vector file or store entry")],
    out: Annotated[Path, typer.Option("--out", help="PEFT prompt folder to write")],
    origin_seed: Annotated[int, typer.Option(help="origin to apply it to (any origin of the same model)")] = 0,
    scale: Annotated[float, typer.Option(help="λ")] = 1.0,
    model: Model = "default",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace what --out holds")] = False,
    store: StoreDir = None,
) -> None:
    """θ = origin + λ τ, written as a PEFT prompt folder (e.g. to initialise `train --init-prompt`)."""
    import math

    from promptvec.backbones import load_backbone
    from promptvec.peft_folder import save_prompt
    from promptvec.vectors import Origin

    if not math.isfinite(scale):
        raise ConfigError(f"--scale {scale} is not a finite number", "give a number such as 1.0 or 0.5")

    _replacing(out, overwrite)
    backbone = load_backbone(model)
    tau = _vector_from(vector, store, backbone)
    origin = Origin.sample(backbone, tau.meta.rows, origin_seed)
    prompt = tau.apply_to(origin, scale, backbone)
    save_prompt(out, prompt, backbone, {"task": tau.meta.task, "origin": origin.to_dict(),
                                        "from_vector": {"task": tau.meta.task, "scale": scale}}, overwrite=overwrite)
    out_console.print(f"origin {origin_seed} + {scale:g} x {tau.meta.task} -> {out}")


@vector_app.command("similarity")
@friendly
def vector_similarity(
    vectors: Annotated[list[str], typer.Argument(help="vector files or store entries")],
    measure: Annotated[str, typer.Option(help="cosine, cosine-flat or dtvg")] = "cosine",
    heatmap: Annotated[Path | None, typer.Option(help="also write a heatmap PNG with the values in the cells")]
    = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="also write the matrix (and norms) as CSV")] = None,
    store: StoreDir = None,
) -> None:
    """Pairwise similarity of vectors (and their norms)."""
    _check_measure(measure)
    from promptvec.vectors import VectorMismatchError, similarity

    loaded = [_vector_from(v, store) for v in vectors]
    if len({v.meta.model_fingerprint for v in loaded}) > 1:
        raise VectorMismatchError("the vectors come from different models", "compare vectors of one backbone")
    table = Table(title=f"similarity ({measure})")
    table.add_column("vector")
    table.add_column("norm", justify="right")
    for v in loaded:
        table.add_column(v.meta.task or "?", justify="right")
    names = [v.meta.task or f"vector{i}" for i, v in enumerate(loaded)]
    matrix = [[similarity(a.tensor, b.tensor, measure) for b in loaded] for a in loaded]
    for name, a, row in zip(names, loaded, matrix, strict=True):
        table.add_row(name, f"{a.norm():.3f}", *[f"{v:+.3f}" for v in row])
    out_console.print(table)
    if csv_out:
        import csv
        import io

        from promptvec.io import atomic_write_text

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["vector", "norm", *names])
        for name, a, row in zip(names, loaded, matrix, strict=True):
            writer.writerow([name, f"{a.norm():.6f}", *[f"{v:.6f}" for v in row]])
        atomic_write_text(csv_out, buffer.getvalue())
    if heatmap:
        from promptvec.experiments.plots import similarity_heatmap

        similarity_heatmap(names, matrix, heatmap, f"similarity ({measure})",
                           {n: v.norm() for n, v in zip(names, loaded, strict=True)})


library_app = typer.Typer(rich_markup_mode=None, help="The prompt library that --init auto starts from: list, "
                          "search, build.")
app.add_typer(library_app, name="library")
@library_app.callback(invoke_without_command=True)
@friendly
def library_command(ctx: typer.Context, model: Model = "default", library: LibraryDir = None) -> None:
    """List the library's prompts: task, family, score against no prompt, size of the task prompt vector."""
    if ctx.invoked_subcommand is not None:
        return
    from promptvec.library import PromptLibrary

    lib = PromptLibrary.for_model(model, library)
    m = lib.manifest
    table = Table(title=f"prompt library '{m.name}' for model '{m.model}' ({m.model_fingerprint[:12]}; "
                  f"[{m.rows}, {m.dim}] prompts) at {lib.root}", title_justify="left")
    for column in ("task", "family", "type", "metric", "score", "no prompt", "gain", "‖τ‖"):
        table.add_column(column, justify="right" if column in ("score", "no prompt", "gain", "‖τ‖")
                         else "left")

    def number(value: float | None, sign: bool = False) -> str:
        return "–" if value is None else f"{value:+.3f}" if sign else f"{value:.3f}"

    for e in m.entries:
        table.add_row(e.task, e.group, e.output_type, e.metric, number(e.score), number(e.no_prompt),
                      number(e.gain, sign=True), f"{e.vector_norm:.2f}")
    out_console.print(table)


@library_app.command("search")
@friendly
def library_search(
    like: Annotated[str, typer.Option("--like", help="a library task, a store entry or a vector file")],
    top: Top = 5,
    measure: Measure = "cosine",
    model: Model = "default",
    library: LibraryDir = None,
) -> None:
    """The library's task prompt vectors most similar to a task or vector (`store search` on the library)."""
    from promptvec.library import PromptLibrary

    _check_measure(measure)
    _print_nearest(PromptLibrary.for_model(model, library).store, like, top, measure)


@library_app.command("build")
@friendly
def library_build_command(
    to: Annotated[Path, typer.Option("--to", help="the library folder to write (new, or a library built before)")],
    model: Model = "default",
    tasks: Annotated[str | None, typer.Option(help="comma-separated tasks (default: every built-in task with "
                                              "local data that fits the recipe)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="where the training runs go (default "
                                             "runs/library-<model>); the same --out resumes")] = None,
    sources_library: Annotated[str | None, typer.Option(
        help="a source-run folder shared with suites (sources.library): runs found there are copied")] = None,
    shots: Annotated[int | None, typer.Option(help="training examples per task (recipe default 1000)")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps per task (recipe default 300)")] = None,
    prompt_length: Annotated[int | None, typer.Option(help="virtual tokens R (recipe default 20)")] = None,
    max_length: Annotated[int | None, typer.Option(help="max tokens of prompt + input + label (default 128)")
                          ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="parallel worker processes")] = 1,
    max_minutes: Annotated[float | None, typer.Option(help="stop cleanly (resumable) after this budget")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and its cost; train nothing")] = False,
    data_dir: DataDir = None,
) -> None:
    """Train a source prompt per task with one recipe and package them as a library (resumable)."""
    from promptvec.experiments.library_build import LIBRARY_TASKS, LibraryRecipe, build_library, plan_library
    from promptvec.io import path_component

    chosen = comma_list(tasks) or list(LIBRARY_TASKS)
    recipe = LibraryRecipe.with_overrides(shots=shots, steps=steps, prompt_length=prompt_length,
                                          max_length=max_length)
    plan = plan_library(model, out or Path("runs") / f"library-{path_component(model, 'model')}", chosen, recipe,
                        sources_library=sources_library, data_dir=data_dir)
    out_console.print(plan.describe())
    if dry_run:
        return
    lib = build_library(plan, to, jobs=jobs, data_dir=data_dir, max_minutes=max_minutes,
                        log=lambda m: console.print(m, highlight=False, markup=False))
    if lib is None:
        out_console.print("stopped by the time budget; run the same command again to continue")
        return
    out_console.print(f"library of {len(lib.entries)} prompts written to {lib.root}; use it with "
                      f"`promptvec train --init auto --library {lib.root}`")


@app.command("report")
@friendly
def report_command(
    suite_dir: Annotated[Path, typer.Argument(metavar="DIR", help="the --out folder of `experiment run`")],
    out: Annotated[Path | None, typer.Option("--out", help="where to write the report (default DIR/report)")]
    = None,
) -> None:
    """Write report.md and a self-contained report.html (figures as PNGs beside them) for a suite."""
    from promptvec.experiments.report import build_report

    folder = build_report(suite_dir, out)
    out_console.print(f"report written to {folder / 'report.md'} and {folder / 'report.html'}")


if __name__ == "__main__":  # pragma: no cover
    app()
