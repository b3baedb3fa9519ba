"""Fixtures for backend tests: the loopback fake OpenAI server and backends pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer, free_port  # noqa: E402
from llama_server import llama_server  # noqa: E402,F401 - the real llama.cpp server (tests/support)

pytest.importorskip("aiohttp")


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A started fake server on a free loopback port; stopped after the test."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def down_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def make_backend() -> Iterator[Callable[..., Any]]:
    """``make_backend(url, cache=None, **config)`` → an OpenAIBackend (fast retries), closed after the test."""
    from medreward.backends.config import BackendConfig
    from medreward.backends.openai import OpenAIBackend

    made: list[OpenAIBackend] = []

    def make(url: str, *, cache: Any = None, name: str = "judge", **fields: Any) -> OpenAIBackend:
        fields.setdefault("timeout_s", 5.0)
        backend = OpenAIBackend(name, BackendConfig(kind="openai", model="fake-judge", base_url=url, **fields), cache=cache)
        backend.retry_base_s = 0.02  # keep back-off short in tests; Retry-After is still honoured
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
