"""Training throughput: tokens per second of prompt tuning on the embedded SmolLM2-135M, and on a
GPU the fraction of its peak bf16 throughput that this uses; then the same first setting with the
frozen model under ``torch.compile`` (promptvec's ``--compile``): compile time and step time.

A training step of a frozen model costs about 4 × parameters FLOPs per token: 2 for the forward,
2 for the backward, which computes activation gradients only (the model's weights get none). The
fraction of peak is that estimate over the device's dense bf16 peak (a table of known GPUs); on
a CPU, or an unknown GPU, it is not stated. bf16 autocast on a GPU, fp32 on a CPU (which has no
bf16 instructions here).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.common import Section, interleaved, median
from benchmarks.train_step import _batches
from promptvec.backbones import load_backbone
from promptvec.prompts import StaticPrompt
from promptvec.vectors import Origin

# dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets; SXM parts)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "L40": 181.0}


def peak_tflops(device_name: str) -> float | None:
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in device_name), None)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(quick: bool = False) -> Section:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = load_backbone("default", device=device)
    params = sum(p.numel() for p in backbone.model.parameters())
    on_gpu = device.type == "cuda"
    sizes = ([8] if quick else [8, 32]) if not on_gpu else ([32] if quick else [32, 128])
    repeats = 2 if quick else 5
    rows, data = [], {}
    name = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    peak = peak_tflops(name) if on_gpu else None
    for batch_size in sizes:
        step, tokens = _step(backbone, batch_size, device, on_gpu)
        times = interleaved({"step": step}, repeats)["step"]
        per_second = tokens / median(times)
        used = 4 * params * per_second / (peak * 1e12) if peak else None
        data[f"batch {batch_size}"] = {"times": times, "tokens": tokens, "tokens_per_s": per_second,
                                       "fraction_of_peak": used}
        rows.append([f"batch {batch_size}, {tokens // batch_size} tokens", f"{median(times):.3f}",
                     f"{per_second:,.0f}", f"{100 * used:.1f} %" if used is not None else "–"])
    targets = []
    if not quick:  # compiling takes minutes on a CPU
        # a copy of the model compiled cold (a fresh kernel cache, as a user's first run pays it),
        # then eager and compiled steps timed round-robin on the same batch
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="promptvec-bench-inductor-")
        compiled = copy.copy(backbone)
        compiled.model = copy.deepcopy(backbone.model)
        compiled.model.compile(dynamic=True)
        eager_step, tokens = _step(backbone, sizes[0], device, on_gpu)
        compiled_step, _ = _step(compiled, sizes[0], device, on_gpu)
        start = time.perf_counter()
        compiled_step()  # the first call compiles
        compile_s = time.perf_counter() - start
        times = interleaved({"eager": eager_step, "compiled": compiled_step}, repeats)
        ratio = median(times["compiled"]) / median(times["eager"])
        data["compiled"] = {**times, "compile_s": compile_s, "ratio_to_eager": ratio}
        rows += [[f"batch {sizes[0]}, eager (round-robin with the next row)", f"{median(times['eager']):.3f}",
                  f"{tokens / median(times['eager']):,.0f}", "–"],
                 [f"batch {sizes[0]}, torch.compile (compiled in {compile_s:.0f} s)",
                  f"{median(times['compiled']):.3f}", f"{tokens / median(times['compiled']):,.0f}", "–"]]
        targets.append(("--compile: step time against eager (helps where < 1)", "info",
                        f"{ratio:.2f}× eager after {compile_s:.0f} s of compilation"))
    measured = [v for k, v in data.items() if k.startswith("batch")]
    best = max(v["tokens_per_s"] for v in measured)
    fraction = max((v["fraction_of_peak"] or 0) for v in measured) if peak else None
    return Section(
        f"Training throughput ({name}, {'bf16 autocast' if on_gpu else 'fp32'}, embedded SmolLM2-135M)",
        f"Prompt tuning steps (R = 20, inputs fixed to 64 tokens), median over {repeats} after a warm-up, the device "
        "synchronised around each step; the last two rows alternate eager and compiled steps of two copies of the "
        "model. Fraction of peak: 4 × parameters FLOPs per token over the device's dense "
        "bf16 peak" + (f" ({peak:.0f} TFLOP/s)." if peak else " (not stated: no known peak for this device)."),
        ["setting", "s/step", "tokens/s", "fraction of peak"], rows,
        [("tokens/s and fraction of the GPU's peak measured on a GPU", True if on_gpu else None,
          f"{best:,.0f} tokens/s" + (f", {100 * fraction:.1f} % of peak" if fraction is not None else
                                     " (CPU; no GPU available)" if not on_gpu else "")), *targets],
        data)


def _step(backbone, batch_size: int, device: torch.device, on_gpu: bool) -> tuple[Callable[[], None], int]:
    """One training step on a fixed batch (the device synchronised around it), and its tokens."""
    task, batch, (whole_rows, _, _) = _batches(backbone, batch_size, 20, 64)
    batch = batch.to(device)
    prompt = StaticPrompt(Origin.sample(backbone, 20, 0).tensor(backbone)).to(device)
    optimizer = torch.optim.AdamW(prompt.parameters(), lr=0.03)

    def step() -> None:
        _synchronize(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            loss = backbone.loss(task, batch, prompt(batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _synchronize(device)

    return step, batch.size * (whole_rows.shape[1] + 20)
