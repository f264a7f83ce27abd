"""Report sections about a suite's source prompts and their analyses (TPV paper; docs/methods.md §2):
the source prompts, similarity heatmaps, cross-origin transfer and combinations. Each section
appears only when the suite produced its data."""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

from promptvec.evaluation.stats import summarize
from promptvec.experiments.analyses import load_results
from promptvec.experiments.plots import primary_metric, similarity_heatmap
from promptvec.suites.document import Figure, Heading, Paragraph, TableBlock, save_figure
from promptvec.suites.plan import SOURCE_LABEL


def source_sections(suite, out: Path, rows: list[dict], report_dir: Path) -> list:
    blocks: list = []
    sources = [r for r in rows if r["label"] == SOURCE_LABEL]
    similarity = load_results(out, "similarity")
    if sources:
        blocks += _source_table(suite, sources, similarity)
        blocks += _source_curves(suite, out, sources, report_dir)
    if similarity:
        blocks += _similarity(similarity, report_dir)
    cross = load_results(out, "cross-origin")
    if cross:
        blocks += _cross_origin(cross)
    combos = load_results(out, "combinations")
    if combos:
        blocks += _combinations(combos)
    return blocks


def _source_table(suite, sources: list[dict], similarity: dict | None) -> list:
    origins = sorted({r["origin"] for r in sources})
    tasks = list(dict.fromkeys(r["task"] for r in sources))
    table = []
    for task in tasks:
        cells = []
        for origin in origins:
            match = [r for r in sources if r["task"] == task and r["origin"] == origin]
            cells.append(f"{100 * match[0]['metrics'][primary_metric(task)]:.1f} (step {match[0]['best_step']})"
                         if match else "–")
        table.append([task, primary_metric(task), *cells])
    norms = (similarity or {}).get("tau_norm", {})  # measured by the similarity analysis, when the suite runs it
    if norms:
        for row, task in zip(table, tasks, strict=True):
            row.append("–" if norms.get(task) is None else f"{norms[task]:.2f}")
    s = suite.sources
    return [Heading("Source prompts"),
            Paragraph(f"Prompt tuning on each source task from every origin ({s.shots or 'all'} training examples, "
                      f"{s.steps or suite.budget.steps} steps; the checkpoint is chosen on validation "
                      f"{'among all steps' if s.select_initial else 'among trained steps only, so no vector is zero'}"
                      "). Test score in % with the chosen step"
                      + ("; ‖τ‖ = norm of the task prompt vector (tuned − origin), averaged over origins" if norms
                         else "") + ". Prompts and vectors are in the suite's store "
                      "(`promptvec store list --store <suite>/store`)."),
            TableBlock(["task", "metric", *[f"origin {o}" for o in origins], *(["‖τ‖"] if norms else [])], table)]


def _source_curves(suite, out: Path, sources: list[dict], report_dir: Path) -> list:
    """Validation score over training steps of every source run: whether the sources had converged
    (a curve still climbing at its last step was trained too briefly)."""
    import matplotlib.pyplot as plt

    from promptvec.experiments.plots import method_styles
    from promptvec.io import read_json
    from promptvec.suites.plan import RUNS_DIR

    curves = {}
    for r in sources:
        record = out / RUNS_DIR / r["run_id"] / "run.json"
        if record.is_file():
            metric = primary_metric(r["task"])
            history = [(h["step"], h["validation"].get(metric)) for h in read_json(record, "run record")["history"]]
            curves[f"{r['task']} (origin {r['origin']})"] = [(x, y) for x, y in history if y is not None]
    if not curves:
        return []
    styles = method_styles(list(curves))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], label=name, **styles[name])
    ax.set_xlabel("training step")
    ax.set_ylabel("validation score (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    path = report_dir / "source_validation_curves.png"
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    last = {name: points[-1][1] - max(y for _, y in points[: max(1, len(points) // 2)]) for name, points in
            curves.items() if len(points) > 2}
    climbing = sorted(name for name, gain in last.items() if gain > 0.02)
    note = (f" Still climbing by more than 2 points in the second half of training: {', '.join(climbing)} — "
            "more steps would likely help these sources." if climbing else
            " None gains more than 2 points in the second half of training: the sources have plateaued.")
    return [Figure(path, "Validation score of every source run over its training steps (the first point is the "
                         "untrained origin)." + note)]


def _group_means(tasks: list[str], groups: dict[str, str], matrix: list[list[float]]) -> tuple[float, float, float]:
    """Mean similarity of same-group pairs, of different-group pairs, and of each task across origins."""
    same: list[float] = []
    other: list[float] = []
    for i, j in combinations(range(len(tasks)), 2):
        (same if groups[tasks[i]] == groups[tasks[j]] else other).append(matrix[i][j])
    diagonal = [matrix[i][i] for i in range(len(tasks)) if not math.isnan(matrix[i][i])]
    mean = lambda v: sum(v) / len(v) if v else math.nan  # noqa: E731
    return mean(same), mean(other), mean(diagonal)


def _similarity(result: dict, report_dir: Path) -> list:
    tasks, groups = result["tasks"], result["groups"]
    blocks: list = [Heading("Task similarity"), Paragraph(
        "Similarity of the tuned prompts and of their task prompt vectors between tasks, averaged over all origin "
        f"pairs (origins {result['origins']}); "
        + ("the diagonal compares a task's prompts/vectors from *different* origins (how origin-independent it is)"
           if len(result["origins"]) > 1 else "the diagonal is empty: with one origin there is no second prompt of "
           "the same task to compare with (the similarity of a vector with itself would be 1)")
        + ". Types: " + ", ".join(f"{t} = {groups[t]}" for t in tasks) + ".")]
    for measure, matrices in result["matrices"].items():
        for kind, title, norms in (("prompt", "prompts", result.get("prompt_norm")),
                                   ("tpv", "task prompt vectors", result.get("tau_norm"))):
            matrix = [[math.nan if v is None else v for v in row] for row in matrices[kind]]
            path = similarity_heatmap(tasks, matrix, report_dir / f"similarity_{kind}_{measure}.png",
                                      f"{measure} similarity of {title}", norms if kind == "tpv" else None)
            same, other, diagonal = _group_means(tasks, groups, matrix)
            verdict = ("more similar" if same > other else "not more similar")
            caption = (f"{measure} similarity of {title} (mean over origin pairs). Same-type pairs average "
                       f"{same:.2f}, different-type pairs {other:.2f}: same-type tasks are **{verdict}** here; "
                       + (f"a task with itself across origins averages {diagonal:.2f}." if not math.isnan(diagonal)
                          else "the diagonal is empty (one origin)."))
            blocks.append(Figure(path, caption))
    return blocks


def _cross_origin(rows: list[dict]) -> list:
    table, kept = [], 0
    for row in rows:
        s = row["summary"]
        original, mixed = summarize(row["original"]), summarize(row["mixed"])
        p = s["p_value"]
        significant = p is not None and not math.isnan(p) and p < 0.05
        kept += (not significant) or s["difference"] >= 0
        table.append([row["task"], original.format(), mixed.format(), f"{100 * s['difference']:+.1f}", s["test"],
                      "–" if p is None or math.isnan(p) else f"{p:.2g}", f"{s['tau_norm']:.2f}",
                      f"{s['origin_norm']:.2f}"])
    return [Heading("Cross-origin transfer"), Paragraph(
        "Each task's vector from origin i applied to every other origin j (*mixed*: θ0_j + τ_i) against the prompts "
        "trained from the origins (*original*), test score in %, mean ± std over origins / origin pairs; Welch's "
        f"t-test, unadjusted. Mixed init kept the original score (not significantly worse) on {kept} of "
        f"{len(rows)} tasks. A large ‖τ‖ relative to ‖θ0‖ means the tuned prompt hardly depends on its origin."),
        TableBlock(["task", "original", "mixed", "Δ (points)", "test", "p", "‖τ‖", "‖θ0‖"], table)]


def _combinations(results: list[dict]) -> list:
    table, kept, total = [], 0, 0
    for result in results:
        pair = " + ".join(result["tasks"])
        for task in result["tasks"]:
            single, combined = result["single"][task], result["test"][task]
            total += 1
            kept += combined >= single - 0.02
            table.append([pair, f"{result['best_lambda']:.2f}", task, f"{100 * single:.1f}",
                          f"{100 * combined:.1f}", f"{100 * (combined - single):+.1f}"])
    return [Heading("Combinations"), Paragraph(
        "θ0 + λ(τ_a + τ_b) from one origin, λ chosen on the 0…1 grid (step 0.05) by the mean validation score over "
        "the combined tasks; test score in % of the combination on each task against that task's own prompt. "
        f"The combination kept the single-task score (within 2 points) on {kept} of {total} task/pair cells."),
        TableBlock(["combination", "λ", "task", "single-task prompt", "combination", "Δ (points)"], table)]
