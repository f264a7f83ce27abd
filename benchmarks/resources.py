"""Warm load time of the embedded default model and peak memory of training it at batch 16, each
measured in a fresh process (so the numbers are what a user's process sees, not this one's)."""

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
backbone = load_backbone("default")
print(json.dumps({"import_s": imported - start, "load_s": time.perf_counter() - imported}))
"""

_TRAIN = """
import json, resource, torch
from promptvec.backbones import load_backbone
from promptvec.prompts import StaticPrompt
from promptvec.tasks import get_task, load_task_data
from promptvec.vectors import Origin
backbone = load_backbone("default")
task = get_task("sst2")
batch = backbone.collate(task, backbone.encode(task, load_task_data(task).train[:16], 20), train=True)
prompt = StaticPrompt(Origin.sample(backbone, 20, 0).tensor(backbone))
opt = torch.optim.AdamW(prompt.parameters(), lr=0.03)
for _ in range(2):
    backbone.loss(task, batch, prompt(batch)).backward(); opt.step(); opt.zero_grad()
print(json.dumps({"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "tokens": int(batch.input_ids.shape[1]) + 20}))
"""


def _child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> Section:
    runs = [_child(_LOAD) for _ in range(2 if quick else 4)][1:]  # the first warms the OS file cache
    loads, imports = [r["load_s"] for r in runs], [r["import_s"] for r in runs]
    load = min(loads)
    train = _child(_TRAIN)
    return Section(
        "Resources: warm load and peak memory (embedded SmolLM2-135M)",
        "Each in a fresh Python process. Load: `load_backbone('default')` from the converted copy in the cache "
        "(model, tokenizer, fingerprint), best of the warm repeats; importing promptvec (torch, transformers) "
        "before it is a fixed per-process cost, listed separately. Memory: peak RSS of a process "
        "that loads the model and takes two fp32 training steps at batch 16 (sst2, R = 20).",
        ["measure", "value"],
        [["warm load (s), best of " + str(len(loads)), f"{load:.2f} (all: {', '.join(f'{x:.2f}' for x in loads)})"],
         ["import promptvec + torch + transformers (s), best", f"{min(imports):.2f}"],
         [f"peak RSS, training at batch 16 ({train['tokens']} tokens) (GB)", f"{train['peak_rss_gb']:.2f}"]],
        [(f"warm load ≤ {LOAD_TARGET_S:.0f} s", load <= LOAD_TARGET_S, f"{load:.2f} s"),
         (f"peak memory at batch 16 ≤ {MEMORY_TARGET_GB:.0f} GB", train["peak_rss_gb"] <= MEMORY_TARGET_GB,
          f"{train['peak_rss_gb']:.2f} GB")],
        {"load_s": loads, "import_s": imports, **train})
