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
import stat
from pathlib import Path

from promptvec.errors import PromptvecError
from promptvec.io import recover_directory

# what a run folder holds besides its prompt and record (named here, where readers find them without the trainer)
MODULE_LOG = "module_log.jsonl"  # what a prompt module observed per step
TRAIN_LOG = "train_log.jsonl"  # the training loss of every step
STAGES_DIR = "stages"  # preliminary sub-runs (SPoT's early prompt, DTVG's Stage I)

LOCK_FILE = ".promptvec.lock"


class RunLockedError(PromptvecError):
    """Another process is writing this run folder."""


class NotALockError(PromptvecError):
    """What sits at the lock's path is not a lock file promptvec made (a link, a folder, a FIFO, ...)."""


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device file"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "not a regular file")


def lock_holder(path: Path) -> int | None:
    """The pid of the live process holding a ``flock`` on ``path``, from the kernel's lock table
    (``/proc/locks``; Linux) — not from the pid text in the file, which a copied folder leaves stale."""
    try:
        info = os.stat(path, follow_symlinks=False)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not the holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].lstrip("-").isdigit():
            pid = int(fields[4])
            if pid > 0 and Path(f"/proc/{pid}").exists():
                return pid
    return None


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"process {pid}" + (f" ({command[:120]})" if command else "")


class RunFolderLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` (or process exit).

    The lock file is opened without following links and must be a regular file: a symlink, folder,
    FIFO or device at its path is refused with one message and left untouched — promptvec never writes
    through something it did not create."""

    def __init__(self, folder: Path) -> None:
        import fcntl

        self.path = folder / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise self._refused(self._what_is_there(exc)) from None
        mode = os.fstat(self.fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(self.fd)
            raise self._refused(_kind(mode))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = lock_holder(self.path)
            written = os.pread(self.fd, 200, 0).decode(errors="replace").strip()
            os.close(self.fd)
            holder = _describe(pid) if pid is not None else (
                f"another process (the lock file says '{written}')" if written else "another process")
            raise RunLockedError(f"{folder} is being written by {holder}",
                                 "wait for that process to finish (or stop it), then run the command again") \
                from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"promptvec process {os.getpid()}".encode(), 0)

    def _what_is_there(self, exc: OSError) -> str:
        try:
            info = os.lstat(self.path)
        except OSError:
            return f"unusable ({exc.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return "a symbolic link" + ("" if self.path.exists() else " to nothing")
        return _kind(info.st_mode)

    def _refused(self, kind: str) -> NotALockError:
        return NotALockError(f"{self.path} is {kind}, not the lock file promptvec writes there; nothing was "
                             "written", f"move {self.path} away (promptvec did not create it and will not "
                             "change it), then run the command again")

    def release(self) -> None:
        import fcntl

        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


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
