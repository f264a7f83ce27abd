"""Per-step cost of the transfer methods' prompt modules against plain prompt tuning, and how the
step time grows with prompt length, batch size and DTVG's number of source vectors — all full
training steps on the embedded SmolLM2 (forward + backward through the frozen model + AdamW)."""

from __future__ import annotations

import torch

from benchmarks.common import Section, interleaved, median, spread
from promptvec.backbones import load_backbone
from promptvec.methods.attempt import AttemptPrompt
from promptvec.methods.dtvg import DTVGPrompt
from promptvec.methods.fusion import FusionPrompt
from promptvec.prompts import StaticPrompt
from promptvec.tasks import get_task, load_task_data
from promptvec.vectors import Origin

# A module's own cost: its step against prompt tuning run the same way (prompt once per example). ATTEMPT and
# Fusion produce a prompt per input, so they cannot share one prompt's keys/values and are also shown
# against prompt tuning with sharing (`pt`), as information.
TARGETS = {"attempt": 1.10, "dtvg": 1.05, "fusion": 1.15}
PER_INPUT = {"attempt", "fusion"}
R_SCALING_LIMIT = 1.3  # the R = 100 step against the R = 20 step


class PerExamplePrompt(StaticPrompt):
    """Plain prompt tuning forced onto the per-example path (the reference for per-input modules)."""

    shares_prompt = False

    def forward(self, batch):
        return self.weight.unsqueeze(0).expand(batch.size, -1, -1)


def _modules(backbone, rows: int, sources: int, task: str) -> dict:
    g = torch.Generator().manual_seed(0)
    origin = Origin.sample(backbone, rows, 0).tensor(backbone)
    vectors = torch.randn(sources, rows, backbone.dim, generator=g) * origin.std()
    names = [f"s{i}" for i in range(sources)]
    return {
        "pt": StaticPrompt(origin),
        "pt, per example": PerExamplePrompt(origin),
        "attempt": AttemptPrompt(origin + vectors, origin, names).bind(backbone),
        "dtvg": DTVGPrompt(origin, vectors[0] * 0.5, vectors, names, "kc"),
        "fusion": FusionPrompt(torch.stack([origin] * 4), torch.randn(2, backbone.dim, generator=g),
                               [task, "other"]).bind(backbone),
    }


def _step(backbone, task, batch, module):
    optimizer = torch.optim.AdamW(module.parameter_groups(0.03), lr=0.03)

    def step() -> None:
        loss = module.combine_losses({batch.task: backbone.loss(task, batch, module(batch))}, {batch.task: batch.size})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        module.drain_log()  # what the trainer does at a checkpoint (every step by default)

    return step


def _batch(backbone, task, batch_size: int, rows: int):
    examples = load_task_data(task).train[:batch_size]
    return backbone.collate(task, backbone.encode(task, examples, rows), train=True)


def run(quick: bool = False) -> Section:
    backbone = load_backbone("default")
    task = get_task("sst2")
    repeats = 2 if quick else 5
    batch = _batch(backbone, task, 4 if quick else 8, 20)
    modules = _modules(backbone, 20, 7, task.task)
    for m in modules.values():
        m.train()
    times = interleaved({name: _step(backbone, task, batch, m) for name, m in modules.items()}, repeats)
    base = median(times["pt"])
    ratios = {name: median(t) / base for name, t in times.items()}
    # the module's own cost: against pt run the same way (per-input modules: per example)
    own = {name: median(times[name]) / median(times["pt, per example" if name in PER_INPUT else "pt"])
           for name in TARGETS}
    rows = [[name, spread(t), f"{ratios[name]:.3f}", f"{own[name]:.3f}" if name in own else "–",
             f"≤ {TARGETS[name]:.2f}" if name in TARGETS else "–"] for name, t in times.items()]
    targets = [(f"{name} ≤ {limit:.2f}× plain prompt tuning per step, run the same way "
                f"({'per example' if name in PER_INPUT else 'shared prompt'})", own[name] <= limit,
                f"{own[name]:.3f} ({ratios[name]:.2f}× pt with sharing)") for name, limit in TARGETS.items()]
    data = {"overhead": {**times, "ratios": ratios, "own": own}}

    scale_repeats = 2 if quick else 3
    lengths = [10, 20, 50, 100, 200] if not quick else [20, 100]
    steps = {}
    def plain(rows_: int) -> StaticPrompt:
        return StaticPrompt(Origin.sample(backbone, rows_, 0).tensor(backbone))

    size_at_lengths = 8 if not quick else 4
    for rows_ in lengths:
        steps[f"R = {rows_}"] = _step(backbone, task, _batch(backbone, task, size_at_lengths, rows_), plain(rows_))
    for size in ([4, 8, 16] if not quick else [4]):
        steps[f"batch {size}"] = _step(backbone, task, _batch(backbone, task, size, 20), plain(20))
    for n in ([2, 8, 32, 64] if not quick else [2, 8]):
        module = _modules(backbone, 20, n, task.task)["dtvg"].train()
        steps[f"DTVG, {n} sources"] = _step(backbone, task, batch, module)
    scaling = interleaved(steps, scale_repeats)
    rows += [[name, spread(t), f"{median(t) / base:.3f}", "–", "–"] for name, t in scaling.items()]
    data["scaling"] = scaling
    growth = median(scaling["R = 100"]) / median(scaling["R = 20"])
    targets.append((f"R = 100 step ≤ {R_SCALING_LIMIT}× the R = 20 step (batch {size_at_lengths})",
                    growth <= R_SCALING_LIMIT, f"{growth:.2f}×"))
    return Section(
        "Transfer methods: per-step overhead and scaling (embedded SmolLM2-135M, fp32, sst2)",
        f"Seconds per training step, median [min–max] over {repeats} (overhead) or {scale_repeats} (scaling) steps, "
        "round-robin. Overhead rows: batch 8, R = 20, 7 source prompts/vectors (ATTEMPT, DTVG), a 4-prompt pool over "
        "2 tasks (Fusion); `pt` shares one prompt's keys/values across the batch, `pt, per example` runs it once per "
        "example as ATTEMPT and Fusion must (their prompt depends on the input). `ratio vs pt` is against `pt` in "
        "the same rounds; `own cost` against pt run the same way (the module's overhead, which the targets bound). "
        "Scaling rows: plain prompt tuning at other prompt lengths and batch sizes, and DTVG with 2–64 source "
        "vectors (ratio against the `pt` row above).",
        ["setting", "s/step", "ratio vs pt", "own cost", "target"], rows, targets, data)
