"""``medreward serve --spec [NAME=]SPEC ... [--host 127.0.0.1] [--port 8000] [--workers N]``:
the reward engine as an HTTP service (docs/serving.md), run with uvicorn.

Refuses to listen on a non-loopback address without an API key (``$MEDREWARD_API_KEY`` or
``--api-key-file``); the key is never printed or logged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import typer

from ..errors import InputError
from .console import err, user_errors

log = logging.getLogger(__name__)

_SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "orjson")


@user_errors
def serve_command(
    spec: list[str] = typer.Option(
        ..., "--spec", "-s", metavar="[NAME=]SPEC",
        help="Spec to serve: preset name or TOML path, optionally NAME= to route by (repeatable: "
        "--spec tox=toxicology --spec mcq=mcq). Records go to the spec their 'task' names, or use /v1/score/NAME.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (any non-loopback address needs an API key)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Server processes (each loads the specs and keeps its own metrics)."),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", help="File holding the API key (first line). Default: $MEDREWARD_API_KEY. "
        "With a key, every request but /healthz and /readyz needs 'Authorization: Bearer <key>'.",
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, show_default="2 for rule-based specs, 8 with model backends",
                                       help="Scoring threads per process (scoring runs off the event loop)."),
    time_limit: float = typer.Option(10.0, "--time-limit", min=0.001, help="Seconds one component may spend on one sample; past it the sample is 'timeout'."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", min=0.001, help="Largest request body in MiB (413 beyond, unread)."),
    max_rollouts: int = typer.Option(4096, "--max-rollouts", min=1, help="Most rollouts per request (413 beyond)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1, help="Seconds a client may take to send a body (408 beyond)."),
    graceful_timeout: float = typer.Option(30.0, "--graceful-timeout", min=0.0, help="On SIGTERM/Ctrl-C, seconds to let in-flight requests finish."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (uvicorn's access log)."),
    coalesce: bool = typer.Option(True, "--coalesce/--no-coalesce",
                                  help="Score the requests that queue while every scoring thread is busy together, one call per spec."),
) -> None:
    """Serve specs over HTTP: /v1/score, /v1/evaluate, OpenRLHF's /get_reward, /healthz, /readyz, /metrics (docs/serving.md)."""
    missing = [p for p in _SERVE_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise InputError(f"medreward serve needs {', '.join(missing)}: pip install 'medreward[serve]'")
    import uvicorn

    from ..integrations.registry import load_spec_like
    from ..serve.auth import check_bind, load_api_key
    from ..serve.config import API_KEY_ENV, CONFIG_ENV, ServeConfig, default_threads
    from ..serve.routing import parse_spec_option

    key = load_api_key(api_key_file)
    check_bind(host, key)
    specs: dict[str, str] = {}
    loaded_specs = []
    for option in spec:
        name, source = parse_spec_option(option)
        loaded = load_spec_like(source)  # a bad spec fails here, with its message (not in a worker process)
        name = name or loaded.name
        if name in specs:
            raise InputError(f"two specs are served as {name!r}: name them, e.g. --spec {name}2={source}")
        specs[name] = source
        loaded_specs.append(loaded)
    config = ServeConfig(
        specs=specs, api_key=key, max_body_bytes=int(max_body_mb * 2**20), max_rollouts=max_rollouts,
        time_limit=time_limit, threads=threads or default_threads(loaded_specs), body_timeout=body_timeout, coalesce=coalesce,
    )  # fmt: skip
    auth = "off (loopback only)" if key is None else ("on (key from --api-key-file)" if api_key_file else f"on (key from ${API_KEY_ENV})")
    err.print(f"medreward serve: http://{host}:{port}  specs: {', '.join(f'{n}={s}' for n, s in specs.items())}  auth: {auth}  "
              f"workers: {workers} × {config.threads} scoring threads",
              highlight=False, soft_wrap=True)  # fmt: skip
    options = dict(host=host, port=port, access_log=access_log, timeout_graceful_shutdown=graceful_timeout,
                   server_header=False, log_level="info")  # fmt: skip
    if workers == 1:
        from ..serve.app import create_app

        uvicorn.run(create_app(config), **options)
        return
    os.environ[CONFIG_ENV] = config.to_env()
    if key is not None:
        os.environ[API_KEY_ENV] = key  # the worker processes read it from their environment
    uvicorn.run("medreward.serve.app:app_from_env", factory=True, workers=workers, **options)
