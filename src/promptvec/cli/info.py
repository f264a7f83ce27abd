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
    from promptvec.tasks.loading import local_split_sizes, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    table = Table(title="built-in tasks")
    for column in ("task", "group", "labels", "metric", "train / val / test", "source"):
        table.add_column(column)
    for name in builtin_task_names():
        spec = get_task(name)
        sizes, source = "-", f"hub:{spec.dataset_path}"
        if folder is not None and (folder / name).is_dir():
            counted = local_split_sizes(spec, folder)
            if counted is None:
                data = load_task_data(spec, folder)
                counted = {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
            sizes, source = f"{counted['train']} / {counted['validation']} / {counted['test']}", "local"
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


@app.command("models")
@friendly
def models_command(prepare: Annotated[bool, typer.Option("--prepare", help="convert the embedded SmolLM2 now if it "
                                                         "was never used (about 600 MB in the cache)")] = False,
                   as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """The embedded models: their Hub ids, where their exact weights are, and how to load them with
    transformers and PEFT (a prompt is exact only on the weights it was trained on)."""
    import json

    from promptvec.backbones import BACKBONES
    from promptvec.backbones.loading import EMBEDDED_MODELS, embedded_weights
    from promptvec.errors import ModelLoadError

    models: list[dict[str, str | None]] = []
    for name, embedded in EMBEDDED_MODELS.items():
        try:
            path, missing = embedded_weights(name, prepare), None
        except ModelLoadError as exc:  # its package is not installed: say so, list the others
            path, missing = None, str(exc)
        models.append({"name": name, "hub_id": embedded.hub_id, "family": embedded.family, "weights": embedded.weights,
                       "path": str(path) if path else None, "missing": missing})
    if as_json:
        out_console.print_json(json.dumps(models))
        return
    table = Table(title="embedded models")
    for column in ("name", "Hub id", "exact weights here"):
        table.add_column(column, overflow="fold")
    for model in models:
        table.add_row(model["name"], model["hub_id"], model["path"] or model["missing"] or "not converted yet: run "
                      "`promptvec models --prepare` (or use --model default once)")
    out_console.print(table)
    for model in models:
        auto = BACKBONES[str(model["family"])].auto_model_class
        where = json.dumps(model["path"] or "<the path above, once there>")
        out_console.print(f"\n{model['name']}: {model['weights']}.", highlight=False, markup=False)
        out_console.print(f"  from transformers import {auto}\n  from peft import PeftModel\n"  # code: never wrapped
                          f"  base = {auto}.from_pretrained({where})  # the exact weights\n"
                          '  model = PeftModel.from_pretrained(base, "runs/sst2/prompt")  # a prompt trained on them',
                          highlight=False, markup=False, soft_wrap=True)
