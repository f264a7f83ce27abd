"""Figures for reports (matplotlib, Agg backend, PNG). Later issues register more figure makers
(similarity heatmaps, grouping timelines) in :data:`FIGURE_MAKERS`; the report calls them all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptvec.evaluation.stats import summarize  # noqa: E402
from promptvec.registry import Registry  # noqa: E402
from promptvec.suites.document import Figure, save_figure  # noqa: E402

FigureMaker = Callable[[object, list[dict], Path], list[Figure]]
FIGURE_MAKERS: Registry[FigureMaker] = Registry("figure")


def figure_maker(fn: FigureMaker) -> FigureMaker:
    """Register a report figure under its function name (the report draws every one, in order)."""
    return FIGURE_MAKERS.add(fn.__name__, fn)


def primary_metric(task: str) -> str:
    """The task's primary metric; a multi-task run (``a+b``) is selected on their ``mean``."""
    from promptvec.tasks import get_task

    if "+" in task and not Path(task).is_file():
        return "mean"
    return get_task(task).primary_metric


MARKERS = "osD^vP*Xhp<>"


def method_styles(methods: list[str]) -> dict[str, dict]:
    """A distinct colour and marker per method (20 colours × 12 markers), so that a dozen methods stay
    tellable apart in print and for colour-blind readers."""
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    return {m: {"color": colours[(2 * i) % 20 + (2 * i // 20) % 2], "marker": MARKERS[i % len(MARKERS)]}
            for i, m in enumerate(methods)}


def chance_level(task: str) -> float | None:
    """The score of guessing for the task's primary metric, where it is a constant: accuracy 1/C, MCC and
    correlations 0; None for F1-type metrics (they depend on the label balance)."""
    from promptvec.tasks import get_task

    if "+" in task and not Path(task).is_file():
        return None
    spec = get_task(task)
    metric = spec.primary_metric
    if metric == "acc" and spec.label_names:
        return 1.0 / len(spec.label_names)
    return 0.0 if metric in ("mcc", "pearson", "spearman") else None


def _ci95(values: list[float]) -> float:
    """Half-width of the 95 % t confidence interval of the mean (0 for a single value)."""
    from scipy import stats

    s = summarize(values)
    return 0.0 if s.n < 2 else float(stats.t.ppf(0.975, s.n - 1) * s.std / s.n ** 0.5)


@figure_maker
def scores_by_task(suite, rows: list[dict], out: Path) -> list[Figure]:
    """Grouped bars: each method's mean test score per task with ±1 std error bars (over seeds)."""
    if not rows:
        return []
    methods = [m.display for m in suite.methods]
    styles = method_styles(methods)
    tasks = list(suite.tasks)
    shots = max((r["shots"] for r in rows if r["shots"]), default=0)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(tasks) + 2), 4))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        xs, means, cis = [], [], []
        for t, task in enumerate(tasks):
            metric = primary_metric(task)
            values = [r["metrics"][metric] for r in rows if r["label"] == method and r["task"] == task
                      and (r["shots"] in (0, shots))]
            if values:
                xs.append(t + (i - (len(methods) - 1) / 2) * width)
                means.append(100 * summarize(values).mean)
                cis.append(100 * _ci95(values))
        ax.errorbar(xs, means, yerr=cis, linestyle="none", capsize=3, markersize=6, label=method, **styles[method])
    for t, task in enumerate(tasks):
        chance = chance_level(task)
        if chance is not None:
            ax.hlines(100 * chance, t - 0.45, t + 0.45, colors="grey", linestyles=":", linewidth=1.2,
                      label="chance" if t == 0 else "_nolegend_")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{t}\n({primary_metric(t)})" for t in tasks])
    ax.set_ylabel("test score (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(methods) + 1, 4),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    path = out / "scores_by_task.png"
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    caption = (f"Mean test score per task and method{f' at {shots} shots' if shots else ''} (dots) with the 95 % "
               "confidence interval of the mean over seeds (whiskers; t distribution); methods without training "
               "have one value per task. Dotted grey: chance (accuracy 1/number of labels; MCC and correlations 0).")
    return [Figure(path, caption)]


@figure_maker
def few_shot_curves(suite, rows: list[dict], out: Path) -> list[Figure]:
    """Score against the number of training examples, one panel per task (needs ≥ 2 shot values)."""
    shot_values = sorted({r["shots"] for r in rows if r["shots"] is not None})
    if len([s for s in shot_values if s]) < 2:
        return []
    tasks = list(suite.tasks)
    styles = method_styles([m.display for m in suite.methods])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = primary_metric(task)
        by_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r["task"] == task and r["shots"] is not None:
                by_method[r["label"]][r["shots"]].append(r["metrics"][metric])
        for method, points in by_method.items():
            free = set(points) == {0}  # a training-free baseline: one value drawn across the axis
            xs = shot_values if free else sorted(points)
            stats = [summarize(points[0] if free else points[x]) for x in xs]
            style = styles.get(method, {})
            ax.errorbar(xs, [100 * s.mean for s in stats], yerr=[100 * s.std for s in stats], capsize=3,
                        label=method, linestyle="--" if free else "-", color=style.get("color"),
                        marker="" if free else style.get("marker", "o"))
        chance = chance_level(task)
        if chance is not None:
            ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1.2, label="chance")
        ax.set_xscale("symlog", linthresh=10) if 0 in shot_values else ax.set_xscale("log")
        ax.set_xlim(-0.5 if 0 in shot_values else shot_values[0] / 1.3, shot_values[-1] * 1.3)
        ax.set_xticks(shot_values)  # every shot value labelled, not the log scale's powers of ten
        ax.set_xticklabels([str(x) for x in shot_values])
        ax.minorticks_off()
        ax.set_title(task)
        ax.set_xlabel("training examples (shots)")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / "few_shot_curves.png"
    save_figure(fig, path, dpi=120)
    return [Figure(path, "Few-shot curves: mean test score (± std over seeds) against the number of training "
                         "examples; dashed lines are training-free baselines.")]


def similarity_heatmap(tasks: list[str], matrix: list[list[float]], path: Path, title: str,
                       norms: dict[str, float] | None = None) -> Path:
    """A task × task heatmap with the value in every cell (NaN cells left blank) and, optionally,
    each task's vector norm in its row label."""
    import math

    import numpy as np

    values = np.array([[np.nan if v is None or math.isnan(v) else v for v in row] for row in matrix], dtype=float)
    size = max(4.0, 0.7 * len(tasks) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    labels = [f"{t} (‖τ‖ {norms[t]:.1f})" if norms and t in norms else t for t in tasks]
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(labels)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            text = "n/a" if np.isnan(values[i, j]) else f"{values[i, j]:.2f}"
            color = "white" if not np.isnan(values[i, j]) and abs(values[i, j]) > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title)
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return path


def forest_plot(effects: list, pooled, path: Path, title: str) -> Figure:
    """Per task the difference with its 95 % interval (points), and the pooled random-effects estimate
    as a diamond with its interval; a vertical line at 0."""
    labels = [e.task for e in effects] + ["pooled (random effects)"]
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * len(labels) + 1.2))
    ys = list(range(len(labels) - 1, -1, -1))
    for y, e in zip(ys, effects, strict=False):
        ax.errorbar([100 * e.difference], [y], xerr=[[100 * (e.difference - e.low)], [100 * (e.high - e.difference)]],
                    fmt="s", color="tab:blue", capsize=3, markersize=5)
    if pooled is not None:
        low, mid, high = 100 * pooled.re_low, 100 * pooled.re_estimate, 100 * pooled.re_high
        ax.fill([low, mid, high, mid], [0, 0.3, 0, -0.3], color="tab:red")
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.set_xlabel("difference in test score (points)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return Figure(path, f"{title}: per task the mean difference over seeds with its 95 % t interval (squares), "
                  "and the random-effects pooled estimate with its 95 % interval (diamond).")
