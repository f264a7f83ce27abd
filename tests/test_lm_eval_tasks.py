"""lm-evaluation-harness task files as promptvec tasks: real files from the installed lm-eval package
(read in place, not copied), and hand-written ones for the parts those do not exercise offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import TaskError
from promptvec.tasks import get_task, load_task_data

lm_eval = pytest.importorskip("lm_eval")
LIBRARY = Path(lm_eval.__file__).parent / "tasks"
runner = CliRunner()


@pytest.mark.parametrize(("relative", "labels", "metrics"), [
    ("glue/sst2/default.yaml", ["negative", "positive"], ["acc"]),
    ("glue/rte/default.yaml", ["True", "False"], ["acc"]),
    ("glue/cola/default.yaml", ["no", "yes"], ["mcc"]),
    ("glue/mrpc/default.yaml", ["no", "yes"], ["acc", "f1"]),
    ("super_glue/boolq/default.yaml", ["no", "yes"], ["acc"]),
    ("mmlu/default/mmlu_abstract_algebra.yaml", ["A", "B", "C", "D"], ["acc"]),  # through `include`
])
def test_real_multiple_choice_task_files_load(relative, labels, metrics):
    spec = get_task(str(LIBRARY / relative))
    assert spec.output_type == "multiple_choice" and spec.label_names == labels and spec.metrics == metrics
    assert spec.label_map == {str(i): name for i, name in enumerate(labels)}  # an integer target indexes choices
    assert spec.notes  # what was read but not used is said, not dropped silently


def test_lm_eval_split_rule():
    """lm-eval scores test_split, else validation_split: promptvec tests on the same split and then
    carves its validation from train, so checkpoint selection never sees the test rows."""
    sst2 = get_task(str(LIBRARY / "glue/sst2/default.yaml"))
    assert (sst2.training_split, sst2.test_split, sst2.validation_split) == ("train", "validation", None)
    mmlu = get_task(str(LIBRARY / "mmlu/default/mmlu_abstract_algebra.yaml"))
    assert mmlu.test_split == "test" and any("training_split" in note for note in mmlu.notes)


@pytest.mark.parametrize("relative", ["triviaqa/default.yaml", "nq_open/nq_open.yaml"])
def test_real_generation_task_files_load(relative):
    spec = get_task(str(LIBRARY / relative))
    assert spec.generates and spec.metrics == ["exact_match"] and spec.generation_kwargs.until == ["\n", ".", ","]
    assert any("SQuAD's normalisation" in note for note in spec.notes)


def test_nq_open_description_is_put_before_every_input():
    spec = get_task(str(LIBRARY / "nq_open/nq_open.yaml"))
    assert spec.render({"question": "who wrote hamlet"}) == "Answer these questions:\n\nQ: who wrote hamlet?\nA:"


@pytest.mark.parametrize(("relative", "key", "reason"), [
    ("hellaswag/hellaswag.yaml", "process_docs", "Python hook"),
    ("super_glue/copa/default.yaml", "doc_to_text", "Python hook"),
    ("arc/arc_easy.yaml", "doc_to_choice", "per-example choices"),
    ("gsm8k/gsm8k.yaml", "num_fewshot", "in-context examples"),
    ("lambada/lambada_openai.yaml", "output_type", "no label or answer"),
])
def test_real_task_files_promptvec_cannot_honour_are_refused_by_key(relative, key, reason):
    with pytest.raises(TaskError, match=f"lm-eval key '{key}' cannot be honoured: .*{reason}") as refused:
        get_task(str(LIBRARY / relative))
    assert refused.value.hint


def test_lm_eval_sst2_file_trains_on_local_glue_layout_data(tiny_models, tmp_path):
    """`promptvec train --task <lm-eval's sst2 yaml>` with a data folder whose labels are GLUE's 0/1."""
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    words = {0: ["dull", "boring", "bad"], 1: ["great", "superb", "good"]}
    for split, n in (("train", 24), ("validation", 8), ("test", 8)):
        rows = [{"sentence": f"a {words[i % 2][i % 3]} film", "label": i % 2} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = str(LIBRARY / "glue/sst2/default.yaml")
    loaded = load_task_data(get_task(task), tmp_path / "data")
    assert [e.label for e in loaded.test[:2]] == ["negative", "positive"]
    result = runner.invoke(app, ["train", "--task", task, "--model", str(tiny_models["llama"]), "--out",
                                 str(tmp_path / "run"), "--steps", "2", "--eval-every", "2", "--batch-size", "4",
                                 "--prompt-length", "2", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "note (sst2): read but not used: tag" in result.output


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_local_lm_eval_file_with_include_data_files_and_templates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # lm-eval reads relative data_files from the current folder; so does promptvec
    rows = [{"text": f"item {i}", "gold": ["no", "yes"][i % 2], "aliases": [f"a{i}", f"b{i}"]} for i in range(6)]
    for split in ("train", "test"):
        _write(tmp_path / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(tmp_path / "_base_yaml", "dataset_path: json\ndataset_kwargs:\n  data_files:\n    train: train.jsonl\n"
           "    test: test.jsonl\ntraining_split: train\ntest_split: test\nmetadata: {version: 1}\n")
    classify = _write(tmp_path / "classify.yaml", "include: _base_yaml\ntask: classify\noutput_type: multiple_choice\n"
                      "doc_to_text: \"{{text}}?\"\ndoc_to_target: \"{{ ['no', 'yes'].index(gold) }}\"\n"
                      "doc_to_choice: [\"no\", \"yes\"]\nmetric_list:\n  - metric: acc\n    aggregation: mean\n"
                      "    higher_is_better: true\n  - metric: acc_norm\n")
    spec = get_task(str(classify))
    data = load_task_data(spec)
    assert [e.label for e in data.test[:2]] == ["no", "yes"] and spec.metrics == ["acc"]
    assert any("acc_norm" in note for note in spec.notes)
    answer = _write(tmp_path / "answer.yaml", "include: _base_yaml\ntask: answer\noutput_type: generate_until\n"
                    "doc_to_text: \"{{text}}\"\ndoc_to_target: \"{{aliases}}\"\ngeneration_kwargs:\n"
                    "  until: \"\\n\"\n  do_sample: false\n  max_gen_toks: 5\n")
    spec = get_task(str(answer))
    assert spec.generation_kwargs.until == ["\n"] and spec.generation_kwargs.max_gen_toks == 5
    assert load_task_data(spec).test[1].answers == ("a1", "b1")  # a list literal is several acceptable answers


@pytest.mark.parametrize(("extra", "key"), [
    ("metric_list:\n  - metric: bleu\n", "metric_list"),
    ("metric_list:\n  - metric: acc\n    aggregation: median\n", "metric_list"),
    ("generation_kwargs: {do_sample: true, temperature: 0.7}\n", "generation_kwargs.do_sample"),
    ("filter_list:\n  - name: x\n    filter:\n      - function: regex\n        regex_pattern: a\n", "filter_list"),
    ("dataset_kwargs: {trust_remote_code: true}\n", "dataset_kwargs.trust_remote_code"),
    ("doc_to_target: 0\n", "doc_to_target"),
    ("doc_to_choice: [\"yes\", \"yes\"]\n", "doc_to_choice"),
    ("repeats: 5\n", "repeats"),
])
def test_unsupported_lm_eval_settings_are_refused_by_name(tmp_path, extra, key):
    body = ("task: t\ndataset_path: some/dataset\ntest_split: test\noutput_type: multiple_choice\n"
            "doc_to_text: \"{{text}}\"\ndoc_to_choice: [\"no\", \"yes\"]\nmetadata: {version: 1}\n")
    lines = {line.split(":")[0]: line for line in body.splitlines()}
    for line in extra.splitlines():
        if not line.startswith(" "):
            lines.pop(line.split(":")[0], None)
    path = _write(tmp_path / "t.yaml", "\n".join(lines.values()) + "\n" + extra)
    with pytest.raises(TaskError, match=f"lm-eval key '{key}' cannot be honoured"):
        get_task(str(path))


def test_promptvec_task_files_are_read_as_before(toy_task):
    spec = get_task(str(toy_task))
    assert spec.notes == [] and spec.validation_split == "validation"
