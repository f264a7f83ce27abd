"""Interrupted work loses nothing: real processes killed with SIGKILL at fixed points (see
``promptvec.faults``), then resumed, end exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from promptvec.io import read_json
from promptvec.training.checkpoint import load_training_state


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("PROMPTVEC_FAULT", None)
    if fault:
        env["PROMPTVEC_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "promptvec", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _train_args(tiny_models, toy_task, out: Path) -> list[str]:
    return ["train", "--model", str(tiny_models["llama"]), "--task", str(toy_task), "--steps", "6", "--eval-every",
            "2", "--batch-size", "4", "--prompt-length", "4", "--lr", "0.05", "--out", str(out)]


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]


def _killed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == -signal.SIGKILL, f"expected SIGKILL, got {done.returncode}: {done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, toy_task, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "reference"
    _ok(_cli(_train_args(tiny_models, toy_task, out)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fault", [
    "train.step@3",                       # between steps: the checkpoint of step 3 is on disk
    "atomic-directory.before-swap@5",     # a checkpoint folder written but not yet in place
    "atomic-directory.mid-swap@5",        # between the two renames of a folder swap
    "atomic-write.before-rename@9",       # a record written under its temporary name
])
def test_killed_training_resumes_to_the_uninterrupted_result(tiny_models, toy_task, tmp_path, uninterrupted, fault):
    out = tmp_path / "cut"
    _killed(_cli(_train_args(tiny_models, toy_task, out), fault))
    state = load_training_state(out / "checkpoint")  # whatever was on disk is a whole, readable checkpoint
    assert 0 <= state["step"] < 6
    _ok(_cli([*_train_args(tiny_models, toy_task, out), "--resume"]))

    assert read_json(out / "run.json")["status"] == "completed"
    for name in ("prompt/adapter_model.safetensors", "checkpoint/state.safetensors"):
        ours, reference = load_file(out / name), load_file(uninterrupted / name)
        assert ours.keys() == reference.keys()
        for key in ours:
            if key.startswith("s.rng") or key.startswith("s.record"):
                continue
            assert torch.equal(ours[key], reference[key]), f"{name}: {key} differs from the uninterrupted run"
    ours, reference = read_json(out / "run.json"), read_json(uninterrupted / "run.json")
    assert ours["test"] == reference["test"] and ours["best"] == reference["best"]
    assert [h["validation"] for h in ours["history"]] == [h["validation"] for h in reference["history"]]
    assert not list(out.glob(".*.old"))  # no half-swapped folder left behind


@pytest.mark.slow
def test_killed_suite_reruns_to_the_uninterrupted_results(tiny_models, toy_task, tmp_path):
    from promptvec.io import read_jsonl
    from tests.conftest import tiny_suite_file

    suite = str(tiny_suite_file(tmp_path, tiny_models, toy_task))
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    _ok(_cli(["experiment", "run", suite, "--out", str(reference)]))
    _killed(_cli(["experiment", "run", suite, "--out", str(cut)], "train.step@2"))  # inside the first run
    _killed(_cli(["experiment", "run", suite, "--out", str(cut)], "suite.run@2"))  # it resumed, and one more ran
    again = _cli(["experiment", "run", suite, "--out", str(cut)])
    _ok(again)
    assert "2 done" in again.stdout + again.stderr

    def rows(folder: Path) -> dict:
        return {row["run_id"]: row["metrics"] for row in read_jsonl(folder / "results.jsonl")}

    assert rows(cut) == rows(reference) and len(rows(reference)) == 4


@pytest.mark.slow
@pytest.mark.parametrize("fault", [
    "atomic-directory.before-swap@1",  # the first prompt folder written, not yet in place
    "atomic-directory.before-swap@2",  # the first prompt in place, the first checkpoint not
    "atomic-write.before-rename@1",    # the very first file, still under its temporary name
    "atomic-write.before-rename@4",    # prompt and checkpoint in place, run.json not yet
])
def test_a_run_killed_before_its_first_record_starts_again(tiny_models, toy_task, tmp_path, uninterrupted, fault):
    """A run killed during its first checkpoint used to leave a folder `--resume` refused forever ("not
    empty and holds no promptvec run"). Now it is a run that did not start: it starts again, ends
    where an uninterrupted run ends, and the temporary files of the killed write are gone."""
    out = tmp_path / "cut"
    _killed(_cli(_train_args(tiny_models, toy_task, out), fault))
    assert not (out / "run.json").exists()
    _ok(_cli([*_train_args(tiny_models, toy_task, out), "--resume"]))
    ours, reference = read_json(out / "run.json"), read_json(uninterrupted / "run.json")
    assert ours["status"] == "completed" and ours["test"] == reference["test"]
    prompt, expected = load_file(out / "prompt/adapter_model.safetensors"), load_file(
        uninterrupted / "prompt/adapter_model.safetensors")
    assert torch.equal(prompt["prompt_embeddings"], expected["prompt_embeddings"])
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert len(read_json(out / "run.json")["history"]) == len(reference["history"])


@pytest.mark.slow
def test_two_writers_on_one_run_folder_get_one_clear_message(tiny_models, toy_task, tmp_path):
    """A second `train` on a folder another process is training used to die in the folder swap with a
    FileNotFoundError traceback (or worse, write beside it). Now it is refused, naming the holder."""
    from promptvec.training.run_folder import RunFolderLock

    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from promptvec.training.run_folder import RunFolderLock; "
        "lock = RunFolderLock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)"), str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = _cli([*_train_args(tiny_models, toy_task, out), "--resume"])
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is being written by process {holder.pid} (" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        holder.kill()
        holder.wait()
    RunFolderLock(out).release()  # the kernel dropped the dead holder's lock: nothing stale is left
