"""Evaluation: rank classification vs greedy generation with exact match, on 64 test examples of
sst2 (one-token labels) and trec (multi-token labels), embedded SmolLM2, no prompt — generation at
the label's token length (+2) and at the 512 new tokens the TPV repository uses for Llama models.

Rank classification runs the prompt + input once and scores every label continuation from that
prefix's KV cache (promptvec's evaluator); it cannot produce an invalid output by construction.

Training packs a batch's rows into one sequence without padding (``promptvec.backbones.packing``);
evaluation does not, because its batches are sorted by length, so they hold little padding, while a
packed batch's block-diagonal mask makes attention quadratic in the whole batch's tokens. The
``packed`` rows measure that decision: the same length-sorted batches' forward pass, padded as the
evaluator runs it and packed.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import Section, interleaved, median, spread
from benchmarks.methods import PerExamplePrompt
from promptvec.backbones import load_backbone
from promptvec.backbones.packing import packed_mask
from promptvec.backbones.prefix import SharedPrompt, cache_kwarg
from promptvec.evaluation import evaluate
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.vectors import Origin

LONG_GENERATION = 512
PROMPT_OVERHEAD_LIMIT = 1.1  # rank evaluation with a fixed prompt against no prompt
PROMPT_ROWS = 20
PACKING_GAIN_LIMIT = 0.9  # packing evaluation would be worth building if it took less than this share of the time


def _padded_vs_packed(backbone, task, examples, batch_size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of the forward passes of a rank evaluation's length-sorted batches (a shared R-row
    prompt, the last position's logits), padded as the evaluator runs them and packed into one
    sequence per batch, round-robin."""
    prompt = Origin.sample(backbone, PROMPT_ROWS, 0).tensor(backbone)
    encoded = sorted(backbone.encode(task, examples, PROMPT_ROWS), key=lambda e: len(e.input_ids))
    batches = [backbone.collate(task, encoded[i: i + batch_size], train=False)
               for i in range(0, len(encoded), batch_size)]
    model, implementation = backbone.model, backbone.model.config._attn_implementation

    @torch.no_grad()
    def padded() -> None:
        shared = SharedPrompt(model, prompt)
        for batch in batches:
            backbone._run(batch, shared, logits_to_keep=1, use_cache=False)

    @torch.no_grad()
    def packed() -> None:
        shared = SharedPrompt(model, prompt)
        for batch in batches:
            real = batch.attention_mask.bool()
            lengths = real.sum(1)
            ids = batch.input_ids[real][None]
            starts = lengths.cumsum(0) - lengths
            positions = PROMPT_ROWS + torch.arange(ids.shape[1]) - torch.repeat_interleave(starts, lengths)
            embeds = backbone.input_embeds(ids)
            model(inputs_embeds=embeds, attention_mask=packed_mask(lengths, PROMPT_ROWS, implementation, embeds.dtype),
                  position_ids=positions[None], use_cache=False, logits_to_keep=starts + lengths - 1,
                  **{cache_kwarg(model): shared.for_batch(1)})

    return interleaved({"padded": padded, "packed": packed}, repeats)


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
        for size, times in packing.items():
            share = median(times["packed"]) / median(times["padded"])
            rows.append([name, f"rank forward, batch {size}: padded / packed", f"{spread(times['padded'])} / "
                         f"{spread(times['packed'])}", f"{median(times['padded']) / len(examples) * 1000:.0f} / "
                         f"{median(times['packed']) / len(examples) * 1000:.0f}", "–", "–"])
            targets.append((f"{name}: evaluation stays padded (packing batch {size} takes ≥ {PACKING_GAIN_LIMIT}× "
                            "the time)", share >= PACKING_GAIN_LIMIT, f"packed {share:.2f}× padded"))
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
        "Evaluation: rank classification vs generation, and the cost of a prompt (embedded SmolLM2-135M, fp32)",
        f"{n} seeded test examples per task, batch 32, one timed pass each. Generation is greedy and matched "
        "exactly against the label verbalizations (an unmatched output is invalid and counts as wrong). The "
        "`rank, … prompt` rows time the same rank evaluation round-robin (median [min–max] seconds): no prompt, a "
        f"fixed R = {PROMPT_ROWS} prompt whose keys/values are computed once per evaluation, and that prompt run "
        "once per example. The `rank forward … padded / packed` rows time only the forward passes of the same "
        "length-sorted batches with the R = 20 prompt shared, padded (as evaluated) and packed into one sequence "
        "per batch (as training runs), round-robin.",
        ["task", "mode", "time (s)", "ms / example", "accuracy (%)", "invalid"], rows, targets, data)
