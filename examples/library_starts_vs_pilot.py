"""How close each start ``auto`` took in the leave-one-task-out study comes to the best single library
source, on the pilot's yardstick: the start's zero-shot score on the target's 100 validation examples.

A single source's (and the origin's) zero-shot validation score does not depend on the run's seed, and
pilot and study score the same validation examples (seed 1234), so the pilot's rows hold the score of
every study start that is a single source, the origin, or a combination the pilot also chose; other
combinations are counted as unscored. Reads only committed files; no model is loaded.

    python examples/library_starts_vs_pilot.py --pilot docs/results/library/pilot.rows.jsonl \\
        --runs docs/results/library/runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptvec.io import read_json, read_jsonl

NOT_SOURCES = ("no prompt", "origin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilot", type=Path, default=Path("docs/results/library/pilot.rows.jsonl"))
    parser.add_argument("--runs", type=Path, default=Path("docs/results/library/runs"))
    parser.add_argument("--within", type=float, default=0.01, help="closeness, in the metric's units (0.01 = 1 point)")
    args = parser.parse_args()

    validation: dict[str, dict[str, float]] = {}
    for row in read_jsonl(args.pilot):
        for name, candidate in row["candidates"].items():
            validation.setdefault(row["target"], {})[name] = candidate["validation"]

    scored = close = unscored = 0
    for record_path in sorted((args.runs / "runs" / "auto").glob("*/*/*/run.json")):
        target = record_path.parts[-4]
        chosen = read_json(record_path, "run record")["init"]["auto"]["chosen"]
        scores = validation[target]
        best_single = max(v for k, v in scores.items() if k not in NOT_SOURCES and not k.startswith("tpv:"))
        if chosen not in scores:
            unscored += 1
            print(f"{record_path.parent.name:>7} {target:<7} {chosen:<32} unscored")
            continue
        scored += 1
        close += scores[chosen] >= best_single - args.within
        print(f"{record_path.parent.name:>7} {target:<7} {chosen:<32} {100 * scores[chosen]:6.1f}"
              f"  best single source {100 * best_single:5.1f}")
    print(f"{close} of {scored} scored starts within {100 * args.within:g} point(s) of the best single source "
          f"({100 * close / scored:.0f} %); {unscored} combinations unscored")


if __name__ == "__main__":
    main()
