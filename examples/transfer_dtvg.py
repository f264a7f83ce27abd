"""Transfer to imdb from sst2 and trec with Dynamic Task Vector Grouping, through the library API.

Runs on the embedded sentence encoder in about two minutes on 2 CPU cores; reads the data from
$PROMPTVEC_DATA_DIR (default ../shared/data). The sources are trained first from origin 0 and kept in
the output folder's store; running the script again reuses everything.

    python examples/transfer_dtvg.py [OUT]
"""

from __future__ import annotations

import os
import sys

from promptvec.experiments.transfer import transfer
from promptvec.experiments.transfer_report import module_log

out = sys.argv[1] if len(sys.argv) > 1 else "runs/example-transfer-dtvg"
data_dir = os.environ.get("PROMPTVEC_DATA_DIR", "../shared/data")
common = dict(model="minilm", max_length=128, shots=64, steps=20, batch_size=8, source_steps=40, source_shots=200,
              eval_every=10, val_examples=60, test_examples=200, data_dir=data_dir, progress=False, log=print,
              source_settings={"lr": 0.3})

result = transfer("dtvg", ["sst2", "trec"], "imdb", out, settings={"lr": 0.3, "stage1_steps": 10}, **common)
baseline = transfer("pt", [], "imdb", out, settings={"lr": 0.3}, **common)

print(f"imdb accuracy — prompt tuning: {baseline.record['test']['metrics']['acc']:.3f}, "
      f"DTVG: {result.record['test']['metrics']['acc']:.3f}")
for entry in module_log(result.folder)[:: max(1, len(module_log(result.folder)) // 5)]:
    members = [name for name, inside in zip(result.record["init"]["sources"], entry["group"], strict=True) if inside]
    print(f"step {entry['step']:>3}: group {members or '∅'}; target similarity "
          + ", ".join(f"{s:+.4f}" for s in entry["similarity"]))
print(f"module: {result.folder / 'module'}; P_mix as a PEFT folder: {result.folder / 'prompt'}")
