"""Shared benchmark plumbing: interleaved timing (so slow drift of a noisy machine hits both sides
alike), medians, the machine description, and the report section every benchmark returns."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Section:
    """One benchmark's part of BENCHMARKS.md: a table and the targets it was measured against."""

    title: str
    intro: str
    header: list[str]
    rows: list[list[str]]
    # (target, verdict, measured): verdict True = met, False = missed, None = not measured, "info" = no target
    targets: list[tuple[str, bool | None | str, str]] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # raw numbers, written to benchmarks/results.json


def interleaved(candidates: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate, run round-robin (A B C A B C …) after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(warmup + repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """median [min–max] in seconds."""
    return f"{median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def machine() -> dict[str, str]:
    import peft
    import transformers

    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.platform()}",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
                        f"transformers {transformers.__version__}, peft {peft.__version__}"}


def verdict(met: bool | None | str) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured", "info": "information (no target)"}[met]
