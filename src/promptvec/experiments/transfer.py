"""One transfer run from the library or `promptvec transfer`: a method, its source tasks and a
target, run as a one-cell suite so that it gets everything a suite run has — the sources trained
first (or reused when the folder already holds them) and put in ``<out>/store``, resumption, the
same run record as ``promptvec train`` (``<out>/runs/<method>/<target>/…/run.json``), the prompt as
a PEFT folder where one exists and dynamic modules in promptvec's own format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptvec.errors import ConfigError, describe_validation_error
from promptvec.experiments.runner import run_suite
from promptvec.io import read_json
from promptvec.suites.method import METHODS
from promptvec.suites.plan import expand, is_source, run_dir
from promptvec.suites.schema import SuiteSpec
from promptvec.training.config import train_default


@dataclass
class TransferResult:
    record: dict[str, Any]
    folder: Path  # the target run's folder


def transfer(method: str, sources: list[str], target: str, out: str | Path, *, shots: int | None = None,
             seed: int = 0, origin: int = 0, model: str = train_default("model"),
             max_length: int = train_default("max_length"), steps: int = train_default("max_steps"),
             batch_size: int = train_default("batch_size"), source_steps: int | None = None,
             source_shots: int | None = None, settings: dict[str, Any] | None = None,
             source_settings: dict[str, Any] | None = None, eval_every: int = train_default("eval_every"),
             val_examples: int | None = train_default("val_examples"),
             test_examples: int | None = train_default("test_examples"),
             data_dir: str | None = None, progress: bool = True, log=print) -> TransferResult:
    """Train ``target`` with ``method`` transferring from ``sources``; returns the target's record."""
    needs_sources = METHODS[method].needs_sources
    if needs_sources and not sources:
        raise ConfigError(f"method '{method}' transfers from source tasks, but none were given",
                          "name them with --sources a,b")
    if target in sources:
        raise ConfigError(f"'{target}' is both the target and one of its sources; a target never transfers from "
                          "itself", "remove it from --sources")
    settings = dict(settings or {})
    try:  # the sources get the method's prompt length (a task vector needs the target's shape)
        rows = METHODS[method].prompt_rows(METHODS[method].validate_settings(settings))
    except ValueError as exc:
        raise ConfigError(f"--set: {exc}", "fix the setting named (promptvec methods lists each method)") from None
    source_settings = {"prompt_length": rows, **(source_settings or {})}
    body: dict[str, Any] = {
        "name": f"transfer-{method}", "backbone": {"model": model, "max_length": max_length}, "data_dir": data_dir,
        "tasks": [target], "shots": [shots], "seeds": [seed], "origins": [origin],
        "budget": {"steps": steps, "batch_size": batch_size, "eval_every": min(eval_every, steps),
                   "val_examples": val_examples, "test_examples": test_examples},
        "methods": [{"name": method, "settings": settings}],
    }
    if needs_sources:
        body["sources"] = {"tasks": list(sources), "targets": {target: list(sources)}, "shots": source_shots,
                           "steps": source_steps, "settings": source_settings,
                           "multi_task": METHODS[method].needs_multi_task_sources}
    try:
        suite = SuiteSpec(**body)
    except ValidationError as exc:
        raise ConfigError(f"invalid transfer: {describe_validation_error(exc)}", "fix the option(s) named") from None
    out = Path(out)
    run_suite(suite, out, data_dir=data_dir, progress=progress, log=log)
    run = next(r for r in expand(suite) if not is_source(r))
    folder = run_dir(out, run)
    if not (folder / "run.json").is_file():
        raise ConfigError(f"the transfer run did not finish ({folder})", "run the same command again to resume it")
    return TransferResult(read_json(folder / "run.json", "run record"), folder)
