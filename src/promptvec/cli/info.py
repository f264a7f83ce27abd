"""``promptvec --version``, ``tasks`` and ``methods``: what is installed and what it offers."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer
from rich.table import Table

from promptvec.cli.common import (
    DataDir,
    app,
    friendly,
    out_console,
)


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
