"""Where a run's time went: wall seconds per phase, with the examples and tokens each processed (and, for a
free-text task's evaluations, the tokens greedy decoding produced), kept
in the run record (``phases``) so a study's cost can be read afterwards — and a cost model fitted
to it — instead of guessed.

The phases of a training run: ``load`` (model and data, when the run loads them itself),
``start`` (making the start prompt: loading it, ``init: auto`` scoring its candidates, a suite
method's sources and the stage it trains first — counted in the run's wall time), ``setup``
(encoding the training data, the optimizer; restoring a checkpoint), ``steps`` (optimizer steps),
``validation``, ``test`` and ``saving`` (checkpoints and the best prompt). They are accumulated in
the record as it is checkpointed, so a resumed run adds its time to the time before.
Throughput (tokens/s) is derived where it is shown, not stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from promptvec.training.record import RunRecord

#: the phases of a training run, in the order they happen
PHASES = ("load", "start", "setup", "steps", "validation", "test", "saving")


@dataclass
class Tally:
    """What a phase processed, counted while it runs: examples, their tokens (input + target), and the
    tokens greedy decoding produced (a free-text task's evaluation; every row of a batch for every step)."""

    examples: int = 0
    tokens: int = 0
    decoded: int = 0


def phase_entry(seconds: float = 0.0, count: int = 0, tally: Tally | None = None) -> dict[str, float]:
    """One phase as a record keeps it: its seconds, how many times it ran, and what it processed."""
    return {"seconds": seconds, "count": count, **asdict(tally or Tally())}


def add_phase(record: RunRecord, name: str, seconds: float, tally: Tally | None = None) -> None:
    """Add one occurrence of phase ``name`` to ``record["phases"]`` (a record written before a counter
    existed, such as ``decoded``, gains it)."""
    entry = record.setdefault("phases", {}).setdefault(name, phase_entry())
    for key, value in phase_entry(seconds, 1, tally).items():
        entry[key] = entry.get(key, 0) + value


@contextmanager
def timed(record: RunRecord, name: str) -> Iterator[Tally]:
    """Time the block as one occurrence of phase ``name``; the block fills in what it processed."""
    tally = Tally()
    start = time.perf_counter()
    yield tally
    add_phase(record, name, time.perf_counter() - start, tally)


def phase_totals(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The phases of several records added up (records without phases are left out)."""
    totals: dict[str, dict[str, float]] = {}
    for record in records:
        for name, entry in (record.get("phases") or {}).items():
            total = totals.setdefault(name, phase_entry())
            for key in total:
                total[key] += entry.get(key, 0)
    return totals
