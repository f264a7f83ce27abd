"""Run the benchmarks and write BENCHMARKS.md (+ benchmarks/results.json with the raw times).

    python -m benchmarks.run [--quick] [--only NAME,...] [--out BENCHMARKS.md]
    python -m benchmarks.run --gpu [--quick]      # make bench-gpu: the accelerator benchmark alone

Names: train_step, methods, evaluation, auto_init, resources, throughput, lm_eval, serving, cost_model; ``--gpu`` runs
``benchmarks/gpu.py`` (bf16 throughput with and without the shared prompt cache, share of a measured
matmul peak, the quickstart suite's wall time), which ``make bench`` leaves out.

Every ratio is measured side by side in the same run; absolute times on this shared machine are
noisy, ratios much less so. ``--only`` re-measures some benchmarks and keeps the others' last
results (from results.json, each section stamped with when and how it was measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import (
    auto_init,
    cost_model,
    evaluation,
    gpu,
    lm_eval_model,
    methods,
    resources,
    serving,
    throughput,
    train_step,
)
from benchmarks.common import Section, machine, verdict
from promptvec.io import atomic_write_json, atomic_write_text

BENCHMARKS = {"train_step": train_step.run, "methods": methods.run, "evaluation": evaluation.run,
              "auto_init": auto_init.run, "resources": resources.run, "throughput": throughput.run,
              "lm_eval": lm_eval_model.run, "serving": serving.run, "cost_model": cost_model.run}
RESULTS = Path(__file__).parent / "results.json"
GPU = "gpu"  # the accelerator benchmark's name in results.json and its place at the end of BENCHMARKS.md


def _previous() -> dict[str, dict]:
    """Sections of the last run by benchmark name (an older or unreadable file counts as none)."""
    try:
        stored = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in stored.items() if isinstance(v, dict) and "section" in v}


def render(sections: dict[str, dict]) -> str:
    info = machine()
    lines = ["# Benchmarks", "", "Written by `python -m benchmarks.run` (`make bench`). Each section says when it was "
             "measured; ratios are always between candidates measured in the same rounds.", "",
             f"- Machine: {info['machine']}; GPU: {info['gpu']}; torch threads: as each section's stamp says "
             "(2, this machine's default, where it says none)", f"- Versions: {info['versions']}", "",
             "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    ordered = [sections[name] for name in [*BENCHMARKS, GPU] if name in sections]
    lines += [f"| {t} | {m} | {verdict(ok)} |" for s in ordered for t, ok, m in s["section"]["targets"]]
    for stored in ordered:
        s = stored["section"]
        lines += ["", f"## {s['title']}", "", f"*Measured {stored['measured']}.* {s['intro']}", "",
                  "| " + " | ".join(s["header"]) + " |", "|" + "---|" * len(s["header"])]
        lines += ["| " + " | ".join(row) + " |" for row in s["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and settings (a smoke run)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--gpu", action="store_true", help="run the accelerator benchmark alone (benchmarks/gpu.py)")
    args = parser.parse_args()
    names = [GPU] if args.gpu else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS and n != GPU]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    sections = _previous()
    for name in names:
        print(f"→ {name}", flush=True)
        start = time.time()
        if name == GPU:
            with tempfile.TemporaryDirectory() as suite_out:
                section: Section = gpu.run(quick=args.quick, suite_out=Path(suite_out) / "quickstart")
        else:
            section = BENCHMARKS[name](quick=args.quick)
        sections[name] = {
            "section": dataclasses.asdict(section),
            "measured": f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {(time.time() - start) / 60:.1f} min"
                        f", torch threads {torch.get_num_threads()}" + (" (--quick)" if args.quick else "")}
        atomic_write_json(RESULTS, sections)  # after each benchmark: a long run interrupted keeps what it measured
    atomic_write_text(args.out, render(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
