"""Reading what runs logged, for report sections: the per-step module log of a run
(``module_log.jsonl``), the run folders of one method, and file-name slugs for their figures."""

from __future__ import annotations

from pathlib import Path

from promptvec.io import read_jsonl
from promptvec.suites.plan import RUNS_DIR
from promptvec.training.run_folder import MODULE_LOG


def module_log(run_folder: Path) -> list[dict]:
    """The run's log, one entry per (step, task) — a resumed run may have logged a step twice."""
    path = run_folder / MODULE_LOG
    if not path.is_file():
        return []
    entries = {(e["step"], e.get("task")): e for e in read_jsonl(path)}
    return [entries[k] for k in sorted(entries, key=lambda k: (k[0], str(k[1])))]


def method_runs(out: Path, rows: list[dict], method: str) -> list[tuple[dict, Path]]:
    return [(r, out / RUNS_DIR / r["run_id"]) for r in rows if r["method"] == method]



def slug(text: str) -> str:
    name = Path(text).stem if text.endswith((".yaml", ".yml")) else text
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name).strip("-") or "x"
