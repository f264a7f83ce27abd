"""promptvec as an lm-evaluation-harness model, checked against lm-eval's own ``hf`` model and a
step-by-step recomputation, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from promptvec.backbones import load_backbone  # noqa: E402
from promptvec.lm_eval_model import PromptvecLM  # noqa: E402
from promptvec.peft_folder import save_prompt  # noqa: E402

PAIRS = [("Review: great film. Sentiment:", " positive"), ("Review: dull plot. Sentiment: ", "negative"),
         ("Question: maybe", " yes no maybe"), ("", "Review: positive"), ("Premise Hypothesis", " Answer yes"),
         # choices sharing a context (run once), one- and several-token continuations
         ("Review: great film. Sentiment:", " negative"), ("Review: great film. Sentiment:", " maybe yes no")]


def _requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def prompt_folder(tiny_models, tmp_path_factory) -> Path:
    backbone = load_backbone(str(tiny_models["llama"]))
    torch.manual_seed(3)
    prompt = torch.randn(4, backbone.dim) * 0.5
    return save_prompt(tmp_path_factory.mktemp("lm-eval") / "prompt", prompt, backbone, {"task": "toy"})


@pytest.mark.parametrize("with_prompt", [False, True])
def test_loglikelihood_equals_lm_eval_hf_model(tiny_models, prompt_folder, with_prompt):
    """The same (logprob, is_greedy) as lm-eval's ``hf`` model — bare, and with ``peft=`` the prompt
    folder (PEFT's forward pass is right; only its generation is not)."""
    from lm_eval.models.huggingface import HFLM

    model = str(tiny_models["llama"])
    prompt = str(prompt_folder) if with_prompt else None
    ours = PromptvecLM(model=model, prompt=prompt, batch_size=2)
    reference = HFLM(pretrained=model, peft=prompt, batch_size=2, device="cpu", dtype="float32")
    got = ours.loglikelihood(_requests("loglikelihood", PAIRS))
    want = reference.loglikelihood(_requests("loglikelihood", PAIRS))
    # token level: the reference model's own next token after each context is greedy in both
    contexts = [ours.tok_encode(c) for c, _ in PAIRS if c]
    with torch.no_grad():
        nexts = [int(reference.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()) for ids in contexts]
    token_requests = [(("", ""), ids, [token]) for ids, token in zip(contexts, nexts, strict=True)]
    assert [g for _, g in ours._loglikelihood_tokens(token_requests)] == [True] * len(contexts)
    assert [g for _, g in reference._loglikelihood_tokens(token_requests)] == [True] * len(contexts)
    assert [g for _, g in got] == [g for _, g in want]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], abs=1e-4)
    assert len({round(lp, 3) for lp, _ in got}) == len(PAIRS)  # distinct requests, distinct scores


def test_loglikelihood_of_inputs_cut_to_max_length_equals_lm_eval_hf_model(tiny_models):
    """Requests longer than max_length are cut from the left per request, as lm-eval cuts them."""
    from lm_eval.models.huggingface import HFLM

    model = str(tiny_models["llama"])
    long = [(" ".join([context or "Sentiment:"] * 4), continuation) for context, continuation in PAIRS]  # > 16 tokens
    got = PromptvecLM(model=model, max_length=16).loglikelihood(_requests("loglikelihood", long))
    want = HFLM(pretrained=model, max_length=16, batch_size=2, device="cpu", dtype="float32").loglikelihood(
        _requests("loglikelihood", long))
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], abs=1e-4)
    full = PromptvecLM(model=model).loglikelihood(_requests("loglikelihood", long))
    assert [lp for lp, _ in got] != pytest.approx([lp for lp, _ in full], abs=1e-4)  # the cut changed something


def _greedy_step_by_step(backbone, prompt: torch.Tensor, context: str, max_new: int, until: list[str]) -> str:
    """Greedy decoding by recomputing the whole sequence at every step (no cache, no batching)."""
    ids = backbone.tokenizer.encode(context)
    produced: list[int] = []
    for _ in range(max_new):
        embeds = backbone.embedding(torch.tensor([ids + produced]))
        full = torch.cat([prompt.unsqueeze(0), embeds], dim=1)
        token = int(backbone.model(inputs_embeds=full).logits[0, -1].argmax())
        if token == backbone.tokenizer.eos_token_id:
            break
        produced.append(token)
        text = backbone.tokenizer.decode(produced, skip_special_tokens=True)
        if any(stop in text for stop in until):
            break
    text = backbone.tokenizer.decode(produced, skip_special_tokens=True)
    cuts = [text.find(s) for s in until if s in text]
    return text[: min(cuts)] if cuts else text


def test_generate_until_equals_step_by_step_recomputation(tiny_models, prompt_folder):
    from promptvec.peft_folder import load_prompt

    model = str(tiny_models["llama"])
    ours = PromptvecLM(model=model, prompt=str(prompt_folder), batch_size=3)
    settings = [{"until": ["maybe"], "max_gen_toks": 12, "do_sample": False}, {"until": [], "max_gen_toks": 7}]
    args = [(c or "Sentiment:", s) for c, _ in PAIRS for s in settings]
    got = ours.generate_until(_requests("generate_until", args))
    backbone = load_backbone(model)
    prompt = load_prompt(prompt_folder).prompt
    with torch.no_grad():
        want = [_greedy_step_by_step(backbone, prompt, c, s["max_gen_toks"], s["until"]) for c, s in args]
    assert got == want
    assert any(text for text in got)  # something was generated, not only stops


def test_loglikelihood_rolling_sums_the_text_token_by_token(tiny_models, prompt_folder):
    """One window: the sum of log p(token | BOS, prompt, previous tokens); several windows (a short
    max_length): close to it, since each window restarts its context."""
    from promptvec.peft_folder import load_prompt

    model = str(tiny_models["llama"])
    text = "Review: great film positive negative yes no maybe Premise Hypothesis Question Answer"
    backbone = load_backbone(model)
    prompt = load_prompt(prompt_folder).prompt
    ids = [backbone.tokenizer.eos_token_id] + backbone.tokenizer.encode(text)  # BOS is the EOS token here
    with torch.no_grad():
        full = torch.cat([prompt.unsqueeze(0), backbone.embedding(torch.tensor([ids[:-1]]))], dim=1)
        logp = torch.log_softmax(backbone.model(inputs_embeds=full).logits[0, prompt.shape[0]:], -1)
        want = float(logp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).sum())
    [got] = PromptvecLM(model=model, prompt=str(prompt_folder)).loglikelihood_rolling(
        _requests("loglikelihood_rolling", [(text,)]))
    assert got == pytest.approx(want, abs=1e-4)
    windowed = PromptvecLM(model=model, prompt=str(prompt_folder), max_length=4 + 12)  # 12 input tokens a window
    assert len(ids) > 12 + 1  # so the text takes more than one window
    [split] = windowed.loglikelihood_rolling(_requests("loglikelihood_rolling", [(text,)]))
    assert split != pytest.approx(want, abs=1e-4) and split < 0


def _toy_task_files(tmp_path: Path) -> Path:
    """A folder with a local multiple-choice task (toy_mc) and a generate_until task (toy_gen) for lm-eval."""
    rows = [{"text": f"Review: {w} film.", "label": i % 2} for i, w in enumerate(["great", "dull", "fine", "bad"])]
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    common = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
              "doc_to_text: \"{{text}} Sentiment:\"\n")
    (tasks / "toy_mc.yaml").write_text(
        "task: toy_mc\noutput_type: multiple_choice\n" + common
        + "doc_to_target: label\ndoc_to_choice: [negative, positive]\nmetric_list:\n  - metric: acc\n")
    (tasks / "toy_gen.yaml").write_text(
        "task: toy_gen\noutput_type: generate_until\n" + common
        + "doc_to_target: \"{{['negative', 'positive'][label]}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 4\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")
    return tasks


@pytest.mark.slow
def test_lm_eval_runs_a_local_task_through_the_registry(tiny_models, prompt_folder, tmp_path):
    """`promptvec lm-eval --model promptvec ...`: lm-eval's own command line finds the model by name and
    scores a local multiple-choice task and a generate_until task; the output is named after the prompt
    and records the device the model ran on (no --device given: lm-eval alone would write cuda:0) and
    what identifies the weights and the prompt."""
    from typer.testing import CliRunner

    from promptvec.cli import app

    tasks = _toy_task_files(tmp_path)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, [
        "lm-eval", "--model", "promptvec", "--model_args", f"model={tiny_models['llama']},prompt={prompt_folder}",
        "--tasks", "toy_mc,toy_gen", "--include_path", str(tasks), "--output_path", str(out), "--batch_size", "2"])
    assert result.exit_code == 0, result.output
    assert "Running loglikelihood requests" in result.output and "Running generate_until requests" in result.output
    [saved] = list(out.rglob("results_*.json"))
    document = json.loads(saved.read_text())
    scores = document["results"]
    assert 0.0 <= scores["toy_mc"]["acc,none"] <= 1.0
    assert 0.0 <= scores["toy_gen"]["exact_match,none"] <= 1.0
    from lm_eval.utils import sanitize_model_name

    assert saved.parent.name == sanitize_model_name(str(prompt_folder)) and document["model_name"] == str(prompt_folder)
    config = document["config"]
    assert config["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert config["prompt_source"] == str(prompt_folder) and config["model_dtype"] == "torch.float32"
    assert config["prompt_sha256"] == json.loads((prompt_folder / "promptvec.json").read_text())["weights_sha256"]


def test_hf_model_args_are_read_as_promptvec_s_with_a_note(tiny_models, prompt_folder, caplog):
    """lm-eval users' first guesses — ``pretrained=``, ``peft=`` — mean ``model=`` and ``prompt=``."""
    request = _requests("loglikelihood", PAIRS[:2])
    with caplog.at_level("WARNING"):
        guessed = PromptvecLM(pretrained=str(tiny_models["llama"]), peft=str(prompt_folder))
    assert "reads pretrained= as model=" in caplog.text and "reads peft= as prompt=" in caplog.text
    own = PromptvecLM(model=str(tiny_models["llama"]), prompt=str(prompt_folder))
    assert guessed.loglikelihood(request) == own.loglikelihood(request)
    info = guessed.get_model_info()
    backbone = guessed.backbone
    assert info["model_num_parameters"] == sum(p.numel() for p in backbone.model.parameters())
    assert info["model_fingerprint"] == backbone.fingerprint and info["prompt_rows"] == 4


def test_bad_model_args_are_refused_by_name(tiny_models):
    from promptvec.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model_args.*revision"):
        PromptvecLM(model=str(tiny_models["llama"]), revision="main")
    with pytest.raises(ConfigError, match="both pretrained= and model="):
        PromptvecLM(model=str(tiny_models["llama"]), pretrained="gpt2")
    with pytest.raises(ConfigError, match="causal LM"):
        PromptvecLM(model=str(tiny_models["t5"]))
    with pytest.raises(ConfigError, match="batch_size"):
        PromptvecLM(model=str(tiny_models["llama"]), batch_size=0)


@pytest.mark.parametrize(("args", "message"), [
    ({"max_length": "abc"}, "'max_length': Input should be a valid integer"),
    ({"max_length": -5}, "'max_length': Input should be greater than or equal to 16"),
    ({"max_length": True}, "'max_length': Input should be a valid integer"),
    ({"prompt": ""}, "'prompt': String should have at least 1 character"),
])
def test_model_args_are_checked_as_promptvec_checks_its_own(tiny_models, args, message):
    from promptvec.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        PromptvecLM(model=str(tiny_models["llama"]), **args)


def test_a_max_length_that_leaves_no_room_after_the_prompt_is_refused(tiny_models, tmp_path):
    from promptvec.errors import ConfigError

    backbone = load_backbone(str(tiny_models["llama"]))
    long_prompt = save_prompt(tmp_path / "p", torch.zeros(20, backbone.dim), backbone, {"task": "toy"})
    with pytest.raises(ConfigError, match="max_length 16 leaves no room for an input after the prompt's 20 rows"):
        PromptvecLM(model=str(tiny_models["llama"]), prompt=str(long_prompt), max_length=16)


@pytest.mark.parametrize(("settings", "message"), [
    ({"until": [""], "max_gen_toks": 4}, "until holds an empty string"),
    ({"until": ["\n"], "max_gen_toks": -1}, "'max_gen_toks': Input should be greater than or equal to 1"),
    ({"until": ["\n"], "max_gen_toks": True}, "'max_gen_toks': Input should be a valid integer"),
])
def test_lm_eval_generation_settings_are_checked_as_a_promptvec_task_file(tiny_models, settings, message):
    from promptvec.errors import ConfigError
    from promptvec.tasks.spec import TaskSpec

    with pytest.raises(ConfigError, match=message):
        PromptvecLM(model=str(tiny_models["llama"])).generate_until(_requests("generate_until", [("Q:", settings)]))
    with pytest.raises(ValueError, match=message.split(": ")[-1]):  # promptvec's own task loader says the same
        TaskSpec(task="t", output_type="generate_until", doc_to_text="{{q}}", doc_to_target="a",
                 metric_list=[{"metric": "exact_match"}], generation_kwargs=settings)


@pytest.mark.slow
def test_bad_model_args_through_the_command_line_give_one_message(tiny_models, tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "promptvec", "lm-eval", "--model", "promptvec", "--model_args",
                             f"model={tiny_models['llama']},max_length=abc", "--tasks", "toy_mc", "--include_path",
                             str(_toy_task_files(tmp_path))], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "'max_length': Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr
