"""Run the benchmarks and write BENCHMARKS.md (+ benchmarks/results.json with the raw times).

    python -m benchmarks.run [--quick] [--only train_step,methods,evaluation,resources] [--out BENCHMARKS.md]

Every ratio is measured side by side in the same run; absolute times on this shared machine are
noisy, ratios much less so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import evaluation, methods, resources, train_step
from benchmarks.common import machine, verdict
from promptvec.io import atomic_write_json, atomic_write_text

BENCHMARKS = {"train_step": train_step.run, "methods": methods.run, "evaluation": evaluation.run,
              "resources": resources.run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and settings (a smoke run)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    start = time.time()
    sections = []
    for name in names:
        print(f"→ {name}", flush=True)
        sections.append(BENCHMARKS[name](quick=args.quick))
    info = machine()
    lines = ["# Benchmarks", "",
             f"Written by `python -m benchmarks.run{' --quick' if args.quick else ''}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({(time.time() - start) / 60:.1f} min).", "",
             f"- Machine: {info['machine']}; GPU: {info['gpu']}", f"- Versions: {info['versions']}", "",
             "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {verdict(ok)} |" for s in sections for t, ok, m in s.targets]
    for s in sections:
        lines += ["", f"## {s.title}", "", s.intro, "", "| " + " | ".join(s.header) + " |",
                  "|" + "---|" * len(s.header)]
        lines += ["| " + " | ".join(row) + " |" for row in s.rows]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(Path(__file__).parent / "results.json", {s.title: s.data for s in sections})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
