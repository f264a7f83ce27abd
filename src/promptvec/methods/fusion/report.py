"""Dynamic Prompt Fusion's report section: scheduling weights and gate at the start and end of training."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptvec.suites.document import Block, Figure, Heading, Paragraph, TableBlock, save_figure  # noqa: E402
from promptvec.suites.run_logs import method_runs, module_log, slug  # noqa: E402


# ---- Fusion ---------------------------------------------------------------------------------------
def schedule_sections(out: Path, rows: list[dict], report_dir: Path) -> list:
    runs = [(r, log) for r, f in method_runs(out, rows, "fusion") if (log := module_log(f))]
    if not runs:
        return []
    blocks: list[Block] = [Heading("Dynamic Prompt Fusion: scheduling weights and gate")]
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    shown: set[tuple[str, str]] = set()
    for r, log in runs:
        per_task = defaultdict(list)
        for e in log:
            per_task[e["task"]].append(e)
        key = (r["label"], r["task"])
        target = Path(r["task"]).stem if r["task"].endswith((".yaml", ".yml")) else r["task"]
        for task, entries in per_task.items():
            role = "target" if task == target else "sources"
            cells[key][f"gate {role}"].append(entries[-1]["gate_mean"])
            cells[key][f"spread {role}"].append(entries[-1]["gate_std"])
            cells[key][f"entropy {role}"].append(_entropy(entries[-1]["pi"]) / math.log(len(entries[-1]["pi"])))
            cells[key]["gate start"].append(entries[0]["gate_mean"])
        # one heatmap per variant and target, from its lowest seed
        if key not in shown and r["seed"] == min(x["seed"] for x, _ in runs if (x["label"], x["task"]) == key):
            shown.add(key)
            path = report_dir / f"fusion-schedule-{slug(r['label'])}-{slug(r['task'])}.png"
            _heatmap({task: entries[-1]["pi"] for task, entries in per_task.items()},
                     f"π per task — {r['label']}, target {r['task']}", path)
            blocks.append(Figure(path, f"Scheduling weights π (rows: tasks, columns: pool prompts) at the last "
                                       f"logged step of {r['label']} (target {r['task']}, seed {r['seed']})."))

    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f}" if values else "–"

    columns = ["gate start", "gate target", "gate sources", "spread target", "spread sources", "entropy target",
               "entropy sources"]
    blocks += [Paragraph("Gate g ∈ (0, 1) per prompt row, averaged over the examples of a step, at the first step "
                         "and at the last logged step for the target and (mean) for the source tasks; its spread "
                         "(std over rows and examples) at the end; the entropy of each task's scheduling weights π "
                         "at the end as a fraction of its maximum (1 = an even mix of the pool). Means over seeds."),
               TableBlock(["variant", "target", *columns],
                          [[label, task, *(mean(c[col]) for col in columns)] for (label, task), c in cells.items()])]
    return blocks


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def _heatmap(values: dict[str, list[float]], title: str, path: Path) -> None:
    tasks = list(values)
    width = len(next(iter(values.values())))
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * width, 0.8 + 0.45 * len(tasks)))
    image = ax.imshow([values[t] for t in tasks], cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xticks(range(width), [str(i) for i in range(width)])
    ax.set_xlabel("pool prompt")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
