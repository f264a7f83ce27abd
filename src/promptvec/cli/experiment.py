"""``promptvec experiment run`` and ``report``: suites and their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from promptvec.cli.common import (
    DataDir,
    app,
    console,
    friendly,
    out_console,
)

experiment_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Run experiment suites (methods x tasks x shots x seeds).")


app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
@friendly
def experiment_run_command(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE.yaml", help="the suite definition")],
    out: Annotated[Path | None, typer.Option("--out", help="suite folder (default runs/<suite name>)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate, list runs, estimate cost; load nothing")
                       ] = False,
    jobs: Annotated[int, typer.Option(min=0, help="parallel worker processes (one GPU each when GPUs exist); "
                                      "0 = one per GPU")] = 1,
    max_minutes: Annotated[float | None, typer.Option(help="stop cleanly (resumable) after this budget")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run a suite; completed runs are skipped and interrupted ones resume at their last step."""
    from promptvec.experiments.runner import analysis_status, estimate_breakdown, format_duration, run_suite, status_of
    from promptvec.suites.plan import expand
    from promptvec.suites.schema import load_suite

    suite = load_suite(suite_path)
    out = out or Path("runs") / suite.name
    if dry_run:
        from promptvec.io import check_output_path

        check_output_path(out, folder=True)  # a dry run says what the real run would say about --out
        statuses = [status_of(suite, out, run) for run in expand(suite)]
        table = Table(title=f"suite '{suite.name}' ({suite.backbone.model})")
        for column in ("run", "method", "steps", "state"):
            table.add_column(column)
        for st in statuses:
            state = st.state if st.state != "partial" else f"partial (step {st.step}/{st.total_steps})"
            table.add_row(st.run.run_id, st.run.method, str(st.total_steps), state)
        for analysis, settings, missing in analysis_status(suite, out):
            items = analysis.items(settings, suite)
            state = "done" if not missing else f"todo ({len(items) - len(missing)}/{len(items)} done)"
            table.add_row(f"analysis: {analysis.name}", "(after the sources)", "–", state)
        out_console.print(table)
        done = sum(st.state == "done" for st in statuses)
        breakdown = estimate_breakdown(suite, statuses, out, data_dir)
        total = None if breakdown is None else sum(breakdown.values())
        parts = ", ".join(f"{kind} {format_duration(seconds)}" for kind, seconds in (breakdown or {}).items()
                          if seconds >= 1)
        out_console.print(f"{len(statuses)} runs, {done} done; estimated CPU time for the rest: "
                          f"{format_duration(total)}" + (f" ({parts})" if parts else ""))
        return
    outcome = run_suite(suite, out, jobs=jobs, max_minutes=max_minutes, data_dir=data_dir,
                        log=lambda m: console.print(m, highlight=False, markup=False))
    if outcome.main:
            out_console.print(f"{outcome.completed} runs completed in {format_duration(outcome.wall_time_s)}; "
                          f"results in {out / 'results.csv'}"
                          + (" (stopped by the time budget)" if outcome.stopped else ""))


@app.command("report")
@friendly
def report_command(
    suite_dir: Annotated[Path, typer.Argument(metavar="DIR", help="the --out folder of `experiment run`")],
    out: Annotated[Path | None, typer.Option("--out", help="where to write the report (default DIR/report)")]
    = None,
) -> None:
    """Write report.md and a self-contained report.html (figures as PNGs beside them) for a suite."""
    from promptvec.experiments.report import build_report

    folder = build_report(suite_dir, out)
    out_console.print(f"report written to {folder / 'report.md'} and {folder / 'report.html'}")
