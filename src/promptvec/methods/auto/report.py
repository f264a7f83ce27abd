"""``auto``'s report section: where each run started, whether it fell back to the origin, and whether the
start came from a task of the target's own family when the library holds one."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from promptvec.errors import PromptvecError
from promptvec.io import read_json
from promptvec.suites.document import Heading, Paragraph, TableBlock
from promptvec.suites.run_logs import method_runs
from promptvec.tasks import get_task


def _families(suite: Any) -> dict[str, str]:
    """Task name and reference as the suite writes it (a candidate is named by its reference) → the task's
    family (``group``), for every task of the suite that resolves (one that does not has no family)."""
    families = {}
    for ref in dict.fromkeys([*suite.tasks, *suite.sources.tasks]):
        try:
            spec = get_task(ref)
        except PromptvecError:
            continue
        families[spec.task] = families[ref] = spec.group
    return families


def start_sections(suite: Any, out: Path, rows: list[dict]) -> list:
    """Per target: the starts ``auto`` took over its seeds, its fall-backs, and how many starts include a task
    of the target's family (when any candidate is of that family); the seconds spent choosing."""
    families = _families(suite)
    per_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r, folder in method_runs(out, rows, "auto"):
        if (folder / "run.json").is_file():
            record = (read_json(folder / "run.json", "run record").get("init") or {}).get("auto")
            if record:
                per_target[r["task"]].append(record)
    if not per_target:
        return []
    body, related_runs, related_hits, fell_back, total = [], 0, 0, 0, 0
    for target, records in per_target.items():
        family = families.get(target, "")
        starts = Counter(record["chosen"] for record in records)
        candidates = {c["name"] for record in records for c in record["candidates"] if c["kind"] == "source"}
        kin = sorted(c for c in candidates if family and families.get(c) == family)
        hits = sum(bool(set(_members(record)) & set(kin)) for record in records)
        backs = sum(bool(record["fell_back"]) for record in records)
        if kin:
            related_runs, related_hits = related_runs + len(records), related_hits + hits
        fell_back, total = fell_back + backs, total + len(records)
        body.append([target, family or "–", ", ".join(kin) or "none", str(len(records)),
                     ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in starts.most_common()),
                     str(backs), f"{hits} of {len(records)}" if kin else "–",
                     f"{sum(record['seconds'] for record in records) / len(records):.0f}"])
    summary = (f"`auto` started from a library prompt or combination in {total - fell_back} of {total} runs and "
               f"fell back to the origin in {fell_back}.")
    if related_runs:
        summary += (f" Where the library holds a task of the target's family, the start included one in "
                    f"{related_hits} of {related_runs} runs ({100 * related_hits / related_runs:.0f} %).")
    return [Heading("Where `auto` started"),
            Paragraph(summary + " A combination (`tpv:a+b+c`) is the origin plus the summed task prompt vectors "
                      "of its sources; it counts as related when one of them is. Choosing time is each run's "
                      "`init.auto.seconds` (scoring every candidate on its training examples)."),
            TableBlock(["target", "family", "same-family candidates", "runs", "starts", "fell back",
                        "start from its family", "choosing (s)"], body)]


def _members(record: dict[str, Any]) -> list[str]:
    """The source tasks a chosen start is made of (none for the origin)."""
    chosen = next((c for c in record["candidates"] if c.get("chosen")), None)
    if chosen is None or chosen["kind"] not in ("source", "combination"):
        return []
    return chosen.get("sources") or [chosen["name"]]
