"""The report's *Where the time went*: per method, the wall time of the runs it trained itself,
split by phase (:mod:`promptvec.training.phases`), and the tokens per second of training and of
evaluation — so a study's cost is read, not guessed. A run that copies an identical training
(``reused_from``) or a source from a library is not counted again: its record holds the time of the
training it copied. What such a run did itself — an ``auto`` fall-back's choice — is counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptvec.io import read_json
from promptvec.suites.document import Block, Paragraph, TableBlock
from promptvec.suites.method import METHODS
from promptvec.suites.plan import RUNS_DIR, SPECS_DIR
from promptvec.training.phases import PHASES, phase_entry, phase_totals


@dataclass(frozen=True)
class OwnCost:
    """What one run of a suite cost the suite itself."""

    reused: bool  # its training is another run's (``reused_from``)
    from_library: bool  # a source copied from the suite's ``sources.library``
    seconds: float  # its own wall time (none for a copy), with an ``auto`` choice its wall time left out
    phases: dict[str, dict[str, float]] = field(default_factory=dict)  # its own phases, that choice as ``start``

    @property
    def copy(self) -> bool:
        return self.reused or self.from_library


def own_cost(out: Path, row: dict[str, Any]) -> OwnCost:
    """A run's own cost from its results row and its folders in the suite's output ``out``. Making the start
    is part of a run's work: inside its wall time (the ``start`` phase) since 2026-12-04; a record without
    that phase (older, or a copy such as ``auto``'s fall-back) may still hold work of its own outside the
    wall time, which its method reads (``Method.unclocked_start_seconds``)."""
    spec = out / SPECS_DIR / f"{row['run_id']}.json"
    from_library = spec.is_file() and bool(read_json(spec, "run spec").get("from_library"))
    reused = bool(row.get("reused_from"))
    phases = {} if reused or from_library else {k: dict(v) for k, v in (row.get("phases") or {}).items()}
    seconds = 0.0 if reused or from_library else float(row.get("wall_time_s") or 0)
    record = out / RUNS_DIR / row["run_id"] / "run.json"
    if "start" not in phases and record.is_file():
        start = METHODS[row["method"]].unclocked_start_seconds(lambda: read_json(record, "run record"))
        if start:
            seconds += start
            phases["start"] = phase_entry(start, 1)
    return OwnCost(reused, from_library, seconds, phases)


def _rate(tokens: float, seconds: float) -> str:
    return f"{tokens / seconds:,.0f}" if seconds > 0 and tokens else "–"


def time_sections(out: Path, rows: list[dict[str, Any]]) -> list[Block]:
    """The table, one row per method label (source prompts included)."""
    costs = [(r, own_cost(out, r)) for r in rows]
    table = []
    for label in sorted({r["label"] for r, _ in costs}):
        mine = [(r, cost) for r, cost in costs if r["label"] == label]
        trained = [r for r, cost in mine if not cost.copy]
        if not trained and not any(cost.seconds for _, cost in mine):
            continue
        totals = phase_totals([{"phases": cost.phases} for _, cost in mine])
        evaluation = [totals.get(name, {}) for name in ("validation", "test")]
        table.append([label, str(len(trained)), str(sum(bool(r.get("phases")) for r in trained)),
                      f"{sum(cost.seconds for _, cost in mine) / 60:.1f}",
                      *[f"{totals[name]['seconds']:.0f}" if name in totals else "–" for name in PHASES],
                      _rate(totals.get("steps", {}).get("tokens", 0), totals.get("steps", {}).get("seconds", 0)),
                      _rate(sum(e.get("tokens", 0) + e.get("decoded", 0) for e in evaluation),
                            sum(e.get("seconds", 0) for e in evaluation))])
    copies = sum(cost.copy for _, cost in costs)
    note = (f"Runs trained by this suite; the {copies} runs that copy an identical training or a library's source "
            "are not counted again, beyond what they did themselves (an `auto` fall-back's choice). Phases in "
            "seconds, summed over the runs that recorded them (*timed*); runs made before promptvec recorded "
            "phases count in the total wall time only. *load* is the model and data a run loaded itself (a suite "
            "lends its workers' model: near 0); *start* is making the start prompt (`auto` scoring its "
            "candidates — kept apart from the wall time by runs recorded before 2026-12-04 and added here — or a "
            "stage trained first such as DTVG's Stage I), part of the wall time. Train tokens/s counts input (and "
            "free-text target) tokens; eval tokens/s the input tokens scored and, for a free-text task, the tokens "
            "decoded (every row of a batch for each step it ran; runs recorded before 2026-12-05 counted inputs only).")
    return [Paragraph(note), TableBlock(["method", "runs", "timed", "wall (min)", *PHASES, "train tokens/s",
                                         "eval tokens/s"], table)]
