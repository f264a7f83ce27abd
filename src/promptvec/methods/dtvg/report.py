"""DTVG's report section: the group and the target similarities over training, per run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptvec.io import read_json  # noqa: E402
from promptvec.suites.document import Figure, Heading, Paragraph, TableBlock, save_figure  # noqa: E402
from promptvec.suites.run_logs import method_runs, module_log, slug  # noqa: E402


# ---- DTVG -----------------------------------------------------------------------------------------
def grouping_sections(suite, out: Path, rows: list[dict], report_dir: Path) -> list:
    runs = [(r, f, module_log(f)) for r, f in method_runs(out, rows, "dtvg")]
    runs = [(r, f, log) for r, f, log in runs if log]
    if not runs:
        return []
    table = []
    for r, folder, log in runs:
        names = read_json(folder / "run.json", "run record")["init"]["sources"]
        groups = [tuple(int(x) for x in e["group"]) for e in log]
        sizes = [sum(g) for g in groups]
        changes = sum(a != b for a, b in zip(groups, groups[1:], strict=False))
        orders = [_ranking(e["similarity"]) for e in log]
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
        path = report_dir / f"dtvg-timeline-{slug(task)}.png"
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
    save_figure(fig, path, dpi=110)


def _ranking(similarities: list[float]) -> tuple[int, ...]:
    """Source indices from the most to the least similar to the target."""
    return tuple(sorted(range(len(similarities)), key=lambda i: -similarities[i]))
