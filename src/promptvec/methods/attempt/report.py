"""ATTEMPT's report section: the attention each source prompt and the target prompt get."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from promptvec.io import read_json  # noqa: E402
from promptvec.suites.document import Heading, Paragraph, TableBlock  # noqa: E402
from promptvec.suites.run_logs import method_runs, module_log  # noqa: E402


# ---- ATTEMPT --------------------------------------------------------------------------------------
def attention_sections(out: Path, rows: list[dict], report_dir: Path) -> list:
    per_target: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r, folder in method_runs(out, rows, "attempt"):
        log = module_log(folder)
        if not log:
            continue
        names = [*read_json(folder / "run.json", "run record")["init"]["sources"], "target prompt"]
        tail = log[-max(1, len(log) // 3):]  # the last third of training
        for i, name in enumerate(names):
            per_target[r["task"]][name].append(sum(e["attention"][i] for e in tail) / len(tail))
    if not per_target:
        return []
    columns = list(dict.fromkeys(n for attention in per_target.values() for n in attention))
    body = [[task, *(f"{sum(a[c]) / len(a[c]):.3f}" if a.get(c) else "–" for c in columns)]
            for task, a in per_target.items()]
    return [Heading("ATTEMPT: attention per target"),
            Paragraph("Mean attention weight of each source prompt and of the target prompt itself over the last "
                      "third of training (averaged over the examples of each step and over seeds)."),
            TableBlock(["target", *columns], body)]
