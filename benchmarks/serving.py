"""Serving: ``promptvec serve`` under concurrent load against calling the Predictor one request at a time.

The server runs as a user starts it (``python -m promptvec serve --library shipped``, a separate process,
all 22 shipped prompts loaded) on the loopback interface. N client threads each send requests with the
``openai``-style JSON over HTTP (httpx, one connection each), one input per request, round-robin over 4
prompts (sst2, imdb, agnews, trec) — so concurrent requests name different prompts and the engine mixes
them in one forward pass. The reference is the same requests answered in-process, one after another,
each a ``predict`` call of one input with its prompt (what an application calling ``Predictor`` per
request does), measured in this process with the server stopped. Both see the same inputs; the server's
labels are checked against the reference's.

Memory: one process loads the model and 100 prompts (R = 20) and prepares all their keys/values.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

import httpx

from benchmarks.common import Section
from promptvec.backbones import load_backbone
from promptvec.evaluation import predict
from promptvec.library import PromptLibrary
from promptvec.serving import PromptPool
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.training.record import peak_rss_mb

PROMPTS = ("sst2", "imdb", "agnews", "trec")
MAX_INPUT_CHARS = 600  # ≈ 150 tokens: every input fits the default max_length with a 20-row prompt
THROUGHPUT_TARGET = 2.0  # server at 16 clients against the sequential Predictor, requests per second


def _requests(count: int) -> list[tuple[str, dict]]:
    """(prompt, input fields) pairs, round-robin over the prompts, each a seeded test input of its task
    short enough for the server to take whole (it refuses, rather than cuts, an input over the limit)."""
    fields = {}
    for name in PROMPTS:
        task = get_task(name)
        fitting = [e for e in subsample(load_task_data(task).test, 4 * count, 1234)
                   if len(task.render(e.fields)) <= MAX_INPUT_CHARS]
        fields[name] = [dict(e.fields) for e in fitting[:count]]
    return [(PROMPTS[i % len(PROMPTS)], fields[PROMPTS[i % len(PROMPTS)]][i // len(PROMPTS)]) for i in range(count)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _sequential(requests) -> tuple[list[float], list[str], float]:
    backbone = load_backbone("default")
    library = PromptLibrary.for_backbone(backbone)
    prompts = {s.task: s.prompt for s in library.sources(backbone) if s.task in PROMPTS}
    latencies, labels = [], []
    start = time.perf_counter()
    for name, fields in requests:
        t0 = time.perf_counter()
        task = get_task(name)
        out = predict(backbone, task, [fields], prompts[name])
        latencies.append(time.perf_counter() - t0)
        labels.append(task.label_names[out.indices[0]])
    return latencies, labels, time.perf_counter() - start


def _server(port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "promptvec", "serve", "--library", "shipped", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not start")


def _load(url: str, requests, clients: int) -> tuple[list[float], dict[int, str], float]:
    latencies: list[float] = []
    labels: dict[int, str] = {}
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            for i in range(index, len(requests), clients):
                name, fields = requests[i]
                t0 = time.perf_counter()
                response = http.post(f"{url}/v1/classify", json={"model": name, "input": fields})
                elapsed = time.perf_counter() - t0
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    labels[i] = response.json()["data"][0]["label"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, labels, time.perf_counter() - start


def _memory_with_prompts(count: int = 100, rows: int = 20) -> dict[str, float]:
    import torch

    backbone = load_backbone("default")
    before = peak_rss_mb()
    pool = PromptPool(backbone, cache_mb=4096)
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        pool.add(f"p{i}", torch.randn(rows, backbone.dim, generator=generator) * 0.02, "sst2", "random")
    for name in pool.names:
        pool.prepared(pool.get(name))
    prepared, size = pool.cached
    return {"prompts": prepared, "prepared_mb": size / 2**20, "rss_before_mb": before, "rss_after_mb": peak_rss_mb()}


def run(quick: bool = False) -> Section:
    count = 32 if quick else 96
    requests = _requests(count)
    seq_latencies, seq_labels, seq_wall = _sequential(requests)
    rows, data = [["sequential Predictor, in-process", "1", f"{count / seq_wall:.1f}",
                   f"{1000 * statistics.median(seq_latencies):.0f}", f"{1000 * _percentile(seq_latencies, 0.95):.0f}",
                   "–"]], {"sequential": {"wall_s": seq_wall, "latencies": seq_latencies}}
    port = 18000 + os.getpid() % 1000
    process = _server(port)
    try:
        for clients in (1, 4, 16):
            latencies, labels, wall = _load(f"http://127.0.0.1:{port}", requests, clients)
            agree = sum(labels[i] == seq_labels[i] for i in range(count))
            rows.append([f"promptvec serve, {clients} client(s)", str(clients), f"{count / wall:.1f}",
                         f"{1000 * statistics.median(latencies):.0f}", f"{1000 * _percentile(latencies, 0.95):.0f}",
                         f"{agree}/{count}"])
            data[f"serve_{clients}"] = {"wall_s": wall, "latencies": latencies, "agree": agree}
    finally:
        process.terminate()
        process.wait(60)
    memory = _memory_with_prompts()
    data["memory"] = memory
    speedup = (count / data["serve_16"]["wall_s"]) / (count / seq_wall)
    same = all(data[f"serve_{c}"]["agree"] == count for c in (1, 4, 16))
    return Section(
        title="Serving: concurrent requests over 4 prompts against the sequential Predictor (embedded SmolLM2-135M)",
        intro=(f"{count} classification requests of one seeded test input each, round-robin over the shipped "
               f"prompts of {', '.join(PROMPTS)} (inputs of at most {MAX_INPUT_CHARS} characters, so that each fits "
               "whole); the server (`python -m promptvec serve --library shipped`, its own "
               "process, 22 prompts loaded) on loopback, N client threads with one HTTP connection each; the "
               "reference answers the same requests in-process one at a time (`predict` with one input). Latency "
               "is per request, from send to answer. *agree*: labels equal to the reference's. Memory: one process "
               f"with the model and 100 prompts (R = 20) whose keys/values are all prepared: {memory['prompts']} "
               f"prompts, {memory['prepared_mb']:.0f} MB of keys/values, resident memory {memory['rss_before_mb']:.0f} "
               f"MB with the model alone, {memory['rss_after_mb']:.0f} MB with them."),
        header=["how", "clients", "requests / s", "p50 latency (ms)", "p95 latency (ms)", "agree"],
        rows=rows,
        targets=[(f"serve at 16 clients ≥ {THROUGHPUT_TARGET}× the sequential Predictor's requests/s",
                  speedup >= THROUGHPUT_TARGET, f"{speedup:.2f}×"),
                 ("the server's labels are the Predictor's", same,
                  ", ".join(f"{data[f'serve_{c}']['agree']}/{count}" for c in (1, 4, 16)))],
        data=data)

