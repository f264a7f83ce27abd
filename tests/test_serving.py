"""promptvec.serving: many prompts on one model behind an OpenAI-compatible HTTP API.

The engine answers each request as the in-process Predictor does, also when one forward pass mixes
prompts of different lengths and no prompt; the HTTP API is called as a user would (httpx, the
``openai`` client) on a server started on a free local port, and its errors keep OpenAI's shape."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from promptvec.backbones import load_backbone  # noqa: E402
from promptvec.inference import Predictor  # noqa: E402
from promptvec.peft_folder import save_prompt  # noqa: E402
from promptvec.serving import Engine, PromptPool, create_app  # noqa: E402
from promptvec.serving.inputs import classify_jobs, completion_jobs  # noqa: E402


@pytest.fixture(scope="module")
def backbone(tiny_models):
    return load_backbone(str(tiny_models["llama"]))


@pytest.fixture(scope="module")
def prompt_folders(tmp_path_factory, backbone, toy_task, toy_tasks, toy_generation_tasks):
    """Label prompts of two lengths and of another task, and a free-text prompt, saved as training saves them."""
    root = tmp_path_factory.mktemp("served")
    generator = torch.Generator().manual_seed(0)
    folders = {}
    for name, rows, task in (("short", 3, str(toy_task)), ("long", 6, str(toy_task)),
                             ("other", 4, toy_tasks["target"]), ("answers", 4, toy_generation_tasks["gen_a"])):
        folders[name] = save_prompt(root / name, torch.randn(rows, backbone.dim, generator=generator) * 0.5,
                                    backbone, {"task": task})
    return folders


@pytest.fixture(scope="module")
def pool(backbone, prompt_folders):
    pool = PromptPool(backbone)
    for name, folder in prompt_folders.items():
        pool.add_reference(name, str(folder))
    return pool


REVIEWS = ["a wonderful, moving film", "dull and far too long", "great", "the plot made no sense at all, sadly"]


def test_one_forward_pass_with_mixed_prompts_answers_as_the_predictor_does(backbone, pool, prompt_folders):
    """Inputs for prompts of different lengths share one batch (their keys/values left-padded to the
    longest), a prompt of another task gets a batch of its own, and each input gets the Predictor's
    label and scores for its own prompt."""
    engine = Engine(pool, batch_wait_ms=200)
    jobs = [*classify_jobs(pool, pool.get("short"), REVIEWS[:2]), *classify_jobs(pool, pool.get("long"), REVIEWS),
            *classify_jobs(pool, pool.get("other"), REVIEWS), *classify_jobs(pool, pool.get("short"), REVIEWS[2:])]
    futures = engine.submit(jobs)
    engine.start()
    results = [future.result(timeout=60) for future in futures]
    engine.close()
    assert engine.batches == 2  # one forward pass for both prompts of the task, one for the other task
    for name, got in (("short", results[:2] + results[10:]), ("long", results[2:6]), ("other", results[6:10])):
        expected = Predictor(prompt_folders[name], backbone=backbone).predict(REVIEWS)
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.label == theirs.label
            assert mine.scores == pytest.approx(theirs.scores, abs=1e-4)


def test_mixed_completions_with_and_without_a_prompt_decode_as_alone(backbone, pool, prompt_folders,
                                                                     toy_generation_tasks):
    """Greedy completions for a prompt and for the bare model in one batch: each row's text is what it
    decodes alone (the prompt's through the Predictor; the bare model's in a batch of its own)."""
    texts = ["Review: a fine film\nAnswer:", "Review: not good\nAnswer:"]
    engine = Engine(pool, batch_wait_ms=200)
    with_prompt = completion_jobs(pool, pool.get("answers"), ["a fine film", "not good"], 6, ())
    bare = completion_jobs(pool, None, texts, 6, ())
    futures = engine.submit(with_prompt + bare)
    engine.start()
    results = [future.result(timeout=60) for future in futures]
    assert engine.batches == 1
    alone = Engine(pool).start()
    bare_alone = [f.result(timeout=60) for f in alone.submit(completion_jobs(pool, None, texts, 6, ()))]
    engine.close()
    alone.close()
    assert [r.text for r in results[:2]] == predicted_texts(backbone, prompt_folders["answers"],
                                                            ["a fine film", "not good"], 6)
    assert [r.text for r in results[2:]] == [r.text for r in bare_alone]
    assert all(r.finish_reason in ("stop", "length") for r in results)


def predicted_texts(backbone, folder, inputs: list[str], max_tokens: int) -> list[str]:
    """What ``promptvec predict`` generates for ``inputs`` with ``max_tokens`` new tokens and no stop string."""
    predictor = Predictor(folder, backbone=backbone)
    kwargs = predictor.task.generation_kwargs.model_copy(update={"max_gen_toks": max_tokens, "until": []})
    predictor.task = predictor.task.model_copy(update={"generation_kwargs": kwargs})
    return [str(p.label) for p in predictor.predict(inputs)]


# ---- the HTTP API ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    """uvicorn in a thread on a free local port (signal handlers stay with the main thread)."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def server(pool):
    engine = Engine(pool).start()
    with RunningServer(create_app(pool, engine, timeout_s=60)) as running:
        yield running


def test_models_lists_every_prompt_with_its_task_and_the_base_model(server, pool, toy_generation_tasks):
    body = httpx.get(f"{server.url}/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {"base", "short", "long", "other", "answers"}
    assert by_id["short"]["task"] == "toy_sentiment" and by_id["short"]["prompt_rows"] == 3
    assert by_id["answers"]["generates"] is True
    assert all(m["base_model"] == pool.backbone.name for m in body["data"])
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["prompts"] == 4


def test_the_openai_client_completes_with_a_served_prompt(server, backbone, prompt_folders):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    assert {m.id for m in client.models.list()} >= {"answers", "base"}
    completion = client.completions.create(model="answers", prompt=["a fine film", "not good"], max_tokens=6, stop=[])
    assert [c.text for c in completion.choices] == predicted_texts(backbone, prompt_folders["answers"],
                                                                   ["a fine film", "not good"], 6)
    assert completion.usage.prompt_tokens > 0 and completion.object == "text_completion"
    with pytest.raises(openai.NotFoundError, match="no prompt 'answer'.*did you mean answers"):
        client.completions.create(model="answer", prompt="x")


def test_classify_returns_the_predictor_s_labels_and_scores(server, backbone, prompt_folders):
    response = httpx.post(f"{server.url}/v1/classify", json={"model": "long", "input": REVIEWS})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Predictor(prompt_folders["long"], backbone=backbone).predict(REVIEWS)
    assert [d["label"] for d in body["data"]] == [p.label for p in expected]
    for got, want in zip(body["data"], expected, strict=True):
        assert got["scores"] == pytest.approx(want.scores, abs=1e-4)
    one = httpx.post(f"{server.url}/v1/classify", json={"model": "short", "input": {"text": REVIEWS[0]}}).json()
    assert len(one["data"]) == 1 and one["task"] == "toy_sentiment"


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "nope", "input": "x"}, 404, "no prompt 'nope'"),
    ({"model": "short"}, 422, "input"),
    ({"model": "short", "input": "x", "extra": 1}, 422, "extra"),
    ({"model": "base", "input": "x"}, 400, "needs a prompt"),
    ({"model": "answers", "input": "x"}, 400, "/v1/completions"),
    ({"model": "short", "input": "word " * 400}, 400, "tokens; prompt 'short' allows at most"),
    ({"model": "short", "input": {"wrong": "x"}}, 400, "text"),
])
def test_a_bad_classify_request_gets_one_openai_shaped_error(server, body, status, words):
    response = httpx.post(f"{server.url}/v1/classify", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "answers", "prompt": "x", "stream": True}, 400, "stream"),
    ({"model": "answers", "prompt": "x", "temperature": 0.7}, 400, "temperature"),
    ({"model": "answers", "prompt": "x", "n": 2}, 400, "n"),
    ({"model": "short", "prompt": "x"}, 400, "model"),
    ({"model": "answers", "prompt": "x", "max_tokens": 0}, 422, "max_tokens"),
    ({"model": "answers", "prompt": "x", "max_tokens": 10**6}, 400, "max_tokens"),
    ({"model": "answers", "prompt": []}, 400, "prompt"),
])
def test_a_bad_completion_request_names_its_parameter(server, body, status, param):
    response = httpx.post(f"{server.url}/v1/completions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_a_body_that_is_not_json_is_a_400(server):
    response = httpx.post(f"{server.url}/v1/completions", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_a_full_queue_is_a_429_and_a_slow_answer_a_504(pool):
    """An engine not yet started answers nothing: the request times out (504) and, with the queue full,
    the next one is refused at once (429). Started, it skips the timed-out inputs and answers new ones."""
    engine = Engine(pool, queue_size=2)
    with RunningServer(create_app(pool, engine, timeout_s=0.5)) as running:
        slow = httpx.post(f"{running.url}/v1/classify", json={"model": "short", "input": REVIEWS[:2]})
        assert slow.status_code == 504 and slow.json()["error"]["type"] == "timeout"
        full = httpx.post(f"{running.url}/v1/classify", json={"model": "short", "input": REVIEWS[0]})
        assert full.status_code == 429 and "at capacity" in full.json()["error"]["message"]
        engine.start()
        deadline = time.monotonic() + 30
        while engine.queued and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.batches == 0  # the timed-out inputs were skipped, not computed
        ok = httpx.post(f"{running.url}/v1/classify", json={"model": "short", "input": REVIEWS[0]}, timeout=30)
        assert ok.status_code == 200


def test_shutdown_answers_the_requests_in_flight(pool):
    """Stopping the server (as Ctrl-C does) lets requests already sent finish with their answers."""
    engine = Engine(pool, batch_wait_ms=300).start()
    answers: list[httpx.Response] = []
    with RunningServer(create_app(pool, engine)) as running:
        sender = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{running.url}/v1/classify", json={"model": "long", "input": REVIEWS}, timeout=60)))
        sender.start()
        time.sleep(0.1)  # the request is in the engine's batch window when the server is told to stop
    sender.join(60)
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["data"]) == len(REVIEWS)
    assert not engine._thread.is_alive()  # the app's shutdown closed the engine


def test_prepared_prompts_are_bounded_by_memory_least_recently_used_first(backbone, prompt_folders):
    pool = PromptPool(backbone, cache_mb=1e-9)  # room for one prompt's keys/values at a time
    for name, folder in prompt_folders.items():
        pool.add_reference(name, str(folder))
    first = pool.prepared(pool.get("short"))
    assert pool.prepared(pool.get("short")) is first  # kept while it is the one in use
    pool.prepared(pool.get("long"))
    assert pool.cached[0] == 1 and pool.prepared(pool.get("short")) is not first  # evicted, computed again


def test_names_are_checked_when_prompts_are_added(backbone, prompt_folders):
    from promptvec.errors import ConfigError
    from promptvec.serving import parse_prompt_specs

    pool = PromptPool(backbone)
    pool.add_reference("a", str(prompt_folders["short"]))
    with pytest.raises(ConfigError, match="two prompts are named 'a'"):
        pool.add_reference("a", str(prompt_folders["long"]))
    with pytest.raises(ConfigError, match="'base' names the model without a prompt"):
        pool.add_reference("base", str(prompt_folders["long"]))
    with pytest.raises(ConfigError, match="is not NAME=FOLDER"):
        parse_prompt_specs(["just-a-folder"])
    assert parse_prompt_specs(["x=some/folder"]) == {"x": "some/folder"}


def test_a_library_of_user_tasks_is_refused_with_the_way_to_serve_its_prompts(tiny_models, tiny_library):
    """A library prompt is served under its task's name with that task's template and labels; a task
    that is not built in (the tiny library's toy tasks) cannot be resolved from its name alone."""
    from promptvec.errors import ConfigError

    pool = PromptPool(load_backbone(str(tiny_models["llama"])))
    with pytest.raises(ConfigError, match="not a built-in task") as caught:
        pool.add_library(tiny_library.root)
    assert "--prompt src_a=RUN_FOLDER" in caught.value.hint


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("gguf")
    return load_backbone("default")


@pytest.mark.slow
@pytest.mark.integration
def test_the_shipped_library_is_served_by_task_name_as_predict_answers(smollm):
    """``promptvec serve --library shipped``: every shipped prompt under its task's name; a classification
    through HTTP equals the prompt's own evaluation."""
    from promptvec.evaluation import predict
    from promptvec.library import PromptLibrary

    pool = PromptPool(smollm)
    added = pool.add_library()
    library = PromptLibrary.for_backbone(smollm)
    assert [p.name for p in added] == [e.task for e in library.entries] and len(added) == 22
    texts = ["a gripping, beautifully acted film", "a dull, lifeless mess"]
    with RunningServer(create_app(pool, Engine(pool).start())) as running:
        models = httpx.get(f"{running.url}/v1/models").json()["data"]
        assert len(models) == 23 and {"sst2", "lama_p19", "base"} <= {m["id"] for m in models}
        body = httpx.post(f"{running.url}/v1/classify", json={"model": "sst2", "input": texts}, timeout=60).json()
    served = pool.get("sst2")
    assert served is not None
    expected = predict(smollm, "sst2", texts, served.prompt)
    assert [d["label"] for d in body["data"]] == [served.task.label_names[i] for i in expected.indices]
    for got, scores in zip(body["data"], expected.scores, strict=True):
        assert list(got["scores"].values()) == pytest.approx(scores, abs=1e-4)


def test_the_serve_command_refuses_a_bad_prompt_argument_in_one_line():
    from typer.testing import CliRunner

    from promptvec.cli import app

    result = CliRunner().invoke(app, ["serve", "--prompt", "no-equals-sign"])
    assert result.exit_code == 2
    assert "is not NAME=FOLDER" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_the_serve_command_starts_answers_logs_and_stops_on_sigterm(tiny_models, prompt_folders, tmp_path):
    """``promptvec serve`` as a user starts it: a process that loads the model and the prompt, answers on
    its port, logs each request, and on SIGTERM stops cleanly (exit 0)."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "promptvec", "serve", "--model", str(tiny_models["llama"]), "--prompt",
             f"short={prompt_folders['short']}", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, log_file.read_text()
                time.sleep(0.2)
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"model": "short", "input": REVIEWS[0]})
            assert reply.status_code == 200 and reply.json()["data"][0]["label"] in ("negative", "positive")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    output = log_file.read_text()
    assert code == 0, output
    assert "serving 1 prompt(s)" in output and "POST /v1/classify 200" in output
