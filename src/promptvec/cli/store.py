"""``promptvec store …`` and ``vector …``: the local store of prompts and task prompt vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from promptvec.cli.common import (
    Model,
    app,
    console,
    friendly,
    out_console,
)
from promptvec.errors import ConfigError

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
    path: Annotated[str, typer.Argument(help="a vector file, a prompt/run folder, or a prompt's Hub id")],
    name: Annotated[str | None, typer.Option(help="a name to find it by")] = None,
    vector: Annotated[bool, typer.Option("--vector", help="store the prompt's task vector (prompt - origin)")]
    = False,
    model: Annotated[str | None, typer.Option(help="backbone (for --vector, or a PEFT folder without metadata)")]
    = None,
    store: StoreDir = None,
) -> None:
    """Add a prompt or a task prompt vector to the store."""
    from promptvec.backbones import load_backbone
    from promptvec.peft_folder import load_prompt, locate_prompt
    from promptvec.store import import_peft

    s = _store(store)
    if Path(path).is_file():
        entry = s.add_vector(_vector_from(path, store), name=name)
    else:
        folder = locate_prompt(path).path
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
    print_nearest(_store(store, write=False), like, top, measure)


def print_nearest(store, like: str, top: int, measure: str) -> None:
    """The store's vectors nearest to ``like`` (a task, entry or vector file), as a table."""
    check_measure(measure)
    query, task = store.query_vector(like)
    results = store.search(query, top=top, measure=measure, exclude_task=task)
    _print_entries([e for e, _ in results], f"nearest to {like} ({measure})",
                   [("similarity", [f"{v:+.3f}" for _, v in results])])


@store_app.command("import")
@friendly
def store_import(folder: Annotated[str, typer.Argument(help="PEFT prompt-tuning adapter folder, or a Hub id "
                                                          "(namespace/name[@revision])")],
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


def check_measure(measure: str) -> None:
    from promptvec.vectors import SIMILARITIES

    if measure not in SIMILARITIES:
        raise ConfigError(f"unknown --measure '{measure}'", f"use one of {', '.join(SIMILARITIES.names())}")


@vector_app.command("create")
@friendly
def vector_create(prompt: Annotated[str, typer.Argument(help="prompt or run folder (records its origin), or a "
                                                          "Hub id")],
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
    check_measure(measure)
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
