"""Request limits: body size (enforced while reading), rollouts per request, slow clients, and a
10 MB completion scored in bounded time."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from serve_support import raw_request, require

require("fastapi")

MB = 2**20


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("--spec", "toxicology", "--max-rollouts", "8", "--max-body-mb", "12", "--body-timeout", "2")


def _head(length: int | None, path: str = "/v1/score") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()


def test_a_declared_100_mb_body_is_refused_before_it_is_read(server):
    started = time.monotonic()
    status, body, _ = raw_request(server.port, _head(100 * 10**6) + b"[" + b" " * 1024)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    assert time.monotonic() - started < 10  # answered with 99.99 MB never sent


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    chunk = b"x" * MB
    parts = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(100))
    status, body, sent = raw_request(server.port, _head(None), parts)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    assert sent < 60 * MB  # the server stopped reading near 12 MB (socket buffers hold a few more)
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_a_slow_client_gets_408_and_holds_nothing(server):
    started = time.monotonic()
    status, body, _ = raw_request(server.port, _head(1000) + b'[{"completion": ')
    assert status == 408 and json.loads(body)["error"]["code"] == "body_timeout"
    assert 1.5 < time.monotonic() - started < 15


def test_too_many_rollouts_is_413(server):
    records = [{"completion": "<answer>opioids</answer>", "reference": {"substances": ["opioids"]}}] * 9
    response = httpx.post(server.url + "/v1/score", json=records)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_rollouts"
    assert "9 rollouts" in response.json()["error"]["message"]
    response = httpx.post(server.url + "/get_reward", json={"query": ["x"] * 9})
    assert response.status_code == 413
    assert httpx.post(server.url + "/v1/score", json=records[:8]).status_code == 200


def test_a_10_mb_completion_is_scored_in_bounded_time(server):
    completion = "<think>" + "miosis and apnea. " * (10 * MB // 18) + "</think><answer>opioids</answer>"
    record = {"id": "big", "completion": completion, "reference": {"substances": ["opioids"]}}
    started = time.monotonic()
    cut = {**record, "id": "cut", "completion": completion[: MB]}  # no answer: 0 for the substances
    response = httpx.post(server.url + "/v1/score", json=[record, cut], timeout=120)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    first, second = response.json()["records"]
    assert first["status"] == "ok" and first["reward"] == 1.0 and len(first["completion"]) == len(completion)
    assert second["status"] == "ok" and second["components"]["substances"] == 0.0
    assert elapsed < 60, elapsed
