"""The pilot that chose ``init: auto``'s policy (docs/methods.md §9), on the library's own tasks only.

Leave-one-task-out: each classification task of the library is a target, the other library prompts
its sources. For every target and pilot seed (16 training examples, seeds other than the study's),
every candidate start is scored on the training examples (loss and accuracy), and — for the design
only, never by ``auto`` itself — scored zero-shot on the target's validation split (the 100 examples
every run's checkpoint selection uses). Each policy variant (score × combinations) then picks a start,
and the pilot reports how good those starts are on validation: the gain over the origin (plain
prompt tuning's start), the regret against the best candidate, how often it falls back.

    PROMPTVEC_DATA_DIR=../shared/data python examples/library_policy_pilot.py \\
        --library src/promptvec/library/shipped/smollm2-135m-instruct --out docs/results/library/pilot.json

Resumable: each finished target is appended to ``<out>.rows.jsonl``; run the same command again to go on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from promptvec import load_backbone
from promptvec.evaluation import evaluate
from promptvec.io import append_jsonl, atomic_write_json, read_jsonl
from promptvec.library import AutoPolicy, PromptLibrary
from promptvec.library.auto import pick, score_candidates
from promptvec.provenance import code_version
from promptvec.tasks import few_shot, get_task, load_task_data, subsample
from promptvec.vectors import Origin

VARIANTS = {f"{score}, combine {combine}": AutoPolicy(score=score, combine=combine)
            for score in ("loss", "accuracy") for combine in (0, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--val-examples", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=128, help="as the library's recipe")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    backbone = load_backbone(args.model, max_length=args.max_length)
    library = PromptLibrary.for_backbone(backbone, args.library)
    targets = [e.task for e in library.entries if e.output_type != "generate_until"]
    origin = Origin.sample(backbone, library.manifest.rows, 0)
    # resumable: each finished target's rows are appended to <out>.rows.jsonl and not computed again
    partial = Path(args.out).with_suffix(".rows.jsonl")
    rows = read_jsonl(partial) if partial.is_file() else []
    finished = {r["target"] for r in rows}
    for target in targets:
        if target in finished:
            continue
        spec = get_task(target)
        data = load_task_data(spec, args.data_dir)
        val = subsample(data.validation, args.val_examples, 1234)
        sources = library.sources(backbone, exclude={target})
        validation: dict[str, float] = {}  # zero-shot validation score of each start (by name: same start)
        for seed in args.seeds:
            examples = few_shot(spec, data.train, args.shots, seed)
            for score in ("loss", "accuracy"):
                begun = time.perf_counter()
                candidates = score_candidates(backbone, spec, examples, origin, sources,
                                              VARIANTS[f"{score}, combine 3"])
                seconds = time.perf_counter() - begun
                for c in candidates:
                    if c.name not in validation:
                        validation[c.name] = evaluate(backbone, spec, val, c.prompt).metrics[spec.primary_metric]
                scores = {c.name: {**c.scores, "validation": validation[c.name], "kind": c.kind} for c in candidates}
                for name, policy in VARIANTS.items():
                    if policy.score != score:
                        continue
                    pool = [c for c in candidates if policy.combine or c.kind != "combination"]
                    chosen, fell_back = pick(pool, policy)
                    trainable = [c for c in pool if c.kind != "baseline"]
                    rows.append({"target": target, "seed": seed, "variant": name, "chosen": chosen.name,
                                 "kind": chosen.kind, "fell_back": fell_back, "seconds": seconds,
                                 "chosen_validation": scores[chosen.name]["validation"],
                                 "origin_validation": scores["origin"]["validation"],
                                 "no_prompt_validation": scores["no prompt"]["validation"],
                                 "best_validation": max(scores[c.name]["validation"] for c in trainable),
                                 "best_single": max(scores[c.name]["validation"] for c in trainable
                                                    if c.kind == "source"),
                                 "candidates": scores})
            print(target, seed, {r["variant"]: r["chosen"] for r in rows[-4:]}, flush=True)
        append_jsonl(partial, [{**r, "code": code_version()} for r in rows if r["target"] == target])
    summary = {}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        summary[name] = {
            "gain_over_origin": statistics.mean(r["chosen_validation"] - r["origin_validation"] for r in mine),
            "gain_over_no_prompt": statistics.mean(r["chosen_validation"] - r["no_prompt_validation"] for r in mine),
            "regret": statistics.mean(r["best_validation"] - r["chosen_validation"] for r in mine),
            "fallback_rate": statistics.mean(r["fell_back"] for r in mine),
            "within_1_point_of_best_single": statistics.mean(
                r["chosen_validation"] >= r["best_single"] - 0.01 for r in mine),
            "choices": len(mine)}
    atomic_write_json(args.out, {"code": sorted({json.dumps(r.get("code", code_version()), sort_keys=True)
                                                 for r in rows}), "args": vars(args), "summary": summary,
                                 "rows": rows})
    for name, s in summary.items():
        print(f"{name:22s} " + "  ".join(f"{k} {v:+.3f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in s.items()))


if __name__ == "__main__":
    main()
