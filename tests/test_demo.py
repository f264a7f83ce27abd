"""`promptvec demo` on a tiny model: no prompt, prompt tuning and prompt tuning from the sources' task
prompt vectors on the same test examples; sources come from a library when it holds this model's,
and are trained otherwise."""

from __future__ import annotations

import json
import shutil

import torch

from promptvec.demo import library_prompt, run_demo
from promptvec.evaluation import evaluate
from promptvec.peft_folder import PROMPT_DIR, load_prompt
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.vectors import Origin, TaskPromptVector


def test_the_demo_transfers_from_trained_or_stored_sources(tmp_path, tiny_models, toy_tasks, backbones):
    kwargs = {"model": str(tiny_models["llama"]), "target": toy_tasks["target"],
              "sources": (toy_tasks["src_a"], toy_tasks["src_b"]), "shots": 8, "steps": 2, "test_examples": 8,
              "progress": False, "log": lambda m: None}
    rows = run_demo(out=tmp_path / "first", library=tmp_path / "no-library", **kwargs)
    assert [r.method.split(" (")[0] for r in rows][:2] == ["no prompt", "prompt tuning from a random origin"]
    assert rows[2].method.startswith("prompt tuning from origin + τ(") and "trained now" in rows[2].note
    summary = json.loads((tmp_path / "first" / "demo.json").read_text())
    assert [r["score"] for r in summary["rows"]] == [r.score for r in rows]

    # the tpv-init run started from θ0 + τa + τb: its step-0 validation score is that prompt's
    backbone = backbones["llama"]
    tau = [TaskPromptVector.from_checkpoint(tmp_path / "first" / f"source-{name}" / PROMPT_DIR, backbone)
           for name in ("src_a", "src_b")]
    start = (tau[0] + tau[1]).apply_to(Origin.sample(backbone, 20, 0), 1.0, backbone)
    record = json.loads((tmp_path / "first" / "tpv-init" / "run.json").read_text())
    task = get_task(toy_tasks["target"])
    val = subsample(load_task_data(task).validation, 100, record["config"]["eval_seed"])
    assert record["history"][0]["step"] == 0
    assert record["history"][0]["validation"] == evaluate(backbone, task, val, start).metrics
    assert not torch.equal(load_prompt(tmp_path / "first" / "tpv-init" / PROMPT_DIR, backbone).prompt, start)

    # a library holding this model's source prompts is used instead of training them
    library = tmp_path / "library"
    for name in ("src_a", "src_b"):
        shutil.copytree(tmp_path / "first" / f"source-{name}", library / name / "abc" / "run")
    assert library_prompt(library, "src_a", backbone) == library / "src_a" / "abc" / "run" / PROMPT_DIR
    assert library_prompt(library, "src_a", backbones["gpt2"]) is None  # another model's prompt is not used
    again = run_demo(out=tmp_path / "second", library=library, **kwargs)
    assert "from the library" in again[2].note and not list((tmp_path / "second").glob("source-*"))
