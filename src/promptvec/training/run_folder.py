"""A run folder's housekeeping: one writer at a time, leftovers of killed writes, and runs that were
killed before they wrote their first record.

* **One writer**: the process training a run holds an exclusive lock (``.promptvec.lock`` in the
  folder, ``flock``; the kernel drops it when the process dies, so a killed run never leaves a stale
  lock). A second process on the same folder — a second ``train`` or a re-run of a suite while a
  worker of the old one still runs — gets one message naming the holder, instead of a
  ``FileNotFoundError`` from the folder swap.
* **Leftovers**: a write killed half-way leaves ``.<name>.<random>.tmp`` (a file or folder) or, between
  the two renames of a folder swap, ``.<name>.old``. Under the lock nobody else is writing, so the run
  that owns the folder restores an interrupted swap and deletes the temporary files.
* **Runs that did not start**: until ``run.json`` exists a run has nothing to resume; a folder holding
  only what a run writes before that (its first prompt, checkpoint or log lines) is such a run, and
  starts again from the beginning — it used to be refused forever as "not empty".
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from promptvec.errors import PromptvecError
from promptvec.io import recover_directory

LOCK_FILE = ".promptvec.lock"


class RunLockedError(PromptvecError):
    """Another process is writing this run folder."""


class RunFolderLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` (or process exit)."""

    def __init__(self, folder: Path) -> None:
        import fcntl

        self.path = folder / LOCK_FILE
        self.handle = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise RunLockedError(f"{folder} is being written by {holder}",
                                 "wait for that process to finish (or stop it), then run the command again") \
                from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"promptvec process {os.getpid()}")
        self.handle.flush()

    def release(self) -> None:
        import fcntl

        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def remove_leftovers(folder: Path) -> list[str]:
    """Restore interrupted folder swaps and delete temporary files/folders of killed writes (call it
    with the folder's lock held); returns what was removed."""
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") and entry.name.endswith(".old") and entry.is_dir():
            recover_directory(folder / entry.name[1:-len(".old")])  # the swap's target, if it went missing
    for entry in sorted(folder.iterdir()):
        stale = entry.name.startswith(".") and (entry.name.endswith(".tmp") or entry.name.endswith(".old"))
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry.name)
    return removed


def unstarted_run_entries(folder: Path, before_record: frozenset[str]) -> list[str] | None:
    """For a folder without ``run.json``: the entries a run writes before its first record, when the
    folder holds nothing else (a run killed before it started); None when it holds anything else."""
    names = [p.name for p in folder.iterdir() if p.name != LOCK_FILE]
    return names if set(names) <= before_record else None
