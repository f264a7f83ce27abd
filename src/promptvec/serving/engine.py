"""The serving engine: one thread that owns the model and answers queued requests in batches.

Requests arrive from many connections at once; the model is one copy, and a CPU (or GPU) does more
work per second on a batch than on one input at a time. So handlers only *queue* a request (a
bounded queue: a full one is refused at once rather than letting latency grow without limit) and
wait for its future; the engine thread takes what is queued — up to ``max_batch`` requests, waiting
at most ``batch_wait_ms`` for more once the first has come — groups them by what must be equal
within one forward pass, and runs each group:

* classification: requests of the same task (the same labels), whichever prompts they name;
* completion: requests with the same ``max_tokens`` and stop strings, whichever prompts they name.

On a decoder-only model that shares a prompt's keys/values exactly, the rows of a group start from
their own prompts' cached keys/values in one forward pass (:class:`~promptvec.backbones.prefix.
MixedPrompts`); elsewhere a group is split further by prompt. Classifications of different tasks are
not mixed: their labels differ, and so, mostly, do their inputs' lengths — measured with four tasks
on 2 CPU cores, one pass over all of them (each row scoring its own labels from the cache) answered
3.8 requests/s against 6.4 for a pass per task, the padding to the longest input costing more than
the passes saved.
Either way each request gets what the in-process :class:`~promptvec.inference.Predictor` gives for
its input (the same encoding, scoring and decoding; batches differ only in float summation order).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from promptvec.backbones.base import Batch, Encoded, left_pad, pad_token_id
from promptvec.backbones.prefix import MixedPrompts, PromptCache
from promptvec.evaluation.evaluator import expected_value
from promptvec.serving.prompts import PromptPool, ServedPrompt

log = logging.getLogger("promptvec.serve")

DEFAULT_MAX_BATCH = 32
DEFAULT_QUEUE_SIZE = 256
DEFAULT_BATCH_WAIT_MS = 5.0


class QueueFull(Exception):
    """The engine's queue is full: the server is at capacity (HTTP 429)."""


class EngineClosed(Exception):
    """The engine is shutting down and takes no new requests (HTTP 503)."""


@dataclass
class Classified:
    label: str | float
    scores: dict[str, float]


@dataclass
class Completed:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens reached)


@dataclass
class Job:
    """One input of one request: its prompt (None = no prompt), its tokens, and what to do with them."""

    served: ServedPrompt | None
    input_ids: list[int]
    classify: bool  # score the prompt task's labels; else complete the text greedily
    max_tokens: int = 0  # completion: greedy steps at most
    stop: tuple[str, ...] = ()
    future: Future = field(default_factory=Future)

    def group(self, mixing: bool) -> tuple[Any, ...]:
        """What must be equal within one forward pass: a classification's task (its labels, and inputs of
        like length), a completion's decoding settings; without ``mixing`` also the prompt."""
        if self.classify:
            assert self.served is not None  # a classification names its prompt
            key: tuple[Any, ...] = ("classify", self.served.task.task)
        else:
            key = ("complete", self.max_tokens, self.stop)
        return key if mixing else (*key, self.served.name if self.served else None)


class Engine:
    """Owns the backbone's forward passes (see the module docstring). ``submit`` is thread-safe."""

    def __init__(self, pool: PromptPool, max_batch: int = DEFAULT_MAX_BATCH, queue_size: int = DEFAULT_QUEUE_SIZE,
                 batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS) -> None:
        self.pool, self.backbone = pool, pool.backbone
        self.max_batch, self.batch_wait = max_batch, batch_wait_ms / 1000
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="promptvec-engine", daemon=True)
        self.mixes_prompts = bool(getattr(self.backbone, "shares_prompt_exactly", False))
        self.batches = 0  # forward groups run, for /health and the logs

    def start(self) -> Engine:
        self._thread.start()
        return self

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, jobs: list[Job]) -> list[Future]:
        """Queue a request's inputs (all or none): QueueFull when they do not fit, EngineClosed after close."""
        if self._closed.is_set():
            raise EngineClosed("the server is shutting down")
        if self._queue.maxsize and self._queue.qsize() + len(jobs) > self._queue.maxsize:
            raise QueueFull(f"{self._queue.qsize()} inputs are queued (limit {self._queue.maxsize})")
        for job in jobs:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                for queued in jobs:  # the ones already queued are dropped when picked up
                    queued.future.cancel()
                raise QueueFull(f"the queue is full (limit {self._queue.maxsize})") from None
        return [job.future for job in jobs]

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, answer every queued one, then stop the thread."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)  # wakes the thread; it ends once everything before it is answered
        self._thread.join(timeout)

    # ---- the engine thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = [first], False
            deadline = time.monotonic() + self.batch_wait
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            self._answer(jobs)
            if stopping:
                return

    def _answer(self, jobs: list[Job]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # timed out: skipped
        groups: dict[tuple[Any, ...], list[Job]] = defaultdict(list)
        for job in live:
            groups[job.group(self.mixes_prompts)].append(job)
        for group in groups.values():
            started = time.perf_counter()
            try:
                with torch.no_grad():
                    results = self._classify(group) if group[0].classify else self._complete(group)
            except Exception as exc:  # one group's failure is its requests' error, never the server's
                log.exception("a batch of %d input(s) failed", len(group))
                for job in group:
                    job.future.set_exception(exc)
                continue
            self.batches += 1
            log.debug("batch of %d input(s), %d prompt(s): %.1f ms", len(group),
                      len({job.served.name if job.served else None for job in group}),
                      1000 * (time.perf_counter() - started))
            for job, result in zip(group, results, strict=True):
                job.future.set_result(result)

    def _prompt_for(self, group: list[Job]) -> torch.Tensor | PromptCache:
        """The group's prompts as one forward pass takes them: one prompt's cache, each row's own, or
        (a model that does not share a prompt's keys/values exactly) the one prompt's rows."""
        served = [job.served for job in group]
        names = {s.name if s else None for s in served}
        if not self.mixes_prompts:
            (only,) = served[:1]
            return only.prompt if only is not None else self.backbone.embedding.weight.new_zeros(0, self.backbone.dim)
        if len(names) == 1 and served[0] is not None:
            return self.pool.prepared(served[0])
        return MixedPrompts(self.backbone.model, [self.pool.prepared(s) if s else None for s in served])

    def _batch(self, group: list[Job]) -> Batch:
        """The group's inputs collated as the prompts' task collates them (one task), else left-padded
        (a mixed completion group, which only a decoder-only model forms)."""
        tasks = {job.served.task.task: job.served.task for job in group if job.served is not None}
        if len(tasks) == 1 and all(job.served is not None for job in group):
            (task,) = tasks.values()
            items = [Encoded(job.input_ids, -1) for job in group]
            return self.backbone.collate(task, items, train=False).to(self.backbone.device)
        ids, mask = left_pad([job.input_ids for job in group], pad_token_id(self.backbone.tokenizer))
        return Batch(ids, mask, torch.zeros(len(group), dtype=torch.long)).to(self.backbone.device)

    def _classify(self, group: list[Job]) -> list[Classified]:
        """Each input's label scores: the log-likelihood of each label's tokens after the prompt and the
        input, as rank classification scores them (one task per group: its labels)."""
        assert group[0].served is not None  # a classification names its prompt
        task = group[0].served.task
        prompt: Any = self._prompt_for(group)  # a decoder-only model's prepared keys/values, or [R, d]
        scores = self.backbone.label_scores(task, self._batch(group), prompt).float().cpu()
        bins = torch.tensor([float(v) for v in task.label_names]) if task.is_regression else None
        out = []
        for row in scores:
            label = expected_value(row, bins) if bins is not None else task.label_names[int(row.argmax())]
            out.append(Classified(label, dict(zip(task.label_names, row.tolist(), strict=True))))
        return out

    def _complete(self, group: list[Job]) -> list[Completed]:
        first = group[0]
        prompt: Any = self._prompt_for(group)
        texts = self.backbone.generate(self._batch(group), prompt, first.max_tokens, first.stop).texts
        out = []
        for job, text in zip(group, texts, strict=True):
            produced = len(self.backbone.tokenizer(text, add_special_tokens=False)["input_ids"])
            reason = "length" if produced >= job.max_tokens else "stop"
            out.append(Completed(text.strip(), len(job.input_ids), produced, reason))
        return out
