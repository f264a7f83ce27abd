"""Report sections about what the dynamic transfer methods did while training, read from each
run's ``module_log.jsonl``: DTVG's group membership and target similarities over steps, Dynamic
Prompt Fusion's scheduling weights and gate, ATTEMPT's attention — and, for every method run
under several settings (ablations, sensitivity studies), one table of those variants."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptvec.evaluation.stats import summarize  # noqa: E402
from promptvec.experiments.document import Figure, Heading, Paragraph, TableBlock  # noqa: E402
from promptvec.experiments.plots import primary_metric  # noqa: E402
from promptvec.experiments.suite import RUNS_DIR  # noqa: E402
from promptvec.io import read_json, read_jsonl  # noqa: E402
from promptvec.training.trainer import MODULE_LOG  # noqa: E402


def module_log(run_folder: Path) -> list[dict]:
    """The run's log, one entry per (step, task) — a resumed run may have logged a step twice."""
    path = run_folder / MODULE_LOG
    if not path.is_file():
        return []
    entries = {(e["step"], e.get("task")): e for e in read_jsonl(path)}
    return [entries[k] for k in sorted(entries, key=lambda k: (k[0], str(k[1])))]


def _runs(out: Path, rows: list[dict], method: str) -> list[tuple[dict, Path]]:
    return [(r, out / RUNS_DIR / r["run_id"]) for r in rows if r["method"] == method]


def transfer_sections(suite, out: Path, rows: list[dict], report_dir: Path) -> list:
    return (_variants(suite, rows) + _source_choice(out, rows, report_dir) + _dtvg(suite, out, rows, report_dir)
            + _fusion(out, rows, report_dir) + _attempt(out, rows, report_dir))


# ---- does similarity pick the right source? -------------------------------------------------------------
HIT_MARGIN = 0.01  # a choice "hits" when its single-source score is within 1 point of the best source's
# initialisations from one named source (at the source's own origin both start from its tuned prompt)
SWEEP_METHODS = {"tpv-init", "single-source"}


def _source_choice(out: Path, rows: list[dict], report_dir: Path) -> list:
    """With a sweep over single sources (``tpv-init`` or ``single-source`` runs with a ``source``
    setting): the best source per target, how often SPoT's similarity-based choice lands within 1 point
    of it, and similarity against the gain each source brings over prompt tuning from the origin."""
    sweep: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        source = (r.get("settings") or {}).get("source")
        if r["method"] in SWEEP_METHODS and source is not None:
            sweep[(r["task"], r["shots"])][source].append(r["metrics"][primary_metric(r["task"])])
    if not sweep:
        return []
    means = {cell: {src: sum(v) / len(v) for src, v in by_source.items()} for cell, by_source in sweep.items()}
    body = []
    for (task, shots), by_source in means.items():
        ranked = sorted(by_source.items(), key=lambda kv: -kv[1])
        body.append([task, str(shots), ", ".join(f"{src} {100 * m:.1f}" for src, m in ranked), ranked[0][0]])
    blocks = [Heading("Which source helps, and does similarity find it?", 3),
              Paragraph("Every single source as the target's initialisation (runs with one `source`), mean "
                        "test score over seeds, best first."),
              TableBlock(["target", "shots", "single-source scores (%)", "best"], body)]
    hits: dict[str, list[bool]] = defaultdict(list)
    points: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for r, folder in _runs(out, rows, "spot"):
        cell = (r["task"], r["shots"])
        if cell not in means or not (folder / "run.json").is_file():
            continue
        init = read_json(folder / "run.json", "run record").get("init") or {}
        chosen = init.get("chosen")
        if chosen not in means[cell]:
            continue
        best = max(means[cell].values())
        hits[r["label"]].append(means[cell][chosen] >= best - HIT_MARGIN)
        pt = [x["metrics"][primary_metric(r["task"])] for x in rows if x["method"] == "pt" and x["task"] == r["task"]
              and x["shots"] == r["shots"]]
        reference = sum(pt) / len(pt) if pt else 0.0
        for source, similarity in (init.get("similarity") or {}).items():
            if source in means[cell]:
                points[r["label"]].append((similarity, means[cell][source] - reference, r["task"]))
    for label, outcomes in hits.items():
        blocks.append(Paragraph(
            f"**{label}** chose a source within {100 * HIT_MARGIN:.0f} point of the best single source in "
            f"{sum(outcomes)} of {len(outcomes)} runs ({100 * sum(outcomes) / len(outcomes):.0f} %)."))
    if points:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for label, pts in points.items():
            ax.scatter([p[0] for p in pts], [100 * p[1] for p in pts], label=label, alpha=0.7)
        ax.axhline(0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("similarity of the early target prompt to the source (cosine)")
        ax.set_ylabel("single-source score − pt (points)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = report_dir / "similarity_vs_gain.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        blocks.append(Figure(path, "Similarity SPoT measured (x, per run and source) against what that source "
                                   "brought as a single-source initialisation over prompt tuning from the origin "
                                   "(y, mean over seeds). A similarity that finds the right source rises to the "
                                   "right."))
    return blocks


# ---- ablations and sensitivity ----------------------------------------------------------------------
def _variants(suite, rows: list[dict]) -> list:
    from promptvec.experiments.methods import METHODS

    by_name = defaultdict(list)
    for m in suite.methods:
        by_name[m.name].append(m)
    blocks = []
    for name, variants in by_name.items():
        if len(variants) < 2:
            continue
        keys = sorted({k for v in variants for k in v.settings})
        varying = [k for k in keys if len({repr(v.settings.get(k)) for v in variants}) > 1]
        tasks = [t for t in suite.tasks if any(r["method"] == name and r["task"] == t for r in rows)]
        body = []
        for v in variants:
            cells = []
            for task in tasks:
                values = [r["metrics"][primary_metric(task)] for r in rows if r["label"] == v.display
                          and r["task"] == task]
                cells.append(summarize(values).format() if values else "–")
            defaults = METHODS[name].Settings.model_fields
            body.append([v.display, ", ".join(f"{k}={v.settings.get(k, defaults[k].default)}" for k in varying) or "–",
                         *cells])
        blocks += [Heading(f"Variants of {name}", 3),
                   Paragraph(f"Every `{name}` configuration of the suite (ablations, sensitivity studies), test "
                             "score in % (mean ± std over seeds); '–' = not run on that task."),
                   TableBlock(["variant", "settings that differ", *tasks], body)]
    return blocks


# ---- DTVG -----------------------------------------------------------------------------------------
def _dtvg(suite, out: Path, rows: list[dict], report_dir: Path) -> list:
    runs = [(r, f, module_log(f)) for r, f in _runs(out, rows, "dtvg")]
    runs = [(r, f, log) for r, f, log in runs if log]
    if not runs:
        return []
    table = []
    for r, folder, log in runs:
        names = read_json(folder / "run.json", "run record")["init"]["sources"]
        groups = [tuple(int(x) for x in e["group"]) for e in log]
        sizes = [sum(g) for g in groups]
        changes = sum(a != b for a, b in zip(groups, groups[1:], strict=False))
        orders = [tuple(sorted(range(len(names)), key=lambda i, e=e: -e["similarity"][i])) for e in log]
        reordered = sum(o != orders[0] for o in orders) / len(orders)
        share = {n: sum(g[i] for g in groups) / len(groups) for i, n in enumerate(names)}
        members = ", ".join(f"{n} {100 * s:.0f}%" for n, s in sorted(share.items(), key=lambda kv: -kv[1]) if s > 0)
        table.append([r["label"], r["task"], str(r["seed"]), f"{sum(sizes) / len(sizes):.2f}", str(changes),
                      f"{100 * reordered:.0f}%", members or "none"])
    blocks = [Heading("Dynamic Task Vector Grouping: the group over training"),
              Paragraph("The group is chosen again at every training step. Per run: the mean group size, how many "
                        "times the group changed, the share of steps whose ranking of sources by target similarity "
                        "differs from the first step's (similarity changes during training), and how often each "
                        "source was in the group."),
              TableBlock(["variant", "target", "seed", "mean size", "changes", "re-ranked steps", "membership"],
                         table)]
    default = next((m.display for m in suite.methods if m.name == "dtvg" and
                    m.settings.get("grouping", "kc") == "kc"), runs[0][0]["label"])
    shown = {}
    for r, folder, log in runs:
        if r["label"] == default and r["task"] not in shown:
            shown[r["task"]] = (r, folder, log)
    for task, (r, folder, log) in shown.items():
        names = read_json(folder / "run.json", "run record")["init"]["sources"]
        path = report_dir / f"dtvg-timeline-{_slug(task)}.png"
        _timeline(log, names, f"{r['label']} on {task} (seed {r['seed']})", path)
        blocks.append(Figure(path, f"DTVG grouping timeline, {task}: top — which sources are in the group at "
                                        "each step (filled); bottom — target similarity TS of every source over "
                                        "steps (sources below 0 cannot join)."))
    return blocks


def _timeline(log: list[dict], names: list[str], title: str, path: Path) -> None:
    steps = [e["step"] for e in log]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 1.2 + 0.55 * len(names) + 2.6), sharex=True,
                                      gridspec_kw={"height_ratios": [max(1, len(names)) * 0.55, 2.6]})
    grid = [[e["group"][i] for e in log] for i in range(len(names))]
    top.imshow(grid, aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest",
               extent=(min(steps) - 0.5, max(steps) + 0.5, len(names) - 0.5, -0.5))
    top.set_yticks(range(len(names)), names)
    top.set_title(title)
    for i, name in enumerate(names):
        bottom.plot(steps, [e["similarity"][i] for e in log], label=name)
    bottom.axhline(0, color="grey", lw=0.8, ls="--")
    bottom.set_xlabel("training step")
    bottom.set_ylabel("target similarity")
    bottom.legend(fontsize=7, ncol=min(4, len(names)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- Fusion ---------------------------------------------------------------------------------------
def _fusion(out: Path, rows: list[dict], report_dir: Path) -> list:
    runs = [(r, log) for r, f in _runs(out, rows, "fusion") if (log := module_log(f))]
    if not runs:
        return []
    blocks = [Heading("Dynamic Prompt Fusion: scheduling weights and gate")]
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
            path = report_dir / f"fusion-schedule-{_slug(r['label'])}-{_slug(r['task'])}.png"
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- ATTEMPT --------------------------------------------------------------------------------------
def _attempt(out: Path, rows: list[dict], report_dir: Path) -> list:
    per_target: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r, folder in _runs(out, rows, "attempt"):
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


def _slug(text: str) -> str:
    name = Path(text).stem if text.endswith((".yaml", ".yml")) else text
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name).strip("-") or "x"
