"""``promptvec library …``: list, search and build prompt libraries."""

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
    comma_list,
    console,
    friendly,
    out_console,
)
from promptvec.cli.store import Measure, Top, check_measure, print_nearest

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

    check_measure(measure)
    print_nearest(PromptLibrary.for_model(model, library).store, like, top, measure)


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
