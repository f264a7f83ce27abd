"""Serve soft prompts: many prompts on one frozen model behind an OpenAI-compatible HTTP API.

:class:`PromptPool` holds the named prompts and their keys/values (bounded LRU), :class:`Engine`
answers queued requests in batches that mix prompts, :func:`create_app` is the HTTP API, and
:func:`serve` starts it all (``promptvec serve``). Needs the ``serve`` extra (FastAPI, uvicorn)."""

from promptvec.serving.app import create_app
from promptvec.serving.engine import Engine
from promptvec.serving.prompts import BASE, PromptPool, ServedPrompt
from promptvec.serving.server import ServeConfig, build_pool, parse_prompt_specs, serve

__all__ = ["BASE", "Engine", "PromptPool", "ServeConfig", "ServedPrompt", "build_pool", "create_app",
           "parse_prompt_specs", "serve"]
