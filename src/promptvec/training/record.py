"""The JSON record every run writes: config, versions, seeds, metrics per evaluation, time, memory."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch

from promptvec.provenance import code_version, package_versions


class RunRecord(TypedDict, total=False):
    """``run.json``, the record every run writes — trained, reused or scored untrained. Results
    tables, reports, resume and the source library read these keys; :func:`new_run_record` is the
    one place a record starts."""

    status: Literal["running", "completed"]
    task: str
    model: str
    model_fingerprint: str
    family: str
    config: dict[str, Any]  # the TrainConfig (trained runs) or what was scored (untrained ones)
    origin: dict[str, Any] | None  # Origin.to_dict() of the origin it started from
    seeds: dict[str, int]
    data_origin: Any  # where the data came from (per task for a multi-task run)
    sizes: dict[str, int]
    processes: int
    versions: dict[str, str]
    code: dict[str, Any]  # the promptvec code that ran: version, source commit, dirty flag (see code_version)
    code_resumed: list[dict[str, Any]]  # other code that resumed the run after an interruption
    first_loss: dict[str, Any]  # step and training loss of the first step (what divergence is measured against)
    history: list[dict[str, Any]]  # one entry per evaluation: step, train_loss, lr, validation, elapsed_s
    best: dict[str, Any] | None  # the selected checkpoint: step and validation metrics
    test: dict[str, Any] | None  # metrics, n, invalid
    step: int
    stopped_early: bool
    warnings: list[dict[str, Any]]  # kind, step, message (diverging, initial-kept)
    init: dict[str, Any]  # how a suite method started it (set by the method)
    reused_from: str  # the suite run whose identical training this one copied
    wall_time_s: float
    phases: dict[str, dict[str, float]]  # per phase: seconds, count, examples, tokens, decoded (training.phases)
    peak_memory: dict[str, Any] | None


def new_run_record(backbone: Any, task: str, config: dict[str, Any], origin: dict[str, Any] | None) -> RunRecord:
    """A record as every run starts it: what runs, on which model, with which package versions."""
    return {"status": "running", "task": task, "model": backbone.name, "model_fingerprint": backbone.fingerprint,
            "family": backbone.family, "config": config, "origin": origin, "versions": package_versions(),
            "code": code_version(), "history": [], "best": None, "test": None, "wall_time_s": 0.0, "peak_memory": None}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux's ``VmHWM`` where it exists: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a process
    started by a large parent (a suite, a benchmark) would report the parent's peak, not its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory when on a GPU)."""
    peak = {"cpu_rss_mb": peak_rss_mb()}
    if torch.cuda.is_available():
        peak["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak
