"""single-source sweeps: the best source per target and SPoT's hit rate in the report; a swept
source must be a source of every target it runs on."""

from __future__ import annotations

import json

import pytest

from promptvec.errors import ConfigError
from promptvec.experiments.report import build_report
from promptvec.experiments.runner import run_suite
from promptvec.suites.plan import expand, run_dir
from promptvec.suites.schema import load_suite
from tests.conftest import PS, tiny_transfer_suite


@pytest.mark.slow
def test_a_single_source_sweep_reports_the_best_source_and_spots_hit_rate(tmp_path, tiny_models, toy_tasks):
    ps = PS
    target = toy_tasks["target"]
    sweep = [{"name": "tpv-init", "label": f"from {name[-1]}", "tasks": [target],
              "settings": {**ps, "source": toy_tasks[name]}} for name in ("src_a", "src_b")]
    methods = [{"name": "pt", "settings": ps}, *sweep, {"name": "spot", "settings": {**ps, "early_steps": 2}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "sweep-tiny", methods))
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    runs = {r.label: r for r in expand(suite)}
    record = json.loads((run_dir(out, runs["from a"]) / "run.json").read_text())
    assert record["init"]["sources"] == [toy_tasks["src_a"]]  # only that source's vector
    report = (build_report(out) / "report.md").read_text()
    assert "Which source helps, and does similarity find it?" in report
    spot = json.loads((run_dir(out, runs["spot"]) / "run.json").read_text())["init"]
    scores = {label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())["test"]["metrics"]["acc"]
              for label in ("from a", "from b")}
    chosen = scores["from a" if spot["chosen"] == toy_tasks["src_a"] else "from b"]
    hit = int(chosen >= max(scores.values()) - 0.01)
    assert f"**spot** chose a source within 1 point of the best single source in {hit} of 1 runs" in report
    assert (out / "report" / "similarity_vs_gain.png").is_file()


def test_a_sweep_source_must_be_a_source_of_every_target_it_runs_on(tmp_path, tiny_models, toy_tasks):
    methods = [{"name": "tpv-init", "settings": {**PS, "source": "imdb"}}]
    with pytest.raises(ConfigError, match="starts from source 'imdb'"):
        load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "bad-sweep", methods))
