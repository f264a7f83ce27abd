"""Report sections about transfer: for every method run under several settings (ablations,
sensitivity studies) one table of those variants; with a single-source sweep, which source helps
and whether similarity finds it; then each method's own sections (``Method.report_sections``:
DTVG's groups, Fusion's schedule, ATTEMPT's attention)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptvec.evaluation.stats import summarize  # noqa: E402
from promptvec.experiments.plots import primary_metric  # noqa: E402
from promptvec.io import read_json  # noqa: E402
from promptvec.suites.document import Figure, Heading, Paragraph, TableBlock, save_figure  # noqa: E402
from promptvec.suites.method import METHODS  # noqa: E402
from promptvec.suites.run_logs import method_runs  # noqa: E402


def transfer_sections(suite, out: Path, rows: list[dict], report_dir: Path) -> list:
    hooks = [METHODS[name] for name in dict.fromkeys(m.name for m in suite.methods)]
    return (_variants(suite, rows) + _source_choice(out, rows, report_dir)
            + [block for method in hooks for block in method.report_sections(suite, out, rows, report_dir)])


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
    for r, folder in method_runs(out, rows, "spot"):
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
        save_figure(fig, path, dpi=120, bbox_inches="tight")
        blocks.append(Figure(path, "Similarity SPoT measured (x, per run and source) against what that source "
                                   "brought as a single-source initialisation over prompt tuning from the origin "
                                   "(y, mean over seeds). A similarity that finds the right source rises to the "
                                   "right."))
    return blocks


# ---- ablations and sensitivity ----------------------------------------------------------------------
def _variants(suite, rows: list[dict]) -> list:
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
            setting = {k: v.settings.get(k, defaults[k].default) for k in varying}
            # a None default means "decided by the method" (e.g. single-source's first listed source)
            body.append([v.display, ", ".join(f"{k}={'default' if x is None else x}" for k, x in setting.items())
                         or "–", *cells])
        blocks += [Heading(f"Variants of {name}", 3),
                   Paragraph(f"Every `{name}` configuration of the suite (ablations, sensitivity studies), test "
                             "score in % (mean ± std over seeds); '–' = not run on that task."),
                   TableBlock(["variant", "settings that differ", *tasks], body)]
    return blocks


