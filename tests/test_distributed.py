"""Training under ``accelerate launch``: 2 CPU processes (gloo) against 1 process at the same
global batch — the prompts are identical on both ranks and the loss curve matches."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from promptvec.io import read_json, read_jsonl

WORKER = Path(__file__).with_name("distributed_worker.py")


# Accelerate's torchrun-based launcher; on a machine without GPUs the processes train on the CPU
# and talk over gloo (``--cpu`` would instead ask for mpirun to start them).
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _run(args: list[str]) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _losses(out: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in read_jsonl(out / "train_log.jsonl")}


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_models, toy_task, tmp_path):
    model, task = str(tiny_models["llama"]), str(toy_task)
    single, double = tmp_path / "single", tmp_path / "double"
    _run([sys.executable, str(WORKER), model, task, str(single)])
    _run([*LAUNCH, "--main_process_port", _free_port(), str(WORKER), model, task, str(double)])

    rank0, rank1 = load_file(double / "rank0.safetensors"), load_file(double / "rank1.safetensors")
    alone = load_file(single / "rank0.safetensors")
    # each process trained on its own share of the 64 examples, together on exactly what one process saw
    seen = [int(r.pop("examples_seen")) for r in (rank0, rank1, alone)]
    assert seen == [9 * 4 + 1, 9 * 3, 64]  # nine batches of 7 split 4 + 3, one of 1
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
    for key in alone:
        torch.testing.assert_close(rank0[key], alone[key], rtol=1e-4, atol=1e-5)

    one, two = _losses(single), _losses(double)
    assert sorted(one) == sorted(two) == list(range(1, 11))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), f"loss differs at step {step}"
    assert not (double / "rank1").exists()  # nothing but the main process writes into the run folder
    assert sorted(p.name for p in double.iterdir() if p.name.startswith("rank")) == ["rank0.safetensors",
                                                                                    "rank1.safetensors"]


@pytest.mark.slow
def test_suite_under_accelerate_launch_shares_runs_and_matches_a_plain_run(tiny_models, toy_task, tmp_path):
    from tests.conftest import tiny_suite_file

    suite = tiny_suite_file(tmp_path, tiny_models, toy_task)
    plain, launched = tmp_path / "plain", tmp_path / "launched"
    _run([sys.executable, "-m", "promptvec", "experiment", "run", str(suite), "--out", str(plain)])
    output = _run([*LAUNCH, "--main_process_port", _free_port(), "-m", "promptvec", "experiment", "run", str(suite),
                   "--out", str(launched)])
    # each run was done by one process, both processes did some, and each reported its own runs
    workers = {read_json(path)["run"]["run_id"]: read_json(path)["worker"]["pid"]
               for path in (launched / "specs").rglob("*.json")}
    assert len(workers) == 4 and len(set(workers.values())) == 2
    for rank in (0, 1):
        assert re.search(rf"\(process {rank}\) → \S+", output)

    def metrics(folder: Path) -> dict:
        return {row["run_id"]: row["metrics"] for row in read_jsonl(folder / "results.jsonl")}

    assert metrics(launched) == metrics(plain) and len(metrics(plain)) == 4
