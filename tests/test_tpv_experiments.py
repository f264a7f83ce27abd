"""Cross-origin transfer and λ-searched combinations, on prompts with known task vectors."""

from __future__ import annotations

import pytest
import torch

from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.experiments.tpv import combine_tasks, cross_origin
from promptvec.peft_folder import save_prompt
from promptvec.tasks import TaskSpec, get_task, load_task_data, subsample
from promptvec.vectors import Origin


def _run(tmp_path, backbone, task, origin_seed, delta):
    origin = Origin.sample(backbone, 3, origin_seed)
    folder = tmp_path / f"{task}-o{origin_seed}" / "prompt"
    save_prompt(folder, origin.tensor(backbone) + delta, backbone, {"task": task, "origin": origin.to_dict()})
    return folder.parent


def test_cross_origin_applies_each_vector_to_the_other_origins(tmp_path, backbones, toy_task):
    b = backbones["llama"]
    spec = get_task(str(toy_task))
    data = load_task_data(spec)
    torch.manual_seed(0)
    deltas = {0: torch.randn(3, b.dim), 1: torch.randn(3, b.dim)}
    runs = {spec.task: {o: _run(tmp_path, b, spec.task, o, d) for o, d in deltas.items()}}
    [row] = cross_origin(b, runs, {spec.task: data}, limit=None)
    test = subsample(data.test, None, 1234)

    def score(prompt):
        return evaluate(b, spec, test, prompt).metrics["acc"]

    origins = {o: Origin.sample(b, 3, o).tensor(b) for o in (0, 1)}
    assert row.original == [score(origins[0] + deltas[0]), score(origins[1] + deltas[1])]
    assert row.mixed == [score(origins[1] + deltas[0]), score(origins[0] + deltas[1])]
    assert row.norms == pytest.approx([float(deltas[0].norm()), float(deltas[1].norm())], rel=1e-5)
    summary = row.summary()
    assert summary["test"] == "welch"
    assert summary["difference"] == pytest.approx(sum(row.mixed) / 2 - sum(row.original) / 2)
    with pytest.raises(ConfigError, match="at least two origins"):
        cross_origin(b, {spec.task: {0: runs[spec.task][0]}}, {spec.task: data})


def test_combination_picks_lambda_on_validation(tmp_path, backbones, toy_task):
    b = backbones["llama"]
    spec = get_task(str(toy_task))
    twin = TaskSpec(**(spec.model_dump() | {"task": "toy_twin"}))
    data = {spec.task: load_task_data(spec), twin.task: load_task_data(twin)}
    torch.manual_seed(1)
    runs = {t: _run(tmp_path, b, t, 0, torch.randn(3, b.dim)) for t in data}
    result = combine_tasks(b, runs, data, grid=(0.0, 0.5, 1.0), val_limit=None, test_limit=None)
    assert result.best_lambda in (0.0, 0.5, 1.0)
    assert result.validation_curve[result.best_lambda] == max(result.validation_curve.values())
    assert set(result.test) == set(result.single) == {spec.task, twin.task}
    other = _run(tmp_path / "x", b, twin.task, 1, torch.randn(3, b.dim))
    with pytest.raises(ConfigError, match="same origin"):
        combine_tasks(b, {spec.task: runs[spec.task], twin.task: other}, data, grid=(1.0,))


def test_the_similarity_section_says_what_the_diagonal_is(tmp_path):
    """With several origins the diagonal compares a task's vectors from different origins; with one it is
    empty, and the report says so instead of printing nan."""
    from promptvec.experiments.tpv_report import _similarity
    from promptvec.suites.document import Figure, Paragraph

    def section(origins, diagonal):
        matrix = [[diagonal, 0.1, 0.1], [0.1, diagonal, 0.4], [0.1, 0.4, diagonal]]
        result = {"tasks": ["a", "b", "c"], "groups": {"a": "topic", "b": "sentiment", "c": "sentiment"},
                  "origins": origins, "tau_norm": {"a": 1.0, "b": 2.0, "c": 3.0},
                  "matrices": {"cosine": {"prompt": matrix, "tpv": matrix}}}
        blocks = _similarity(result, tmp_path)
        return ([b.text for b in blocks if isinstance(b, Paragraph)][0],
                [b.caption for b in blocks if isinstance(b, Figure)][-1])

    text, caption = section([0], None)
    assert "the diagonal is empty: with one origin" in text and "the diagonal is empty (one origin)" in caption
    assert "nan" not in caption and "same-type tasks are **more similar**" in caption
    text, caption = section([0, 1], 0.8)
    assert "compares a task's prompts/vectors from *different* origins" in text
    assert "a task with itself across origins averages 0.80" in caption
