"""Evaluation: rank classification vs greedy generation with exact match, on 64 test examples of
sst2 (one-token labels) and trec (multi-token labels), embedded SmolLM2, no prompt — generation at
the label's token length (+2) and at the 512 new tokens the TPV repository uses for Llama models.

Rank classification runs the prompt + input once and scores every label continuation from that
prefix's KV cache (promptvec's evaluator); it cannot produce an invalid output by construction.
"""

from __future__ import annotations

import time

from benchmarks.common import Section
from promptvec.backbones import load_backbone
from promptvec.evaluation import evaluate
from promptvec.tasks import get_task, load_task_data, subsample

LONG_GENERATION = 512


def run(quick: bool = False) -> Section:
    backbone = load_backbone("default")
    n = 16 if quick else 64
    modes = [("rank", "rank", None), ("generate, label length", "generate", None),
             (f"generate, {LONG_GENERATION} new tokens", "generate", 64 if quick else LONG_GENERATION)]
    rows, data, targets = [], {}, []
    for name in ("sst2", "trec"):
        task = get_task(name)
        examples = subsample(load_task_data(task).test, n, 1234)
        results = {}
        for label, mode, tokens in modes:
            start = time.perf_counter()
            result = evaluate(backbone, task, examples, None, mode=mode, max_new_tokens=tokens, batch_size=32)
            elapsed = time.perf_counter() - start
            results[label] = {"s": elapsed, "metric": result.metrics[task.primary_metric], "invalid": result.invalid}
            rows.append([name, label, f"{elapsed:.1f}", f"{elapsed / len(examples) * 1000:.0f}",
                         f"{100 * result.metrics[task.primary_metric]:.1f}", str(result.invalid)])
        data[name] = results
        rank, short, long = (results[m[0]] for m in modes)
        targets += [
            (f"{name}: rank classification never invalid", rank["invalid"] == 0, f"{rank['invalid']} invalid"),
            (f"{name}: rank at least as accurate as generation", rank["metric"] >= max(short["metric"], long["metric"]),
             f"{100 * rank['metric']:.1f} vs {100 * short['metric']:.1f} / {100 * long['metric']:.1f}"),
            (f"{name}: rank faster than generation at label length", rank["s"] < short["s"],
             f"{rank['s']:.1f} s vs {short['s']:.1f} s"),
            (f"{name}: rank ≥ 3× faster than {LONG_GENERATION}-token generation", long["s"] >= 3 * rank["s"],
             f"{long['s'] / rank['s']:.1f}×"),
        ]
    return Section(
        "Evaluation: rank classification vs generation (embedded SmolLM2-135M, fp32, no prompt)",
        f"{n} seeded test examples per task, batch 32, one timed pass each. Generation is greedy and matched "
        "exactly against the label verbalizations (an unmatched output is invalid and counts as wrong).",
        ["task", "mode", "time (s)", "ms / example", "accuracy (%)", "invalid"], rows, targets, data)
