"""Fixtures of the server tests: ``server_factory`` starts real servers and stops them all."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from serve_support import Server, start_server


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``start(*args, env=...)`` → a running :class:`Server`; all stopped at the end of the module."""
    started: list[Server] = []
    folder = tmp_path_factory.mktemp("serve")

    def start(*args: str, env: dict[str, str] | None = None, port: int | None = None) -> Server:
        server = start_server(folder / f"server{len(started)}.log", *args, env=env, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM, timeout=10)


