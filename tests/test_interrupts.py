"""Interrupting a suite that runs with ``--jobs 2``: when its process is killed (also while its
workers start), the workers and multiprocessing's resource tracker exit; Ctrl-C stops the suite
within a step instead of letting the workers start new runs, and says how to continue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_suite_file

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table in /proc")


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (workers, the resource tracker)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and int(stat_file.parent.name) not in found:
                found.add(int(stat_file.parent.name))
                frontier.append(int(stat_file.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(tmp_path: Path, tiny_models, toy_task) -> tuple[subprocess.Popen, Path]:
    suite = tiny_suite_file(tmp_path, tiny_models, toy_task, seeds=[0, 1, 2, 3], budget={
        "steps": 3000, "batch_size": 4, "eval_every": 1000, "val_examples": 8, "test_examples": 8})
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "promptvec", "experiment", "run", str(suite), "--out", str(out),
                                "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    return process, out


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["while training", "during start-up"])
def test_killing_the_suite_ends_its_workers_and_the_resource_tracker(tmp_path, tiny_models, toy_task, when):
    process, out = _start(tmp_path, tiny_models, toy_task)
    try:
        if when == "while training":
            _wait_for(lambda: any(out.glob("runs/PT/*/*/*/train_log.jsonl")), 120, "a worker to train")
        else:
            _wait_for(lambda: len(_children(process.pid)) >= 2, 60, "the workers to be spawned")
        family = _children(process.pid)
        assert family
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        _wait_for(lambda: not [pid for pid in family if _alive(pid)], 30, f"{family} to exit")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_stops_the_suite_within_a_step_and_says_how_to_continue(tmp_path, tiny_models, toy_task):
    process, out = _start(tmp_path, tiny_models, toy_task)
    try:
        _wait_for(lambda: any(out.glob("runs/PT/*/*/*/train_log.jsonl")), 120, "a worker to train")
        family = _children(process.pid)
        started = time.time()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, stderr = process.communicate(timeout=60)
        assert time.time() - started < 30 and process.returncode == 130, stderr[-2000:]
        assert "run the same command again to continue" in stderr and "--resume" not in stderr
        assert "Traceback" not in stderr
        _wait_for(lambda: not [pid for pid in family if _alive(pid)], 30, "the workers to exit")
        # no run started after the interrupt: at most the two that were running have folders
        assert len(list(out.glob("runs/PT/*/*/*"))) <= 2
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
