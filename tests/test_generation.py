"""Free-text (generate_until) tasks: the training loss covers exactly the target tokens, greedy
decoding equals a step-by-step recomputation and stops at `until`, answers are read and scored
the SQuAD way, bad task files are refused with file, line and fix, and a generation task runs
through train → eval → vector → transfer methods → suite → report on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from promptvec.errors import ConfigError, DataError, TaskError
from promptvec.evaluation import evaluate
from promptvec.evaluation.evaluator import as_answer, score_texts
from promptvec.tasks import Example, few_shot, get_task, load_task_data, subsample
from promptvec.tasks.spec import LABEL_METRICS, TEXT_METRIC_NAMES, TaskSpec


def _examples(task: TaskSpec, rows: list[tuple[str, list[str]]]) -> list[Example]:
    out = []
    for text, answers in rows:
        fields = {"text": text}
        out.append(Example(fields=fields, label=task.training_target(tuple(answers), "test"), text=task.render(
            fields), answers=tuple(answers)))
    return out


def test_the_task_metric_names_are_the_registries():
    from promptvec.evaluation.metrics import METRIC_FUNCTIONS
    from promptvec.evaluation.text_metrics import TEXT_METRICS

    assert set(LABEL_METRICS) == set(METRIC_FUNCTIONS) and set(TEXT_METRIC_NAMES) == set(TEXT_METRICS)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_causal_loss_is_the_cross_entropy_of_the_target_tokens_only(backbones, toy_generation_tasks, family):
    backbone = backbones[family]
    task = get_task(toy_generation_tasks["gen_a"])
    examples = _examples(task, [("the movie was good", ["good"]),
                                ("a plot quite dull and boring", ["dull boring awful sad"]), ("the film", [])])
    encoded = backbone.encode(task, examples, prompt_length=3)
    eos = backbone.tokenizer.eos_token_id
    # the target is the delimiter + first answer (or the no-answer text), then EOS
    assert encoded[0].target_ids == backbone.tokenizer(" good", add_special_tokens=False)["input_ids"] + [eos]
    assert encoded[2].target_ids == backbone.tokenizer(" none", add_special_tokens=False)["input_ids"] + [eos]
    assert len({len(e.target_ids or []) for e in encoded}) > 1  # targets of different lengths in one batch
    prompt = torch.randn(3, backbone.dim, generator=torch.Generator().manual_seed(0)) * 0.3
    batch = backbone.collate(task, encoded, train=True)
    loss = backbone.loss(task, batch, prompt)

    # by hand: each example alone (no padding), prompt + input + target, log-probability of each target token
    total, count = 0.0, 0
    with torch.no_grad():
        for item in encoded:
            target = item.target_ids or []
            ids = torch.tensor([item.input_ids + target])
            logits = backbone.model(inputs_embeds=torch.cat([prompt[None], backbone.embedding(ids)], 1)).logits[0]
            first = 3 + len(item.input_ids)  # position of the first target token
            for j, token in enumerate(target):
                total -= float(torch.log_softmax(logits[first + j - 1].float(), -1)[token])
                count += 1
    assert float(loss) == pytest.approx(total / count, abs=1e-5)
    # the input is not target: a training batch marks exactly the target positions fed (each target but its
    # last token, which is predicted and never fed) as not input
    assert batch.input_mask is not None
    assert int((batch.attention_mask - batch.input_mask).sum()) == count - len(encoded)


def test_seq2seq_loss_is_the_decoder_cross_entropy_of_the_target(backbones, toy_generation_tasks):
    backbone = backbones["t5"]
    task = get_task(toy_generation_tasks["gen_a"])
    encoded = backbone.encode(task, _examples(task, [("the movie was good", ["good"]),
                                                     ("quite dull", ["quite dull indeed"])]), prompt_length=3)
    eos = backbone.tokenizer.eos_token_id
    assert encoded[0].target_ids == backbone.tokenizer("good", add_special_tokens=False)["input_ids"] + [eos]
    prompt = torch.randn(3, backbone.dim, generator=torch.Generator().manual_seed(1)) * 0.3
    loss = backbone.loss(task, backbone.collate(task, encoded, train=True), prompt)
    total, count = 0.0, 0
    with torch.no_grad():
        for item in encoded:
            ids = torch.tensor([item.input_ids])
            labels = torch.tensor([item.target_ids])
            out = backbone.model(inputs_embeds=torch.cat([prompt[None], backbone.embedding(ids)], 1), labels=labels)
            total += float(out.loss) * labels.shape[1]
            count += labels.shape[1]
    assert float(loss) == pytest.approx(total / count, abs=1e-5)


def test_long_answers_are_cut_to_max_gen_toks_and_counted(backbones, toy_generation_tasks, tmp_path):
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    backbone = backbones["llama"]
    task = get_task(toy_generation_tasks["gen_a"])  # max_gen_toks 4
    long = "good great lovely fine superb happy"
    [item] = backbone.encode(task, _examples(task, [("the movie", [long])]), prompt_length=3)
    assert item.target_truncated and len(item.target_ids or []) == 4 + 1  # 4 tokens, then EOS
    assert item.target_ids[-1] == backbone.tokenizer.eos_token_id

    # a run says how many training answers were cut, once, in its record
    folder = Path(toy_generation_tasks["gen_a"]).parent
    rows = [{"text": "the movie", "answers": [long]}] * 3 + [{"text": "the film", "answers": ["good"]}] * 5
    (folder / "long_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = yaml.safe_load(Path(toy_generation_tasks["gen_a"]).read_text())
    body.update(task="long_answers", data_files={"train": str(folder / "long_train.jsonl"),
                                                 "validation": str(folder / "answers_validation.jsonl"),
                                                 "test": str(folder / "answers_test.jsonl")})
    (folder / "long.yaml").write_text(yaml.safe_dump(body))
    record = train_prompt(TrainConfig(model=str(backbone.name), task=str(folder / "long.yaml"), prompt_length=3,
                                      max_steps=1, batch_size=4, test_examples=4, val_examples=4),
                          tmp_path / "run", backbone=backbone, progress=False).record
    cut = [w for w in record["warnings"] if w["kind"] == "targets-cut"]
    assert len(cut) == 1 and "3 of 8 training answers" in cut[0]["message"]


def test_a_run_records_the_tokens_its_evaluations_decoded(backbones, toy_generation_tasks, tmp_path, monkeypatch):
    """Decoding is most of a free-text evaluation's work: its phases count the tokens decoded (every row of a
    batch for every step it ran), besides the input tokens, so the report's tokens/s mean the work done."""
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt

    backbone = backbones["llama"]
    decoded = []
    generate = backbone.generate

    def counting(*args, **kwargs):
        out = generate(*args, **kwargs)
        decoded.append(out.decoded)
        return out

    monkeypatch.setattr(backbone, "generate", counting)
    record = train_prompt(TrainConfig(model=str(backbone.name), task=toy_generation_tasks["gen_a"], prompt_length=3,
                                      max_steps=2, eval_every=2, batch_size=2, val_examples=4, test_examples=4),
                          tmp_path / "run", backbone=backbone, progress=False).record
    phases = record["phases"]
    assert phases["steps"]["decoded"] == 0
    assert phases["validation"]["decoded"] + phases["test"]["decoded"] == sum(decoded)
    assert phases["test"]["decoded"] >= phases["test"]["examples"] == 4  # at least one token per example
    assert phases["test"]["decoded"] <= 4 * 4  # max_gen_toks 4


def _reference_greedy(backbone, prompt: torch.Tensor, input_ids: list[int], steps: int) -> list[int]:
    """Greedy decoding by recomputing the whole sequence at every step (no cache, no batch, no padding)."""
    ids, produced = list(input_ids), []
    eos = backbone.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(steps):
            embeds = torch.cat([prompt[None], backbone.embedding(torch.tensor([ids]))], 1)
            token = int(backbone.model(inputs_embeds=embeds).logits[0, -1].argmax())
            if token == eos:
                break
            produced.append(token)
            ids.append(token)
    return produced


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_greedy_decoding_equals_a_step_by_step_recomputation(backbones, toy_generation_tasks, family):
    backbone = backbones[family]
    task = get_task(toy_generation_tasks["gen_a"])
    examples = _examples(task, [("the movie was good", ["good"]), ("dull", ["dull"]),
                                ("a plot quite lovely and the acting fine", ["fine"])])
    encoded = backbone.encode(task, examples, prompt_length=3)
    prompt = torch.randn(3, backbone.dim, generator=torch.Generator().manual_seed(2))
    generated = backbone.generate(backbone.collate(task, encoded, train=False), prompt, max_new_tokens=6)
    references = [_reference_greedy(backbone, prompt, e.input_ids, 6) for e in encoded]
    expected = [backbone.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in references]
    assert generated.texts == expected
    assert any(expected)  # the model did produce text
    # every row decodes until the last row stops (a row shorter than 6 tokens ended with EOS, one token more)
    steps = max(len(tokens) + (len(tokens) < 6) for tokens in references)
    assert generated.decoded == len(encoded) * steps


def test_decoding_stops_at_the_first_until_string(backbones, toy_generation_tasks, monkeypatch):
    backbone = backbones["llama"]
    task = get_task(toy_generation_tasks["gen_a"])
    [item] = backbone.encode(task, _examples(task, [("the movie was good", ["good"])]), prompt_length=3)
    batch = backbone.collate(task, [item], train=False)
    prompt = torch.randn(3, backbone.dim, generator=torch.Generator().manual_seed(2))
    tokens = _reference_greedy(backbone, prompt, item.input_ids, 8)
    assert len(tokens) >= 4, "the tiny model should not stop at once for this test to mean anything"
    full = backbone.tokenizer.decode(tokens, skip_special_tokens=True)
    stop = backbone.tokenizer.decode(tokens[2:3])  # the text of the third token
    assert stop and full.find(stop) >= 0

    calls = {"n": 0}
    forward = backbone.model.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", counting)
    generated = backbone.generate(batch, prompt, max_new_tokens=8, until=(stop,))
    assert generated.texts == [full[: full.find(stop)]]
    assert calls["n"] <= 3  # the prompt + input pass and two steps: decoding stopped once the stop string appeared
    # decoded: the tokens produced until the text first holds the stop string
    until_stop = next(n for n in range(1, len(tokens) + 1)
                      if stop in backbone.tokenizer.decode(tokens[:n], skip_special_tokens=True))
    assert generated.decoded == until_stop


def test_answers_are_read_from_a_column_a_list_the_hub_qa_layout_or_a_template():
    task = TaskSpec(task="qa", output_type="generate_until", doc_to_text="{{q}}", doc_to_target="a",
                    metric_list=[{"metric": "exact_match"}])
    assert task.answers_of({"a": "Paris"}, "r") == ("Paris",)
    assert task.answers_of({"a": 42}, "r") == ("42",)
    assert task.answers_of({"a": ["x", "y"]}, "r") == ("x", "y")
    assert task.answers_of({"a": {"text": ["x"], "answer_start": [3]}}, "r") == ("x",)  # the Hub's SQuAD layout
    with pytest.raises(DataError, match="r: answer column 'a' holds dict"):
        task.answers_of({"a": {"start": 3}}, "r")
    templated = task.model_copy(update={"doc_to_target": "{{ city }}, {{ country }}"})
    assert templated.answers_of({"city": "Paris", "country": "France"}, "r") == ("Paris, France",)
    with pytest.raises(DataError, match="file.jsonl:3: row has no answer"):
        task.training_target((), "file.jsonl:3")
    assert task.model_copy(update={"no_answer_target": "unanswerable"}).training_target((), "r") == "unanswerable"


def test_the_no_answer_text_is_scored_as_the_empty_answer():
    squad = get_task("squad_v2")
    assert as_answer(squad, "Unanswerable.") == "" and as_answer(squad, "Paris") == "Paris"
    examples = [Example({"q": "1"}, "unanswerable", answers=()), Example({"q": "2"}, "Paris", answers=("Paris",)),
                Example({"q": "3"}, "unanswerable", answers=())]
    scores = score_texts(squad, ["unanswerable", "paris", "Paris"], examples)
    assert scores == {"squad_f1": pytest.approx(2 / 3), "exact_match": pytest.approx(2 / 3)}


def test_free_text_samples_are_seeded_and_unstratified(toy_generation_tasks):
    task = get_task(toy_generation_tasks["gen_a"])
    data = load_task_data(task)
    first = few_shot(task, data.train, 10, seed=3)
    assert first == few_shot(task, data.train, 10, seed=3) and first != few_shot(task, data.train, 10, seed=4)
    assert len({e.source for e in first}) == 10


@pytest.mark.parametrize(("change", "message"), [
    ({"doc_to_target": "{{ answers "}, "invalid task definition: 'doc_to_target'.*not a valid template"),
    ({"generation_kwargs": {"max_gen_toks": 0}}, "'generation_kwargs.max_gen_toks'"),
    ({"generation_kwargs": {"until": [""]}}, "empty string"),
    ({"metric_list": [{"metric": "acc"}]}, r"metric\(s\) \['acc'\] need labels"),
    ({"metric_list": None}, "needs metric_list"),
    ({"labels": ["a", "b"]}, "has answers, not labels"),
])
def test_bad_free_text_tasks_are_refused_with_file_line_and_fix(toy_generation_tasks, tmp_path, change, message):
    body = yaml.safe_load(Path(toy_generation_tasks["gen_a"]).read_text())
    body = {k: v for k, v in (body | change).items() if v is not None}
    folder = Path(toy_generation_tasks["gen_a"]).parent
    body["data_files"] = {k: str(folder / v) for k, v in body["data_files"].items()}
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    with pytest.raises(TaskError, match=message) as caught:
        get_task(path)
    assert caught.value.hint  # and the fix
    key = next(iter(change))
    if key in ("doc_to_target", "generation_kwargs"):  # a field's error points at the field's line
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(key))
        assert str(caught.value).startswith(f"{path}:{line}: ")


def test_a_label_task_refuses_text_metrics_and_reads_target_templates(toy_task, tmp_path):
    body = yaml.safe_load(Path(toy_task).read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body | {"metric_list": [{"metric": "squad_f1"}]}))
    with pytest.raises(TaskError, match="set output_type: generate_until"):
        get_task(path)
    # a template target (lm-eval style) renders to the raw label, then maps like a column's value
    files = {split: str(Path(toy_task).parent / name) for split, name in body["data_files"].items()}
    path.write_text(yaml.safe_dump(body | {"doc_to_target": "{{ label }}", "data_files": files}))
    templated = load_task_data(get_task(path))
    plain = load_task_data(get_task(toy_task))
    assert [e.label for e in templated.test] == [e.label for e in plain.test]


def test_a_row_without_the_answer_column_names_file_and_line(toy_generation_tasks, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "good", "answers": ["good"]}\n{"text": "bad"}\n')
    body = yaml.safe_load(Path(toy_generation_tasks["gen_a"]).read_text())
    body["data_files"] = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "train.jsonl")}
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(DataError, match=r"train\.jsonl:2: row has no answer column 'answers'"):
        load_task_data(get_task(path))


def test_a_sentence_encoder_refuses_free_text_tasks(backbones, toy_generation_tasks):
    task = get_task(toy_generation_tasks["gen_a"])
    with pytest.raises(ConfigError, match="cannot generate"):
        backbones["bert"].encode(task, _examples(task, [("good", ["good"])]), prompt_length=3)


def test_builtin_generation_tasks_read_the_local_data(shared_data):
    squad = load_task_data(get_task("squad_v2"), shared_data)
    unanswerable = [e for e in squad.test if not e.answers]
    assert unanswerable and all(e.label == "unanswerable" for e in unanswerable)
    assert any(len(e.answers) > 1 for e in squad.test)
    gsm = load_task_data(get_task("gsm8k"), shared_data)
    assert "####" in gsm.test[0].answers[0]
    lama = load_task_data(get_task("lama_p19"), shared_data)
    assert lama.test[0].text.endswith("was born in") and lama.test[0].answers == (lama.test[0].label,)


def test_a_free_text_task_trains_evaluates_and_predicts(backbones, toy_generation_tasks, tmp_path):
    from promptvec.inference import Predictor
    from promptvec.peft_folder import PROMPT_DIR
    from promptvec.training.config import TrainConfig
    from promptvec.training.trainer import train_prompt
    from promptvec.vectors import TaskPromptVector

    for family in ("llama", "t5"):
        backbone = backbones[family]
        config = TrainConfig(model=backbone.name, task=toy_generation_tasks["gen_a"], prompt_length=3, max_steps=4,
                             eval_every=2, batch_size=4, lr=0.05, val_examples=6, test_examples=8,
                             select_initial=False)
        record = train_prompt(config, tmp_path / family, backbone=backbone, progress=False).record
        assert record["status"] == "completed"
        assert set(record["test"]["metrics"]) == {"squad_f1", "exact_match"}
        assert [h["step"] for h in record["history"]] == [0, 2, 4]
        assert all(0.0 <= h["validation"]["squad_f1"] <= 1.0 for h in record["history"])
        # the saved prompt scores the same through evaluate(), and predicts text
        test = subsample(load_task_data(get_task(toy_generation_tasks["gen_a"])).test, 8, config.eval_seed)
        tau = TaskPromptVector.from_checkpoint(tmp_path / family / PROMPT_DIR, backbone)
        assert tau.norm() > 0
        predictor = Predictor(tmp_path / family, backbone=backbone)
        [prediction] = predictor.predict(["the movie was good"])
        assert isinstance(prediction.label, str) and prediction.scores == {}
        result = evaluate(backbone, predictor.task, test, predictor.prompt)
        assert result.metrics == pytest.approx(record["test"]["metrics"])
        assert result.n == 8 and all(isinstance(p, str) for p in result.predictions)


@pytest.mark.slow
def test_a_free_text_suite_runs_every_method_and_reports(tmp_path, tiny_models, toy_generation_tasks):
    from promptvec.experiments.report import build_report
    from promptvec.experiments.runner import run_suite
    from promptvec.suites.plan import SOURCE_LABEL, expand
    from promptvec.suites.schema import load_suite
    from tests.conftest import tiny_transfer_suite

    tasks = {"src_a": toy_generation_tasks["gen_a"], "src_b": toy_generation_tasks["gen_b"],
             "target": toy_generation_tasks["gen_target"]}
    settings = {"prompt_length": 3, "lr": 0.05}
    methods = [{"name": "zero", "label": "no prompt", "settings": {"prompt": "none"}},
               {"name": "pt", "settings": settings},
               {"name": "tpv-init", "settings": settings},
               {"name": "spot", "settings": {**settings, "early_steps": 2}},
               {"name": "attempt", "settings": settings},
               {"name": "dtvg", "settings": settings},
               {"name": "fusion", "settings": settings}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, tasks, "generation-tiny", methods,
                                           stats={"baseline": "pt"}))
    out = tmp_path / "out"
    outcome = run_suite(suite, out, progress=False, log=lambda m: None)
    assert outcome.completed == len(expand(suite))
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_method = {row["label"]: row for row in rows if row["label"] != SOURCE_LABEL}
    assert set(by_method) == {"no prompt", "pt", "tpv-init", "spot", "attempt", "dtvg", "fusion"}
    assert all(set(row["metrics"]) == {"squad_f1", "exact_match"} for row in rows)
    assert all(0.0 <= row["metrics"]["squad_f1"] <= 1.0 for row in rows)
    report = build_report(out)
    md = (report / "report.md").read_text()
    assert "squad_f1" in md and "| dtvg |" in md
    # the free-text sources are in the suite's store, and export as PEFT folders that load back
    from promptvec.peft_folder import load_prompt
    from promptvec.store import VectorStore
    from promptvec.store.peft_io import export_peft

    store = VectorStore(out / "store")
    [entry] = store.entries(kind="prompt", task="gen_a")
    prompt, _ = store.load_prompt(entry.sha256)
    assert torch.equal(load_prompt(export_peft(store, entry.sha256, tmp_path / "exported")).prompt, prompt)


@pytest.mark.slow
def test_label_and_free_text_tasks_transfer_to_each_other_in_one_suite(tmp_path, tiny_models, toy_tasks,
                                                                        toy_generation_tasks):
    """Mixed families: a classification source helps initialise a free-text target and back, and the
    multi-task methods (ATTEMPT, Fusion) train on sources of both kinds at once."""
    from promptvec.experiments.report import build_report
    from promptvec.experiments.runner import run_suite
    from promptvec.suites.plan import SOURCE_LABEL
    from promptvec.suites.schema import load_suite
    from tests.conftest import PS

    label_task, text_task = toy_tasks["src_a"], toy_generation_tasks["gen_a"]
    targets = {toy_generation_tasks["gen_target"]: [label_task, text_task],
               toy_tasks["target"]: [text_task, label_task]}
    methods = [{"name": "tpv-init", "settings": PS}, {"name": "spot", "settings": {**PS, "early_steps": 2}},
               {"name": "attempt", "settings": PS}, {"name": "dtvg", "settings": PS},
               {"name": "fusion", "settings": PS}]
    body = {"name": "mixed-tiny", "backbone": {"model": str(tiny_models["llama"])}, "tasks": list(targets),
            "shots": [8], "seeds": [0], "origins": [0],
            "budget": {"steps": 3, "batch_size": 4, "eval_every": 3, "val_examples": 8, "test_examples": 12},
            "sources": {"tasks": [label_task, text_task], "shots": 16, "steps": 3, "settings": PS, "targets": targets},
            "methods": methods, "stats": {"baseline": "tpv-init"}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    out = tmp_path / "out"
    run_suite(load_suite(path), out, progress=False, log=lambda m: None)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    metrics = {(row["label"], Path(row["task"]).stem): set(row["metrics"]) for row in rows
               if row["label"] != SOURCE_LABEL}
    assert len(metrics) == 2 * len(methods)
    for (_, task), names in metrics.items():
        assert names == ({"squad_f1", "exact_match"} if task == "gen_target" else {"acc", "f1"})
    md = (build_report(out) / "report.md").read_text()
    assert "squad_f1" in md and "acc" in md


def test_the_hub_definitions_read_squad_and_gsm8k_layouts(monkeypatch):
    """The Hub code path of the free-text built-ins, with local rows in the Hub datasets' layouts
    standing in for datasets.load_dataset (no network)."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "rajpurkar/squad_v2":
            return [{"id": str(i), "title": "T", "context": f"Paris is in France {i}.", "question": "Where?",
                     "answers": ({"text": ["France", "in France"], "answer_start": [12, 9]} if i % 2
                                 else {"text": [], "answer_start": []})} for i in range(20)]
        return [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(20)]

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PROMPTVEC_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    squad = load_task_data(get_task("squad_v2"))
    assert ("rajpurkar/squad_v2", None, "validation") in calls  # the official dev set serves as test
    assert squad.test[1].answers == ("France", "in France") and squad.test[0].answers == ()
    assert squad.test[0].label == "unanswerable" and len(squad.train) + len(squad.validation) == 20
    gsm = load_task_data(get_task("gsm8k"))
    assert ("openai/gsm8k", "main", "test") in calls
    assert gsm.test[3].answers == ("3 + 1 = 4\n#### 4",) and gsm.test[3].text == "Question: What is 3 + 1?\nAnswer:"
