"""Read a task's splits from a local folder / files or the Hugging Face Hub.

Resolution order for built-in tasks: the local data folder (``--data-dir`` or the environment
variable ``PROMPTVEC_DATA_DIR``, layout ``<dir>/<task>/{train,validation,test}.jsonl``), then the
Hub when online. User tasks read their ``data_files`` (or the Hub when they name a dataset).
Every row is validated on the way in: a bad row is reported by file and line.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptvec.errors import DataError
from promptvec.hub import hub_offline
from promptvec.io import not_utf8
from promptvec.tasks.registry import get_task
from promptvec.tasks.spec import Example, TaskSpec, is_template

DATA_DIR_ENV = "PROMPTVEC_DATA_DIR"
SPLITS = ("train", "validation", "test")
_EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
CARVE_SEED = 42


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"data folder not found: {path}",
                        f"pass an existing folder with --data-dir or set {DATA_DIR_ENV}")
    return path


def _rows_from_file(path: Path) -> Iterable[tuple[dict[str, Any], str]]:
    """Yield (row, 'file:line') from a local file; malformed lines and text that is not UTF-8 raise
    DataError."""
    try:
        yield from _rows_of(path)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc, "data file") from None


def _rows_of(path: Path) -> Iterable[tuple[dict[str, Any], str]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})",
                                    "each line of a .jsonl file must be one JSON object") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}",
                                    "each line of a .jsonl file must be one JSON object")
                yield row, f"{path}:{lineno}"
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})", "fix the file") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: a .json data file must hold a list of objects", "or use .jsonl")
        for i, row in enumerate(data):
            yield row, f"{path}[{i}]"
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            for lineno, row in enumerate(reader, start=2):
                if None in row:
                    raise DataError(f"{path}:{lineno}: more values than header columns", "fix the row")
                missing = [column for column, value in row.items() if value is None]
                if missing:
                    raise DataError(f"{path}:{lineno}: no value for column(s) {missing}",
                                    "give the row a value for every header column (or fix its separators)")
                yield dict(row), f"{path}:{lineno}"
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many types for corrupted files
            raise DataError(f"{path}: not a readable parquet file ({exc})", "re-create the file") from None
        for i, row in enumerate(table.to_pylist()):
            yield row, f"{path}[row {i}]"
    else:
        raise DataError(f"{path}: unsupported data file type '{suffix}'", f"use one of {', '.join(_EXTENSIONS)}")


def example_from_row(spec: TaskSpec, row: dict[str, Any], source: str) -> Example:
    """A data row (a dict of columns, as in the task's files) as an :class:`Example` of ``spec``, checked:
    ``source`` names the row in error messages."""
    row = {field: row[col] for field, col in spec.columns.items() if col in row} | {
        k: v for k, v in row.items() if k not in spec.columns.values()
    }
    if not is_template(spec.doc_to_target) and spec.doc_to_target not in row:
        what = "answer" if spec.generates else "label"
        raise DataError(f"{source}: row has no {what} column '{spec.doc_to_target}'",
                        f"add it or set doc_to_target to the {what} column (row keys: {sorted(row)})")
    missing = [f for f in spec.template_fields if f not in row]
    if missing:
        raise DataError(f"{source}: row lacks the input field(s) {missing} used by the template",
                        f"row keys are {sorted(row)}; fix the data or the task's doc_to_text/columns")
    fields = {f: row[f] for f in spec.template_fields}
    for f, value in fields.items():
        if value is None:
            raise DataError(f"{source}: input field '{f}' is empty (null)", "fix or drop that row")
    text = spec.render(fields, source)
    if spec.generates:
        answers = spec.answers_of(row, source)
        return Example(fields=fields, label=spec.training_target(answers, source), source=source, text=text,
                       answers=answers)
    return Example(fields=fields, label=spec.canonical_label(spec.raw_target(row, source), source), source=source,
                   text=text)


def _read_local(spec: TaskSpec, path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(f"data file not found: {path}", "check the task's data_files / the data folder")
    examples = [example_from_row(spec, row, src) for row, src in _rows_from_file(path)]
    if not examples:
        raise DataError(f"{path}: no rows", "the file is empty")
    return examples


def _find_split_file(folder: Path, split: str) -> Path | None:
    for ext in _EXTENSIONS:
        candidate = folder / f"{split}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _read_hub(spec: TaskSpec, split: str) -> list[Example]:
    if not spec.dataset_path:
        raise DataError(f"task '{spec.task}' has no local data and names no Hugging Face dataset",
                        f"pass --data-dir (or set {DATA_DIR_ENV}) or give the task data_files")
    if hub_offline():
        raise DataError(
            f"task '{spec.task}': no local data found and the Hugging Face Hub is offline "
            f"(cannot load {spec.dataset_path})",
            f"pass --data-dir / set {DATA_DIR_ENV} to a folder with {spec.task}/train.jsonl ..., or go online",
        )
    try:
        import datasets

        ds = datasets.load_dataset(spec.dataset_path, spec.dataset_name, split=split)
    except Exception as exc:  # network/auth/missing-split errors from datasets
        raise DataError(f"task '{spec.task}': could not load {spec.dataset_path} split '{split}' "
                        f"from the Hub ({type(exc).__name__}: {exc})",
                        f"check your connection, or use local data via --data-dir / {DATA_DIR_ENV}") from None
    out = []
    for i, row in enumerate(ds):
        raw = None if is_template(spec.doc_to_target) else row.get(
            spec.columns.get(spec.doc_to_target, spec.doc_to_target))
        if not spec.generates and isinstance(raw, int) and raw < 0:  # GLUE/SNLI: -1 = no gold label
            continue
        out.append(example_from_row(spec, row, f"{spec.dataset_path}:{split}[{i}]"))
    return out


def carve_validation(spec: TaskSpec, train: list[Example]) -> tuple[list[Example], list[Example]]:
    """Stratified split of train into (train, validation): min(500, 10%) rows, seed 42 — the rule
    the local data folder was built with, so Hub and local data are split the same way."""
    n_val = min(500, round(0.1 * len(train)))
    picked = set(stratified_indices(spec, train, n_val, CARVE_SEED))
    return ([e for i, e in enumerate(train) if i not in picked], [train[i] for i in sorted(picked)])


@dataclass
class TaskData:
    spec: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    origin: str  # where it came from, for provenance

    def content_hash(self) -> str:
        """sha256 over every example (fields and label) of the three splits: the data's provenance."""
        import hashlib

        digest = hashlib.sha256()
        for split in SPLITS:
            for ex in getattr(self, split):
                # answers only where a task has them, so the hashes of label tasks stay what they were
                row = [split, ex.fields, ex.label] + ([list(ex.answers)] if ex.answers else [])
                digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}'", f"use one of {SPLITS}")
        return getattr(self, name)


def local_split_sizes(spec: TaskSpec, data_dir: str | os.PathLike | None = None) -> dict[str, int] | None:
    """Rows per split of a task's local ``.jsonl`` files, counted without reading the examples (a
    listing of every task should not parse all their data); None when the task has no such files
    for all three splits (then only loading the data says)."""
    folder = resolve_data_dir(data_dir)
    if folder is None or not (folder / spec.task).is_dir():
        return None
    sizes = {}
    for split in SPLITS:
        path = _find_split_file(folder / spec.task, split)
        if path is None or path.suffix != ".jsonl":
            return None
        with open(path, "rb") as handle:
            sizes[split] = sum(1 for line in handle if line.strip())
    return sizes


def load_task_data(spec: TaskSpec | str | os.PathLike, data_dir: str | os.PathLike | None = None) -> TaskData:
    """All three splits of a task (a :class:`TaskSpec`, a built-in task's name or a task file),
    validated."""
    spec = get_task(spec)
    if spec.data_files:
        files = spec.data_files
        unknown = sorted(set(files) - set(SPLITS))
        if unknown:
            raise DataError(f"task '{spec.task}': data_files has unknown split(s) {unknown}",
                            f"use the keys {SPLITS}")
        if "train" not in files or "test" not in files:
            raise DataError(f"task '{spec.task}': data_files needs at least 'train' and 'test'",
                            "add the missing file(s)")
        train = _read_local(spec, Path(files["train"]))
        test = _read_local(spec, Path(files["test"]))
        if "validation" in files:
            val = _read_local(spec, Path(files["validation"]))
        else:
            train, val = carve_validation(spec, train)
        return TaskData(spec, train, val, test, origin="files")

    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / spec.task).is_dir():
        task_dir = folder / spec.task
        paths = {s: _find_split_file(task_dir, s) for s in SPLITS}
        if paths["train"] is None or paths["test"] is None:
            raise DataError(f"{task_dir}: needs train and test files (train.jsonl, test.jsonl, ...)",
                            "add them or remove the folder to use the Hub")
        train = _read_local(spec, paths["train"])
        test = _read_local(spec, paths["test"])
        if paths["validation"] is not None:
            val = _read_local(spec, paths["validation"])
        else:
            train, val = carve_validation(spec, train)
        return TaskData(spec, train, val, test, origin=str(task_dir))

    train = _read_hub(spec, spec.training_split)
    test = _read_hub(spec, spec.test_split)
    if spec.validation_split:
        val = _read_hub(spec, spec.validation_split)
    else:
        train, val = carve_validation(spec, train)
    return TaskData(spec, train, val, test, origin=f"hub:{spec.dataset_path}")


def _stratum(spec: TaskSpec, example: Example) -> str:
    return spec.bin_of(example.label) if spec.is_regression else str(example.label)  # type: ignore[arg-type]


def stratified_indices(spec: TaskSpec, examples: list[Example], n: int, seed: int) -> list[int]:
    """Indices of ``n`` examples drawn with proportional per-label quotas (largest remainder),
    at least one per label when n allows. ``n`` is the total, not per class. Free-text tasks have no
    labels to stratify by: a plain seeded sample."""
    if spec.generates:
        return random.Random(seed).sample(range(len(examples)), n)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[_stratum(spec, ex)].append(i)
    labels = sorted(by_label)
    total = len(examples)
    exact = {lab: n * len(by_label[lab]) / total for lab in labels}
    quota = {lab: int(exact[lab]) for lab in labels}
    if n >= len(labels):
        for lab in labels:
            quota[lab] = max(quota[lab], 1)
    rest = n - sum(quota.values())
    by_remainder = sorted(labels, key=lambda lab: (-(exact[lab] - int(exact[lab])), lab))
    while rest != 0:
        for lab in by_remainder:
            if rest > 0 and quota[lab] < len(by_label[lab]):
                quota[lab] += 1
                rest -= 1
            elif rest < 0 and quota[lab] > (1 if n >= len(labels) else 0):
                quota[lab] -= 1
                rest += 1
            if rest == 0:
                break
    rng = random.Random(seed)
    picked: list[int] = []
    for lab in labels:
        picked.extend(rng.sample(by_label[lab], quota[lab]))
    rng.shuffle(picked)
    return picked


def few_shot(spec: TaskSpec, train: list[Example], shots: int, seed: int) -> list[Example]:
    """A seeded sample of ``shots`` training examples (total, not per class), stratified by label."""
    if shots <= 0:
        raise DataError(f"--shots must be positive, got {shots}", "use 0-shot evaluation without training instead")
    if shots > len(train):
        raise DataError(f"task '{spec.task}': --shots {shots} is larger than the training set ({len(train)} rows)",
                        f"use at most {len(train)} shots, or omit --shots to train on the full set")
    return [train[i] for i in stratified_indices(spec, train, shots, seed)]


def sample_indices(size: int, limit: int | None, seed: int) -> list[int]:
    """Indices of at most ``limit`` of ``size`` rows, seeded, in order (None = all)."""
    if limit is None or size <= limit:
        return list(range(size))
    return sorted(random.Random(seed).sample(range(size), limit))


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, seeded, in their original order (None = all)."""
    return [examples[i] for i in sample_indices(len(examples), limit, seed)]
