"""Built-in and user tasks: definitions, data loading, bad input, few-shot sampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptvec.errors import DataError, TaskError
from promptvec.tasks import builtin_task_names, few_shot, get_task, load_task_data, load_task_yaml
from promptvec.tasks.loading import stratified_indices
from promptvec.tasks.spec import Example, TaskSpec

from .conftest import TASK_YAML, write_jsonl

LOCAL = ["mnli", "qnli", "qqp", "snli", "rte", "sst2", "mrpc", "cola", "stsb", "trec", "agnews", "imdb"]
HUB_ONLY = ["scitail", "dbpedia", "yelp_polarity", "yahoo_answers", "sst5", "cb", "boolq", "wic"]


def test_all_builtins_defined():
    assert set(LOCAL + HUB_ONLY) <= set(builtin_task_names())
    for name in HUB_ONLY:
        spec = get_task(name)
        assert spec.dataset_path and spec.label_names


@pytest.mark.slow
@pytest.mark.parametrize("name", LOCAL)
def test_builtin_reads_the_shared_data(shared_data, name):
    data = load_task_data(get_task(name), shared_data)
    assert len(data.train) > 500 and data.validation and data.test
    spec = data.spec
    if not spec.is_regression:
        assert {e.label for e in data.test} == set(spec.label_names)
    assert all("{{" not in e.text for e in data.test[:5])


def test_unknown_task_suggests_names():
    with pytest.raises(TaskError, match="unknown task 'sst3'") as err:
        get_task("sst3")
    assert "sst2" in str(err.value)


def test_yaml_missing_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("task: x\nlabels: [a, b]\n")
    with pytest.raises(TaskError, match="'doc_to_text': Field required"):
        load_task_yaml(path)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("task: x\ndoc_to_text: 'unclosed\nlabels: [a\n")
    with pytest.raises(TaskError, match="line"):
        load_task_yaml(path)


def test_yaml_bad_template_and_unknown_key(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("task: x\ndoc_to_text: '{{ text '\nlabels: [a, b]\n")
    with pytest.raises(TaskError, match="doc_to_text"):
        load_task_yaml(path)
    path.write_text("task: x\ndoc_to_text: '{{text}}'\nlabels: [a, b]\nbogus: 1\n")
    with pytest.raises(TaskError, match="bogus"):
        load_task_yaml(path)


def _user_task(tmp_path: Path, train_rows) -> Path:
    write_jsonl(tmp_path / "train.jsonl", train_rows)
    write_jsonl(tmp_path / "validation.jsonl", [{"text": "good", "label": "positive"}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "bad", "label": "negative"}])
    (tmp_path / "t.yaml").write_text(TASK_YAML)
    return tmp_path / "t.yaml"


def test_unknown_label_reports_file_and_line(tmp_path):
    rows = [{"text": "good", "label": "positive"}, {"text": "meh", "label": "neutral"}]
    spec = load_task_yaml(_user_task(tmp_path, rows))
    with pytest.raises(DataError, match=r"train.jsonl:2: label 'neutral' is not a label"):
        load_task_data(spec)


def test_malformed_json_line(tmp_path):
    spec = load_task_yaml(_user_task(tmp_path, [{"text": "good", "label": "positive"}]))
    with (tmp_path / "train.jsonl").open("a") as handle:
        handle.write('{"text": "broken"\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: not valid JSON"):
        load_task_data(spec)


def test_missing_field_and_missing_file(tmp_path):
    spec = load_task_yaml(_user_task(tmp_path, [{"review": "good", "label": "positive"}]))
    with pytest.raises(DataError, match=r"train.jsonl:1: row lacks the input field\(s\) \['text'\]"):
        load_task_data(spec)
    write_jsonl(tmp_path / "train.jsonl", [{"text": "good", "label": "positive"}])
    (tmp_path / "test.jsonl").unlink()
    with pytest.raises(DataError, match="data file not found"):
        load_task_data(spec)


def test_user_task_works_like_a_builtin(toy_task):
    spec = get_task(str(toy_task))
    data = load_task_data(spec)
    assert spec.label_names == ["negative", "positive"] and spec.primary_metric == "acc"
    assert len(data.train) == 64 and data.test[0].text.startswith("Review: ")


def test_hub_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PROMPTVEC_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="Hub is offline"):
        load_task_data(get_task("scitail"))


def test_label_map_maps_hub_integers():
    spec = get_task("agnews")
    assert spec.canonical_label(2, "x") == "Business" and spec.canonical_label("World", "x") == "World"
    assert get_task("boolq").canonical_label(True, "x") == "True"


def test_few_shot_is_stratified_seeded_and_total(shared_data):
    spec = get_task("trec")
    train = load_task_data(spec, shared_data).train
    a, b = few_shot(spec, train, 60, 7), few_shot(spec, train, 60, 7)
    assert a == b and len(a) == 60 and a != few_shot(spec, train, 60, 8)
    counts = Counter(e.label for e in a)
    assert set(counts) == set(spec.label_names)  # every class present
    with pytest.raises(DataError, match="larger than the training set"):
        few_shot(spec, train, len(train) + 1, 0)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.sampled_from("abcd"), min_size=1, max_size=80), n=st.integers(1, 80),
       seed=st.integers(0, 10))
def test_stratified_sampling_properties(labels, n, seed):
    spec = TaskSpec(task="abcd", doc_to_text="{{text}}", labels=list("abcd"))
    examples = [Example({"text": str(i)}, lab) for i, lab in enumerate(labels)]
    n = min(n, len(examples))
    picked = stratified_indices(spec, examples, n, seed)
    assert len(picked) == n == len(set(picked))
    counts = Counter(labels[i] for i in picked)
    total = Counter(labels)
    for lab, c in counts.items():
        assert c <= total[lab]
    if n >= len(total):
        assert set(counts) == set(total)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["task", "doc_to_text", "labels", "metric_list", "doc_to_choice",
                                             "output_type", "label_map", "data_files"]),
                            st.one_of(st.none(), st.text(max_size=8), st.integers(), st.lists(st.text(max_size=4))),
                            max_size=6))
def test_task_yaml_fuzz_gives_task_error_or_a_task(tmp_path_factory, body):
    import yaml

    path = tmp_path_factory.mktemp("fuzz") / "t.yaml"
    path.write_text(yaml.safe_dump(body))
    try:
        spec = load_task_yaml(path)
    except TaskError:
        return
    assert spec.task


def test_hub_path_maps_columns_labels_and_carves_validation(monkeypatch):
    """The Hub code path, with a local fixture standing in for datasets.load_dataset."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        rows = [{"sentence1": f"premise {i}", "sentence2": f"hypothesis {i}", "label": i % 2} for i in range(40)]
        return rows + [{"sentence1": "no gold", "sentence2": "x", "label": -1}]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("PROMPTVEC_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task_data(get_task("rte"))
    assert ("nyu-mll/glue", "rte", "validation") in calls  # GLUE validation serves as test
    assert len(data.test) == 40 and len(data.validation) == 4 and len(data.train) == 36  # -1 rows dropped
    assert data.test[0].fields == {"premise": "premise 0", "hypothesis": "hypothesis 0"}
    assert {e.label for e in data.test} == {"entailment", "not_entailment"}


def test_a_template_is_timed_by_its_own_work_not_by_a_stalled_machine(monkeypatch):
    """The per-row limit counts the rendering thread's CPU time, garbage collections left out: a row whose
    rendering waits (a descheduled process: sleeping here) or collects garbage for longer than the limit
    still renders, with statements (the CPU-time timer re-arms itself) and without; a loop is stopped."""
    import gc
    import time

    from promptvec.tasks import templates

    monkeypatch.setattr(templates, "MAX_SECONDS", 0.2)

    class Stall:
        def __str__(self) -> str:
            time.sleep(0.5)
            return "slept"

    class Collects:
        def __str__(self) -> str:
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                gc.collect()
            return "collected"

    values = {"a": Stall(), "b": Collects()}
    assert templates.render("{{ a }} {{ b }}", values) == "slept collected"
    assert templates.render("{% for i in range(1) %}{{ a }} {{ b }}{% endfor %}", values) == "slept collected"
    with pytest.raises(templates.TemplateRefused, match="took more than 0.2 s of CPU time"):
        templates.render("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", {})
