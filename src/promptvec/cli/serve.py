"""``promptvec serve``: many prompts on one model behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptvec.cli.common import Model, app, console, friendly


@app.command("serve")
@friendly
def serve_command(
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="NAME=REF: serve a prompt (folder, "
                                                     ".safetensors, run folder or Hub id) as model NAME; repeatable")]
    = None,
    store: Annotated[list[Path] | None, typer.Option("--store", help="serve every prompt of a store, by entry "
                                                     "name; repeatable")] = None,
    library: Annotated[str | None, typer.Option("--library", help="serve a prompt library by task name: a folder, "
                                                "or 'shipped' for the one shipped with --model")] = None,
    model: Model = "default",
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="inputs per forward pass at most")] = 32,
    queue_size: Annotated[int, typer.Option(min=1, help="queued inputs at most (more: HTTP 429)")] = 256,
    batch_wait_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits for more requests")] = 5.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds a request may wait for its answer (then "
                                           "HTTP 504)")] = 60.0,
    cache_mb: Annotated[float, typer.Option(min=1, help="memory for prepared prompts' keys/values (least "
                                            "recently used go first)")] = 512.0,
) -> None:
    """Serve prompts over HTTP: POST /v1/completions and GET /v1/models (OpenAI-compatible), POST /v1/classify,
    GET /health. Needs `pip install 'promptvec[serve]'`."""
    from promptvec.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("promptvec serve needs FastAPI and uvicorn", "pip install 'promptvec[serve]'") from None
    from promptvec.serving import ServeConfig, parse_prompt_specs, serve

    config = ServeConfig(model=model, prompts=parse_prompt_specs(prompt or []), stores=tuple(store or ()),
                         library=None if library in (None, "shipped") else Path(library),
                         shipped_library=library == "shipped", host=host, port=port, max_batch=max_batch,
                         queue_size=queue_size, batch_wait_ms=batch_wait_ms, timeout_s=timeout, cache_mb=cache_mb)
    if not (config.prompts or config.stores or library):
        console.print("no --prompt, --store or --library: serving the model alone (model 'base')", highlight=False)

    def ready(pool) -> None:
        console.print(f"serving {len(pool.names)} prompt(s) on '{pool.backbone.name}' at http://{host}:{port}/v1 "
                      f"(models: base{''.join(', ' + n for n in pool.names[:8])}"
                      f"{', …' if len(pool.names) > 8 else ''})", highlight=False)

    serve(config, on_ready=ready)
