"""The JSON record every run writes: config, versions, seeds, metrics per evaluation, time, memory."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from pathlib import Path

import torch


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("promptvec", "torch", "transformers", "peft", "accelerate", "safetensors", "datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
