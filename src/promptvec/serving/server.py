"""Start a server: load the model once and the prompts, then answer HTTP until stopped.

``uvicorn`` runs the app. On Ctrl-C or SIGTERM it stops accepting connections, lets the requests in
flight finish (up to ``graceful_s``), and then the app's shutdown has the engine answer whatever is
still queued before it stops — no accepted request is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptvec.backbones import Backbone, load_backbone
from promptvec.errors import ConfigError
from promptvec.serving.app import DEFAULT_TIMEOUT_S, create_app
from promptvec.serving.engine import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE, Engine
from promptvec.serving.prompts import DEFAULT_CACHE_MB, PromptPool

GRACEFUL_S = 30.0


@dataclass(frozen=True)
class ServeConfig:
    """What a server holds and how it batches; each default is the one the CLI shows."""

    model: str = "default"
    prompts: dict[str, str] = field(default_factory=dict)  # name -> folder, file, run folder or Hub id
    stores: tuple[Path, ...] = ()
    library: Path | None = None
    shipped_library: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = DEFAULT_MAX_BATCH
    queue_size: int = DEFAULT_QUEUE_SIZE
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    timeout_s: float = DEFAULT_TIMEOUT_S
    cache_mb: float = DEFAULT_CACHE_MB


def parse_prompt_specs(specs: list[str]) -> dict[str, str]:
    """``NAME=REF`` arguments as a mapping (refused: no ``=``, an empty side, a name given twice)."""
    prompts: dict[str, str] = {}
    for spec in specs:
        name, sep, ref = spec.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise ConfigError(f"--prompt '{spec}' is not NAME=FOLDER", "e.g. --prompt sentiment=runs/sst2/prompt")
        if name in prompts:
            raise ConfigError(f"--prompt names '{name}' twice", "give each prompt its own name")
        prompts[name.strip()] = ref.strip()
    return prompts


def build_pool(config: ServeConfig, backbone: Backbone | None = None) -> PromptPool:
    """The model (loaded once) and every prompt of the configuration, checked against it."""
    pool = PromptPool(backbone or load_backbone(config.model), config.cache_mb)
    for name, reference in config.prompts.items():
        pool.add_reference(name, reference)
    for store in config.stores:
        pool.add_store(store)
    if config.library is not None or config.shipped_library:
        pool.add_library(config.library)
    return pool


def serve(config: ServeConfig, backbone: Backbone | None = None, on_ready=None) -> None:
    """Load, then serve until interrupted (``on_ready(pool)`` is called once the prompts are loaded)."""
    import uvicorn

    pool = build_pool(config, backbone)
    if on_ready is not None:
        on_ready(pool)
    engine = Engine(pool, config.max_batch, config.queue_size, config.batch_wait_ms).start()
    app = create_app(pool, engine, config.timeout_s)
    request_log = logging.getLogger("promptvec.serve")
    if not request_log.handlers:  # one line per request (method, path, status, time) beside uvicorn's own log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
        request_log.propagate = False
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="info",
                                           access_log=False, timeout_graceful_shutdown=int(GRACEFUL_S)))
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
        # found: a stop asked for is a normal end (status 0), not a death by signal or an "interrupted" run
        signal.signal(signal.SIGTERM, _stopped)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, once uvicorn has shut down gracefully
        server.run()


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)
