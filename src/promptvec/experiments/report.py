"""`promptvec report DIR`: Markdown + self-contained HTML from a suite folder.

Tables follow the papers' shape: methods as rows, tasks (× shots) as columns, mean ± std over
seeds, each method compared with the suite's baseline (paired / Welch / one-sample t-test, then
Holm or Bonferroni over all comparisons of the table); significant differences are marked.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from collections.abc import Set as AbstractSet
from pathlib import Path

from pydantic import ValidationError

from promptvec.errors import ConfigError, describe_validation_error
from promptvec.evaluation.stats import (
    adjust,
    compare,
    minimal_detectable_difference,
    pool_effects,
    seeds_needed,
    spread_of_differences,
    summarize,
    task_effect,
)
from promptvec.experiments.plots import FIGURE_MAKERS, forest_plot, primary_metric
from promptvec.experiments.time_report import time_sections
from promptvec.experiments.tpv_report import source_sections
from promptvec.experiments.transfer_report import transfer_sections
from promptvec.io import atomic_write_text, output_folder, path_component, read_json
from promptvec.suites.document import Document, Heading, Paragraph, TableBlock
from promptvec.suites.plan import SOURCE_LABEL
from promptvec.suites.schema import SuiteSpec

REPORT_DIR = "report"
MARKS = [("▲", "▼"), ("△", "▽"), ("⁺", "⁻")]  # significance marks against the 1st, 2nd, 3rd baseline


def _load(out: Path) -> tuple[SuiteSpec, list[dict]]:
    if not (out / "suite.json").is_file():
        raise ConfigError(f"{out} is not a suite folder (no suite.json)",
                          "pass the --out folder of `promptvec experiment run`")
    raw = read_json(out / "suite.json", "suite")
    try:
        suite = SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{out / 'suite.json'} is not a suite this promptvec can read: "
                          f"{describe_validation_error(exc)}", "restore the file, or re-run the suite with "
                          "`promptvec experiment run` (completed runs are kept)") from None
    results = out / "results.jsonl"
    return suite, _result_rows(results) if results.is_file() else []


#: what every results row holds, which the report reads
_ROW_FIELDS = {"label": str, "task": str, "metrics": dict, "run_id": str}


#: results.jsonl is rewritten whole (atomically) from the run folders, so a damaged one is rebuilt so
_REBUILD = "re-run `promptvec experiment run` on the suite: it rewrites results.jsonl from the run folders " \
           "(completed runs are not trained again)"


def _result_rows(path: Path) -> list[dict]:
    """The rows of results.jsonl. The runner writes the file whole and atomically, so an unreadable
    line (even the last) or a row without the fields the report needs is damage, refused by its line
    rather than left out of the report."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{number}: not a JSON row (the file is damaged)", _REBUILD) from None
        bad = [k for k, kind in _ROW_FIELDS.items() if not isinstance(row, dict) or not isinstance(row.get(k), kind)]
        if bad:
            raise ConfigError(f"{path}:{number}: the row lacks {bad} (or they have the wrong type)", _REBUILD)
        rows.append(row)
    return rows


def training_free(suite: SuiteSpec) -> set[str]:
    """Labels of methods that do not train (their one value stands in every shots column)."""
    from promptvec.suites.method import METHODS

    return {m.display for m in suite.methods if "shots" not in METHODS[m.name].axes(m.options)}


def _columns(suite: SuiteSpec, rows: list[dict]) -> list[tuple[str, int | None]]:
    free = training_free(suite)
    shots = sorted({r["shots"] for r in rows if r["label"] not in free}, key=lambda s: (s is None, s or 0))
    return [(task, s) for task in suite.tasks for s in (shots or [None])]


def _values(rows, label, task, shots, free: AbstractSet[str] = frozenset()) -> dict:
    """Scores keyed by (seed, origin) for one cell; a training-free method fills every shots column."""
    metric = primary_metric(task)
    wanted = (shots, 0) if label in free else (shots,)
    cell = [r for r in rows if r["label"] == label and r["task"] == task and r["shots"] in wanted]
    return {(r["seed"], r["origin"]): r["metrics"][metric] for r in cell}


def copied_cells(suite: SuiteSpec, rows: list[dict]) -> dict[tuple[str, str, int | None], str]:
    """Cells (label, task, shots) whose every run is a copy of a run of one other method (a reused
    identical training, e.g. ``auto`` falling back to the origin = ``pt``) -> that method's label."""
    by_folder = {path_component(m.display, m.name): m.display for m in suite.methods}

    def copied_from(row: dict) -> str | None:
        parts = Path(row.get("reused_from") or "").parts  # runs/<method folder>/<task>/...
        return by_folder.get(parts[1]) if len(parts) > 2 else None

    cells: dict[tuple[str, str, int | None], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["label"], r["task"], r["shots"]), []).append(r)
    copies: dict[tuple[str, str, int | None], str] = {}
    for key, cell in cells.items():
        origins = {copied_from(r) for r in cell}
        label = origins.pop() if len(origins) == 1 else None
        if label is not None:
            copies[key] = label
    return copies


def across_tasks_sections(suite: SuiteSpec, rows: list[dict], columns: list[tuple[str, int | None]],
                          free: AbstractSet[str], report_dir: Path) -> list:
    """``stats.across_tasks``: each comparison over all tasks (a t-test of the per-task mean differences,
    DerSimonian–Laird's random-effects estimate, a forest plot); the primary comparison is tested at α
    alone, the others are corrected together (``stats.correction``)."""
    specs = suite.stats.across_tasks
    if not specs:
        return []
    results = []
    for spec in specs:
        for shots in dict.fromkeys(s for _, s in columns):
            effects = [e for task, s in columns if s == shots
                       if (e := task_effect(task, _values(rows, spec.method, task, shots, free),
                                            _values(rows, spec.baseline, task, shots, free))) is not None]
            results.append((spec, shots, effects, pool_effects(effects)))
    secondary = {i: pooled.t_p_value for i, (spec, _, _, pooled) in enumerate(results)
                 if not spec.primary and pooled is not None}
    adjusted = dict(zip(secondary, adjust(list(secondary.values()), suite.stats.correction), strict=True))
    blocks: list = [Heading("Across tasks"), Paragraph(
        "Each comparison over all tasks, each task one value (the mean over seeds of the paired differences). "
        "The t-test asks whether the mean over tasks differs from 0; the random-effects estimate (DerSimonian–"
        "Laird) weights tasks by precision and widens its interval by the between-task variance τ² (I²: the "
        "share of the spread that lies between tasks). The primary comparison is tested alone at "
        f"α = {suite.stats.alpha}; the others are adjusted together ({suite.stats.correction}).")]
    table = []
    for i, (spec, shots, effects, pooled) in enumerate(results):
        name = f"{spec.method} vs {spec.baseline}{_shots_label(shots)}" + (" (primary)" if spec.primary else "")
        if pooled is None:
            table.append([name, str(len(effects)), "–", "–", "–", "–", "–"])
            continue
        p = pooled.t_p_value if spec.primary else adjusted[i]
        table.append([name, str(pooled.k), f"{100 * pooled.mean:+.1f} [{100 * pooled.t_low:+.1f}, "
                      f"{100 * pooled.t_high:+.1f}]", f"{pooled.t_p_value:.3g}" + ("" if spec.primary else
                                                                                  f" (adj. {p:.3g})"),
                      f"{100 * pooled.re_estimate:+.1f} [{100 * pooled.re_low:+.1f}, {100 * pooled.re_high:+.1f}]",
                      f"{10000 * pooled.tau2:.1f} / {100 * pooled.i2:.0f} %",
                      "yes" if p < suite.stats.alpha else "no"])
        slug = path_component(f"forest-{spec.method}-vs-{spec.baseline}{_shots_label(shots)}", "forest")
        blocks.append(forest_plot(effects, pooled, report_dir / f"{slug}.png", name))
        blocks.append(TableBlock(["task", "Δ (points)", "95 % interval", "seeds"], [
            [e.task, f"{100 * e.difference:+.1f}", f"[{100 * e.low:+.1f}, {100 * e.high:+.1f}]", str(e.n)]
            for e in effects], caption=f"{name}: per task"))
    blocks.insert(2, TableBlock(["comparison", "tasks", "mean Δ over tasks [95 % CI]", "p (t over tasks)",
                                 "random effects [95 % CI]", "τ² (points²) / I²", "significant"], table))
    return blocks


def _test_sizes(rows: list[dict]) -> str:
    """How many test examples the runs were scored on: the common count, and the tasks with another one (a
    split smaller than the budget is scored whole)."""
    per_task: dict[str, int] = {}
    for r in rows:
        if r.get("n_test"):
            per_task[r["task"]] = max(per_task.get(r["task"], 0), r["n_test"])
    if not per_task:
        return ""
    common = Counter(per_task.values()).most_common(1)[0][0]
    others = ", ".join(f"{task} {n}" for task, n in per_task.items() if n != common)
    return (f"Every run of a task is scored on the same {common} seeded test examples"
            + (f" ({others})." if others else "."))


def _shots_label(shots: int | None) -> str:
    return "" if shots is None else f" {shots}-shot"


def _cell(task: str, shots: int | None) -> str:
    return f"{task}{f' {shots}-shot' if shots is not None else ''}"


def comparison_summaries(comparisons: dict, adjusted: dict, alpha: float, baselines: list[str],
                         methods: list[str]) -> list[str]:
    """One paragraph per (method, baseline): where the method is significantly better, where worse,
    and the range of the differences it could not tell from zero — wins, ties and losses alike."""
    paragraphs = []
    for baseline in baselines:
        for label in methods:
            cells = [(key, c) for key, c in comparisons.items() if key[0] == baseline and key[1] == label]
            if not cells:
                continue
            better = [(k, c) for k, c in cells if k in adjusted and adjusted[k] < alpha and c.difference > 0]
            worse = [(k, c) for k, c in cells if k in adjusted and adjusted[k] < alpha and c.difference <= 0]
            ties = [(k, c) for k, c in cells if k in adjusted and adjusted[k] >= alpha]
            untested = [(k, c) for k, c in cells if k not in adjusted]

            def listed(group) -> str:
                return ", ".join(f"{_cell(k[2], k[3])} {100 * c.difference:+.1f}" for k, c in group)

            parts = [f"**{label}** vs **{baseline}** ({len(cells)} cell{'s' if len(cells) > 1 else ''}):"]
            parts.append(f"better on {len(better)} ({listed(better)})" if better else "better on none")
            parts.append(f"worse on {len(worse)} ({listed(worse)})" if worse else "worse on none")
            if ties:
                low, high = (100 * min(c.difference for _, c in ties), 100 * max(c.difference for _, c in ties))
                spread = (f"difference {low:+.1f} points" if len(ties) == 1
                          else f"differences {low:+.1f} to {high:+.1f} points")
                parts.append(f"no significant difference on {len(ties)} ({spread})")
            if untested:
                parts.append(f"untested on {len(untested)} (single values or no variation: {listed(untested)})")
            paragraphs.append(parts[0] + " " + "; ".join(parts[1:]) + ".")
    return paragraphs


POWER = 0.8
TARGET_DIFFERENCE = 0.03  # the difference a transfer study should be able to see (3 points)


def power_statement(spreads: list[tuple[float, int]], family: int, alpha: float) -> str:
    """What this table could have detected: the median seed-to-seed spread of the tested differences and
    the smallest true difference found with 80 % power uncorrected and at Holm's strictest level."""
    if not spreads or family == 0:
        return ""
    sds = sorted(sd for sd, _ in spreads)
    sd, n = sds[len(sds) // 2], sorted(count for _, count in spreads)[len(spreads) // 2]
    strict = alpha / family
    needed = seeds_needed(sd, TARGET_DIFFERENCE, strict, POWER)
    return (f"Power: over n = {n} seeds the tested differences vary from seed to seed by {100 * sd:.1f} points "
            f"(standard deviation; median over {len(spreads)} comparisons, range {100 * sds[0]:.1f}–"
            f"{100 * sds[-1]:.1f}). At that spread a true difference is detected with {POWER:.0%} power only if it "
            f"is at least {100 * minimal_detectable_difference(sd, n, alpha, POWER):.1f} points at α = {alpha} "
            f"uncorrected, and {100 * minimal_detectable_difference(sd, n, strict, POWER):.1f} points at Holm's "
            f"strictest level α/{family}; detecting {100 * TARGET_DIFFERENCE:.0f} points there would take "
            + (f"{needed} seeds." if needed else "more than 10,000 seeds.") + " A difference smaller than that is "
            "a tie this table cannot resolve, not evidence of no effect.")


def build_report(out: str | Path, report_dir: str | Path | None = None) -> Path:
    """Write the report of the suite run in ``out`` (``report.md``, ``report.html``, results tables and
    figures; default folder ``out/report``) and return its folder."""
    out = Path(out)
    suite, all_rows = _load(out)
    rows = [r for r in all_rows if r["label"] != SOURCE_LABEL]
    free = training_free(suite)
    report_dir = Path(report_dir) if report_dir else out / REPORT_DIR
    output_folder(report_dir, "report folder")
    doc = Document(f"Experiment report: {suite.name}")
    if suite.description:
        doc.add(Paragraph(suite.description.strip()))
    methods = [m.display for m in suite.methods]
    columns = _columns(suite, rows)
    baselines = suite.stats.baselines

    # ---- comparisons against the baseline(s), corrected together over the whole table ---------------
    # each pair of cells is tested once (pt vs no prompt is no prompt vs pt), and a cell whose runs are
    # all copies of another method's runs is not tested again: it is the same evidence
    copies = copied_cells(suite, rows)
    comparisons, spreads = {}, {}
    for baseline in baselines:
        for label in methods:
            if label == baseline:
                continue
            for task, shots in columns:
                if (label, baseline, task, shots) in comparisons:
                    continue
                a, b = _values(rows, label, task, shots, free), _values(rows, baseline, task, shots, free)
                if a and b:
                    comparisons[(baseline, label, task, shots)] = compare(a, b)
                    spreads[(baseline, label, task, shots)] = spread_of_differences(a, b)
    for baseline, label, task, shots in list(comparisons):  # a copy of X tested where X is tested too
        copy = copies.get((label, task, shots))
        if copy is not None and (copy == baseline or {(baseline, copy, task, shots), (copy, baseline, task, shots)}
                                 & set(comparisons)):
            del comparisons[(baseline, label, task, shots)]
    # single values on both sides cannot be tested: kept out of the correction family, reported as such
    keys = [k for k, c in comparisons.items() if c.test != "none"]
    untested = [k for k, c in comparisons.items() if c.test == "none"]
    adjusted = dict(zip(keys, adjust([comparisons[k].p_value for k in keys], suite.stats.correction), strict=True))

    def table(cols: list[tuple[str, int | None]], name_task: bool = True) -> tuple[list[str], list[list[str]]]:
        header = ["method"] + [(f"{t} ({primary_metric(t)})" if name_task else "") + _shots_label(s)
                               for t, s in cols]
        body = []
        for label in methods:
            cells, means = [], []
            for task, shots in cols:
                values = _values(rows, label, task, shots, free)
                if not values:
                    cells.append("–")
                    continue
                s = summarize(list(values.values()))
                means.append(s.mean)
                mark = ""
                for baseline, (up, down) in zip(baselines, MARKS, strict=False):
                    key, sign = (baseline, label, task, shots), 1
                    if key not in comparisons and (label, baseline, task, shots) in comparisons:
                        key, sign = (label, baseline, task, shots), -1  # tested once, the other way round
                    if key in adjusted and adjusted[key] < suite.stats.alpha:
                        mark += up if sign * comparisons[key].difference > 0 else down
                copy = copies.get((label, task, shots))
                cells.append(s.format() + (" " + mark if mark else "") + (f" (= {copy})" if copy else ""))
            average = f"{100 * sum(means) / len(means):.1f}" if len(means) == len(cols) and means else "–"
            body.append([label + (" (baseline)" if label in baselines else "")] + cells + [average])
        return header + ["average"], body

    doc.add(Heading("Results"))
    seeds = ", ".join(map(str, suite.seeds))
    doc.add(Paragraph(
        f"Test scores in % (mean ± standard deviation over the data/training seeds {seeds}; a single number "
        f"means the method does not depend on the seed). {_test_sizes(rows)} "
        + (" ".join(f"{up}/{down}: significantly better/worse than **{b}**;" for b, (up, down)
                    in zip(baselines, MARKS, strict=False))
           + f" at α = {suite.stats.alpha} after {suite.stats.correction.capitalize()} correction over all "
           f"{len(keys)} comparisons of the table (each pair of cells counted once); no mark means the difference "
           "was not shown to be significant (with few seeds, tests have little power)."
           if baselines and keys else "No significance tests (no baseline set, or nothing to compare yet).")))
    power = power_statement([s for k in keys if (s := spreads[k]) is not None], len(keys), suite.stats.alpha)
    if power:
        doc.add(Paragraph(power))
    shot_values = list(dict.fromkeys(s for _, s in columns))
    if len(columns) <= 8 or len(shot_values) < 2:
        doc.add(TableBlock(*table(columns), caption="Methods × tasks (primary metric of each task)"))
    else:  # many shot values: one methods × shots table per task, so the tables stay readable
        for task in suite.tasks:
            header, body = table([(t, s) for t, s in columns if t == task], name_task=False)
            header[1:-1] = [h.strip() for h in header[1:-1]]
            doc.add(TableBlock(header, body, caption=f"{task} ({primary_metric(task)}): methods × training examples"))
    if copies:
        doc.add(Paragraph("Same runs: " + "; ".join(
            f"{label} on {_cell(task, shots)} = the runs of **{copy}** (each run reused that identical training, "
            "so it is not separate evidence and is not tested again)" for (label, task, shots), copy
            in sorted(copies.items(), key=lambda item: str(item[0]))) + "."))
    if comparisons:
        doc.add(Heading("Summary", 3))
        for paragraph in comparison_summaries(comparisons, adjusted, suite.stats.alpha, baselines, methods):
            doc.add(Paragraph(paragraph))

    if comparisons:
        doc.add(Heading("Comparisons with the baseline" + ("s" if len(baselines) > 1 else ""), 3))
        doc.add(Paragraph("Paired t-test where runs pair up by seed (same few-shot sample), a one-sample t-test "
                          "against a deterministic baseline (one value), Welch's t-test otherwise; p-values are "
                          f"two-sided, adjusted with {suite.stats.correction}."))
        comp_rows = []
        for key in keys:
            baseline, label, task, shots = key
            c = comparisons[key]
            comp_rows.append([label, baseline, task + _shots_label(shots), f"{100 * c.difference:+.1f}",
                              c.test, f"{c.p_value:.3g}", f"{adjusted[key]:.3g}",
                              "yes" if adjusted[key] < suite.stats.alpha else "no"])
        for baseline, label, task, shots in untested:
            c = comparisons[(baseline, label, task, shots)]
            comp_rows.append([label, baseline, task + _shots_label(shots), f"{100 * c.difference:+.1f}",
                              "none (single values or no variation)", "–", "–", "–"])
        doc.add(TableBlock(["method", "baseline", "task", "Δ vs baseline (points)", "test", "p", "adjusted p",
                            "significant"], comp_rows))

    across = across_tasks_sections(suite, rows, columns, free, report_dir)
    for block in across:
        doc.add(block)

    doc.add(Heading("Figures"))
    figures = [fig for maker in FIGURE_MAKERS.values() for fig in maker(suite, rows, report_dir)]
    source_blocks = source_sections(suite, out, all_rows, report_dir) + transfer_sections(suite, out, rows, report_dir)
    for fig in figures:
        doc.add(fig)
    if not figures:
        doc.add(Paragraph("No completed runs yet."))
    for block in source_blocks:
        doc.add(block)

    doc.add(Heading("Where the time went"))
    for block in time_sections(out, all_rows):
        doc.add(block)

    doc.add(Heading("Setup and provenance"))
    fingerprints = sorted({r["model_fingerprint"][:12] for r in rows if r.get("model_fingerprint")})
    versions = rows[0]["versions"] if rows else {}
    budget = suite.budget
    total_time = sum(r.get("wall_time_s") or 0 for r in all_rows)
    doc.add(TableBlock(["item", "value"], [
        ["backbone", f"`{suite.backbone.model}` (embedding fingerprint {', '.join(fingerprints) or '–'})"],
        ["tasks", ", ".join(suite.tasks)],
        ["shots / seeds / origins", f"{suite.shots} / {suite.seeds} / {suite.origins}"],
        ["budget", f"{budget.steps} steps, batch {budget.batch_size} × {budget.grad_accum}, validation every "
                   f"{budget.eval_every} steps on {budget.val_examples} examples (best checkpoint kept), "
                   f"{budget.test_examples} test examples (seed {budget.eval_seed}), {budget.precision}"],
        ["methods", "; ".join(f"{m.display} = `{m.name}` {m.settings}" for m in suite.methods)],
        ["completed runs", f"{len(all_rows)} ({len(all_rows) - len(rows)} source prompts)"],
        ["sum of run wall times", f"{total_time / 60:.1f} min (analyses not included)"],
        ["machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
        ["data hashes", "; ".join(f"{t}: {h[:12]}" for t, h in sorted({(r['task'], r['data_hash'])
                                                                       for r in rows if r.get('data_hash')}))],
    ]))

    doc.add(Heading("Runs", 3))
    doc.add(Paragraph("One row per run (`method/task/shots/origin-seed`). *Best step* is the checkpoint chosen on "
                      "the validation split; **0 means the initial prompt was kept** because no trained checkpoint "
                      "beat it on validation. Training-free methods have no best step."))
    per_run = sorted(all_rows, key=lambda r: r["run_id"])

    def best_step(r: dict) -> str:
        step = r.get("best_step")
        return "–" if step is None else ("0 (initial)" if step == 0 else str(step))

    doc.add(TableBlock(["run", "metric", "test score", "best step", "wall time (s)"], [
        [r["run_id"], primary_metric(r["task"]), f"{100 * r['metrics'][primary_metric(r['task'])]:.1f}",
         best_step(r), f"{r.get('wall_time_s') or 0:.0f}"] for r in per_run]))
    atomic_write_text(report_dir / "report.md", doc.markdown())
    atomic_write_text(report_dir / "report.html", doc.html())
    return report_dir
