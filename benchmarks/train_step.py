"""Training step time: promptvec prompt tuning vs PEFT ``PromptTuningConfig`` on the same frozen
model, the same batch (same token ids and padding), the same prompt length and the same optimizer.

promptvec computes logits only at the label positions and the loss on the label tokens; PEFT's
causal-LM prompt tuning computes logits over the whole vocabulary at every position (its standard
path, as a user would run it). Both take one AdamW step on the prompt. Timed round-robin, so
both sides see the same machine noise; the ratio is what counts.
"""

from __future__ import annotations

import copy

import torch

from benchmarks.common import Section, interleaved, median, spread
from promptvec.backbones import load_backbone
from promptvec.prompts import StaticPrompt
from promptvec.tasks import get_task, load_task_data
from promptvec.vectors import Origin

TARGET_RATIO = 0.7


def _batches(backbone, batch_size: int, rows: int, input_tokens: int | None):
    """One sst2 training batch for promptvec and the equivalent (ids, mask, labels) for PEFT."""
    task = get_task("sst2")
    examples = load_task_data(task).train[:batch_size]
    encoded = backbone.encode(task, examples, rows)
    if input_tokens is not None:  # a fixed input length (pad by repeating, truncate from the left)
        for item in encoded:
            item.input_ids = (item.input_ids * (input_tokens // max(1, len(item.input_ids)) + 1))[-input_tokens:]
    batch = backbone.collate(task, encoded, train=True)
    labels = torch.full_like(batch.input_ids, -100)
    for row, item in enumerate(encoded):
        label = backbone.label_set(task).token_ids[item.label_index]
        labels[row, -len(label):] = torch.tensor(label)
    return task, batch, labels


def _measure(backbone, batch_size: int, rows: int, input_tokens: int | None, repeats: int):
    from peft import PromptTuningConfig, get_peft_model

    task, batch, labels = _batches(backbone, batch_size, rows, input_tokens)
    prompt = StaticPrompt(Origin.sample(backbone, rows, 0).tensor(backbone))
    ours = torch.optim.AdamW(prompt.parameters(), lr=0.03)
    peft_model = get_peft_model(copy.deepcopy(backbone.model), PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=rows, token_dim=backbone.dim))
    theirs = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.03)

    def promptvec_step() -> None:
        loss = backbone.loss(task, batch, prompt(batch))
        loss.backward()
        ours.step()
        ours.zero_grad(set_to_none=True)

    def peft_step() -> None:
        out = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
        out.loss.backward()
        theirs.step()
        theirs.zero_grad(set_to_none=True)

    times = interleaved({"promptvec": promptvec_step, "peft": peft_step}, repeats)
    return times, batch.input_ids.shape[1] + rows


def run(quick: bool = False) -> Section:
    backbone = load_backbone("default")
    settings = [(8, 20, None), (16, 50, 64)] if not quick else [(4, 20, None)]
    repeats = 2 if quick else 5
    rows_out, data = [], {}
    for batch_size, rows, input_tokens in settings:
        times, tokens = _measure(backbone, batch_size, rows, input_tokens, repeats)
        ratio = median(times["promptvec"]) / median(times["peft"])
        key = f"batch {batch_size}, R {rows}, {tokens} tokens"
        data[key] = {**times, "ratio": ratio}
        rows_out.append([key, spread(times["promptvec"]), spread(times["peft"]), f"{ratio:.2f}"])
    worst = max(v["ratio"] for v in data.values())
    return Section(
        "Training step: promptvec vs PEFT prompt tuning (embedded SmolLM2-135M, fp32)",
        "Seconds per optimizer step (forward + backward + AdamW on the prompt), median [min–max] over "
        f"{repeats} steps after one warm-up, the two run round-robin on identical batches of sst2 "
        "(second row: inputs fixed to 64 tokens, the ARCHITECTURE.md reference setting).",
        ["setting", "promptvec (s/step)", "PEFT (s/step)", "ratio promptvec / PEFT"], rows_out,
        [(f"promptvec ≤ {TARGET_RATIO}× PEFT's time per step", worst <= TARGET_RATIO, f"worst ratio {worst:.2f}")],
        data)
