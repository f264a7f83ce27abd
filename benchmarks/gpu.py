"""The accelerator benchmark (``make bench-gpu`` / ``python -m benchmarks.run --gpu``): training-step
and rank-evaluation throughput of the embedded SmolLM2-135M in bf16, with the prompt's keys/values
shared by the batch (promptvec's path) and without (the prompt run once per example, as PEFT does),
as tokens/s and as a fraction of what the device's bf16 matrix units do on a large matmul, measured
in the same run; and the wall time of the quickstart suite on the device.

Useful work per token is counted as ``2 × parameters`` FLOPs for a forward and ``4 ×`` for a training
step (forward, and backward through the activations: the frozen weights get no gradients). The
reference peak is measured, not taken from a spec sheet: a bf16 ``[n, n] @ [n, n]`` matmul,
best of a few, so the fraction is comparable across devices without a table of their specs.

Without an accelerator the same code runs on the CPU in fp32 (``device``/``dtype`` arguments): that
checks the plumbing here, it measures nothing about GPUs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.common import Section, interleaved, median
from promptvec.backbones import Backbone, load_backbone
from promptvec.tasks import get_task, load_task_data
from promptvec.vectors import Origin

SETTINGS = [(8, 20), (16, 50), (16, 100)]
QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "suites" / "quickstart.yaml"


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """The accelerator in bf16 where there is one that computes it, else the CPU in fp32."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` ``[size, size] @ [size, size]`` products on ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up (kernel choice, allocation)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _batch(backbone: Backbone, batch_size: int, rows: int, device: torch.device):
    task = get_task("sst2")
    examples = (load_task_data(task).train * (batch_size // 8 + 1))[:batch_size]
    batch = backbone.collate(task, backbone.encode(task, examples, rows), train=True).to(device)
    return task, batch


def throughput(backbone: Backbone, batch_size: int, rows: int, repeats: int) -> dict[str, float]:
    """Tokens/s of a training step and of a rank evaluation, shared prompt cache against per-example prompt."""
    device = backbone.device
    task, batch = _batch(backbone, batch_size, rows, device)
    weights = torch.nn.Parameter(Origin.sample(backbone, rows, 0).tensor(backbone).to(device))
    optimizer = torch.optim.AdamW([weights], lr=0.03)
    autocast = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": backbone.model.dtype == torch.bfloat16}

    def step(prompt_of) -> None:
        with torch.autocast(**autocast):
            loss = backbone.loss(task, batch, prompt_of())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)

    def score(prompt_of) -> None:
        with torch.no_grad(), torch.autocast(**autocast):
            backbone.label_scores(task, batch, prompt_of())
        _sync(device)

    shared = lambda: weights  # noqa: E731  ([R, d]: keys/values once per batch)
    per_example = lambda: weights.unsqueeze(0).expand(batch.size, -1, -1)  # noqa: E731  ([B, R, d]: PEFT's way)
    times = interleaved({"step shared": lambda: step(shared), "step per example": lambda: step(per_example),
                         "eval shared": lambda: score(shared), "eval per example": lambda: score(per_example)},
                        repeats)
    tokens = int(batch.attention_mask.sum()) + rows * batch.size  # what the per-example path computes
    return {name: tokens / median(values) for name, values in times.items()}


def quickstart_minutes(out: Path) -> float:
    """Wall minutes of the quickstart suite on this machine (one job)."""
    from promptvec.experiments.runner import run_suite
    from promptvec.suites.schema import load_suite

    start = time.perf_counter()
    run_suite(load_suite(QUICKSTART), out, progress=False, log=lambda message: None)
    return (time.perf_counter() - start) / 60


def run(quick: bool = False, model: str = "default", device: torch.device | None = None,
        dtype: torch.dtype | None = None, suite_out: Path | None = None) -> Section:
    """Measure on the accelerator (or, given ``device``/``dtype``, anywhere); ``suite_out``: run the
    quickstart suite there and time it (skipped when None or ``quick``)."""
    chosen, chosen_dtype = device_and_dtype()
    device, dtype = device or chosen, dtype or chosen_dtype
    backbone = load_backbone(model, device=device, dtype=dtype)
    params = sum(p.numel() for p in backbone.model.parameters())
    peak = matmul_peak(device, dtype, 1024 if quick or device.type == "cpu" else 8192)
    rows_out, data = [], {"device": str(device), "dtype": str(dtype), "matmul_peak_flops": peak}
    for batch_size, rows in SETTINGS[:1] if quick else SETTINGS:
        rates = throughput(backbone, batch_size, rows, repeats=2 if quick else 10)
        data[f"batch {batch_size}, R {rows}"] = rates
        for name, rate in rates.items():
            flops = (4 if name.startswith("step") else 2) * params * rate
            rows_out.append([f"batch {batch_size}, R {rows}", name, f"{rate:,.0f}", f"{100 * flops / peak:.1f} %"])
    targets: list[tuple[str, bool | None | str, str]] = []
    if suite_out is not None and not quick:
        minutes = quickstart_minutes(suite_out)
        data["quickstart_minutes"] = minutes
        targets.append(("quickstart suite on this device", "info", f"{minutes:.1f} min"))
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (plumbing check only)"
    return Section(
        f"Accelerator: {name}, {str(dtype).removeprefix('torch.')}",
        "Tokens per second of a training step (forward, backward, AdamW on the prompt) and of a rank evaluation "
        "on sst2 batches, with the prompt's keys/values shared by the batch and with the prompt run once per "
        f"example, and the useful work as a share of a measured {str(dtype).removeprefix('torch.')} matmul peak "
        f"({peak / 1e12:.1f} TFLOP/s here). See benchmarks/gpu.py for how work is counted.",
        ["setting", "path", "tokens/s", "share of matmul peak"], rows_out, targets, data)
