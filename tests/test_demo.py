"""`promptvec demo` on a tiny model: no prompt, prompt tuning from a random origin and prompt tuning
from init auto's start in a prompt library, on the same test examples; the target's own library
prompt is left out, so the demo shows transfer."""

from __future__ import annotations

import json

from promptvec.demo import run_demo


def test_the_demo_starts_a_task_from_the_library_without_its_own_prompt(tmp_path, tiny_models, toy_tasks,
                                                                        tiny_library):
    kwargs = {"model": str(tiny_models["llama"]), "target": toy_tasks["src_a"], "shots": 8, "steps": 2,
              "test_examples": 8, "prompt_length": 3, "library": tiny_library.root, "progress": False,
              "log": lambda m: None}
    result = run_demo(out=tmp_path / "first", **kwargs)
    rows = result.rows
    assert [r.method for r in rows][:2] == ["no prompt", "prompt tuning from a random origin"]
    assert rows[2].method == f"prompt tuning from the library's start: {result.auto['chosen']}"
    assert rows[2].note == "src_a's own library prompt left out"
    assert {c["name"] for c in result.auto["candidates"]} >= {"no prompt", "origin", "src_b"}
    assert not any("src_a" in c["name"] for c in result.auto["candidates"])  # the target's own prompt is out
    summary = json.loads((tmp_path / "first" / "demo.json").read_text())
    assert [r["score"] for r in summary["rows"]] == [r.score for r in rows]
    assert summary["init"]["library_exclude"] == ["src_a"]

    # the auto run is an ordinary init-auto run: its record holds the same choice
    record = json.loads((tmp_path / "first" / "auto" / "run.json").read_text())
    assert record["init"]["auto"] == result.auto and record["config"]["library_exclude"] == ["src_a"]
    # a second call reuses the finished runs: same scores, no new training
    again = run_demo(out=tmp_path / "first", **kwargs)
    assert [r.score for r in again.rows] == [r.score for r in rows]
