"""A folder of finished source runs that suites share (``sources.library``).

Source prompts are the expensive part of a transfer study (trained to convergence on ≥ 1,000
examples) and the same for every suite that asks for the same source: the same model, task, shots,
steps, settings, origin, seed and evaluation budget — exactly what a run's fingerprint hashes
(:meth:`RunSpec.fingerprint`). So a suite with a library first copies every source run the library
already holds into its own folder (the suite stays self-contained: its store, analyses and report
read only its own folder), trains the rest, and then deposits what it trained for the next suite.

Layout: ``<library>/<task>/<fingerprint>/{run/, spec.json}`` — ``run/`` is the run folder as the
suite wrote it, ``spec.json`` its run spec (payload, data hash). Entries are written with an atomic
folder swap and never changed; a source trained with other settings is another fingerprint.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from promptvec.io import atomic_directory, atomic_write_json, read_json
from promptvec.suites.plan import RunSpec, completed_record, run_dir
from promptvec.suites.schema import SuiteSpec
from promptvec.training.run_folder import LOCK_FILE

RUN_DIR = "run"
SPEC_FILE = "spec.json"


def entry_dir(library: Path, suite: SuiteSpec, run: RunSpec) -> Path:
    """Where the library keeps this source run."""
    task = re.sub(r"[^A-Za-z0-9_.+-]+", "-", run.run_id.split("/")[1])
    return library / task / run.fingerprint(suite)


def holds(library: Path, suite: SuiteSpec, run: RunSpec) -> bool:
    """Whether the library has a finished copy of ``run`` (which :func:`fetch` would copy)."""
    return _complete(entry_dir(library, suite, run))


def _complete(entry: Path) -> bool:
    return (entry / SPEC_FILE).is_file() and completed_record(entry / RUN_DIR) is not None


def fetch(library: Path, suite: SuiteSpec, out: Path, run: RunSpec, spec_file: Path) -> bool:
    """Copy the library's finished copy of ``run`` into the suite (its run folder and run spec);
    False when the library does not hold it."""
    entry = entry_dir(library, suite, run)
    if not _complete(entry):
        return False
    with atomic_directory(run_dir(out, run)) as folder:
        shutil.copytree(entry / RUN_DIR, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK_FILE))
    spec = read_json(entry / SPEC_FILE, "run spec")
    atomic_write_json(spec_file, {**spec, "suite": suite.name, "from_library": str(entry)})
    return True


def deposit(library: Path, suite: SuiteSpec, out: Path, run: RunSpec, spec_file: Path) -> bool:
    """Copy a finished source run of the suite into the library, unless it is there already; True
    when it was added."""
    entry = entry_dir(library, suite, run)
    folder = run_dir(out, run)
    if _complete(entry) or completed_record(folder) is None:
        return False
    with atomic_directory(entry) as tmp:
        # the run's lock and any leftover temporary file belong to this machine's process, not to the library
        shutil.copytree(folder, tmp / RUN_DIR, ignore=shutil.ignore_patterns(LOCK_FILE, ".*.tmp", ".*.old"))
        atomic_write_json(tmp / SPEC_FILE, read_json(spec_file, "run spec"))
    return True
