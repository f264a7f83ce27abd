"""Per-example output of an evaluation (``promptvec eval --log-samples``) and the row selections that
make it comparable with another tool example by example (``--limit``, ``--rows``).

A sample line says which row it is (its index in the split and its ``file:line``), what the model
read, the gold answer, what it predicted and, for label tasks, the score of every label — the same
log-likelihoods lm-eval's ``--log_samples`` lists as ``resps`` for a multiple-choice task, so two
tools can be compared row by row rather than only on the aggregate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptvec.errors import ConfigError
from promptvec.evaluation.evaluator import EvalResult, as_answer
from promptvec.evaluation.text_metrics import TEXT_METRICS
from promptvec.io import atomic_write_text
from promptvec.tasks import Example, TaskSpec
from promptvec.tasks.loading import sample_indices

_ROW_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)  # ASCII digits only: no '+3', '1_0' or '٣'


def parse_rows(spec: str, size: int) -> list[int]:
    """Row indices from ``"0,5,10-19"`` (0-based, inclusive ranges), checked against a split of ``size``
    rows; kept in the order given, duplicates dropped. Every part is checked before any range is
    expanded, so a bad part at the end is reported at once."""
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = _ROW_PART.fullmatch(part)
        if match is None:
            raise ConfigError(f"--rows: '{part}' is not a row number or a range", "e.g. --rows 0,5,10-19")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(f"--rows: '{part}' is not a valid range", "rows count from 0; ranges go up, e.g. 10-19")
        if last >= size:
            raise ConfigError(f"--rows: row {last} is past the end of the split ({size} rows: 0-{size - 1})",
                              "choose rows inside the split")
        ranges.append((first, last))
    rows = list(dict.fromkeys(i for first, last in ranges for i in range(first, last + 1)))
    if not rows:
        raise ConfigError("--rows selects no row", "e.g. --rows 0,5,10-19")
    return rows


def select_rows(size: int, *, rows: str | None = None, limit: int | None = None,
                sample: int | None = None, seed: int = 0) -> list[int]:
    """Which rows of a split of ``size`` to evaluate: an explicit list, the first ``limit`` (lm-eval's
    ``--limit``), or a seeded sample of ``sample`` rows in split order (None: all)."""
    if rows is not None:
        return parse_rows(rows, size)
    if limit is not None:
        return list(range(min(limit, size)))
    return sample_indices(size, sample, seed)  # the rows `subsample` draws, so --examples is unchanged


def sample_records(task: TaskSpec, examples: Sequence[Example], rows: Sequence[int],
                   result: EvalResult) -> list[dict[str, Any]]:
    """One record per evaluated example (same order as ``examples``). ``scores`` are the rank scores of
    every label: a language model's log-likelihood of the label's tokens (summed; the mean with
    length normalisation), a sentence encoder's similarity."""
    records = []
    for i, (example, row) in enumerate(zip(examples, rows, strict=True)):
        prediction = result.predictions[i]
        record: dict[str, Any] = {"row": row, "source": example.source,
                                  "input": example.text or task.render(example.fields, example.source)}
        if task.generates:
            answers = list(example.answers)
            record.update(gold=answers, prediction=prediction)
            answer = as_answer(task, str(prediction))
            record["metrics"] = {name: TEXT_METRICS[name]([answer], [answers]) for name in task.metrics}
        else:
            record.update(gold=example.label, prediction=prediction)
            if result.scores and result.scores[i]:
                record["scores"] = dict(zip(task.label_names, result.scores[i], strict=True))
            if not task.is_regression:
                record["correct"] = prediction == example.label
        records.append(record)
    return records


def write_samples(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """The records as JSON lines, written atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    atomic_write_text(path, text)
    return Path(path)
