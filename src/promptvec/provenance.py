"""Which software produced a result: the versions of the packages a run depends on, and which
promptvec code it ran (for a source checkout, the commit and whether ``src/`` differed from it).
Light on purpose (no torch): prompt folders, run records and libraries all record it."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("promptvec", "torch", "transformers", "peft", "accelerate", "safetensors", "datasets"):
        versions[name] = _version(name)
    return versions


@functools.cache
def code_version() -> dict[str, Any]:
    """Which promptvec code this process runs: the package version and, for a source checkout (an
    editable install, a ``git worktree``), the commit and whether ``src/`` differed from it.

    Code changes while a study runs, so a run's version number alone does not say what produced it.
    Computed once per process, the first time a record is written — after the modules a run uses
    are imported, so it describes the code the process holds. ``commit`` and ``dirty`` are None for
    an installed wheel or where git is unavailable."""
    package = Path(__file__).resolve().parent
    root = package.parents[1]
    info: dict[str, Any] = {"promptvec": _version("promptvec"), "commit": None, "dirty": None}
    if package != root / "src" / "promptvec" or not (root / ".git").exists():
        return info
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        info["commit"] = git("rev-parse", "HEAD")
        info["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src"))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
