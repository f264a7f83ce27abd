"""The HTTP API: OpenAI-compatible completions and model listing, plus classification and health.

* ``GET /v1/models`` — the served prompts (``id`` = the name a request uses as ``model``, with its
  task) and ``base``, the model without a prompt.
* ``POST /v1/completions`` — greedy completion of free text: ``model``, ``prompt`` (a string or a list
  of strings; with a prompt model, the task's input — an object of its fields for a task with several,
  a promptvec extension), ``max_tokens``, ``stop``. Sampling is not
  offered: ``temperature`` other than 0, ``n`` > 1, ``stream`` and ``logprobs`` are refused by name.
* ``POST /v1/classify`` — ``model`` and ``input`` (text, a dict of the task's fields, or a list of
  them): each input's label by rank classification, with every label's score.
* ``GET /health`` — liveness and load (queued inputs, prompts whose keys/values are in memory).

Errors have OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) and status: 400 for
a request that cannot be answered as sent, 422 for a body that does not fit the schema, 404 for an
unknown prompt, 429 when the queue is full, 503 while shutting down, 504 past the request timeout,
500 (a message, never a traceback) for anything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptvec.serving.engine import Completed, Engine, EngineClosed, QueueFull
from promptvec.serving.inputs import RequestError, classify_jobs, completion_jobs
from promptvec.serving.prompts import BASE, PromptPool, ServedPrompt

log = logging.getLogger("promptvec.serve")

DEFAULT_TIMEOUT_S = 60.0
MAX_INPUTS = 256  # inputs one request may carry


class CompletionRequest(BaseModel):
    """The fields of OpenAI's completions request that promptvec answers (others are ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | dict[str, Any] | list[str | dict[str, Any]] = Field(
        description="the text(s) to complete; with a prompt, the task's input (an object of its fields for a "
                    "task with several)")
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, ge=0)
    n: int | None = Field(None, ge=1)
    stream: bool | None = None
    logprobs: int | None = None
    echo: bool | None = None

    @model_validator(mode="after")
    def _greedy_only(self) -> CompletionRequest:
        unsupported = {"temperature": self.temperature not in (None, 0), "n": self.n not in (None, 1),
                       "stream": bool(self.stream), "logprobs": self.logprobs is not None, "echo": bool(self.echo)}
        for name, asked in unsupported.items():
            if asked:
                raise RequestError(f"'{name}' is not supported: promptvec serves greedy completions, one per "
                                   "prompt, in one response (leave it out, or temperature 0)", name)
        return self


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | dict[str, Any] | list[str | dict[str, Any]]


def _error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def create_app(pool: PromptPool, engine: Engine, timeout_s: float = DEFAULT_TIMEOUT_S) -> FastAPI:
    """The API over a started ``engine``; the app's shutdown answers what is queued, then closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(engine.close)  # in-flight requests are answered before the engine stops

    app = FastAPI(title="promptvec", summary="soft prompts on one frozen model", lifespan=lifespan)
    created = int(time.time())

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        log.info("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - started))
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        for error in exc.errors():  # a refusal raised while validating (e.g. stream) is a 400 with its own words
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, RequestError):
                return _error(400, cause.message, "invalid_request_error", cause.param)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        if first.get("type") == "json_invalid":
            return _error(400, "the body is not valid JSON", "invalid_request_error")
        return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", "invalid_request_error", where)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}", "server_error")

    def lookup(name: str) -> ServedPrompt | None | JSONResponse:
        try:
            return pool.get(name)
        except KeyError as exc:
            return _error(404, str(exc.args[0]), "invalid_request_error", "model", "model_not_found")

    async def answer(jobs_of) -> list[Any] | JSONResponse:
        try:
            futures = engine.submit(jobs_of())
        except RequestError as exc:
            return _error(400, exc.message, "invalid_request_error", exc.param)
        except QueueFull as exc:
            return _error(429, f"the server is at capacity ({exc}); retry later", "rate_limit_error")
        except EngineClosed:
            return _error(503, "the server is shutting down", "server_error")
        waiting = [asyncio.wrap_future(future) for future in futures]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*waiting), timeout_s))
        except TimeoutError:
            for future in futures:
                future.cancel()  # not started yet: skipped by the engine
            return _error(504, f"no answer within {timeout_s:g} s", "timeout")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        prepared, size = pool.cached
        return {"status": "ok", "model": pool.backbone.name, "prompts": len(pool.names), "queued": engine.queued,
                "prepared_prompts": prepared, "prepared_mb": round(size / 2**20, 1), "batches": engine.batches}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": BASE, "object": "model", "created": created, "owned_by": "promptvec", "task": None,
                 "base_model": pool.backbone.name}]
        for name in pool.names:
            served = pool.get(name)
            assert served is not None  # a named prompt
            data.append({"id": name, "object": "model", "created": created, "owned_by": "promptvec",
                         "task": served.task.task, "generates": served.task.generates, "prompt_rows": served.rows,
                         "source": served.source, "base_model": pool.backbone.name})
        return {"object": "list", "data": data}

    async def handle(model: str, items: Any, param: str, jobs_of) -> tuple[ServedPrompt | None, list] | JSONResponse:
        """The steps every request takes: find the prompt, count the inputs, queue their jobs, await them."""
        served = lookup(model)
        if isinstance(served, JSONResponse):
            return served
        listed = _as_list(items)
        if not listed or len(listed) > MAX_INPUTS:
            return _error(400, f"give 1 to {MAX_INPUTS} items as '{param}'", "invalid_request_error", param)
        results = await answer(lambda: jobs_of(served, listed))
        return results if isinstance(results, JSONResponse) else (served, results)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest) -> dict[str, Any] | JSONResponse:
        stop = None if body.stop is None else tuple(_as_list(body.stop))
        handled = await handle(body.model, body.prompt, "prompt",
                               lambda served, texts: completion_jobs(pool, served, texts, body.max_tokens, stop))
        if isinstance(handled, JSONResponse):
            return handled
        done: list[Completed] = handled[1]
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": body.model,
                "choices": [{"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason}
                            for i, r in enumerate(done)],
                "usage": {"prompt_tokens": sum(r.prompt_tokens for r in done),
                          "completion_tokens": sum(r.completion_tokens for r in done),
                          "total_tokens": sum(r.prompt_tokens + r.completion_tokens for r in done)}}

    @app.post("/v1/classify", response_model=None)
    async def classify(body: ClassifyRequest) -> dict[str, Any] | JSONResponse:
        handled = await handle(body.model, body.input, "input",
                               lambda served, inputs: classify_jobs(pool, served, inputs))
        if isinstance(handled, JSONResponse):
            return handled
        served, labelled = handled
        return {"object": "list", "model": body.model, "task": served.task.task if served else None,
                "data": [{"index": i, "label": r.label, "scores": r.scores} for i, r in enumerate(labelled)]}

    return app

