"""Warm load time of the embedded default model and peak memory of training it at batch 16, each
measured in a fresh process (so the numbers are what a user's process sees, not this one's).

The load is split into what it costs: importing torch + transformers + promptvec, importing the
model's code (transformers loads each architecture's module lazily, and Llama's pulls in
``torch.distributed.tensor`` — a fixed per-process cost whatever the model), then the load proper
(config, tokenizer, weights, fingerprint), which is what the 2 s target is about.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import Section

LOAD_TARGET_S, MEMORY_TARGET_GB = 2.0, 4.0

_LOAD = """
import json, time
start = time.perf_counter()
from promptvec.backbones import load_backbone
imported = time.perf_counter()
import transformers.models.llama.modeling_llama
model_code = time.perf_counter()
backbone = load_backbone("default")
backbone.fingerprint
print(json.dumps({"import_s": imported - start, "model_code_s": model_code - imported,
                  "load_s": time.perf_counter() - model_code}))
"""

_TRAIN = """
import json, torch
from promptvec.backbones import load_backbone
from promptvec.prompts import StaticPrompt
from promptvec.tasks import get_task, load_task_data
from promptvec.training.record import peak_rss_mb
from promptvec.vectors import Origin
backbone = load_backbone("default")
task = get_task("sst2")
batch = backbone.collate(task, backbone.encode(task, load_task_data(task).train[:16], 20), train=True)
prompt = StaticPrompt(Origin.sample(backbone, 20, 0).tensor(backbone))
opt = torch.optim.AdamW(prompt.parameters(), lr=0.03)
for _ in range(2):
    backbone.loss(task, batch, prompt(batch)).backward(); opt.step(); opt.zero_grad()
print(json.dumps({"peak_rss_gb": peak_rss_mb() / 1024, "tokens": int(batch.input_ids.shape[1]) + 20}))
"""


def _child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> Section:
    runs = [_child(_LOAD) for _ in range(2 if quick else 4)][1:]  # the first warms the OS file cache
    loads, imports, code = ([r[k] for r in runs] for k in ("load_s", "import_s", "model_code_s"))
    load = min(loads)
    train = _child(_TRAIN)
    return Section(
        "Resources: warm load and peak memory (embedded SmolLM2-135M)",
        "Each in a fresh Python process. Load: `load_backbone('default')` from the converted copy in the cache "
        "(config, tokenizer, weights, embedding fingerprint), best of the warm repeats; importing the "
        "libraries and transformers' Llama code before it are fixed per-process costs, listed separately (a "
        "fresh process needs all three before its first step). Memory: peak resident set (VmHWM) of a process "
        "that loads the model and takes two fp32 training steps at batch 16 (sst2, R = 20).",
        ["measure", "value"],
        [["warm load (s), best of " + str(len(loads)), f"{load:.2f} (all: {', '.join(f'{x:.2f}' for x in loads)})"],
         ["import promptvec + torch + transformers (s), best", f"{min(imports):.2f}"],
         ["import transformers' Llama model code (s), best", f"{min(code):.2f}"],
         ["fresh process to loaded model, total (s), best",
          f"{min(i + c + x for i, c, x in zip(imports, code, loads, strict=True)):.2f}"],
         [f"peak RSS, training at batch 16 ({train['tokens']} tokens) (GB)", f"{train['peak_rss_gb']:.2f}"]],
        [(f"warm load ≤ {LOAD_TARGET_S:.0f} s", load <= LOAD_TARGET_S,
          f"{load:.2f} s (+ {min(imports) + min(code):.2f} s of library imports once per process)"),
         (f"peak memory at batch 16 ≤ {MEMORY_TARGET_GB:.0f} GB", train["peak_rss_gb"] <= MEMORY_TARGET_GB,
          f"{train['peak_rss_gb']:.2f} GB")],
        {"load_s": loads, "import_s": imports, "model_code_s": code, **train})
