"""Evaluation: rank classification vs greedy generation with exact match, on 64 test examples of
sst2 (one-token labels) and trec (multi-token labels), embedded SmolLM2, no prompt — generation at
the label's token length (+2) and at the 512 new tokens the TPV repository uses for Llama models.

Rank classification runs the prompt + input once and scores every label continuation from that
prefix's KV cache (promptvec's evaluator); it cannot produce an invalid output by construction.

Rank evaluation packs a batch's rows into one sequence without padding, every label's continuation
on its own branch (``promptvec.backbones.packing``; attention one example at a time,
``promptvec.backbones.block_attention``), when a FLOP count says that saves work: its batches are sorted
by length, so they hold little padding. The ``packed`` rows measure both paths on the evaluator's
batches, and the choice the FLOP rule makes.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import Section, interleaved, median, spread
from benchmarks.methods import PerExamplePrompt
from promptvec.backbones import load_backbone
from promptvec.evaluation import evaluate
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.vectors import Origin

LONG_GENERATION = 512
PROMPT_OVERHEAD_LIMIT = 1.1  # rank evaluation with a fixed prompt against no prompt
PROMPT_ROWS = 20
CHOICE_LIMIT = 1.05  # the evaluator's per-batch choice (packed or padded) against the faster of the two
MARGIN_TASKS = ("sst2", "trec", "agnews", "mnli", "imdb")  # short to long inputs


def _padded_vs_packed(backbone, task, examples, batch_size: int, repeats: int) -> dict[str, Any]:
    """Seconds of a rank evaluation's label scoring on its length-sorted batches with a shared R-row prompt:
    always padded, always packed, and as the evaluator chooses per batch (round-robin); how many batches
    the choice packs, and the largest difference between the two paths' scores."""
    prompt = backbone.prepare_prompt(Origin.sample(backbone, PROMPT_ROWS, 0).tensor(backbone))
    encoded = sorted(backbone.encode(task, examples, PROMPT_ROWS), key=lambda e: len(e.input_ids))
    batches = [backbone.collate(task, encoded[i: i + batch_size], train=False)
               for i in range(0, len(encoded), batch_size)]
    labels = backbone.label_set(task).token_ids
    with torch.no_grad():
        gap = max(float((backbone._padded_label_scores(b, prompt, labels)
                         - backbone._packed_label_scores(b, prompt, len(labels))).abs().max()) for b in batches)
    times: dict[str, Any] = interleaved({
        "padded": torch.no_grad()(lambda: [backbone._padded_label_scores(b, prompt, labels) for b in batches]),
        "packed": torch.no_grad()(lambda: [backbone._packed_label_scores(b, prompt, len(labels)) for b in batches]),
        "chosen": lambda: [backbone.label_scores(task, b, prompt) for b in batches]}, repeats)
    return {**times, "packed batches": sum(backbone.runs_packed(b, prompt) for b in batches), "batches": len(batches),
            "largest score difference": gap}


def _ranking_choice(backbone, examples_per_task: int) -> dict[str, Any]:
    """Whether the FLOP rule picks the faster path across inputs of every length: every length-sorted batch
    (sizes 8, 16, 32) of five tasks of different lengths is scored padded and packed (best of two,
    alternating); the rule's choices in total against always padded and against the faster path of every
    batch."""
    prompt = backbone.prepare_prompt(Origin.sample(backbone, PROMPT_ROWS, 0).tensor(backbone))
    measured = []
    for name in MARGIN_TASKS:
        task = get_task(name)
        encoded = sorted(backbone.encode(task, subsample(load_task_data(task).test, examples_per_task, 1234),
                                         PROMPT_ROWS), key=lambda e: len(e.input_ids))
        labels = backbone.label_set(task).token_ids
        for size in (8, 16, 32):
            for start in range(0, len(encoded), size):
                batch = backbone.collate(task, encoded[start: start + size], train=False)
                with torch.no_grad():
                    times = interleaved({
                        "padded": lambda b=batch, lab=labels: backbone._padded_label_scores(b, prompt, lab),
                        "packed": lambda b=batch, lab=labels: backbone._packed_label_scores(b, prompt, len(lab))}, 2)
                measured.append({
                    "task": name, "size": size, "length": batch.packed.length, "width": batch.packed.width,
                    "padded": min(times["padded"]), "packed": min(times["packed"]),
                    "chosen": "packed" if backbone.runs_packed(batch, prompt) else "padded"})
    padded = sum(row["padded"] for row in measured)
    return {"batches": measured, "chosen / padded": sum(row[row["chosen"]] for row in measured) / padded,
            "best / padded": sum(min(row["padded"], row["packed"]) for row in measured) / padded,
            "packed batches": sum(row["chosen"] == "packed" for row in measured)}


def _prompt_overhead(backbone, task, examples, repeats: int) -> dict[str, list[float]]:
    """Seconds of a rank evaluation with no prompt, with a fixed R-row prompt (its keys/values computed
    once per evaluation), and with the same prompt run once per example (what sharing saves), round-robin."""
    prompt = Origin.sample(backbone, PROMPT_ROWS, 0).tensor(backbone)
    per_example = PerExamplePrompt(prompt)
    return interleaved({
        "no prompt": lambda: evaluate(backbone, task, examples, None, batch_size=32),
        f"R = {PROMPT_ROWS} prompt": lambda: evaluate(backbone, task, examples, prompt, batch_size=32),
        f"R = {PROMPT_ROWS} prompt, per example": lambda: evaluate(backbone, task, examples, per_example,
                                                                   batch_size=32)}, repeats)


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
        for _, mode, _ in modes:  # untimed: the model's one-time checks and first calls are not any mode's cost
            evaluate(backbone, task, examples[:8], None, mode=mode, max_new_tokens=8, batch_size=8)
        for label, mode, tokens in modes:
            start = time.perf_counter()
            result = evaluate(backbone, task, examples, None, mode=mode, max_new_tokens=tokens, batch_size=32)
            elapsed = time.perf_counter() - start
            results[label] = {"s": elapsed, "metric": result.metrics[task.primary_metric], "invalid": result.invalid}
            rows.append([name, label, f"{elapsed:.1f}", f"{elapsed / len(examples) * 1000:.0f}",
                         f"{100 * result.metrics[task.primary_metric]:.1f}", str(result.invalid)])
        results["prompt"] = _prompt_overhead(backbone, task, examples, 2 if quick else 3)
        overhead = results["prompt"]
        for label in ("no prompt", f"R = {PROMPT_ROWS} prompt", f"R = {PROMPT_ROWS} prompt, per example"):
            rows.append([name, f"rank, {label}", spread(overhead[label]),
                         f"{median(overhead[label]) / len(examples) * 1000:.0f}", "–", "–"])
        none = median(overhead["no prompt"])
        ratio = median(overhead[f"R = {PROMPT_ROWS} prompt"]) / none
        unshared = median(overhead[f"R = {PROMPT_ROWS} prompt, per example"]) / none
        targets.append((f"{name}: rank evaluation with a prompt ≤ {PROMPT_OVERHEAD_LIMIT}× without",
                        ratio <= PROMPT_OVERHEAD_LIMIT, f"{ratio:.2f}× (run once per example: {unshared:.2f}×)"))
        packing = {size: _padded_vs_packed(backbone, task, examples, size, 2 if quick else 3) for size in (8, 32)}
        results["packing"] = packing
        for size, measured in packing.items():
            padded, packed, chosen = (median(measured[path]) for path in ("padded", "packed", "chosen"))
            rows.append([name, f"rank scoring, batch {size}: padded / packed / chosen "
                         f"({measured['packed batches']} of {measured['batches']} batches packed)",
                         " / ".join(spread(measured[path]) for path in ("padded", "packed", "chosen")),
                         " / ".join(f"{t / len(examples) * 1000:.0f}" for t in (padded, packed, chosen)), "–", "–"])
            targets.append((f"{name}: packed and padded scores agree (batch {size})",
                            measured["largest score difference"] <= 1e-3,
                            f"largest difference {measured['largest score difference']:.1e}"))
            # fastest passes: the three do the same work batch for batch, and this machine's noise only adds
            fastest = {path: min(measured[path]) for path in ("padded", "packed", "chosen")}
            best = min(fastest["padded"], fastest["packed"])
            targets.append((f"{name}: the evaluator's choice is within {CHOICE_LIMIT}× of the faster path (batch "
                            f"{size}, fastest passes)", fastest["chosen"] <= CHOICE_LIMIT * best,
                            f"chosen {fastest['chosen'] / best:.2f}×; "
                            f"packed {fastest['packed'] / fastest['padded']:.2f}× padded"))
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
    choice = _ranking_choice(backbone, 16 if quick else 32)
    data["ranking choice"] = choice
    batches = len(choice["batches"])
    rows.append([", ".join(MARGIN_TASKS), f"rank scoring, {batches} batches ({choice['packed batches']} packed): "
                 "chosen / padded, faster of each / padded",
                 f"{choice['chosen / padded']:.2f} / {choice['best / padded']:.2f}", "–", "–", "–"])
    ratio = choice["chosen / padded"] / choice["best / padded"]
    targets.append((f"the FLOP rule's choices over {batches} batches of five tasks take ≤ {CHOICE_LIMIT}× the "
                    "faster path of every batch", ratio <= CHOICE_LIMIT, f"{ratio:.2f}×"))
    return Section(
        "Evaluation: rank classification vs generation, and the cost of a prompt (embedded SmolLM2-135M, fp32)",
        f"{n} seeded test examples per task, batch 32, one timed pass each, after an untimed pass of every mode on 8 "
        "examples (the model's one-time checks and first calls). Generation is greedy and matched "
        "exactly against the label verbalizations (an unmatched output is invalid and counts as wrong). The "
        "`rank, … prompt` rows time the same rank evaluation round-robin (median [min–max] seconds): no prompt, a "
        f"fixed R = {PROMPT_ROWS} prompt whose keys/values are computed once per evaluation, and that prompt run "
        "once per example. The `rank scoring …` rows time only the label scoring of the evaluator's "
        "length-sorted batches with the R = 20 prompt shared: always padded, always packed into one sequence per "
        "batch (labels of several tokens on their own branches), and as the evaluator chooses per batch by its "
        "FLOP count, round-robin (the choice's target compares the fastest passes). The last row times every "
        "length-sorted batch (sizes 8, 16, 32) of five tasks padded and packed (best of two) and gives the total "
        "time of the rule's choices and of the faster path of every batch, against always padded.",
        ["task", "mode", "time (s)", "ms / example", "accuracy (%)", "invalid"], rows, targets, data)
