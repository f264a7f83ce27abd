"""The results table of a suite: one row per completed run with its metrics and provenance, rebuilt
from the run folders (the source of truth) and written as ``results.jsonl`` and ``results.csv``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from promptvec.io import atomic_write_text, read_json
from promptvec.suites.plan import RunSpec, expand, run_dir, spec_path
from promptvec.suites.schema import SuiteSpec


def result_row(run: RunSpec, record: dict[str, Any], data_hash: str) -> dict[str, Any]:
    metrics = (record.get("test") or {}).get("metrics", {})
    versions = record.get("versions", {})
    return {
        **run.to_dict(), "status": record.get("status"), "metrics": metrics,
        "n_test": (record.get("test") or {}).get("n"), "best_step": (record.get("best") or {}).get("step"),
        "wall_time_s": record.get("wall_time_s"), "peak_rss_mb": (record.get("peak_memory") or {}).get("cpu_rss_mb"),
        "model": record.get("model"), "model_fingerprint": record.get("model_fingerprint"), "data_hash": data_hash,
        "versions": {k: versions.get(k) for k in ("promptvec", "torch", "transformers", "peft", "python")},
        "code": [record.get("code", {}), *record.get("code_resumed", [])],
        "warnings": [w["message"] for w in record.get("warnings", [])],
        "reused_from": record.get("reused_from"),  # the run whose identical training this one copied
        "phases": record.get("phases"),  # where its time went (runs recorded before phases existed: None)
    }


def collect_results(suite: SuiteSpec, out: Path) -> list[dict[str, Any]]:
    """Rows of every completed run, rebuilt from the run folders (the source of truth)."""
    rows = []
    for run in expand(suite):
        folder = run_dir(out, run)
        if not (folder / "run.json").is_file() or not spec_path(out, run).is_file():
            continue
        record = read_json(folder / "run.json", "run record")
        if record.get("status") != "completed":
            continue
        rows.append(result_row(run, record, read_json(spec_path(out, run), "run spec").get("data_hash")))
    return rows


def write_results(suite: SuiteSpec, out: Path) -> list[dict[str, Any]]:
    rows = collect_results(suite, out)
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    metric_names = sorted({m for r in rows for m in r["metrics"]})
    columns = ["run_id", "method", "label", "task", "shots", "origin", "seed", *metric_names, "n_test",
               "best_step", "wall_time_s", "model", "model_fingerprint", "data_hash", "promptvec", "commit",
               "dirty", "torch", "transformers", "peft"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        code = r["code"][-1]  # the code that finished the run
        writer.writerow({**r, **r["metrics"], **r["versions"], "commit": code.get("commit"),
                         "dirty": code.get("dirty")})
    atomic_write_text(out / "results.csv", buffer.getvalue())
    return rows
