"""What every command shares: the application, the two consoles (results on stdout, messages on
stderr), the common options, one-message errors (``friendly``) and the tables a person reads."""

from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from promptvec.errors import ConfigError, PromptvecError

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


def eval_mode(mode: str) -> Literal["rank", "generate"]:
    """``--mode`` checked here, so a typo gets one message instead of a failure deep in evaluation."""
    if mode not in ("rank", "generate"):
        raise ConfigError(f"unknown --mode '{mode}'", "use rank (score each label) or generate (free text)")
    return "rank" if mode == "rank" else "generate"


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


def print_outcome(record: dict) -> None:
    """The selected prompt's validation and test metrics as one table."""
    best, test = record.get("best") or {}, record["test"]
    title = f"{record.get('task', '')}: " + (f"best prompt at step {best['step']}" if best else "final prompt")
    out_console.print(metrics_table(title, {"validation": best.get("validation"),
                                            f"test ({test['n']} examples)": test["metrics"]}))
