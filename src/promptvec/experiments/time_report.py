"""The report's *Where the time went*: per method, the wall time of the runs it trained itself,
split by phase (:mod:`promptvec.training.phases`), and the tokens per second of training and of
evaluation — so a study's cost is read, not guessed. A run that copies an identical training
(``reused_from``) is not counted again: its time is its twin's."""

from __future__ import annotations

from typing import Any

from promptvec.suites.document import Block, Paragraph, TableBlock
from promptvec.training.phases import PHASES, phase_totals


def _rate(tokens: float, seconds: float) -> str:
    return f"{tokens / seconds:,.0f}" if seconds > 0 and tokens else "–"


def time_sections(rows: list[dict[str, Any]]) -> list[Block]:
    """The table, one row per method label (source prompts included)."""
    own = [r for r in rows if not r.get("reused_from")]
    labels = sorted({r["label"] for r in own})
    table = []
    for label in labels:
        runs = [r for r in own if r["label"] == label]
        timed = [r for r in runs if r.get("phases")]
        totals = phase_totals([{"phases": r["phases"]} for r in timed])
        evaluation = [totals.get(name, {}) for name in ("validation", "test")]
        table.append([label, str(len(runs)), str(len(timed)),
                      f"{sum(r.get('wall_time_s') or 0 for r in runs) / 60:.1f}",
                      *[f"{totals[name]['seconds']:.0f}" if name in totals else "–" for name in PHASES],
                      _rate(totals.get("steps", {}).get("tokens", 0), totals.get("steps", {}).get("seconds", 0)),
                      _rate(sum(e.get("tokens", 0) for e in evaluation), sum(e.get("seconds", 0) for e in evaluation))])
    reused = len(rows) - len(own)
    note = (f"Runs trained by this suite (the {reused} runs that copy an identical training are not counted "
            "again). Phases in seconds, summed over the runs that recorded them (*timed*); runs made before "
            "promptvec recorded phases count in the total wall time only. *load* is the model and data a run "
            "loaded itself (a suite lends its workers' model: near 0); *start* is making the start prompt "
            "(`auto` scoring its candidates, a stage trained first such as DTVG's Stage I), part of the wall "
            "time; tokens/s counts input (and free-text target) tokens.")
    return [Paragraph(note), TableBlock(["method", "runs", "timed", "wall (min)", *PHASES, "train tokens/s",
                                         "eval tokens/s"], table)]
