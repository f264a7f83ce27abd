"""Run a suite: skip what is done, resume what was interrupted (to the step), respect a time
budget, optionally in parallel processes; keep a results table with provenance up to date.

Two ways to use several devices: ``--jobs N`` starts N worker processes on this machine (one GPU
each when GPUs exist); under ``accelerate launch`` (any number of GPUs and nodes) the launched
processes share the runs round-robin, each run trained on one process's device, and the main
process alone does the suite-level work (the source store, analyses, results tables)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptvec.backbones import Backbone
from promptvec.errors import ConfigError, PromptvecError
from promptvec.experiments import source_library
from promptvec.experiments.cost import WORK_PHASES, CostModel
from promptvec.faults import fault_point
from promptvec.io import atomic_write_json, output_folder, read_json
from promptvec.suites.context import RunContext
from promptvec.suites.method import METHODS
from promptvec.suites.plan import (
    STORE_DIR,
    RunSpec,
    expand,
    is_source,
    run_dir,
    same_payload,
    source_run,
    source_runs,
    spec_path,
    stored_name,
)
from promptvec.suites.results import result_row, write_results
from promptvec.suites.schema import SuiteSpec
from promptvec.tasks import TaskData
from promptvec.training.distributed import Processes

#: after Ctrl-C, how long the suite waits for its workers to stop at their next step before ending them
INTERRUPT_GRACE_S = 120.0


class SuiteInterrupted(KeyboardInterrupt):
    """The suite was interrupted (Ctrl-C); its workers stopped at their next step. Run again to resume."""


class BudgetExhausted(Exception):
    """The suite's --max-minutes budget is spent; everything done so far is saved."""


@dataclass
class RunStatus:
    run: RunSpec
    state: str  # done / partial / todo / changed (made with other suite settings)
    step: int = 0
    total_steps: int = 0


def status_of(suite: SuiteSpec, out: Path, run: RunSpec) -> RunStatus:
    steps = METHODS[run.method].estimate_steps(suite, run)
    if not _spec_matches(suite, out, run):
        return RunStatus(run, "changed", 0, steps)
    record_path = run_dir(out, run) / "run.json"
    if not record_path.is_file():
        return RunStatus(run, "todo", 0, steps)
    try:
        record = read_json(record_path, "run record")
    except PromptvecError:
        return RunStatus(run, "todo", 0, steps)
    if record.get("status") == "completed":
        return RunStatus(run, "done", steps, steps)
    return RunStatus(run, "partial", int(record.get("step", 0)), steps)


def _spec_matches(suite: SuiteSpec, out: Path, run: RunSpec) -> bool:
    """Whether a run's recorded settings (if any) are those of the suite now."""
    spec_file = spec_path(out, run)
    if not spec_file.is_file():
        return True
    try:
        recorded = read_json(spec_file, "run spec")
    except PromptvecError:
        return True  # unreadable bookkeeping is rewritten when the run is executed
    if recorded.get("fingerprint") == run.fingerprint(suite):
        return True
    return "payload" in recorded and same_payload(run.payload(suite), recorded["payload"])


def estimate_seconds(suite: SuiteSpec, statuses: list[RunStatus], out: Path | None = None,
                     data_dir: str | None = None) -> float | None:
    """Seconds the unfinished runs (and analyses) will take on the calibration machine, added over the
    runs (:mod:`promptvec.experiments.cost`); None: the model's size is unknown without loading it."""
    breakdown = estimate_breakdown(suite, statuses, out, data_dir)
    return None if breakdown is None else sum(breakdown.values())


def estimate_breakdown(suite: SuiteSpec, statuses: list[RunStatus], out: Path | None = None,
                       data_dir: str | None = None) -> dict[str, float] | None:
    """:func:`estimate_seconds` by kind of work: the unfinished runs' phase groups
    (:data:`~promptvec.experiments.cost.WORK_PHASES`: making starts, training steps, evaluations, the rest)
    and the analyses; None: the model's size is unknown without loading it."""
    model = CostModel(suite, data_dir)
    if model.scale is None:
        return None
    seconds = dict.fromkeys([*WORK_PHASES, "analyses"], 0.0)
    for st in statuses:
        if st.state != "done":
            for group, cost in model.phase_seconds(st.run, 0 if st.state == "changed" else st.step).items():
                seconds[group] += cost
    for analysis, settings, missing in analysis_status(suite, out):
        if missing:
            share = len(missing) / len(analysis.items(settings, suite))
            seconds["analyses"] += share * model.evaluation_seconds(analysis.evaluations(settings, suite))
    return seconds


def analysis_status(suite: SuiteSpec, out: Path | None) -> list[tuple[Any, Any, list]]:
    """(analysis class, settings, missing items) for every analysis of the suite."""
    from promptvec.suites.analysis import ANALYSES

    status = []
    for name, raw in suite.analyses.items():
        analysis = ANALYSES[name]
        settings = analysis.Settings(**raw)
        missing = analysis.items(settings, suite) if out is None else analysis.missing(settings, suite, out)
        status.append((analysis, settings, missing))
    return status


# ---- executing runs -------------------------------------------------------------------------
@dataclass
class WorkerResources:
    """What one process keeps between the runs it executes: the loaded backbone (one at a time, for
    the suite's backbone settings), each task's data with its content hash, and the GPU it was given.
    Loading is the expensive part of a short run, so a process loads each once. The main process
    makes one per suite; a worker process makes one when it starts (:func:`_worker_init`)."""

    device: str | None = None
    parent_pid: int | None = None  # a worker's: the suite's process, whose end stops the worker
    _backbone: Any = None
    _backbone_key: str | None = None
    _data: dict[tuple[str, str | None], tuple[TaskData, str]] = field(default_factory=dict)

    stop: Any = None  # a worker's: the suite's stop event (set on an interrupt), checked at every step

    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def orphaned(self) -> bool:
        """Whether the suite's process that started this worker is gone (killed, not stopped): the
        worker then stops at its next step instead of training on alone — its run resumes later."""
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def backbone(self, suite: SuiteSpec) -> Backbone:
        from promptvec.backbones import load_backbone
        from promptvec.encoding import EncodingSpec

        key = json.dumps(suite.backbone.model_dump(), sort_keys=True)
        if self._backbone_key != key:
            bb = suite.backbone
            # the suite's encoding (chat template included) for every run, whichever method runs first
            self._backbone = load_backbone(bb.model, bb.family, bb.max_length, device=self.device).with_encoding(
                EncodingSpec(bb.max_length, bb.chat_template))
            self._backbone_key = key
        return self._backbone

    def task_data(self, task: str, data_dir: str | None) -> tuple[TaskData, str]:
        """A task's data and its content hash."""
        from promptvec.tasks import get_task, load_task_data

        if (task, data_dir) not in self._data:
            data = load_task_data(get_task(task), data_dir)
            self._data[task, data_dir] = (data, data.content_hash())
        return self._data[task, data_dir]

    def run_data(self, run: RunSpec, data_dir: str | None) -> tuple[TaskData | list[TaskData], str]:
        """The run's data (a list for a multi-task run) and its content hash."""
        loaded = [self.task_data(task, data_dir) for task in run.tasks]
        if len(loaded) == 1:
            return loaded[0]
        import hashlib

        return [d for d, _ in loaded], hashlib.sha256("".join(h for _, h in loaded).encode()).hexdigest()


_WORKER: WorkerResources | None = None  # a worker process's own, made by _worker_init


def execute_run(suite_dict: dict, run: RunSpec, out: str, data_dir: str | None, deadline: float | None,
                resources: WorkerResources, progress: bool = False, data_parallel: bool = True) -> dict[str, Any]:
    """Do one run (in this process or a worker); returns its result row or a 'stopped' marker."""
    suite = SuiteSpec(**suite_dict)
    folder = run_dir(Path(out), run)
    spec_file = spec_path(Path(out), run)
    if not _spec_matches(suite, Path(out), run):
        raise ConfigError(f"run {run.run_id} in {out} was made with different suite settings",
                          "use a new --out for a changed suite (or delete that run's folder)")
    if (deadline is not None and time.time() > deadline) or resources.orphaned() or resources.stop_requested():
        return {"run_id": run.run_id, "status": "stopped"}
    backbone = resources.backbone(suite)
    data, data_hash = resources.run_data(run, data_dir)
    atomic_write_json(spec_file, {"fingerprint": run.fingerprint(suite), "payload": run.payload(suite),
                                  "run": run.to_dict(), "suite": suite.name, "data_hash": data_hash,
                                  "worker": {"host": socket.gethostname(), "pid": os.getpid(),
                                             "device": resources.device}})

    def guard(step: int) -> None:
        if (deadline is not None and time.time() > deadline) or resources.orphaned() or resources.stop_requested():
            raise BudgetExhausted

    ctx = RunContext(suite=suite, run=run, backbone=backbone, data=data, out=folder, suite_out=Path(out),
                     on_step=guard, progress=progress, load_data=lambda task: resources.task_data(task, data_dir)[0],
                     data_parallel=data_parallel)
    try:
        record = METHODS[run.method].execute(ctx)
    except BudgetExhausted:
        return {"run_id": run.run_id, "status": "stopped"}
    return result_row(run, record, data_hash)


def _exit_with_parent() -> None:
    """A worker's watchdog: when the suite's process dies (``kill -9``, a crash) the worker exits at
    once — an orphaned pool worker would otherwise wait for work forever. Every file it writes is
    written atomically and its run resumes at the last step, so exiting mid-step loses nothing."""
    import multiprocessing
    from multiprocessing.connection import wait as wait_for

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait_for([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="promptvec-parent-watch", daemon=True).start()


def _worker_init(threads: int, devices, stop) -> None:
    import torch

    global _WORKER
    _exit_with_parent()  # first: a parent that died during start-up is noticed too
    # Ctrl-C reaches the whole process group: a worker does not die mid-run, it asks every worker to stop
    # at its next step (the suite's process waits for them and says how to resume)
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    torch.set_num_threads(threads)
    _WORKER = WorkerResources(device=devices.get() if devices is not None else None, parent_pid=os.getppid(),
                              stop=stop)
    if _WORKER.device is not None:
        torch.cuda.set_device(_WORKER.device)  # so the trainer's default CUDA device is this worker's GPU


def _worker_execute(suite_dict, run, out, data_dir, deadline):
    assert _WORKER is not None, "_worker_init runs first in every worker"
    return execute_run(suite_dict, run, out, data_dir, deadline, _WORKER)


@dataclass
class SuiteOutcome:
    statuses: list[RunStatus]
    completed: int  # by all processes
    stopped: bool
    wall_time_s: float
    main: bool = True  # whether this is the process that reports (the only one unless under accelerate launch)


def run_suite(suite: SuiteSpec | str | Path, out: str | Path, jobs: int = 1, max_minutes: float | None = None,
              data_dir: str | None = None, progress: bool = True, log=print) -> SuiteOutcome:
    """Run a suite (a :class:`SuiteSpec` or the path of its YAML file) into ``out``: runs already done
    are skipped, interrupted ones resume; ``jobs`` worker processes; stops cleanly after
    ``max_minutes``. Results go to ``out/results.{jsonl,csv}``; ``build_report(out)`` writes the report."""
    if not isinstance(suite, SuiteSpec):
        from promptvec.suites.schema import load_suite

        suite = load_suite(suite)
    out = Path(out)
    processes = Processes()
    if jobs == 0:  # one worker per GPU (one process on a machine without)
        import torch

        jobs = max(1, torch.cuda.device_count()) if processes.world == 1 else 1
    if processes.world > 1 and jobs > 1:
        raise ConfigError("--jobs starts worker processes, and so does accelerate launch",
                          "use one of the two: accelerate launch alone spreads the runs over its processes")
    resources = WorkerResources(device=processes.device)
    if processes.main:
        output_folder(out, "suite folder (--out)")
        atomic_write_json(out / "suite.json", suite.model_dump())
    processes.wait()
    # the main process reports the suite; every process reports the runs it does (tagged when several)
    report = log
    log_run = report if processes.world == 1 else (lambda message: report(f"(process {processes.rank}) {message}"))
    log = report if processes.main else (lambda message: None)
    data_dir = data_dir or suite.data_dir
    library = Path(suite.sources.library) if suite.sources.library else None
    if library is not None and processes.main:
        reused = [run for run in source_runs(suite) if status_of(suite, out, run).state in ("todo", "partial")
                  and source_library.fetch(library, suite, out, run, spec_path(out, run))]
        if reused:
            log(f"{len(reused)} source run(s) copied from the library {library} instead of trained")
    processes.wait()
    statuses = [status_of(suite, out, r) for r in expand(suite)]
    changed = [st.run.run_id for st in statuses if st.state == "changed"]
    if changed:
        raise ConfigError(f"{len(changed)} run(s) in {out} were made with different suite settings "
                          f"(e.g. {changed[0]})", "use a new --out for a changed suite (or delete those runs)")
    todo = [st.run for st in statuses if st.state != "done"]
    estimate = estimate_seconds(suite, statuses, out, data_dir)
    done = len(statuses) - len(todo)
    log(f"suite '{suite.name}': {len(statuses)} runs, {done} done, {len(todo)} to do; "
        f"estimated CPU time {format_duration(estimate)}"
        + (f"; {processes.world} processes share them" if processes.world > 1 else ""))
    start = time.time()
    deadline = start + max_minutes * 60 if max_minutes else None
    counts = {"completed": 0, "stopped": 0}
    suite_dict = suite.model_dump()

    def on_result(run: RunSpec, row: dict[str, Any]) -> bool:
        """Record one finished run; returns False when it was stopped by the time budget."""
        if row["status"] == "stopped":
            counts["stopped"] += 1
            return False
        counts["completed"] += 1
        if processes.main:
            write_results(suite, out)
            if library is not None and is_source(run) and source_library.deposit(library, suite, out, run,
                                                                                  spec_path(out, run)):
                log(f"  {run.run_id}: added to the library {library}")  # at once: a later stop keeps it
        log_run(f"  {run.run_id}: {row['metrics']}")
        for warning in row.get("warnings", []):
            log_run(f"  {run.run_id}: warning: {warning}")
        fault_point("suite.run")
        return True

    def execute(runs: list[RunSpec]) -> bool:
        """This process's share of the runs; then every process waits for the others (the count of
        stopped processes is gathered from all). True when no process was stopped by the time budget."""
        finished = _execute(processes.share(runs), suite_dict, out, data_dir, deadline, resources, jobs, progress,
                            on_result, log_run, data_parallel=processes.world == 1)
        return not processes.total(not finished)  # a process stopped by the budget stops the suite

    # sources first (targets start from them), then the analyses of the sources, then the targets
    sources = [run for run in todo if is_source(run)]
    targets = [run for run in todo if not is_source(run)]
    sources_done = execute(sources)
    if library is not None and processes.main:  # finished sources another process trained (accelerate launch)
        added = [run for run in source_runs(suite)
                 if source_library.deposit(library, suite, out, run, spec_path(out, run))]
        if added:
            log(f"{len(added)} source run(s) added to the library {library}")
    if sources_done:
        prepared = _prepare_targets(suite, out, data_dir, deadline, resources, log) if processes.main else True
        if processes.decide(prepared):
            execute(targets)
        else:
            counts["stopped"] += 1
    completed, stopped = processes.total(counts["completed"]), processes.total(counts["stopped"]) > 0
    if processes.main:
        write_results(suite, out)
    if stopped:
        log(f"time budget of {max_minutes} min spent: stopped cleanly; run the same command again to resume")
    return SuiteOutcome(statuses, completed, stopped, time.time() - start, processes.main)


def _execute(runs, suite_dict, out, data_dir, deadline, resources: WorkerResources, jobs, progress, on_result, log,
             data_parallel: bool = True) -> bool:
    """Execute runs serially or in ``jobs`` processes; False when the time budget stopped them."""
    if jobs <= 1:
        for run in runs:
            log(f"→ {run.run_id}")
            row = execute_run(suite_dict, run, str(out), data_dir, deadline, resources, progress=progress,
                              data_parallel=data_parallel)
            if not on_result(run, row):
                return False
        return True
    results = _run_parallel(suite_dict, runs, out, data_dir, deadline, jobs, on_result)
    return all(results)


def _prepare_targets(suite: SuiteSpec, out: Path, data_dir: str | None, deadline: float | None,
                     resources: WorkerResources, log) -> bool:
    """Put the finished source prompts and their vectors in the suite's store, and run the analyses
    of the sources; False when the time budget ran out (resumable)."""
    from promptvec.suites.analysis import AnalysisContext

    pending = [(a, s) for a, s, missing in analysis_status(suite, out) if missing]
    unregistered = suite.sources.tasks and not sources_registered(suite, out)
    if not unregistered and not pending:
        return True  # nothing to do: do not load the model just to re-add what the store holds
    backbone = resources.backbone(suite)
    if unregistered:
        register_sources(suite, out, backbone)
    ctx = AnalysisContext(suite, out, backbone, lambda task: resources.task_data(task, data_dir)[0],
                          lambda: deadline is not None and time.time() > deadline,
                          lambda task, origin: run_dir(out, source_run(suite, task, origin)))
    for analysis, settings in pending:
        log(f"→ analysis {analysis.name}")
        if not analysis.run(settings, ctx):
            return False
    return True


def sources_registered(suite: SuiteSpec, out: Path) -> bool:
    """Whether every source run already has its prompt and vector in ``<out>/store``."""
    if not (out / STORE_DIR / "index.sqlite").is_file():
        return False
    from promptvec.store import VectorStore

    stored = {(e.kind, e.name) for e in VectorStore(out / STORE_DIR).entries()}
    return all((kind, stored_name(run.task, run.origin)) in stored
               for run in source_runs(suite) for kind in ("prompt", "vector"))


def register_sources(suite: SuiteSpec, out: Path, backbone) -> None:
    """Add every source prompt (PEFT layout) and its task prompt vector to ``<out>/store``;
    content addressing makes this idempotent."""
    from promptvec.peft_folder import PROMPT_DIR
    from promptvec.store import VectorStore, import_peft
    from promptvec.vectors import TaskPromptVector

    store = VectorStore(out / STORE_DIR)
    for run in source_runs(suite):
        folder = run_dir(out, run) / PROMPT_DIR
        name = stored_name(run.task, run.origin)
        import_peft(store, folder, backbone=backbone, name=name)
        store.add_vector(TaskPromptVector.from_checkpoint(folder, backbone), name=name)


def _run_parallel(suite_dict, todo, out, data_dir, deadline, jobs, on_result) -> list[bool]:
    import multiprocessing

    import torch

    ctx = multiprocessing.get_context("spawn")
    devices = None
    gpus = torch.cuda.device_count()
    if gpus > 0:
        devices = ctx.Manager().Queue()
        for i in range(jobs):
            devices.put(f"cuda:{i % gpus}")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    stop = ctx.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(threads, devices, stop))
    outcomes: list[bool] = []
    pending = {pool.submit(_worker_execute, suite_dict, run, str(out), data_dir, deadline): run for run in todo}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                run = pending.pop(future)
                outcomes.append(on_result(run, future.result()))
            if stop.is_set():  # a worker was interrupted: nothing new starts
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        stop.set()  # running runs stop at their next step (resumable); queued ones return at once
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.time() + INTERRUPT_GRACE_S
        try:  # until the workers are gone (each ends after its current step), not until every future settles
            while any(w.is_alive() for w in workers) and time.time() < deadline:
                wait(pending, timeout=0.5)
        except KeyboardInterrupt:  # a second Ctrl-C: do not wait for the current steps
            pass
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        raise SuiteInterrupted from None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (model size not known offline)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
