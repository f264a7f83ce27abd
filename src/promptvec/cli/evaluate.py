"""``promptvec eval``, ``predict`` and ``lm-eval``: commands that score prompts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from promptvec.cli.common import (
    DataDir,
    Model,
    app,
    eval_mode,
    friendly,
    metrics_table,
    out_console,
    show_notes,
)
from promptvec.errors import ConfigError
from promptvec.training.config import train_default


@app.command("eval")
@friendly
def eval_command(
    task: Annotated[str, typer.Option("--task", help="built-in task name or task YAML path")],
    prompt: Annotated[str | None, typer.Option(help="prompt (PEFT folder, run folder or Hub id "
                                               "namespace/name[@revision]); omit for no prompt")] = None,
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
    from promptvec.hub import check_prompt_reference
    from promptvec.tasks import get_task

    checked_mode = eval_mode(mode)
    show_notes([get_task(task)])
    if prompt:
        check_prompt_reference(prompt)  # before torch and the model load
    from promptvec.scoring import evaluate_split

    done = evaluate_split(task, prompt, origin_seed=origin_seed, prompt_length=prompt_length, model=model,
                          split=split, examples=None if full else examples, limit=limit, rows=rows, mode=checked_mode,
                          length_normalize=length_normalize, seed=seed, data_dir=data_dir, log_samples=log_samples,
                          output=output, progress=not as_json)
    summary, result = done.summary, done.result
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    what = f"prompt {prompt}" if prompt else (f"origin {origin_seed}" if origin_seed is not None else "no prompt")
    out_console.print(metrics_table(f"{done.task.task}, {what} ({summary['model']}, {summary['mode']})",
                                    {f"{split} ({result.n} examples)": result.metrics}))
    if result.invalid:
        out_console.print(f"{result.invalid} generated answers matched no label (counted wrong)")


@app.command("predict")
@friendly
def predict_command(
    prompt: Annotated[str, typer.Option(help="prompt (PEFT folder, run folder or Hub id)")],
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
    from promptvec.hub import check_prompt_reference
    from promptvec.tasks import get_task

    check_prompt_reference(prompt)  # mistakes are reported before torch and the model load
    if task is not None:
        get_task(task)
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
    from promptvec.display import counting, status_line

    with status_line(True, f"loading the prompt {prompt} and its model"):
        predictor = Predictor(prompt, task=task, model=model, mode=eval_mode(mode), batch_size=batch_size)
    with counting(True, "predicting", len(items)) as advance:
        predictions = predictor.predict(items, on_batch=advance)
    for item, pred in zip(items, predictions, strict=True):
        line = ({"input": item, "answer": pred.label} if predictor.task.generates
                else {"input": item, "label": pred.label, "scores": pred.scores})
        sys.stdout.write(json.dumps(line) + "\n")


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
